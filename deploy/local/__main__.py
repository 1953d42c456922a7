"""``python -m deploy.local [--once] [--sampled]``: the whole pipeline on loopback, a load, and the drilldown.

Runs until Ctrl-C (a new round of load and drilldown every ``--interval`` seconds), or exits after one
round with ``--once``. Each round also writes the drilldown as a page (deploy.local.report) to
``round-N.html`` in the reports folder (kept after exit; ``--report-dir``) and prints its URL: served on
127.0.0.1 while the job runs, the file itself with ``--once``. ``--sampled`` runs the Collector's
sampling configuration (deploy/collector/config/overlay-tail-sampling.yaml, 5 % of ordinary traces
kept) under a steady load, so the exemplar guarantee's figures show what it keeps. Every process it
started is stopped by its PID on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from deploy.local.drilldown import Drilldown, find_slowest, render
from deploy.local.report import ReportAssetError, ReportServer, collect, write_report
from deploy.local.report.collect import load_window, wait_until_settled
from deploy.local.services import BURST, service_specs
from deploy.stack import BackendError, BinaryMissingError, PollTimeoutError, Stack, StackConfig, StackError
from deploy.stack.guarantee import measure
from services.loadgen import run_load

SAMPLED_RATE, SAMPLED_SECONDS = 20.0, 60.0
SAMPLED_DECISION_WAIT_S = 10
SAMPLED_COLLECTOR_ENV = {
    # The overlay's 30 s default suits requests of up to half a minute; this load's take under 3 s, and
    # a shorter wait shows the round's figures sooner.
    "OTELCOL_TAIL_DECISION_WAIT": f"{SAMPLED_DECISION_WAIT_S}s",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--once", action="store_true", help="one round of load and drilldown, then exit")
    parser.add_argument("--requests", type=int, default=150, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument(
        "--sampled",
        action="store_true",
        help="tail sampling in the Collector (5 %% of ordinary traces; every exemplar's trace kept), "
        "under a steady load (--rate, default 20/s, for 60 s)",
    )
    parser.add_argument("--rate", type=float, help="open-loop requests per second instead of --concurrency")
    parser.add_argument(
        "--pull",
        action="store_true",
        help="Prometheus scrapes each service's /metrics instead of the Collector pushing their metrics",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        help="where each round's page goes (default: a new llmtel-reports-* folder in the temp dir)",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    rate = args.rate or (SAMPLED_RATE if args.sampled else None)
    requests = args.requests if args.rate or not args.sampled else int(SAMPLED_RATE * SAMPLED_SECONDS)
    config = StackConfig(
        scrape_interval="2s",
        connector_flush="2s",
        service_metrics="pull" if args.pull else "push",
        overlays=("overlay-tail-sampling.yaml",) if args.sampled else (),
        collector_env=SAMPLED_COLLECTOR_ENV if args.sampled else {},
    )
    stack = Stack(config)
    # A steady rate wants the services' own admission limits; the rounds' burst wants low ones.
    specs, addresses = service_specs(stack, low_admission_limits=rate is None)
    try:
        report_dir = _report_dir(args.report_dir)
    except OSError as exc:
        parser.error(f"--report-dir: {exc}")
    # --once exits right after its round: its page is opened as a file, not from a server gone with it
    reports = _Reports(report_dir, None if args.once else ReportServer(report_dir).start())
    try:
        stack.start(services=specs)
    except (BinaryMissingError, StackError) as exc:
        reports.stop()
        print(exc, file=sys.stderr)
        return 1
    try:
        print(f"\ngateway {addresses.gateway_url}  (API key for this run: {addresses.api_key})")
        print(
            f"Prometheus {stack.endpoints.prometheus_url}   Jaeger {stack.endpoints.jaeger_url}\n", flush=True
        )
        round_no = 0
        while not stop.is_set():
            round_no += 1
            started = time.time()
            pace = f"{rate:g}/s" if rate else f"{args.concurrency} concurrent"
            print(f"[load] round {round_no}: {requests} requests, {pace} …", flush=True)
            report = asyncio.run(
                run_load(
                    addresses.gateway_url,
                    addresses.api_key,
                    requests=requests,
                    concurrency=args.concurrency if rate is None else 400,
                    duration=120,
                    seed=round_no,
                    burst=BURST if rate is None else 0,
                    rate=rate,
                )
            )
            finished = time.time()
            print(report.summary(), flush=True)
            try:
                drill = find_slowest(stack.prometheus, stack.jaeger, window_s=time.time() - started + 30)
                if args.sampled:  # the last traces are decided DECISION_WAIT after they end
                    time.sleep(SAMPLED_DECISION_WAIT_S + 3)
                drill = replace(
                    drill,
                    guarantee=measure(
                        stack.prometheus, stack.jaeger, started, time.time(), served=len(report.latencies)
                    ),
                )
                print(render(drill, stack.endpoints.prometheus_url, stack.endpoints.jaeger_url), flush=True)
                _write_report(stack, reports, drill, (started, finished), round_no)
            except PollTimeoutError as exc:
                print(f"drilldown failed: {exc}", file=sys.stderr)
                if args.once:
                    return 1
            if args.once:
                return 0
            print(f"\nnext round in {args.interval:.0f} s (Ctrl-C to stop)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait(args.interval)
    except KeyboardInterrupt:
        pass
    finally:
        reports.stop()
        stack.stop()
    return 0


def _report_dir(chosen: Path | None) -> Path:
    if chosen is None:
        return Path(tempfile.mkdtemp(prefix="llmtel-reports-"))
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen.resolve()


@dataclass(frozen=True)
class _Reports:
    directory: Path
    server: ReportServer | None

    def url(self, path: Path) -> str:
        return self.server.url(path) if self.server else path.as_uri()

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _write_report(
    stack: Stack, reports: _Reports, drill: Drilldown, load: tuple[float, float], round_no: int
) -> None:
    """This round's page, beside the terminal drilldown: a failure costs the page, never the round.

    Its window is the load's, from a little before it until its rates fall back to 0, read once settled
    (a few seconds after the drilldown)."""
    path = reports.directory / f"round-{round_no}.html"
    start, end = load_window(*load)
    wait_until_settled(end)
    try:
        data = collect(
            stack.prometheus,
            stack.jaeger,
            start,
            end,
            guarantee=drill.guarantee,
            title=f"llm-telemetry drilldown, round {round_no}",
        )
        size = write_report(data, path)
    except (BackendError, ReportAssetError, OSError, ValueError, httpx.HTTPError) as exc:
        print(f"no report this round: {exc}", file=sys.stderr, flush=True)
        return
    kept = f", kept as {path}" if reports.server else ""
    print(f"Report:     {reports.url(path)}  ({size / 1024:.0f} KiB{kept})", flush=True)


if __name__ == "__main__":
    sys.exit(main())
