"""``--web.config.file``: TLS and basic auth in the Prometheus exporter-toolkit format.

Why this format: operators already have these files for node_exporter and friends, and
Prometheus' own tooling (``promtool check web-config``) understands them. Supported::

    tls_server_config:
      cert_file: /etc/exporter/tls.crt
      key_file: /etc/exporter/tls.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
      client_ca_file: /etc/exporter/ca.crt
      min_version: TLS12                             # TLS10 … TLS13
      max_version: TLS13
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2y$10$…                           # bcrypt hash (htpasswd -nBC 10 "")

Python's TLS stack cannot accept client certificates without verifying them, so
``RequestClientCert`` and ``RequireAnyClientCert`` are refused with an explanation, as are
unknown keys (a typo must not silently disable TLS).

>>> hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
>>> config = parse_web_config({"basic_auth_users": {"u": hashed}})
>>> config.authenticator.check("u", "pw"), config.authenticator.check("u", "nope")
(True, False)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import re
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

__all__ = [
    "AuthenticatorBusy",
    "BasicAuthenticator",
    "WebConfig",
    "WebConfigError",
    "load_web_config",
    "parse_web_config",
]

_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_UNSUPPORTED_CLIENT_AUTH = {"RequestClientCert", "RequireAnyClientCert"}
_TLS_KEYS = {
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
}
_IGNORED_TLS_KEYS = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites"}
_DEFAULT_COST = 10


class WebConfigError(ValueError):
    """The web config cannot be used; the message names the key and the fix."""


class AuthenticatorBusy(Exception):
    """Too many password checks are queued; the client should retry in a moment (429)."""


_BCRYPT_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_BCRYPT_POOL_LOCK = threading.Lock()
_in_flight = 0
_IN_FLIGHT_LOCK = threading.Lock()
"""bcrypt checks submitted and not finished, process-wide (the worker is, too): a reload's
new authenticator does not get a second queue, and a cancelled request keeps its place until
its bcrypt has really finished."""


def _bcrypt_pool() -> concurrent.futures.ThreadPoolExecutor:
    """One thread for every bcrypt check of the process, whatever the number of reloads: a
    password guesser can keep one core busy, never the event loop's, never more than one."""
    global _BCRYPT_POOL
    with _BCRYPT_POOL_LOCK:
        if _BCRYPT_POOL is None:
            _BCRYPT_POOL = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bcrypt")
        return _BCRYPT_POOL


def bcrypt_cost(hashed: bytes) -> int:
    """The cost factor of a bcrypt hash (``$2b$12$…`` → 12).

    >>> bcrypt_cost(b"$2y$12$" + b"." * 53)
    12
    """
    try:
        return int(hashed[4:6])
    except ValueError:
        return _DEFAULT_COST


class BasicAuthenticator:
    """Checks ``user:password`` against bcrypt hashes, off the event loop, in constant time per
    attempt.

    bcrypt is deliberately slow (≈ 65 ms at cost 10, 260 ms at cost 12, the library's default),
    so it never runs on the event loop: :meth:`verify` hands it to a single worker thread, with
    at most ``max_pending`` checks queued (beyond that, :class:`AuthenticatorBusy`, a 429).
    Prometheus sends the same credentials on every scrape, so a verified pair is remembered as
    a SHA-256 digest (compared with ``hmac.compare_digest``), as exporter-toolkit caches them:
    a legitimate scraper costs one bcrypt per process lifetime. Any other pair pays the full
    cost; an unknown user name is checked against a dummy hash *of the highest configured
    cost*, and every refusal takes at least as long as a check at that cost (the wait happens
    on the event loop, not in the worker), so the answer time tells neither which user names
    exist nor, when users' hashes have different costs, which one was asked for.
    """

    def __init__(self, users: Mapping[str, bytes], *, max_pending: int = 32) -> None:
        self._users = dict(users)
        self._verified: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.cost = max((bcrypt_cost(h) for h in self._users.values()), default=_DEFAULT_COST)
        self._dummy: bytes | None = None
        self._max_pending = max_pending
        self._refusal_seconds = 0.0

    def __bool__(self) -> bool:
        return bool(self._users)

    @property
    def users(self) -> int:
        return len(self._users)

    @property
    def pending(self) -> int:
        """Password checks queued or running in the process's bcrypt worker."""
        return _in_flight

    def prepare(self) -> None:
        """Make the dummy hash now and time one check against it (two bcrypts of the highest
        configured cost; blocking): the first unknown user is then answered as fast as any, and
        refusals know how long the slowest check takes."""
        dummy = self._dummy_hash()
        started = time.perf_counter()
        bcrypt.checkpw(b"not the password", dummy)
        self._refusal_seconds = time.perf_counter() - started

    def adopt(self, previous: BasicAuthenticator) -> None:
        """Keep what *previous* verified for users whose hash did not change (a reload must not
        make every scraper pay bcrypt again, perhaps while an attack fills the queue)."""
        with self._lock:
            for user, digest in previous._verified.items():
                if self._users.get(user) == previous._users.get(user):
                    self._verified[user] = digest

    def _dummy_hash(self) -> bytes:
        with self._lock:
            if self._dummy is None:
                password = secrets.token_bytes(18)
                self._dummy = bcrypt.hashpw(password, bcrypt.gensalt(self.cost))
            return self._dummy

    def remembered(self, user: str, password: str) -> bool:
        """The pair was verified before (cheap: one SHA-256)."""
        remembered = self._verified.get(user)
        return remembered is not None and hmac.compare_digest(remembered, _digest(user, password))

    def check(self, user: str, password: str) -> bool:
        """Blocking check (bcrypt unless remembered); :meth:`verify` runs it in the worker."""
        if self.remembered(user, password):
            return True
        hashed = self._users.get(user)
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or self._dummy_hash())
        except ValueError:
            ok = False
        ok = ok and hashed is not None
        if ok:
            with self._lock:
                self._verified[user] = _digest(user, password)
        return ok

    async def verify(self, user: str, password: str) -> bool:
        """:meth:`check` without blocking the event loop; raises :class:`AuthenticatorBusy`."""
        global _in_flight
        if self.remembered(user, password):
            return True
        if _in_flight >= self._max_pending:
            raise AuthenticatorBusy
        loop = asyncio.get_running_loop()
        started = loop.time()
        with _IN_FLIGHT_LOCK:
            _in_flight += 1

        def finished(_future: concurrent.futures.Future[bool]) -> None:
            global _in_flight
            with _IN_FLIGHT_LOCK:  # on the worker thread, when bcrypt has really finished
                _in_flight -= 1

        future = _bcrypt_pool().submit(self.check, user, password)
        future.add_done_callback(finished)
        ok = await asyncio.wrap_future(future)
        if not ok:
            # as slow as a check at the highest configured cost, whoever was asked for
            ran = loop.time() - started
            await asyncio.sleep(max(0.0, self._refusal_seconds - ran))
        return ok


def _digest(user: str, password: str) -> bytes:
    return hashlib.sha256(f"{user}\0{password}".encode()).digest()


@dataclass(frozen=True)
class WebConfig:
    """What the web server needs: an optional TLS context, users, extra response headers."""

    ssl_context: ssl.SSLContext | None = None
    authenticator: BasicAuthenticator = field(default_factory=lambda: BasicAuthenticator({}))
    headers: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = ()
    """Accepted keys that this implementation does not apply (reported at start-up)."""


def _require_mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{where} must be a mapping, not {type(value).__name__}")
    return value


def _tls_context(raw: Mapping[str, Any], base: Path) -> tuple[ssl.SSLContext, list[str]]:
    unknown = sorted(set(raw) - _TLS_KEYS)
    if unknown:
        raise WebConfigError(
            f"tls_server_config: unknown key(s) {', '.join(unknown)}; supported: "
            f"{', '.join(sorted(_TLS_KEYS))}"
        )
    cert, key = raw.get("cert_file"), raw.get("key_file")
    if not cert or not key:
        raise WebConfigError("tls_server_config needs both cert_file and key_file")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for name in ("min_version", "max_version"):
        if name in raw:
            version = _TLS_VERSIONS.get(str(raw[name]))
            if version is None:
                raise WebConfigError(
                    f"tls_server_config.{name}: {raw[name]!r} is not one of "
                    f"{', '.join(_TLS_VERSIONS)}"
                )
            if name == "min_version":
                context.minimum_version = version
            else:
                context.maximum_version = version
    try:
        context.load_cert_chain(base / str(cert), base / str(key))
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(
            f"tls_server_config: cannot load cert_file {cert} / key_file {key}: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    auth_type = str(raw.get("client_auth_type", "NoClientCert"))
    if auth_type in _UNSUPPORTED_CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {auth_type} is not supported (Python's TLS "
            "cannot accept client certificates without verifying them); use "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert with a client_ca_file"
        )
    mode = _CLIENT_AUTH.get(auth_type)
    if mode is None:
        raise WebConfigError(
            f"tls_server_config.client_auth_type {auth_type!r} is not one of "
            f"{', '.join([*_CLIENT_AUTH, *_UNSUPPORTED_CLIENT_AUTH])}"
        )
    ca = raw.get("client_ca_file")
    if mode != ssl.CERT_NONE:
        if not ca:
            raise WebConfigError(
                f"tls_server_config.client_auth_type {auth_type} needs a client_ca_file"
            )
        try:
            context.load_verify_locations(cafile=base / str(ca))
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config: cannot load client_ca_file {ca}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        context.verify_mode = mode
    elif ca:
        raise WebConfigError(
            "tls_server_config: client_ca_file is set but client_auth_type is NoClientCert; "
            "set client_auth_type: RequireAndVerifyClientCert to check client certificates"
        )
    return context, sorted(_IGNORED_TLS_KEYS & set(raw))


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _check_header(name: str, value: str) -> None:
    """A header the server can send: a token for a name, one latin-1 line for a value (a bad
    one would otherwise fail every response at run time)."""
    if not _TOKEN.match(name):
        raise WebConfigError(
            f"http_server_config.headers: {name!r} is not a valid header name (letters, digits "
            "and !#$%&'*+.^_`|~-)"
        )
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise WebConfigError(
            f"http_server_config.headers.{name}: the value must be latin-1 text"
        ) from None
    if "\r" in value or "\n" in value or "\0" in value:
        raise WebConfigError(
            f"http_server_config.headers.{name}: the value must be one line (no CR, LF or NUL)"
        )


def parse_web_config(document: Any, base: Path | None = None) -> WebConfig:
    """Validate a parsed YAML document; relative file paths are relative to *base*."""
    root = _require_mapping(document, "the web config")
    unknown = sorted(set(root) - {"tls_server_config", "basic_auth_users", "http_server_config"})
    if unknown:
        raise WebConfigError(
            f"unknown top-level key(s) {', '.join(unknown)}; supported: tls_server_config, "
            "http_server_config, basic_auth_users"
        )
    directory = base or Path.cwd()
    context = None
    ignored: list[str] = []
    tls = _require_mapping(root.get("tls_server_config"), "tls_server_config")
    if tls:
        context, ignored = _tls_context(tls, directory)
    users: dict[str, bytes] = {}
    for user, hashed in _require_mapping(root.get("basic_auth_users"), "basic_auth_users").items():
        text = str(hashed or "")
        if not text.startswith(("$2a$", "$2b$", "$2y$")) or len(text) != 60:
            raise WebConfigError(
                f"basic_auth_users.{user}: not a bcrypt hash; create one with "
                "htpasswd -nBC 10 \"\" | tr -d ':\\n' (or python -c 'import bcrypt; "
                'print(bcrypt.hashpw(b"PASSWORD", bcrypt.gensalt()).decode())\')'
            )
        users[str(user)] = text.encode()
    http = _require_mapping(root.get("http_server_config"), "http_server_config")
    headers = _require_mapping(http.get("headers"), "http_server_config.headers")
    for name, value in headers.items():
        _check_header(str(name), str(value))
    ignored += [f"http_server_config.{k}" for k in sorted(set(http) - {"headers"})]
    return WebConfig(
        ssl_context=context,
        authenticator=BasicAuthenticator(users),
        headers=tuple((str(k), str(v)) for k, v in headers.items()),
        ignored=tuple(ignored),
    )


def load_web_config(path: Path) -> WebConfig:
    """Read and validate the file; every problem is a :class:`WebConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"cannot read web config {path}: {exc}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise WebConfigError(
            f"web config {path} is not valid YAML: {exc}".splitlines()[0]
        ) from None
    try:
        return parse_web_config(document, path.parent)
    except WebConfigError as exc:
        raise WebConfigError(f"web config {path}: {exc}") from None
