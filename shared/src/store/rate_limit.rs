//! `rate_limit_buckets`: token buckets shared by every function instance, so a limit such as
//! TMDB's holds for the whole fan-out of an import rather than per Lambda instance.
//!
//! A caller *reserves* a slot: the bucket may go into debt down to `max_wait` seconds' worth of
//! tokens, and the caller waits until its slot comes (no polling, one statement per request).

use std::time::Duration;

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// A bucket's shape: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub rate: f64,
    pub burst: f64,
    /// A slot further away than this is not reserved: the caller should give up for now.
    pub max_wait: Duration,
}

/// What a reservation got.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slot {
    /// Go after waiting this long (zero: now).
    After(Duration),
    /// Every slot within `max_wait` is taken.
    Busy,
}

/// Reserves one token of bucket `name` (created full on first use).
pub async fn reserve(client: &impl GenericClient, name: &str, b: Bucket) -> Result<Slot, DbError> {
    let max_wait = b.max_wait.as_secs_f64();
    for _ in 0..2 {
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "UPDATE rate_limit_buckets
                            SET tokens = LEAST($3::float8, tokens + $2::float8 * GREATEST(0,
                                    EXTRACT(EPOCH FROM clock_timestamp() - updated_at)::float8)) - 1,
                                updated_at = clock_timestamp()
                          WHERE name = $1
                            AND LEAST($3::float8, tokens + $2::float8 * GREATEST(0,
                                    EXTRACT(EPOCH FROM clock_timestamp() - updated_at)::float8)) - 1
                                >= -($2::float8 * $4::float8)
                         RETURNING tokens",
                    )
                    .await?,
                &[&name, &b.rate, &b.burst, &max_wait],
            )
            .await?;
        if let Some(row) = row {
            let tokens: f64 = row.get(0);
            let wait = if tokens >= 0.0 { 0.0 } else { -tokens / b.rate };
            return Ok(Slot::After(Duration::from_secs_f64(wait)));
        }
        // No row matched: the bucket is new (create it full) or its debt is at `max_wait`.
        // Either way the second pass decides; a caller that lost the race to create it then
        // takes its token like any other.
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO rate_limit_buckets (name, tokens) VALUES ($1, $2)
                         ON CONFLICT (name) DO NOTHING",
                    )
                    .await?,
                &[&name, &b.burst],
            )
            .await?;
    }
    Ok(Slot::Busy)
}
