//! The runtime role the functions connect as. Migrations run as the owner role; the runtime
//! role may only read and write plexsync's tables and the tracker's `tvshows`
//! ([`RUNTIME_TABLES`]): no DDL, nothing in other schemas, not even the migration history.
//!
//! The role is the user of the runtime database URL: created with that URL's password when
//! missing, its password reset to it on every run (so the secret is the truth), its grants
//! brought up to date after each migration run (so new tables are covered).

use secrecy::{ExposeSecret, SecretString};

use crate::db::{DbError, DbPool};

/// Who the functions connect as, read from their database URL.
pub struct RuntimeRole {
    name: String,
    password: SecretString,
}

impl RuntimeRole {
    pub fn from_url(url: &SecretString) -> Result<Self, DbError> {
        let config: tokio_postgres::Config = url
            .expose_secret()
            .parse()
            .map_err(|e: tokio_postgres::Error| DbError::Config(e.to_string()))?;
        let name = config
            .get_user()
            .ok_or_else(|| DbError::Config("the runtime database URL names no user".into()))?
            .to_string();
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .ok_or_else(|| DbError::Config("the runtime database URL has no password".into()))?;
        Ok(Self {
            name,
            password: SecretString::from(password),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Tables the runtime role reads and writes: plexsync's own and the tracker's `tvshows`, by
/// name, so other tables of a shared database stay out of reach. A migration that adds a table
/// adds it here (a test compares this list with what the migrations create).
const RUNTIME_TABLES: [&str; 12] = [
    "media_senders",
    "plex_config",
    "plex_conflicts",
    "plex_import_shows",
    "plex_imports",
    "plex_pending_events",
    "plex_processed_messages",
    "plex_show_mappings",
    "plex_webhook_logs",
    "rate_limit_buckets",
    "tmdb_id_cache",
    "tvshows",
];

/// Those of [`RUNTIME_TABLES`] that exist (an older schema during a rollback may lack some).
const EXISTING_TABLES: &str = "
    SELECT c.relname::text
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname = ANY($1)
    ORDER BY 1";

/// Sequences behind those tables' serial and identity columns.
const RUNTIME_SEQUENCES: &str = "
    SELECT DISTINCT s.relname::text
    FROM pg_class s
    JOIN pg_namespace n ON n.oid = s.relnamespace
    JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
    JOIN pg_class t ON t.oid = d.refobjid
    WHERE s.relkind = 'S' AND n.nspname = 'public' AND t.relname = ANY($1)
    ORDER BY 1";

/// Creates or updates the runtime role and its grants; returns the tables it may use.
/// Needs an owner role with CREATEROLE (RDS's and Neon's main user have it).
pub async fn grant_runtime(pool: &DbPool, role: &RuntimeRole) -> Result<Vec<String>, DbError> {
    let client = pool.get().await?;
    ensure_plain_login_role(&client, role).await?;
    grant_database(&client, role).await?;
    grant_tables(&client, role).await
}

/// Creates the role, or sets the password of an existing one that may do no more than DML,
/// with the functions' timeouts as its defaults.
async fn ensure_plain_login_role(
    client: &tokio_postgres::Client,
    role: &RuntimeRole,
) -> Result<(), DbError> {
    let owner: String = client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0);
    if owner == role.name {
        return Err(DbError::Config(format!(
            "the runtime database URL uses the owner role {owner}; give it a role of its own"
        )));
    }
    let existing = client
        .query_opt(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
             FROM pg_roles WHERE rolname = $1",
            &[&role.name],
        )
        .await?;
    let create = match existing {
        None => "CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L",
        // An existing role that may do more than DML defeats the point: refuse it rather
        // than silently connect the functions with it.
        Some(row) if row.get::<_, bool>(0) => {
            return Err(DbError::Config(format!(
                "the runtime role {} has SUPERUSER, CREATEROLE, CREATEDB or BYPASSRLS; give the functions a plain role",
                role.name
            )))
        }
        Some(_) => "ALTER ROLE %I LOGIN PASSWORD %L",
    };
    // Statements are built by Postgres's own format() (%I identifier, %L literal quoting):
    // role names and passwords cannot be bind parameters of DDL.
    let password = role.password.expose_secret();
    run_formatted(client, create, &[&role.name, &password]).await?;
    // Also as role defaults, for proxies that drop the connection's startup options.
    run_formatted(
        client,
        "ALTER ROLE %I SET statement_timeout = '15s'",
        &[&role.name],
    )
    .await?;
    run_formatted(
        client,
        "ALTER ROLE %I SET lock_timeout = '5s'",
        &[&role.name],
    )
    .await?;
    Ok(())
}

/// Lets the role connect and use the public schema, where no role but the owner may create.
async fn grant_database(
    client: &tokio_postgres::Client,
    role: &RuntimeRole,
) -> Result<(), DbError> {
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    run_formatted(
        client,
        "GRANT CONNECT ON DATABASE %I TO %I",
        &[&database, &role.name],
    )
    .await?;
    // Postgres before 15 lets every role create objects in public; 15 and later do not.
    client
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await?;
    run_formatted(client, "GRANT USAGE ON SCHEMA public TO %I", &[&role.name]).await?;
    Ok(())
}

/// DML on the functions' tables (those that exist) and their sequences; the tables granted.
async fn grant_tables(
    client: &tokio_postgres::Client,
    role: &RuntimeRole,
) -> Result<Vec<String>, DbError> {
    let names: Vec<&str> = RUNTIME_TABLES.to_vec();
    let tables: Vec<String> = client
        .query(EXISTING_TABLES, &[&names])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for table in &tables {
        run_formatted(
            client,
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE public.%I TO %I",
            &[table, &role.name],
        )
        .await?;
    }
    let sequences = client.query(RUNTIME_SEQUENCES, &[&tables]).await?;
    for row in sequences {
        let sequence: String = row.get(0);
        run_formatted(
            client,
            "GRANT USAGE, SELECT ON SEQUENCE public.%I TO %I",
            &[&sequence, &role.name],
        )
        .await?;
    }
    Ok(tables)
}

async fn run_formatted(
    client: &tokio_postgres::Client,
    template: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<(), DbError> {
    let placeholders: Vec<String> = (2..=args.len() + 1)
        .map(|i| format!("${i}::text"))
        .collect();
    let sql = format!("SELECT format($1::text, {})", placeholders.join(", "));
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&template];
    params.extend_from_slice(args);
    let statement: String = client.query_one(&sql, &params).await?.get(0);
    client.batch_execute(&statement).await?;
    Ok(())
}
