//! The session lock that serialises migration runs ([`crate::db::migrate`]); the migrations
//! themselves are refinery's, embedded from `migrations/`.

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// The advisory-lock key: "plexsync" in ASCII, so it cannot clash with another app's key.
const LOCK_KEY: i64 = 0x706c_6578_7379_6e63;

/// Waits for and takes the migration lock for this session (connection).
pub async fn lock(client: &impl GenericClient) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// Releases the lock [`lock`] took on this session.
pub async fn unlock(client: &impl GenericClient) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// Records `new` as the checksum of migration `version` where the database holds `old`: for a
/// migration whose text changed in its comments only, so a database migrated before the
/// change does not take it for a divergent migration. Nothing on a fresh database.
pub async fn adopt_checksum(
    client: &impl GenericClient,
    version: i32,
    old: &str,
    new: &str,
) -> Result<(), DbError> {
    let history = client
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await?;
    if history.get::<_, bool>(0) {
        client
            .execute(
                "UPDATE refinery_schema_history SET checksum = $3
                  WHERE version = $1 AND checksum = $2",
                &[&version, &old, &new],
            )
            .await?;
    }
    Ok(())
}
