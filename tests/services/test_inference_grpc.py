"""The inference service over real gRPC: unknown models, deadlines, the model list."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from services.common.models import ModelSpec
from services.inference.server import InferenceSettings, start_server
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import testing
from tests.support.services import InProcessServices
from tests.support.serving import poll_until


def _stub(services: InProcessServices) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(f"127.0.0.1:{services.inference_port}")
    return channel, pb_grpc.InferenceStub(channel)


def _server_span(services: InProcessServices) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        return next(
            (s for s in services.spans() if s["service"] == "inference" and s["kind"] == "SERVER"), None
        )

    return poll_until(find, "the inference server span", timeout=10)


def test_unknown_model_is_not_found_with_an_error_span(services: InProcessServices) -> None:
    services.spans_exporter.clear()
    channel, stub = _stub(services)
    with channel, pytest.raises(grpc.RpcError) as error:
        list(stub.Generate(pb.GenerateRequest(model="no-such-model", prompt="hi"), timeout=5))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in (error.value.details() or "")
    span = _server_span(services)
    assert span["attributes"]["rpc.response.status_code"] == "NOT_FOUND"
    assert span["attributes"]["error.type"] == "model_not_found"
    # NOT_FOUND is the caller's mistake, not a server failure: the RPC metric carries no error.type.
    points = services.metrics("inference")["rpc.server.call.duration"]["points"]
    assert any(
        p["attributes"]["rpc.response.status_code"] == "NOT_FOUND" and "error.type" not in p["attributes"]
        for p in points
    )


def test_a_passed_deadline_stops_generation_and_the_span_says_so(services: InProcessServices) -> None:
    services.spans_exporter.clear()
    channel, stub = _stub(services)
    request = pb.GenerateRequest(model="slow-model", prompt="take your time", max_tokens=64)
    with channel, pytest.raises(grpc.RpcError) as error:
        list(stub.Generate(request, timeout=0.15))
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    span = _server_span(services)
    assert span["attributes"]["error.type"] == "cancelled"
    cancelled = next(e for e in span["events"] if e["name"] == "generation.cancelled")
    assert cancelled["attributes"]["gen_ai.usage.output_tokens"] < 64


def test_list_models_returns_the_registry(services: InProcessServices) -> None:
    channel, stub = _stub(services)
    with channel:
        reply = stub.ListModels(pb.ListModelsRequest(), timeout=5)
    assert [(m.name, m.provider) for m in reply.models] == [
        ("fast-model", "self_hosted"),
        ("slow-model", "self_hosted"),
    ]


def test_each_call_gets_its_own_span_continuing_the_callers_trace_when_it_sent_one(
    services: InProcessServices,
) -> None:
    """The server interceptor reuses its wrapper per method; every call must still be traced on its own."""
    services.spans_exporter.clear()
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    channel, stub = _stub(services)
    with channel:
        stub.ListModels(pb.ListModelsRequest(), timeout=5)
        stub.ListModels(
            pb.ListModelsRequest(), timeout=5, metadata=[("traceparent", f"00-{trace_id}-{parent_id}-01")]
        )
        unknown = channel.unary_unary(
            "/llm.inference.v1.Inference/NoSuchMethod",
            request_serializer=bytes,
            response_deserializer=bytes,
        )
        with pytest.raises(grpc.RpcError) as error:
            unknown(b"", timeout=5)
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
        stub.ListModels(pb.ListModelsRequest(), timeout=5)

    def three() -> list[dict[str, Any]] | None:
        spans = [s for s in services.spans() if s["service"] == "inference" and s["kind"] == "SERVER"]
        return spans if len(spans) == 3 else None

    first, continued, last = poll_until(three, "three inference server spans", timeout=10)
    assert len({first["span_id"], continued["span_id"], last["span_id"]}) == 3
    assert (continued["trace_id"], continued["parent_span_id"]) == (trace_id, parent_id)
    assert first["parent_span_id"] is None
    assert last["parent_span_id"] is None
    assert trace_id not in (first["trace_id"], last["trace_id"])


def test_the_standard_health_service_says_serving_and_leaves_no_span(services: InProcessServices) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    services.spans_exporter.clear()
    with grpc.insecure_channel(f"127.0.0.1:{services.inference_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "llm.inference.v1.Inference"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as unknown:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    # Probes are not traffic: no span, no RPC duration point for the health service. (An engine batch span
    # of an earlier test's request may end meanwhile: the engine closes a batch when it goes idle.)
    assert not [
        s for s in services.spans() if s["service"] == "inference" and s["scope"] != "telemetry.engine"
    ]
    points = services.metrics("inference")["rpc.server.call.duration"]["points"]
    assert not [p for p in points if "grpc.health" in str(p["attributes"].get("rpc.method", ""))]


@pytest.mark.anyio
async def test_content_is_captured_at_the_gateway_alone_never_again_by_inference() -> None:
    """With capture on, inference records no prompt: the gateway recorded the request's messages (redacted,
    bounded); this prompt is the same text again plus the retrieved documents."""
    settings = InferenceSettings(
        address="127.0.0.1:0",
        max_batch_size=1,
        time_scale=0.0,
        gpu_index=0,
        max_concurrent_rpcs=4,
    )
    with testing.capture("inference", capture_content=True) as capture:
        assert capture.telemetry.capture_content
        running = await start_server(settings, capture.telemetry, {"m": ModelSpec("m")})
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.InferenceStub(channel)
            async for _ in stub.Generate(pb.GenerateRequest(model="m", prompt="my secret prompt"), timeout=5):
                pass
        await running.stop(grace=0)
        (server,) = [s for s in capture.spans() if s["kind"] == "SERVER"]
    assert server["attributes"]["gen_ai.request.model"] == "m"
    assert not [
        k for k in server["attributes"] if k.startswith("gen_ai.input") or k.startswith("gen_ai.output")
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
