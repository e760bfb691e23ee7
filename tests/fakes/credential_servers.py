"""Fake STS and ECS metadata services on 127.0.0.1, able to echo everything they received.

Why echo: the real world's error messages carry what the client sent. Alibaba's gateway answers
``SignatureDoesNotMatch`` with its string to sign, proxies and load balancers dump the request
into an HTML error page, and a debugging STS may quote the OIDC token it rejected. Fakes that
answer tidily hide every leak of that kind, so these can answer with the request itself, in the
encodings it comes back in: raw, percent-encoded once (a query or a form body) and twice (an RPC
string to sign), JSON with ``\\/`` and ``\\uXXXX`` escapes, and HTML.

The servers are stdlib ``ThreadingHTTPServer`` s on ephemeral loopback ports, each request
answered from a background thread; clients are real ``httpx`` clients (or the exporter process).

Example::

    sts = FakeSts(clock, script=[echo_json(400, "AuthenticationFail.OIDCToken.Invalid"), None])
    with serve(sts.respond) as url:
        ...  # the first AssumeRoleWithOIDC is refused with an echo, the second succeeds
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from exporter.eiam.encoding import canonical_query_string, percent_encode

__all__ = [
    "IMDS_TOKEN",
    "ROLE_ARN",
    "FakeClock",
    "FakeMetadata",
    "FakeSts",
    "Issued",
    "Recorded",
    "Reply",
    "Responder",
    "closed_port_url",
    "echo_html",
    "echo_json",
    "echo_text",
    "iso",
    "json_reply",
    "leak_forms",
    "leaks",
    "lower_hex",
    "serve",
]

ROLE_ARN = "acs:ram::1234567890123456:role/idaas-exporter"
IMDS_TOKEN = "imds-session-token-VALUE-5d1e"


class FakeClock:
    """A settable clock; ``advance`` moves it. Shared with the fakes for Expiration values."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def wall_clock() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    form: dict[str, str]

    def params(self) -> dict[str, str]:
        return {**self.query, **self.form}


Reply = tuple[int, dict[str, str], bytes]
Responder = Callable[[Recorded], Reply]


def json_reply(status: int, body: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


# -- echoes ------------------------------------------------------------------------------------


def echo_text(request: Recorded) -> str:
    """Everything *request* carried, the way servers echo it back.

    An RPC-style string to sign of the parameters (the canonical query percent-encoded once
    more, so each value shows up double-encoded, ``+`` as ``%252B``, as in Alibaba's
    ``SignatureDoesNotMatch``), then every parameter and header raw (``name=value``).
    """
    params = request.params()
    raw = "; ".join(f"{name}={value}" for name, value in params.items())
    # Custom headers first, as servers that list "the interesting ones" do: a token then starts
    # early in the echo, where a client quoting the first bytes of a body cuts it in half.
    ordered = sorted(request.headers.items(), key=lambda item: not item[0].startswith("x-"))
    headers = "; ".join(f"{name}: {value}" for name, value in ordered)
    string_to_sign = f"{request.method}&%2F&{percent_encode(canonical_query_string(params))}"
    return f"server string to sign is:{string_to_sign}; received {raw}; headers {headers}"


def _escape_json(text: str) -> str:
    """A JSON document as some servers write it: ``/`` as ``\\/``, ``+`` and ``=`` as ``\\u``."""
    return text.replace("/", "\\/").replace("+", "\\u002B").replace("=", "\\u003d")


def _quoted(request: Recorded, name: str | None) -> str:
    """``Specified <name> is not valid: <its value>. `` when *request* carried *name*."""
    if name is None:
        return ""
    value = request.params().get(name, request.headers.get(name.lower()))
    return f"Specified {name} is not valid: {value}. " if value is not None else ""


def echo_json(status: int, code: str, quote_first: str | None = None) -> Responder:
    """An Alibaba-style JSON error whose Message echoes the request; slashes escaped as ``\\/``.

    *quote_first* names a parameter or header the Message quotes up front, the way a service
    names the value it refused.
    """

    def respond(request: Recorded) -> Reply:
        body = {
            "RequestId": "ECHO-REQ-1",
            "HostId": request.headers.get("host", "127.0.0.1"),
            "Code": code,
            "Message": f"{_quoted(request, quote_first)}Rejected: {echo_text(request)}",
            "Recommend": "https://api.aliyun.com/troubleshoot?q=" + quote(echo_text(request)),
        }
        return status, {"Content-Type": "application/json"}, _escape_json(json.dumps(body)).encode()

    return respond


def echo_html(status: int, quote_first: str | None = None) -> Responder:
    """A proxy's HTML error page dumping the request: HTML-escaped, and as an escaped JSON blob."""

    def respond(request: Recorded) -> Reply:
        text = _quoted(request, quote_first) + echo_text(request)
        dump = _escape_json(json.dumps({"request": text, "form": quote_plus(str(request.form))}))
        page = (
            f"<html><body><pre>{html.escape(text)}</pre>"
            f"<script>var failed = {dump};</script><h1>{status} Bad Gateway</h1></body></html>"
        )
        return status, {"Content-Type": "text/html"}, page.encode()

    return respond


# -- what leaked -------------------------------------------------------------------------------


def leak_forms(value: str) -> set[str]:
    """*value* as it may come back: raw, percent-encoded once, twice, thrice (upper- and
    lower-case hex), form-encoded, JSON with ``\\/`` or ``\\u`` escapes, HTML-escaped."""
    once = quote(value, safe="")
    # Out of a percent-encoder every raw "%" is "%25": only there is "%XX" an escape whose hex
    # may come in lowercase.
    encoded = {
        once,
        quote(once, safe=""),
        quote(quote(once, safe=""), safe=""),
        quote_plus(value),
        quote(value),  # "/" left bare
    }
    escaped = {
        value,
        json.dumps(value)[1:-1],
        value.replace("/", "\\/"),
        _escape_json(value),
        html.escape(value),
    }
    return escaped | encoded | {lower_hex(form) for form in encoded}


def lower_hex(text: str) -> str:
    """*text* with its percent-escapes in lowercase hex (``%2B`` -> ``%2b``), nothing else."""
    return re.sub(r"%[0-9A-F]{2}", lambda match: match.group().lower(), text)


def leaks(texts: dict[str, str], values: dict[str, str]) -> list[str]:
    """Each (value name, form, where) found: *texts* maps a place to its text, *values* a
    credential's name to its value."""
    found = []
    for where, text in texts.items():
        for name, value in values.items():
            for form in sorted(leak_forms(value)):
                if form in text:
                    found.append(f"{name} as {form[:24]!r}… in {where}")
                    break
    return found


# -- HTTP --------------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    respond: Responder


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        form: dict[str, str] = {}
        if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        recorded = Recorded(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            form=form,
        )
        status, headers, payload = self.server.respond(recorded)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on recorded requests instead."""


@contextlib.contextmanager
def serve(respond: Responder) -> Iterator[str]:
    """Run *respond* behind an HTTP server on 127.0.0.1:<ephemeral>; yields the base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.respond = respond
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the services ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """One set of STS credentials handed out."""

    access_key_id: str
    access_key_secret: str
    security_token: str


def _numbered(prefix: str, key_prefix: str) -> Callable[[int], Issued]:
    def issue(n: int) -> Issued:
        return Issued(
            f"STS.{key_prefix}{n}", f"{prefix}-secret-{n}-VALUE", f"{prefix}-token-{n}-VALUE"
        )

    return issue


@dataclass
class FakeSts:
    """AssumeRoleWithOIDC: fresh credentials, a fixed error, or the next step of *script*.

    *script* is cycled, one step per request: a :data:`Responder` (say :func:`echo_json`) or
    ``None`` for credentials. *issue* chooses the credentials of the n-th request (1-based).
    """

    clock: Callable[[], datetime] = wall_clock
    lifetime: timedelta = timedelta(hours=1)
    error: Reply | None = None
    script: list[Responder | None] = field(default_factory=list)
    issue: Callable[[int], Issued] = field(default_factory=lambda: _numbered("sts", "id"))
    gate: threading.Event | None = None
    requests: list[Recorded] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    issued: list[str] = field(default_factory=list)  # every secret and token handed out
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _position: int = 0

    def restart(self, script: list[Responder | None]) -> None:
        """Answer from *script*, from its first step on."""
        with self._lock:
            self.script, self._position = script, 0

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def params(self, index: int = -1) -> dict[str, str]:
        return self.requests[index].params()

    def respond(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            n = len(self.requests)
            step = self.script[self._position % len(self.script)] if self.script else None
            self._position += 1
        self.received.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        if self.error is not None:
            return self.error
        if step is not None:
            return step(request)
        issued = self.issue(n)
        with self._lock:
            self.issued += [issued.access_key_secret, issued.security_token]
        return json_reply(
            200,
            {
                "RequestId": f"sts-req-{n}",
                "AssumedRoleUser": {"Arn": f"{ROLE_ARN}/session", "AssumedRoleId": "3x:session"},
                "Credentials": {
                    "AccessKeyId": issued.access_key_id,
                    "AccessKeySecret": issued.access_key_secret,
                    "SecurityToken": issued.security_token,
                    "Expiration": iso(self.clock() + self.lifetime),
                },
            },
        )


@dataclass
class FakeMetadata:
    """The ECS metadata service in hardened mode: token first, then role, then credentials.

    *script* is cycled over the credential requests (``GET …/security-credentials/<role>``):
    a :data:`Responder` answers instead (say :func:`echo_html`), ``None`` hands out credentials.
    """

    clock: Callable[[], datetime] = wall_clock
    role: str | None = "ExporterRole"
    lifetime: timedelta = timedelta(hours=6)
    code: str = "Success"
    token: str = IMDS_TOKEN
    script: list[Responder | None] = field(default_factory=list)
    issue: Callable[[int], Issued] = field(default_factory=lambda: _numbered("ecs", "ecs"))
    requests: list[Recorded] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _position: int = 0
    _served: int = 0

    def restart(self, script: list[Responder | None]) -> None:
        """Answer the credential requests from *script*, from its first step on."""
        with self._lock:
            self.script, self._position = script, 0

    def respond(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
        text = {"Content-Type": "text/plain"}
        if request.path == "/latest/api/token":
            if request.method != "PUT":
                return 405, text, b"method not allowed"
            if request.headers.get("x-aliyun-ecs-metadata-token-ttl-seconds") != "21600":
                return 400, text, b"missing ttl"
            return 200, text, self.token.encode()
        if request.headers.get("x-aliyun-ecs-metadata-token") != self.token:
            return 401, text, b"unauthorized"
        prefix = "/latest/meta-data/ram/security-credentials/"
        if request.path == prefix:
            return (200, text, f"{self.role}\n".encode()) if self.role else (404, text, b"")
        if request.path.startswith(prefix) and request.path[len(prefix) :] == self.role:
            with self._lock:
                step = self.script[self._position % len(self.script)] if self.script else None
                self._position += 1
                if step is None:
                    self._served += 1
                n = self._served
            if step is not None:
                return step(request)
            issued = self.issue(n)
            with self._lock:
                self.issued += [issued.access_key_secret, issued.security_token]
            return json_reply(
                200,
                {
                    "AccessKeyId": issued.access_key_id,
                    "AccessKeySecret": issued.access_key_secret,
                    "Expiration": iso(self.clock() + self.lifetime),
                    "SecurityToken": issued.security_token,
                    "LastUpdated": iso(self.clock()),
                    "Code": self.code,
                },
            )
        return 404, text, b"not found"

    def paths(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def write_cli_sts_profile(path: Path, access_key_id: str, secret: str, token: str) -> None:
    """An ``~/.aliyun/config.json`` whose current profile is StsToken mode with these values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "name": "default",
        "mode": "StsToken",
        "access_key_id": access_key_id,
        "access_key_secret": secret,
        "sts_token": token,
    }
    path.write_text(json.dumps({"current": "default", "profiles": [profile]}))
