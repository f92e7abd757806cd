//! The dead-letter queue, seen from the management API: what sits in it (decoded, with the
//! `failed` log row the processor wrote on the last receive) and moving it back to the queue.
//!
//! Listing is a peek: messages are received with a short visibility timeout and released at
//! once, so they stay in the DLQ. SQS has no way to read a queue without receiving.

use std::collections::HashMap;

use aws_sdk_sqs::{
    error::ProvideErrorMetadata,
    types::{
        ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
        MessageSystemAttributeName as Attr, QueueAttributeName,
    },
};
use chrono::{DateTime, TimeZone, Utc};
use plexsync::{
    api::ApiError,
    db::{DbError, DbPool},
    ids::LogId,
    pipeline::IMPORT_EVENT_TYPE,
    queue::{QueueBody, QueueMessage},
    store,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Most messages one request lists or moves (SQS hands out at most 10 per receive).
pub const MAX_PER_REQUEST: usize = 100;
/// How long a listed message is held before being released (the release normally comes first).
const PEEK_HOLD_SECS: i32 = 30;
/// How long a message being moved is held: time to send it to the queue and delete it.
const MOVE_HOLD_SECS: i32 = 60;
/// Bodies that are not queue messages are shown up to this length.
const MAX_BODY_CHARS: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("queue unavailable: {0}")]
    Queue(String),
    #[error("moved {moved} messages back, then the queue became unavailable: {detail}")]
    Partial { moved: usize, detail: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<DeadLetterError> for ApiError {
    fn from(err: DeadLetterError) -> Self {
        match err {
            DeadLetterError::Db(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "dead-letter queue call failed");
                ApiError::Unavailable(match other {
                    DeadLetterError::Partial { moved, .. } => format!(
                        "moved {moved} messages back, then the queue became unavailable; try again shortly"
                    ),
                    _ => "queue unavailable, try again shortly".into(),
                })
            }
        }
    }
}

fn queue_error<E: ProvideErrorMetadata + std::fmt::Display>(e: E) -> DeadLetterError {
    DeadLetterError::Queue(e.code().map(str::to_owned).unwrap_or_else(|| e.to_string()))
}

/// One message in the DLQ.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub message_id: String,
    pub group_id: Option<String>,
    /// Receives on the queue before SQS moved it (the redrive policy's maxReceiveCount).
    pub receive_count: Option<u32>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The webhook event it carries; `None` when the body is not a queue message.
    pub event: Option<DeadEvent>,
    /// Why the body could not be read, and the body itself (shortened).
    pub unreadable: Option<Unreadable>,
    /// The `failed` activity-log row written on the last receive: its error, and its id for
    /// `POST /api/plex/logs/{id}/replay`. `None` when it could not be written (database down).
    pub log: Option<FailedLog>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadEvent {
    pub event_type: &'static str,
    pub plex_title: String,
    pub plex_rating_key: String,
    pub season: Option<i64>,
    pub episode: Option<i64>,
    pub account: Option<String>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unreadable {
    pub error: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedLog {
    pub log_id: LogId,
    pub error_message: Option<String>,
}

/// The DLQ's contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetters {
    pub dead_letters: Vec<DeadLetter>,
    /// SQS's approximate count of everything in the DLQ (more than listed when over the cap,
    /// or when another caller holds some right now).
    pub approximate_total: Option<u64>,
}

/// Lists up to `limit` messages of the DLQ without removing them.
#[tracing::instrument(skip(sqs, pool))]
pub async fn list(
    sqs: &aws_sdk_sqs::Client,
    pool: &DbPool,
    dlq_url: &str,
    limit: usize,
) -> Result<DeadLetters, DeadLetterError> {
    let mut messages = Vec::new();
    let mut handles = Vec::new();
    let received = loop {
        if messages.len() >= limit {
            break Ok(());
        }
        match receive(sqs, dlq_url, limit - messages.len(), PEEK_HOLD_SECS).await {
            Ok(batch) if batch.is_empty() => break Ok(()),
            Ok(batch) => {
                handles.extend(batch.iter().filter_map(|m| m.receipt_handle.clone()));
                messages.extend(batch);
            }
            Err(e) => break Err(e),
        }
    };
    release(sqs, dlq_url, &handles).await;
    received?;
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.message_id.clone())
        .collect();
    let mut logs = store::logs::last_failures(pool, &ids).await?;
    let dead_letters = messages
        .iter()
        .map(|m| {
            let mut letter = decode(m);
            letter.log = logs
                .remove(&letter.message_id)
                .map(|(log_id, error_message)| FailedLog {
                    log_id,
                    error_message,
                });
            letter
        })
        .collect();
    Ok(DeadLetters {
        dead_letters,
        approximate_total: approximate_total(sqs, dlq_url).await,
    })
}

/// Moves up to `limit` messages from the DLQ back to the queue, in order, each in its original
/// message group. Each is sent before it is deleted, so a failure in between leaves it in both
/// places: the processor's idempotency key makes the second delivery a no-op.
#[tracing::instrument(skip(sqs))]
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    limit: usize,
) -> Result<usize, DeadLetterError> {
    let mut moved = 0;
    while moved < limit {
        let batch = receive(sqs, dlq_url, limit - moved, MOVE_HOLD_SECS)
            .await
            .map_err(|e| partial(moved, e))?;
        if batch.is_empty() {
            break;
        }
        let mut sent = Vec::new();
        let mut failure = None;
        for m in &batch {
            if let Err(e) = send_back(sqs, queue_url, m).await {
                failure = Some(e);
                break;
            }
            sent.extend(m.receipt_handle.clone());
        }
        delete(sqs, dlq_url, &sent)
            .await
            .map_err(|e| partial(moved, e))?;
        moved += sent.len();
        if let Some(e) = failure {
            let unsent: Vec<String> = batch
                .iter()
                .filter_map(|m| m.receipt_handle.clone())
                .filter(|h| !sent.contains(h))
                .collect();
            release(sqs, dlq_url, &unsent).await;
            return Err(partial(moved, e));
        }
    }
    tracing::info!(moved, "dead letters moved back to the queue");
    Ok(moved)
}

fn partial(moved: usize, e: DeadLetterError) -> DeadLetterError {
    match (moved, e) {
        (0, e) => e,
        (moved, DeadLetterError::Queue(detail)) => DeadLetterError::Partial { moved, detail },
        (_, e) => e,
    }
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    want: usize,
    hold_secs: i32,
) -> Result<Vec<Message>, DeadLetterError> {
    let out = sqs
        .receive_message()
        .queue_url(dlq_url)
        .max_number_of_messages(want.clamp(1, 10) as i32)
        .visibility_timeout(hold_secs)
        .message_system_attribute_names(Attr::All)
        .send()
        .await
        .map_err(queue_error)?;
    Ok(out.messages.unwrap_or_default())
}

/// Makes held messages visible again at once. Best effort: if it fails, they come back when
/// their hold ends.
async fn release(sqs: &aws_sdk_sqs::Client, dlq_url: &str, handles: &[String]) {
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(e) = sqs
            .change_message_visibility_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            tracing::warn!(error = %queue_error(e), "could not release dead letters early");
        }
    }
}

async fn delete(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    handles: &[String],
) -> Result<(), DeadLetterError> {
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .ok()
            })
            .collect();
        let out = sqs
            .delete_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(queue_error)?;
        if let Some(failed) = out.failed.first() {
            return Err(DeadLetterError::Queue(failed.code.clone()));
        }
    }
    Ok(())
}

/// Sends one dead letter back with its body and group. The deduplication id is new: the
/// original's may still be inside SQS's 5-minute window.
async fn send_back(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    m: &Message,
) -> Result<(), DeadLetterError> {
    let body = m.body.clone().unwrap_or_default();
    let message_id = m.message_id.clone().unwrap_or_default();
    let group = attribute(m, Attr::MessageGroupId)
        .map(str::to_owned)
        .or_else(|| QueueMessage::from_body(&body).ok().map(|q| q.group_id()))
        .unwrap_or_else(|| "dead-letters".into());
    let dedup = hex::encode(Sha256::digest(
        format!(
            "redrive\0{message_id}\0{}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
        .as_bytes(),
    ));
    sqs.send_message()
        .queue_url(queue_url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .send()
        .await
        .map_err(queue_error)?;
    Ok(())
}

fn attribute(m: &Message, name: Attr) -> Option<&str> {
    m.attributes.as_ref()?.get(&name).map(String::as_str)
}

/// What a DLQ message says: its SQS attributes and, when the body is a queue message, the event.
pub fn decode(m: &Message) -> DeadLetter {
    let body = m.body.as_deref().unwrap_or_default();
    let sent_at = attribute(m, Attr::SentTimestamp)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    let (event, unreadable) = match QueueBody::parse(body) {
        Ok(QueueBody::Event(q)) => (
            Some(DeadEvent {
                event_type: q.event.kind.as_str(),
                plex_title: q.event.show.title.clone(),
                plex_rating_key: q.event.item_rating_key.clone(),
                season: q.event.season,
                episode: q.event.episode.as_ref().map(|e| e.number),
                account: q.event.account.title.clone(),
                received_at: q.received_at,
            }),
            None,
        ),
        // One show of a history import: a later import retries it (this one counted it failed).
        Ok(QueueBody::ImportShow(i)) => (
            Some(DeadEvent {
                event_type: IMPORT_EVENT_TYPE,
                plex_title: i.show.title.clone(),
                plex_rating_key: i.show.rating_key.clone(),
                season: None,
                episode: None,
                account: None,
                received_at: sent_at.unwrap_or_else(Utc::now),
            }),
            None,
        ),
        Err(e) => (
            None,
            Some(Unreadable {
                error: e.to_string(),
                body: body.chars().take(MAX_BODY_CHARS).collect(),
            }),
        ),
    };
    DeadLetter {
        message_id: m.message_id.clone().unwrap_or_default(),
        group_id: attribute(m, Attr::MessageGroupId).map(str::to_owned),
        receive_count: attribute(m, Attr::ApproximateReceiveCount).and_then(|v| v.parse().ok()),
        sent_at,
        event,
        unreadable,
        log: None,
    }
}

async fn approximate_total(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> Option<u64> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .ok()?;
    let attrs: HashMap<_, _> = out.attributes.unwrap_or_default();
    let count = |a: QueueAttributeName| attrs.get(&a).and_then(|v| v.parse::<u64>().ok());
    Some(
        count(QueueAttributeName::ApproximateNumberOfMessages)?
            + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible).unwrap_or(0),
    )
}
