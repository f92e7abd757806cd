#!/usr/bin/env bash
# `make dev`: the whole stack on this machine, no Docker.
#   Postgres (ensure-postgres.sh), moto for SQS + Secrets Manager, migrations,
#   `cargo lambda watch` serving every function at http://127.0.0.1:$WATCH_PORT/lambda-url/<function>/,
#   tools/router.py on http://127.0.0.1:$DEV_PORT: ONE origin with the admin page at / and the
#   API under the same paths as API Gateway (/api/plex/...), routed from template.yaml,
#   and tools/bridge.py delivering the queue to the processor as the event source mapping would.
# Runs in the foreground; Ctrl-C, SIGTERM or SIGHUP stop everything it started.
# `dev.sh stop` (used by `make clean-dev`) stops what a `make dev` started, from its pid files.
# Overridable (the shutdown test runs a second stack this way): DEV_PORT (8080), WATCH_PORT
# (9000), STUBS_PORT (9100), DEV_DIR (.dev), DEV_DATABASE_URL (the plexsync database).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export DEV_DIR=${DEV_DIR:-$ROOT/.dev}
DEV=$DEV_DIR
DEV_PORT=${DEV_PORT:-8080}
WATCH_PORT=${WATCH_PORT:-9000}
STUBS_PORT=${STUBS_PORT:-9100}
# What the webhook URL and the page use: the router's origin, as API Gateway's on AWS.
export PUBLIC_BASE_URL="http://127.0.0.1:$DEV_PORT"

log() { echo "dev: $*" >&2; }

# Stops the process groups we started (name:pattern pairs; pid files in $DEV), if each leader is
# still what we expect: SIGTERM to all at once, up to 5 s for them to go, then SIGKILL to the
# rest, so stopping takes at most ~5 s however many there are.
stop_groups() { # name:cmdline-pattern...
  local entry name pid pids=() names=()
  for entry in "$@"; do
    name=${entry%%:*}
    [[ -f $DEV/$name.pid ]] || continue
    pid=$(<"$DEV/$name.pid")
    rm -f "$DEV/$name.pid"
    if [[ $pid =~ ^[0-9]+$ ]] && grep -qa -- "${entry#*:}" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      pids+=("$pid") names+=("$name")
    fi
  done
  for _ in $(seq 50); do
    local running=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
    ((running)) || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    kill -KILL -- "-${pids[$i]}" 2>/dev/null || true # what is left of the group (watch's functions)
    log "stopped ${names[$i]} (pid ${pids[$i]})"
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_all() {
  stop_groups router:tools/router.py bridge:tools/bridge.py watch:cargo-lambda stubs:tools/stubs.py
}

if [[ ${1:-} == stop ]]; then
  stop_all
  scripts/moto.sh stop
  exit 0
fi

scripts/ensure-postgres.sh
scripts/ensure-venv.sh --with-cargo-lambda
# cargo-lambda lives in the venv, and finds zig through that venv's python (ziglang).
export PATH="$ROOT/.venv/bin:$PATH"
mkdir -p "$DEV"

for port in "$DEV_PORT" "$WATCH_PORT"; do
  if port_open "$port"; then
    log "127.0.0.1:$port is already in use (another make dev?); stop it first (make clean-dev)"
    exit 1
  fi
done

moto_state=""
# Runs once, on any exit. A second signal while it runs (make answers SIGTERM by sending its
# child another one; a closing terminal sends HUP to everyone) is ignored rather than reset to
# the default, which would kill this script halfway through stopping things.
# shellcheck disable=SC2317 # called through the trap
cleanup() {
  trap '' INT TERM HUP
  trap - EXIT
  echo >&2
  stop_all
  if [[ $moto_state == started ]]; then scripts/moto.sh stop; fi
}
trap cleanup EXIT
# Each handler first ignores further signals: make's second SIGTERM could otherwise arrive after
# `exit` began and before cleanup's own `trap ''`, and run `exit` again, skipping the stop.
trap 'trap "" INT TERM HUP; exit 130' INT
trap 'trap "" INT TERM HUP; exit 143' TERM
trap 'trap "" INT TERM HUP; exit 129' HUP # exit runs the EXIT trap

moto_state=$(scripts/moto.sh start)

# Without a real TMDB token, TMDB and plex.tv are the stubs of tools/stubs.py (The Office
# and friends; any Plex token is accepted), which is also what `make demo` expects.
# Export TMDB_API_TOKEN before `make dev` to use the real services instead.
stub_pids=()
stub_note=""
if [[ -z ${TMDB_API_TOKEN:-} ]]; then
  if port_open "$STUBS_PORT"; then
    log "127.0.0.1:$STUBS_PORT is already in use; stop it first (make clean-dev)"
    exit 1
  fi
  setsid .venv/bin/python tools/stubs.py --port "$STUBS_PORT" >"$DEV/stubs.log" 2>&1 </dev/null &
  echo "$!" >"$DEV/stubs.pid"
  stub_pids=("$!")
  export TMDB_BASE_URL="http://127.0.0.1:$STUBS_PORT" PLEX_TV_BASE_URL="http://127.0.0.1:$STUBS_PORT"
  export TMDB_API_TOKEN=dev-stub-tmdb-token
  log "TMDB and plex.tv: stubs on $TMDB_BASE_URL (export TMDB_API_TOKEN to use the real ones)"
  stub_note="
  Stubbed plex.tv: any Plex token of 20+ characters works; its Plex server is plain http on
    127.0.0.1, so switch on \"Allow a plain http address\" on the page (or allowInsecureHttp: true).
"
fi

secrets_out=$(.venv/bin/python tools/bootstrap_aws.py --print)
api_token=$(sed -n 's/^API_TOKEN=//p' <<<"$secrets_out")
webhook_secret=$(sed -n 's/^WEBHOOK_SECRET=//p' <<<"$secrets_out")
# shellcheck source=/dev/null
source "$DEV/env"

log "applying migrations"
cargo run -q -p migrate

# Every function is built on its first request (a cold debug build takes ~30 s).
# setsid: own process group, so cleanup can stop watch and the functions it runs.
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$WATCH_PORT" \
  >"$DEV/watch.log" 2>&1 </dev/null &
watch_pid=$!
echo "$watch_pid" >"$DEV/watch.pid"
# Probe the port only: an HTTP request to / would invoke a function.
for _ in $(seq 100); do
  port_open "$WATCH_PORT" && break
  kill -0 "$watch_pid" 2>/dev/null || break
  sleep 0.3
done
if ! port_open "$WATCH_PORT"; then
  log "cargo lambda watch did not start; last lines of $DEV/watch.log:"
  tail -n 20 "$DEV/watch.log" >&2
  exit 1
fi
pids=("$watch_pid" "${stub_pids[@]}")

# The local stand-in for the SQS event source mapping: long-polls "$QUEUE_URL" and invokes
# the processor through watch's invoke API (tools/bridge.py says how it mirrors AWS).
setsid .venv/bin/python tools/bridge.py --queue-url "$QUEUE_URL" \
  --invoke-url "http://127.0.0.1:$WATCH_PORT/2015-03-31/functions/processor/invocations" \
  >"$DEV/bridge.log" 2>&1 </dev/null &
bridge_pid=$!
echo "$bridge_pid" >"$DEV/bridge.pid"
pids+=("$bridge_pid")

# One origin for the page and the API, routed as API Gateway routes (from template.yaml).
setsid .venv/bin/python tools/router.py --port "$DEV_PORT" --watch-url "http://127.0.0.1:$WATCH_PORT" \
  >"$DEV/router.log" 2>&1 </dev/null &
router_pid=$!
echo "$router_pid" >"$DEV/router.pid"
pids+=("$router_pid")
for _ in $(seq 50); do
  port_open "$DEV_PORT" && break
  kill -0 "$router_pid" 2>/dev/null || break
  sleep 0.1
done
if ! port_open "$DEV_PORT"; then
  log "the router did not start; last lines of $DEV/router.log:"
  tail -n 20 "$DEV/router.log" >&2
  exit 1
fi

origin=$PUBLIC_BASE_URL
cat <<EOF

  plexsync dev stack is up.

  Admin page:   $origin/
  API token:    $api_token
                (paste it into the page once; the management API wants it as Authorization: Bearer)

  Webhook URL (Plex: Settings > Webhooks):
    $origin/api/plex/webhook?secret=$webhook_secret
$stub_note
  Management API:  $origin/api/plex/...   (the same paths as on API Gateway)
    e.g. curl -H "Authorization: Bearer $api_token" $origin/api/plex/config
  Behind it: tools/router.py routes by template.yaml to cargo lambda watch
    (http://127.0.0.1:$WATCH_PORT/lambda-url/<function>/...); non-HTTP functions:
    POST http://127.0.0.1:$WATCH_PORT/2015-03-31/functions/<name>/invocations

  Logs: $DEV/watch.log (functions, builds), $DEV/router.log (requests), $DEV/bridge.log
        (queue -> processor), $DEV/moto.log (SQS, Secrets Manager), $DEV/stubs.log (stubs)
  Demo: make demo   (in another terminal: a sequence of Plex webhooks, then the results)
  Env:  source .dev/env   (DATABASE_URL, QUEUE_URL, ...)
  Each function compiles on its first request (~30 s cold). Ctrl-C (or SIGTERM/SIGHUP) stops everything.

EOF

# Return when a background service dies (or on Ctrl-C); cleanup runs on exit.
set +e
wait -n "${pids[@]}"
rc=$?
log "a service exited (status $rc); see $DEV/*.log"
exit "$rc"
