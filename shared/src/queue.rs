//! The queue message contract between `webhook` (producer) and `processor` (consumer).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::payload::{PlexEvent, ShowRef};
use crate::senders::Sender;

const MESSAGE_VERSION: u32 = 1;

/// Raw payloads larger than this are replaced by a marker; the normalized event is always kept.
/// SQS allows 256 KiB per message; Plex payloads are a few KiB.
const MAX_RAW_BYTES: usize = 128 * 1024;

/// One webhook event on the FIFO queue (JSON, camelCase, versioned).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueMessage {
    pub version: u32,
    pub event: PlexEvent,
    /// The payload as Plex sent it, for the activity log and replays.
    pub raw: serde_json::Value,
    #[serde(default)]
    pub raw_truncated: bool,
    pub received_at: DateTime<Utc>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("queue message is not valid: {0}")]
    Invalid(String),
    #[error("queue message version {0} is not supported")]
    Version(u32),
}

impl QueueMessage {
    pub fn new(
        event: PlexEvent,
        raw: serde_json::Value,
        received_at: DateTime<Utc>,
        source_ip: Option<String>,
        request_id: Option<String>,
    ) -> Self {
        let raw_len = serde_json::to_vec(&raw)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        let (raw, raw_truncated) = if raw_len > MAX_RAW_BYTES {
            (
                serde_json::json!({ "truncated": true, "bytes": raw_len }),
                true,
            )
        } else {
            (raw, false)
        };
        Self {
            version: MESSAGE_VERSION,
            event,
            raw,
            raw_truncated,
            received_at,
            source_ip,
            request_id,
        }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("queue message serialises")
    }

    pub fn from_body(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Versioned {
            version: u32,
        }
        let v: Versioned =
            serde_json::from_str(body).map_err(|e| MessageError::Invalid(e.to_string()))?;
        if v.version != MESSAGE_VERSION {
            return Err(MessageError::Version(v.version));
        }
        serde_json::from_str(body).map_err(|e| MessageError::Invalid(e.to_string()))
    }

    /// FIFO group: one show on one server, so a show's events are processed in order and
    /// never concurrently. SQS allows 128 characters; long keys are hashed.
    pub fn group_id(&self) -> String {
        group_for(self.event.show_key())
    }

    /// FIFO deduplication id: hash of (sender and server, account, event, item key). SQS drops a
    /// second message with the same id within 5 minutes (docs/architecture.md, "Exactly once").
    pub fn deduplication_id(&self) -> String {
        let e = &self.event;
        let account = e
            .account
            .id
            .map(|i| i.to_string())
            .or_else(|| e.account.uuid.clone())
            .unwrap_or_default();
        // Plex ids keep their original form (messages in flight at a deploy stay deduplicated).
        let server = match e.sender {
            Sender::Plex => e.server_uuid.clone(),
            other => format!("{other}:{}", e.server_uuid),
        };
        sha256_hex(
            format!(
                "{server}\0{account}\0{}\0{}",
                e.kind.as_str(),
                e.item_rating_key
            )
            .as_bytes(),
        )
    }

    /// Longer-lived idempotency key recorded by the processor with the change it makes. It adds
    /// the view time to the dedup fields, so a rewatch weeks later is a new event, while a
    /// redelivery (or a replay of the same payload) is not.
    pub fn idempotency_key(&self) -> String {
        let viewed = self
            .event
            .viewed_at
            .map(|t| t.timestamp().to_string())
            .unwrap_or_default();
        sha256_hex(format!("{}\0{viewed}", self.deduplication_id()).as_bytes())
    }
}

/// SQS allows 128 printable characters per group id; longer or odder keys are hashed.
fn group_for(key: String) -> String {
    if key.len() <= 128 && key.bytes().all(|b| b.is_ascii_graphic()) {
        key
    } else {
        sha256_hex(key.as_bytes())
    }
}

const IMPORT_SHOW_TYPE: &str = "importShow";

/// One show of a history import (`POST /api/plex/import`): the processor reads the show's
/// watched episodes from the Plex server and takes them through the same matching and marking
/// as a scrobble. Tagged `"type": "importShow"`; webhook messages have no `type`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ImportShowMessage {
    pub version: u32,
    #[serde(rename = "type")]
    pub kind: String,
    pub import_id: i32,
    pub server_uuid: String,
    pub server_title: Option<String>,
    /// The show as the server's library lists it (its own guid and ids, its first-air year).
    pub show: ShowRef,
    /// Only episodes last watched on or after this day (UTC) are imported.
    pub watched_since: Option<NaiveDate>,
}

impl ImportShowMessage {
    pub fn new(
        import_id: i32,
        server_uuid: String,
        server_title: Option<String>,
        show: ShowRef,
        watched_since: Option<NaiveDate>,
    ) -> Self {
        Self {
            version: MESSAGE_VERSION,
            kind: IMPORT_SHOW_TYPE.to_string(),
            import_id,
            server_uuid,
            server_title,
            show,
            watched_since,
        }
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("queue message serialises")
    }

    /// The show's group, the same as its scrobbles' (a Plex show's key), so the import of a
    /// show and its live plays are processed in order, never concurrently.
    pub fn group_id(&self) -> String {
        group_for(format!("{}:{}", self.server_uuid, self.show.rating_key))
    }

    /// One message per show per import: a repeated send of the same batch is dropped.
    pub fn deduplication_id(&self) -> String {
        sha256_hex(
            format!(
                "import\0{}\0{}\0{}",
                self.import_id, self.server_uuid, self.show.rating_key
            )
            .as_bytes(),
        )
    }
}

/// Any body on the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueBody {
    Event(Box<QueueMessage>),
    ImportShow(Box<ImportShowMessage>),
}

impl QueueBody {
    pub fn parse(body: &str) -> Result<Self, MessageError> {
        #[derive(Deserialize)]
        struct Tagged {
            #[serde(rename = "type", default)]
            kind: Option<String>,
            version: u32,
        }
        let tag: Tagged =
            serde_json::from_str(body).map_err(|e| MessageError::Invalid(e.to_string()))?;
        match tag.kind.as_deref() {
            None => QueueMessage::from_body(body).map(|m| Self::Event(Box::new(m))),
            Some(IMPORT_SHOW_TYPE) if tag.version == MESSAGE_VERSION => serde_json::from_str(body)
                .map(|m| Self::ImportShow(Box::new(m)))
                .map_err(|e| MessageError::Invalid(e.to_string())),
            Some(IMPORT_SHOW_TYPE) => Err(MessageError::Version(tag.version)),
            Some(other) => Err(MessageError::Invalid(format!(
                "unknown message type {other:?}"
            ))),
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Decision, WebhookPayload};
    use crate::testing::fixtures;

    fn message(value: serde_json::Value) -> QueueMessage {
        let (payload, raw) = WebhookPayload::from_json(value.to_string().as_bytes()).unwrap();
        let Decision::Process(event) = payload.decide().unwrap() else {
            panic!("ignored")
        };
        QueueMessage::new(*event, raw, Utc::now(), Some("198.51.100.23".into()), None)
    }

    #[test]
    fn round_trips_and_checks_version() {
        let m = message(fixtures::plex_episode_scrobble());
        let back = QueueMessage::from_body(&m.to_body()).unwrap();
        assert_eq!(back, m);
        let mut v: serde_json::Value = serde_json::from_str(&m.to_body()).unwrap();
        v["version"] = 2.into();
        assert!(matches!(
            QueueMessage::from_body(&v.to_string()),
            Err(MessageError::Version(2))
        ));
        assert!(matches!(
            QueueMessage::from_body("{}"),
            Err(MessageError::Invalid(_))
        ));
    }

    #[test]
    fn group_is_the_show_and_dedup_ignores_receipt_details() {
        let a = message(fixtures::plex_episode_scrobble());
        let b = message(fixtures::plex_episode_scrobble());
        assert_eq!(a.group_id(), format!("{}:48200", fixtures::server_uuid()));
        assert_eq!(a.deduplication_id(), b.deduplication_id());
        assert_eq!(a.deduplication_id().len(), 64);
        let mut other_episode = fixtures::plex_episode_scrobble();
        other_episode["Metadata"]["ratingKey"] = "48214".into();
        other_episode["Metadata"]["index"] = 2.into();
        let c = message(other_episode);
        assert_eq!(c.group_id(), a.group_id());
        assert_ne!(c.deduplication_id(), a.deduplication_id());
        let d = message(fixtures::plex_other_account_scrobble());
        assert_ne!(d.deduplication_id(), a.deduplication_id());
    }

    fn message_from(sender: Sender, value: serde_json::Value) -> QueueMessage {
        let (decision, raw) = sender.decide(value.to_string().as_bytes()).unwrap();
        let Decision::Process(event) = decision else {
            panic!("ignored")
        };
        QueueMessage::new(*event, raw, Utc::now(), None, None)
    }

    #[test]
    fn other_senders_group_and_deduplicate_under_their_own_kind() {
        let a = message_from(Sender::Jellyfin, fixtures::jellyfin_playback_stop());
        let b = message_from(Sender::Jellyfin, fixtures::jellyfin_user_data_saved());
        assert_eq!(
            a.group_id(),
            "jellyfin:f3a9c1d2e4b5467890abcdef12345678:a4d5b6c7-d8e9-4f01-9234-56789abcdef0"
        );
        // A stop and the "played" save it causes are one delivery to the queue.
        assert_eq!(a.deduplication_id(), b.deduplication_id());
        let bob = message_from(
            Sender::Jellyfin,
            fixtures::jellyfin_other_user_playback_stop(),
        );
        assert_ne!(bob.deduplication_id(), a.deduplication_id());
        let emby = message_from(Sender::Emby, fixtures::emby_playback_stop());
        assert!(emby.group_id().starts_with("emby:"));
        // The same server id and keys under another sender are another show.
        let mut same_ids = emby.clone();
        same_ids.event.sender = Sender::Jellyfin;
        assert_ne!(same_ids.group_id(), emby.group_id());
        assert_ne!(same_ids.deduplication_id(), emby.deduplication_id());
        // Messages queued before senders existed are Plex's.
        let plex = message(fixtures::plex_episode_scrobble());
        let mut old: serde_json::Value = serde_json::from_str(&plex.to_body()).unwrap();
        old["event"].as_object_mut().unwrap().remove("sender");
        let back = QueueMessage::from_body(&old.to_string()).unwrap();
        assert_eq!(back.event.sender, Sender::Plex);
        assert_eq!(back.deduplication_id(), plex.deduplication_id());
    }

    #[test]
    fn rewatch_is_a_new_idempotency_key_but_same_dedup_id() {
        let a = message(fixtures::plex_episode_scrobble());
        let mut later = fixtures::plex_episode_scrobble();
        later["Metadata"]["lastViewedAt"] = (1764339000 + 86400 * 30).into();
        let b = message(later);
        assert_eq!(a.deduplication_id(), b.deduplication_id());
        assert_ne!(a.idempotency_key(), b.idempotency_key());
    }

    #[test]
    fn huge_raw_payload_is_truncated_but_event_kept() {
        let mut big = fixtures::plex_episode_scrobble();
        big["Metadata"]["summary"] = "x".repeat(MAX_RAW_BYTES + 10).into();
        let m = message(big);
        assert!(m.raw_truncated);
        assert_eq!(m.raw["truncated"], true);
        assert_eq!(m.event.show.title, "The Office");
        assert!(m.to_body().len() < 16 * 1024);
    }
}
