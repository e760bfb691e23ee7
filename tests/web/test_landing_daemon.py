"""The landing page of the real daemon (``python -m exporter``): with ``--demo`` it says the
data is simulated and lists the simulator's targets; against a real (here: unreachable)
endpoint it has no banner and shows the failing poll's error code."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from bench.harness import Process, child_env

from .test_landing import parse, rows

START_DEADLINE_S = 30.0
PAGE_DEADLINE_S = 60.0


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    process = Process(
        [sys.executable, "-m", "exporter", *args,
         "--web.listen-address", "127.0.0.1:0", "--log.format", "json"],
        tmp_path / "exporter.log",
        env=child_env(env or {}),
    )  # fmt: skip
    process.start()
    try:
        started = process.wait_event("idaas-sync-exporter started", START_DEADLINE_S)
    except BaseException:
        process.stop(timeout=10)
        raise
    return process, str(started["listen"])


def page_when(url: str, done: object, process: Process) -> str:
    """GET *url* until ``done(page)`` holds, within :data:`PAGE_DEADLINE_S`."""
    assert callable(done)
    deadline = time.monotonic() + PAGE_DEADLINE_S
    page = ""
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            response = client.get(url)
            assert response.status_code == 200
            page = response.text
            if done(page):
                return page
            assert process.alive(), process.tail()
            time.sleep(0.2)
    raise AssertionError(f"the page never got there within {PAGE_DEADLINE_S:g} s:\n{page}")


def test_demo_mode_says_the_data_is_simulated(tmp_path: Path) -> None:
    process, url = start(tmp_path, "--demo", "--poll.interval-seconds", "1")
    try:
        page = page_when(f"{url}/", lambda p: bool(rows(p, "targets")), process)
    finally:
        code = process.stop(timeout=20)
    assert code == 0, process.tail()
    (banner,) = parse(page).banners
    assert "simulated" in banner and "not from Alibaba Cloud IDaaS" in banner
    instances = rows(page, "instances")
    assert any(row["Last poll"].startswith("ok") for row in instances), instances
    assert all(row["Health"] for row in rows(page, "targets"))


def test_a_daemon_polling_a_real_endpoint_has_no_banner_and_shows_its_poll_error(
    tmp_path: Path,
) -> None:
    secret = "test-only-secret-value-9f2c"
    process, url = start(
        tmp_path,
        "--instance-id", "idaas_landingtest",
        "--endpoint", "http://127.0.0.1:9",  # nothing listens: every poll fails
        "--api.max-attempts", "1",
        "--poll.interval-seconds", "1",
        env={
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tLandingTest",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret,
        },
    )  # fmt: skip
    try:
        page = page_when(
            f"{url}/",
            lambda p: rows(p, "instances")[0]["Last poll"].startswith("error"),
            process,
        )
    finally:
        code = process.stop(timeout=20)
    assert code == 0, process.tail()
    assert parse(page).banners == []
    (row,) = rows(page, "instances")
    assert row["Instance"] == "idaas_landingtest"
    assert row["Last successful poll"] == "never"
    assert row["Endpoint"] == "http://127.0.0.1:9/"
    assert secret not in page and "LTAI5tLandingTest" not in page
    assert "No target known yet" in page
