"""What choosing exemplars at record time costs: our marking reservoir against the SDK's default.

    python -m tests.benchmarks.bench_exemplars [--records 20000] [--reps 7] [--out FILE]

One process, no I/O. Each variant is a MeterProvider with the semconv view of
``http.server.request.duration`` (trace-based exemplar filter, as configured) and a recording span whose
context every record carries, so every measurement is offered to the reservoir:

- ``sdk``: the SDK's default reservoir for explicit-bucket histograms (the last measurement per bucket);
- ``ours``: :class:`telemetry.exemplars.MarkingReservoir` with the default window: after the first
  records each bucket has its exemplar, which is what almost every record of a running service meets;
- ``ours, every record chosen``: a 1 ns window, so every record becomes its bucket's exemplar and marks
  its span (the worst case, which a real window makes once per bucket and window);
- ``floor``: one sampled span started and ended plus one record, our full set-up (``_bench.Floor``).

Values are spread over the buckets a request's duration falls in. Each repetition runs every variant once
in a rotated order; CPU µs per record is ``process_time`` over the loop; ours minus sdk is paired per
repetition. Goal (issue 28): ours costs at most 5 µs more per record than the SDK's default.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from telemetry import instruments, semconv as sc
from telemetry.exemplars import MarkedSpans, marking_reservoir_factory
from telemetry.options import DEFAULT_EXEMPLAR_WINDOW_S
from tests.benchmarks._bench import Floor, fmt, machine_info, markdown_table, rotated, summarize, write_json

SPEC = sc.HTTP_SERVER_REQUEST_DURATION
ATTRIBUTES: dict[str, AttributeValue] = {
    sc.HTTP_REQUEST_METHOD: "POST",
    sc.HTTP_ROUTE: "/v1/chat/completions",
    sc.HTTP_RESPONSE_STATUS_CODE: 200,
}
VALUES = [0.004, 0.02, 0.07, 0.2, 0.3, 0.6, 0.9, 1.7, 3.0]


def _recorder(window_s: float | None) -> Callable[[int], float]:
    """``n`` records in one recording span's context through a provider with the given reservoir
    (``None``: the SDK's default); returns CPU µs per record."""
    buckets = ExplicitBucketHistogramAggregation(list(SPEC.buckets or ()))
    if window_s is None:
        view = View(instrument_name=SPEC.name, aggregation=buckets)
    else:
        reservoirs = marking_reservoir_factory(window_s, MarkedSpans())
        view = View(instrument_name=SPEC.name, aggregation=buckets, exemplar_reservoir_factory=reservoirs)
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()], views=[view])
    histogram = instruments.create(meters.get_meter("bench"), SPEC)
    span = TracerProvider().get_tracer("bench").start_span("request", kind=SpanKind.SERVER)
    context = trace.set_span_in_context(span)
    values = VALUES

    def run(n: int) -> float:
        k = len(values)
        started = time.process_time()
        for i in range(n):
            histogram.record(values[i % k], ATTRIBUTES, context=context)
        return (time.process_time() - started) / n * 1e6

    return run


def _floor() -> Callable[[int], float]:
    floor = Floor("bench", SPEC, SpanKind.SERVER, "POST /v1/chat/completions", ATTRIBUTES)

    def run(n: int) -> float:
        started = time.process_time()
        for _ in range(n):
            floor.end(floor.start())
        return (time.process_time() - started) / n * 1e6

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.bench_exemplars", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000, help="records per variant and repetition")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    variants = {
        "sdk": _recorder(None),
        "ours": _recorder(DEFAULT_EXEMPLAR_WINDOW_S),
        "ours, every record chosen": _recorder(1e-9),
        "floor": _floor(),
    }
    for run in variants.values():  # warm up: imports, caches, first-window choices
        run(args.records // 10)
    runs: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(args.reps):
        for name in rotated(list(variants), rep):
            runs[name].append(variants[name](args.records))

    added = [o - s for o, s in zip(runs["ours"], runs["sdk"], strict=True)]
    added_chosen = [o - s for o, s in zip(runs["ours, every record chosen"], runs["sdk"], strict=True)]
    rows = [[name, fmt(summarize(values), 2)] for name, values in runs.items()]
    print(f"\nCPU µs per record (median (min–max) over {args.reps} reps of {args.records} records):")
    print(markdown_table(["variant", "µs per record"], rows))
    print(
        f"\nours - sdk, paired per repetition: median {statistics.median(added):+.2f} µs per record "
        f"(goal: at most +5 µs); every record chosen: {statistics.median(added_chosen):+.2f} µs"
    )
    floor = statistics.median(runs["floor"])
    steady, chosen = statistics.median(added) / floor, statistics.median(added_chosen) / floor
    print(
        f"as a share of the floor ({floor:.1f} µs for one span and one record): "
        f"{steady:+.1%}, every record chosen {chosen:+.1%}"
    )
    write_json(
        args.out,
        {
            "machine": machine_info(),
            "records": args.records,
            "reps": args.reps,
            "cpu_us_per_record": runs,
            "ours_minus_sdk_us": added,
            "every_record_chosen_minus_sdk_us": added_chosen,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
