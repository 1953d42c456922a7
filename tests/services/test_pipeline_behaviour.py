"""Cancellation stops generation, identical requests in flight coalesce (one caller's only), queues are
observable, and a direct caller is held to the gateway's limits."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.support.services import InProcessServices
from tests.support.serving import poll_until

SLOW_STREAM = {
    "model": "slow-model",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "stream slowly then get cancelled"}],
}


def test_client_that_disconnects_mid_stream_stops_generation_and_the_span_says_so(
    services: InProcessServices,
) -> None:
    services.spans_exporter.clear()
    with (
        services.client() as client,
        client.stream("POST", "/v1/chat/completions", json=SLOW_STREAM) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one chunk, then hang up

    def cancelled_inference_span() -> dict[str, Any] | None:
        return next(
            (s for s in services.spans() if s["service"] == "inference" and s["kind"] == "SERVER"), None
        )

    span = poll_until(cancelled_inference_span, "the inference server span to end", timeout=10)
    assert span["attributes"]["rpc.response.status_code"] == "CANCELLED"
    assert span["attributes"]["error.type"] == "cancelled"
    assert span["status"] == "UNSET"  # the caller went away: not the server's failure (gRPC semconv)
    assert [e["name"] for e in span["events"]] == ["generation.cancelled", "rpc.cancelled"]
    # Generation stopped early: far fewer than the 64 tokens a complete answer would have produced.
    produced = span["events"][0]["attributes"]["gen_ai.usage.output_tokens"]
    assert produced < 32
    # ... and what it did produce is still counted on the server.
    tokens = services.metrics("inference")["llm.inference.tokens"]["points"]
    output = [
        p
        for p in tokens
        if (p["attributes"]["gen_ai.request.model"], p["attributes"]["gen_ai.token.type"])
        == ("slow-model", "output")
    ]
    assert output
    assert sum(p["value"] for p in output) >= produced


async def _identical_pair(url: str, tenants: tuple[str, ...] = ("t1", "t1", "t1")) -> list[httpx.Response]:
    body = {"model": "slow-model", "max_tokens": 16, "messages": [{"role": "user", "content": "coalesce us"}]}
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.post("/v1/generate", json=body, headers={"baggage": f"llm.tenant.id={tenant}"})
                for tenant in tenants
            )
        )


def test_identical_requests_in_flight_share_one_generation(services: InProcessServices) -> None:
    services.spans_exporter.clear()
    responses = asyncio.run(_identical_pair(services.orchestrator_url))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len({r.json()["id"] for r in responses}) == 1  # one generation, three answers
    coalesced = services.metrics("orchestrator")["llm.orchestrator.coalesced_requests"]["points"]
    assert sum(p["value"] for p in coalesced) >= 2
    generations = [s for s in services.spans() if s["service"] == "inference" and s["kind"] == "SERVER"]
    assert len(generations) == 1


def test_identical_requests_of_two_tenants_are_never_coalesced(services: InProcessServices) -> None:
    """The tenant is the gateway's baggage: one tenant's answer (its id, its timing) is never another's."""
    services.spans_exporter.clear()
    responses = asyncio.run(_identical_pair(services.orchestrator_url, ("t1", "t2", "t1")))
    assert [r.status_code for r in responses] == [200, 200, 200]
    ids = [r.json()["id"] for r in responses]
    assert ids[0] == ids[2]
    assert ids[1] != ids[0]

    def generations() -> list[dict[str, Any]] | None:
        found = [s for s in services.spans() if s["service"] == "inference" and s["kind"] == "SERVER"]
        return found if len(found) >= 2 else None

    assert len(poll_until(generations, "two generations", timeout=10)) == 2


def test_a_direct_caller_is_held_to_the_gateways_limits(services: InProcessServices) -> None:
    url = f"{services.orchestrator_url}/v1/generate"
    message = {"role": "user", "content": "x"}
    too_many = {"model": "fast-model", "messages": [message] * 257}
    too_long = {"model": "fast-model", "messages": [{"role": "user", "content": "x" * 200_001}]}
    too_many_tokens = {"model": "fast-model", "messages": [message], "max_tokens": 4097}
    for body in (too_many, too_long, too_many_tokens):
        response = httpx.post(url, json=body, timeout=30)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    huge = b'{"model": "fast-model", "messages": [{"role": "user", "content": "' + b"x" * (3 << 20) + b'"}]}'
    for content in (huge, iter([huge[: 1 << 20], huge[1 << 20 :]])):  # declared, then chunked
        refused = httpx.post(url, content=content, timeout=30)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["type"] == "request_too_large"
    assert httpx.post(url, json={"model": "fast-model", "messages": [message]}, timeout=30).status_code == 200


def test_stage_queues_report_occupancy_and_capacity(services: InProcessServices) -> None:
    metrics = services.metrics("orchestrator")
    limits = {
        p["attributes"]["llm.stage"]: p["value"] for p in metrics["llm.orchestrator.queue.limit"]["points"]
    }
    sizes = {
        p["attributes"]["llm.stage"]: p["value"] for p in metrics["llm.orchestrator.queue.size"]["points"]
    }
    assert limits == {"retrieve": 8, "infer": 8, "postprocess": 8}
    assert sizes == {"retrieve": 0, "infer": 0, "postprocess": 0}  # idle between tests
    waits = {p["attributes"]["llm.stage"] for p in metrics["llm.orchestrator.queue.duration"]["points"]}
    assert waits == {"retrieve", "infer", "postprocess"}


def _outcomes(services: InProcessServices) -> dict[str, float]:
    points = services.metrics("orchestrator").get("llm.orchestrator.requests", {"points": []})["points"]
    return {p["attributes"]["llm.outcome"]: p["value"] for p in points}


def _outcome_delta(services: InProcessServices, before: dict[str, float]) -> dict[str, float]:
    after = _outcomes(services)
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def test_each_request_is_counted_once_with_how_it_ended(services: InProcessServices) -> None:
    # The recording rules divide sheds and errors by this counter: one point per request, whatever the path.
    before = _outcomes(services)
    body = {"model": "fast-model", "max_tokens": 8, "messages": [{"role": "user", "content": "count once"}]}
    with httpx.Client(base_url=services.orchestrator_url, timeout=30) as client:
        assert client.post("/v1/generate", json=body).status_code == 200
        with client.stream("POST", "/v1/generate", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        assert '"type": "end"' in lines[-1]
        missing = {**body, "model": "no-such-model"}
        assert client.post("/v1/generate", json=missing).status_code == 404
    assert poll_until(
        lambda: _outcome_delta(services, before) == {"ok": 2, "error": 1} or None,
        "ok counted twice (answer and stream) and the unknown model once as an error",
        timeout=10,
    )


def test_a_stream_the_client_abandons_counts_as_cancelled_not_error(services: InProcessServices) -> None:
    before = _outcomes(services)
    with (
        httpx.Client(base_url=services.orchestrator_url, timeout=30) as client,
        client.stream("POST", "/v1/generate", json={**SLOW_STREAM, "stream": True}) as response,
    ):
        assert response.status_code == 200
        next(line for line in response.iter_lines() if line)  # one chunk, then hang up
    assert poll_until(
        lambda: _outcome_delta(services, before) == {"cancelled": 1} or None,
        "the abandoned stream counted once, as cancelled",
        timeout=10,
    )
