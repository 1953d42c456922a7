"""Batch spans on their own: when a membership change starts a batch and when it joins the current one.

The engine tests (tests/services/test_engine.py) check the links through a running engine; here the steps
are driven by hand, so the time window and the link cap are exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context

from telemetry import testing
from telemetry.engine import BATCH_MAX_MEMBERS, BatchSpans


@contextmanager
def _requests(n: int) -> Iterator[tuple[testing.Capture, list[tuple[int, Context]]]]:
    """``n`` open request spans, as (key, context) members, in a capture."""
    with testing.capture("inference") as capture:
        tracer = capture.telemetry.tracer_provider.get_tracer("caller")
        spans = [tracer.start_span(f"request {i}") for i in range(n)]
        yield capture, [(i, trace.set_span_in_context(span)) for i, span in enumerate(spans)]
        for span in spans:
            span.end()


def _links(span: dict[str, Any]) -> set[str]:
    return {link["span_id"] for link in span["links"]}


def _by_name(capture: testing.Capture) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in capture.spans()}


def test_changes_within_the_window_join_the_current_batch() -> None:
    with _requests(3) as (capture, members):
        batches = BatchSpans("m", capture.telemetry.tracer_provider, min_seconds=3600)
        first, joined = batches.step(members[:1], 10, admitted={0})
        assert joined == {0}
        same, joined = batches.step(members[:3], 30, admitted={1, 2})
        assert same is first
        assert joined == {1, 2}
        # One leaving adds nothing: the batch has linked the rest already.
        _, joined = batches.step(members[1:], 2, admitted=())
        assert joined == set()
        batches.close()
    spans = _by_name(capture)
    batch = spans["batch m"]
    requests = {i: spans[f"request {i}"] for i in range(3)}
    assert _links(batch) == {r["span_id"] for r in requests.values()}
    assert batch["attributes"]["llm.engine.batch.requests"] == 3
    assert batch["attributes"]["llm.engine.batch.steps"] == 3
    assert batch["attributes"]["llm.engine.batch.tokens"] == 42
    for request in requests.values():
        assert _links(request) == {batch["span_id"]}


def test_a_change_after_the_window_starts_a_new_batch_and_a_readmission_links_once() -> None:
    with _requests(2) as (capture, members):
        batches = BatchSpans("m", capture.telemetry.tracer_provider, min_seconds=0)
        first, joined = batches.step(members, 20, admitted={0, 1})
        assert joined == {0, 1}
        unchanged, joined = batches.step(members, 2, admitted=())
        assert unchanged is first  # same members: same batch, whatever its age
        assert joined == set()
        second, joined = batches.step(members[:1], 1, admitted=())
        assert second is not first
        assert joined == {0}
        batches.close()
    spans = capture.spans()
    first_span, second_span = (s for s in spans if s["name"] == "batch m")
    assert first_span["attributes"]["llm.engine.batch.requests"] == 2
    assert second_span["attributes"]["llm.engine.batch.requests"] == 1
    request = next(s for s in spans if s["name"] == "request 0")
    assert _links(request) == {first_span["span_id"]}  # admitted once, into the first


def test_a_batch_that_linked_the_most_members_ends_at_the_next_change_even_within_the_window() -> None:
    with _requests(BATCH_MAX_MEMBERS + 1) as (capture, members):
        batches = BatchSpans("m", capture.telemetry.tracer_provider, min_seconds=3600)
        first, _ = batches.step(members[:BATCH_MAX_MEMBERS], 1, admitted=range(BATCH_MAX_MEMBERS))
        second, joined = batches.step(members, 1, admitted={BATCH_MAX_MEMBERS})
        assert second is not first
        assert len(joined) == BATCH_MAX_MEMBERS + 1
        batches.close()
    batch_spans = [s for s in capture.spans() if s["name"] == "batch m"]
    assert [len(s["links"]) for s in batch_spans] == [BATCH_MAX_MEMBERS, BATCH_MAX_MEMBERS + 1]
