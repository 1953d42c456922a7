"""Inference stopping while requests reach it, as a SIGTERM stops it: the orchestrator answers each
request it could not serve with a clean 503 to retry, never a 502.

At shutdown gRPC refuses new streams (UNAVAILABLE) and cancels the calls that reached its transport but no
handler yet: the client sees CANCELLED though it cancelled nothing (tests/e2e/test_faults.py meets it under
load). That race cannot be timed from a test, so here a real gRPC server answers CANCELLED on purpose."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest

from deploy.stack import free_port
from services.orchestrator.app import OrchestratorSettings, create_app as create_orchestrator
from services.proto import inference_pb2 as pb, inference_pb2_grpc as pb_grpc
from telemetry import testing
from tests.support.serving import serve_uvicorn, stop_uvicorn


class _CancelledAtShutdown(pb_grpc.InferenceServicer):
    async def Generate(
        self, request: pb.GenerateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.GenerateResponse]:
        await context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")
        yield pb.GenerateResponse()  # never reached: makes this an async generator, as a stream handler is

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse()


@pytest.mark.anyio
async def test_a_call_inference_cancels_as_it_stops_is_a_clean_503_to_retry() -> None:
    server = grpc.aio.server()
    pb_grpc.add_InferenceServicer_to_server(_CancelledAtShutdown(), server)
    inference_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    orchestrator_port = free_port()
    with testing.capture("orchestrator") as capture:
        orchestrator = await serve_uvicorn(
            create_orchestrator(
                OrchestratorSettings(
                    host="127.0.0.1",
                    port=orchestrator_port,
                    inference_target=f"127.0.0.1:{inference_port}",
                    stage_concurrency=4,
                    queue_capacity=4,
                    infer_timeout=10.0,
                ),
                capture.telemetry,
            ),
            orchestrator_port,
        )
        body = {"model": "fast-model", "messages": [{"role": "user", "content": "drain me"}]}
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{orchestrator_port}", timeout=30
            ) as client:
                answer = await client.post("/v1/generate", json=body)
                streamed = await client.post("/v1/generate", json={**body, "stream": True})
        finally:
            await stop_uvicorn([orchestrator])
            await server.stop(grace=0)
        errors = capture.metrics()["llm.orchestrator.errors"]["points"]
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "1"
    assert answer.json()["error"]["type"] == "upstream_unavailable"
    # Streamed, the failure comes before the first line: still a status the caller can act on.
    assert streamed.status_code == 503, streamed.text
    assert any(p["attributes"].get("error.type") == "upstream_unavailable" for p in errors), errors


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
