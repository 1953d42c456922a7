"""The report as one self-contained HTML file: the data as JSON, our script and style, uPlot inlined.

Nothing is loaded from anywhere: the page's Content-Security-Policy allows inline script and style only,
so a browser refuses any request the page might try, and the file works the same from disk or served.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from string import Template
from typing import Any

from deploy.local.drilldown import KEY_ATTRIBUTES
from deploy.local.report.collect import ReportData
from deploy.stack import Span
from deploy.stack.guarantee import GuaranteeFigures

HERE = Path(__file__).resolve().parent
ASSETS = HERE / "assets"
UPLOT = HERE / "node_modules" / "uplot" / "dist"
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


class ReportAssetError(RuntimeError):
    """The plotting library is not installed (scripts/bootstrap.sh installs it with npm)."""


def render_html(data: ReportData) -> str:
    """The whole page as one string."""
    uplot_js, uplot_css = _uplot()
    template = Template((ASSETS / "report.html").read_text())
    return template.substitute(
        csp=CSP,
        title=html.escape(data.title),
        window=html.escape(f"{_clock(data.start)} – {_clock(data.end)} UTC ({data.end - data.start:.0f} s)"),
        guarantee=_guarantee_html(data.guarantee),
        notes="".join(f"<p class=note>{html.escape(n)}</p>" for n in data.notes),
        prometheus=html.escape(data.prometheus_url),
        jaeger=html.escape(data.jaeger_url),
        uplot_css=uplot_css,
        style=(ASSETS / "report.css").read_text(),
        uplot_js=uplot_js,
        script=(ASSETS / "report.js").read_text(),
        # "</" would end the script element early; JSON allows the escaped solidus anywhere
        data=json.dumps(payload(data), separators=(",", ":")).replace("</", "<\\/"),
    )


def write_report(data: ReportData, path: Path) -> int:
    """Write the page to ``path`` (its folder created); returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(data)
    path.write_text(text, encoding="utf-8")
    return len(text.encode("utf-8"))


def _uplot() -> tuple[str, str]:
    js, css = UPLOT / "uPlot.iife.min.js", UPLOT / "uPlot.min.css"
    if not js.is_file() or not css.is_file():
        raise ReportAssetError(
            f"no drilldown report: uPlot is not installed in {UPLOT.parents[1]} "
            "(scripts/bootstrap.sh installs it with npm; Debian: apt-get install npm)"
        )
    return js.read_text(encoding="utf-8"), css.read_text(encoding="utf-8")


def _clock(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _share(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0%}"


def _guarantee_html(figures: GuaranteeFigures | None) -> str:
    if figures is None:
        return "<p class=note>The exemplar guarantee's figures were not measured for this report.</p>"
    served = f"of {figures.traces_served} served" if figures.traces_served else "in the window"
    cards = [
        ("kept", _share(figures.kept_share) if figures.traces_served else str(figures.traces_kept),
         f"{figures.traces_kept} traces kept by Jaeger {served}"),
        ("resolved", _share(figures.resolved_share),
         f"{figures.resolved} of {figures.exemplar_traces} exemplar trace ids found in Jaeger"),
        ("coverage", _share(figures.coverage.share),
         f"{figures.coverage.covered} of {figures.coverage.with_data} (series, bucket, minute) cells with "
         "data carry a resolving exemplar"),
    ]  # fmt: skip
    html_cards = "".join(
        f'<div class=card id="guarantee-{name}"><div class=big>{html.escape(big)}</div>'
        f"<div class=label>{name}</div><div class=detail>{html.escape(detail)}</div></div>"
        for name, big, detail in cards
    )
    unresolved = (
        f"<p class=note>Not in Jaeger: {html.escape(', '.join(figures.unresolved))}</p>"
        if figures.unresolved
        else ""
    )
    return f"<div class=cards>{html_cards}</div>{unresolved}"


def payload(data: ReportData) -> dict[str, Any]:
    """What report.js reads: numbers rounded to 4 significant digits, spans as compact rows."""
    services = sorted({s.service_name for spans in data.traces.values() for s in spans})
    return {
        "step": data.step,
        "times": data.times,
        "prometheus": data.prometheus_url,
        "jaeger": data.jaeger_url,
        "services": services,
        "slowest": data.slowest,
        "missing": sorted(data.missing),
        "histograms": [
            {
                "service": h.service,
                "metric": h.metric,
                "bounds": h.bounds,
                "rates": [_rounded(row) for row in h.rates],
                "quantiles": {q: _rounded(v) for q, v in h.quantiles.items()},
                "requests": h.requests,
                "windowQuantiles": h.window_quantiles,
                "exemplars": [
                    [round(e.timestamp, 3), _round(e.value), e.trace_id, e.le] for e in h.exemplars
                ],
            }
            for h in data.histograms
        ],
        "traces": {trace_id: _trace(spans, services) for trace_id, spans in data.traces.items()},
        "operations": [
            {
                "service": service,
                "name": name,
                "kind": kind,
                "calls": _rounded(o.calls),
                "errors": _rounded(o.errors),
                "p50": _rounded(o.p50),
                "p95": _rounded(o.p95),
                "totalCalls": o.total_calls,
                "totalErrors": o.total_errors,
                "windowP95": o.window_p95,
            }
            for (service, name, kind), o in data.operations.items()
        ],
    }


def _trace(spans: list[Span], services: list[str]) -> dict[str, Any]:
    """Spans in start order as ``[parent index or -1, service index, name, kind, start µs from the trace's
    start, duration µs, error 0/1, key attributes]``."""
    ordered = sorted(spans, key=lambda s: (s.start_ns, -s.end_ns))
    index = {s.span_id: i for i, s in enumerate(ordered)}
    origin = ordered[0].start_ns
    rows = [
        [
            index.get(s.parent_span_id, -1),
            services.index(s.service_name),
            s.name,
            s.kind,
            round((s.start_ns - origin) / 1e3),
            round((s.end_ns - s.start_ns) / 1e3),
            int(s.status_code in {"STATUS_CODE_ERROR", "ERROR"}),
            {k: _attribute(s.attributes[k]) for k in KEY_ATTRIBUTES if k in s.attributes},
        ]
        for s in ordered
    ]
    return {"start": origin / 1e9, "spans": rows}


def _attribute(value: Any) -> Any:
    if isinstance(value, float):
        return _round(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return value


def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else _round(v) for v in values]
