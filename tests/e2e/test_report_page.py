"""The drilldown report in a real browser: Debian's Chromium, driven headless by Playwright.

After the e2e load, the report of the window is written and served on loopback, then opened: it loads with
no console error and no request off the machine; every exemplar point on its charts names a trace Jaeger
returns; clicking one opens that trace's waterfall with the spans Jaeger holds, across gateway,
orchestrator and inference, each beside its operation's span-metrics figures from Prometheus; the
guarantee's figures are deploy.stack.guarantee's. A screenshot is written under the test's temporary
directory; its path, the page's size and its render time come out with ``-s``.

Chromium is Debian's package (scripts/install-browser.sh installs it); without it the test skips, and
fails under CI=true.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page, Request, Route, sync_playwright

from deploy.local.drilldown import find_slowest
from deploy.local.report import ReportData, ReportServer, collect, write_report
from deploy.local.report.collect import SERVICE_HISTOGRAMS, in_window, load_window, wait_until_settled
from deploy.series_names import SPAN_CALLS
from deploy.stack import LOOPBACK, Span, poll_until
from deploy.stack.guarantee import GuaranteeFigures, measure
from tests.support.ci import missing
from tests.support.loaded import LoadedBackends

SERVICES = {"gateway", "orchestrator", "inference"}
LOOPBACK_HOSTS = {LOOPBACK, "localhost", "::1"}


@dataclass
class OpenedReport:
    loaded: LoadedBackends
    data: ReportData
    figures: GuaranteeFigures
    path: Path
    size: int
    page: Page
    console_errors: list[str] = field(default_factory=list)
    off_machine: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        missing("Debian's chromium is not installed (scripts/install-browser.sh installs it)")
    return path


def _services(spans: list[Span]) -> set[str]:
    return {s.service_name for s in spans}


@pytest.fixture(scope="module")
def opened(
    loaded_backends: LoadedBackends, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OpenedReport]:
    chromium = _chromium()
    stack = loaded_backends.stack
    start, end = load_window(loaded_backends.load_started, loaded_backends.load_finished)
    # as the main job does: once the slowest exemplar's trace is whole in Jaeger, the guarantee's figures
    find_slowest(stack.prometheus, stack.jaeger, window_s=time.time() - start)
    figures = measure(
        stack.prometheus,
        stack.jaeger,
        loaded_backends.load_started,
        time.time(),
        served=len(loaded_backends.report.latencies),
    )

    wait_until_settled(end)

    def complete_report() -> ReportData | None:
        data = collect(stack.prometheus, stack.jaeger, start, end, guarantee=figures)
        slowest = data.traces.get(data.slowest or "")
        return data if slowest and _services(slowest) >= SERVICES else None

    data = poll_until(complete_report, "a report whose slowest exemplar's trace spans 3 services", 60)
    directory = tmp_path_factory.mktemp("report")
    path = directory / "report.html"
    size = write_report(data, path)
    with ReportServer(directory) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        report = OpenedReport(loaded_backends, data, figures, path, size, page)

        def guard(route: Route, request: Request) -> None:
            # the page must need nothing; anything not on loopback is recorded and never sent
            report.requests.append(request.url)
            if urlsplit(request.url).hostname in LOOPBACK_HOSTS:
                route.continue_()
            else:
                report.off_machine.append(request.url)
                route.abort()

        page.route("**/*", guard)
        page.on("console", lambda m: report.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: report.console_errors.append(f"uncaught: {exc}"))
        page.goto(server.url(path))
        page.wait_for_selector("html[data-ready=true]", timeout=30_000)
        yield report
        browser.close()


def test_page_loads_with_no_console_error_and_no_request_off_the_machine(opened: OpenedReport) -> None:
    assert opened.console_errors == []
    assert opened.off_machine == []
    assert len(opened.requests) == 1, opened.requests  # the page itself: everything else is inline
    rendered_ms = opened.page.evaluate("performance.getEntriesByName('report-rendered')[0].startTime")
    print(
        f"\n[report page] {opened.size} bytes, rendered in {rendered_ms:.0f} ms "
        f"({len(opened.data.traces)} traces embedded)"
    )


def test_every_exemplar_point_names_a_trace_jaeger_returns(opened: OpenedReport) -> None:
    page, jaeger = opened.page, opened.loaded.stack.jaeger
    for service, _ in SERVICE_HISTOGRAMS:
        points = page.locator(f"#histogram-{service} a.exemplar")
        assert points.count() > 0, f"no exemplar point on {service}'s chart"
    ids = set(page.eval_on_selector_all("a.exemplar", "els => els.map(e => e.dataset.traceId)"))
    stored = {exemplar.trace_id for h in opened.data.histograms for exemplar in h.exemplars}
    assert ids == stored
    unresolved = sorted(t for t in ids if not jaeger.get_trace(t))
    assert unresolved == [], f"{len(unresolved)} of {len(ids)} exemplar traces not in Jaeger"
    # the page's own copy of each trace is Jaeger's: same span names per service, nothing invented
    for trace_id, spans in opened.data.traces.items():
        in_jaeger = {(s.service_name, s.name, s.span_id) for s in jaeger.get_trace(trace_id)}
        assert {(s.service_name, s.name, s.span_id) for s in spans} <= in_jaeger


def test_clicking_an_exemplar_opens_its_waterfall_across_the_three_services(
    opened: OpenedReport, tmp_path: Path
) -> None:
    page, jaeger = opened.page, opened.loaded.stack.jaeger
    assert page.get_attribute("#trace-view", "data-trace-id") == opened.data.slowest
    # an inference exemplar's request went through every service; another than the one already open, and
    # one no other diamond covers, as a person would pick
    page.locator("#histogram-inference").scroll_into_view_if_needed()
    on_top = page.eval_on_selector_all(
        "#histogram-inference a.exemplar:not(.hidden)",
        """els => els.filter(e => {
            const r = e.getBoundingClientRect();
            return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === e;
        }).map(e => e.dataset.traceId)""",
    )
    candidates = [
        t for t in on_top if t != opened.data.slowest and _services(jaeger.get_trace(t)) >= SERVICES
    ]
    assert candidates, "no visible inference exemplar besides the slowest"
    chosen = candidates[0]
    page.locator(f'#histogram-inference a.exemplar[data-trace-id="{chosen}"]').first.click()
    page.wait_for_selector(f'#trace-view[data-trace-id="{chosen}"]')
    rows = page.eval_on_selector_all(
        "#trace-view tr.span", "rows => rows.map(r => [r.dataset.service, r.dataset.name])"
    )
    spans = jaeger.get_trace(chosen)
    assert sorted(map(tuple, rows)) == sorted((s.service_name, s.name) for s in spans)
    assert {service for service, _ in rows} == SERVICES
    assert page.locator(f'a.exemplar.selected[data-trace-id="{chosen}"]').count() >= 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    print(f"\n[report page] screenshot {shot} (trace {chosen}, {len(rows)} spans)")


def test_each_span_sits_beside_its_operations_span_metrics_from_prometheus(opened: OpenedReport) -> None:
    page, prometheus, data = opened.page, opened.loaded.stack.prometheus, opened.data
    rows = page.eval_on_selector_all(
        "#trace-view tr.span",
        "rows => rows.map(r => [r.dataset.service, r.dataset.name, r.dataset.kind,"
        " r.querySelector('td.red .red-figures b')?.textContent ?? null,"
        " r.querySelectorAll('td.red canvas').length])",
    )
    assert rows
    window = f"{round(data.end - data.start)}s"
    for service, name, kind, calls, canvases in rows:
        assert calls is not None, f"{service} {name}: no span metrics beside the span"
        assert canvases >= 2, f"{service} {name}: no RED sparklines"
        selector = f'{SPAN_CALLS}{{service_name="{service}", span_name="{name}", span_kind="{kind}"}}'
        found = prometheus.query(in_window("sum", selector, window), at=data.end)
        assert found, f"{service} {name}: no span-metrics series in Prometheus"
        assert int(calls) == round(found[0].value) > 0
    # The root span's operation counted every request of the load (the rows' counts are Prometheus's,
    # checked above). Other tests of the session share these backends and may send a request within the
    # window's settling time after the load, so the load is a floor, not the exact count.
    root_service, _, root_kind, root_calls, _ = rows[0]
    assert (root_service, root_kind) == ("gateway", "SPAN_KIND_SERVER")
    assert int(root_calls) >= sum(opened.loaded.report.statuses.values())


def test_guarantee_figures_are_the_measured_ones(opened: OpenedReport) -> None:
    figures = opened.figures
    assert figures.exemplar_traces > 0
    assert figures.coverage.with_data > 0
    assert opened.page.inner_text("#guarantee-resolved .big") == f"{figures.resolved_share:.0%}"
    assert opened.page.inner_text("#guarantee-coverage .big") == f"{figures.coverage.share:.0%}"
    detail = opened.page.inner_text("#guarantee-kept .detail")
    assert f"{figures.traces_kept} traces kept" in detail
    assert f"of {figures.traces_served} served" in detail
