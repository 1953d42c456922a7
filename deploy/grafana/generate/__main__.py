"""``python -m deploy.grafana.generate [--check]``: write the dashboards, or check them for drift."""

from __future__ import annotations

import argparse
import sys

from deploy.grafana.generate import DASHBOARDS_DIR, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.grafana.generate", description=__doc__)
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a file differs from the generator's output",
    )
    args = parser.parse_args(argv)
    if args.check:
        drifted = stale()
        for name in drifted:
            print(f"{DASHBOARDS_DIR / name}: differs from the generator's output", file=sys.stderr)
        if drifted:
            print("run: python -m deploy.grafana.generate", file=sys.stderr)
        return 1 if drifted else 0
    for name in write():
        print(f"wrote {DASHBOARDS_DIR / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
