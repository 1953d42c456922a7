#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then lint, types and every test.
#
#   scripts/test.sh                every tier: lint, types, the fast tests, the backends' build, the e2e tests
#   scripts/test.sh --fast         lint, types and every test that needs no built backend (no Go build)
#   scripts/test.sh [--fast] ARGS  ARGS go to pytest, which then runs once (e.g. tests/telemetry -k exemplar)
#
# Tiers are folders (tests/conftest.py marks them): the fast one is tests/{telemetry,services,deploy,docs};
# e2e is tests/e2e, where every test starts a built binary. Each tier's wall time is printed at the end.
# With CI=true a missing backend binary or browser fails the e2e tests instead of skipping them.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

fast=false
if [[ ${1:-} == --fast ]]; then
  fast=true
  shift
fi

timings=""
failed=""
step() { printf '\n==> %s\n' "$*"; }
timed() {  # timed NAME COMMAND...: run it and remember its wall time; a failure is remembered, not fatal
  local name=$1 start=$SECONDS status=0
  shift
  "$@" || status=$?
  timings+="${timings:+ · }$name $((SECONDS - start)) s"
  ((status == 0)) || failed+="${failed:+, }$name"
  return 0
}
finish() {
  printf '\n==> wall time per tier: %s\n' "$timings"
  if [[ -n $failed ]]; then
    printf '==> FAILED: %s\n' "$failed"
    exit 1
  fi
}
trap finish EXIT

step "Python environment (.venv)"
timed "setup" scripts/bootstrap.sh
[[ -z $failed ]] || exit 1  # nothing below can run without it

step "ruff"
timed "ruff" bash -c '.venv/bin/ruff check . && .venv/bin/ruff format --check .'

step "mypy --strict"
timed "mypy" .venv/bin/mypy

if (($#)); then
  if ! $fast; then
    step "Backends (cached after the first build)"
    timed "backends" scripts/build-backends.sh all
    timed "browser" scripts/install-browser.sh
  fi
  step "pytest $*"
  timed "pytest" .venv/bin/pytest "$@"
  exit
fi

step "fast tests: library, services on loopback, deploy files, docs (no built backend)"
timed "fast tests" .venv/bin/pytest -m "not e2e"
$fast && exit

step "Backends: Collector (OCB), Prometheus, Jaeger, Alertmanager, Sloth, etcd, kube-apiserver, kubectl, helm, docker compose, Thanos, Cassandra (cached after the first build)"
timed "backends" scripts/build-backends.sh all
timed "browser" scripts/install-browser.sh

step "e2e tests: real backends, services, browser and the compose stack in Docker"
timed "e2e tests" .venv/bin/pytest -m e2e
