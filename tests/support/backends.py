"""The built backend binaries a test needs: their paths, or a skip naming the build script (a failure under
CI=true, where a test must never pass by testing nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy.stack import Binaries, BinaryMissingError, Stack, StackConfig, StackError
from tests.support.ci import missing


def require(binaries: Binaries, *names: str) -> dict[str, Path]:
    """The binaries' paths, or skip (fail under CI) naming scripts/build-backends.sh."""
    try:
        return binaries.require(*names)
    except BinaryMissingError as exc:
        missing(exc)


@contextmanager
def running_stack(binaries: Binaries, config: StackConfig | None = None) -> Iterator[Stack]:
    """Prometheus, Jaeger and our Collector started with ``config`` (a start that fails fails the test, its
    reason without a traceback), stopped on the way out."""
    require(binaries, "prometheus", "jaeger", "otelcol")
    stack = Stack(config or StackConfig(), binaries)
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()
