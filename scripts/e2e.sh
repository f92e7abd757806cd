#!/usr/bin/env bash
# End-to-end test (tools/e2e.py): the real functions under `cargo lambda watch`, moto, a fresh
# Postgres database, plex.tv/TMDB stubs and the SQS bridge. `make test` runs it after
# `cargo test`; on its own it brings up what it needs (and stops moto again if it started it).
# Honours DATABASE_URL (an admin URL whose role may CREATE DATABASE) and AWS_ENDPOINT_URL.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ -z ${DATABASE_URL:-} ]]; then
  scripts/ensure-postgres.sh
  export DATABASE_URL=postgres://plexsync:plexsync@127.0.0.1:5432/plexsync
fi
scripts/ensure-venv.sh --with-cargo-lambda
# cargo-lambda lives in the venv, and finds zig through that venv's python (ziglang).
export PATH="$ROOT/.venv/bin:$PATH"

if [[ -z ${AWS_ENDPOINT_URL:-} ]]; then
  moto_state=$(scripts/moto.sh start)
  if [[ $moto_state == started ]]; then
    trap 'scripts/moto.sh stop' EXIT
  fi
  export AWS_ENDPOINT_URL=http://127.0.0.1:5050
fi
export AWS_REGION=${AWS_REGION:-us-east-1} AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}

# Databases a killed earlier run left behind (not those of a run going on now).
scripts/drop-stale-dbs.sh

# Build the function binaries first: `cargo lambda watch` then starts them without a long
# compile inside a request's timeout.
echo "e2e: building the functions (debug)" >&2
cargo build -q -p migrate -p config -p webhook -p processor -p logs -p mappings -p conflicts -p import -p admin

.venv/bin/python tools/e2e.py
