"""The landing page in a real headless browser (Debian's ``chromium``): it renders to a
non-trivial screenshot, its DOM holds the health tables, the browser logs no console message
(no script error, no blocked or failed resource) and requests nothing but the page itself.

Skipped only when no ``chromium`` is installed (Debian package ``chromium``). Every browser run
has a deadline and is killed past it; a control page with a script error and a blocked
resource proves the console check sees what it must.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.core.exposition import Snapshot
from exporter.web import landing
from exporter.web.app import WebApp
from exporter.web.server import HTTPServer, Request, Response

from .landing_views import HOSTILE, varied_view
from .test_web import families

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian package: chromium)"
)

BROWSER_DEADLINE_S = 60.0
WIDTH, HEIGHT = 1200, 900
CONSOLE = re.compile(r"CONSOLE[(:]|Uncaught")
"""A console message as ``--enable-logging=stderr`` prints it (``INFO:CONSOLE:1] "…"``; older
builds wrote ``CONSOLE(1)``), and any uncaught exception."""

CONTROL_ERROR = (
    "<!doctype html><html><head><meta charset='utf-8'><title>control</title></head><body>"
    "<table id='targets'><tr><td>x</td></tr></table><img src='/missing.png' alt=''>"
    "<script>throw new Error('control page error')</script></body></html>"
)
"""Must log an uncaught exception (and request an image during the load)."""

CONTROL_INJECTED = (
    "<!doctype html><html><head><meta charset='utf-8'><title>control</title></head><body>"
    "<p id='marker'>unchanged</p>"
    "<script>document.getElementById('marker').textContent = 'script ran'</script>"
    "</body></html>"
)
"""Markup as an escaping mistake would let through, served with the landing page's headers."""


@dataclass
class Served:
    url: str
    paths: list[str]


async def run_browser(*args: str, tmp: Path) -> tuple[int, str, str]:
    """``chromium --headless=new`` with *args*; (exit code, stdout, stderr). Killed with its
    process group past :data:`BROWSER_DEADLINE_S`."""
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-proxy-server",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(BROWSER_DEADLINE_S):
            out, err = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise AssertionError(f"chromium did not finish within {BROWSER_DEADLINE_S:g} s") from None
    assert process.returncode is not None
    return process.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    """The exporter's web app on loopback with targets in every state (demo banner on), and
    a control page; every path requested is recorded."""
    view, instances = varied_view()
    app = WebApp(instances=lambda: instances, demo=True, stuck_after=3600.0)
    app.snapshot = Snapshot.from_families(families())
    app.view = view
    paths: list[str] = []

    async def handler(request: Request) -> Response:
        paths.append(request.path)
        if request.path == "/control-error":
            return Response.text(CONTROL_ERROR, content_type="text/html; charset=utf-8")
        if request.path == "/control-injected":
            return Response(200, landing.HEADERS, CONTROL_INJECTED.encode())
        return await app(request)

    async with HTTPServer(handler, host="127.0.0.1", port=0) as server:
        yield Served(server.url, paths)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> bytes:
    """The PNG's decompressed image data (filter bytes included)."""
    offset, chunks = 8, []
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    return zlib.decompress(b"".join(chunks))


async def test_the_landing_page_renders_in_a_headless_browser_without_console_errors(
    served: Served, tmp_path: Path
) -> None:
    url = f"{served.url}/"
    screenshot = tmp_path / "landing.png"
    code, _, err = await run_browser(
        f"--screenshot={screenshot}", f"--window-size={WIDTH},{HEIGHT}", url, tmp=tmp_path
    )
    assert code == 0, err[-2000:]
    data = screenshot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    # a blank or error page is a few kB; the tables, colours and text are far more
    assert len(data) > 30_000, len(data)
    pixels = png_pixels(data)
    assert len(set(pixels)) > 64 and pixels.count(0xFF) < 0.98 * len(pixels)

    code, dom, err = await run_browser(
        "--enable-logging=stderr", "--v=0", "--dump-dom", url, tmp=tmp_path
    )
    assert code == 0, err[-2000:]
    assert console_lines(err) == [], console_lines(err)
    # the DOM as the browser built it: the tables, the banner, the hostile name as text
    assert '<table id="targets">' in dom and '<table id="instances">' in dom
    assert dom.count('<td class="h">failed</td>') == 3
    assert '<td class="h">stuck</td>' in dom
    assert 'class="banner"' in dom and "simulated" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and HOSTILE not in dom
    assert "<script" not in dom
    # nothing but the page itself was requested: no asset (and its icon is inline)
    assert set(served.paths) == {"/"}, served.paths


async def test_the_console_check_sees_a_script_error_and_the_page_policy_blocks_scripts(
    served: Served, tmp_path: Path
) -> None:
    """Controls for the test above, in the same browser: an uncaught error is logged where the
    check looks; the page's requests are recorded (its image; not necessarily a favicon, which
    is fetched after the load event, when the browser may already be exiting); and under the
    landing page's own headers an injected script does not run, and the browser says so."""
    code, dom, err = await run_browser(
        "--enable-logging=stderr", "--v=0", "--dump-dom", f"{served.url}/control-error",
        tmp=tmp_path,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert '<table id="targets">' in dom
    assert any("control page error" in line for line in console_lines(err)), err[-3000:]
    assert "/missing.png" in served.paths, served.paths

    code, dom, err = await run_browser(
        "--enable-logging=stderr", "--v=0", "--dump-dom", f"{served.url}/control-injected",
        tmp=tmp_path,
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert '<p id="marker">unchanged</p>' in dom
    blocked = [line for line in console_lines(err) if "Content Security Policy" in line]
    assert any("inline script" in line for line in blocked), err[-3000:]
