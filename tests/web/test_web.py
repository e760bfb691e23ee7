"""The web endpoints over real loopback HTTP: snapshot serving, negotiation, auth, TLS."""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import bcrypt
import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter.core.exposition import Family, Snapshot
from exporter.web.app import WebApp
from exporter.web.config import (
    BasicAuthenticator,
    WebConfigError,
    bcrypt_cost,
    load_web_config,
)
from exporter.web.server import HTTPServer

from .conftest import Pki

PASSWORD = "correct horse"


def families() -> list[Family]:
    jobs = Family("idaas_sync_jobs", "counter", "Jobs.", ("status",))
    jobs.add(("success",), 3, exemplar=(("sync_job_id", "sync_1"), 1.0, 1700000000.0))
    info = Family("idaas_exporter_build", "info", "Build.", ("version",))
    info.add(("1.0",), 1)
    return [jobs, info]


def make_app(**kwargs: object) -> WebApp:
    app = WebApp(**kwargs)  # type: ignore[arg-type]
    app.snapshot = Snapshot.from_families(families())
    return app


@pytest.fixture
async def served() -> AsyncIterator[tuple[WebApp, str]]:
    app = make_app()
    async with HTTPServer(app, host="127.0.0.1", port=0) as server:
        yield app, server.url


async def test_text_exposition_parses_and_includes_process_metrics(
    served: tuple[WebApp, str],
) -> None:
    _, url = served
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    names = {f.name for f in parse_text(response.text)}
    assert {"idaas_sync_jobs", "idaas_exporter_build_info", "process_cpu_seconds"} <= names


async def test_openmetrics_negotiation_with_exemplar_and_single_eof(
    served: tuple[WebApp, str],
) -> None:
    _, url = served
    accept = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics", headers={"accept": accept})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    text = response.text
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    assert '# {sync_job_id="sync_1"} 1.0' in text
    parsed = {f.name: f for f in parse_om(text)}
    sample = parsed["idaas_sync_jobs"].samples[0]
    assert sample.exemplar is not None and sample.exemplar.labels == {"sync_job_id": "sync_1"}
    assert parsed["idaas_exporter_build"].type == "info"


async def test_gzip_is_one_complete_member(served: tuple[WebApp, str]) -> None:
    _, url = served
    async with httpx.AsyncClient() as client:
        plain = await client.get(f"{url}/metrics", headers={"accept-encoding": "identity"})
        async with client.stream(
            "GET", f"{url}/metrics", headers={"accept-encoding": "gzip"}
        ) as response:
            wire = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers["content-encoding"] == "gzip"
    decompressor = zlib.decompressobj(31)
    body = decompressor.decompress(wire)
    assert decompressor.eof
    assert decompressor.unused_data == b""  # a single member: every client reads it all
    head = plain.text.split("# HELP process", 1)[0]
    assert body.decode().startswith(head)
    assert b"process_cpu_seconds_total" in body


async def test_health_readiness_landing_and_errors() -> None:
    ready = False
    app = make_app(ready=lambda: ready)
    async with HTTPServer(app, host="127.0.0.1", port=0) as server, httpx.AsyncClient() as client:
        url = server.url
        assert (await client.get(f"{url}/-/healthy")).status_code == 200
        assert (await client.get(f"{url}/-/ready")).status_code == 503
        ready = True
        assert (await client.get(f"{url}/-/ready")).status_code == 200
        landing = await client.get(f"{url}/")
        assert landing.status_code == 200 and 'href="/metrics"' in landing.text
        assert (await client.get(f"{url}/nope")).status_code == 404
        post = await client.post(f"{url}/metrics")
        assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
        head = await client.head(f"{url}/metrics")
        assert head.status_code == 200 and head.content == b""


def authenticator() -> BasicAuthenticator:
    return BasicAuthenticator({"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4))})


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        (basic("prometheus", "wrong"), 401),
        (basic("nobody", PASSWORD), 401),
        ({"authorization": "Basic !!notbase64"}, 401),
        ({"authorization": "Bearer abc"}, 401),
        (basic("prometheus", PASSWORD), 200),
    ],
)
async def test_basic_auth(headers: dict[str, str], status: int) -> None:
    app = make_app(authenticator=authenticator())
    async with HTTPServer(app, host="127.0.0.1", port=0) as server, httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}/metrics", headers=headers)
        assert response.status_code == status
        if status == 401:
            assert response.headers["www-authenticate"] == 'Basic realm="idaas-sync-exporter"'
            assert "idaas_sync" not in response.text
        landing = await client.get(f"{server.url}/", headers=headers)
        assert landing.status_code == status
        # probes carry no credentials and reveal nothing
        assert (await client.get(f"{server.url}/-/healthy")).status_code == 200


def test_unknown_users_pay_the_full_bcrypt_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = authenticator()
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    assert not auth.check("nobody", PASSWORD)
    assert not auth.check("prometheus", "wrong")
    assert len(calls) == 2  # the same work for an unknown user as for a wrong password
    assert auth.check("prometheus", PASSWORD)
    assert auth.check("prometheus", PASSWORD)  # remembered: no second bcrypt
    assert len(calls) == 3


def write_web_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "web.yml"
    path.write_text(text)
    return path


async def test_tls_with_required_client_certificate(tmp_path: Path, pki: Pki) -> None:
    config = load_web_config(
        write_web_config(
            tmp_path,
            f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
            f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki.ca}\n"
            "  min_version: TLS12\n",
        )
    )
    app = make_app()
    async with HTTPServer(app, host="127.0.0.1", port=0, ssl_context=config.ssl_context) as server:
        assert server.url.startswith("https://")

        def context(cert: Path | None, key: Path | None) -> ssl.SSLContext:
            ctx = ssl.create_default_context(cafile=str(pki.ca))
            if cert and key:
                ctx.load_cert_chain(cert, key)
            return ctx

        async with httpx.AsyncClient(verify=context(pki.client_cert, pki.client_key)) as client:
            assert (await client.get(f"{server.url}/metrics")).status_code == 200
        for cert, key in ((None, None), (pki.other_client_cert, pki.other_client_key)):
            async with httpx.AsyncClient(verify=context(cert, key)) as client:
                with pytest.raises(
                    (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)
                ):
                    await client.get(f"{server.url}/metrics")
        # a client that does not trust the server's CA refuses it as well
        async with httpx.AsyncClient(verify=ssl.create_default_context()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"{server.url}/metrics")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_server_config: {cert_file: a}\n", "needs both cert_file and key_file"),
        ("tls_server_config: {cert_file: a, key_file: b}\n", "cannot load cert_file a"),
        ("tls_server_config: {certfile: a}\n", "unknown key(s) certfile"),
        ("basic_auth_users: {u: plaintext}\n", "not a bcrypt hash"),
        ("basic_auth: {}\n", "unknown top-level key(s) basic_auth"),
        ("http_server_config: {headers: {'X Bad': v}}\n", "'X Bad' is not a valid header name"),
        ('http_server_config: {headers: {X-A: "a\\nb"}}\n', "must be one line"),
        ('http_server_config: {headers: {X-A: "\u20ac"}}\n', "must be latin-1 text"),
        ("tls_server_config: [\n", "not valid YAML"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_web_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write_web_config(tmp_path, text))
    assert message in str(info.value)


def test_web_config_client_auth_choices(tmp_path: Path, pki: Pki) -> None:
    base = f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    with pytest.raises(WebConfigError, match="not supported"):
        load_web_config(
            write_web_config(tmp_path, base + "  client_auth_type: RequestClientCert\n")
        )
    with pytest.raises(WebConfigError, match="needs a client_ca_file"):
        load_web_config(
            write_web_config(tmp_path, base + "  client_auth_type: RequireAndVerifyClientCert\n")
        )
    with pytest.raises(WebConfigError, match=r"TLS10"):
        load_web_config(write_web_config(tmp_path, base + "  min_version: SSL3\n"))
    config = load_web_config(write_web_config(tmp_path, base + "  min_version: TLS13\n"))
    assert config.ssl_context is not None
    assert config.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_3


# -- password checks under attack ---------------------------------------------------------------


async def test_bcrypt_runs_off_the_event_loop_one_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Wrong passwords are checked in one worker thread, never on the loop's, never two at
    once; the right one costs one bcrypt for the whole process lifetime."""
    auth = authenticator()
    auth.prepare()
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    running = 0
    most = 0
    calls = 0
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        nonlocal running, most, calls
        calls += 1
        threads.add(threading.get_ident())
        running += 1
        most = max(most, running)
        try:
            time.sleep(0.02)  # long enough for overlapping checks to show
            return real(password, hashed)
        finally:
            running -= 1

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    results = await asyncio.gather(
        *[auth.verify("prometheus", f"guess {n}") for n in range(8)],
        *[auth.verify(f"user{n}", PASSWORD) for n in range(4)],
        *[auth.verify("prometheus", PASSWORD) for _ in range(5)],
    )
    assert results == [False] * 12 + [True] * 5
    assert loop_thread not in threads and len(threads) == 1
    assert most == 1
    assert calls <= 12 + 5  # every wrong pair paid; the right one at most while unverified
    before = calls
    for _ in range(50):  # a scraper's next 50 scrapes: remembered, no bcrypt at all
        assert await auth.verify("prometheus", PASSWORD)
    assert calls == before


async def test_too_many_queued_password_checks_get_429_and_health_stays_up() -> None:
    gate = threading.Event()
    auth = BasicAuthenticator(
        {"prometheus": bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4))}, max_pending=2
    )
    auth.prepare()
    real = auth.check

    def held(user: str, password: str) -> bool:
        gate.wait(10)
        return real(user, password)

    auth.check = held  # type: ignore[method-assign]
    app = make_app(authenticator=auth)
    async with HTTPServer(app, host="127.0.0.1", port=0) as server, httpx.AsyncClient() as client:
        url = f"{server.url}/metrics"
        queued = [asyncio.create_task(client.get(url, headers=basic("x", "y"))) for _ in range(2)]
        deadline = time.monotonic() + 10
        while auth.pending < 2:  # both checks queued (one running, one waiting)
            assert time.monotonic() < deadline, "the two checks never queued"
            await asyncio.sleep(0.01)
        busy = await client.get(url, headers=basic("x", "z"))
        healthy = await client.get(f"{server.url}/-/healthy")
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*queued)] == [401, 401]
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert healthy.status_code == 200


def test_unknown_users_are_checked_against_a_dummy_of_the_configured_cost() -> None:
    """A cost-10 dummy next to cost-12 users answered unknown names 4x faster (66 vs 256 ms):
    the user list leaked through timing."""
    auth = BasicAuthenticator({"a": bcrypt.hashpw(b"pw", bcrypt.gensalt(6))})
    auth.prepare()
    assert auth.cost == 6
    assert auth._dummy is not None and bcrypt_cost(auth._dummy) == 6


async def test_every_refusal_takes_as_long_as_the_costliest_check() -> None:
    """Users with hashes of different costs: a wrong password for the cheap one used to be
    answered 16 times faster than one for the costly one, telling which user was asked for."""
    mixed = BasicAuthenticator(
        {"a": bcrypt.hashpw(b"pw", bcrypt.gensalt(4)), "b": bcrypt.hashpw(b"pw", bcrypt.gensalt(9))}
    )
    assert mixed.cost == 9
    mixed.prepare()
    floor = mixed._refusal_seconds
    assert floor > 0
    for user in ("a", "b", "nobody"):
        started = time.monotonic()
        assert not await mixed.verify(user, "wrong")
        assert time.monotonic() - started >= floor * 0.95, user
    started = time.monotonic()
    assert await mixed.verify("a", "pw")  # the right password is not slowed down
    assert time.monotonic() - started < floor


def test_a_reload_keeps_what_was_verified_for_unchanged_users() -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4))
    old = BasicAuthenticator({"a": hashed, "b": hashed})
    assert old.check("a", "pw") and old.check("b", "pw")
    new = BasicAuthenticator({"a": hashed, "b": bcrypt.hashpw(b"pw2", bcrypt.gensalt(4))})
    new.adopt(old)
    assert new.remembered("a", "pw")
    assert not new.remembered("b", "pw")  # b's hash changed: verified afresh


async def test_plain_openmetrics_is_inflated_piece_by_piece_and_equals_the_gzip_one(
    served: tuple[WebApp, str],
) -> None:
    app, url = served
    # a snapshot large enough for many 64 KiB pieces
    big = Family("idaas_sync_big", "gauge", "Big.", ("n",))
    for n in range(20_000):
        big.add((str(n),), n)
    app.snapshot = Snapshot.from_families([big, *families()])
    accept = {"accept": "application/openmetrics-text; version=1.0.0"}
    async with httpx.AsyncClient() as client:
        plain = await client.get(
            f"{url}/metrics", headers={**accept, "accept-encoding": "identity"}
        )
        gzipped = await client.get(f"{url}/metrics", headers={**accept, "accept-encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert gzipped.headers["content-encoding"] == "gzip"
    assert int(plain.headers["content-length"]) == len(plain.content) > 500_000
    before, after = (r.text.split("# HELP process", 1)[0] for r in (plain, gzipped))
    assert before == after
    assert plain.text.endswith("# EOF\n") and plain.text.count("# EOF") == 1
    names = {f.name for f in parse_om(plain.text)}
    assert {"idaas_sync_big", "idaas_sync_jobs", "process_cpu_seconds"} <= names
