"""Latency of the three real services under a steady load, with and without a 1 Hz scrape of each /metrics.

    .venv/bin/python -m tests.benchmarks.bench_scrape_load [--reps 3] [--requests 600] [--concurrency 6]

The services run as processes in pull mode (``OTEL_METRICS_EXPORTER=prometheus``, ``/metrics`` on the
gateway's and orchestrator's own ports and on the inference side port), with Jaeger and our Collector
receiving their spans, exactly as ``deploy.local`` starts them. The stack's Prometheus runs but does **not**
scrape the services (their targets are removed, and it scrapes only the backends, every 15 s, in both
variants). The scrape under test comes from our own scraper, in a process of its own, which GETs each
service's ``/metrics`` once a second with Prometheus's headers (``Accept: application/openmetrics-text``,
``Accept-Encoding: gzip``). Why not the stack's Prometheus at ``scrape_interval: 1s``: its scrapes cannot
be switched off and on between runs without a restart, so the variants could not be interleaved; its own
CPU (parsing, TSDB appends) would compete with the services on this 2-core machine and be counted as the
services' cost; and it does not report what each scrape took. A scraper in a separate process also keeps
its CPU and GIL out of the load generator's process, which measures the latencies.

Each repetition runs both variants, ``none`` and ``scrape``, in a rotated order; each run is the same
bounded load through the gateway (``services.loadgen.run_load``: ``--requests`` at ``--concurrency`` in
flight, loopback only, a fresh seed per run so the response cache behaves as in one long load). Printed:
p50/p95/p99 per variant as the median over repetitions (min–max), the paired ratio p99(scrape)/p99(none),
the services' CPU per request (utime+stime from ``/proc``), and each service's per-scrape time, size and
series count. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import httpx

from deploy.local.services import service_specs
from deploy.stack import Stack, StackConfig
from services.loadgen import run_load
from tests.benchmarks._bench import fmt, machine_info, proc_cpu_seconds, rotated, summarize, write_json

OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
SERVICES = ("gateway", "orchestrator", "inference")
VARIANTS = ("none", "scrape")


# ---- the scraper (a child process) -------------------------------------------------------------------


Samples = dict[str, list[tuple[float, int, int, int]]]
"""Per target, per scrape: (seconds, wire bytes, body bytes, series lines); NaN seconds for a failure."""


def _scraper(targets: dict[str, str], interval: float, conn: Connection) -> None:
    """Idle until told ``start``; then GET every target each ``interval`` s (a fixed schedule, as
    Prometheus keeps) until told ``stop``, and send back what it measured. ``exit`` ends it."""
    headers = {"Accept": OPENMETRICS, "Accept-Encoding": "gzip"}
    with httpx.Client(timeout=10, headers=headers) as client:
        while (command := conn.recv()) != "exit":
            assert command == "start", command
            samples: Samples = {name: [] for name in targets}
            next_at = time.monotonic()
            while not conn.poll(max(0.0, next_at - time.monotonic())):
                for name, url in targets.items():
                    started = time.perf_counter()
                    try:
                        response = client.get(url)
                        body = response.content  # decoded
                        took = time.perf_counter() - started
                        series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
                        samples[name].append((took, response.num_bytes_downloaded, len(body), series))
                    except httpx.HTTPError:
                        samples[name].append((float("nan"), 0, 0, 0))
                next_at += interval
            assert conn.recv() == "stop"
            conn.send(samples)


class Scraper:
    """The scraper process, started once (its start-up is in no run) and switched on and off per run."""

    def __init__(self, targets: dict[str, str], interval: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_scraper, args=(targets, interval, child), daemon=True)
        self._proc.start()

    def start(self) -> None:
        self._conn.send("start")

    def stop(self) -> Samples:
        self._conn.send("stop")
        if not self._conn.poll(30):
            raise RuntimeError("the scraper did not answer within 30 s")
        samples: Samples = self._conn.recv()
        return samples

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send("exit")
            self._proc.join(timeout=10)
        if self._proc.is_alive():  # stopped by its PID, never by name
            self._proc.kill()
            self._proc.join()


# ---- measuring -----------------------------------------------------------------------------------------


def _quantiles(latencies: list[float]) -> dict[str, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"p50": q[49] * 1000, "p95": q[94] * 1000, "p99": q[98] * 1000}


def _cpu(pids: dict[str, int]) -> float:
    return sum(proc_cpu_seconds(pid) for pid in pids.values())


def _load(url: str, key: str, args: argparse.Namespace, seed: int) -> tuple[list[float], dict[str, int]]:
    report = asyncio.run(
        run_load(url, key, requests=args.requests, concurrency=args.concurrency, duration=600.0, seed=seed)
    )
    return report.latencies, dict(report.statuses)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--requests", type=int, default=600, help="requests per run")
    parser.add_argument("--concurrency", type=int, default=6, help="requests in flight (the local stack's)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between scrapes")
    parser.add_argument("--time-scale", type=float, default=1.0, help="LLM_INFERENCE_TIME_SCALE")
    parser.add_argument("--out", help="write the results as JSON here (under /tmp)")
    args = parser.parse_args()

    info = machine_info()
    print(
        f"load average at start {info['loadavg_at_start']} on {info['cpus']} CPUs; "
        f"{args.reps} reps x {len(VARIANTS)} variants x {args.requests} requests at concurrency "
        f"{args.concurrency}, scrape every {args.interval:g} s, time scale {args.time_scale:g}",
        flush=True,
    )
    # Prometheus scrapes only the backends, every 15 s, in both variants; the services are ours to scrape.
    stack = Stack(StackConfig(service_metrics="pull", scrape_interval="15s"))
    specs, addrs = service_specs(stack, time_scale=args.time_scale)
    stack.service_targets.clear()
    targets = {
        "gateway": f"{addrs.gateway_url}/metrics",
        "orchestrator": f"{addrs.orchestrator_url}/metrics",
        "inference": f"{addrs.inference_http_url}/metrics",
    }
    runs: list[dict[str, Any]] = []
    stack.start(specs)  # on failure it stops what it started
    scraper = Scraper(targets, args.interval)
    try:
        pids = {name: stack.process(name).pid for name in SERVICES}
        warm_up = argparse.Namespace(**{**vars(args), "requests": 60})
        _load(addrs.gateway_url, addrs.api_key, warm_up, 1)  # imports, connections, first series
        scraper.start()  # and one scrape round of each, outside any run
        time.sleep(0.5)
        scraper.stop()
        for rep in range(args.reps):
            for index, variant in enumerate(rotated(VARIANTS, rep)):
                seed = 1000 + 10 * rep + index
                cpu0, wall0 = _cpu(pids), time.monotonic()
                scrapes: Samples = {}
                if variant == "scrape":
                    scraper.start()
                latencies, statuses = _load(addrs.gateway_url, addrs.api_key, args, seed)
                if variant == "scrape":
                    scrapes = scraper.stop()
                cpu, wall = _cpu(pids) - cpu0, time.monotonic() - wall0
                run = {
                    "rep": rep,
                    "variant": variant,
                    **_quantiles(latencies),
                    "requests": len(latencies),
                    "statuses": statuses,
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "scrapes": scrapes,
                }
                runs.append(run)
                n_scrapes = len(scrapes.get("gateway", []))
                print(
                    f"rep {rep} {variant:<6} p50 {run['p50']:6.0f} ms  p95 {run['p95']:6.0f} ms  "
                    f"p99 {run['p99']:6.0f} ms  {wall:5.1f} s  services' CPU {cpu:5.2f} s"
                    + (f"  {n_scrapes} scrapes per service" if scrapes else ""),
                    flush=True,
                )
    finally:
        scraper.close()
        stack.stop()
    _report(runs, args, info)


def _report(runs: list[dict[str, Any]], args: argparse.Namespace, info: dict[str, Any]) -> None:
    by = {(r["rep"], r["variant"]): r for r in runs}
    reps = sorted({r["rep"] for r in runs})
    print("\nlatency through the gateway, median over reps (min–max):")
    for variant in VARIANTS:
        mine = [by[(rep, variant)] for rep in reps]
        cpu_per_req = summarize([r["cpu_s"] / r["requests"] * 1e6 for r in mine])
        print(
            f"  {variant:<6}  p50 {fmt(summarize([r['p50'] for r in mine]))} ms   "
            f"p95 {fmt(summarize([r['p95'] for r in mine]))} ms   "
            f"p99 {fmt(summarize([r['p99'] for r in mine]))} ms   "
            f"services' CPU {fmt(cpu_per_req)} µs/request"
        )
    ratio = summarize([by[(rep, "scrape")]["p99"] / by[(rep, "none")]["p99"] for rep in reps])
    p50_ratio = summarize([by[(rep, "scrape")]["p50"] / by[(rep, "none")]["p50"] for rep in reps])
    print(f"  p99(scrape)/p99(none), paired per rep: {fmt(ratio, 3)}   (p50: {fmt(p50_ratio, 3)})")
    extra_cpu = []
    for rep in reps:
        scraped = by[(rep, "scrape")]
        n = len(scraped["scrapes"].get("gateway", []))
        if n:
            # The same number of requests in both runs: the difference is the scrapes' (and noise).
            extra_cpu.append((scraped["cpu_s"] - by[(rep, "none")]["cpu_s"]) / n * 1000)
    if extra_cpu:
        print(
            f"  services' extra CPU per scrape round (all 3 services): "
            f"{fmt(summarize(extra_cpu), 1)} ms (noisy: a difference of two totals)"
        )
    print("\nper scrape of each /metrics (OpenMetrics, gzip), over every scrape of every rep:")
    for name in SERVICES:
        samples = [s for r in runs for s in r["scrapes"].get(name, []) if s[0] == s[0]]
        if not samples:
            continue
        took = sorted(s[0] * 1000 for s in samples)
        p95 = statistics.quantiles(took, n=20, method="inclusive")[-1] if len(took) > 1 else took[0]
        print(
            f"  {name:<12} {len(took):4d} scrapes   median {statistics.median(took):6.2f} ms   "
            f"p95 {p95:6.2f} ms   max {took[-1]:6.2f} ms   "
            f"{statistics.median(s[2] for s in samples) / 1024:6.1f} KiB "
            f"({statistics.median(s[1] for s in samples) / 1024:5.1f} KiB gzipped), "
            f"{int(statistics.median(s[3] for s in samples))} series lines"
        )
    failed = sum(1 for r in runs for v in r["scrapes"].values() for s in v if s[0] != s[0])
    if failed:
        print(f"  {failed} scrapes failed")
    load_end = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at start {info['loadavg_at_start']}, at end {load_end}")
    write_json(args.out, {"machine": info, "args": vars(args), "runs": runs, "load_at_end": load_end})


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
    sys.exit(0)
