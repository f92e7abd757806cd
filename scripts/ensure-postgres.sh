#!/usr/bin/env bash
# Make sure a local Postgres is installed and running, and that role and database
# `plexsync` (password `plexsync`) exist, reachable over TCP on 127.0.0.1:5432.
# Idempotent. Handles: already running (often with trust auth), installed but stopped
# (password auth), and not installed at all (Debian apt package).
set -euo pipefail

DB_URL="postgres://plexsync:plexsync@127.0.0.1:5432/plexsync"
PORT=5432

log() { echo "ensure-postgres: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Root runs commands as another user with runuser; others need sudo.
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else sudo -u postgres -- "$@"; fi; }

can_login() { PGCONNECT_TIMEOUT=3 psql "$DB_URL" -XAtq -c 'select 1' >/dev/null 2>&1; }

# True when our role can log in with its password and has what the tests and
# migrations need: CREATEDB (one database per test), CREATEROLE (the migrations create the
# functions' runtime role), owns its database, pg_trgm available.
ready() {
  local ok
  ok=$(PGCONNECT_TIMEOUT=3 psql "$DB_URL" -XAtq -c "
    select r.rolcreatedb and r.rolcreaterole and d.datdba = r.oid
           and exists (select 1 from pg_available_extensions where name = 'pg_trgm')
    from pg_roles r, pg_database d
    where r.rolname = current_user and d.datname = current_database()" 2>/dev/null) || return 1
  [[ $ok == t ]]
}

# Fast path: nothing to do (also works without root).
if command -v psql >/dev/null && ready; then
  log "ok ($DB_URL)"
  exit 0
fi

# 1. Install when absent. postgresql-contrib is a no-op on Debian 12 (pg_trgm ships
#    in postgresql-15) but brings the extensions on older releases.
if ! command -v pg_lsclusters >/dev/null || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  log "installing postgresql (apt)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >/dev/null
fi

# 2. Find the cluster on our port; create one if the package made none.
cluster() { pg_lsclusters -h | awk -v p="$PORT" '$3 == p { print $1, $2, $4; exit }'; }
if [[ -z $(cluster) ]]; then
  if [[ -n $(pg_lsclusters -h) ]]; then
    die "no Postgres cluster on port $PORT (see pg_lsclusters)"
  fi
  ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n1)
  log "creating cluster $ver/main"
  as_root pg_createcluster "$ver" main --port "$PORT" >/dev/null
fi
read -r ver name status < <(cluster)

# 3. Start it when down. No systemd in containers/CI, so bypass the systemctl redirect.
if [[ $status != online* ]]; then
  log "starting cluster $ver/$name"
  # The socket directory lives on tmpfs and may be gone after a reboot.
  as_root install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start
fi
for _ in $(seq 60); do
  pg_isready -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || die "Postgres $ver/$name not accepting connections on 127.0.0.1:$PORT"

# 4. Role and database, created through the postgres OS user over the Unix socket
#    (TCP logins may need a password nobody knows yet). Re-running resets the password.
su_psql() { as_postgres psql --cluster "$ver/$name" -X -q -v ON_ERROR_STOP=1 "$@"; }
su_psql -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plexsync') THEN
    CREATE ROLE plexsync LOGIN CREATEDB CREATEROLE PASSWORD 'plexsync';
  ELSE
    ALTER ROLE plexsync LOGIN CREATEDB CREATEROLE PASSWORD 'plexsync';
  END IF;
END $$;
SELECT 'CREATE DATABASE plexsync OWNER plexsync'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'plexsync') \gexec
ALTER DATABASE plexsync OWNER TO plexsync;
SQL

# 5. pg_hba: if a password login over 127.0.0.1 is still refused (no matching host line,
#    or ident/reject), put a scram line for our role first. We never add trust.
if ! can_login; then
  hba=$(su_psql -d postgres -At -c 'show hba_file')
  marker="# plexsync: password login for the dev/test roles (scripts/ensure-postgres.sh)"
  if ! as_root grep -qF "$marker" "$hba"; then
    log "allowing scram-sha-256 login for role plexsync from 127.0.0.1 in $hba"
    as_root sed -i "1i $marker\nhost    all    all    127.0.0.1/32    scram-sha-256" "$hba"
    su_psql -d postgres -c 'select pg_reload_conf()' >/dev/null
  fi
fi

for _ in $(seq 20); do can_login && break; sleep 0.5; done
can_login || die "cannot log in with $DB_URL (check pg_hba.conf)"
ready || die "role/database set up but not usable: is pg_trgm (postgresql-contrib) installed?"
log "ok ($DB_URL)"
