# Log lines and progress of long steps, for the scripts that build things (sourced, never run). The
# sourcing script sets log_tag first: its lines read "[<log_tag> HH:MM:SS] ...".

log() { printf '[%s %s] %s\n' "$log_tag" "$(date +%H:%M:%S)" "$*" >&2; }

# Runs a long command, printing a heartbeat every 30 s so a cold build never looks hung.
# Its own output goes to a log that is shown only when it fails.
with_progress() {
  local what=$1; shift
  local logf; logf=$(mktemp)
  local start=$SECONDS next_beat=$((SECONDS + 30))
  "$@" >"$logf" 2>&1 &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS >= next_beat )) && kill -0 "$pid" 2>/dev/null; then
      log "  … $what: $((SECONDS - start)) s"
      next_beat=$((SECONDS + 30))
    fi
  done
  if ! wait "$pid"; then
    log "FAILED: $what (last 40 lines of its output follow)"
    tail -n 40 "$logf" >&2
    rm -f "$logf"
    return 1
  fi
  rm -f "$logf"
  log "  done: $what in $((SECONDS - start)) s"
}
