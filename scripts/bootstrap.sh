#!/usr/bin/env bash
# Creates .venv with every pinned Python dependency, builds the gRPC code from services/proto and installs
# the report's plotting library (deploy/local/report/package-lock.json) with npm.
# Idempotent and quick when nothing changed: each install is skipped while its manifest's hash matches.
#
# uv installs the pinned set in seconds where pip takes minutes on 2 cores; it comes from PyPI itself,
# so the only prerequisite is a Python 3.11+ with pip.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
py=${PYTHON:-python3}
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
say() { printf '[bootstrap] %s\n' "$*" >&2; }

if [[ ! -f $stamp ]]; then
  if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv with $($py --version)"
    $py -m venv .venv
  fi
  if [[ ! -x .venv/bin/uv ]]; then
    say "installing uv"
    .venv/bin/python -m pip install -q --disable-pip-version-check uv==0.13.9
  fi
  # The library (editable, every extra) and the `dev` group: the services' and the tooling's pinned
  # dependencies (pyproject.toml's [dependency-groups]; the wheel itself carries the library alone).
  say "installing the library, the services' and the tooling's pinned dependencies"
  VIRTUAL_ENV=$repo/.venv .venv/bin/uv pip install -q -e ".[fastapi,grpc,httpx,gpu,instrument]" --group dev
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Generated gRPC code is built, never committed or hand-edited.
proto=services/proto/inference.proto
gen=services/proto/inference_pb2.py
if [[ ! -f $gen || $proto -nt $gen ]]; then
  say "generating gRPC code from $proto"
  PATH="$repo/.venv/bin:$PATH" .venv/bin/python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \
    --mypy_out=quiet:. --mypy_grpc_out=quiet:. "$proto"
fi

# The drilldown report inlines uPlot from npm (deploy/local/report/package.json says why). Without npm the
# main job still prints the terminal drilldown and says why there is no report; under CI=true it is an error.
report=deploy/local/report
report_stamp=$report/node_modules/.installed-$(sha256sum $report/package-lock.json | cut -c1-16)
if [[ ! -f $report_stamp ]]; then
  if command -v npm >/dev/null; then
    say "installing the report's plotting library (npm ci in $report)"
    npm ci --prefix "$report" --silent --no-audit --no-fund
    touch "$report_stamp"
  elif [[ ${CI:-} == true ]]; then
    say "CI=true and npm is missing: the drilldown report needs it (Debian: apt-get install npm)"
    exit 1
  else
    say "npm not found: no drilldown report until Node.js and npm are installed (Debian: apt-get install npm)"
  fi
fi
