#!/usr/bin/env bash
# Local stand-ins for the base images deploy/compose.yaml and its Dockerfiles name, which no registry our
# build machines reach serves, tagged with the names in deploy/versions.env; run against the engine of
# scripts/docker-engine.sh (or DOCKER_HOST). Recipes in scripts/stand-ins/, facts in
# shared/reference/containers.md.
#
#   scripts/docker-stand-ins.sh                  Python, distroless, Prometheus, Alertmanager, Jaeger, and the
#                                                Collector image from the binary scripts/build-backends.sh built
#   scripts/docker-stand-ins.sh --collector-ocb  the same, but the Go image instead of the Collector image, for
#                                                building deploy/collector/Dockerfile as users do (OCB inside: ~10 min
#                                                more on 2 cores)
#
# The base of all of them is Debian bookworm (debootstrap --variant=minbase), imported once; the Prometheus,
# Alertmanager and Jaeger images hold the binaries scripts/build-backends.sh caches. The engine's layer
# cache keeps every step, so a second run only re-sends the build contexts. Grafana and Tempo (AGPL) have
# no stand-in: nothing here builds them, and the tests start every service but Grafana.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipes="$repo/scripts/stand-ins"
# shellcheck source=../deploy/versions.env
source "$repo/deploy/versions.env"
minbase=llm-telemetry-stand-in/debian:bookworm-minbase

log_tag=stand-ins
# shellcheck source=lib/progress.sh
source "$repo/scripts/lib/progress.sh"
die() { log "$*"; exit 1; }

# A build context of its own per image: only what its recipe copies.
context() {
  local dir="$work/$1"; mkdir -p "$dir/ca-certificates"
  # The host's extra CA certificates (Debian keeps them here): HTTPS may pass a re-signing proxy.
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$dir/ca-certificates/" \; 2>/dev/null || true
  echo "$dir"
}

# Hard links where the cache and the context share a filesystem: nothing is copied.
put() { cp -l "$1" "$2" 2>/dev/null || cp "$1" "$2"; }

build() {  # build TAG RECIPE CONTEXT [docker build args...]
  local tag=$1 recipe=$2 dir=$3; shift 3
  with_progress "image $tag" docker build --file "$recipes/$recipe" --tag "$tag" "$@" "$dir"
}

base_image() {
  if docker image inspect "$minbase" >/dev/null 2>&1; then
    log "$minbase present"
    return
  fi
  command -v debootstrap >/dev/null || die "debootstrap not installed: run scripts/docker-engine.sh install"
  local rootfs="$work/rootfs"
  with_progress "debootstrap --variant=minbase bookworm" debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  with_progress "import $minbase" bash -c "tar -C '$rootfs' --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD [\"bash\"]' - '$minbase'"
  rm -rf "$rootfs"
}

# deploy/collector/Dockerfile's runtime stage as it is, with the binary taken from the build context instead of
# its OCB stage: the image users build, without the compile.
collector_from_binary() {
  local binary=$1 dir; dir=$(context otelcol)
  put "$binary" "$dir/otelcol-llm"
  cp -r "$repo/deploy/collector/config" "$dir/config"
  mkdir -p "$dir/out/var/lib/otelcol/file_storage"
  {
    echo "ARG COLLECTOR_RUNTIME_IMAGE"
    sed -n '/^FROM \${COLLECTOR_RUNTIME_IMAGE}/,$p' "$repo/deploy/collector/Dockerfile" \
      | sed -e 's|^COPY --from=build /build/_build/otelcol-llm |COPY otelcol-llm |' \
            -e 's|^COPY --from=build \(--chown=[0-9:]*\) /out/|COPY \1 out/|'
  } >"$dir/Dockerfile"
  grep -q -- '--from=' "$dir/Dockerfile" && die "deploy/collector/Dockerfile's runtime stage changed: update collector_from_binary"
  with_progress "image $OTELCOL_IMAGE (from $binary)" docker build --file "$dir/Dockerfile" --tag "$OTELCOL_IMAGE" \
    --build-arg COLLECTOR_RUNTIME_IMAGE="$COLLECTOR_RUNTIME_IMAGE" "$dir"
}

main() {
  local ocb=false
  case ${1:-} in
    --collector-ocb) ocb=true ;;
    "") ;;
    *) echo "usage: $0 [--collector-ocb]" >&2; exit 2 ;;
  esac
  if [[ -z ${DOCKER_HOST:-} ]]; then
    eval "$("$repo/scripts/docker-engine.sh" env | sed 's/^/export /')"
  fi
  docker info >/dev/null 2>&1 || die "no Docker engine answers at ${DOCKER_HOST}: run scripts/docker-engine.sh start"
  local -A bin
  local key value
  while IFS='=' read -r key value; do bin[$key]=$value; done < <("$repo/scripts/build-backends.sh" --print)
  local name
  for name in PROMETHEUS PROMTOOL ALERTMANAGER JAEGER OTELCOL; do
    [[ -x ${bin[$name]} ]] || die "${bin[$name]} not built: run scripts/build-backends.sh"
  done

  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  local start=$SECONDS
  base_image
  build "$PYTHON_IMAGE" python.Dockerfile "$(context python)" --build-arg BASE="$minbase"
  local dir; dir=$(context busybox)
  # The stage both take their files from, tagged: an untagged one is pruned, and its cache with it.
  build llm-telemetry-stand-in/busybox-tools:bookworm busybox.Dockerfile "$dir" --build-arg BASE="$minbase" --target tools
  build llm-telemetry-stand-in/busybox:bookworm busybox.Dockerfile "$dir" --build-arg BASE="$minbase" --target busybox
  build "$COLLECTOR_RUNTIME_IMAGE" busybox.Dockerfile "$dir" --build-arg BASE="$minbase" --target distroless
  dir=$(context prometheus); put "${bin[PROMETHEUS]}" "$dir/prometheus"; put "${bin[PROMTOOL]}" "$dir/promtool"
  build "$PROMETHEUS_IMAGE" prometheus.Dockerfile "$dir" --build-arg BASE=llm-telemetry-stand-in/busybox:bookworm
  dir=$(context alertmanager); put "${bin[ALERTMANAGER]}" "$dir/alertmanager"
  build "$ALERTMANAGER_IMAGE" alertmanager.Dockerfile "$dir" --build-arg BASE=llm-telemetry-stand-in/busybox:bookworm
  dir=$(context jaeger); put "${bin[JAEGER]}" "$dir/jaeger"
  build "$JAEGER_IMAGE" jaeger.Dockerfile "$dir" --build-arg BASE=llm-telemetry-stand-in/busybox:bookworm
  if $ocb; then
    dir=$(context golang); cp -a "$(go env GOROOT)" "$dir/go"
    build "$GOLANG_IMAGE" golang.Dockerfile "$dir" --build-arg BASE="$minbase"
  else
    collector_from_binary "${bin[OTELCOL]}"
  fi
  log "stand-ins ready in $((SECONDS - start)) s"
}

main "$@"
