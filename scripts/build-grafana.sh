#!/usr/bin/env bash
# Builds the Grafana server (backend only: HTTP API, provisioning, datasource queries; no web UI) from
# its Go module and caches it outside the repo, keyed by version, next to scripts/build-backends.sh's.
#
#   scripts/build-grafana.sh            build if missing (cold: long; needs Go, gcc, the Go module proxy)
#   scripts/build-grafana.sh --print    print GRAFANA=<binary> and GRAFANA_HOME=<homepath> lines
#
# Grafana's module path has no /vN suffix, so only pseudo-versions on v1.9.1 resolve; the Go module
# proxy our build machines reach mirrors only some of them. This one is the newest found there
# (Grafana 10.0.0-preview, commit 81d85ce8028d, 2023-06-09).
# Its go.mod has replace directives, so `go install` is refused: the build runs inside a copy of the
# module, where they apply. The dependency-injection code (pkg/server/wire_gen.go) is not in the module
# and is generated with google/wire, as Grafana's Makefile did at the time. Not the wire version the
# go.mod pins: that one loads packages with golang.org/x/tools v0.7.0, whose type checker panics under
# current Go (nil types.Sizes); wire's generated code does not depend on its version.
set -euo pipefail

GRAFANA_VERSION=10.0.0-pre-81d85ce8028d
GRAFANA_MODULE_VERSION=v1.9.2-0.20230609164553-81d85ce8028d
WIRE_VERSION=v0.7.0

cache=${LLMTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-telemetry}
dest="$cache/bin/grafana-$GRAFANA_VERSION"

log() { printf '[grafana %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [[ ${1:-} == --print ]]; then
  echo "GRAFANA=$dest/bin/grafana"
  echo "GRAFANA_HOME=$dest"
  exit 0
fi

if [[ -x $dest/bin/grafana && -f $dest/conf/defaults.ini ]]; then
  log "grafana $GRAFANA_VERSION cached ($dest)"
  exit 0
fi
command -v go >/dev/null || { log "Go is required and was not found on PATH"; exit 1; }
command -v gcc >/dev/null || { log "gcc is required (SQLite is a cgo package in this Grafana)"; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/.build-grafana.lock"
flock 9

start=$SECONDS
log "downloading github.com/grafana/grafana@$GRAFANA_MODULE_VERSION"
src=$(go mod download -json "github.com/grafana/grafana@$GRAFANA_MODULE_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
[[ -d $src ]] || { log "go mod download gave no source dir"; exit 1; }

work="$cache/work/grafana-$GRAFANA_VERSION"
rm -rf "$work"; mkdir -p "$work"
cp -r "$src/." "$work/"; chmod -R u+w "$work"
cd "$work"
export GOWORK=off GOFLAGS=-mod=mod

log "downloading dependencies"
go mod download

log "generating wire_gen.go (google/wire $WIRE_VERSION)"
GOFLAGS= go run "github.com/google/wire/cmd/wire@$WIRE_VERSION" gen -tags oss ./pkg/server ./pkg/cmd/grafana-cli/runner

log "compiling ./pkg/cmd/grafana"
mkdir -p "$dest.tmp/bin"
CGO_ENABLED=1 go build -tags oss \
  -ldflags "-X main.version=$GRAFANA_VERSION -X main.commit=81d85ce8028d" \
  -o "$dest.tmp/bin/grafana" ./pkg/cmd/grafana

# The server needs its home: conf/defaults.ini and the public/ tree (views, plugin manifests). The UI's
# compiled assets (public/build) do not exist; the API does not need them.
cp -r conf "$dest.tmp/conf"
cp -r public "$dest.tmp/public"
rm -rf "$dest"; mv "$dest.tmp" "$dest"
rm -rf "$work"
log "done in $((SECONDS - start)) s: $dest/bin/grafana"
