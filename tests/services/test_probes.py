"""/health says alive without asking anyone (and nothing else about the process); /ready lists every check,
ok or not, its reason in the log and not in the answer, one result per second however many ask; gRPC
health drains on stop."""

from __future__ import annotations

import asyncio
import logging

import grpc
import httpx
import pytest
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common import probes as probes_module
from services.common.models import ModelSpec
from services.common.probes import Probes, add_probes
from services.inference.server import InferenceSettings, side_app, start_server
from telemetry import testing


def _app(probes: Probes) -> httpx.AsyncClient:
    app = FastAPI()
    add_probes(app, probes)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe")


@pytest.mark.anyio
async def test_health_answers_alive_and_nothing_more_and_never_runs_a_check() -> None:
    calls: list[str] = []

    async def upstream() -> str | None:
        calls.append("upstream")
        return "down"

    async with _app(Probes("gateway", "1.2.3", {"orchestrator": upstream})) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}  # no version or uptime for a scanner to fingerprint
    assert calls == [], "liveness must not depend on a dependency"


@pytest.mark.anyio
async def test_ready_lists_each_check_and_a_check_that_raises_is_a_failed_check(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fine() -> str | None:
        return None

    async def broken() -> str | None:
        raise ConnectionResetError("cannot connect to 10.1.2.3:8081")

    with caplog.at_level(logging.WARNING, logger="services.probes"):
        async with _app(Probes("orchestrator", "1", {"cache": fine, "inference": broken})) as client:
            response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "checks": {"cache": {"ok": True}, "inference": {"ok": False}},
    }
    assert "10.1.2.3" not in response.text  # internal addresses stay in the log
    # The probe's own log only: a record another test's background thread logs meanwhile is not its.
    assert [r.getMessage() for r in caplog.records if r.name == "services.probes"] == [
        "orchestrator not ready: inference: ConnectionResetError: cannot connect to 10.1.2.3:8081"
    ]
    async with _app(Probes("orchestrator", "1", {"cache": fine})) as client:
        ok = await client.get("/ready")
    assert (ok.status_code, ok.json()["status"]) == (200, "ready")


@pytest.mark.anyio
async def test_one_readiness_result_answers_every_probe_for_a_second() -> None:
    calls: list[float] = []
    now = [100.0]

    async def upstream() -> str | None:
        calls.append(now[0])
        return None

    async with _app(Probes("gateway", "1", {"orchestrator": upstream}, clock=lambda: now[0])) as client:
        answers = await asyncio.gather(*(client.get("/ready") for _ in range(50)))
        now[0] += probes_module.READY_CACHE_S + 0.1
        await client.get("/ready")
    assert {a.status_code for a in answers} == {200}
    assert calls == [100.0, 100.0 + probes_module.READY_CACHE_S + 0.1], "one check per second, not per probe"


@pytest.mark.anyio
async def test_inference_health_is_serving_then_not_serving_while_it_drains() -> None:
    settings = InferenceSettings(address="127.0.0.1:0", max_batch_size=2, time_scale=0.0, gpu_index=0)
    with testing.capture("inference") as capture:
        running = await start_server(settings, capture.telemetry, {"m": ModelSpec("m")})
        target = f"127.0.0.1:{running.port}"
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="llm.inference.v1.Inference")
            assert (await health.Check(request, timeout=5)).status == health_pb2.HealthCheckResponse.SERVING
            await running.health.enter_graceful_shutdown()
            assert (
                await health.Check(request, timeout=5)
            ).status == health_pb2.HealthCheckResponse.NOT_SERVING
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=side_app(running.probes, capture.telemetry)),
            base_url="http://i",
        ) as client:
            assert (await client.get("/ready")).json() == {
                "status": "ready",
                "checks": {"scheduler": {"ok": True}},
            }
            assert (await client.get("/health")).json() == {"status": "alive"}
        await running.stop(grace=0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
