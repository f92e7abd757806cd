#!/usr/bin/env bash
# `make dev` stops everything it started when its process group gets SIGTERM or SIGHUP (what
# `timeout`, a process manager, an IDE's stop button or a closing terminal send), every time,
# within a few seconds: its ports are free again and none of its processes is left.
#
# Runs a second dev stack on free ports with its own .dev directory, queue/secret names and a
# fresh database (so a developer's running `make dev` is not touched), several rounds: signal
# once it is up (TERM, HUP, TERM again) and once while it is still starting. `make test` runs it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ADMIN_URL=${DATABASE_URL:-postgres://plexsync:plexsync@127.0.0.1:5432/plexsync}
# Seconds from the signal until everything must be gone.
STOP_WITHIN=${STOP_WITHIN:-10}

log() { echo "dev-shutdown: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Running (an exited child of ours stays a zombie until waited for, and kill -0 still finds it).
alive() { [[ $(ps -o stat= -p "$1" 2>/dev/null) =~ ^[^Z] ]]; }
free_port() { .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

scripts/ensure-postgres.sh >/dev/null
scripts/ensure-venv.sh --with-cargo-lambda >/dev/null
moto_state=$(scripts/moto.sh start)

work=$(mktemp -d)
db="plexsync_test_$(date +%s)_devstop$RANDOM"
psql "$ADMIN_URL" -XAtq -c "CREATE DATABASE \"$db\""
# shellcheck disable=SC2317 # called through the trap
finish() {
  psql "$ADMIN_URL" -XAtq -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  rm -rf "$work"
  if [[ $moto_state == started ]]; then scripts/moto.sh stop; fi
}
trap finish EXIT

# Processes of the stack under test: their command lines carry its ports.
leftovers() { # ports...
  local pattern="" port
  for port in "$@"; do pattern+="port[ =]$port( |$)|:$port/|"; done
  pgrep -af -- "${pattern%|}" || true
}

round() { # name signal wait-for-up
  local name=$1 sig=$2 up=$3
  local dev_port watch_port stubs_port out pgid start elapsed
  dev_port=$(free_port) watch_port=$(free_port) stubs_port=$(free_port)
  out="$work/$name.out"
  mkdir -p "$work/$name"
  # setsid: make leads its own process group, as in a terminal or under a process manager.
  # --default-signal: a caller under nohup hands down HUP ignored, and a shell cannot trap a
  # signal ignored on entry; make dev in a terminal gets the default disposition.
  env --default-signal=HUP,INT,TERM -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    DEV_DIR="$work/$name" DEV_NAME="devstop-$name-$RANDOM" DEV_DATABASE_URL="${ADMIN_URL%/*}/$db" \
    DEV_PORT="$dev_port" WATCH_PORT="$watch_port" STUBS_PORT="$stubs_port" \
    setsid make --no-print-directory dev >"$out" 2>&1 </dev/null &
  pgid=$!
  if [[ $up == up ]]; then
    for _ in $(seq 600); do
      grep -q "dev stack is up" "$out" && break
      alive "$pgid" || break
      sleep 0.1
    done
    if ! grep -q "dev stack is up" "$out"; then
      log "$name: make dev did not come up:"
      cat "$out" >&2
      kill -KILL -- "-$pgid" 2>/dev/null || true
      return 1
    fi
    port_open "$dev_port" && port_open "$watch_port" || { log "$name: ports not open"; return 1; }
  else
    sleep 1.5 # still starting (venv check, moto, secrets, migrations)
  fi
  start=$(date +%s%N)
  kill "-$sig" -- "-$pgid"
  while :; do
    elapsed=$((($(date +%s%N) - start) / 1000000))
    if ! port_open "$dev_port" && ! port_open "$watch_port" && ! port_open "$stubs_port" \
      && [[ -z $(leftovers "$dev_port" "$watch_port" "$stubs_port") ]] && ! alive "$pgid"; then
      break
    fi
    if ((elapsed > STOP_WITHIN * 1000)); then
      log "$name: still running ${STOP_WITHIN} s after SIG$sig:"
      leftovers "$dev_port" "$watch_port" "$stubs_port" >&2
      tail -n 15 "$out" >&2
      pkill -KILL -f -- "-port[ =]($dev_port|$watch_port|$stubs_port)" 2>/dev/null || true
      return 1
    fi
    sleep 0.1
  done
  wait "$pgid" 2>/dev/null || true # reaps it (its status is the signal's)
  for pidfile in "$work/$name"/*.pid; do
    [[ -e $pidfile ]] || continue
    log "$name: $(basename "$pidfile") left behind"
    return 1
  done
  log "$name: SIG$sig $([[ $up == up ]] && echo "once up" || echo "while starting") -> everything stopped, ports free in ${elapsed} ms"
}

failed=0
round term-1 TERM up || failed=1
round hup HUP up || failed=1
round term-starting TERM starting || failed=1
round term-2 TERM up || failed=1
round term-3 TERM up || failed=1
if ((failed)); then
  log "FAILED"
  exit 1
fi
log "ok: 5 rounds"
