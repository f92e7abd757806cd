#!/usr/bin/env bash
# Drop the test databases (plexsync_test_*, plexsync_e2e_*) that killed or crashed runs left
# behind. Their names carry the creation time (prefix_<unix seconds>_<random>); only those older
# than two hours go, so runs going on at the same time (another checkout, a helper) keep theirs.
# Only databases owned by the current role are considered. Needs DATABASE_URL (an admin URL).
set -euo pipefail
max_age=${STALE_DB_SECONDS:-7200}
now=$(date +%s)
psql "$DATABASE_URL" -XAtq -c "select datname from pg_database
    where (datname like 'plexsync\_test\_%' or datname like 'plexsync\_e2e\_%')
      and datdba = (select oid from pg_roles where rolname = current_user)" |
  while read -r db; do
    created=$(sed -nE 's/^plexsync_(test|e2e)_([0-9]{9,})_.*/\2/p' <<<"$db")
    # Names without a time come from before this scheme: old by definition.
    if [[ -z $created || $((now - created)) -gt $max_age ]]; then
      psql "$DATABASE_URL" -Xq -c "drop database if exists \"$db\" with (force)" ||
        echo "drop-stale-dbs: could not drop $db" >&2
    fi
  done
