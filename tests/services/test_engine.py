"""The simulated engine: continuous batching over a paged KV cache, and what it tells the telemetry.

Each test runs the engine in-process with in-memory telemetry; the request "spans" are the callers', as the
inference server's would be.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from time import perf_counter
from typing import Any

import pytest
from opentelemetry import context as otel_context

from services.common.models import ModelSpec
from services.inference.engine import (
    EngineEvent,
    EngineRequest,
    Finished,
    Preempted,
    PromptTooLongError,
    Scheduled,
    Token,
    tokenize,
)
from services.inference.scheduler import SchedulerLimits, simulated_output
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from telemetry import semconv as sc, testing

MODEL = ModelSpec(
    "m", prefill_seconds_per_token=0.00001, decode_seconds_per_token=0.001, max_output_tokens=64
)
BLOCK = 16


@dataclass
class Engine:
    engine: SimulatedEngine
    capture: testing.Capture

    async def run(self, name: str, prompt: Sequence[str], max_tokens: int = 64) -> list[EngineEvent]:
        """One request under its own span (the caller's), every event it got."""
        tracer = self.capture.telemetry.tracer_provider.get_tracer("caller")
        with tracer.start_as_current_span(f"request {name}"):
            request = EngineRequest(name, MODEL, list(prompt), max_tokens, otel_context.get_current())
            return [event async for event in self.engine.generate(request)]

    def spans(self, prefix: str) -> list[dict[str, Any]]:
        return [s for s in self.capture.spans() if s["name"].startswith(prefix)]


@asynccontextmanager
async def engine(blocks: int, max_running: int = 8) -> AsyncIterator[Engine]:
    with testing.capture("inference", exemplar_window=0.001) as capture:
        simulated = SimulatedEngine(
            {MODEL.name: MODEL},
            kv_cache=KvCacheConfig(blocks * BLOCK * MODEL.kv_bytes_per_token, BLOCK),
            limits=SchedulerLimits(max_running=max_running),
            meter_provider=capture.telemetry.meter_provider,
            tracer_provider=capture.telemetry.tracer_provider,
        )
        try:
            yield Engine(simulated, capture)
        finally:
            await simulated.close()


def _prompt(i: int, words: int = 20, shared: int = 0) -> list[str]:
    return [*(f"shared{j}" for j in range(shared)), *(f"q{i}w{j}" for j in range(words))]


def _text(events: list[EngineEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, Token)]


def _finished(events: list[EngineEvent]) -> Finished:
    last = events[-1]
    assert isinstance(last, Finished)
    return last


@pytest.mark.anyio
async def test_the_answer_is_the_prompts_own_whatever_it_was_batched_with() -> None:
    async with engine(blocks=64) as e:
        alone = await e.run("alone", _prompt(0))
        together = await asyncio.gather(*(e.run(f"r{i}", _prompt(i)) for i in range(6)))
    assert _text(alone) == _text(together[0]) == simulated_output(_prompt(0), 64)
    for i, events in enumerate(together):
        assert _text(events) == simulated_output(_prompt(i), 64)
        finished = _finished(events)
        assert (finished.input_tokens, finished.output_tokens) == (20, len(_text(events)))
        assert finished.reason == ("length" if finished.output_tokens == 64 else "stop")


@pytest.mark.anyio
async def test_time_really_elapses_one_decode_step_per_token() -> None:
    async with engine(blocks=64) as e:
        started = perf_counter()
        events = await e.run("one", _prompt(3), max_tokens=20)
        elapsed = perf_counter() - started
    tokens = len(_text(events))
    assert tokens == 20
    assert elapsed >= tokens * MODEL.decode_seconds_per_token


@pytest.mark.anyio
async def test_requests_wait_while_the_kv_cache_is_full_and_all_finish() -> None:
    async with engine(blocks=8) as e:  # 128 tokens: two requests of 20 + 64 tokens at most
        seen_waiting: list[int] = []

        async def watch() -> None:
            for _ in range(200):
                seen_waiting.extend(s.waiting for s in e.engine.snapshots())
                await asyncio.sleep(0.002)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(e.run(f"r{i}", _prompt(i)) for i in range(6)))
        watcher.cancel()
        blocks = e.capture.value(
            "llm.engine.kv_cache.blocks",
            {"gen_ai.request.model": "m", "llm.engine.kv_cache.block.state": "used"},
        )
    assert max(seen_waiting) > 0
    assert all(isinstance(r[-1], Finished) for r in results)
    assert [_text(r) for r in results] == [simulated_output(_prompt(i), 64) for i in range(6)]
    assert blocks == 0  # everything freed once all finished


@pytest.mark.anyio
async def test_a_request_preempted_for_want_of_blocks_is_recomputed_and_answers_the_same() -> None:
    async with engine(blocks=6) as e:  # 96 tokens: three prompts fit, their answers do not
        results = await asyncio.gather(*(e.run(f"r{i}", _prompt(i, words=14), 64) for i in range(3)))
        preemptions = e.capture.value("llm.engine.preemptions", {"gen_ai.request.model": "m"})
    preempted = [r for r in results if any(isinstance(ev, Preempted) for ev in r)]
    assert preempted
    for events in preempted:
        kinds = [type(ev).__name__ for ev in events if not isinstance(ev, Token)]
        assert kinds[:3] == ["Scheduled", "Preempted", "Scheduled"]
        resumed = [ev for ev in events if isinstance(ev, Scheduled)][1]
        assert resumed.resumed
    assert [_text(r) for r in results] == [simulated_output(_prompt(i, words=14), 64) for i in range(3)]
    assert preemptions == sum(_finished(r).preemptions for r in results) > 0


@pytest.mark.anyio
async def test_a_shared_prompt_prefix_is_served_from_the_prefix_cache() -> None:
    async with engine(blocks=64) as e:
        first = await e.run("first", _prompt(1, words=5, shared=48))
        second = await e.run("second", _prompt(2, words=5, shared=48))
        hits = e.capture.value("llm.engine.prefix_cache.hits", {"gen_ai.request.model": "m"})
        queries = e.capture.value("llm.engine.prefix_cache.queries", {"gen_ai.request.model": "m"})
    assert _finished(first).cached_tokens == 0
    assert _finished(second).cached_tokens == 48  # three whole blocks of the shared 48 tokens
    admitted = next(ev for ev in second if isinstance(ev, Scheduled))
    assert admitted.cached_tokens == 48
    assert (hits, queries) == (48, 2 * 53)


@pytest.mark.anyio
async def test_aborted_requests_are_counted_by_where_they_were_and_free_their_blocks() -> None:
    async with engine(blocks=4, max_running=1) as e:
        running = asyncio.create_task(e.run("running", _prompt(1, words=4), 64))
        waiting = asyncio.create_task(e.run("waiting", _prompt(2, words=4), 64))
        await asyncio.sleep(0.02)
        assert [(s.running, s.waiting) for s in e.engine.snapshots()] == [(1, 1)]
        waiting.cancel()
        running.cancel()
        for task in (waiting, running):
            with pytest.raises(asyncio.CancelledError):
                await task
        value = e.capture.value
        model = {"gen_ai.request.model": "m"}
        aborted = {
            state: value("llm.engine.aborted_requests", {**model, "llm.engine.request.state": state})
            for state in ("running", "waiting")
        }
        finished = value("llm.engine.finished_requests", {**model, "llm.engine.finish_reason": "abort"})
        used = value("llm.engine.kv_cache.blocks", {**model, "llm.engine.kv_cache.block.state": "used"})
    assert aborted == {"running": 1, "waiting": 1}
    assert (finished, used) == (2, 0)


@pytest.mark.anyio
async def test_an_answer_that_outgrows_the_whole_kv_cache_ends_at_its_limit() -> None:
    async with engine(blocks=2) as e:  # 32 tokens in all
        events = await e.run("long", _prompt(7, words=20), 64)
    finished = _finished(events)
    assert finished.reason == "length"
    # Every token's KV fits but the last one's, which no step needed yet.
    assert finished.input_tokens + finished.output_tokens == 2 * BLOCK + 1
    assert _text(events) == simulated_output(_prompt(7, words=20), 64)[: finished.output_tokens]


@pytest.mark.anyio
async def test_a_prompt_larger_than_the_kv_cache_is_refused_before_it_runs() -> None:
    async with engine(blocks=2) as e:
        with pytest.raises(PromptTooLongError, match="KV blocks"):
            await e.run("huge", _prompt(0, words=40))


@pytest.mark.anyio
async def test_each_batch_span_links_its_members_and_each_member_links_back() -> None:
    async with engine(blocks=64) as e:
        await asyncio.gather(*(e.run(f"r{i}", _prompt(i), 24 + 8 * i) for i in range(4)))
        batches = e.spans("batch m")
        requests = {s["span_id"]: s for s in e.spans("request ")}
    by_id = {b["span_id"]: b for b in batches}
    assert batches
    for batch in batches:
        members = {link["span_id"] for link in batch["links"]}
        assert members <= set(requests)
        assert len(members) == batch["attributes"]["llm.engine.batch.requests"]
        assert batch["parent_span_id"] is None  # a trace of its own
        assert batch["trace_id"] not in {r["trace_id"] for r in requests.values()}
    for span_id, request in requests.items():
        # It links back to the batch it was admitted into (no preemption here), which lists it...
        (admitted,) = [by_id[link["span_id"]] for link in request["links"]]
        assert span_id in {link["span_id"] for link in admitted["links"]}
        # ...and counts every batch it ran in: exactly those whose links name it.
        ran_in = [b for b in batches if span_id in {link["span_id"] for link in b["links"]}]
        assert request["attributes"]["llm.engine.batches"] == len(ran_in) >= 1
    # Membership changes only when one joins or leaves: at most two new batches per request.
    assert len(batches) <= 2 * len(requests)


@pytest.mark.anyio
async def test_the_step_histograms_exemplar_is_the_batch_span_marked_to_be_kept() -> None:
    async with engine(blocks=64) as e:
        await asyncio.gather(*(e.run(f"r{i}", _prompt(i), 16) for i in range(3)))
        points = e.capture.metrics()["llm.engine.step.tokens"]["points"]
        batches = {b["span_id"]: b for b in e.spans("batch m")}
    exemplars = [x for p in points for x in p["exemplars"]]
    assert exemplars
    for exemplar in exemplars:
        batch = batches[exemplar["span_id"]]
        assert batch["trace_id"] == exemplar["trace_id"]
        assert batch["attributes"][sc.LLM_EXEMPLAR] is True


@pytest.mark.anyio
async def test_the_gauges_report_each_models_requests_and_blocks() -> None:
    async with engine(blocks=16) as e:
        task = asyncio.create_task(e.run("r", _prompt(0, words=20), 64))
        await asyncio.sleep(0.01)
        value = e.capture.value
        model = {"gen_ai.request.model": "m"}
        running = value("llm.engine.requests", {**model, "llm.engine.request.state": "running"})
        usage = value("llm.engine.kv_cache.usage", model)
        blocks = {
            state: value("llm.engine.kv_cache.blocks", {**model, "llm.engine.kv_cache.block.state": state})
            for state in ("used", "cached", "free")
        }
        await task
    assert running == 1
    assert sum(blocks.values()) == 16
    assert usage == pytest.approx(blocks["used"] / 16)
    assert blocks["used"] >= 2  # 20 prompt tokens and what it decoded so far


def test_tokenize_is_words_and_punctuation() -> None:
    assert tokenize("Why is p99 high?") == ["Why", "is", "p99", "high", "?"]
