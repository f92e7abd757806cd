//! `plex_webhook_logs`: the activity log, its daily statistics, and the stored payloads that
//! the replay endpoint re-enqueues.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::types::ToSql;

use crate::{
    db::{DbError, DbPool},
    ids::{LogId, ShowId},
    paging::{Cursor, Page, PageRequest},
    senders::Sender,
};

/// Status of a processed message, as logged (the table's CHECK constraint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    Success,
    Failed,
    Ignored,
    Duplicate,
    NeedsResolution,
}

impl LogStatus {
    pub const ALL: [Self; 5] = [
        Self::Success,
        Self::Failed,
        Self::Ignored,
        Self::Duplicate,
        Self::NeedsResolution,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::NeedsResolution => "needs_resolution",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One log entry as the API shows it (the payload is left out: replay reads it by id).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub id: LogId,
    pub event_type: String,
    pub plex_rating_key: Option<String>,
    pub plex_title: Option<String>,
    pub plex_season: Option<i32>,
    pub plex_episode: Option<i32>,
    pub status: LogStatus,
    pub error_message: Option<String>,
    pub action_taken: Option<String>,
    pub processing_duration_ms: Option<i32>,
    pub tvshow_id: Option<ShowId>,
    pub created_at: DateTime<Utc>,
}

/// Newest first, optionally only those with `status`.
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &DbPool,
    status: Option<LogStatus>,
    page: &PageRequest,
) -> Result<Page<LogEntry>, DbError> {
    let mut sql = String::from(
        "SELECT id, event_type, plex_rating_key, plex_title, plex_season, plex_episode, status,
                error_message, action_taken, processing_duration_ms, tvshow_id, created_at
           FROM plex_webhook_logs WHERE true",
    );
    let limit = page.fetch_limit();
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    let status = status.map(LogStatus::as_str);
    if let Some(status) = &status {
        params.push(status);
        sql.push_str(&format!(" AND status = ${}", params.len()));
    }
    if let Some(after) = &page.after {
        match &after.created_at {
            Some(t) => {
                params.push(t);
                params.push(&after.id);
                sql.push_str(&format!(
                    " AND (created_at, id) < (${}, ${})",
                    params.len() - 1,
                    params.len()
                ));
            }
            None => {
                params.push(&after.id);
                sql.push_str(&format!(" AND id < ${}", params.len()));
            }
        }
    }
    params.push(&limit);
    sql.push_str(&format!(
        " ORDER BY created_at DESC, id DESC LIMIT ${}",
        params.len()
    ));
    let client = pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    let entries = rows
        .iter()
        .map(|r| {
            let status: String = r.get(6);
            Ok(LogEntry {
                id: r.get(0),
                event_type: r.get(1),
                plex_rating_key: r.get(2),
                plex_title: r.get(3),
                plex_season: r.get(4),
                plex_episode: r.get(5),
                status: LogStatus::parse(&status)
                    .ok_or_else(|| DbError::Config(format!("unknown log status {status:?}")))?,
                error_message: r.get(7),
                action_taken: r.get(8),
                processing_duration_ms: r.get(9),
                tvshow_id: r.get(10),
                created_at: r.get(11),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
    Ok(page.page(entries, |e| Cursor {
        created_at: Some(e.created_at),
        id: e.id.into(),
    }))
}

/// A processed message's log row.
#[derive(Debug)]
pub struct NewLogEntry<'a> {
    pub message_id: &'a str,
    pub idempotency_key: &'a str,
    pub event_type: &'a str,
    pub plex_rating_key: &'a str,
    pub plex_title: &'a str,
    pub plex_season: Option<i32>,
    pub plex_episode: Option<i32>,
    pub payload: &'a serde_json::Value,
    pub status: LogStatus,
    pub error_message: Option<&'a str>,
    pub processing_duration_ms: i32,
    pub receive_count: Option<i32>,
    pub action_taken: Option<&'a str>,
    pub tvshow_id: Option<ShowId>,
    pub sender: Sender,
    /// When the webhook arrived (the newest one is the sender's last webhook received).
    pub received_at: DateTime<Utc>,
}

/// Writes the log row. It carries the webhook's arrival time, which is how "last webhook
/// received" is known (the newest `received_at` of the sender's rows, read with its settings):
/// no settings row is written per message.
pub async fn record(client: &impl GenericClient, e: &NewLogEntry<'_>) -> Result<(), DbError> {
    client
        .execute(
            &client
                .prepare_cached(
                    "INSERT INTO plex_webhook_logs
                 (message_id, idempotency_key, event_type, plex_rating_key, plex_title,
                  plex_season, plex_episode, payload, status, error_message,
                  processing_duration_ms, receive_count, action_taken, tvshow_id, received_at,
                  sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                )
                .await?,
            &[
                &e.message_id,
                &e.idempotency_key,
                &e.event_type,
                &e.plex_rating_key,
                &e.plex_title,
                &e.plex_season,
                &e.plex_episode,
                e.payload,
                &e.status.as_str(),
                &e.error_message,
                &e.processing_duration_ms,
                &e.receive_count,
                &e.action_taken,
                &e.tvshow_id,
                &e.received_at,
                &e.sender.as_str(),
            ],
        )
        .await?;
    Ok(())
}

/// Logs a queue body that is not a message at all (`failed`, the body kept as
/// `{"body": ...}`), so it is visible and can be inspected.
pub async fn record_unreadable(
    client: &impl GenericClient,
    message_id: &str,
    body: &str,
    reason: &str,
    receive_count: Option<i32>,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO plex_webhook_logs
                (message_id, event_type, payload, status, error_message, receive_count,
                 processing_duration_ms)
             VALUES ($1, 'unknown', $2, 'failed', $3, $4, 0)",
            &[
                &message_id,
                &serde_json::json!({ "body": body }),
                &reason,
                &receive_count,
            ],
        )
        .await?;
    Ok(())
}

/// The stored payload of one log entry and the sender that posted it, `None` when the id is
/// unknown.
#[tracing::instrument(skip(pool))]
pub async fn payload(
    pool: &DbPool,
    id: LogId,
) -> Result<Option<(Sender, serde_json::Value)>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT sender, payload FROM plex_webhook_logs WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| {
        let sender: String = r.get(0);
        // The column's CHECK admits only known senders.
        (Sender::parse(&sender).unwrap_or_default(), r.get(1))
    }))
}

/// One UTC day of `GET /api/plex/stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DayStats {
    pub date: NaiveDate,
    pub total_webhooks: i64,
    pub successful: i64,
    pub failed: i64,
    /// Average processing time in ms; `None` on a day without entries.
    pub avg_duration: Option<f64>,
}

/// The last `days` UTC days, newest first, days without events included as zeros.
#[tracing::instrument(skip(pool))]
pub async fn daily_stats(pool: &DbPool, days: i32) -> Result<Vec<DayStats>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH days AS (
                 SELECT generate_series((now() AT TIME ZONE 'UTC')::date - ($1::int - 1),
                                        (now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day
             )
             SELECT d.day,
                    count(l.id),
                    count(l.id) FILTER (WHERE l.status = 'success'),
                    count(l.id) FILTER (WHERE l.status = 'failed'),
                    avg(l.processing_duration_ms)::float8
               FROM days d
               LEFT JOIN plex_webhook_logs l
                      ON (l.created_at AT TIME ZONE 'UTC')::date = d.day
              GROUP BY d.day
              ORDER BY d.day DESC",
            &[&days],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| DayStats {
            date: r.get(0),
            total_webhooks: r.get(1),
            successful: r.get(2),
            failed: r.get(3),
            avg_duration: r.get(4),
        })
        .collect())
}

/// For each message id, its newest `failed` log row: `(id, error_message)`. The processor
/// writes one on a message's last receive, before SQS moves it to the dead-letter queue.
#[tracing::instrument(skip(pool, message_ids), fields(count = message_ids.len()))]
pub async fn last_failures(
    pool: &DbPool,
    message_ids: &[String],
) -> Result<std::collections::HashMap<String, (LogId, Option<String>)>, DbError> {
    if message_ids.is_empty() {
        return Ok(Default::default());
    }
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT DISTINCT ON (message_id) message_id, id, error_message
               FROM plex_webhook_logs
              WHERE message_id = ANY($1) AND status = 'failed'
              ORDER BY message_id, id DESC",
            &[&message_ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect())
}

/// Retention: deletes up to `limit` log rows written before `cutoff`, oldest first, and says
/// how many. Bounded so one statement stays well inside the statement timeout; the caller
/// repeats while a full batch went.
#[tracing::instrument(skip(client))]
pub async fn delete_older_than(
    client: &impl GenericClient,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> Result<u64, DbError> {
    Ok(client
        .execute(
            "DELETE FROM plex_webhook_logs WHERE id IN (
                 SELECT id FROM plex_webhook_logs WHERE created_at < $1
                  ORDER BY created_at LIMIT $2)",
            &[&cutoff, &limit],
        )
        .await?)
}
