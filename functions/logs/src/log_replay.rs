//! Webhook replay: a stored payload from the activity log goes through the same validation as a
//! live webhook and back onto the queue.

use chrono::Utc;
use sha2::{Digest, Sha256};

use plexsync::{
    api::ApiError,
    db::{DbError, DbPool},
    ids::LogId,
    payload::Decision,
    queue::QueueMessage,
    senders::Sender,
    store,
};

#[derive(Debug, thiserror::Error)]
pub enum LogReplayError {
    #[error("log entry {0} does not exist")]
    NotFound(LogId),
    #[error("the stored payload is not a processable event: {0}")]
    NotProcessable(String),
    #[error("queue unavailable: {0}")]
    Queue(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<LogReplayError> for ApiError {
    fn from(err: LogReplayError) -> Self {
        match err {
            LogReplayError::NotFound(_) => ApiError::NotFound(err.to_string()),
            LogReplayError::NotProcessable(_) => ApiError::Unprocessable(err.to_string()),
            LogReplayError::Queue(detail) => {
                tracing::warn!(error = %detail, "replay could not reach the queue");
                ApiError::Unavailable("queue unavailable, try again shortly".into())
            }
            LogReplayError::Db(e) => e.into(),
        }
    }
}

/// What was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct LogReplayed {
    pub log_id: LogId,
    pub message_id: Option<String>,
    pub message: QueueMessage,
}

/// Rebuilds the queue message from a stored payload: the sender's payload itself, or (if the
/// processor stored the whole queue message) its `raw` part. The event is re-derived from the
/// payload by `sender`'s edge, so a replay is validated exactly like a live webhook.
fn message_from_stored(
    log_id: LogId,
    sender: Sender,
    stored: &serde_json::Value,
) -> Result<QueueMessage, LogReplayError> {
    let (raw, sender) = match stored.get("raw") {
        Some(raw) if stored.get("version").is_some() && stored.get("event").is_some() => {
            let sender = stored["event"]
                .get("sender")
                .and_then(|s| s.as_str())
                .and_then(Sender::parse)
                .unwrap_or(sender);
            (raw, sender)
        }
        _ => (stored, sender),
    };
    if raw.get("truncated").and_then(|v| v.as_bool()) == Some(true) {
        return Err(LogReplayError::NotProcessable(
            "the payload was too large to keep".into(),
        ));
    }
    let bytes =
        serde_json::to_vec(raw).map_err(|e| LogReplayError::NotProcessable(e.to_string()))?;
    match sender.decide(&bytes) {
        Ok((Decision::Process(event), raw)) => Ok(QueueMessage::new(
            *event,
            raw,
            Utc::now(),
            None,
            Some(format!("replay:{log_id}")),
        )),
        Ok((Decision::Ignore(reason), _)) => Err(LogReplayError::NotProcessable(reason)),
        Err(e) => Err(LogReplayError::NotProcessable(e.to_string())),
    }
}

/// Re-enqueues log entry `log_id`. The deduplication id is unique per replay: a replay inside
/// the original's 5-minute window must not be dropped as a duplicate. The processor's
/// idempotency key is unchanged, so replaying an event that already took effect changes nothing.
#[tracing::instrument(skip(pool, sqs))]
pub async fn replay_log(
    pool: &DbPool,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    log_id: LogId,
) -> Result<LogReplayed, LogReplayError> {
    let (sender, stored) = store::logs::payload(pool, log_id)
        .await?
        .ok_or(LogReplayError::NotFound(log_id))?;
    let message = message_from_stored(log_id, sender, &stored)?;
    let dedup = hex::encode(Sha256::digest(
        format!(
            "replay\0{log_id}\0{}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        )
        .as_bytes(),
    ));
    let out = sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(message.to_body())
        .message_group_id(message.group_id())
        .message_deduplication_id(dedup)
        .send()
        .await
        .map_err(|e| {
            use aws_sdk_sqs::error::ProvideErrorMetadata;
            LogReplayError::Queue(e.code().map(str::to_owned).unwrap_or_else(|| e.to_string()))
        })?;
    tracing::info!(log_id = log_id.0, group = %message.group_id(), "webhook replayed");
    Ok(LogReplayed {
        log_id,
        message_id: out.message_id().map(str::to_owned),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexsync::testing::fixtures;

    #[test]
    fn stored_payloads_and_stored_queue_messages_both_replay() {
        let m = message_from_stored(LogId(7), Sender::Plex, &fixtures::plex_episode_scrobble())
            .unwrap();
        assert_eq!(m.event.show.title, "The Office");
        assert_eq!(m.request_id.as_deref(), Some("replay:7"));
        let stored_message = serde_json::to_value(&m).unwrap();
        // The stored message names its sender; the row's default does not override it.
        let again = message_from_stored(LogId(8), Sender::Emby, &stored_message).unwrap();
        assert_eq!(again.event, m.event);
        assert_eq!(
            again.idempotency_key(),
            m.idempotency_key(),
            "same event, same key"
        );
    }

    #[test]
    fn jellyfin_and_emby_payloads_replay_through_their_own_edge() {
        let m = message_from_stored(
            LogId(3),
            Sender::Jellyfin,
            &fixtures::jellyfin_playback_stop(),
        )
        .unwrap();
        assert_eq!(m.event.sender, Sender::Jellyfin);
        assert_eq!(m.event.episode.as_ref().unwrap().number, 2);
        let stored = serde_json::to_value(&m).unwrap();
        let again = message_from_stored(LogId(4), Sender::Plex, &stored).unwrap();
        assert_eq!(again.event, m.event);
        let m =
            message_from_stored(LogId(5), Sender::Emby, &fixtures::emby_playback_stop()).unwrap();
        assert_eq!(m.event.sender, Sender::Emby);
        // A Jellyfin payload is not a Plex one.
        assert!(matches!(
            message_from_stored(LogId(6), Sender::Plex, &fixtures::jellyfin_playback_stop()),
            Err(LogReplayError::NotProcessable(_))
        ));
    }

    #[test]
    fn ignored_broken_and_truncated_payloads_are_not_processable() {
        for stored in [
            fixtures::plex_movie_scrobble(),
            fixtures::with_event(fixtures::plex_episode_scrobble(), "media.pause"),
            serde_json::json!({"truncated": true, "bytes": 300000}),
            serde_json::json!({"event": "media.scrobble"}),
            serde_json::json!("text"),
        ] {
            assert!(
                matches!(
                    message_from_stored(LogId(1), Sender::Plex, &stored),
                    Err(LogReplayError::NotProcessable(_))
                ),
                "{stored}"
            );
        }
    }
}
