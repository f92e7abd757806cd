//! Jellyfin, through the official webhook plugin's "Generic" destination (JSON body, either
//! "Send All Properties" or the template in the README).
//!
//! The plugin writes one flat object. `Provider_tmdb`, `Provider_tvdb` and `Provider_imdb` are
//! the *item's* provider ids (`Provider_{key.ToLowerInvariant()}` over `item.ProviderIds`): for an
//! Episode they are the episode's ids, never the series'. The plugin has no variable for the
//! series' provider ids, so the show is identified by `SeriesId` and resolved through the episode
//! ids (TMDB `/find`) like a Plex episode's `Guid` array.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::{ids_from_providers, lenient_bool, unless_episode, EpisodePlay, Required, Sender};
use crate::payload::{
    capped, capped_required, lenient_i64, lenient_string, non_empty, Decision, PayloadError,
};

/// The fields we read; everything else the plugin sends is tolerated and kept in the raw copy.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Payload {
    #[serde(deserialize_with = "capped_required")]
    pub notification_type: String,
    #[serde(default, deserialize_with = "capped")]
    pub item_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub item_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub server_id: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub server_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub notification_username: Option<String>,
    /// What plugin versions before 13 call `NotificationUsername` on playback events.
    #[serde(default, deserialize_with = "capped")]
    pub username: Option<String>,
    /// The episode's title.
    #[serde(default, deserialize_with = "capped")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub series_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub series_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub season_number: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub episode_number: Option<i64>,
    #[serde(rename = "Provider_tmdb", default, deserialize_with = "lenient_string")]
    pub provider_tmdb: Option<String>,
    #[serde(rename = "Provider_tvdb", default, deserialize_with = "lenient_string")]
    pub provider_tvdb: Option<String>,
    #[serde(rename = "Provider_imdb", default, deserialize_with = "lenient_string")]
    pub provider_imdb: Option<String>,
    /// PlaybackStop: the client played the item to its end.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub played_to_completion: Option<bool>,
    /// UserDataSaved: the item's played state after the save.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub played: Option<bool>,
    /// UserDataSaved: why (`TogglePlayed`, `PlaybackFinished`, `UpdateUserRating`, ...).
    #[serde(default, deserialize_with = "capped")]
    pub save_reason: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub utc_timestamp: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub last_played_date: Option<String>,
}

/// UserDataSaved reasons that mean "now watched": a manual mark, or playback reaching the end.
const WATCHED_SAVE_REASONS: [&str; 2] = ["TogglePlayed", "PlaybackFinished"];

impl Payload {
    pub fn decide(&self) -> Result<Decision, PayloadError> {
        let watched = match self.notification_type.as_str() {
            "PlaybackStop" => self.played_to_completion == Some(true),
            "UserDataSaved" => {
                let reason = self.save_reason.as_deref().unwrap_or_default();
                if !reason.is_empty() && !WATCHED_SAVE_REASONS.contains(&reason) {
                    return Ok(Decision::Ignore(format!(
                        "user data saved for {reason}, not a play"
                    )));
                }
                self.played == Some(true)
            }
            other => {
                return Ok(Decision::Ignore(format!(
                    "notification {other} is not synced"
                )))
            }
        };
        if let Some(ignored) = unless_episode(self.item_type.as_deref(), "ItemType")? {
            return Ok(ignored);
        }
        if !watched {
            return Ok(Decision::Ignore(
                "not played to completion (PlayedToCompletion / Played is not true)".into(),
            ));
        }
        EpisodePlay {
            sender: Sender::Jellyfin,
            item_id: Required(self.item_id.clone(), "ItemId"),
            season: Required(self.season_number, "SeasonNumber"),
            number: Required(self.episode_number, "EpisodeNumber"),
            series_id: Required(self.series_id.clone(), "SeriesId"),
            series_name: Required(self.series_name.clone(), "SeriesName"),
            server_id: Required(self.server_id.clone(), "ServerId"),
            episode_title: self.name.clone(),
            // The item's provider ids: the episode's (module docs).
            episode_ids: ids_from_providers([
                ("tmdb", self.provider_tmdb.as_deref()),
                ("tvdb", self.provider_tvdb.as_deref()),
                ("imdb", self.provider_imdb.as_deref()),
            ]),
            server_title: self.server_name.clone(),
            account_title: non_empty(&self.notification_username)
                .or_else(|| non_empty(&self.username)),
            account_uuid: self.user_id.clone(),
            viewed_at: parse_time(self.last_played_date.as_deref())
                .or_else(|| parse_time(self.utc_timestamp.as_deref())),
        }
        .into_decision()
    }
}

/// .NET timestamps: `2025-11-28T14:10:00.0000000Z`, sometimes without the zone (UTC is meant).
pub(crate) fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    let s = s?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{decide_as, fixtures, processed_as};

    #[test]
    fn template_strings_parse_like_send_all_properties() {
        // The README's template quotes every value; .NET renders booleans as `True`.
        let mut p = fixtures::jellyfin_playback_stop();
        for key in ["SeasonNumber", "EpisodeNumber"] {
            p[key] = p[key].to_string().into();
        }
        p["PlayedToCompletion"] = "True".into();
        p["Provider_tmdb"] = "".into();
        let e = processed_as(Sender::Jellyfin, p);
        let ep = e.episode.unwrap();
        assert_eq!((ep.season, ep.number), (1, 2));
        assert_eq!(ep.ids.tmdb, None);
    }

    #[test]
    fn user_data_saved_played_counts_other_saves_do_not() {
        let e = processed_as(Sender::Jellyfin, fixtures::jellyfin_user_data_saved());
        assert_eq!(e.episode.unwrap().number, 2);
        let mut rating = fixtures::jellyfin_user_data_saved();
        rating["SaveReason"] = "UpdateUserRating".into();
        assert!(
            matches!(decide_as(Sender::Jellyfin, rating).unwrap(), Decision::Ignore(r) if r.contains("UpdateUserRating"))
        );
        let mut unplayed = fixtures::jellyfin_user_data_saved();
        unplayed["Played"] = false.into();
        assert!(matches!(
            decide_as(Sender::Jellyfin, unplayed).unwrap(),
            Decision::Ignore(_)
        ));
    }

    #[test]
    fn unfinished_movies_and_other_notifications_are_ignored() {
        let mut early = fixtures::jellyfin_playback_stop();
        early["PlayedToCompletion"] = false.into();
        assert!(
            matches!(decide_as(Sender::Jellyfin, early).unwrap(), Decision::Ignore(r) if r.contains("completion"))
        );
        assert!(
            matches!(decide_as(Sender::Jellyfin, fixtures::jellyfin_movie_playback_stop()).unwrap(), Decision::Ignore(r) if r.contains("Movie"))
        );
        let mut start = fixtures::jellyfin_playback_stop();
        start["NotificationType"] = "PlaybackStart".into();
        assert!(
            matches!(decide_as(Sender::Jellyfin, start).unwrap(), Decision::Ignore(r) if r.contains("PlaybackStart"))
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        for field in [
            "SeriesName",
            "SeriesId",
            "SeasonNumber",
            "EpisodeNumber",
            "ItemId",
            "ServerId",
        ] {
            let mut p = fixtures::jellyfin_playback_stop();
            p.as_object_mut().unwrap().remove(field);
            assert_eq!(
                decide_as(Sender::Jellyfin, p).unwrap_err(),
                PayloadError::Missing(field)
            );
        }
        let mut p = fixtures::jellyfin_playback_stop();
        p["EpisodeNumber"] = "two".into();
        assert!(
            matches!(decide_as(Sender::Jellyfin, p), Err(PayloadError::Shape(m)) if m.contains("EpisodeNumber"))
        );
        let mut p = fixtures::jellyfin_playback_stop();
        p["PlayedToCompletion"] = "maybe".into();
        assert!(
            matches!(decide_as(Sender::Jellyfin, p), Err(PayloadError::Shape(m)) if m.contains("PlayedToCompletion"))
        );
        assert!(matches!(
            decide_as(Sender::Jellyfin, serde_json::json!({"ItemType": "Episode"})),
            Err(PayloadError::Shape(m)) if m.contains("NotificationType")
        ));
    }

    #[test]
    fn every_string_field_is_capped_and_named() {
        let long = "x".repeat(crate::payload::MAX_FIELD_CHARS + 1);
        for field in [
            "NotificationType",
            "ItemType",
            "ItemId",
            "ServerId",
            "ServerName",
            "UserId",
            "NotificationUsername",
            "Username",
            "Name",
            "SeriesName",
            "SeriesId",
            "Provider_tmdb",
            "Provider_tvdb",
            "Provider_imdb",
            "SaveReason",
            "UtcTimestamp",
            "LastPlayedDate",
        ] {
            let mut p = fixtures::jellyfin_playback_stop();
            p[field] = long.clone().into();
            assert_eq!(
                decide_as(Sender::Jellyfin, p).unwrap_err(),
                PayloadError::TooLong {
                    field: field.into(),
                    max: 512
                },
                "{field}"
            );
        }
    }

    #[test]
    fn timestamps_parse_with_and_without_zone() {
        assert_eq!(
            parse_time(Some("2025-11-28T14:10:00.0000000Z"))
                .unwrap()
                .timestamp(),
            1764339000
        );
        assert_eq!(
            parse_time(Some("2025-11-28T14:10:00")).unwrap().timestamp(),
            1764339000
        );
        assert_eq!(parse_time(Some("yesterday")), None);
    }
}
