"""SIGHUP re-reads the web config — new users, new certificates — and never kills the process.

It used to: SIGHUP's default action ended the exporter with exit code 129 and no log line, the
signal a careless ``kill -HUP`` or a config-reloader sidecar sends. Now the daemon logs the
reload, serves the new credentials and certificate on new connections, and keeps the old
config (and says why) when the new file does not load.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import signal
import ssl
from pathlib import Path

import bcrypt
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter.simulator import ManualClock, World, load_scenario, run_in_thread

from .processes import ExporterProcess
from .support import wait_until


def _users(path: Path, password: str, tls: tuple[Path, Path] | None = None) -> None:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
    text = f"basic_auth_users:\n  prometheus: {hashed}\n"
    if tls is not None:
        text += f"tls_server_config:\n  cert_file: {tls[0]}\n  key_file: {tls[1]}\n"
    path.write_text(text)


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 with common name *name*, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


RELOADED = "web config reloaded"
REFUSED = (
    "web config not reloaded; the previous one stays in force (fix the file and send SIGHUP again)"
)
NOTHING = "SIGHUP received; no --web.config.file to reload"


async def _logged(exporter: ExporterProcess, name: str, count: int = 1) -> None:
    async def seen() -> bool:
        return len(exporter.events_named(name)) >= count

    await wait_until(seen, timeout=20, what=f"the log line {name!r}")


async def test_sighup_reloads_users_and_certificates_and_never_kills(tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    first = _self_signed(tmp_path, "first")
    second = _self_signed(tmp_path, "second")
    _users(web, "old password", tls=first)
    world = World(load_scenario("small"), seed=2, now_ms=ManualClock())
    with run_in_thread(world) as simulator:
        exporter = ExporterProcess(
            simulator, [i.instance_id for i in world.instances], tmp_path / "state.json"
        )
        exporter.extra_args = ["--web.config.file", str(web)]
        await exporter.start()
        try:
            assert exporter.url is not None and exporter.url.startswith("https://")
            url = exporter.url

            async def status(password: str, cert: Path) -> int:
                context = ssl.create_default_context(cafile=str(cert))
                async with httpx.AsyncClient(verify=context, timeout=5) as client:
                    response = await client.get(url + "/metrics", auth=("prometheus", password))
                    return response.status_code

            assert await status("old password", first[0]) == 200

            # new password and a rotated certificate
            _users(web, "new password", tls=second)
            exporter.send_signal(signal.SIGHUP)
            await _logged(exporter, RELOADED)
            assert await status("new password", second[0]) == 200
            assert await status("old password", second[0]) == 401
            try:
                await status("new password", first[0])
                raise AssertionError("the old certificate is still served")
            except httpx.ConnectError as exc:
                assert "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate" in str(exc)

            # a broken file changes nothing and says why
            web.write_text("basic_auth_users:\n  prometheus: not-a-hash\n")
            exporter.send_signal(signal.SIGHUP)
            await _logged(exporter, REFUSED)
            assert await status("new password", second[0]) == 200
            assert exporter.alive()
        finally:
            code = await exporter.terminate()
    assert code == 0
    refused = exporter.events_named(REFUSED)
    assert "basic_auth_users.prometheus: not a bcrypt hash" in str(refused[0]["error"])


async def test_sighup_without_a_web_config_is_logged_and_harmless(tmp_path: Path) -> None:
    world = World(load_scenario("small"), seed=2, now_ms=ManualClock())
    with run_in_thread(world) as simulator:
        exporter = ExporterProcess(
            simulator, [i.instance_id for i in world.instances], tmp_path / "state.json"
        )
        await exporter.start()
        try:
            for _ in range(3):
                exporter.send_signal(signal.SIGHUP)
            await _logged(exporter, NOTHING)
            assert exporter.alive()
        finally:
            assert await exporter.terminate() == 0


async def test_sighup_during_shutdown_does_not_kill(tmp_path: Path) -> None:
    """A config-reloader sidecar may send SIGHUP while the pod terminates: removing the
    reload handler used to restore SIGHUP's default action (exit 129) before the final save."""
    world = World(load_scenario("small"), seed=2, now_ms=ManualClock())
    with run_in_thread(world) as simulator:
        exporter = ExporterProcess(
            simulator, [i.instance_id for i in world.instances], tmp_path / "state.json"
        )
        await exporter.start()
        exporter.send_signal(signal.SIGTERM)
        while exporter.returncode is None:  # SIGHUP all through the shutdown
            exporter.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.005)
    assert exporter.returncode == 0
    await _logged(exporter, "idaas-sync-exporter stopped")
