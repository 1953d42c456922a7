"""Process specs for the three services, pointed at a running stack's Collector."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.stack import LOOPBACK, PortAllocator, ProcessSpec, Stack, http_ready

REPO = Path(__file__).resolve().parents[2]


# Admission limits low enough that a burst of BURST requests (services.loadgen --burst) is partly refused
# at the gateway (429) and partly shed by the orchestrator (503), while the steady load (6 in flight)
# passes: the local stack and the e2e tests show every outcome, not only the happy path.
ADMISSION_LIMITS = {
    "gateway": {"LLM_GATEWAY_MAX_IN_FLIGHT": "24"},
    "orchestrator": {"LLM_ORCHESTRATOR_STAGE_CONCURRENCY": "4", "LLM_ORCHESTRATOR_QUEUE_CAPACITY": "12"},
}
BURST = 40
KV_CACHE_BYTES = 128 << 20
"""The memory each model's KV cache gets in the local stack: 64 blocks of 16 tokens for an 8B model, 25 for
the 72B one. Small on purpose, like the admission limits: the burst's long prompts need more blocks than
that, so requests wait and running ones are preempted, and the engine's panels and alerts have data."""


@dataclass(frozen=True)
class ServiceAddresses:
    gateway_url: str
    orchestrator_url: str
    inference_target: str
    inference_http_url: str
    """The inference server's side port: /health, /ready, /metrics."""
    api_key: str


def service_specs(
    stack: Stack,
    *,
    time_scale: float = 1.0,
    low_admission_limits: bool = True,
    env: Mapping[str, str] | None = None,
) -> tuple[list[ProcessSpec], ServiceAddresses]:
    """Inference first, then orchestrator, then gateway: each is ready before the next starts.

    ``low_admission_limits`` (:data:`ADMISSION_LIMITS`, :data:`KV_CACHE_BYTES`) lets a burst show refusals,
    sheds and a full KV cache; a steady load of many requests per second wants the services' defaults.
    ``env`` is added to every service's (e.g. ``OTEL_TRACES_SAMPLER``).

    The gateway gets a fresh random API key for this run (no key ships with the product). In pull mode
    (``StackConfig.service_metrics``) each service's metrics port is registered with the stack's
    Prometheus, so call this before :meth:`Stack.start`.
    """
    ports = PortAllocator()
    inference, inference_http, orchestrator, gateway = ports.port(), ports.port(), ports.port(), ports.port()
    addresses = ServiceAddresses(
        gateway_url=f"http://{LOOPBACK}:{gateway}",
        orchestrator_url=f"http://{LOOPBACK}:{orchestrator}",
        inference_target=f"{LOOPBACK}:{inference}",
        inference_http_url=f"http://{LOOPBACK}:{inference_http}",
        api_key=f"local-{secrets.token_urlsafe(18)}",
    )
    for job, port in (("gateway", gateway), ("orchestrator", orchestrator), ("inference", inference_http)):
        stack.scrape_service(job, f"{LOOPBACK}:{port}")
    python = sys.executable
    limits = ADMISSION_LIMITS if low_admission_limits else {"gateway": {}, "orchestrator": {}}
    kv_cache = {"LLM_INFERENCE_KV_CACHE_BYTES": str(KV_CACHE_BYTES)} if low_admission_limits else {}
    extra = dict(env or {})
    specs = [
        ProcessSpec(
            "inference",
            [python, "-m", "services.inference"],
            env={
                **stack.otel_env("inference"),
                "LLM_INFERENCE_ADDRESS": addresses.inference_target,
                "LLM_INFERENCE_HTTP_ADDRESS": f"{LOOPBACK}:{inference_http}",
                "LLM_INFERENCE_TIME_SCALE": str(time_scale),
                **kv_cache,
                **extra,
            },
            ready_check=http_ready(f"{addresses.inference_http_url}/ready"),
            cwd=REPO,
        ),
        ProcessSpec(
            "orchestrator",
            [python, "-m", "services.orchestrator"],
            env={
                **stack.otel_env("orchestrator"),
                "LLM_ORCHESTRATOR_HOST": LOOPBACK,
                "LLM_ORCHESTRATOR_PORT": str(orchestrator),
                "LLM_INFERENCE_TARGET": addresses.inference_target,
                **limits["orchestrator"],
                **extra,
            },
            ready_check=http_ready(f"{addresses.orchestrator_url}/ready"),
            cwd=REPO,
        ),
        ProcessSpec(
            "gateway",
            [python, "-m", "services.gateway"],
            env={
                **stack.otel_env("gateway"),
                "LLM_GATEWAY_HOST": LOOPBACK,
                "LLM_GATEWAY_PORT": str(gateway),
                "LLM_ORCHESTRATOR_URL": addresses.orchestrator_url,
                "LLM_GATEWAY_API_KEYS": addresses.api_key,
                **limits["gateway"],
                **extra,
            },
            ready_check=http_ready(f"{addresses.gateway_url}/ready"),
            cwd=REPO,
        ),
    ]
    return specs, addresses
