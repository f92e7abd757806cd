#!/usr/bin/env bash
# Local SQS + Secrets Manager: moto_server from .venv on 127.0.0.1:5050.
#   moto.sh start  -> prints "started" or "reused" on stdout (messages go to stderr), so a
#                     caller stops moto afterwards only if it was the one that started it.
#   moto.sh stop   -> stops the server this script started (pid in .dev/moto.pid), nothing else.
#   moto.sh status -> exit 0 when something answers on the port.
# Needs scripts/ensure-venv.sh first. State is in memory: a restart forgets queues and secrets.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HOST=127.0.0.1
PORT=${MOTO_PORT:-5050}
PIDFILE="$ROOT/.dev/moto.pid"
LOGFILE="$ROOT/.dev/moto.log"

log() { echo "moto: $*" >&2; }

# Any HTTP answer (even an error status) means a server is there.
answering() {
  "$ROOT/.venv/bin/python" - "$HOST" "$PORT" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://{sys.argv[1]}:{sys.argv[2]}/moto-api/", timeout=1)
except urllib.error.HTTPError:
    pass
PY
}

# The pid file is only trusted while that pid is still a moto_server (pids get reused).
our_pid() {
  local pid
  [[ -f $PIDFILE ]] || return 1
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] && grep -qa moto_server "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

case "${1:-}" in
  start)
    [[ -x $ROOT/.venv/bin/moto_server ]] || { log "run scripts/ensure-venv.sh first"; exit 1; }
    if answering; then
      log "already answering on $HOST:$PORT, reusing it"
      echo reused
      exit 0
    fi
    mkdir -p "$ROOT/.dev"
    # setsid: a Ctrl-C in the terminal goes to the caller, whose trap decides what to stop.
    setsid "$ROOT/.venv/bin/moto_server" -H "$HOST" -p "$PORT" >"$LOGFILE" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$PIDFILE"
    for _ in $(seq 100); do
      if answering; then
        log "started (pid $pid, log $LOGFILE)"
        echo started
        exit 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.2
    done
    log "moto_server did not come up; last lines of $LOGFILE:"
    tail -n 20 "$LOGFILE" >&2
    kill "$pid" 2>/dev/null || true
    rm -f "$PIDFILE"
    exit 1
    ;;
  stop)
    if pid=$(our_pid); then
      kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped (pid $pid)"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    answering
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
