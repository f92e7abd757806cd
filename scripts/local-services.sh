# shellcheck shell=bash
# Sourced (not run) by e2e.sh, reliability.sh and import-demo.sh, from the repository root: Postgres and moto
# for a local run, each started here only when DATABASE_URL / AWS_ENDPOINT_URL name none (moto
# is then stopped on exit), the AWS variables the tools read, and no test databases left by a
# killed earlier run.

if [[ -z ${DATABASE_URL:-} ]]; then
  scripts/ensure-postgres.sh
  export DATABASE_URL=postgres://plexsync:plexsync@127.0.0.1:5432/plexsync
fi
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
