"""The product's promise end to end: from a latency bucket in Prometheus, the exemplar leads to the trace.

Real services (separate processes) → real Collector → real Prometheus and Jaeger, after a load.
"""

from __future__ import annotations

import secrets
import time

import httpx

from deploy.local.drilldown import find_slowest, render
from deploy.stack import Span, poll_until
from services.common import semconv as service_sc
from telemetry import semconv as sc
from telemetry.options import DEFAULT_EXEMPLAR_WINDOW_S
from tests.support.loaded import LoadedBackends

SERVICES = {"gateway", "orchestrator", "inference"}


def _exemplar_trace_ids(loaded: LoadedBackends, selector: str) -> list[str]:
    def fetch() -> list[str] | None:
        series = loaded.stack.prometheus.query_exemplars(selector, loaded.load_started - 5, time.time())
        ids = [e.trace_id for s in series for e in s.exemplars if e.trace_id]
        return ids or None

    return poll_until(fetch, f"exemplars on {selector}", timeout=60)


def _trace(loaded: LoadedBackends, trace_id: str, services: set[str]) -> list[Span]:
    def fetch() -> list[Span] | None:
        spans = loaded.stack.jaeger.get_trace(trace_id)
        return spans if services <= {s.service_name for s in spans} else None

    return poll_until(fetch, f"trace {trace_id} with spans from {sorted(services)} in Jaeger", timeout=30)


def _went_upstream(spans: list[Span]) -> bool:
    """A gateway request that reached inference: not refused, not answered from the cache."""
    root = next(s for s in spans if s.service_name == "gateway" and s.kind.endswith("SERVER"))
    return root.attributes.get("http.response.status_code") == 200 and not root.attributes.get(
        service_sc.LLM_GATEWAY_CACHE_HIT, False
    )


def test_every_request_duration_exemplar_resolves_to_its_trace(loaded_backends: LoadedBackends) -> None:
    trace_ids = _exemplar_trace_ids(
        loaded_backends, 'http_server_request_duration_seconds_bucket{job="gateway"}'
    )
    found = [_trace(loaded_backends, t, {"gateway"}) for t in trace_ids]
    # Those that went upstream must show all three services: wait for the two behind the gateway too
    # (each service exports on its own schedule; a trace missing one after the wait fails here).
    full = [
        _trace(loaded_backends, t, SERVICES)
        for t, spans in zip(trace_ids, found, strict=True)
        if _went_upstream(spans)
    ]
    print(
        f"\n[exemplars] http.server.request.duration: {len(found)}/{len(trace_ids)} trace ids in Jaeger "
        f"(resolution rate {len(found) / len(trace_ids):.0%}); {len(full)} went upstream"
    )
    assert len(found) == len(trace_ids)
    assert full, "no exemplar of a request that reached inference"
    for spans in full:  # those that went upstream must show all three services
        assert {s.service_name for s in spans} >= SERVICES


def test_every_ttft_exemplar_resolves_to_a_trace_across_all_three_services(
    loaded_backends: LoadedBackends,
) -> None:
    trace_ids = _exemplar_trace_ids(loaded_backends, "gen_ai_server_time_to_first_token_seconds_bucket")
    traces = [_trace(loaded_backends, t, SERVICES) for t in trace_ids]
    print(
        f"\n[exemplars] gen_ai.server.time_to_first_token: {len(traces)}/{len(trace_ids)} resolved to a "
        f"trace spanning {sorted(SERVICES)} (rate {len(traces) / len(trace_ids):.0%})"
    )
    assert len(traces) == len(trace_ids)
    for spans in traces:
        server = next(s for s in spans if s.service_name == "inference" and s.kind.endswith("SERVER"))
        assert server.attributes["gen_ai.operation.name"] == "text_completion"
        assert {"queue", "prefill", "decode"} <= {s.name for s in spans if s.service_name == "inference"}


def test_span_metrics_and_service_graph_cover_both_edges(loaded_backends: LoadedBackends) -> None:
    # Requests of its own: the loaded stack may have been idle longer than the connector's 5 m expiry
    # (the fault suite runs before this module), and an expired series is gone from the instant query.
    with httpx.Client(
        base_url=loaded_backends.services.gateway_url,
        headers={"Authorization": f"Bearer {loaded_backends.services.api_key}"},
        timeout=30,
    ) as client:
        for i in range(3):
            body = {
                "model": "mistral-7b-instruct",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"edges {i}"}],
            }
            assert client.post("/v1/chat/completions", json=body).status_code == 200
    prometheus = loaded_backends.stack.prometheus
    queries = [
        f'traces_service_graph_request_total{{client="{client}",server="{server}"}}'
        for client, server in (("gateway", "orchestrator"), ("orchestrator", "inference"))
    ] + [f'traces_span_metrics_calls_total{{service_name="{service}"}}' for service in sorted(SERVICES)]
    for query in queries:  # a series re-made after the connector expired it may start at 0: wait for counts
        poll_until(lambda q=query: sum(s.value for s in prometheus.query(q)) > 0, query, timeout=60)  # type: ignore[misc]
    buckets = prometheus.query('traces_span_metrics_duration_seconds_bucket{service_name="inference"}')
    assert buckets, "span-metric durations in seconds"


def test_freshness_from_response_to_queryable_exemplar_and_fetchable_trace(
    loaded_backends: LoadedBackends,
) -> None:
    # Our own W3C traceparent: the gateway continues this trace, so we know its id before we send. Its
    # random part (the low 7 bytes) is zero, so it ranks first wherever in an exemplar window it lands.
    trace_id = secrets.token_hex(9) + "00" * 7
    headers = {
        "Authorization": f"Bearer {loaded_backends.services.api_key}",
        "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
    }
    body = {
        "model": "mistral-7b-instruct",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": f"freshness probe {trace_id}"}],
    }
    # A bucket takes one exemplar per window (clock-aligned); the load is over, so in a fresh window the
    # buckets are free and this request is the one chosen.
    window = DEFAULT_EXEMPLAR_WINDOW_S
    time.sleep(window - time.time() % window + 0.05)
    response = httpx.post(
        f"{loaded_backends.services.gateway_url}/v1/chat/completions", json=body, headers=headers, timeout=30
    )
    assert response.status_code == 200
    answered = time.time()
    prometheus = loaded_backends.stack.prometheus

    def exemplar_visible() -> bool:
        series = prometheus.query_exemplars(
            'http_server_request_duration_seconds_bucket{job="gateway"}', answered - 60, time.time()
        )
        return any(e.trace_id == trace_id for s in series for e in s.exemplars)

    poll_until(exemplar_visible, f"exemplar with trace_id {trace_id}", timeout=60)
    exemplar_after = time.time() - answered
    _trace(loaded_backends, trace_id, SERVICES)
    trace_after = time.time() - answered
    print(
        f"\n[freshness] exemplar queryable {exemplar_after:.1f} s and trace fetchable {trace_after:.1f} s "
        "after the response (target ≤ 10 s)"
    )


def test_the_drilldown_says_who_the_slowest_request_was_batched_with(loaded_backends: LoadedBackends) -> None:
    stack = loaded_backends.stack
    window = time.time() - loaded_backends.load_started + 5
    drill = find_slowest(stack.prometheus, stack.jaeger, window_s=window)
    engine = next(s for s in drill.spans if s.service_name == "inference" and s.kind.endswith("SERVER"))
    batches = int(engine.attributes[sc.LLM_ENGINE_BATCHES])
    assert batches >= 1
    preemptions = int(engine.attributes[sc.LLM_ENGINE_REQUEST_PREEMPTIONS])
    # The batches it was admitted into: one, and another after a preemption unless it rejoined the same.
    assert 1 <= len(engine.links) <= 1 + preemptions
    assert len(set(engine.links)) == len(engine.links)
    # Each link leads to a batch span in a trace of its own, which links back to this request.
    trace_id, span_id = engine.links[0]
    batch = poll_until(
        lambda: next((s for s in stack.jaeger.get_trace(trace_id) if s.span_id == span_id), None),
        f"batch span {span_id} in Jaeger",
        timeout=30,
    )
    assert batch.name.startswith("batch ")
    assert engine.span_id in {member for _, member in batch.links}
    text = render(drill, loaded_backends.prometheus_url, loaded_backends.jaeger_url)
    print(f"\n[drilldown]\n{text}")
    (line,) = [line for line in drill.batches if line.startswith("inference ")]
    assert f"in {batches} batches in all" in line
    assert "read from Jaeger" in line
    assert "at admission the KV cache was" in line
    assert line in text
