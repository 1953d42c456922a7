#!/usr/bin/env bash
# A Docker engine of our own for running deploy/compose.yaml on a build machine, as root, without systemd
# (tests/e2e/test_compose_stack.py; facts in shared/reference/containers.md), and its clean removal.
#
#   scripts/docker-engine.sh install   Debian's docker.io and debootstrap (apt-get; skipped when present)
#   scripts/docker-engine.sh start     start dockerd in the background, record its PID and the host's
#                                      networking as it is; prints the environment for the docker CLI
#   scripts/docker-engine.sh env       print that environment (DOCKER_HOST=..., DOCKER_CONFIG=...)
#   scripts/docker-engine.sh stop      stop dockerd by its PID and restore the host's networking
#
# The daemon listens on a socket of its own (not /var/run/docker.sock) and reads no /etc/docker config;
# its images and build cache live in $LLMTEL_CACHE_DIR/docker, so a second run starts warm. The docker
# CLI's config (DOCKER_CONFIG) is a directory of ours too, holding the compose plugin that
# scripts/build-backends.sh builds: ~/.docker is left alone.
#
# dockerd changes the host's networking and leaves the changes behind when it exits: the iptables
# FORWARD policy (DROP), its DOCKER* chains and the rules that jump to them (filter and nat tables),
# the docker0 bridge (and a br-* bridge per network), net.ipv4.ip_forward=1. `start` records each of
# these first; `stop` puts back what was recorded. A `start` after a run that died first restores
# what that run recorded.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${LLMTEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llm-telemetry}
home="$cache/docker"
run=/run/llm-telemetry-docker
socket="$run/docker.sock"
pidfile="$run/dockerd.pid"
state="$run/host-state"
config="$home/config"

log_tag=docker-engine
# shellcheck source=lib/progress.sh
source "$repo/scripts/lib/progress.sh"
die() { log "$*"; exit 1; }

need_root() { [[ $(id -u) == 0 ]] || die "needs root (dockerd, iptables, apt-get); run it as root"; }

install() {
  need_root
  if command -v dockerd >/dev/null && command -v debootstrap >/dev/null && command -v iptables >/dev/null; then
    log "docker.io and debootstrap installed ($(dockerd --version))"
    return
  fi
  # needrestart, where installed, would ask about restarting services; nothing here needs one.
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  with_progress "apt-get update" apt-get -q -o DPkg::Lock::Timeout=600 update
  # No daemon starts with the package here (no systemd; policy-rc.d forbids it); `start` runs ours, and
  # refuses to if another engine (a docker0 bridge) is there.
  with_progress "apt-get install docker.io debootstrap" apt-get -q -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends docker.io debootstrap iptables ca-certificates
  log "$(dockerd --version)"
}

print_env() {
  echo "DOCKER_HOST=unix://$socket"
  echo "DOCKER_CONFIG=$config"
}

running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

# ---- the host's networking, recorded and restored ------------------------------------------------

record_host() {
  local table f
  for table in filter nat; do iptables -t "$table" -S >"$state.$table"; done
  {
    echo "ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
    for f in /proc/sys/net/ipv4/conf/*/forwarding /proc/sys/net/bridge/bridge-nf-call-ip*tables; do
      [[ -f $f ]] && echo "sysctl $f $(cat "$f")"
    done
    echo "links $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
  } >"$state.tmp"
  mv "$state.tmp" "$state"
}

# Everything in the filter and nat tables that was not there at `start` is dockerd's: its rules in
# the built-in chains are deleted first (they jump to its chains), then its chains; then the recorded
# policies (dockerd sets FORWARD to DROP) are put back.
restore_iptables() {
  local table=$1 before="$state.$1" line chain
  [[ -f $before ]] || return 0
  local -a added_chains=()
  while IFS= read -r line; do
    grep -qxF -- "$line" "$before" && continue
    case $line in
      "-N "*) added_chains+=("${line#-N }") ;;
      "-A "*)
        chain=${line#-A }; chain=${chain%% *}
        # Rules in a chain dockerd made go with the chain (below); only those in older chains are deleted.
        grep -qE -- "^-[NP] $chain( |\$)" "$before" || continue
        # xargs splits the line as iptables -S quotes it (a comment may hold spaces).
        xargs iptables -t "$table" <<<"-D ${line#-A }"
        ;;
    esac
  done < <(iptables -t "$table" -S)
  for chain in "${added_chains[@]}"; do iptables -t "$table" -F "$chain"; done
  for chain in "${added_chains[@]}"; do iptables -t "$table" -X "$chain"; done
  while IFS= read -r line; do
    [[ $line == "-P "* ]] && xargs iptables -t "$table" <<<"$line"
  done <"$before"
  rm -f "$before"
}

restore_host() {
  [[ -f $state ]] || return 0
  restore_iptables filter
  restore_iptables nat
  local before link; before=" $(sed -n 's/^links //p' "$state") "
  while IFS= read -r link; do
    if [[ $before != *" $link "* && ( $link == docker0 || $link =~ ^br-[0-9a-f]{12}$ ) ]]; then
      ip link delete "$link" 2>/dev/null || true
    fi
  done < <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
  # ip_forward first: writing it resets every interface's forwarding, which the lines after it restore.
  sed -n 's/^ip_forward //p' "$state" >/proc/sys/net/ipv4/ip_forward
  local name path value
  while read -r name path value; do
    [[ $name == sysctl && -f $path ]] && echo "$value" >"$path"
  done <"$state"
  rm -f "$state"
  log "host networking restored (FORWARD policy $(iptables -S FORWARD | sed -n 's/^-P FORWARD //p'), ip_forward $(cat /proc/sys/net/ipv4/ip_forward))"
}

# ---- the daemon ------------------------------------------------------------------------------------

start() {
  need_root
  command -v dockerd >/dev/null || die "dockerd not installed: run '$0 install' first"
  mkdir -p "$run" "$home/data" "$config/cli-plugins"
  if running; then
    log "dockerd already running (PID $(cat "$pidfile"))"
    print_env
    return
  fi
  # A run that died before its stop: undo what it left.
  [[ -f $state ]] && { log "restoring the host after an earlier run that did not stop"; restore_host; }
  ip link show docker0 >/dev/null 2>&1 && die "docker0 exists: another Docker engine runs on this host; stop it first"
  iptables -S >/dev/null || die "iptables cannot list the filter table"

  local compose
  compose=$("$repo/scripts/build-backends.sh" --print | sed -n 's/^DOCKER_COMPOSE=//p')
  [[ -x $compose ]] || die "docker compose not built: run 'scripts/build-backends.sh compose' first"
  ln -sfn "$compose" "$config/cli-plugins/docker-compose"
  [[ -f $config/config.json ]] || echo '{}' >"$config/config.json"

  record_host
  echo '{}' >"$run/daemon.json"
  log "starting dockerd (data in $home/data, log $run/dockerd.log)"
  # setsid: the daemon outlives this script and the test that ran it, until `stop`.
  setsid dockerd --config-file="$run/daemon.json" --data-root="$home/data" --exec-root="$run/exec" \
    --pidfile="$run/dockerd.daemon.pid" --host="unix://$socket" >"$run/dockerd.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  local deadline=$((SECONDS + 60))
  until DOCKER_HOST="unix://$socket" docker version --format '{{.Server.Version}}' >/dev/null 2>&1; do
    if ! running; then tail -n 30 "$run/dockerd.log" >&2; restore_host; die "dockerd exited while starting"; fi
    if (( SECONDS > deadline )); then tail -n 30 "$run/dockerd.log" >&2; stop; die "dockerd not ready in 60 s"; fi
    sleep 0.5
  done
  log "dockerd ready (PID $(cat "$pidfile"), engine $(DOCKER_HOST="unix://$socket" docker version --format '{{.Server.Version}}'))"
  print_env
}

stop() {
  need_root
  if running; then
    local pid; pid=$(cat "$pidfile")
    log "stopping dockerd (PID $pid)"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      log "dockerd still running after 60 s: SIGKILL"
      kill -KILL "$pid"
    fi
  fi
  # The containerd dockerd started for itself stops with it; after a SIGKILL it would not.
  local containerd="$run/exec/containerd/containerd.pid"
  if [[ -f $containerd ]] && kill -0 "$(cat "$containerd")" 2>/dev/null; then
    kill -TERM "$(cat "$containerd")"
  fi
  # Mounts a killed daemon could leave (overlay layers, network namespaces) would pin its files.
  local mount
  while read -r mount; do umount -l "$mount" 2>/dev/null || true; done \
    < <(awk -v a="$home/data" -v b="$run" '$2 ~ "^"a || $2 ~ "^"b {print $2}' /proc/mounts | sort -r)
  rm -f "$pidfile"
  restore_host
}

case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) print_env ;;
  *) echo "usage: $0 install|start|env|stop" >&2; exit 2 ;;
esac
