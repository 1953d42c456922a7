"""Fixtures of the services tests: ``services`` (the three services on loopback, tests.support.services),
``app_server`` and ``extra_gateway``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from services.gateway.app import create_app as create_gateway
from tests.support.services import MODELS, AppServer, InProcessServices, gateway_settings, serving


@pytest.fixture(scope="module")
def services() -> Iterator[InProcessServices]:
    with serving() as running:
        yield running


@pytest.fixture
def app_server(services: InProcessServices) -> Iterator[AppServer]:
    served = AppServer(services.loop)
    yield served
    served.stop()


@pytest.fixture
def extra_gateway(services: InProcessServices, app_server: AppServer) -> Callable[..., str]:
    """Start another real gateway with some settings changed; returns its base URL. Stopped after the test."""

    def start(**overrides: Any) -> str:
        settings = gateway_settings(overrides.pop("orchestrator_url", services.orchestrator_url), **overrides)
        return app_server.start_gateway(
            create_gateway(settings, services.captures["gateway"].telemetry, MODELS)
        )

    return start
