#!/usr/bin/env bash
# `make bench`: the criterion benchmarks. The marking benchmark needs Postgres (one fresh
# database, like the tests); the CPU ones need nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
scripts/ensure-postgres.sh
export DATABASE_URL=postgres://plexsync:plexsync@127.0.0.1:5432/plexsync
cargo bench -p webhook --bench hot_paths "$@"
cargo bench -p plexsync --features testing --bench hot_paths --bench marking_db "$@"
