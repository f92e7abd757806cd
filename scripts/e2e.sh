#!/usr/bin/env bash
# End-to-end test (tools/e2e.py): the real functions under `cargo lambda watch`, moto, a fresh
# Postgres database, plex.tv/TMDB stubs and the SQS bridge. `make test` runs it after
# `cargo test`; on its own it brings up what it needs (and stops moto again if it started it).
# Honours DATABASE_URL (an admin URL whose role may CREATE DATABASE) and AWS_ENDPOINT_URL.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/ensure-venv.sh --with-cargo-lambda
# cargo-lambda lives in the venv, and finds zig through that venv's python (ziglang).
export PATH="$ROOT/.venv/bin:$PATH"
# shellcheck source=scripts/local-services.sh
source scripts/local-services.sh

# Build the function binaries first: `cargo lambda watch` then starts them without a long
# compile inside a request's timeout.
echo "e2e: building the functions (debug)" >&2
cargo build -q -p migrate -p config -p webhook -p processor -p logs -p mappings -p conflicts -p import -p admin

.venv/bin/python tools/e2e.py
