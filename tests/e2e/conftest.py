"""Session fixtures for the e2e tests: real Prometheus, Jaeger and Collector on free loopback ports.

A missing binary skips these tests with the build command in the reason, except under CI=true where
it fails them: CI must never pass by testing nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack import Binaries, BinaryMissingError, Stack, StackConfig, StackError, locate_binaries
from tests._ci import missing
from tests.e2e._alerts import WebhookReceiver, serve_webhook


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    try:
        return locate_binaries()
    except BinaryMissingError as exc:
        missing(exc)


def require(binaries: Binaries, *names: str) -> dict[str, Path]:
    """The binaries' paths, or skip (fail under CI) naming scripts/build-backends.sh."""
    try:
        return binaries.require(*names)
    except BinaryMissingError as exc:
        missing(exc)


@pytest.fixture(scope="session")
def stack(binaries: Binaries) -> Iterator[Stack]:
    require(binaries, "prometheus", "jaeger", "otelcol")
    backends = Stack(StackConfig(), binaries)
    try:
        backends.start()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield backends
    finally:
        backends.stop()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """An Alertmanager webhook receiver on a free loopback port, recording every POST."""
    yield from serve_webhook()


from tests.e2e._loaded import loaded_stack  # noqa: E402,F401  (a fixture shared by several modules)
