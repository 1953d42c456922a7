"""``python -m deploy.local.report --prometheus URL --jaeger URL``: the drilldown page of any running stack.

Reads the last ``--minutes`` from that Prometheus and Jaeger (loopback or not: the page itself loads
nothing), writes one HTML file and prints its path and size; ``--serve`` then serves its folder on
127.0.0.1 until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from deploy.local.report.collect import collect
from deploy.local.report.page import ReportAssetError, write_report
from deploy.local.report.serve import ReportServer
from deploy.stack import BackendError, JaegerClient, PrometheusClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.report", description=__doc__)
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    parser.add_argument("--jaeger", required=True, help="Jaeger query base URL, e.g. http://127.0.0.1:16686")
    parser.add_argument("--minutes", type=float, default=10.0, help="the window, ending now")
    parser.add_argument("--out", type=Path, help="the HTML file (default: report.html in a new temp folder)")
    parser.add_argument("--serve", action="store_true", help="serve its folder on 127.0.0.1 until Ctrl-C")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, not {args.minutes:g}")
    out: Path = args.out or Path(tempfile.mkdtemp(prefix="llmtel-report-")) / "report.html"
    prometheus, jaeger = PrometheusClient(args.prometheus, timeout=30), JaegerClient(args.jaeger, timeout=30)
    end = time.time()
    try:
        data = collect(prometheus, jaeger, end - args.minutes * 60, end)
        size = write_report(data, out)
    except (BackendError, ReportAssetError, OSError, ValueError, httpx.HTTPError) as exc:
        print(f"no report: {exc}", file=sys.stderr)
        return 1
    finally:
        prometheus.close()
        jaeger.close()
    print(f"report: {out.resolve().as_uri()} ({size} bytes)")
    if args.serve:
        with ReportServer(out.resolve().parent) as server:
            print(f"serving {server.url(out.resolve())} (Ctrl-C stops)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
