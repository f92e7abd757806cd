//! Plex webhook payloads: the typed shape Plex posts, and the normalized event we queue.
//!
//! An episode event describes the *episode*: the show is `grandparent*`, the `Guid` array holds the
//! episode's own ids and `year` is the episode's air year (docs/architecture.md, "Show identity").

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};

pub use crate::senders::Sender;

/// What Plex posts (the JSON of the multipart `payload` field). Unknown fields are tolerated.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct WebhookPayload {
    #[serde(deserialize_with = "capped_required")]
    pub event: String,
    /// True when the event comes from the account that registered the webhook.
    #[serde(default)]
    pub user: bool,
    /// True when that account owns the server.
    #[serde(default)]
    pub owner: bool,
    #[serde(rename = "Account", default)]
    pub account: Option<Account>,
    #[serde(rename = "Server", default)]
    pub server: Option<Server>,
    #[serde(rename = "Player", default)]
    pub player: Option<Player>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Account {
    /// Server-local account id (the owner is often 1), not the plex.tv id.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub id: Option<i64>,
    #[serde(default, deserialize_with = "capped")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub thumb: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Server {
    #[serde(default, deserialize_with = "capped")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Player {
    #[serde(default)]
    pub local: Option<bool>,
    #[serde(default, deserialize_with = "capped")]
    pub public_address: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default, deserialize_with = "capped")]
    pub library_section_type: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "capped")]
    pub item_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub rating_key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub parent_rating_key: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub grandparent_rating_key: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub guid: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub parent_guid: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub grandparent_guid: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub parent_title: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub grandparent_title: Option<String>,
    /// Episode number (episodes) or season number (seasons).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub index: Option<i64>,
    /// Season number (episodes).
    #[serde(default, deserialize_with = "lenient_i64")]
    pub parent_index: Option<i64>,
    /// For an episode: its air year, not the show's.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub year: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub last_viewed_at: Option<i64>,
    #[serde(rename = "Guid", default)]
    pub guids: Vec<GuidEntry>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct GuidEntry {
    #[serde(deserialize_with = "capped_required")]
    pub id: String,
}

/// Plex sends numbers as JSON numbers, some relays as strings: accept both, reject the rest.
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(i64),
        Float(f64),
        Str(String),
    }
    match Option::<NumOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(NumOrStr::Num(n)) => Ok(Some(n)),
        Some(NumOrStr::Float(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Ok(Some(f as i64)),
        Some(NumOrStr::Str(s)) if s.trim().is_empty() => Ok(None),
        Some(NumOrStr::Str(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, found {s:?}"))),
        Some(NumOrStr::Float(f)) => Err(serde::de::Error::custom(format!(
            "expected an integer, found {f}"
        ))),
    }
}

/// Rating keys are strings in Plex JSON, numbers in some senders.
pub(crate) fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(i64),
        Str(String),
    }
    Ok(match Option::<NumOrStr>::deserialize(d)? {
        None => None,
        Some(NumOrStr::Num(n)) => Some(n.to_string()),
        Some(NumOrStr::Str(s)) => Some(within_cap(s)?).filter(|s| !s.trim().is_empty()),
    })
}

/// Longest string accepted in any field read from a sender's payload (titles, guids, keys,
/// account and server names). Real values are far shorter; the cap bounds what one event can
/// put on the queue, into the database and into the activity log.
pub const MAX_FIELD_CHARS: usize = 512;

/// The serde error text of a string over [`MAX_FIELD_CHARS`]; [`parse_json`] turns it into
/// [`PayloadError::TooLong`] with the field's path.
const TOO_LONG: &str = "string longer than the field cap";

/// Fails a string over [`MAX_FIELD_CHARS`] characters.
pub(crate) fn check_cap<E: serde::de::Error>(s: &str) -> Result<(), E> {
    if s.chars().count() > MAX_FIELD_CHARS {
        return Err(E::custom(TOO_LONG));
    }
    Ok(())
}

fn within_cap<E: serde::de::Error>(s: String) -> Result<String, E> {
    check_cap(&s)?;
    Ok(s)
}

/// An optional string field, at most [`MAX_FIELD_CHARS`] characters.
pub(crate) fn capped<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(within_cap)
        .transpose()
}

/// A required string field, at most [`MAX_FIELD_CHARS`] characters.
pub(crate) fn capped_required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    within_cap(String::deserialize(d)?)
}

/// External ids that identify one thing (a show, or an episode; never mix the two).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalIds {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tmdb: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tvdb: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub imdb: Option<String>,
}

impl ExternalIds {
    pub fn is_empty(&self) -> bool {
        self.tmdb.is_none() && self.tvdb.is_none() && self.imdb.is_none()
    }

    /// Ids from a `Guid` array (`tmdb://1`, `tvdb://2`, `imdb://tt3`).
    pub fn from_guid_array(entries: &[GuidEntry]) -> Self {
        let mut ids = Self::default();
        for entry in entries {
            let Some((scheme, value)) = entry.id.split_once("://") else {
                continue;
            };
            match scheme {
                "tmdb" => ids.tmdb = ids.tmdb.or(value.parse().ok()),
                "tvdb" => ids.tvdb = ids.tvdb.or(value.parse().ok()),
                "imdb" if is_imdb_id(value) => {
                    ids.imdb = ids.imdb.clone().or(Some(value.to_string()))
                }
                _ => {}
            }
        }
        ids
    }
}

fn is_imdb_id(s: &str) -> bool {
    s.len() > 2 && s.starts_with("tt") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

/// A Plex guid, parsed. Legacy agents carry the *show* id in an episode's guid
/// (`com.plexapp.agents.thetvdb://121361/1/1?lang=en`); the new agent's `plex://` ids are opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlexGuid {
    /// `plex://show/5d9c...`, `plex://episode/...`.
    Plex {
        kind: String,
        id: String,
    },
    /// A legacy agent guid: the show's id plus, for episodes, season and episode numbers.
    Legacy {
        show: ExternalIds,
        season: Option<i64>,
        episode: Option<i64>,
    },
    /// `local://123`: personal media without agent metadata.
    Local,
    Other(String),
}

impl PlexGuid {
    pub fn parse(guid: &str) -> Self {
        let guid = guid.trim();
        let Some((scheme, rest)) = guid.split_once("://") else {
            return Self::Other(guid.to_string());
        };
        let rest = rest.split('?').next().unwrap_or_default();
        match scheme {
            "plex" => match rest.split_once('/') {
                Some((kind, id)) if !id.is_empty() => Self::Plex {
                    kind: kind.to_string(),
                    id: id.to_string(),
                },
                _ => Self::Other(guid.to_string()),
            },
            "local" => Self::Local,
            "com.plexapp.agents.thetvdb"
            | "com.plexapp.agents.themoviedb"
            | "com.plexapp.agents.imdb" => {
                let mut parts = rest.split('/');
                let id = parts.next().unwrap_or_default();
                let mut show = ExternalIds::default();
                match scheme {
                    "com.plexapp.agents.thetvdb" => show.tvdb = id.parse().ok(),
                    "com.plexapp.agents.themoviedb" => show.tmdb = id.parse().ok(),
                    _ if is_imdb_id(id) => show.imdb = Some(id.to_string()),
                    _ => {}
                }
                if show.is_empty() {
                    return Self::Other(guid.to_string());
                }
                let season = parts.next().and_then(|s| s.parse().ok());
                let episode = parts.next().and_then(|s| s.parse().ok());
                Self::Legacy {
                    show,
                    season,
                    episode,
                }
            }
            _ => Self::Other(guid.to_string()),
        }
    }

    /// The show ids a legacy guid carries, if any.
    pub fn legacy_show_ids(&self) -> Option<&ExternalIds> {
        match self {
            Self::Legacy { show, .. } => Some(show),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
pub enum EventKind {
    #[serde(rename = "media.scrobble")]
    Scrobble,
    #[serde(rename = "library.new")]
    LibraryNew,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrobble => "media.scrobble",
            Self::LibraryNew => "library.new",
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ItemKind {
    Episode,
    Season,
    Show,
}

/// Who played it: checked by the processor against the configured account(s).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    pub id: Option<i64>,
    pub title: Option<String>,
    /// The payload's `user` flag: the event is the webhook owner's own.
    pub is_webhook_user: bool,
    /// The payload's `owner` flag: the webhook owner owns the server.
    pub owns_server: bool,
    /// A Jellyfin or Emby user id (those servers name users by opaque ids, not numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

/// The show an event belongs to: the identity mappings and conflicts are keyed on.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ShowRef {
    pub rating_key: String,
    pub guid: Option<String>,
    pub title: String,
    /// The show's first-air year, when the item *is* the show (never an episode's year).
    pub year: Option<i64>,
    /// Show ids carried by legacy agent guids.
    pub ids: ExternalIds,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeRef {
    pub rating_key: String,
    pub guid: Option<String>,
    pub season: i64,
    pub number: i64,
    pub title: Option<String>,
    /// The *episode's* own ids from its `Guid` array.
    pub ids: ExternalIds,
}

/// A validated event worth processing, independent of how Plex phrased it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlexEvent {
    /// Which media server sent it; part of the show's server identity. Messages queued before
    /// there were other senders are Plex's.
    #[serde(default)]
    pub sender: Sender,
    pub kind: EventKind,
    pub item: ItemKind,
    pub server_uuid: String,
    pub server_title: Option<String>,
    pub account: AccountRef,
    pub show: ShowRef,
    /// Season number for season and episode items.
    pub season: Option<i64>,
    pub episode: Option<EpisodeRef>,
    /// The rating key of the item itself (episode, season or show).
    pub item_rating_key: String,
    /// When Plex says it was viewed (`lastViewedAt`), for scrobbles.
    pub viewed_at: Option<DateTime<Utc>>,
}

impl PlexEvent {
    /// Key for ordering and mapping: one show on one server of one sender kind. Plex keys keep
    /// their original form so messages already queued keep their group.
    pub fn show_key(&self) -> String {
        match self.sender {
            Sender::Plex => format!("{}:{}", self.server_uuid, self.show.rating_key),
            other => format!(
                "{}:{}:{}",
                other.as_str(),
                self.server_uuid,
                self.show.rating_key
            ),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload has the wrong shape: {0}")]
    Shape(String),
    #[error("payload is missing required field {0}")]
    Missing(&'static str),
    #[error("payload field {field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("payload field {field} is longer than {max} characters")]
    TooLong { field: String, max: usize },
}

/// What to do with a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Process(Box<PlexEvent>),
    Ignore(String),
}

/// Deepest JSON nesting accepted; Plex payloads are about 4 levels deep.
const MAX_JSON_DEPTH: usize = 32;

impl WebhookPayload {
    /// Parses the JSON text of a payload, bounding nesting depth before serde sees it.
    pub fn from_json(bytes: &[u8]) -> Result<(Self, serde_json::Value), PayloadError> {
        parse_json(bytes)
    }

    /// Filters and validates: which events we sync, and the fields each needs.
    pub fn decide(&self) -> Result<Decision, PayloadError> {
        let kind = match self.event.as_str() {
            "media.scrobble" => EventKind::Scrobble,
            "library.new" => EventKind::LibraryNew,
            other => return Ok(Decision::Ignore(format!("event {other} is not synced"))),
        };
        let meta = self
            .metadata
            .as_ref()
            .ok_or(PayloadError::Missing("Metadata"))?;
        let item = match meta.tv_item()? {
            Ok(item) => item,
            Err(reason) => return Ok(Decision::Ignore(reason)),
        };
        if kind == EventKind::Scrobble && item != ItemKind::Episode {
            return Ok(Decision::Ignore(
                format!("scrobble of a {item:?} is not synced").to_lowercase(),
            ));
        }
        let item_rating_key = meta
            .rating_key
            .clone()
            .ok_or(PayloadError::Missing("Metadata.ratingKey"))?;
        let (show, season, episode) = match item {
            ItemKind::Episode => meta.episode_parts(&item_rating_key)?,
            ItemKind::Season => (meta.season_show()?, meta.index.filter(|n| *n >= 0), None),
            ItemKind::Show => (meta.show_itself(&item_rating_key)?, None, None),
        };
        let account = self.account.as_ref();
        Ok(Decision::Process(Box::new(PlexEvent {
            sender: Sender::Plex,
            kind,
            item,
            server_uuid: self
                .server
                .as_ref()
                .and_then(|s| s.uuid.clone())
                .unwrap_or_default(),
            server_title: self.server.as_ref().and_then(|s| s.title.clone()),
            account: AccountRef {
                id: account.and_then(|a| a.id),
                title: account.and_then(|a| a.title.clone()),
                is_webhook_user: self.user,
                owns_server: self.owner,
                uuid: None,
            },
            show,
            season,
            episode,
            item_rating_key,
            viewed_at: meta
                .last_viewed_at
                .and_then(|t| Utc.timestamp_opt(t, 0).single()),
        })))
    }
}

impl Metadata {
    /// The TV item kind, or why the item is not synced. `local://` items (Plex could not match
    /// the show, or the library has no agent) carry no external id: they are processed too, and
    /// the processor matches them by title and asks the user.
    fn tv_item(&self) -> Result<Result<ItemKind, String>, PayloadError> {
        match self.library_section_type.as_deref() {
            Some("show") => {}
            Some(other) => return Ok(Err(format!("not a TV item (library type {other})"))),
            None if self
                .item_type
                .as_deref()
                .is_some_and(|t| matches!(t, "episode" | "season" | "show")) => {}
            None => return Ok(Err("not a TV item".into())),
        }
        match self.item_type.as_deref() {
            Some("episode") => Ok(Ok(ItemKind::Episode)),
            Some("season") => Ok(Ok(ItemKind::Season)),
            Some("show") => Ok(Ok(ItemKind::Show)),
            Some(other) => Ok(Err(format!("item type {other} is not synced"))),
            None => Err(PayloadError::Missing("Metadata.type")),
        }
    }

    /// An episode item: its show (the grandparent), season number and the episode.
    fn episode_parts(
        &self,
        item_rating_key: &str,
    ) -> Result<(ShowRef, Option<i64>, Option<EpisodeRef>), PayloadError> {
        let season = require_number(self.parent_index, "Metadata.parentIndex")?;
        let number = require_number(self.index, "Metadata.index")?;
        let show_guid = self.grandparent_guid.clone();
        let episode_guid = self.guid.as_deref().map(PlexGuid::parse);
        let show = ShowRef {
            rating_key: self
                .grandparent_rating_key
                .clone()
                .ok_or(PayloadError::Missing("Metadata.grandparentRatingKey"))?,
            title: non_empty(&self.grandparent_title)
                .ok_or(PayloadError::Missing("Metadata.grandparentTitle"))?,
            ids: legacy_ids(show_guid.as_deref())
                .or_else(|| {
                    episode_guid
                        .as_ref()
                        .and_then(|g| g.legacy_show_ids().cloned())
                })
                .unwrap_or_default(),
            guid: show_guid,
            year: None,
        };
        let episode = EpisodeRef {
            rating_key: item_rating_key.to_string(),
            guid: self.guid.clone(),
            season,
            number,
            title: self.title.clone(),
            ids: ExternalIds::from_guid_array(&self.guids),
        };
        Ok((show, Some(season), Some(episode)))
    }

    /// A season item's show (the parent).
    fn season_show(&self) -> Result<ShowRef, PayloadError> {
        Ok(ShowRef {
            rating_key: self
                .parent_rating_key
                .clone()
                .ok_or(PayloadError::Missing("Metadata.parentRatingKey"))?,
            title: non_empty(&self.parent_title)
                .ok_or(PayloadError::Missing("Metadata.parentTitle"))?,
            ids: legacy_ids(self.parent_guid.as_deref()).unwrap_or_default(),
            guid: self.parent_guid.clone(),
            year: None,
        })
    }

    /// A show item is the show: its Guid array and year *are* the show's.
    fn show_itself(&self, item_rating_key: &str) -> Result<ShowRef, PayloadError> {
        Ok(ShowRef {
            rating_key: item_rating_key.to_string(),
            title: non_empty(&self.title).ok_or(PayloadError::Missing("Metadata.title"))?,
            ids: legacy_ids(self.guid.as_deref())
                .filter(|ids| !ids.is_empty())
                .unwrap_or_else(|| ExternalIds::from_guid_array(&self.guids)),
            guid: self.guid.clone(),
            year: self.year,
        })
    }
}

/// Parses JSON text into `T`, bounding nesting depth before serde sees it; the error names the
/// failing field (`Metadata.index: expected an integer ...`).
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<(T, serde_json::Value), PayloadError> {
    if json_depth_exceeds(bytes, MAX_JSON_DEPTH) {
        return Err(PayloadError::Shape(format!(
            "JSON nested deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let raw: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    if !raw.is_object() {
        return Err(PayloadError::Shape("expected a JSON object".into()));
    }
    let payload = serde_path_to_error::deserialize(&raw).map_err(|e| {
        if e.inner().to_string() == TOO_LONG {
            PayloadError::TooLong {
                field: e.path().to_string(),
                max: MAX_FIELD_CHARS,
            }
        } else {
            PayloadError::Shape(e.to_string())
        }
    })?;
    Ok((payload, raw))
}

fn legacy_ids(guid: Option<&str>) -> Option<ExternalIds> {
    guid.map(PlexGuid::parse)
        .and_then(|g| g.legacy_show_ids().cloned())
}

pub(crate) fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

pub(crate) fn require_number(value: Option<i64>, field: &'static str) -> Result<i64, PayloadError> {
    let n = value.ok_or(PayloadError::Missing(field))?;
    if (0..=100_000).contains(&n) {
        Ok(n)
    } else {
        Err(PayloadError::Invalid {
            field,
            reason: format!("{n} is out of range"),
        })
    }
}

/// True when the JSON text nests arrays/objects deeper than `max` (strings are skipped).
pub(crate) fn json_depth_exceeds(bytes: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::{decide_as, fixtures, processed_as};
    use proptest::prelude::*;

    #[test]
    fn new_agent_episode_uses_show_identity_not_episode_ids() {
        let e = processed_as(Sender::Plex, fixtures::plex_episode_scrobble());
        assert_eq!(e.kind, EventKind::Scrobble);
        assert_eq!(e.item, ItemKind::Episode);
        assert_eq!(e.show.rating_key, "48200");
        assert_eq!(e.show.title, "The Office");
        assert_eq!(
            e.show.guid.as_deref(),
            Some("plex://show/5d9c086c46115600200aa2fe")
        );
        // The Guid array belongs to the episode: it must not become the show's ids.
        assert!(e.show.ids.is_empty());
        assert_eq!(
            e.show.year, None,
            "an episode's year is its air year, not the show's"
        );
        let ep = e.episode.unwrap();
        assert_eq!((ep.season, ep.number), (1, 1));
        assert_eq!(ep.ids.tmdb, Some(397627));
        assert_eq!(ep.ids.tvdb, Some(110413));
        assert_eq!(ep.ids.imdb.as_deref(), Some("tt0664521"));
        assert_eq!(e.viewed_at.unwrap().timestamp(), 1764339000);
        assert_eq!(e.account.id, Some(1));
        assert!(e.account.is_webhook_user);
        assert_eq!(e.server_uuid, fixtures::server_uuid());
    }

    #[test]
    fn legacy_agent_episode_carries_show_tvdb_id() {
        let e = processed_as(Sender::Plex, fixtures::plex_legacy_episode_scrobble());
        assert_eq!(e.show.ids.tvdb, Some(121361));
        assert_eq!(e.show.ids.tmdb, None);
        assert_eq!(e.episode.unwrap().season, 1);
    }

    #[test]
    fn library_new_show_takes_ids_and_year_from_the_show() {
        let e = processed_as(Sender::Plex, fixtures::plex_library_new_show());
        assert_eq!(e.kind, EventKind::LibraryNew);
        assert_eq!(e.item, ItemKind::Show);
        assert_eq!(e.show.rating_key, "51000");
        assert_eq!(e.show.ids.tmdb, Some(2316));
        assert_eq!(e.show.year, Some(2005));
        assert!(e.episode.is_none());
    }

    #[test]
    fn unsynced_events_and_items_are_ignored_with_a_reason() {
        for event in [
            "media.play",
            "media.pause",
            "media.resume",
            "media.stop",
            "media.rate",
            "admin.database.backup",
        ] {
            let d = decide_as(
                Sender::Plex,
                fixtures::with_event(fixtures::plex_episode_scrobble(), event),
            )
            .unwrap();
            assert!(
                matches!(d, Decision::Ignore(ref r) if r.contains(event)),
                "{event}: {d:?}"
            );
        }
        assert!(
            matches!(decide_as(Sender::Plex, fixtures::plex_movie_scrobble()).unwrap(), Decision::Ignore(r) if r.contains("movie"))
        );
    }

    #[test]
    fn unmatched_local_items_are_processed_without_ids() {
        let Decision::Process(e) =
            decide_as(Sender::Plex, fixtures::plex_unmatched_episode_scrobble()).unwrap()
        else {
            panic!("an unmatched show's scrobble is processed")
        };
        assert_eq!(e.show.title, "The Office");
        assert_eq!(e.show.rating_key, "61000");
        assert_eq!(e.show.guid.as_deref(), Some("local://61000"));
        assert!(e.show.ids.is_empty());
        let ep = e.episode.unwrap();
        assert_eq!((ep.season, ep.number), (1, 2));
        assert!(ep.ids.is_empty());
    }

    /// Sets the field at `path` (`Metadata.Guid.0.id`) to `value`, creating objects on the way.
    pub(crate) fn set_path(v: &mut serde_json::Value, path: &str, value: serde_json::Value) {
        let mut at = v;
        for part in path.split('.') {
            at = match part.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[part],
            };
        }
        *at = value;
    }

    #[test]
    fn every_string_field_is_capped_and_named() {
        let long = "x".repeat(MAX_FIELD_CHARS + 1);
        for (path, name) in [
            ("event", "event"),
            ("Account.title", "Account.title"),
            ("Account.thumb", "Account.thumb"),
            ("Server.title", "Server.title"),
            ("Server.uuid", "Server.uuid"),
            ("Player.publicAddress", "Player.publicAddress"),
            ("Player.title", "Player.title"),
            ("Player.uuid", "Player.uuid"),
            ("Metadata.librarySectionType", "Metadata.librarySectionType"),
            ("Metadata.type", "Metadata.type"),
            ("Metadata.ratingKey", "Metadata.ratingKey"),
            ("Metadata.parentRatingKey", "Metadata.parentRatingKey"),
            (
                "Metadata.grandparentRatingKey",
                "Metadata.grandparentRatingKey",
            ),
            ("Metadata.guid", "Metadata.guid"),
            ("Metadata.parentGuid", "Metadata.parentGuid"),
            ("Metadata.grandparentGuid", "Metadata.grandparentGuid"),
            ("Metadata.title", "Metadata.title"),
            ("Metadata.parentTitle", "Metadata.parentTitle"),
            ("Metadata.grandparentTitle", "Metadata.grandparentTitle"),
            ("Metadata.Guid.1.id", "Metadata.Guid[1].id"),
        ] {
            let mut p = fixtures::plex_episode_scrobble();
            set_path(&mut p, path, long.clone().into());
            assert_eq!(
                decide_as(Sender::Plex, p).unwrap_err(),
                PayloadError::TooLong {
                    field: name.into(),
                    max: MAX_FIELD_CHARS
                },
                "{path}"
            );
        }
        // The cap counts characters: 512 two-byte characters pass.
        let mut p = fixtures::plex_episode_scrobble();
        p["Metadata"]["grandparentTitle"] = "é".repeat(MAX_FIELD_CHARS).into();
        assert_eq!(
            processed_as(Sender::Plex, p).show.title.chars().count(),
            MAX_FIELD_CHARS
        );
        // Fields we do not read (a long summary) are not capped.
        let mut p = fixtures::plex_episode_scrobble();
        p["Metadata"]["summary"] = "x".repeat(10 * MAX_FIELD_CHARS).into();
        processed_as(Sender::Plex, p);
        assert_eq!(
            PayloadError::TooLong {
                field: "Metadata.title".into(),
                max: 512
            }
            .to_string(),
            "payload field Metadata.title is longer than 512 characters"
        );
    }

    #[test]
    fn missing_fields_are_named() {
        for (field, name) in [
            ("grandparentTitle", "Metadata.grandparentTitle"),
            ("index", "Metadata.index"),
            ("parentIndex", "Metadata.parentIndex"),
            ("grandparentRatingKey", "Metadata.grandparentRatingKey"),
            ("ratingKey", "Metadata.ratingKey"),
        ] {
            let mut p = fixtures::plex_episode_scrobble();
            p["Metadata"].as_object_mut().unwrap().remove(field);
            assert_eq!(
                decide_as(Sender::Plex, p).unwrap_err(),
                PayloadError::Missing(name)
            );
        }
        let mut p = fixtures::plex_episode_scrobble();
        p.as_object_mut().unwrap().remove("Metadata");
        assert_eq!(
            decide_as(Sender::Plex, p).unwrap_err(),
            PayloadError::Missing("Metadata")
        );
    }

    #[test]
    fn wrong_types_and_shapes_are_errors() {
        let mut p = fixtures::plex_episode_scrobble();
        p["Metadata"]["index"] = "one".into();
        assert!(
            matches!(decide_as(Sender::Plex, p), Err(PayloadError::Shape(m)) if m.contains("Metadata.index") && m.contains("integer"))
        );
        let mut p = fixtures::plex_episode_scrobble();
        p["Metadata"]["index"] = "3".into();
        assert_eq!(processed_as(Sender::Plex, p).episode.unwrap().number, 3);
        assert!(matches!(
            WebhookPayload::from_json(b"[1,2]"),
            Err(PayloadError::Shape(_))
        ));
        assert!(matches!(
            WebhookPayload::from_json(b"{\"event\": 5}"),
            Err(PayloadError::Shape(m)) if m.starts_with("event: ")
        ));
        assert!(matches!(
            WebhookPayload::from_json(b"not json"),
            Err(PayloadError::NotJson(_))
        ));
        let deep = format!(
            "{{\"event\":\"x\",\"a\":{}1{}}}",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(
            matches!(WebhookPayload::from_json(deep.as_bytes()), Err(PayloadError::Shape(m)) if m.contains("nested"))
        );
    }

    #[test]
    fn guids_parse() {
        assert_eq!(
            PlexGuid::parse("com.plexapp.agents.themoviedb://1418?lang=en"),
            PlexGuid::Legacy {
                show: ExternalIds {
                    tmdb: Some(1418),
                    ..Default::default()
                },
                season: None,
                episode: None
            }
        );
        assert_eq!(
            PlexGuid::parse("com.plexapp.agents.imdb://tt0944947?lang=en")
                .legacy_show_ids()
                .unwrap()
                .imdb
                .as_deref(),
            Some("tt0944947")
        );
        assert_eq!(
            PlexGuid::parse("com.plexapp.agents.thetvdb://121361/2/5?lang=en"),
            PlexGuid::Legacy {
                show: ExternalIds {
                    tvdb: Some(121361),
                    ..Default::default()
                },
                season: Some(2),
                episode: Some(5)
            }
        );
        assert_eq!(
            PlexGuid::parse("plex://show/5d9c086c46115600200aa2fe"),
            PlexGuid::Plex {
                kind: "show".into(),
                id: "5d9c086c46115600200aa2fe".into()
            }
        );
        assert_eq!(PlexGuid::parse("local://77"), PlexGuid::Local);
        assert!(matches!(
            PlexGuid::parse("com.plexapp.agents.hama://anidb-123"),
            PlexGuid::Other(_)
        ));
        assert!(matches!(
            PlexGuid::parse("com.plexapp.agents.imdb://nope"),
            PlexGuid::Other(_)
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok((p, _)) = WebhookPayload::from_json(&bytes) {
                let _ = p.decide();
            }
        }

        #[test]
        fn arbitrary_guids_never_panic(s in ".{0,80}") {
            let _ = PlexGuid::parse(&s);
        }
    }
}
