"""From a latency histogram to the slowest request's trace: what the terminal shows after a load.

1. Prometheus: the request-duration quantiles over the window, and the exemplars of its buckets;
2. the slowest exemplar (its bucket, value, trace id);
3. Jaeger: that trace, rendered as a tree of spans across the services with durations and key attributes;
4. the exemplar guarantee's figures (deploy.stack.guarantee): traces kept of those served, exemplars that
   resolve to a kept trace, and bucket coverage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from deploy.stack import Exemplar, JaegerClient, PrometheusClient, Span, poll_until
from deploy.stack.guarantee import GuaranteeFigures
from services.common import semconv as service_sc
from telemetry import semconv as sc

REQUEST_DURATION = sc.HTTP_SERVER_REQUEST_DURATION.prometheus_name
KEY_ATTRIBUTES = (
    sc.HTTP_ROUTE,
    sc.HTTP_RESPONSE_STATUS_CODE,
    sc.GEN_AI_REQUEST_MODEL,
    sc.GEN_AI_REQUEST_STREAM,
    sc.GEN_AI_USAGE_INPUT_TOKENS,
    sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    sc.GEN_AI_RESPONSE_FINISH_REASONS,
    service_sc.LLM_STAGE,
    sc.LLM_ENGINE_BATCH_REQUESTS,
    sc.LLM_ENGINE_ADMISSION_KV_CACHE_USAGE,
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    sc.LLM_ENGINE_REQUEST_PREEMPTIONS,
    sc.RPC_RESPONSE_STATUS_CODE,
    service_sc.LLM_GATEWAY_CACHE_HIT,
    sc.HW_ID,
    f"{sc.LLM_GPU_UTILIZATION}.start",
    f"{sc.LLM_GPU_MEMORY_USAGE}.start",
    sc.ERROR_TYPE,
    sc.LLM_EXEMPLAR,
)


@dataclass(frozen=True)
class Drilldown:
    quantiles: dict[str, float]
    bucket: str
    exemplar: Exemplar
    spans: list[Span]
    guarantee: GuaranteeFigures | None = None
    batches: list[str] = field(default_factory=list)
    """What :func:`batch_membership` says of the trace's engine requests."""


def batch_membership(jaeger: JaegerClient, spans: Sequence[Span]) -> list[str]:
    """For each span the engine served (it links to the batches it was admitted into): who it was batched
    with, read from those batch spans' own links, and the KV cache's state when it was admitted."""
    lines = []
    for span in spans:
        if sc.LLM_ENGINE_BATCHES not in span.attributes:
            continue
        attributes = span.attributes
        members: set[str] = set()
        sizes = []
        found = 0
        for trace_id, span_id in span.links:
            batch = next((b for b in jaeger.get_trace(trace_id) if b.span_id == span_id), None)
            if batch is None:  # not stored: sampled out, or not exported yet
                continue
            found += 1
            members.update(member for _, member in batch.links)
            sizes.append(int(batch.attributes.get(sc.LLM_ENGINE_BATCH_REQUESTS, len(batch.links))))
        members.discard(span.span_id)
        batches = int(attributes[sc.LLM_ENGINE_BATCHES])
        if found:
            who = (
                f"batched with {len(members)} other requests in the batch it was admitted into ({found} "
                f"batch span{'s' if found > 1 else ''} read from Jaeger, the largest of "
                f"{max(sizes)} request{'s' if max(sizes) != 1 else ''}), "
                f"in {batches} batches in all"
            )
        else:
            who = (
                f"batched with {int(attributes.get(sc.LLM_ENGINE_BATCH_REQUESTS, 1)) - 1} other requests at "
                f"admission (the batch's trace is not stored), in {batches} batches in all"
            )
        usage = float(attributes.get(sc.LLM_ENGINE_ADMISSION_KV_CACHE_USAGE, 0.0))
        lines.append(
            f"{span.service_name} {span.name}: {who}; at admission the KV cache was {usage:.0%} used with "
            f"{attributes.get(sc.LLM_ENGINE_ADMISSION_WAITING, 0)} waiting; the prefix cache served "
            f"{attributes.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0)} of "
            f"{attributes.get(sc.GEN_AI_USAGE_INPUT_TOKENS, '?')} prompt tokens; preempted "
            f"{attributes.get(sc.LLM_ENGINE_REQUEST_PREEMPTIONS, 0)} times"
        )
    return lines


def find_slowest(
    prometheus: PrometheusClient,
    jaeger: JaegerClient,
    window_s: float,
    job: str = "gateway",
    timeout: float = 60.0,
) -> Drilldown:
    """The slowest exemplar of ``job``'s request-duration histogram in the window, and its full trace."""
    end = time.time()
    selector = f'{REQUEST_DURATION}_bucket{{job="{job}"}}'

    candidates: list[tuple[str, Exemplar]] = []

    def slowest() -> tuple[str, Exemplar] | None:
        series = prometheus.query_exemplars(selector, end - window_s, time.time())
        candidates[:] = [
            (s.series_labels.get("le", "?"), e) for s in series for e in s.exemplars if e.trace_id
        ]
        return max(candidates, key=lambda c: c[1].value) if candidates else None

    bucket, exemplar = poll_until(slowest, f"an exemplar on {selector}", timeout=timeout)
    trace_id = exemplar.trace_id
    assert trace_id is not None
    # The whole trace: every service's spans, not only the first batch Jaeger happened to receive.
    spans = poll_until(
        lambda: _complete_trace(jaeger, trace_id), f"trace {trace_id} in Jaeger", timeout=timeout
    )
    quantiles = {}
    for q in ("0.5", "0.95", "0.99"):
        result = prometheus.query(
            f"histogram_quantile({q}, sum by (le) (rate({selector}[{int(window_s)}s])))"
        )
        if result:
            quantiles[f"p{float(q) * 100:g}"] = result[0].value
    return Drilldown(quantiles, bucket, exemplar, spans, batches=batch_membership(jaeger, spans))


def _complete_trace(jaeger: JaegerClient, trace_id: str) -> list[Span] | None:
    spans = jaeger.get_trace(trace_id)
    services = {s.service_name for s in spans}
    return spans if {"gateway", "orchestrator", "inference"} <= services else None


def render_tree(spans: Sequence[Span]) -> list[str]:
    """Spans as an indented tree: service, name, duration, offset from the root, key attributes."""
    by_parent: dict[str, list[Span]] = {}
    ids = {s.span_id for s in spans}
    for span in spans:
        parent = span.parent_span_id if span.parent_span_id in ids else ""
        by_parent.setdefault(parent, []).append(span)
    for children in by_parent.values():
        children.sort(key=lambda s: s.start_ns)
    roots = by_parent.get("", [])
    origin = min((s.start_ns for s in spans), default=0)
    lines: list[str] = []

    def walk(span: Span, prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        duration_ms = (span.end_ns - span.start_ns) / 1e6
        offset_ms = (span.start_ns - origin) / 1e6
        status = "  ✗ ERROR" if span.status_code in {"STATUS_CODE_ERROR", "ERROR"} else ""
        lines.append(
            f"{prefix}{branch}{span.service_name:<12} {span.name:<42} {duration_ms:9.1f} ms"
            f"  @+{offset_ms:7.1f} ms{status}"
        )
        attributes = _key_attributes(span.attributes)
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        if attributes:
            lines.append(
                f"{child_prefix}{'   ' if not by_parent.get(span.span_id) else '│  '}    {attributes}"
            )
        children = by_parent.get(span.span_id, [])
        for i, child in enumerate(children):
            walk(child, child_prefix, i == len(children) - 1, depth + 1)

    for root in roots:
        walk(root, "", True, 0)
    return lines


def _key_attributes(attributes: dict[str, Any]) -> str:
    shown = []
    for key in KEY_ATTRIBUTES:
        if key in attributes:
            value = attributes[key]
            if isinstance(value, float):
                value = f"{value:.3g}"
            shown.append(f"{key}={value}")
    return "  ".join(shown)


def render(drill: Drilldown, prometheus_url: str, jaeger_url: str) -> str:
    trace_id = drill.exemplar.trace_id
    quantiles = "  ".join(f"{k}={v * 1000:.0f} ms" for k, v in drill.quantiles.items())
    out = [
        "",
        "── Drilldown: from the latency histogram to the slowest trace " + "─" * 30,
        f"gateway {REQUEST_DURATION}: {quantiles}",
        f"slowest exemplar: {drill.exemplar.value * 1000:.0f} ms in bucket le={drill.bucket}, "
        f"trace_id={trace_id}",
        *(drill.guarantee.lines() if drill.guarantee else []),
        "",
        *render_tree(drill.spans),
        *(["", *drill.batches] if drill.batches else []),
        "",
        f"Prometheus: {prometheus_url}/api/v1/query_exemplars?query={REQUEST_DURATION}_bucket",
        f"Jaeger:     {jaeger_url}/api/v3/traces/{trace_id}",
    ]
    return "\n".join(out)
