"""``python -m deploy.stack [overlay ...]``: run the backends until Ctrl-C, printing their addresses."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from deploy.stack import BinaryMissingError, Stack, StackConfig, StackError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.stack", description=__doc__)
    parser.add_argument(
        "overlays", nargs="*", help="deploy/collector/config overlay file names, e.g. overlay-debug.yaml"
    )
    parser.add_argument(
        "--scrape", action="store_true", help="Prometheus scrapes the Collector (no remote write)"
    )
    args = parser.parse_args(argv)
    config = StackConfig(
        overlays=tuple(args.overlays),
        metrics_path="scrape" if args.scrape else "remote_write",
        scrape_interval="5s",
        connector_flush="5s",
        keep_run_dir=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with Stack(config) as stack:
            for key, value in sorted(stack.otel_env().items()):
                print(f"export {key}={value}")
            for field, value in vars(stack.endpoints).items():
                print(f"# {field}: {value}")
            sys.stdout.flush()
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    except (BinaryMissingError, StackError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
