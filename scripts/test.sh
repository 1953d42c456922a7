#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then lint, types and every test.
#
#   scripts/test.sh                 everything (unit, services over loopback, e2e against real backends)
#   scripts/test.sh -m "not e2e"    any extra arguments go to pytest
#
# With CI=true a missing backend binary fails the e2e tests instead of skipping them.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
step() { printf '\n==> %s\n' "$*"; }

step "Python environment (.venv)"
scripts/bootstrap.sh

step "Backends: Collector (OCB), Prometheus, Jaeger, Alertmanager, etcd, kube-apiserver, kubectl, helm (cached after the first build)"
scripts/build-backends.sh all

step "Browser for the report's page test: Debian's Chromium"
scripts/install-browser.sh

step "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

step "mypy --strict"
.venv/bin/mypy

step "pytest"
.venv/bin/pytest "$@"
