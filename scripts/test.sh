#!/usr/bin/env bash
# `make test`: bring up the local services the tests use (Postgres, moto), clean up what
# earlier runs left behind, lint template.yaml, run the workspace tests, then the end-to-end
# test (scripts/e2e.sh, with the admin page's browser tests), check that `make dev` shuts down
# cleanly on SIGTERM/SIGHUP (scripts/test-dev-shutdown.sh), and stop moto again if we started it.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p plexsync -- matching`); the
# end-to-end test and the quick reliability cases run only without them, so a focused run stays
# fast. E2E=0 skips both too.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/ensure-postgres.sh
# cargo-lambda: the end-to-end test runs the functions under `cargo lambda watch`.
scripts/ensure-venv.sh --with-cargo-lambda

# Cheap, and catches a broken template before anyone tries to deploy it.
.venv/bin/cfn-lint template.yaml -a cfn_lint_serverless.rules
echo "test: template.yaml passes cfn-lint (with the serverless rules)" >&2

# Only stop moto afterwards if this run started it (a running `make dev` keeps its own).
moto_state=$(scripts/moto.sh start)
if [[ $moto_state == started ]]; then
  trap 'scripts/moto.sh stop' EXIT # runs on failure too; the exit status is kept
fi

export DATABASE_URL=postgres://plexsync:plexsync@127.0.0.1:5432/plexsync
export AWS_ENDPOINT_URL=http://127.0.0.1:5050
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test

# Each test creates its own database plexsync_test_<time>_<random>; a crashed or killed run
# leaves some behind. Only those of runs that are over are dropped.
scripts/drop-stale-dbs.sh

cargo test --workspace "$@"

if [[ $# -eq 0 && ${E2E:-1} != 0 ]]; then
  # make dev stops everything it started on SIGTERM / SIGHUP (several rounds, ~30 s).
  scripts/test-dev-shutdown.sh
  scripts/e2e.sh
  # The quick reliability cases (duplicate storm, poison message, database outage, secret scan).
  scripts/reliability.sh --quick
fi
