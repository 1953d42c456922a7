"""Session fixtures for the e2e tests: real Prometheus, Jaeger and Collector on free loopback ports.

A missing binary skips these tests with the build command in the reason, except under CI=true where
it fails them: CI must never pass by testing nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.stack import Binaries, BinaryMissingError, Stack, locate_binaries
from tests.support.alerts import WebhookReceiver, serve_webhook
from tests.support.backends import running_stack
from tests.support.ci import missing
from tests.support.loaded import LoadedBackends, load_services


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    try:
        return locate_binaries()
    except BinaryMissingError as exc:
        missing(exc)


@pytest.fixture(scope="session")
def backends(binaries: Binaries) -> Iterator[Stack]:
    """Prometheus, Jaeger and our Collector with the default configuration, shared by the session."""
    with running_stack(binaries) as backends:
        yield backends


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """An Alertmanager webhook receiver on a free loopback port, recording every POST."""
    yield from serve_webhook()


@pytest.fixture(scope="session")
def loaded_backends(backends: Stack) -> LoadedBackends:
    """``backends`` plus the three real services, after a realistic load."""
    return load_services(backends)
