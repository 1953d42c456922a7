"""The three services, really serving on loopback sockets, with in-memory telemetry: the harness behind
tests/services' ``services`` fixture.

One background thread runs an asyncio loop hosting the inference gRPC server and two uvicorn servers
(orchestrator, gateway). All three export spans into one in-memory exporter with deterministic ids,
as one trace backend would receive them; each keeps its own metric reader and resource.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from deploy.stack import free_port
from services.common.models import GpuPrice, ModelSpec
from services.gateway.app import GatewaySettings, create_app as create_gateway
from services.inference.server import InferenceSettings, start_server
from services.orchestrator.app import OrchestratorSettings, create_app as create_orchestrator
from telemetry import testing
from telemetry.views import clear_known_values
from tests.support.serving import Served, serve_uvicorn, stop_uvicorn

T = TypeVar("T")
API_KEY = "test-key-not-secret"
MODELS = {
    "fast-model": ModelSpec(
        "fast-model",
        prefill_seconds_per_token=0.00002,
        decode_seconds_per_token=0.001,
        gpu_price=GpuPrice(2.0),
    ),
    "slow-model": ModelSpec(
        "slow-model", prefill_seconds_per_token=0.0001, decode_seconds_per_token=0.02, max_output_tokens=64
    ),
}


KV_CACHE_BYTES = 64 * 16 * 131072
"""64 blocks of 16 tokens for the test models (128 KiB of KV per token): a few requests fill it."""


class LoopThread:
    """An asyncio loop in a daemon thread; ``run`` executes a coroutine there and waits for it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """``coro``'s result; past ``timeout`` seconds it is cancelled and TimeoutError names it."""
        name = getattr(coro, "__qualname__", repr(coro))
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"{name} did not finish within {timeout:g} s in the services' loop") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class InProcessServices:
    gateway_url: str
    orchestrator_url: str
    inference_port: int
    spans_exporter: InMemorySpanExporter
    captures: dict[str, testing.Capture]
    loop: LoopThread
    stop_inference: Callable[[], None]
    start_inference: Callable[[], None]

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
        base_url = kwargs.pop("base_url", self.gateway_url)
        return httpx.Client(base_url=base_url, headers=headers, timeout=30, **kwargs)

    def spans(self) -> list[dict[str, Any]]:
        return testing.spans_as_dicts(self.spans_exporter.get_finished_spans())

    def metrics(self, service: str) -> dict[str, dict[str, Any]]:
        return self.captures[service].metrics()


def gateway_settings(orchestrator_url: str, **overrides: Any) -> GatewaySettings:
    """A test gateway's settings: our API key, response cache off, port 0 (the port is picked where it is
    served); ``overrides`` change any field."""
    fields: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "orchestrator_url": orchestrator_url,
        "api_keys": (API_KEY,),
        "insecure_no_auth": False,
        "max_body_bytes": 64 * 1024,
        "max_in_flight": 64,
        "upstream_timeout": 10.0,
        "cache_entries": 0,
        "cache_ttl": 0.0,
    }
    return GatewaySettings(**{**fields, **overrides})


def orchestrator_settings(inference_target: str, port: int = 0) -> OrchestratorSettings:
    return OrchestratorSettings(
        host="127.0.0.1",
        port=port,
        inference_target=inference_target,
        stage_concurrency=4,
        queue_capacity=8,
        infer_timeout=10.0,
    )


class AppServer:
    """Serves more apps on free loopback ports in the services' loop; ``app_server`` stops them."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.running: dict[str, Served] = {}

    def start(self, app: Any, http: type[asyncio.Protocol] | str = "auto") -> str:
        """Serve ``app`` (with uvicorn's ``http`` protocol); returns its base URL."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        self.running[url] = self.loop.run(serve_uvicorn(app, port, http=http))
        return url

    def start_gateway(self, app: Any) -> str:
        """Serve a gateway app as ``python -m services.gateway`` does: with its own protocol."""
        return self.start(app, http=app.state.gateway.protocol())

    def stop(self, *urls: str) -> None:
        """Stop the apps at ``urls`` (all of them if none is named), once their requests have finished."""
        servers = [self.running.pop(url) for url in (urls or list(self.running))]
        self.loop.run(stop_uvicorn(servers))


@contextmanager
def serving() -> Iterator[InProcessServices]:
    """The three services on free loopback ports until the block ends."""
    clear_known_values()
    exporter = InMemorySpanExporter()
    ids = testing.DeterministicIdGenerator()
    captures = {
        # A 1 ms exemplar window: each request's measurements are exemplars, so a test finds its own.
        name: testing.capture(name, spans=exporter, ids=ids, exemplar_window=0.001)
        for name in ("gateway", "orchestrator", "inference")
    }
    loop = LoopThread()
    inference_port = free_port()
    orchestrator_port, gateway_port = free_port(), free_port()
    inference_settings = InferenceSettings(
        address=f"127.0.0.1:{inference_port}",
        max_batch_size=4,
        time_scale=1.0,
        gpu_index=0,
        kv_cache_bytes=KV_CACHE_BYTES,
    )
    state: dict[str, Any] = {}

    async def start_inference() -> None:
        state["inference"] = await start_server(inference_settings, captures["inference"].telemetry, MODELS)

    async def stop_inference() -> None:
        await state.pop("inference").stop(grace=0)

    loop.run(start_inference())
    orchestrator = orchestrator_settings(f"127.0.0.1:{inference_port}", orchestrator_port)
    gateway = gateway_settings(
        f"http://127.0.0.1:{orchestrator_port}", port=gateway_port, cache_entries=128, cache_ttl=60.0
    )
    gateway_app = create_gateway(gateway, captures["gateway"].telemetry, MODELS)
    servers = [
        loop.run(
            serve_uvicorn(
                create_orchestrator(orchestrator, captures["orchestrator"].telemetry), orchestrator_port
            )
        ),
        loop.run(serve_uvicorn(gateway_app, gateway_port, http=gateway_app.state.gateway.protocol())),
    ]
    yield InProcessServices(
        gateway_url=f"http://127.0.0.1:{gateway_port}",
        orchestrator_url=f"http://127.0.0.1:{orchestrator_port}",
        inference_port=inference_port,
        spans_exporter=exporter,
        captures=captures,
        loop=loop,
        stop_inference=lambda: loop.run(stop_inference()),
        start_inference=lambda: loop.run(start_inference()),
    )

    loop.run(stop_uvicorn(servers))
    if "inference" in state:
        loop.run(stop_inference())
    loop.stop()
    for capture in captures.values():
        capture.shutdown()
    clear_known_values()
