"""Serving-engine telemetry: the ``llm.engine.*`` metrics and batch spans, for any continuous-batching engine.

**Metrics.** :class:`EngineMetrics` creates every ``llm.engine.*`` instrument from its spec. The engine
reports what happens as it happens (a step, an admission's prefix lookup, a preemption, a finished or
aborted request); the gauges (requests running and waiting, KV-cache usage and blocks) are read from
:class:`EngineSnapshot` values the engine gives a callback at each collection, so a scrape costs one
snapshot per model and nothing on the hot path.

**Batch membership in the trace.** A *batch* is a run of engine steps. Its span (:class:`BatchSpans`) is
the root of a trace of its own and links to every request that ran in it; each request's span links back
to the batch it was admitted into (and to the one it rejoined after a preemption, when that is another
batch), and counts every batch it ran in (``llm.engine.batches``), so "who was I batched with?" is one
click either way. A new batch starts only when membership changes (an admission, a finish, a preemption)
and the current one has lasted :data:`BATCH_MIN_SECONDS` (changes before that join it), so a request
causes at most two batch spans of its own (joining and leaving) plus two per preemption however long it
runs, and a busy engine at most ten a second per model whatever its traffic; the links are one per
request a batch ran on its span and one per batch a request was admitted into on the request's span
(tests/benchmarks/bench_batch_spans.py measures the cost). Each step's token count
is recorded in the batch span's context: its exemplar points at the batch span, whose trace the marking
reservoir marks, so the Collector's tail sampling keeps it
(deploy/collector/config/overlay-tail-sampling.yaml keeps marked traces).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from time import time_ns

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind

from telemetry import instruments, semconv as sc
from telemetry._errors import contained
from telemetry.views import bounded

_SCOPE = "telemetry.engine"


@dataclass(frozen=True)
class EngineSnapshot:
    """One model's engine state at a collection: what the gauges report."""

    model: str
    running: int
    waiting: int
    blocks_used: int
    blocks_cached: int
    blocks_free: int

    @property
    def kv_cache_usage(self) -> float:
        total = self.blocks_used + self.blocks_cached + self.blocks_free
        return self.blocks_used / total if total else 0.0


def _model(model: str) -> dict[str, str]:
    return {sc.GEN_AI_REQUEST_MODEL: bounded(sc.GEN_AI_REQUEST_MODEL, model)}


class EngineMetrics:
    """Every ``llm.engine.*`` instrument; ``snapshots`` is called once per collection for the gauges."""

    def __init__(
        self,
        snapshots: Callable[[], Iterable[EngineSnapshot]],
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        meter = metrics.get_meter(_SCOPE, meter_provider=meter_provider, schema_url=sc.SCHEMA_URL)
        self._snapshots = snapshots
        self._last: list[EngineSnapshot] = []
        instruments.create(meter, sc.LLM_ENGINE_REQUESTS, callbacks=[self._observe_requests])
        instruments.create(meter, sc.LLM_ENGINE_KV_CACHE_USAGE, callbacks=[self._observe_usage])
        instruments.create(meter, sc.LLM_ENGINE_KV_CACHE_BLOCKS, callbacks=[self._observe_blocks])
        self.prefix_queries = instruments.create(meter, sc.LLM_ENGINE_PREFIX_CACHE_QUERIES)
        self.prefix_hits = instruments.create(meter, sc.LLM_ENGINE_PREFIX_CACHE_HITS)
        self.preemptions = instruments.create(meter, sc.LLM_ENGINE_PREEMPTIONS)
        self.input_tokens = instruments.create(meter, sc.LLM_ENGINE_REQUEST_INPUT_TOKENS)
        self.output_tokens = instruments.create(meter, sc.LLM_ENGINE_REQUEST_OUTPUT_TOKENS)
        self.finished = instruments.create(meter, sc.LLM_ENGINE_FINISHED_REQUESTS)
        self.aborted = instruments.create(meter, sc.LLM_ENGINE_ABORTED_REQUESTS)
        self.step_tokens = instruments.create(meter, sc.LLM_ENGINE_STEP_TOKENS)

    # ---- what the engine reports as it happens --------------------------------------------------------
    def prefix_lookup(self, model: str, queried: int, hit: int) -> None:
        with contained("engine.prefix_lookup"):
            attributes = _model(model)
            self.prefix_queries.add(queried, attributes)
            self.prefix_hits.add(hit, attributes)

    def preempted(self, model: str) -> None:
        with contained("engine.preempted"):
            self.preemptions.add(1, _model(model))

    def step(self, model: str, tokens: int, batch: Span | None) -> None:
        """One engine step; recorded in the batch span's context, so its exemplar is the batch."""
        with contained("engine.step"):
            context = trace.set_span_in_context(batch) if batch is not None else None
            self.step_tokens.record(tokens, _model(model), context=context)

    def request_finished(
        self, model: str, reason: str, *, input_tokens: int, output_tokens: int, context: Context | None
    ) -> None:
        """A request left the engine; ``context`` holds its span (recording) for the histograms' exemplars."""
        with contained("engine.request_finished"):
            attributes = _model(model)
            self.finished.add(1, {**attributes, sc.LLM_ENGINE_FINISH_REASON: reason})
            self.input_tokens.record(input_tokens, attributes, context=context)
            self.output_tokens.record(output_tokens, attributes, context=context)

    def request_aborted(self, model: str, state: str) -> None:
        with contained("engine.request_aborted"):
            self.aborted.add(1, {**_model(model), sc.LLM_ENGINE_REQUEST_STATE: state})

    # ---- the gauges: one snapshot per model per collection -------------------------------------------
    def _observe_requests(self, _options: CallbackOptions) -> list[Observation]:
        # The three callbacks run in one collection, in creation order: this one takes the snapshots.
        self._last = list(self._snapshots())
        return [
            Observation(count, {**_model(s.model), sc.LLM_ENGINE_REQUEST_STATE: state})
            for s in self._last
            for state, count in ((sc.REQUEST_STATE_RUNNING, s.running), (sc.REQUEST_STATE_WAITING, s.waiting))
        ]

    def _observe_usage(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(s.kv_cache_usage, _model(s.model)) for s in self._last]

    def _observe_blocks(self, _options: CallbackOptions) -> list[Observation]:
        return [
            Observation(count, {**_model(s.model), sc.LLM_ENGINE_KV_CACHE_BLOCK_STATE: state})
            for s in self._last
            for state, count in (
                ("used", s.blocks_used),
                ("cached", s.blocks_cached),
                ("free", s.blocks_free),
            )
        ]


BATCH_MIN_SECONDS = 0.1
"""A batch lasts at least this long: membership changes within it join the current batch (which then
links to its new members), so a busy engine makes at most ten batch spans a second per model."""
BATCH_MAX_MEMBERS = 100
"""The most requests a batch links: a change that would take it past this starts a new batch, even within
:data:`BATCH_MIN_SECONDS`, so the links stay under the SDK's default limit (128 a span)."""


class BatchSpans:
    """One span per batch, linked both ways to its members.

    A batch is a run of steps; a new one starts when the membership changes, unless the current batch is
    younger than ``min_seconds``, in which case the newcomers join it. Its span links to every request that
    ran in it; each request's span links back to the batch it was admitted into. The engine calls
    :meth:`step` before every step with the members' contexts (each holding the request's span, as the
    caller passed it) and :meth:`close` when it goes idle. ``model`` names the spans.
    """

    def __init__(
        self,
        model: str,
        tracer_provider: trace.TracerProvider | None = None,
        min_seconds: float = BATCH_MIN_SECONDS,
    ) -> None:
        self._tracer = trace.get_tracer(_SCOPE, tracer_provider=tracer_provider, schema_url=sc.SCHEMA_URL)
        self._model = model
        self._min_ns = int(min_seconds * 1e9)
        self._span: Span | None = None
        self._started_ns = 0
        self._members: tuple[int, ...] = ()
        self._linked: set[int] = set()
        self._steps = 0
        self._tokens = 0

    def step(
        self, members: Sequence[tuple[int, Context | None]], tokens: int, admitted: Collection[int] = ()
    ) -> tuple[Span | None, set[int]]:
        """The batch span of a step run by ``members`` ((request key, context) pairs) computing ``tokens``,
        and the keys of the members new to it (all of them when the batch is new). The members it
        ``admitted`` (keys) link back to it."""
        keys = tuple(key for key, _ in members)
        joined: set[int] = set()
        with contained("engine.batch_step"):
            now = time_ns()
            changed = keys != self._members
            newcomers = (
                [(key, context) for key, context in members if key not in self._linked] if changed else []
            )
            if self._span is None or (
                changed
                and (
                    now - self._started_ns >= self._min_ns
                    or len(self._linked) + len(newcomers) > BATCH_MAX_MEMBERS
                )
            ):
                self.close()
                self._start(now)
                newcomers = list(members)
            if newcomers:
                joined = self._join(newcomers)
                # A request readmitted into a batch it already ran in (preempted and back within the
                # window) is no newcomer: it links to that batch once.
                self._link_back([(key, context) for key, context in newcomers if key in admitted])
            self._members = keys
            self._steps += 1
            self._tokens += tokens
        return self._span, joined

    def close(self) -> None:
        """End the current batch (membership changes next step, or the engine is idle)."""
        span, self._span = self._span, None
        if span is None:
            return
        with contained("engine.batch_close"):
            span.set_attribute(sc.LLM_ENGINE_BATCH_REQUESTS, len(self._linked))
            span.set_attribute(sc.LLM_ENGINE_BATCH_STEPS, self._steps)
            span.set_attribute(sc.LLM_ENGINE_BATCH_TOKENS, self._tokens)
            span.end()
        self._members, self._steps, self._tokens = (), 0, 0
        self._linked = set()

    def _start(self, now: int) -> None:
        self._span = self._tracer.start_span(
            f"batch {self._model}",
            context=Context(),  # a trace of its own: it belongs to every member's trace equally
            kind=SpanKind.INTERNAL,
            attributes={sc.GEN_AI_REQUEST_MODEL: self._model},
            start_time=now,
        )
        self._started_ns = now

    def _join(self, newcomers: Sequence[tuple[int, Context | None]]) -> set[int]:
        """Link the batch to requests that had not run in it yet."""
        assert self._span is not None
        for key, context in newcomers:
            request = trace.get_current_span(context)
            if request.get_span_context().is_valid:
                self._span.add_link(request.get_span_context())
            self._linked.add(key)
        return {key for key, _ in newcomers}

    def _link_back(self, admitted: Sequence[tuple[int, Context | None]]) -> None:
        assert self._span is not None
        batch = self._span.get_span_context()
        if not batch.is_valid:
            return
        for _, context in admitted:
            request = trace.get_current_span(context)
            if request.is_recording():
                request.add_link(batch)


def batches_taken_part_in(context: Context | None, batches: int) -> None:
    """On the request's span (``context``'s), when it leaves the engine: how many batches it ran in."""
    with contained("engine.batches_taken_part_in"):
        span = trace.get_current_span(context)
        if span.is_recording():
            span.set_attribute(sc.LLM_ENGINE_BATCHES, batches)
