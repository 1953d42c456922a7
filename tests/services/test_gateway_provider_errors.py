"""An OpenAI-compatible provider's failures as the gateway's answers: status and error.type mapping, the
key redacted, and the in-band failures of a stream (an error event, an end without [DONE]) that a real
server seldom produces on demand."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from opentelemetry import trace

from services.common.models import ModelSpec, Price, ProviderSpec, ProviderType
from services.gateway.budgets import Ledger
from services.gateway.errors import from_provider
from services.gateway.recording import GatewayMetrics, GenAICall
from services.gateway.streaming import SSERelay
from services.gateway.tenants import Caller, Tenant
from services.gateway.wire import parse_request
from telemetry import ContentPolicy, testing
from telemetry.views import bounded

SECRET = "sk-live-0123456789abcdef"


@pytest.mark.parametrize(
    ("status", "ours", "error_type"),
    [
        (400, 400, "invalid_request_error"),
        (401, 502, "upstream_unauthorized"),
        (403, 502, "upstream_unauthorized"),
        (404, 404, "model_not_found"),
        (408, 504, "upstream_timeout"),
        (413, 413, "request_too_large"),
        (422, 400, "invalid_request_error"),
        (429, 429, "upstream_rate_limited"),
        (500, 502, "upstream_error"),
        (503, 503, "upstream_unavailable"),
        (504, 504, "upstream_timeout"),
        (529, 502, "upstream_error"),
    ],
)
def test_each_provider_status_has_its_answer(status: int, ours: int, error_type: str) -> None:
    body = json.dumps(
        {"error": {"message": f"no, {SECRET} is not welcome", "type": "x", "param": "messages"}}
    )
    error = from_provider("openai", status, body.encode(), "7", SECRET)
    assert (error.status, error.error_type) == (ours, error_type)
    assert SECRET not in str(error)
    assert str(error).startswith(f"provider 'openai' answered {status}")
    assert error.param == ("messages" if ours == 400 else None)
    assert error.retry_after == (7 if ours in (429, 503) else None)
    if error_type == "upstream_unauthorized":
        assert "credentials" in str(error)
    else:
        assert "[REDACTED] is not welcome" in str(error)


def test_a_flat_or_unreadable_error_body_still_maps() -> None:
    assert str(from_provider("vllm", 400, b'{"object": "error", "message": "bad"}', None, None)).endswith(
        ": bad"
    )
    unreadable = from_provider("vllm", 502, b"<html>bad gateway</html>", None, None)
    assert str(unreadable) == "provider 'vllm' answered 502"


def _relay(
    capture: testing.Capture, sse: bytes, wants_usage: bool = False
) -> tuple[list[bytes], dict[str, Any]]:
    provider = ProviderSpec(
        "p", ProviderType.OPENAI_COMPATIBLE, base_url="http://127.0.0.1:9", api_key=SECRET
    )
    spec = ModelSpec("m", "p", price=Price(1e-6, 2e-6))
    body = parse_request({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    meter_provider = capture.telemetry.meter_provider
    meter = meter_provider.get_meter("t")
    call = GenAICall.start(
        trace.get_tracer("t", tracer_provider=capture.telemetry.tracer_provider),
        GatewayMetrics(meter_provider, meter, Ledger({}, meter), "latest"),
        spec=spec,
        provider=provider,
        body=body,
        content=ContentPolicy(),
        caller=Caller(Tenant("acme")),
    )
    relay = SSERelay(
        httpx.Response(200, content=sse), call, lambda: None, wants_usage=wants_usage, secret=SECRET
    )

    async def run() -> list[bytes]:
        return [event async for event in relay.events()]

    events = asyncio.run(run())
    (span,) = capture.spans()
    return events, span


def _chunk(
    content: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None
) -> bytes:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "up",
        "choices": [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


USAGE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


def test_an_in_band_provider_error_ends_the_stream_with_our_error_then_done() -> None:
    sse = _chunk("Hel") + b'data: {"error": {"message": "overloaded, ' + SECRET.encode() + b'"}}\n\n'
    with testing.capture("gateway") as capture:
        events, span = _relay(capture, sse)
    assert events[0] == _chunk("Hel")  # passed through byte for byte
    assert events[-1] == b"data: [DONE]\n\n"
    error = json.loads(events[-2][6:])["error"]
    assert error["type"] == "upstream_error"
    assert SECRET not in error["message"]
    assert span["attributes"]["error.type"] == "upstream_error"
    assert span["status"] == "ERROR"


def test_a_stream_without_done_is_broken_even_when_the_connection_closed_politely() -> None:
    with testing.capture("gateway") as capture:
        events, span = _relay(capture, _chunk("Hel") + _chunk("lo"))
    assert events[-1] == b"data: [DONE]\n\n"
    assert json.loads(events[-2][6:])["error"]["type"] == "upstream_stream_broken"
    assert span["attributes"]["error.type"] == "upstream_stream_broken"
    assert span["attributes"]["llm.gateway.stream.chunks"] == 2


def test_the_usage_chunk_reaches_only_a_client_that_asked_but_is_always_counted() -> None:
    sse = _chunk("Hi") + _chunk(finish="stop") + _chunk(usage=USAGE) + b"data: [DONE]\n\n"
    with testing.capture("gateway") as capture:
        events, span = _relay(capture, sse)
        spent = capture.value(
            "gen_ai.client.operation.cost",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "p",
                "gen_ai.request.model": bounded("gen_ai.request.model", "m"),
                "gen_ai.response.model": bounded("gen_ai.response.model", "up"),
                "llm.tenant.id": bounded("llm.tenant.id", "acme"),
                "server.address": "127.0.0.1",
                "server.port": 9,
                "gen_ai.usage.cost.currency": "USD",
                "gen_ai.usage.cost.source": "local",
            },
            of="sum",
        )
    assert events == [_chunk("Hi"), _chunk(finish="stop"), b"data: [DONE]\n\n"]
    assert (
        span["attributes"]["gen_ai.usage.input_tokens"],
        span["attributes"]["gen_ai.usage.output_tokens"],
    ) == (5, 2)
    assert span["attributes"]["gen_ai.response.finish_reasons"] == ("stop",)
    assert spent == pytest.approx(5e-6 + 4e-6)  # input and output at their prices
    with testing.capture("gateway") as capture:
        asked, _ = _relay(capture, sse, wants_usage=True)
    assert asked == [_chunk("Hi"), _chunk(finish="stop"), _chunk(usage=USAGE), b"data: [DONE]\n\n"]
