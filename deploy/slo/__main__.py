"""``python -m deploy.slo [--check] [--sloth PATH] [--out PATH] [--windows DIR --period P]``: write the SLO
rules with Sloth, or check the committed ones."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.slo import RULES_PATH, SPEC_PATH, SlothError, SpecError, generate, load
from deploy.stack import BinaryMissingError, locate_binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.slo", description=__doc__)
    parser.add_argument("--spec", type=Path, default=SPEC_PATH, help="the SLO spec (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RULES_PATH, help="the rules file (default: %(default)s)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if --out differs from Sloth's output"
    )
    parser.add_argument(
        "--sloth", type=Path, help="the sloth binary (default: scripts/build-backends.sh's, or LLMTEL_SLOTH)"
    )
    parser.add_argument(
        "--windows", type=Path, help="a directory of AlertWindows files (default: the spec's)"
    )
    parser.add_argument(
        "--period", help="the SLO period, one of the windows files' sloPeriod (default: the spec's)"
    )
    args = parser.parse_args(argv)
    try:
        sloth = args.sloth or locate_binaries().require("sloth")["sloth"]
        text = generate(load(args.spec), sloth, windows_dir=args.windows, period=args.period)
    except (SpecError, SlothError, BinaryMissingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        current = args.out.read_text() if args.out.is_file() else None
        if current != text:
            print(f"{args.out}: differs from Sloth's output for {args.spec}", file=sys.stderr)
            print("run: python -m deploy.slo && deploy/helm/sync-files.sh", file=sys.stderr)
            return 1
        return 0
    if args.out.is_file() and args.out.read_text() == text:
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
