"""Shared helpers for the overhead benchmarks (bench_gateway, bench_grpc): not a test module.

Method (as in ``shared/reference/overhead-baseline.md``): each repetition runs every variant once, in a
rotated order; ratios and differences are paired against the ``none`` run of the same repetition; server
CPU is utime+stime of the server process (all threads) read from ``/proc``; the server is pinned to CPU 0
and the load generator to CPU 1 (``taskset``) unless ``--no-pin``. Spans go through a
``BatchSpanProcessor`` to an exporter that only counts them (no serialisation, no network).

Every child process is started through :class:`Children`, which stops each by its PID (SIGTERM, then
SIGKILL) when the benchmark ends, fails, or is interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NoOpTracerProvider, Span, SpanKind
from opentelemetry.util.types import AttributeValue

from telemetry import AdvancedOptions, Telemetry, build_telemetry, instruments, load_settings
from telemetry.semconv import MetricSpec

REPO = Path(__file__).resolve().parents[2]


class CountingSpanExporter(SpanExporter):
    """Accepts every batch and keeps only a count (no memory growth, no I/O)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self._lock:
            self.count += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def ours_telemetry(
    service_name: str, *more_processors: SpanProcessor
) -> tuple[Telemetry, CountingSpanExporter, InMemoryMetricReader]:
    """Our full set-up (``build_telemetry``: views, 100 % sampling, exemplars trace_based), no network."""
    exporter = CountingSpanExporter()
    reader = InMemoryMetricReader()
    built = build_telemetry(
        service_name=service_name,
        gpu=False,
        advanced=AdvancedOptions(
            span_processors=[BatchSpanProcessor(exporter), *more_processors], metric_readers=[reader]
        ),
    )
    return built, exporter, reader


class Floor:
    """The floor: one sampled span and one histogram record with an exemplar per call, nothing else.

    The least any instrumentation built on the SDK's public API pays per request, with our full set-up
    (``ours_telemetry``: views, sampler, BSP, exemplar filter): a span started with ``attributes`` and
    ended, and one point of ``spec`` with the same pre-built attributes, recorded in the span's context so
    that the trace-based filter keeps an exemplar. No propagation, no attach, no status, no attributes
    built per call. The benchmarks run it as a variant of its own, interleaved with the others, so its
    cost is measured in the same conditions (caches shared with the server's own work) as ours.
    """

    def __init__(
        self,
        service_name: str,
        spec: MetricSpec,
        kind: SpanKind,
        name: str,
        attributes: Mapping[str, AttributeValue],
    ) -> None:
        self.built, self.exporter, _ = ours_telemetry(service_name)
        self.tracer = self.built.tracer_provider.get_tracer("bench.floor")
        self.histogram = instruments.create(self.built.meter_provider.get_meter("bench.floor"), spec)
        self.kind, self.name, self.attributes = kind, name, dict(attributes)

    def spans(self) -> int:
        """Spans exported so far (after a flush)."""
        self.built.tracer_provider.force_flush()
        return self.exporter.count

    def start(self) -> tuple[Span, Context, float]:
        span = self.tracer.start_span(self.name, kind=self.kind, attributes=self.attributes)
        return span, trace.set_span_in_context(span), time.perf_counter()

    def end(self, started: tuple[Span, Context, float]) -> None:
        span, ctx, t0 = started
        self.histogram.record(time.perf_counter() - t0, self.attributes, context=ctx)
        span.end()

    def hot_loop_cpu_us(self, n: int = 5000) -> float:
        """CPU µs per start+end in a tight loop (hot caches): what a micro-benchmark of the floor says."""
        for _ in range(n // 10):
            self.end(self.start())
        c0 = time.process_time()
        for _ in range(n):
            self.end(self.start())
        return (time.process_time() - c0) / n * 1e6


def paired_runs(
    runs: Mapping[str, list[dict[str, Any]]], variants: Sequence[str]
) -> Iterator[tuple[str, list[dict[str, Any]], list[tuple[dict[str, Any], dict[str, Any]]]]]:
    """Each variant, its runs, and its runs paired with the ``none`` run of the same rep (the first
    variant's where ``none`` did not run)."""
    base = runs["none"] if "none" in runs else runs[variants[0]]
    for variant in variants:
        yield variant, runs[variant], list(zip(runs[variant], base, strict=True))


def floor_multiples(runs: Mapping[str, Sequence[Mapping[str, Any]]], key: str) -> dict[str, dict[str, float]]:
    """Per variant: its ``key`` overhead over ``none`` as a multiple of the floor's, paired per rep.

    Empty unless both ``none`` and ``floor`` ran. A rep where the floor measured no overhead at all (noise
    larger than the floor) has no multiple and is left out; ``n`` says how many reps remain.
    """
    base, floor = runs.get("none"), runs.get("floor")
    if not base or not floor:
        return {}
    floor_added = [f[key] - b[key] for f, b in zip(floor, base, strict=True)]
    return {
        variant: summarize(
            [(r[key] - b[key]) / fa for r, b, fa in zip(rs, base, floor_added, strict=True) if fa > 0]
        )
        for variant, rs in runs.items()
    }


def stock_providers(service_name: str) -> tuple[TracerProvider, MeterProvider, CountingSpanExporter]:
    """The plain SDK set-up a stock user writes: default sampler, BSP, a MeterProvider without views."""
    resource = Resource.create({"service.name": service_name})
    exporter = CountingSpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    meter_provider = MeterProvider(resource=resource, metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider, exporter


def noop_telemetry(service_name: str) -> Telemetry:
    """A ``Telemetry`` whose providers are the API's no-ops: the services' own calls record nothing.

    ``Telemetry`` is typed with the SDK classes; the no-op API providers offer every method the services
    call (``get_tracer``/``get_meter``), so the cast is safe for serving (not for ``shutdown``).
    """
    settings = load_settings({"service_name": service_name, "gpu": False})
    return Telemetry(
        settings,
        Resource.create({"service.name": service_name}),
        cast(TracerProvider, NoOpTracerProvider()),
        cast(MeterProvider, NoOpMeterProvider()),
    )


def child_env() -> dict[str, str]:
    """The environment for servers: repo importable, SDK defaults (no inherited OTEL_* overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLM_"))}
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of a process (all its threads) from /proc, in seconds."""
    data = Path(f"/proc/{pid}/stat").read_bytes().decode()
    rest = data.rsplit(")", 1)[1].split()  # fields after comm; utime, stime are fields 14, 15 (1-based)
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def pin(cpu: int, enabled: bool) -> list[str]:
    return ["taskset", "-c", str(cpu)] if enabled else []


def rotated(items: Sequence[str], rep: int) -> list[str]:
    k = rep % len(items)
    return [*items[k:], *items[:k]]


def summarize(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1], "n": len(ordered)}


def fmt(stats: dict[str, float], digits: int = 0) -> str:
    """``median (min–max)``."""
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}–{stats['max']:.{digits}f})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "loadavg_at_start": [round(x, 2) for x in load],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1))
    print(f"\nresults written to {out}")


class _Interrupted(BaseException):
    """SIGTERM turned into an exception, so ``finally`` blocks stop the children."""


class Children:
    """Every process the benchmark starts; :meth:`stop_all` ends each one by its PID."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        proc: subprocess.Popen[str] = subprocess.Popen(
            list(cmd), text=True, cwd=REPO, env=child_env(), **kwargs
        )
        self._procs.append(proc)
        return proc

    def run(self, cmd: Sequence[str], timeout: float, *, with_stderr: bool = False) -> str:
        """Run to completion (stdout returned, stderr after it with ``with_stderr``: where a program
        logs); stopped by PID if interrupted or past ``timeout``."""
        stderr = subprocess.STDOUT if with_stderr else subprocess.PIPE
        proc = self.start(cmd, stdout=subprocess.PIPE, stderr=stderr)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            self.stop(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} exited {proc.returncode}: {(err or out).strip()[-2000:]}")
        return out

    def stop(self, proc: subprocess.Popen[str], grace: float = 10.0) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            except ProcessLookupError:
                pass
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self._procs):
            self.stop(proc, grace=3.0)


@contextmanager
def children() -> Iterator[Children]:
    """Children stopped by PID on exit, Ctrl-C or SIGTERM."""
    group = Children()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield group
    except (KeyboardInterrupt, _Interrupted):
        print("\ninterrupted: stopping child processes", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        group.stop_all()
        signal.signal(signal.SIGTERM, previous)
