//! The media servers that post webhooks: Plex, Jellyfin and Emby. Each sender is one edge that
//! parses its own payload shape and normalises it to the one [`PlexEvent`] the queue carries;
//! everything after the queue (matching, conflicts, marking) does not care who sent it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::payload::{
    non_empty, parse_json, require_number, AccountRef, Decision, EpisodeRef, EventKind,
    ExternalIds, ItemKind, PayloadError, PlexEvent, ShowRef, WebhookPayload,
};

pub mod emby;
pub mod jellyfin;

/// A kind of media server. Part of a show's server identity (`sender` columns).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    #[default]
    Plex,
    Jellyfin,
    Emby,
}

impl Sender {
    pub const ALL: [Sender; 3] = [Sender::Plex, Sender::Jellyfin, Sender::Emby];

    /// The stored and serialised name (`plex`, `jellyfin`, `emby`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plex => "plex",
            Self::Jellyfin => "jellyfin",
            Self::Emby => "emby",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Plex => "Plex",
            Self::Jellyfin => "Jellyfin",
            Self::Emby => "Emby",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name.trim()))
    }

    /// The route this sender posts to (the secret goes in the query string).
    pub fn webhook_path(self) -> &'static str {
        match self {
            Self::Plex => "/api/plex/webhook",
            Self::Jellyfin => "/api/jellyfin/webhook",
            Self::Emby => "/api/emby/webhook",
        }
    }

    /// The sender whose webhook route `path` is (one trailing slash tolerated).
    pub fn from_webhook_path(path: &str) -> Option<Self> {
        let path = path.strip_suffix('/').unwrap_or(path);
        Self::ALL.into_iter().find(|s| s.webhook_path() == path)
    }

    /// The multipart field holding the JSON, for senders that may post multipart bodies.
    pub fn multipart_field(self) -> &'static str {
        match self {
            // Plex: `payload` (plus a `thumb` JPEG); Emby: `data` ("multipart/form-data" setting).
            Self::Plex => "payload",
            Self::Emby => "data",
            Self::Jellyfin => "payload",
        }
    }

    /// Parses and filters this sender's payload JSON: the decision and the payload as a value
    /// (kept on the queue message for the activity log and replays).
    pub fn decide(self, json: &[u8]) -> Result<(Decision, serde_json::Value), PayloadError> {
        match self {
            Self::Plex => {
                let (payload, raw) = WebhookPayload::from_json(json)?;
                Ok((payload.decide()?, raw))
            }
            Self::Jellyfin => {
                let (payload, raw) = parse_json::<jellyfin::Payload>(json)?;
                Ok((payload.decide()?, raw))
            }
            Self::Emby => {
                let (payload, raw) = parse_json::<emby::Payload>(json)?;
                Ok((payload.decide()?, raw))
            }
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ids from a provider map (`Tmdb`/`tmdb` -> `"397628"`, ...). Keys are matched without regard
/// to case: Emby writes `Tvdb`, Jellyfin's webhook plugin lower-cases them.
pub(crate) fn ids_from_providers<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
) -> ExternalIds {
    let mut ids = ExternalIds::default();
    for (key, value) in entries {
        let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "tmdb" => ids.tmdb = ids.tmdb.or(value.parse().ok()),
            "tvdb" => ids.tvdb = ids.tvdb.or(value.parse().ok()),
            "imdb" if is_imdb_id(value) => ids.imdb = ids.imdb.or(Some(value.to_string())),
            _ => {}
        }
    }
    ids
}

/// `Ok(None)` for an episode; an item of another type is ignored; an item without a type
/// (`field` names it as the payload spells it) is malformed.
pub(crate) fn unless_episode(
    item_type: Option<&str>,
    field: &'static str,
) -> Result<Option<Decision>, PayloadError> {
    match item_type {
        Some("Episode") => Ok(None),
        Some(other) => Ok(Some(Decision::Ignore(format!(
            "not a TV episode (item type {other})"
        )))),
        None => Err(PayloadError::Missing(field)),
    }
}

/// A value the payload must carry, with the field it comes from (named when it is missing).
pub(crate) struct Required<T>(pub Option<T>, pub &'static str);

impl Required<String> {
    fn text(&self) -> Result<String, PayloadError> {
        non_empty(&self.0).ok_or(PayloadError::Missing(self.1))
    }
}

/// One watched episode as Jellyfin and Emby describe it: the same facts under each server's
/// field names. Neither names the series' provider ids (the module docs of each), so the show
/// is known by its item id and title and resolved through the episode's ids.
pub(crate) struct EpisodePlay {
    pub sender: Sender,
    pub item_id: Required<String>,
    pub season: Required<i64>,
    pub number: Required<i64>,
    pub series_id: Required<String>,
    pub series_name: Required<String>,
    pub server_id: Required<String>,
    pub episode_title: Option<String>,
    pub episode_ids: ExternalIds,
    pub server_title: Option<String>,
    pub account_title: Option<String>,
    pub account_uuid: Option<String>,
    pub viewed_at: Option<DateTime<Utc>>,
}

impl EpisodePlay {
    /// The scrobble, or the first missing field.
    pub(crate) fn into_decision(self) -> Result<Decision, PayloadError> {
        let item_id = self
            .item_id
            .0
            .ok_or(PayloadError::Missing(self.item_id.1))?;
        let season = require_number(self.season.0, self.season.1)?;
        let number = require_number(self.number.0, self.number.1)?;
        let show = ShowRef {
            rating_key: self
                .series_id
                .0
                .ok_or(PayloadError::Missing(self.series_id.1))?,
            guid: None,
            title: self.series_name.text()?,
            // Jellyfin's `Year` is the episode's when it does not know the series'; Emby sends
            // only the episode's: neither is trusted as the show's first-air year.
            year: None,
            ids: ExternalIds::default(),
        };
        let episode = EpisodeRef {
            rating_key: item_id.clone(),
            guid: None,
            season,
            number,
            title: non_empty(&self.episode_title),
            ids: self.episode_ids,
        };
        Ok(Decision::Process(Box::new(PlexEvent {
            sender: self.sender,
            kind: EventKind::Scrobble,
            item: ItemKind::Episode,
            server_uuid: self
                .server_id
                .0
                .ok_or(PayloadError::Missing(self.server_id.1))?,
            server_title: non_empty(&self.server_title),
            account: AccountRef {
                id: None,
                title: self.account_title,
                // Both send every user's plays: the processor compares the account with the
                // one the user configured.
                is_webhook_user: false,
                owns_server: false,
                uuid: self.account_uuid,
            },
            show,
            season: Some(season),
            episode: Some(episode),
            item_rating_key: item_id,
            viewed_at: self.viewed_at,
        })))
    }
}

fn is_imdb_id(s: &str) -> bool {
    s.len() > 2 && s.starts_with("tt") && s[2..].bytes().all(|b| b.is_ascii_digit())
}

/// Booleans as JSON booleans, or as the strings a template renders (`True`, `false`, `""`).
pub(crate) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrStr {
        Bool(bool),
        Str(String),
    }
    match Option::<BoolOrStr>::deserialize(d)? {
        None => Ok(None),
        Some(BoolOrStr::Bool(b)) => Ok(Some(b)),
        Some(BoolOrStr::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!(
                "expected a boolean, found {s:?}"
            ))),
        },
    }
}

/// A user id compared without regard to case or GUID hyphens (Jellyfin writes
/// `5f0c7a1e-...`, its API and Emby `5f0c7a1e...`).
pub fn same_user_id(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect::<String>()
    };
    let (a, b) = (norm(a), norm(b));
    !a.is_empty() && a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{fixtures, processed_as};

    /// What one sender's watched-episode fixture must become.
    struct Expected {
        sender: Sender,
        payload: serde_json::Value,
        series_id: &'static str,
        item_id: &'static str,
        server_id: &'static str,
        episode: (i64, i64),
        user_id: &'static str,
        /// The episode's tvdb, tmdb and imdb ids.
        episode_ids: (i64, i64, &'static str),
    }

    #[test]
    fn jellyfin_and_emby_plays_are_scrobbles_keyed_by_the_series_with_episode_ids_only() {
        for x in [
            Expected {
                sender: Sender::Jellyfin,
                payload: fixtures::jellyfin_playback_stop(),
                series_id: "a4d5b6c7-d8e9-4f01-9234-56789abcdef0",
                item_id: "0b7e3c9a-1f2d-4e5b-8a6c-7d9e0f1a2b3c",
                server_id: "f3a9c1d2e4b5467890abcdef12345678",
                episode: (1, 2),
                user_id: "5f0c7a1e-3b2d-4c9a-8e7f-6d5c4b3a2910",
                episode_ids: (110414, 397628, "tt0664514"),
            },
            Expected {
                sender: Sender::Emby,
                payload: fixtures::emby_playback_stop(),
                series_id: "2090",
                item_id: "2103",
                server_id: "8c1e5b7a2d3f4e6a9b0c1d2e3f4a5b6c",
                episode: (1, 3),
                user_id: "d1e2f3a4b5c64d7e8f9a0b1c2d3e4f5a",
                episode_ids: (110415, 397629, "tt0664517"),
            },
        ] {
            let e = processed_as(x.sender, x.payload);
            let sender = x.sender;
            assert_eq!(e.sender, sender);
            assert_eq!(e.kind, crate::payload::EventKind::Scrobble, "{sender}");
            assert_eq!(e.show.title, "The Office", "{sender}");
            assert_eq!(e.show.rating_key, x.series_id, "{sender}");
            assert_eq!(e.item_rating_key, x.item_id, "{sender}");
            assert_eq!(e.server_uuid, x.server_id, "{sender}");
            assert!(e.show_key().starts_with(&format!("{sender}:")), "{sender}");
            assert_eq!(e.account.title.as_deref(), Some("alice"), "{sender}");
            assert_eq!(e.account.uuid.as_deref(), Some(x.user_id), "{sender}");
            assert!(!e.account.is_webhook_user, "{sender}");
            assert!(e.viewed_at.is_some(), "{sender}");
            // The payload's provider ids are the episode's: never taken for the show's.
            assert!(e.show.ids.is_empty(), "{sender}: {:?}", e.show.ids);
            let ep = e.episode.unwrap();
            assert_eq!((ep.season, ep.number), x.episode, "{sender}");
            let (tvdb, tmdb, imdb) = x.episode_ids;
            assert_eq!(ep.ids.tvdb, Some(tvdb), "{sender}");
            assert_eq!(ep.ids.tmdb, Some(tmdb), "{sender}");
            assert_eq!(ep.ids.imdb.as_deref(), Some(imdb), "{sender}");
        }
    }

    #[test]
    fn senders_round_trip_their_names_and_routes() {
        for s in Sender::ALL {
            assert_eq!(Sender::parse(s.as_str()), Some(s));
            assert_eq!(Sender::from_webhook_path(s.webhook_path()), Some(s));
            assert_eq!(
                Sender::from_webhook_path(&format!("{}/", s.webhook_path())),
                Some(s)
            );
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(Sender::parse("Kodi"), None);
        assert_eq!(Sender::from_webhook_path("/api/kodi/webhook"), None);
    }

    #[test]
    fn provider_ids_are_read_without_regard_to_case() {
        let ids = ids_from_providers([
            ("Tvdb", Some("110414")),
            ("imdb", Some("tt0664514")),
            ("TMDB", Some(" 397628 ")),
            ("Zap2It", Some("EP0075")),
        ]);
        assert_eq!(ids.tvdb, Some(110414));
        assert_eq!(ids.imdb.as_deref(), Some("tt0664514"));
        assert_eq!(ids.tmdb, Some(397628));
        let bad = ids_from_providers([("imdb", Some("nm123")), ("tmdb", Some(""))]);
        assert!(bad.is_empty());
    }

    #[test]
    fn user_ids_compare_without_hyphens_or_case() {
        assert!(same_user_id(
            "5F0C7A1E-3B2D-4C9A-8E7F-6D5C4B3A2910",
            "5f0c7a1e3b2d4c9a8e7f6d5c4b3a2910"
        ));
        assert!(!same_user_id("", ""));
        assert!(!same_user_id("abc", "abd"));
    }
}
