//! `tmdb_id_cache`: conversions of an external id (TVDB, IMDb, a title search) to a TMDB id,
//! fresh for 24 hours. A cached miss is kept too, so an unknown id is not asked again.

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// A fresh (< 24 h) conversion: `Some(None)` is a cached miss.
pub async fn get(
    client: &impl GenericClient,
    source: &str,
    external_id: &str,
) -> Result<Option<Option<i32>>, DbError> {
    let row = client
        .query_opt(
            "SELECT tmdb_id FROM tmdb_id_cache
              WHERE source = $1 AND external_id = $2 AND fetched_at > now() - interval '24 hours'",
            &[&source, &external_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Stores (or refreshes) a conversion; `None` records a miss.
pub async fn put(
    client: &impl GenericClient,
    source: &str,
    external_id: &str,
    tmdb_id: Option<i32>,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO tmdb_id_cache (source, external_id, tmdb_id, fetched_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (source, external_id)
             DO UPDATE SET tmdb_id = EXCLUDED.tmdb_id, fetched_at = now()",
            &[&source, &external_id, &tmdb_id],
        )
        .await?;
    Ok(())
}
