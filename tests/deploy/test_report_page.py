"""deploy.local.report.page: the report is one self-contained file carrying exactly what it was given.

The page in a real browser against real backends is tests/e2e/test_report_page.py; here, what the HTML
holds: a policy that forbids loading anything, no external reference, the data as given (spans in start
order with their parents, key attributes only), and a clear error when the plotting library is missing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from deploy.local.report import ReportAssetError, ReportData, page as page_module, render_html, write_report
from deploy.local.report.collect import ExemplarPoint, OperationSeries, ServiceHistogram
from deploy.stack import Span
from deploy.stack.guarantee import Coverage, GuaranteeFigures
from tests.support.ci import missing

TRACE = "0af7651916cd43dd8448eb211c80319c"
T0 = 1_765_000_000
_KEY = {"gen_ai.request.model": "m1", "llm.stage": "decode"}


def _span(span_id: str, parent: str, service: str, name: str, *, start_ms: int, end_ms: int) -> Span:
    return Span(
        trace_id=TRACE,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind="SPAN_KIND_SERVER",
        service_name=service,
        start_ns=(T0 * 1000 + start_ms) * 1_000_000,
        end_ns=(T0 * 1000 + end_ms) * 1_000_000,
        status_code="STATUS_CODE_UNSET",
        attributes={"gen_ai.request.model": "m1", "http.request.body.size": 12, "llm.stage": "decode"},
    )


def _data() -> ReportData:
    times = [float(T0 + 2 * i) for i in range(1, 4)]
    spans = [  # out of order on purpose: the page orders by start
        _span("00000000000000c3", "00000000000000b2", "inference", "decode", start_ms=40, end_ms=90),
        _span("00000000000000a1", "", "gateway", "POST /v1/chat/completions", start_ms=0, end_ms=100),
        _span(
            "00000000000000b2", "00000000000000a1", "orchestrator", "POST /v1/generate", start_ms=5, end_ms=95
        ),
    ]
    histogram = ServiceHistogram(
        service="gateway",
        metric="http_server_request_duration_seconds",
        bounds=["0.1", "1", "+Inf"],
        rates=[[0.5, 0.0, None], [1.0, 2.0, None], [0.0, 0.0, None]],
        quantiles={"p50": [0.2, 0.3, None], "p95": [0.8, 0.9, None], "p99": [0.95, 0.99, None]},
        exemplars=[ExemplarPoint(T0 + 3.5, 0.1, TRACE, "0.1")],
        requests=7.0,
        window_quantiles={"p50": 0.25, "p95": 0.85, "p99": 0.98},
    )
    operation = OperationSeries([1.0, 2.0, None], [0.0, 0.0, None], [0.1] * 3, [0.2] * 3, 6.0, 0.0, 0.2)
    return ReportData(
        start=T0,
        end=T0 + 6,
        step=2,
        times=times,
        histograms=[histogram],
        traces={TRACE: spans},
        missing=set(),
        slowest=TRACE,
        operations={("gateway", "POST /v1/chat/completions", "SPAN_KIND_SERVER"): operation},
        guarantee=GuaranteeFigures(10, 10, 4, 4, (), Coverage(8, 6)),
        prometheus_url="http://127.0.0.1:9090",
        jaeger_url="http://127.0.0.1:16686",
        title="round </script> 1",
    )


@pytest.fixture(autouse=True)
def _uplot_installed(request: pytest.FixtureRequest) -> None:
    if "monkeypatch" not in request.fixturenames and not (page_module.UPLOT / "uPlot.iife.min.js").is_file():
        missing(f"uPlot is not installed in {page_module.UPLOT} (scripts/bootstrap.sh installs it with npm)")


def _embedded(html: str) -> dict[str, object]:
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', html, re.S)
    assert match, "no embedded data"
    loaded: dict[str, object] = json.loads(match.group(1))
    return loaded


def test_page_forbids_loading_anything_and_references_nothing_outside() -> None:
    html = render_html(_data())
    assert f'http-equiv="Content-Security-Policy" content="{page_module.CSP}"' in html
    assert "default-src 'none'" in page_module.CSP
    assert not re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)=", html, re.I)
    assert "round &lt;/script&gt; 1" in html  # the title is text, never markup


def test_embedded_trace_is_the_given_spans_in_start_order_with_key_attributes_only() -> None:
    data = _embedded(render_html(_data()))
    assert data["services"] == ["gateway", "inference", "orchestrator"]
    trace = data["traces"][TRACE]  # type: ignore[index]
    assert trace["start"] == T0
    assert trace["spans"] == [
        [-1, 0, "POST /v1/chat/completions", "SPAN_KIND_SERVER", 0, 100_000, 0, _KEY],
        [0, 2, "POST /v1/generate", "SPAN_KIND_SERVER", 5_000, 90_000, 0, _KEY],
        [1, 1, "decode", "SPAN_KIND_SERVER", 40_000, 50_000, 0, _KEY],
    ]
    histogram = data["histograms"][0]  # type: ignore[index]
    assert histogram["exemplars"] == [[T0 + 3.5, 0.1, TRACE, "0.1"]]
    assert histogram["rates"][2] == [0.0, 0.0, None]
    assert data["operations"][0]["totalCalls"] == 6.0  # type: ignore[index]


def test_guarantee_cards_show_the_measured_shares() -> None:
    html = render_html(_data())
    assert '<div class=card id="guarantee-resolved"><div class=big>100%</div>' in html
    assert '<div class=card id="guarantee-coverage"><div class=big>75%</div>' in html
    assert "10 traces kept by Jaeger of 10 served" in html


def test_without_uplot_the_error_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(page_module, "UPLOT", tmp_path / "node_modules" / "uplot" / "dist")
    with pytest.raises(ReportAssetError, match=r"scripts/bootstrap\.sh installs it with npm"):
        write_report(_data(), tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_write_report_returns_the_size_in_bytes(tmp_path: Path) -> None:
    size = write_report(_data(), tmp_path / "deeper" / "r.html")
    assert size == (tmp_path / "deeper" / "r.html").stat().st_size
