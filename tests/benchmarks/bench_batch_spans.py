"""What batch membership in the trace costs per request: the engine with its batch spans against the same
engine whose batch spans go to a no-op tracer.

    python -m tests.benchmarks.bench_batch_spans [--requests 300] [--concurrency 16] [--reps 5] [--out FILE]

One process, no I/O: the simulated engine with an 8B model's step times (4 ms a decode step, 20k prompt
tokens/s), one model with room for every request, ``--concurrency`` requests in flight, each under its own
sampled request span (as the inference server's), spans to a batching processor whose exporter only counts
them. CPU time is the process's (idle sleeps cost none), so what differs is the telemetry. The variants,
interleaved and rotated per repetition:

- ``off``: the engine's tracer is a no-op (no batch spans, no links); metrics as usual;
- ``on``: batch spans, their links to the members, and each member's links back.

Printed: CPU µs per request of each and their paired difference (what the batch spans cost a request), and
per request the batch spans made and the links on both sides.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from opentelemetry import context as otel_context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from services.common.models import ModelSpec
from services.inference.engine import EngineRequest
from services.inference.scheduler import SchedulerLimits
from services.inference.simulated import KvCacheConfig, SimulatedEngine
from telemetry import testing
from tests.benchmarks._bench import fmt, machine_info, markdown_table, rotated, summarize, write_json

MODEL = ModelSpec("m", prefill_seconds_per_token=0.00005, decode_seconds_per_token=0.004)


class Counted(SpanExporter):
    def __init__(self) -> None:
        self.batches = 0
        self.batch_links = 0
        self.request_links = 0
        self.requests = 0

    def export(self, spans: object) -> SpanExportResult:
        for span in spans:  # type: ignore[attr-defined]
            assert isinstance(span, ReadableSpan)
            if span.name.startswith("batch "):
                self.batches += 1
                self.batch_links += len(span.links)
            else:
                self.requests += 1
                self.request_links += len(span.links)
        return SpanExportResult.SUCCESS


async def _run(variant: str, requests: int, concurrency: int) -> tuple[float, Counted]:
    counted = Counted()
    capture = testing.capture("inference", exemplar_window=30.0)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(counted))
    engine_tracing = provider if variant == "on" else trace.NoOpTracerProvider()
    engine = SimulatedEngine(
        {MODEL.name: MODEL},
        kv_cache=KvCacheConfig(1 << 40),
        limits=SchedulerLimits(max_running=concurrency),
        time_scale=1.0,
        meter_provider=capture.telemetry.meter_provider,
        tracer_provider=engine_tracing,
    )
    tracer = provider.get_tracer("caller")
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            with tracer.start_as_current_span("request"):
                prompt = [f"w{i}-{j}" for j in range(24)]
                request = EngineRequest(str(i), MODEL, prompt, 32, otel_context.get_current())
                async for _ in engine.generate(request):
                    pass

    started = time.process_time()
    await asyncio.gather(*(one(i) for i in range(requests)))
    cpu = time.process_time() - started
    await engine.close()
    provider.shutdown()
    capture.shutdown()
    return cpu / requests * 1e6, counted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_batch_spans", description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    extra: list[float] = []
    counts: Counted | None = None
    for rep in range(args.reps):
        this: dict[str, float] = {}
        for variant in rotated(["off", "on"], rep):
            us, counted = asyncio.run(_run(variant, args.requests, args.concurrency))
            cpu[variant].append(us)
            this[variant] = us
            if variant == "on":
                counts = counted
        extra.append(this["on"] - this["off"])
    assert counts is not None
    n = counts.requests
    rows = [
        ["engine, batch spans off", fmt(summarize(cpu["off"]), 1)],
        ["engine, batch spans on", fmt(summarize(cpu["on"]), 1)],
        ["paired difference (what batch spans cost)", fmt(summarize(extra), 1)],
    ]
    print(machine_info())
    print(
        f"{args.requests} requests, {args.concurrency} in flight, {args.reps} repetitions; CPU µs per request"
    )
    print(markdown_table(["variant", "µs per request, median (min–max)"], rows))
    print(
        f"per request: {counts.batches / n:.2f} batch spans, {counts.batch_links / n:.2f} links on batch "
        f"spans, {counts.request_links / n:.2f} links on the request's span "
        f"(median paired cost {statistics.median(extra):.0f} µs)"
    )
    write_json(
        args.out,
        {
            "cpu_us_per_request": cpu,
            "paired_extra_us": extra,
            "per_request": {
                "batch_spans": counts.batches / n,
                "batch_links": counts.batch_links / n,
                "request_links": counts.request_links / n,
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
