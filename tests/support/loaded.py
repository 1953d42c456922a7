"""The e2e backends plus the three real services, after a realistic load (the ``loaded_backends`` fixture of
tests/e2e/conftest.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import pytest

from deploy.local.services import BURST, ServiceAddresses, service_specs
from deploy.stack import Stack, StackError
from services.loadgen import LoadReport, run_load


@dataclass(frozen=True)
class LoadedBackends:
    stack: Stack
    services: ServiceAddresses
    report: LoadReport
    load_started: float
    load_finished: float

    @property
    def prometheus_url(self) -> str:
        return self.stack.endpoints.prometheus_url

    @property
    def jaeger_url(self) -> str:
        return self.stack.endpoints.jaeger_url


def load_services(stack: Stack) -> LoadedBackends:
    """The three services started on ``stack`` and a realistic load sent through them; the services stop
    with ``stack`` (it stops every process it started). Failures fail the calling fixture."""
    specs, addresses = service_specs(stack)
    try:
        for spec in specs:
            stack.start_process(spec)
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    started = time.time()
    report = asyncio.run(
        run_load(
            addresses.gateway_url,
            addresses.api_key,
            requests=120,
            concurrency=6,
            duration=90,
            seed=11,
            burst=BURST,
        )
    )
    print(f"\n[e2e load] {report.summary()}")
    assert report.statuses["200"] > 0, report.summary()
    return LoadedBackends(stack, addresses, report, started, time.time())
