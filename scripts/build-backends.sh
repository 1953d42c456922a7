#!/usr/bin/env bash
# Builds the real backends from their Go modules and caches the binaries outside the repo.
#
#   scripts/build-backends.sh [TARGET ...]   build what is missing of otelcol, prometheus, jaeger,
#                                            alertmanager, sloth, etcd, kube (kube-apiserver + kubectl),
#                                            helm, compose (the Docker CLI plugin), thanos, cassandra,
#                                            telemetrygen (default: all, which is every one the tests
#                                            run: all but telemetrygen, which only the capacity
#                                            benchmark runs, and which CI need not build)
#   scripts/build-backends.sh --print                                       print NAME=path lines
#
# Versions come from deploy/versions.env; the Collector's components from deploy/collector/builder-config.yaml.
# Each binary lives in  $LLMTEL_CACHE_DIR/bin/<name>-<version>[-<manifest hash>]/ , so a version or
# manifest change builds a new one and an unchanged one is reused at once. Go's own module and build
# caches (GOMODCACHE, GOCACHE) are left where the user keeps them, so a rebuild is incremental.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../deploy/versions.env
source "$repo/deploy/versions.env"
cache=${LLMTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-telemetry}
manifest="$repo/deploy/collector/builder-config.yaml"
# The checksum database is reached through the module proxy; the mirror our build machines use lacks
# sum.golang.org entries for some contrib modules (lookup answers 404), so those prefixes are checked
# against go.sum files only. Extend with LLMTEL_GONOSUMDB; set GONOSUMDB yourself to override.
export GONOSUMDB=${GONOSUMDB:-github.com/open-telemetry/opentelemetry-collector-contrib${LLMTEL_GONOSUMDB:+,$LLMTEL_GONOSUMDB}}
# Keyed by the manifest alone, so --print finds the binary on a machine without Go too.
manifest_hash=$(sha256sum "$manifest" | cut -c1-12)

otelcol_dir="$cache/bin/otelcol-llm-$OTELCOL_VERSION-$manifest_hash"
prometheus_dir="$cache/bin/prometheus-$PROMETHEUS_VERSION"
jaeger_dir="$cache/bin/jaeger-$JAEGER_VERSION"
alertmanager_dir="$cache/bin/alertmanager-$ALERTMANAGER_VERSION"
etcd_dir="$cache/bin/etcd-$ETCD_VERSION"
kube_dir="$cache/bin/kube-$KUBERNETES_VERSION"
helm_dir="$cache/bin/helm-$HELM_VERSION"
sloth_dir="$cache/bin/sloth-$SLOTH_VERSION"
compose_dir="$cache/bin/compose-$COMPOSE_VERSION"
thanos_dir="$cache/bin/thanos-$THANOS_VERSION"
telemetrygen_dir="$cache/bin/telemetrygen-$TELEMETRYGEN_VERSION"
cassandra_dir="$cache/bin/cassandra-$CASSANDRA_VERSION"

print_paths() {
  echo "OTELCOL=$otelcol_dir/otelcol-llm"
  echo "PROMETHEUS=$prometheus_dir/prometheus"
  echo "PROMTOOL=$prometheus_dir/promtool"
  echo "JAEGER=$jaeger_dir/jaeger"
  echo "ALERTMANAGER=$alertmanager_dir/alertmanager"
  echo "ETCD=$etcd_dir/etcd"
  echo "KUBE_APISERVER=$kube_dir/kube-apiserver"
  echo "KUBECTL=$kube_dir/kubectl"
  echo "HELM=$helm_dir/helm"
  echo "SLOTH=$sloth_dir/sloth"
  echo "DOCKER_COMPOSE=$compose_dir/docker-compose"
  echo "THANOS=$thanos_dir/thanos"
  echo "TELEMETRYGEN=$telemetrygen_dir/telemetrygen"
  echo "CASSANDRA=$cassandra_dir/cassandra"
}

log_tag=backends
# shellcheck source=lib/progress.sh
source "$repo/scripts/lib/progress.sh"

require_go() {
  command -v go >/dev/null || { log "Go is required (1.25 or newer) and was not found on PATH"; exit 1; }
}

build_otelcol() {
  [[ -x $otelcol_dir/otelcol-llm ]] && { log "otelcol-llm $OTELCOL_VERSION cached ($otelcol_dir)"; return; }
  grep -q "version: $OTELCOL_VERSION" "$manifest" \
    || { log "deploy/collector/builder-config.yaml does not match OTELCOL_VERSION=$OTELCOL_VERSION"; exit 1; }
  require_go
  log "building otelcol-llm $OTELCOL_VERSION (cold: several minutes)"
  local tools="$cache/tools/builder-$OTELCOL_VERSION"
  if [[ ! -x $tools/builder ]]; then
    mkdir -p "$tools"
    with_progress "go install OCB builder v$OTELCOL_VERSION" \
      env GOBIN="$tools" go install "go.opentelemetry.io/collector/cmd/builder@v$OTELCOL_VERSION"
  fi
  local work="$cache/work/otelcol-$manifest_hash"
  rm -rf "$work"; mkdir -p "$work"
  cp "$manifest" "$work/builder-config.yaml"
  (cd "$work" && with_progress "OCB build of otelcol-llm" "$tools/builder" --config=builder-config.yaml)
  mkdir -p "$otelcol_dir"
  mv "$work/_build/otelcol-llm" "$otelcol_dir/otelcol-llm"
  rm -rf "$work"
}

build_prometheus() {
  [[ -x $prometheus_dir/prometheus && -x $prometheus_dir/promtool ]] \
    && { log "prometheus $PROMETHEUS_VERSION cached ($prometheus_dir)"; return; }
  require_go
  log "building prometheus + promtool $PROMETHEUS_VERSION (module $PROMETHEUS_MODULE_VERSION)"
  mkdir -p "$prometheus_dir.tmp"
  # No builtinassets tag: the web UI needs an npm build; the HTTP API works without it.
  # remove_all_sd: cloud service-discovery plugins are compiled out (static, file and HTTP SD stay).
  # Our stack needs none, and some of their modules (nomad's API) are missing from the module mirror.
  local ldflags="-X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION"
  with_progress "go install prometheus, promtool" env GOBIN="$prometheus_dir.tmp" CGO_ENABLED=0 \
    go install -tags remove_all_sd -ldflags "$ldflags" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION"
  rm -rf "$prometheus_dir"; mv "$prometheus_dir.tmp" "$prometheus_dir"
}

build_alertmanager() {
  [[ -x $alertmanager_dir/alertmanager ]] && { log "alertmanager $ALERTMANAGER_VERSION cached"; return; }
  require_go
  log "building alertmanager $ALERTMANAGER_VERSION"
  mkdir -p "$alertmanager_dir.tmp"
  with_progress "go install alertmanager" env GOBIN="$alertmanager_dir.tmp" CGO_ENABLED=0 \
    go install "github.com/prometheus/alertmanager/cmd/alertmanager@v$ALERTMANAGER_VERSION"
  rm -rf "$alertmanager_dir"; mv "$alertmanager_dir.tmp" "$alertmanager_dir"
}

build_jaeger() {
  [[ -x $jaeger_dir/jaeger ]] && { log "jaeger $JAEGER_VERSION cached ($jaeger_dir)"; return; }
  require_go
  log "building jaeger $JAEGER_VERSION (module $JAEGER_MODULE_VERSION; cold: about 10 minutes)"
  # go install refuses the module (its go.mod has a replace line, for Kafka's client only), so the
  # binary is built as a tool of a throwaway module; there the replace is ignored and the rest of
  # Jaeger's own go.mod selects the dependency set.
  local work="$cache/work/jaeger-$JAEGER_VERSION"
  rm -rf "$work"; mkdir -p "$work"
  local pkg=github.com/jaegertracing/jaeger/cmd/jaeger
  local v=github.com/jaegertracing/jaeger/internal/version
  (
    cd "$work"
    go mod init llmtel/jaeger-build >/dev/null 2>&1
    with_progress "download jaeger's modules" go get -tool "$pkg@$JAEGER_MODULE_VERSION"
    mkdir -p "$jaeger_dir.tmp"
    # The version ldflags are what upstream's Makefile sets; without them `jaeger version` is empty.
    with_progress "go build jaeger" env CGO_ENABLED=0 go build \
      -ldflags "-X $v.latestVersion=v$JAEGER_VERSION -X $v.commitSHA=unknown -X $v.date=$JAEGER_RELEASE_DATE" \
      -o "$jaeger_dir.tmp/jaeger" "$pkg"
  )
  rm -rf "$jaeger_dir" "$work"; mv "$jaeger_dir.tmp" "$jaeger_dir"
}

# Sloth turns deploy/slo/slos.yaml into the SLO recording and burn-rate alerting rules (python -m deploy.slo);
# only the generator and its tests run it, never the stack.
build_sloth() {
  [[ -x $sloth_dir/sloth ]] && { log "sloth $SLOTH_VERSION cached ($sloth_dir)"; return; }
  require_go
  log "building sloth $SLOTH_VERSION (cold: about 10 minutes)"
  mkdir -p "$sloth_dir.tmp"
  local ldflags="-s -w -X github.com/slok/sloth/internal/info.Version=v$SLOTH_VERSION"
  with_progress "go install sloth" env GOBIN="$sloth_dir.tmp" CGO_ENABLED=0 go install -ldflags "$ldflags" \
    "github.com/slok/sloth/cmd/sloth@v$SLOTH_VERSION"
  rm -rf "$sloth_dir"; mv "$sloth_dir.tmp" "$sloth_dir"
}

# etcd, kube-apiserver, kubectl and helm exist for one purpose: tests/e2e/test_helm.py renders the chart
# and has a throwaway API server validate it (kubectl apply --dry-run=server). Recipe and measurements:
# shared/reference/kubernetes.md.

build_etcd() {
  [[ -x $etcd_dir/etcd ]] && { log "etcd $ETCD_VERSION cached ($etcd_dir)"; return; }
  require_go
  log "building etcd $ETCD_VERSION"
  # go install refuses go.etcd.io/etcd/server/v3 (its go.mod has replace lines); as a dependency of a
  # throwaway module the replaces are ignored and the published api/client modules are used.
  local work="$cache/work/etcd-$ETCD_VERSION"
  rm -rf "$work"; mkdir -p "$work" "$etcd_dir.tmp"
  (
    cd "$work"
    go mod init llmtel/etcd-build >/dev/null 2>&1
    with_progress "download etcd's modules" go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    with_progress "go build etcd" env CGO_ENABLED=0 go build -ldflags "-s -w" \
      -o "$etcd_dir.tmp/etcd" go.etcd.io/etcd/server/v3
  )
  rm -rf "$etcd_dir" "$work"; mv "$etcd_dir.tmp" "$etcd_dir"
}

# Every staging module k8s.io/kubernetes requires at v0.0.0 (each served at v0.<minor>.<patch>).
KUBE_STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api cri-client
  cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics mount-utils
  pod-security-admission sample-apiserver streaming)

build_kube() {
  [[ -x $kube_dir/kube-apiserver && -x $kube_dir/kubectl ]] \
    && { log "kube-apiserver + kubectl $KUBERNETES_VERSION cached ($kube_dir)"; return; }
  require_go
  log "building kube-apiserver + kubectl $KUBERNETES_VERSION (cold: about 8 minutes)"
  local v=$KUBERNETES_VERSION major=${KUBERNETES_VERSION%%.*} rest=${KUBERNETES_VERSION#*.}
  local minor=${rest%%.*} staging="v0.${KUBERNETES_VERSION#*.}"
  local work="$cache/work/kube-$v"
  rm -rf "$work"; mkdir -p "$work" "$kube_dir.tmp"
  {
    echo "module llmtel/kube-build"
    echo
    echo "go 1.26.0"
    echo
    echo "replace ("
    local m
    for m in "${KUBE_STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging"; done
    echo ")"
  } >"$work/go.mod"
  # The version stamp hack/lib/version.sh sets: without it the server says v0.0.0-master+$Format:%H$,
  # which `kubectl version` cannot parse and a chart's kubeVersion constraint rejects.
  local ldflags="-s -w"
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=v$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  done
  (
    cd "$work"
    with_progress "download kubernetes' modules" go get -tool \
      "k8s.io/kubernetes/cmd/kube-apiserver@v$v" "k8s.io/kubernetes/cmd/kubectl@v$v"
    with_progress "go build kube-apiserver" env CGO_ENABLED=0 go build -ldflags "$ldflags" \
      -o "$kube_dir.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    with_progress "go build kubectl" env CGO_ENABLED=0 go build -ldflags "$ldflags" \
      -o "$kube_dir.tmp/kubectl" k8s.io/kubernetes/cmd/kubectl
  )
  rm -rf "$kube_dir" "$work"; mv "$kube_dir.tmp" "$kube_dir"
}

build_helm() {
  [[ -x $helm_dir/helm ]] && { log "helm $HELM_VERSION cached ($helm_dir)"; return; }
  require_go
  log "building helm $HELM_VERSION (cold: about 3 minutes)"
  mkdir -p "$helm_dir.tmp"
  # What upstream's Makefile stamps for a tagged release (otherwise `helm version` says v4.3). Helm v4
  # reads the Kubernetes version `helm template` and `helm lint` assume from its build info (the
  # k8s.io/client-go module it was built with), so, unlike v3, no Kubernetes version ldflags are needed.
  local ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  with_progress "go install helm" env GOBIN="$helm_dir.tmp" CGO_ENABLED=0 go install -ldflags "$ldflags" \
    "helm.sh/helm/v4/cmd/helm@v$HELM_VERSION"
  rm -rf "$helm_dir"; mv "$helm_dir.tmp" "$helm_dir"
}

# Docker Compose v5 runs deploy/compose.yaml in tests/e2e/test_compose_stack.py (scripts/docker-engine.sh
# installs it as a CLI plugin). Debian's docker-compose 1.29 rejects the file's top-level `name`.
build_compose() {
  [[ -x $compose_dir/docker-compose ]] && { log "docker compose $COMPOSE_VERSION cached ($compose_dir)"; return; }
  require_go
  log "building docker compose $COMPOSE_VERSION (cold: about 2 minutes)"
  # go install refuses the module (its go.mod has exclude lines). A throwaway module whose go.mod is
  # compose's own, renamed, keeps those excludes in force and selects compose's own dependency set.
  local module=github.com/docker/compose/v5
  local work="$cache/work/compose-$COMPOSE_VERSION"
  rm -rf "$work"; mkdir -p "$work" "$compose_dir.tmp"
  local gomod
  gomod=$(go mod download -json "$module@v$COMPOSE_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [[ -f $gomod ]] || { log "go mod download $module@v$COMPOSE_VERSION named no go.mod"; exit 1; }
  sed "s|^module .*|module llmtel/compose-build|" "$gomod" >"$work/go.mod"
  printf '\nrequire %s v%s\n' "$module" "$COMPOSE_VERSION" >>"$work/go.mod"
  (
    cd "$work"
    # The version stamp upstream's Makefile sets; `docker compose version` prints it.
    with_progress "go build docker compose" env CGO_ENABLED=0 go build -mod=mod -trimpath \
      -ldflags "-s -w -X $module/internal.Version=v$COMPOSE_VERSION" \
      -o "$compose_dir.tmp/docker-compose" "$module/cmd"
  )
  rm -rf "$compose_dir" "$work"; mv "$compose_dir.tmp" "$compose_dir"
}

# Thanos (Receive and Query) is the metrics store past one Prometheus (tests/e2e/test_metrics_store.py).
# go install refuses the module (its go.mod has replace lines: a capnp pin, forks of gomemcache and
# kingpin), so, as for compose, a throwaway module whose go.mod is Thanos' own, renamed, keeps them in
# force. Only cmd/thanos is built; no UI assets are needed for the APIs the tests use.
build_thanos() {
  [[ -x $thanos_dir/thanos ]] && { log "thanos $THANOS_VERSION cached ($thanos_dir)"; return; }
  require_go
  log "building thanos $THANOS_VERSION (cold: about 10 minutes)"
  local module=github.com/thanos-io/thanos
  local work="$cache/work/thanos-$THANOS_VERSION"
  rm -rf "$work"; mkdir -p "$work" "$thanos_dir.tmp"
  local gomod
  gomod=$(go mod download -json "$module@v$THANOS_VERSION" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
  [[ -f $gomod ]] || { log "go mod download $module@v$THANOS_VERSION named no go.mod"; exit 1; }
  sed "s|^module .*|module llmtel/thanos-build|" "$gomod" >"$work/go.mod"
  printf '\nrequire %s v%s\n' "$module" "$THANOS_VERSION" >>"$work/go.mod"
  # The version stamp upstream's Makefile (promu) sets; `thanos --version` prints it.
  local ldflags="-s -w -X github.com/prometheus/common/version.Version=$THANOS_VERSION"
  ldflags+=" -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.Revision=v$THANOS_VERSION"
  (
    cd "$work"
    # Upstream's build tags (.promu.yml). slicelabels is not optional: Thanos converts Prometheus'
    # labels.Labels to its own protobuf labels by pointer, which needs the slice layout; without the tag
    # (Prometheus' default is stringlabels) a receiver panics on the first gRPC call Thanos Query makes.
    with_progress "go build thanos (modules included)" env CGO_ENABLED=0 go build -mod=mod -trimpath \
      -tags netgo,slicelabels -ldflags "$ldflags" \
      -o "$thanos_dir.tmp/thanos" "$module/cmd/thanos"
  )
  rm -rf "$thanos_dir" "$work"; mv "$thanos_dir.tmp" "$thanos_dir"
}

# telemetrygen, the Collector's own OTLP load generator, drives the capacity benchmark
# (tests/benchmarks/bench_collector_capacity.py). Its go.mod has no replace lines: go install works.
build_telemetrygen() {
  [[ -x $telemetrygen_dir/telemetrygen ]] && { log "telemetrygen $TELEMETRYGEN_VERSION cached"; return; }
  require_go
  log "building telemetrygen $TELEMETRYGEN_VERSION"
  mkdir -p "$telemetrygen_dir.tmp"
  with_progress "go install telemetrygen" env GOBIN="$telemetrygen_dir.tmp" CGO_ENABLED=0 go install \
    "github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen@v$TELEMETRYGEN_VERSION"
  rm -rf "$telemetrygen_dir"; mv "$telemetrygen_dir.tmp" "$telemetrygen_dir"
}

# Cassandra is no Go program: Maven resolves org.apache.cassandra:cassandra-all and its runtime
# dependencies from Maven Central into lib/, and bin's `cassandra` runs the daemon on the machine's Java
# with the module flags Cassandra's own jvm17-server.options sets. CASSANDRA_CONF names its cassandra.yaml,
# CASSANDRA_HEAP its heap (512m), CASSANDRA_JVM_OPTS more JVM options (-D properties).
build_cassandra() {
  [[ -x $cassandra_dir/cassandra ]] && { log "cassandra $CASSANDRA_VERSION cached ($cassandra_dir)"; return; }
  command -v java >/dev/null && command -v mvn >/dev/null \
    || { log "Cassandra needs java (17) and mvn on PATH (Debian: openjdk-17-jre-headless, maven)"; exit 1; }
  log "fetching cassandra $CASSANDRA_VERSION from Maven Central"
  local work="$cache/work/cassandra-$CASSANDRA_VERSION"
  rm -rf "$work" "$cassandra_dir.tmp"; mkdir -p "$work" "$cassandra_dir.tmp/lib"
  cat >"$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>llmtel</groupId><artifactId>cassandra-build</artifactId><version>1</version>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>$CASSANDRA_VERSION</version>
    </dependency>
  </dependencies>
</project>
POM
  with_progress "mvn: cassandra-all and its dependencies" mvn -q -B -f "$work/pom.xml" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$cassandra_dir.tmp/lib"
  local flag flags=""
  for flag in exports:java.base/jdk.internal.misc exports:java.base/jdk.internal.ref \
    exports:java.base/sun.nio.ch exports:java.management.rmi/com.sun.jmx.remote.internal.rmi \
    exports:java.rmi/sun.rmi.registry exports:java.rmi/sun.rmi.server exports:java.sql/java.sql \
    opens:java.base/java.lang.module opens:java.base/jdk.internal.loader opens:java.base/jdk.internal.ref \
    opens:java.base/jdk.internal.reflect opens:java.base/jdk.internal.math opens:java.base/jdk.internal.module \
    opens:java.base/jdk.internal.util.jar opens:jdk.management/com.sun.management.internal \
    opens:java.base/sun.nio.ch opens:java.base/java.io opens:java.base/java.nio \
    opens:java.base/java.util.concurrent opens:java.base/java.util opens:java.base/java.util.concurrent.atomic \
    opens:java.base/java.lang opens:java.base/java.math opens:java.base/java.lang.reflect opens:java.base/java.net
  do flags+=" --add-${flag%%:*}=${flag#*:}=ALL-UNNAMED"; done
  {
    echo '#!/usr/bin/env bash'
    echo "# Apache Cassandra $CASSANDRA_VERSION in the foreground (written by scripts/build-backends.sh)."
    echo "flags='$flags'"
    cat <<'LAUNCHER'
set -euo pipefail
: "${CASSANDRA_CONF:?set CASSANDRA_CONF to a cassandra.yaml}"
lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib
# shellcheck disable=SC2086  # the module flags and CASSANDRA_JVM_OPTS are words
exec java $flags ${CASSANDRA_JVM_OPTS:-} -Xms"${CASSANDRA_HEAP:-512m}" -Xmx"${CASSANDRA_HEAP:-512m}" -XX:+UseG1GC \
  -Dcassandra.config="file://$CASSANDRA_CONF" -Dcassandra-foreground=yes \
  -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=0 \
  -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon "$@"
LAUNCHER
  } >"$cassandra_dir.tmp/cassandra"
  chmod +x "$cassandra_dir.tmp/cassandra"
  rm -rf "$cassandra_dir" "$work"; mv "$cassandra_dir.tmp" "$cassandra_dir"
}

main() {
  if [[ ${1:-} == --print ]]; then print_paths; return; fi
  mkdir -p "$cache"
  # One builder at a time per cache: the stack runner, the tests and CI may all ask at once.
  exec 9>"$cache/.build.lock"
  flock 9
  local targets=("$@")
  (( ${#targets[@]} )) || targets=(all)
  local target
  for target in "${targets[@]}"; do
    case $target in
      otelcol | prometheus | jaeger | alertmanager | sloth | etcd | kube | helm | compose | thanos | telemetrygen | cassandra) ;;
      all) ;;
      *) log "unknown target '$target' (otelcol, prometheus, jaeger, alertmanager, sloth, etcd, kube, helm, compose, thanos, telemetrygen, cassandra, all)"; exit 2 ;;
    esac
  done
  for target in "${targets[@]}"; do
    case $target in
      all)
        build_otelcol; build_prometheus; build_jaeger; build_alertmanager; build_sloth
        build_etcd; build_kube; build_helm; build_compose; build_thanos; build_cassandra
        ;;
      *) "build_$target" ;;
    esac
  done
}

main "$@"
