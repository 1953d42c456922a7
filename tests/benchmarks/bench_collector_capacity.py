"""Capacity of one otelcol-llm core per configuration, driven by the Collector's own load generator.

    .venv/bin/python -m tests.benchmarks.bench_collector_capacity [--configs passthrough,base,...]
        [--rates 2500,5000,10000,20000,40000] [--step-seconds 8] [--pin] [--out /tmp/capacity.json]

Needs ``scripts/build-backends.sh otelcol prometheus jaeger telemetrygen``. Configurations:

- ``passthrough``: OTLP in, batch, OTLP out to Jaeger (tests/benchmarks/otelcol-passthrough.yaml): the
  ceiling on this machine.
- ``base``: deploy/collector/config/base.yaml: span metrics, service graph, the persistent queue, both
  metric paths (the prometheus exporter and remote write to a real Prometheus).
- ``sampling``: base + overlay-tail-sampling.yaml (decision wait 5 s here, 30 s by default).
- ``agent``: base + overlay-agent.yaml + overlay-agent-static.yaml, its gateway a pass-through Collector.
- ``gateway``: base + overlay-gateway.yaml.

Nothing is pinned by default: on two cores shared with other work, a load generator pinned beside Jaeger
and Prometheus fell short of its rate (80 % of 2,000 spans/s at load average 12). ``--pin`` runs the
Collector under test alone on CPU 0 and the rest on CPU 1. Per core means per CPU-second of the Collector
process (utime+stime), so the figure holds whichever cores it ran on.

For each configuration the offered rate steps up (telemetrygen ``traces``, a worker per 250 spans/s,
traces of 5 spans) until a step is not sustained: a step is sustained when the receiver refused nothing,
no exporter dropped or failed to enqueue a span, it accepted at least 95 % of what was offered, and every
probe reached Jaeger. Per step: accepted spans/s, the Collector's CPU (cores, utime+stime from /proc),
spans/s per core, the end-to-end delay (a probe span sent every 0.25 s beside the load, the time until
Jaeger's query API returns it: p50 and p99), RSS, the traces the sampler or the agent's groupbytrace holds
in memory, and the series the prometheus exporter exposes. Then the table:
per configuration, the highest sustained step and its share of the pass-through ceiling (per core).

Figures only, no assertions. The machine's load average is printed at the start and the end of each
configuration: other work on the two shared cores shows up as noise (see deploy/collector/README.md,
"Sizing").
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from deploy.stack import LOOPBACK, ProcessSpec, Stack, StackConfig, http_ready, locate_binaries
from deploy.stack._process import ManagedProcess
from deploy.stack._render import collector_config_args
from tests.benchmarks._bench import (
    REPO,
    children,
    machine_info,
    markdown_table,
    pin,
    proc_cpu_seconds,
    write_json,
)
from tests.support.collector_tier import collector_env_on, free_collector_ports

PASSTHROUGH = REPO / "tests" / "benchmarks" / "otelcol-passthrough.yaml"
WORKER_RATE = 250
"""Spans/s per telemetrygen worker, at most. Each worker paces itself with a token bucket of one token, so
a wake-up late by scheduling loses that token: at 625 and 1,250 spans/s a worker (4 workers) sent 96 % and
85 % of its rate on this machine while the Collector used under a tenth of a core. Slower workers, more
of them, keep the offered rate what it says."""
CHILD_SPANS = 4  # 5 spans a trace, as a request through our three services makes
PROBE_EVERY_S = 0.25
SAMPLING_DECISION_WAIT_S = 5


@dataclass(frozen=True)
class Config:
    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    needs_gateway: bool = False


CONFIGS = {
    "passthrough": Config((f"--config=file:{PASSTHROUGH}",)),
    "base": Config(tuple(collector_config_args(()))),
    "sampling": Config(
        tuple(collector_config_args(("overlay-tail-sampling.yaml",))),
        {"OTELCOL_TAIL_DECISION_WAIT": f"{SAMPLING_DECISION_WAIT_S}s"},
    ),
    "agent": Config(
        tuple(collector_config_args(("overlay-agent.yaml", "overlay-agent-static.yaml"))), needs_gateway=True
    ),
    "gateway": Config(
        tuple(collector_config_args(("overlay-gateway.yaml",))), {"OTELCOL_INSTANCE_ID": "bench-gateway"}
    ),
}


@dataclass
class Step:
    config: str
    offered: float
    generated_per_s: float
    """Spans telemetrygen made over the step (its own count), per second: it falls a little short of the
    offered rate (92 % at 250 spans/s a worker, with no Collector at all), more when the cores are busy."""
    accepted_per_s: float
    """Spans the receiver accepted over the step, per second of the step."""
    cpu_seconds: float
    """The Collector's utime+stime from the step's start until its probes were stored."""
    refused: float
    dropped: float
    probes_sent: int
    probes_stored: int
    delay_p50_s: float
    delay_p99_s: float
    rss_mib: float
    in_memory_traces: float
    series: int
    loadavg: float
    seconds: float

    @property
    def cores(self) -> float:
        """The Collector's CPU per second of load."""
        return self.cpu_seconds / self.seconds

    @property
    def per_core(self) -> float:
        """Spans per CPU-second: what one core carries at this configuration."""
        return self.accepted_per_s * self.seconds / self.cpu_seconds if self.cpu_seconds else float("nan")

    @property
    def sustained(self) -> bool:
        """The Collector took all it was sent: nothing refused or dropped, what telemetrygen made
        accepted (its exporter drops what a slow receiver leaves in its queue), every probe stored."""
        return (
            self.refused == 0
            and self.dropped == 0
            and self.accepted_per_s >= 0.99 * self.generated_per_s
            and self.probes_stored == self.probes_sent
        )

    @property
    def offered_in_full(self) -> bool:
        """telemetrygen made at least 85 % of the offered rate: below that the machine, not the Collector,
        set the pace, and no higher step is tried."""
        return self.generated_per_s >= 0.85 * self.offered


# ---- the Collector under test -------------------------------------------------------------------------


@dataclass
class Collector:
    proc: ManagedProcess
    telemetry_url: str
    exporter_url: str
    otlp: str

    def metric(self, *names: str) -> float:
        """Sum of the series of ``names`` (with or without ``_total``) on the Collector's own metrics."""
        text = httpx.get(self.telemetry_url, timeout=5).text
        wanted = {n for name in names for n in (name, f"{name}_total")}
        total = 0.0
        for line in text.splitlines():
            if line and not line.startswith("#") and line.split("{", 1)[0].split(" ", 1)[0] in wanted:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def series(self) -> int:
        """Series on the prometheus exporter (0 where the config has none)."""
        try:
            text = httpx.get(self.exporter_url, timeout=5).text
        except httpx.HTTPError:
            return 0
        return sum(1 for line in text.splitlines() if line and not line.startswith("#"))

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def start_collector(
    stack: Stack, name: str, binary: str, config: Config, *, env: dict[str, str], cpu: int, pinned: bool
) -> Collector:
    ports = free_collector_ports()
    full_env = {**collector_env_on(stack, name, ports, f"{LOOPBACK}:{ports['grpc']}"), **config.env, **env}
    spec = ProcessSpec(
        name,
        [*pin(cpu, pinned), binary, *config.args],
        env=full_env,
        ready_check=http_ready(f"http://{LOOPBACK}:{ports['health']}/"),
    )
    proc = stack.start_process(spec)
    return Collector(
        proc,
        f"http://{LOOPBACK}:{ports['telemetry']}/metrics",
        f"http://{LOOPBACK}:{ports['exporter']}/metrics",
        f"{LOOPBACK}:{ports['grpc']}",
    )


def stop_collector(stack: Stack, collector: Collector) -> None:
    collector.proc.stop()
    stack.processes.remove(collector.proc)


# ---- one step: telemetrygen at a rate, probes beside it -----------------------------------------------


class Probes:
    """A marked probe span every 0.25 s (tail sampling keeps it), and when Jaeger first returns each."""

    def __init__(self, stack: Stack, endpoint: str, service: str) -> None:
        self._stack = stack
        self.service = service
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self._provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
        )
        self._tracer = self._provider.get_tracer("bench.capacity")
        self.sent: dict[str, float] = {}
        self.stored: dict[str, float] = {}

    def send_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.time()
            with self._tracer.start_as_current_span(
                "probe", kind=SpanKind.SERVER, attributes={"llm.exemplar": True}
            ) as span:
                trace_id = format_trace_id(span.get_span_context().trace_id)
            self.sent[trace_id] = started
            stop.wait(PROBE_EVERY_S)

    def watch_until(self, deadline: float, load_done: threading.Event) -> None:
        """Polls Jaeger for the probe service; stops when every probe sent is found after the load."""
        first = time.time() - 60
        while time.time() < deadline:
            now = time.time()
            try:
                found = self._stack.jaeger.trace_ids(self.service, first, now + 60)
            except Exception:  # Jaeger busy: try again
                found = set()
            for trace_id in found:
                self.stored.setdefault(trace_id, now)
            if load_done.is_set() and set(self.sent) <= set(self.stored):
                return
            time.sleep(0.2)

    def delays(self) -> list[float]:
        return sorted(self.stored[t] - sent for t, sent in self.sent.items() if t in self.stored)

    def close(self) -> None:
        self._provider.shutdown()


def run_step(
    stack: Stack, telemetrygen: str, collector: Collector, *, rate: float, seconds: float, pinned: bool
) -> Step:
    """One step at ``rate`` offered spans/s for ``seconds``, against the running ``collector``."""
    name = collector.proc.spec.name
    lost = ("otelcol_exporter_send_failed_spans", "otelcol_exporter_enqueue_failed_spans")
    accepted0 = collector.metric("otelcol_receiver_accepted_spans")
    refused0 = collector.metric("otelcol_receiver_refused_spans")
    dropped0 = collector.metric(*lost)
    probes = Probes(stack, collector.otlp, f"probe-{name}-{int(rate)}")
    load_done, stop_probes = threading.Event(), threading.Event()
    wait_s = seconds + 20 + (SAMPLING_DECISION_WAIT_S if name == "sampling" else 0)
    sender = threading.Thread(target=probes.send_until, args=(stop_probes,), daemon=True)
    watcher = threading.Thread(target=probes.watch_until, args=(time.time() + wait_s, load_done), daemon=True)
    workers = max(4, math.ceil(rate / WORKER_RATE))
    cmd = [
        *pin(1, pinned), telemetrygen, "traces",
        "--otlp-endpoint", collector.otlp, "--otlp-insecure",
        "--workers", str(workers), "--rate", f"{rate / workers:g}", "--duration", f"{seconds:g}s",
        "--child-spans", str(CHILD_SPANS), "--service", f"capacity-{name}",
        "--allow-export-failures",
    ]  # fmt: skip
    with children() as procs:
        cpu0 = proc_cpu_seconds(collector.proc.pid)
        sender.start()
        watcher.start()
        log = procs.run(cmd, timeout=seconds + 60, with_stderr=True)
    stop_probes.set()
    sender.join()
    rss, series = collector.rss_mib(), collector.series()
    in_memory = collector.metric(
        "otelcol_processor_tail_sampling_sampling_traces_on_memory",
        "otelcol_processor_groupbytrace_num_traces_in_memory",
    )
    load_done.set()
    watcher.join()  # every probe stored: what the load sent has gone through
    cpu = proc_cpu_seconds(collector.proc.pid) - cpu0
    accepted = collector.metric("otelcol_receiver_accepted_spans") - accepted0
    probes.close()
    delays = probes.delays()
    return Step(
        config=name,
        offered=rate,
        generated_per_s=_generated_spans(log) / seconds,
        accepted_per_s=accepted / seconds,
        cpu_seconds=cpu,
        refused=collector.metric("otelcol_receiver_refused_spans") - refused0,
        dropped=collector.metric(*lost) - dropped0,
        probes_sent=len(probes.sent),
        probes_stored=len(delays),
        delay_p50_s=statistics.median(delays) if delays else float("nan"),
        delay_p99_s=_quantile(delays, 0.99),
        rss_mib=rss,
        in_memory_traces=in_memory,
        series=series,
        loadavg=os.getloadavg()[0],
        seconds=seconds,
    )


GENERATED = re.compile(r'traces generated\s+\{"worker": \d+, "traces": (\d+)\}')


def _generated_spans(log: str) -> int:
    """Spans telemetrygen made, from its per-worker ``traces generated`` lines."""
    traces = [int(n) for n in GENERATED.findall(log)]
    if not traces:
        raise RuntimeError(f"telemetrygen logged no 'traces generated' line:\n{log[-2000:]}")
    return sum(traces) * (1 + CHILD_SPANS)


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- the run -----------------------------------------------------------------------------------------


def _row(step: Step) -> list[str]:
    return [
        step.config, f"{step.offered:,.0f}", f"{step.generated_per_s:,.0f}", f"{step.accepted_per_s:,.0f}",
        f"{step.cores:.2f}", f"{step.per_core:,.0f}", f"{step.delay_p50_s:.2f} / {step.delay_p99_s:.2f}",
        f"{step.rss_mib:.0f}", f"{step.in_memory_traces:,.0f}", str(step.series),
        f"{step.refused:g} / {step.dropped:g}", f"{step.probes_stored}/{step.probes_sent}",
        ("yes" if step.sustained else "NO") + ("" if step.offered_in_full else ", generator short"),
        f"{step.loadavg:.1f}",
    ]  # fmt: skip


STEP_HEADER = [
    "config", "offered spans/s", "generated spans/s", "accepted spans/s", "cores", "spans/s per core",
    "delay p50 / p99 s", "RSS MiB", "traces in memory", "series", "refused / dropped", "probes stored",
    "sustained", "load",
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rates", default="2500,5000,10000,20000,40000", help="offered spans/s, stepped up")
    parser.add_argument("--step-seconds", type=float, default=8.0)
    parser.add_argument("--pin", action="store_true", help="the Collector on CPU 0, everything else on CPU 1")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    names = args.configs.split(",")
    unknown = set(names) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configs {sorted(unknown)}; known: {', '.join(CONFIGS)}")
    rates = [float(r) for r in args.rates.split(",")]
    pinned = args.pin
    binaries = locate_binaries()
    paths = binaries.require("otelcol", "prometheus", "jaeger", "telemetrygen")
    otelcol, telemetrygen = str(paths["otelcol"]), str(paths["telemetrygen"])
    info = machine_info()
    print(f"machine: {info}")
    # The connectors flush as they do by default (15 s), not at the tests' 1 s.
    stack = Stack(StackConfig(connector_flush="15s"), binaries)
    steps: list[Step] = []
    try:
        prometheus, jaeger, _otelcol = stack.backend_specs()
        stack.render()
        for spec in (prometheus, jaeger):
            stack.start_process(replace(spec, argv=[*pin(1, pinned), *spec.argv]))
        print(markdown_table(STEP_HEADER, []))
        for name in names:
            config = CONFIGS[name]
            load_before = os.getloadavg()[0]
            env: dict[str, str] = {}
            gateway = None
            if config.needs_gateway:
                # The agent's gateway: a pass-through Collector beside the backends (only the agent counts).
                gateway = start_collector(
                    stack, f"{name}-gateway", otelcol, CONFIGS["passthrough"], env={}, cpu=1, pinned=pinned
                )
                env["OTELCOL_GATEWAY_ENDPOINTS"] = f"[{gateway.otlp}]"
            collector = start_collector(stack, name, otelcol, config, env=env, cpu=0, pinned=pinned)
            try:
                for rate in rates:
                    step = run_step(
                        stack, telemetrygen, collector, rate=rate, seconds=args.step_seconds, pinned=pinned
                    )
                    steps.append(step)
                    print("| " + " | ".join(_row(step)) + " |", flush=True)
                    if not (step.sustained and step.offered_in_full):
                        break
            finally:
                stop_collector(stack, collector)
                if gateway:
                    stop_collector(stack, gateway)
            print(f"  ({name}: load average {load_before:.1f} → {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        stack.stop()
    _summary(steps, names)
    write_json(args.out, {"machine": info, "steps": [asdict(s) | {"per_core": s.per_core} for s in steps]})


def _summary(steps: Sequence[Step], names: Sequence[str]) -> None:
    best = {
        name: max(
            (s for s in steps if s.config == name and s.sustained),
            key=lambda s: s.accepted_per_s,
            default=None,
        )
        for name in names
    }
    ceiling = best.get("passthrough")
    rows = []
    for name, step in best.items():
        if step is None:
            rows.append([name, "not sustained at the lowest rate", "", "", "", "", "", ""])
            continue
        topped = all(s.sustained for s in steps if s.config == name)
        share = f"{step.per_core / ceiling.per_core:.0%}" if ceiling else "n/a"
        cores_per_10k = 10_000 / step.per_core
        rows.append([
            name, ("≥ " if topped else "") + f"{step.accepted_per_s:,.0f}", f"{step.per_core:,.0f}", share,
            f"{step.delay_p99_s:.2f}", f"{step.rss_mib:.0f}", f"{cores_per_10k:.2f}",
            f"{step.in_memory_traces:,.0f} / {step.series}",
        ])  # fmt: skip
    print("\nHighest sustained step per configuration (the step above it refused, dropped or fell behind;")
    print("≥: the Collector took every step, the last stopped where the machine's cores could generate")
    print("no more, or at the highest rate asked: its capacity is higher):")
    header = [
        "config", "spans/s sustained", "spans/s per core", "share of pass-through", "p99 delay s",
        "RSS MiB", "cores per 10k spans/s", "traces in memory / series",
    ]  # fmt: skip
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
