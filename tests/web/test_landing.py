"""The landing page over real loopback HTTP: per-target and per-instance health, escaping of
hostile API data, the demo banner, the row cap, and that it is rendered once per view."""

from __future__ import annotations

import asyncio
from html.parser import HTMLParser

import httpx
import pytest

from exporter.core.contract import PollStatus
from exporter.core.exposition import Snapshot
from exporter.core.instance import InstanceState
from exporter.core.ledger import InstanceLedger
from exporter.core.tracker import TrackerState
from exporter.web import landing
from exporter.web.app import InstanceSummary, WebApp
from exporter.web.server import HTTPServer

from .landing_views import (
    HOSTILE,
    INSTANCE,
    OTHER,
    job,
    many_ok_state,
    polls,
    summaries,
    varied_state,
    varied_view,
    view_of,
)
from .test_web import families

_VOID = frozenset({"br", "meta", "link", "img", "hr", "input"})


class Tables(HTMLParser):
    """Every ``<table id=…>`` of a page as rows of cell texts (header row included), the
    text of every ``class="banner"`` element and the page's whole visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.banners: list[str] = []
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._banner_depth = 0
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in _VOID:
            if tag == "br" and self._cell is not None:
                self._cell.append(" ")
            return
        self._depth += 1
        if tag == "table" and attributes.get("id"):
            self._table = attributes["id"]
            self.tables[self._table or ""] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []
        if "banner" in (attributes.get("class") or "").split() and not self._banner_depth:
            self._banner_depth = self._depth
            self.banners.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None
        if self._banner_depth == self._depth:
            self._banner_depth = 0
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._banner_depth:
            self.banners[-1] += data
        self.text.append(data)


def parse(page: str) -> Tables:
    tables = Tables()
    tables.feed(page)
    tables.close()
    return tables


def rows(page: str, table: str) -> list[dict[str, str]]:
    """The body rows of *table* as header → cell text."""
    found = parse(page).tables[table]
    header, *body = found
    return [dict(zip(header, row, strict=True)) for row in body]


NOW = 1_764_000_000.0
"""The moment every view here is built at and the page's clock reads (ages are exact)."""


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landing, "wall_clock", lambda: NOW)


def make_app(*, demo: bool = False, landing_rows: int = 50) -> WebApp:
    view, instances = varied_view(NOW)
    app = WebApp(
        instances=lambda: instances,
        demo=demo,
        stuck_after=3600.0,
        landing_rows=landing_rows,
    )
    app.snapshot = Snapshot.from_families(families())
    app.view = view
    return app


async def get_landing(app: WebApp) -> httpx.Response:
    async with (
        HTTPServer(app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        response = await client.get(f"{server.url}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    return response


async def test_targets_show_what_fails_now_first_with_the_age_of_their_last_success() -> None:
    page = (await get_landing(make_app())).text
    targets = rows(page, "targets")
    by_id = {row["Target"].split()[-1]: row for row in targets}
    # failing first (failed, partially succeeded), then stuck, in progress, healthy
    order = [row["Health"] for row in targets]
    assert order == sorted(order, key=landing.HEALTH_ORDER.index), order
    assert order[:3] == ["failed"] * 3
    assert by_id["idp_partial"]["Health"] == "partial success"
    assert by_id["idp_stuck"]["Health"] == "stuck"
    assert by_id["idp_running"]["Health"] == "in progress"
    assert by_id["idp_pending"]["Health"] == "in progress"
    assert by_id["idp_ok"]["Health"] == "ok"
    # the age of the last success, and "never" for a target that never succeeded
    assert by_id["idp_failed"]["Last success"] == "2 h ago"
    assert by_id["idp_partial"]["Last success"] == "1 d ago"
    assert by_id["idp_ok"]["Last success"] == "1 min ago"
    assert by_id["idp_never"]["Last success"].startswith("never")
    assert by_id["idp_pending"]["Last success"].startswith("never")
    # the latest terminal job and its age; what is in progress and for how long
    assert by_id["idp_failed"]["Last job"] == "failed 10 min ago"
    assert by_id["idp_pending"]["Last job"] == "none yet"
    assert by_id["idp_stuck"]["In progress"] == "1, oldest for 3 h"
    assert by_id["idp_running"]["In progress"] == "1, oldest for 30 s"
    assert by_id["idp_ok"]["In progress"] == "0"
    # names from ListIdentityProviders/ListApplications, and the instance
    assert by_id["idp_failed"]["Target"] == "Corporate AD identity_provider idp_failed"
    assert by_id["idp_failed"]["Instance"] == INSTANCE
    assert by_id["idp_failed"]["Direction"] == "ingress"
    summary = " ".join("".join(parse(page).text).split())
    assert "11 targets: 3 failed, 1 partial success, 1 stuck, 2 in progress, 4 ok" in summary
    assert "stuck: in progress for more than 1 h" in summary


async def test_a_target_removed_from_idaas_is_not_listed_but_counted() -> None:
    state = varied_state(NOW)
    names = dict(state.target_names)
    del names[("identity_provider", "idp_never")]  # the latest names listing lacks it
    state = InstanceState(state.tracker, state.ledger, names)
    status = polls(NOW)
    app = WebApp(instances=lambda: summaries(status))
    app.view = view_of({INSTANCE: state}, status)
    page = (await get_landing(app)).text
    assert "idp_never" not in page
    assert len(rows(page, "targets")) == 7
    assert "1 target removed from IDaaS not shown" in " ".join(parse(page).text)


async def test_instances_show_their_last_poll_and_the_age_of_the_last_successful_one() -> None:
    page = (await get_landing(make_app())).text
    instances = {row["Instance"]: row for row in rows(page, "instances")}
    assert list(instances) == [OTHER, INSTANCE]  # failing first
    assert instances[OTHER]["Last poll"] == "error Throttling, 5 s ago"
    assert instances[OTHER]["Last successful poll"] == "15 min ago"
    assert instances[INSTANCE]["Last poll"] == "ok, 10 s ago"
    assert instances[INSTANCE]["Last successful poll"] == "10 s ago"
    assert instances[INSTANCE]["Jobs in progress"] == "3"
    assert instances[INSTANCE]["Failing targets"] == "5"  # failed, partial, stuck
    assert instances[OTHER]["Failing targets"] == "0"
    assert instances[INSTANCE]["Endpoint"] == "https://eiam.cn-hangzhou.aliyuncs.com/"


async def test_an_instance_that_never_polled_successfully_says_so() -> None:
    now = NOW
    failing = PollStatus().after_poll(ok=False, code="Forbidden.RAM", now=now - 3, duration=1)
    app = WebApp(instances=lambda: summaries({"idaas_new": failing}))
    app.view = view_of({"idaas_new": InstanceState.initial()}, {"idaas_new": failing})
    page = (await get_landing(app)).text
    (row,) = rows(page, "instances")
    assert row["Last poll"] == "error Forbidden.RAM, 3 s ago"
    assert row["Last successful poll"] == "never"
    assert rows(page, "targets") == []
    assert "No target known yet" in page


async def test_before_the_first_render_the_page_still_answers() -> None:
    app = WebApp()  # no view published yet
    page = (await get_landing(app)).text
    assert 'href="/metrics"' in page
    assert "No target known yet" in page


@pytest.mark.parametrize(
    "hostile",
    [
        HOSTILE,
        '"><img src=x onerror=alert(1)>',
        "</style><script>alert(1)</script>",
        "&lt;b&gt; already escaped",
        "'; background:url(//evil.example/x)",
    ],
)
async def test_everything_from_the_api_is_escaped(hostile: str) -> None:
    now = NOW
    hostile_job = job("h1", hostile, "failed", end_ago_s=60, now=now, target_type=hostile)
    state = InstanceState(
        tracker=TrackerState.initial(),
        ledger=InstanceLedger().with_jobs([hostile_job]),
        target_names={(hostile, hostile): hostile},
    )
    status = PollStatus().after_poll(ok=False, code=hostile, now=now, duration=1)
    rows_in = summaries({INSTANCE: status})
    rows_in[0] = InstanceSummary(**{**_fields(rows_in[0]), "endpoint": f"http://{hostile}/"})
    app = WebApp(instances=lambda: rows_in, telemetry_path=f"/m{hostile}")
    app.view = view_of({INSTANCE: state}, {INSTANCE: status})
    response = await get_landing(app)
    page = response.text
    assert hostile not in page
    assert "<script" not in page and "<img" not in page
    assert page.count("<style>") == 1 and page.count("</style>") == 1
    (target,) = rows(page, "targets")
    assert hostile in target["Target"]  # shown, as text
    # and even a mistake in escaping could not run a script: the page forbids them
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def _fields(summary: InstanceSummary) -> dict[str, object]:
    return {name: getattr(summary, name) for name in InstanceSummary.__slots__}


async def test_no_secret_of_an_endpoint_reaches_the_page() -> None:
    secret = "s3cr3t-AccessKeySecret"
    endpoint = f"https://LTAI5tUser:{secret}@eiam.example.com:8443/path?AccessKeySecret={secret}"
    now = NOW
    status = PollStatus().after_poll(ok=True, code=None, now=now, duration=1)
    (row,) = summaries({INSTANCE: status})
    row = InstanceSummary(**{**_fields(row), "endpoint": endpoint})
    app = WebApp(instances=lambda: [row])
    app.view = view_of({INSTANCE: InstanceState.initial()}, {INSTANCE: status})
    page = (await get_landing(app)).text
    assert secret not in page and "LTAI5tUser" not in page
    (shown,) = rows(page, "instances")
    assert shown["Endpoint"] == "https://eiam.example.com:8443/path"


async def test_demo_mode_shows_a_banner_that_the_data_is_simulated() -> None:
    demo = parse((await get_landing(make_app(demo=True))).text)
    (banner,) = demo.banners
    assert "simulated" in banner and "built-in simulator" in banner
    assert "not from Alibaba Cloud IDaaS" in banner
    assert parse((await get_landing(make_app(demo=False))).text).banners == []


async def test_rows_are_capped_failing_first_and_the_rest_counted() -> None:
    now = NOW
    status = polls(now)
    view = view_of(
        {INSTANCE: varied_state(now), OTHER: many_ok_state(now, 500, name="x" * 5000)}, status
    )
    app = WebApp(instances=lambda: summaries(status), landing_rows=20)
    app.view = view
    page = (await get_landing(app)).text
    shown = rows(page, "targets")
    assert len(shown) == 20
    health = [row["Health"] for row in shown]
    assert health[:7] == [*["failed"] * 3, "partial success", "stuck", *["in progress"] * 2]
    assert set(health[7:]) == {"ok"}
    assert "488 more targets not shown (all ok)" in " ".join(parse(page).text)
    # a hostile tenant's names are shortened, so the page stays small
    assert len(page.encode()) < 40_000
    assert all(len(row["Target"]) < 200 for row in shown)


async def test_more_failing_targets_than_rows_says_how_many_fail_unseen() -> None:
    now = NOW
    failing = [job(f"f{n}", f"idp_{n:04d}", "failed", end_ago_s=60, now=now) for n in range(300)]
    ledger = InstanceLedger().with_jobs(failing)
    state = InstanceState(tracker=TrackerState.initial(), ledger=ledger)
    status = polls(now)
    app = WebApp(instances=lambda: summaries(status), landing_rows=50)
    app.view = view_of({INSTANCE: state}, status)
    page = (await get_landing(app)).text
    assert len(rows(page, "targets")) == 50
    assert "250 more targets not shown (250 failing)" in " ".join(parse(page).text)


async def test_instances_are_capped_too() -> None:
    now = NOW
    status = {
        f"idaas_{n:04d}": PollStatus().after_poll(ok=True, code=None, now=now, duration=1)
        for n in range(300)
    }
    app = WebApp(instances=lambda: summaries(status), landing_rows=50)
    app.view = view_of({iid: InstanceState.initial() for iid in status}, status)
    page = (await get_landing(app)).text
    assert len(rows(page, "instances")) == 100
    assert "200 more instances not shown" in " ".join(parse(page).text)


async def test_the_page_is_rendered_once_per_view_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    renders: list[str] = []
    real = landing.render_page

    def counting(*args: object, **kwargs: object) -> str:
        renders.append(threading.current_thread().name)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(landing, "render_page", counting)
    app = make_app()
    async with (
        HTTPServer(app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        metrics_before = (await client.get(f"{server.url}/metrics")).content
        pages = await asyncio.gather(*(client.get(f"{server.url}/") for _ in range(20)))
        assert {p.text for p in pages} == {pages[0].text}
        assert len(renders) == 1
        assert renders[0] != threading.main_thread().name
        # a new view (a poll committed) renders again
        app.view = varied_view(NOW)[0]
        await client.get(f"{server.url}/")
        assert len(renders) == 2
        # /metrics is untouched by the page
        metrics_after = (await client.get(f"{server.url}/metrics")).content
    strip = [b for b in metrics_before.split(b"\n") if not b.startswith((b"process_", b"python_"))]
    after = [b for b in metrics_after.split(b"\n") if not b.startswith((b"process_", b"python_"))]
    assert strip == after
    assert b"idaas_sync_jobs" in metrics_after


async def test_the_ages_on_a_cached_page_are_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    first = (await get_landing(app)).text
    assert "as of" in first
    monkeypatch.setattr(landing, "wall_clock", lambda: NOW + 600)
    assert landing.PAGE_MAX_AGE_S < 600
    page = (await get_landing(app)).text
    later = {row["Target"].split()[-1]: row for row in rows(page, "targets")}
    assert later["idp_ok"]["Last success"] == "11 min ago"


async def test_head_of_the_landing_page_has_its_length_and_no_body() -> None:
    app = make_app()
    async with (
        HTTPServer(app, host="127.0.0.1", port=0) as server,
        httpx.AsyncClient(timeout=10) as client,
    ):
        page = await client.get(f"{server.url}/")
        head = await client.head(f"{server.url}/")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(page.content)
