"""One request through gateway → orchestrator → inference, as a trace and as metrics with exemplars."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.services import InProcessServices
from tests.support.serving import poll_until, spans_of_trace

CHAT = {"model": "fast-model", "messages": [{"role": "user", "content": "how do exemplars work"}]}


def _post(services: InProcessServices, body: dict[str, Any]) -> Any:
    with services.client() as client:
        return client.post("/v1/chat/completions", json=body)


def _traced_post(services: InProcessServices, content: str) -> str:
    """Send one request on a cleared exporter; returns its trace id once its root span has ended."""
    services.spans_exporter.clear()
    response = _post(services, {**CHAT, "messages": [{"role": "user", "content": content}]})
    assert response.status_code == 200

    def root() -> str | None:
        # The engine's batch spans are roots too, of traces of their own: the request's is the SERVER one.
        roots = [s for s in services.spans() if s["parent_span_id"] is None and s["kind"] == "SERVER"]
        assert len(roots) <= 1, roots
        return str(roots[0]["trace_id"]) if roots else None

    return poll_until(root, f"the root span of the request {content!r}", timeout=10)


def test_one_request_yields_one_trace_linking_all_three_services(services: InProcessServices) -> None:
    trace_id = _traced_post(services, "trace one request")
    spans = poll_until(
        lambda: spans_of_trace(services, trace_id, minimum=12), "12 spans of the trace", timeout=10
    )
    by_id = {s["span_id"]: s for s in spans}

    def chain(leaf: str) -> list[tuple[str, str, str]]:
        span: dict[str, Any] | None = next(s for s in spans if s["name"] == leaf)
        out = []
        while span is not None:
            out.append((span["service"], span["name"], span["kind"]))
            span = by_id.get(span["parent_span_id"])
        return out[::-1]

    assert chain("decode") == [
        ("gateway", "POST /v1/chat/completions", "SERVER"),
        ("gateway", "chat fast-model", "INTERNAL"),
        ("gateway", "POST", "CLIENT"),
        ("orchestrator", "POST /v1/generate", "SERVER"),
        ("orchestrator", "infer", "INTERNAL"),
        ("orchestrator", "llm.inference.v1.Inference/Generate", "CLIENT"),
        ("inference", "llm.inference.v1.Inference/Generate", "SERVER"),
        ("inference", "decode", "INTERNAL"),
    ]
    names = {(s["service"], s["name"]) for s in spans}
    assert {
        ("orchestrator", "retrieval corpus"),
        ("orchestrator", "postprocess"),
        ("inference", "queue"),
        ("inference", "prefill"),
    } <= names
    assert len({s["trace_id"] for s in spans}) == 1

    server = next(s for s in spans if s["kind"] == "SERVER" and s["service"] == "inference")
    assert server["attributes"]["gen_ai.operation.name"] == "text_completion"
    assert server["attributes"]["gen_ai.request.model"] == "fast-model"
    assert server["attributes"]["gen_ai.usage.output_tokens"] > 0
    assert server["attributes"]["rpc.response.status_code"] == "OK"
    assert server["attributes"]["llm.engine.batch.requests"] >= 1
    assert 0 <= server["attributes"]["llm.engine.admission.kv_cache_usage"] < 1
    chat = next(s for s in spans if s["name"] == "chat fast-model")
    assert chat["attributes"]["gen_ai.provider.name"] == "self_hosted"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0
    # Batch membership: the engine's span links to the batch it was admitted into, the root of a trace of
    # its own, and counts the batches it ran in.
    links = [(link["trace_id"], link["span_id"]) for link in server["links"]]
    batches = set(links)
    assert len(links) == len(batches)  # one link per batch it was admitted into, however often
    assert 1 <= len(batches) <= 1 + server["attributes"]["llm.engine.request.preemptions"]
    assert server["attributes"]["llm.engine.batches"] >= len(batches)
    batch_spans = [s for s in services.spans() if (s["trace_id"], s["span_id"]) in batches]
    assert batch_spans
    for batch in batch_spans:
        assert batch["name"] == "batch fast-model"
        assert batch["trace_id"] != trace_id
        assert server["span_id"] in {link["span_id"] for link in batch["links"]}


def _exemplar_trace_ids(metrics: dict[str, Any], name: str) -> set[str]:
    return {e["trace_id"] for p in metrics[name]["points"] for e in p["exemplars"]}


def test_duration_histograms_carry_exemplars_of_the_request_trace(services: InProcessServices) -> None:
    trace_id = _traced_post(services, "exemplar check")
    gateway, orchestrator, inference = (services.metrics(s) for s in ("gateway", "orchestrator", "inference"))
    for metrics, name in [
        (gateway, "http.server.request.duration"),
        (gateway, "gen_ai.client.inference.duration"),
        (inference, "llm.engine.request.input_tokens"),
        (gateway, "http.client.request.duration"),
        (orchestrator, "http.server.request.duration"),
        (orchestrator, "rpc.client.call.duration"),
        (orchestrator, "llm.orchestrator.stage.duration"),
        (inference, "rpc.server.call.duration"),
        (inference, "gen_ai.server.request.duration"),
        (inference, "gen_ai.server.time_to_first_token"),
    ]:
        assert trace_id in _exemplar_trace_ids(metrics, name), name
    http = gateway["http.server.request.duration"]
    assert http["unit"] == "s"
    point = next(p for p in http["points"] if p["attributes"].get("http.route") == "/v1/chat/completions")
    assert point["bounds"][:3] == [0.005, 0.01, 0.025]
    assert point["attributes"]["http.response.status_code"] == 200


def test_streaming_records_ttft_tpot_and_time_to_first_chunk(services: InProcessServices) -> None:
    with services.client() as client:
        response = client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}
    inference, gateway = services.metrics("inference"), services.metrics("gateway")
    ttft = inference["gen_ai.server.time_to_first_token"]["points"]
    tpot = inference["gen_ai.server.time_per_output_token"]["points"]
    assert sum(p["count"] for p in ttft) >= 1
    assert sum(p["count"] for p in tpot) >= 1
    assert all(p["attributes"]["gen_ai.request.model"] == "fast-model" for p in ttft)
    first_chunk = gateway["gen_ai.client.inference.time_to_first_chunk"]["points"]
    assert sum(p["count"] for p in first_chunk) >= 1
    for kind in ("input", "output"):
        (usage,) = gateway[f"gen_ai.client.inference.usage.{kind}_tokens"]["points"]
        assert usage["attributes"]["gen_ai.token.modality"] == "text"
        assert usage["value"] > 0


def test_identical_requests_hit_the_response_cache(services: InProcessServices) -> None:
    body = {**CHAT, "messages": [{"role": "user", "content": "cache me"}]}
    first, second = _post(services, body), _post(services, body)
    assert first.status_code == second.status_code == 200
    assert first.json()["choices"] == second.json()["choices"]
    points = services.metrics("gateway")["llm.gateway.cache.requests"]["points"]
    by_result = {
        p["attributes"]["llm.cache.result"]: p["value"]
        for p in points
        if p["attributes"]["gen_ai.request.model"] == "fast-model"
    }
    assert by_result["hit"] >= 1
    assert by_result["miss"] >= 1


def test_prompt_text_is_not_recorded_by_default(services: InProcessServices) -> None:
    secret = "my-password-is-hunter2"
    assert _post(services, {**CHAT, "messages": [{"role": "user", "content": secret}]}).status_code == 200
    for span in services.spans():
        assert not any(secret in str(v) for v in span["attributes"].values()), span["name"]
        assert "gen_ai.input.messages" not in span["attributes"]


def test_models_endpoint_lists_the_catalog(services: InProcessServices) -> None:
    with services.client() as client:
        response = client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["fast-model", "slow-model"]


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_health_and_readiness_answer_without_auth_and_without_spans(
    services: InProcessServices, path: str
) -> None:
    services.spans_exporter.clear()
    with services.client(headers={"Authorization": ""}) as client:
        assert client.get(path).status_code == 200
    # Only this path's spans: an earlier test's server span may still end after the clear.
    gateway = [s for s in services.spans() if s["service"] == "gateway"]
    assert not [s for s in gateway if s["attributes"].get("url.path") == path or s["name"].endswith(path)]
