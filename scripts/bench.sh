#!/usr/bin/env bash
# `make bench`: everything BENCHMARKS.md reports, then BENCHMARKS.md itself.
#   1. the release binaries, built once (`cargo lambda build --release`: the deployed artifacts,
#      plus tools/hello-lambda, the baseline, with the same profile);
#   2. the criterion benches (CPU hot paths; one mark against Postgres) and the webhook's
#      allocation count (against moto);
#   3. tools/lambda_bench.py: the release binaries under a stub Lambda Runtime API, against
#      Postgres and moto (cold start, start-up syscalls, warm cost, RSS, processor throughput
#      vs pgbench, round trips per message);
#   4. tools/bench_report.py writes BENCHMARKS.md.
# Takes about 30-60 minutes on 2 cores (most of it the LTO builds). Arguments go to
# tools/lambda_bench.py (e.g. --rounds 5 --only cold; --baseline-processor PATH --baseline-label
# COMMIT measures an earlier processor binary beside the current one); SKIP_BUILD=1 reuses target/lambda;
# BENCH_CRITERION=0 skips the criterion benches (BENCHMARKS.md then shows their last figures).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { echo "bench: $*" >&2; }
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

scripts/ensure-postgres.sh
scripts/ensure-venv.sh --with-cargo-lambda

# pgbench is the throughput baseline, strace the start-up check (optional: reported as not
# traced without it).
missing=()
command -v pgbench >/dev/null || missing+=(postgresql-client)
command -v strace >/dev/null || missing+=(strace)
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
  log "installing ${missing[*]} (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v pgbench >/dev/null || { log "error: pgbench is missing (package postgresql-client)"; exit 1; }

moto_state=$(scripts/moto.sh start)
if [[ $moto_state == started ]]; then
  trap 'scripts/moto.sh stop' EXIT
fi

export DATABASE_URL=postgres://plexsync:plexsync@127.0.0.1:5432/plexsync
export AWS_ENDPOINT_URL=http://127.0.0.1:5050
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
scripts/drop-stale-dbs.sh

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  log "release build (cargo lambda build --release)"
  PATH="$ROOT/.venv/bin:$PATH" cargo lambda build --release
fi

if [[ ${BENCH_CRITERION:-1} != 0 ]]; then
  log "criterion benches and the webhook's allocation count"
  cargo bench -p webhook --bench hot_paths --bench allocations
  cargo bench -p plexsync --features testing --bench hot_paths --bench marking_db
else
  log "the webhook's allocation count (criterion skipped: BENCH_CRITERION=0)"
  cargo bench -p webhook --bench allocations
fi

log "release binaries under the stub Runtime API"
.venv/bin/python tools/lambda_bench.py "$@"
.venv/bin/python tools/bench_report.py
