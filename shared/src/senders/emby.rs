//! Emby's built-in webhooks (Emby Server 4.7.9+): `playback.stop` (synced when
//! `PlaybackInfo.PlayedToCompletion` is true) and `item.markplayed`. The body is JSON, or
//! multipart/form-data with the same JSON in its `data` field, per the webhook's "Request
//! content type" setting.
//!
//! `Item` is Emby's BaseItemDto of the *episode*: its `ProviderIds` (`Tvdb`, `Imdb`, `Tmdb`) are
//! the episode's ids and `ProductionYear` its air year. The series appears only by `SeriesId` and
//! `SeriesName`, so the show is resolved through the episode ids like a Plex episode's `Guid`s.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::{
    ids_from_providers, jellyfin::parse_time, lenient_bool, unless_episode, EpisodePlay, Required,
    Sender,
};
use crate::payload::{
    capped, capped_required, check_cap, lenient_i64, lenient_string, non_empty, Decision,
    PayloadError,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Payload {
    #[serde(deserialize_with = "capped_required")]
    pub event: String,
    #[serde(default, deserialize_with = "capped")]
    pub date: Option<String>,
    #[serde(default)]
    pub user: Option<Named>,
    #[serde(default)]
    pub item: Option<Item>,
    #[serde(default)]
    pub server: Option<Named>,
    #[serde(default)]
    pub playback_info: Option<PlaybackInfo>,
}

/// The `User` and the `Server` objects: both are a name and an id.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Named {
    #[serde(default, deserialize_with = "capped")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlaybackInfo {
    #[serde(default, deserialize_with = "lenient_bool")]
    pub played_to_completion: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Item {
    #[serde(rename = "Type", default, deserialize_with = "capped")]
    pub item_type: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub server_id: Option<String>,
    /// The episode's title.
    #[serde(default, deserialize_with = "capped")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "capped")]
    pub series_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub series_id: Option<String>,
    /// Season number.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub parent_index_number: Option<i64>,
    /// Episode number.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub index_number: Option<i64>,
    #[serde(default, deserialize_with = "capped_providers")]
    pub provider_ids: BTreeMap<String, serde_json::Value>,
}

/// `ProviderIds`: names and string values capped like every other field (the path names the
/// map).
fn capped_providers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, serde_json::Value>, D::Error> {
    let map = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    for (key, value) in &map {
        check_cap::<D::Error>(key)?;
        if let Some(text) = value.as_str() {
            check_cap::<D::Error>(text)?;
        }
    }
    Ok(map)
}

impl Payload {
    pub fn decide(&self) -> Result<Decision, PayloadError> {
        match self.event.as_str() {
            "playback.stop" => {
                let completed = self
                    .playback_info
                    .as_ref()
                    .and_then(|p| p.played_to_completion);
                if completed != Some(true) {
                    return Ok(Decision::Ignore(
                        "not played to completion (PlaybackInfo.PlayedToCompletion is not true)"
                            .into(),
                    ));
                }
            }
            "item.markplayed" => {}
            other => return Ok(Decision::Ignore(format!("event {other} is not synced"))),
        }
        let item = self.item.as_ref().ok_or(PayloadError::Missing("Item"))?;
        if let Some(ignored) = unless_episode(item.item_type.as_deref(), "Item.Type")? {
            return Ok(ignored);
        }
        let server = self.server.as_ref();
        let user = self.user.as_ref();
        EpisodePlay {
            sender: Sender::Emby,
            item_id: Required(item.id.clone(), "Item.Id"),
            season: Required(item.parent_index_number, "Item.ParentIndexNumber"),
            number: Required(item.index_number, "Item.IndexNumber"),
            series_id: Required(item.series_id.clone(), "Item.SeriesId"),
            series_name: Required(item.series_name.clone(), "Item.SeriesName"),
            server_id: Required(
                server
                    .and_then(|s| s.id.clone())
                    .or_else(|| item.server_id.clone()),
                "Server.Id",
            ),
            episode_title: item.name.clone(),
            // `Item.ProviderIds` are the episode's (module docs).
            episode_ids: ids_from_providers(
                item.provider_ids
                    .iter()
                    .map(|(k, v)| (k.as_str(), provider_value(v))),
            ),
            server_title: server.and_then(|s| s.name.clone()),
            account_title: user.and_then(|u| non_empty(&u.name)),
            account_uuid: user.and_then(|u| u.id.clone()),
            viewed_at: parse_time(self.date.as_deref()),
        }
        .into_decision()
    }
}

/// Emby writes provider ids as strings; tolerate numbers.
fn provider_value(v: &serde_json::Value) -> Option<&str> {
    match v {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{decide_as, fixtures, processed_as};

    #[test]
    fn mark_played_counts_and_unfinished_or_other_events_do_not() {
        assert_eq!(
            processed_as(Sender::Emby, fixtures::emby_mark_played())
                .episode
                .unwrap()
                .number,
            3
        );
        let mut early = fixtures::emby_playback_stop();
        early["PlaybackInfo"]["PlayedToCompletion"] = false.into();
        assert!(
            matches!(decide_as(Sender::Emby, early).unwrap(), Decision::Ignore(r) if r.contains("completion"))
        );
        let mut no_info = fixtures::emby_playback_stop();
        no_info.as_object_mut().unwrap().remove("PlaybackInfo");
        assert!(matches!(
            decide_as(Sender::Emby, no_info).unwrap(),
            Decision::Ignore(_)
        ));
        let mut pause = fixtures::emby_playback_stop();
        pause["Event"] = "playback.pause".into();
        assert!(
            matches!(decide_as(Sender::Emby, pause).unwrap(), Decision::Ignore(r) if r.contains("playback.pause"))
        );
        assert!(
            matches!(decide_as(Sender::Emby, fixtures::emby_movie_playback_stop()).unwrap(), Decision::Ignore(r) if r.contains("Movie"))
        );
    }

    #[test]
    fn missing_and_malformed_fields_are_named() {
        for (field, name) in [
            ("SeriesName", "Item.SeriesName"),
            ("SeriesId", "Item.SeriesId"),
            ("IndexNumber", "Item.IndexNumber"),
            ("ParentIndexNumber", "Item.ParentIndexNumber"),
            ("Id", "Item.Id"),
        ] {
            let mut p = fixtures::emby_playback_stop();
            p["Item"].as_object_mut().unwrap().remove(field);
            assert_eq!(
                decide_as(Sender::Emby, p).unwrap_err(),
                PayloadError::Missing(name)
            );
        }
        let mut p = fixtures::emby_playback_stop();
        p["Item"]["IndexNumber"] = "three".into();
        assert!(
            matches!(decide_as(Sender::Emby, p), Err(PayloadError::Shape(m)) if m.contains("Item.IndexNumber"))
        );
        let mut p = fixtures::emby_playback_stop();
        p.as_object_mut().unwrap().remove("Item");
        assert_eq!(
            decide_as(Sender::Emby, p).unwrap_err(),
            PayloadError::Missing("Item")
        );
    }

    #[test]
    fn every_string_field_is_capped_and_named() {
        let long = "x".repeat(crate::payload::MAX_FIELD_CHARS + 1);
        for path in [
            "Event",
            "Date",
            "User.Name",
            "User.Id",
            "Server.Name",
            "Server.Id",
            "Item.Type",
            "Item.Id",
            "Item.ServerId",
            "Item.Name",
            "Item.SeriesName",
            "Item.SeriesId",
            "Item.ProviderIds.Tvdb",
        ] {
            let mut p = fixtures::emby_playback_stop();
            crate::payload::tests::set_path(&mut p, path, long.clone().into());
            let field = path.trim_end_matches(".Tvdb");
            assert_eq!(
                decide_as(Sender::Emby, p).unwrap_err(),
                PayloadError::TooLong {
                    field: field.into(),
                    max: 512
                },
                "{path}"
            );
        }
        // A provider name is capped too.
        let mut p = fixtures::emby_playback_stop();
        p["Item"]["ProviderIds"][long.as_str()] = "1".into();
        assert!(
            matches!(decide_as(Sender::Emby, p), Err(PayloadError::TooLong { field, .. }) if field == "Item.ProviderIds")
        );
    }
}
