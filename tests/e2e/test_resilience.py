"""Traces accepted while Jaeger is down survive, even across a Collector restart (persistent queue)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from deploy.stack import Binaries, Stack, StackConfig, StackError, poll_until
from tests.support.backends import require
from tests.support.emit import emit

DEADLINE = 60.0
_QUEUE_SIZE = re.compile(
    r'^otelcol_exporter_queue_size\{[^}]*exporter="otlp_grpc/traces"[^}]*\} (\S+)$', re.M
)


@pytest.fixture
def own_stack(binaries: Binaries) -> Iterator[Stack]:
    """A stack of its own: this test stops and restarts its processes."""
    require(binaries, "prometheus", "jaeger", "otelcol")
    stack = Stack(StackConfig(), binaries)
    try:
        stack.start()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield stack
    stack.stop()


def _traces_queue_size(stack: Stack) -> float:
    text = httpx.get(stack.endpoints.collector_telemetry_url, timeout=5).text
    match = _QUEUE_SIZE.search(text)
    return float(match.group(1)) if match else 0.0


def test_traces_queued_while_jaeger_is_down_survive_a_collector_restart(own_stack: Stack) -> None:
    stack = own_stack
    stack.process("jaeger").stop()

    out = emit(stack.endpoints.otlp_grpc, requests=3)
    queued = poll_until(
        lambda: _traces_queue_size(stack), "spans waiting in the Jaeger sending queue", DEADLINE
    )

    # The queue lives in file_storage: a restart must bring it back, not drop it.
    stack.restart("otelcol")
    restored = poll_until(lambda: _traces_queue_size(stack), "the queue restored after the restart", DEADLINE)

    jaeger_back = time.monotonic()
    stack.restart("jaeger")
    for trace_id in out.trace_ids:

        def complete(t: str = trace_id) -> bool:
            return len(stack.jaeger.get_trace(t)) == 5

        poll_until(complete, f"all 5 spans of {trace_id} in Jaeger after the outage", DEADLINE)
    print(
        f"\nqueue held {queued:g} batch(es) during the outage and {restored:g} after the Collector restart; "
        f"all {len(out.trace_ids)} traces in Jaeger {time.monotonic() - jaeger_back:.1f} s after it came back"
    )
