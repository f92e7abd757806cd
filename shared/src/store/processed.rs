//! `plex_processed_messages`: the idempotency keys of messages already applied, so a message
//! delivered twice (SQS is at-least-once) changes nothing the second time.

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// Processed keys are never deleted younger than this, whatever the retention setting says: a
/// message can come back from SQS until the queue's and then the DLQ's retention ran out (14
/// days each, template.yaml; a redrive puts a dead letter back on the queue), and its key must
/// still be there to make it a duplicate. 28 days cover both end to end, plus the 5-minute FIFO
/// deduplication window. A template test keeps this at least the two retentions together.
pub const MIN_KEEP_DAYS: u32 = 28;

/// Whether a message with this idempotency key was applied.
pub async fn contains(client: &impl GenericClient, idempotency_key: &str) -> Result<bool, DbError> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT 1 FROM plex_processed_messages WHERE idempotency_key = $1")
                .await?,
            &[&idempotency_key],
        )
        .await?;
    Ok(row.is_some())
}

/// Records the key (in the transaction that applies the message).
pub async fn record(
    client: &impl GenericClient,
    idempotency_key: &str,
    message_id: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute(
            &client.prepare_cached("INSERT INTO plex_processed_messages (idempotency_key, message_id) VALUES ($1, $2)
             ON CONFLICT (idempotency_key) DO NOTHING").await?,
            &[&idempotency_key, &message_id],
        )
        .await?;
    Ok(())
}

/// Forgets a key recorded in the current transaction (by [`super::shows::lock_episode`]) for a
/// message that was not applied after all, so a later delivery is not taken for a duplicate.
pub async fn release(client: &impl GenericClient, idempotency_key: &str) -> Result<(), DbError> {
    client
        .execute(
            "DELETE FROM plex_processed_messages WHERE idempotency_key = $1",
            &[&idempotency_key],
        )
        .await?;
    Ok(())
}

/// Retention: deletes up to `limit` idempotency keys recorded before `cutoff`, and says how
/// many. The caller keeps `cutoff` older than any message SQS could still deliver.
#[tracing::instrument(skip(client))]
pub async fn delete_older_than(
    client: &impl GenericClient,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "DELETE FROM plex_processed_messages WHERE idempotency_key IN (
                 SELECT idempotency_key FROM plex_processed_messages WHERE processed_at < $1
                  ORDER BY processed_at LIMIT $2)",
            &[&cutoff, &limit],
        )
        .await?)
}
