"""``python -m deploy.local [--once]``: the whole pipeline on loopback, a load, and the drilldown.

Runs until Ctrl-C (a new round of load and drilldown every ``--interval`` seconds), or exits after one
round with ``--once``. Every process it started is stopped by its PID on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
import time

from deploy.local.drilldown import find_slowest, render
from deploy.local.services import BURST, service_specs
from deploy.stack import BinaryMissingError, PollTimeoutError, Stack, StackConfig, StackError
from services.loadgen import run_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local", description=__doc__)
    parser.add_argument("--once", action="store_true", help="one round of load and drilldown, then exit")
    parser.add_argument("--requests", type=int, default=150, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument(
        "--pull",
        action="store_true",
        help="Prometheus scrapes each service's /metrics instead of the Collector pushing their metrics",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    config = StackConfig(
        scrape_interval="2s", connector_flush="2s", service_metrics="pull" if args.pull else "push"
    )
    stack = Stack(config)
    specs, addresses = service_specs(stack)
    try:
        stack.start(services=specs)
    except (BinaryMissingError, StackError) as exc:
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
            print(
                f"[load] round {round_no}: {args.requests} requests, {args.concurrency} concurrent …",
                flush=True,
            )
            report = asyncio.run(
                run_load(
                    addresses.gateway_url,
                    addresses.api_key,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    duration=120,
                    seed=round_no,
                    burst=BURST,
                )
            )
            print(report.summary(), flush=True)
            try:
                drill = find_slowest(stack.prometheus, stack.jaeger, window_s=time.time() - started + 30)
                print(render(drill, stack.endpoints.prometheus_url, stack.endpoints.jaeger_url), flush=True)
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
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
