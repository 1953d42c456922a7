#!/usr/bin/env bash
# The main job, from a fresh machine: installs what it needs, builds (or reuses) the backends, then runs
# Prometheus, Jaeger, our Collector and the three services on loopback, drives a load through the gateway
# and prints the drilldown from the slowest latency bucket to its trace. Ctrl-C stops everything.
#
#   scripts/run-stack.sh            rounds of load + drilldown until Ctrl-C
#   scripts/run-stack.sh --once     one round, then exit (also: --requests N --concurrency N --interval S)
#   scripts/run-stack.sh --sampled  the Collector's sampling configuration (5 % of ordinary traces kept,
#                                   every exemplar's trace kept) under a steady load (--rate R)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
printf '==> Python environment (.venv)\n'
scripts/bootstrap.sh
printf '==> Backends (built once, then cached): Collector, Prometheus, Jaeger\n'
# Only what the local stack runs; the test command builds Alertmanager too.
scripts/build-backends.sh otelcol prometheus jaeger
printf '==> Local stack\n'
exec .venv/bin/python -m deploy.local "$@"
