//! Writes to the tracker's `tvshows` rows: marking an episode watched (locked, idempotent,
//! never overwriting an episode already watched) and adding a show fetched from TMDB.
//!
//! `seasons` is kept as JSON (`[{seasonNumber, episodes:[{episodeNumber, title, airDate,
//! watched, dateWatched}]}]`) and edited in place, so fields a real tracker adds survive.

use chrono::{DateTime, SecondsFormat, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use serde_json::{json, Value};

use crate::db::{DbError, DbPool};
use crate::ids::ShowId;
use crate::store::{processed, shows};
use crate::tmdb::{SeasonDetails, TvDetails};

/// One "this episode was watched" fact.
#[derive(Debug, Clone)]
pub struct MarkRequest<'a> {
    pub tvshow_id: ShowId,
    pub season: i64,
    pub episode: i64,
    pub watched_at: DateTime<Utc>,
    /// Recorded with the change, so the same message applied twice is a no-op.
    pub idempotency_key: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    Marked {
        watched_episodes: i32,
        total_episodes: i32,
    },
    /// Already watched: its date (possibly entered by hand) is kept.
    AlreadyWatched { date_watched: Option<String> },
    /// The idempotency key was already recorded: nothing changed.
    Duplicate,
    /// The stored seasons do not have this episode (stale data). Nothing was written.
    EpisodeMissing { show_tmdb_id: Option<i32> },
    /// The tracker show no longer exists. Nothing was written.
    ShowMissing,
}

/// Marks an episode in its own transaction.
#[tracing::instrument(skip(pool), fields(tvshow_id = req.tvshow_id.0, season = req.season, episode = req.episode))]
pub async fn mark_episode(pool: &DbPool, req: &MarkRequest<'_>) -> Result<MarkOutcome, DbError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let outcome = mark_episode_in(&tx, req, None).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Marks an episode inside the caller's transaction (so the caller can add its log row to the
/// same commit). `fresh_season`, when given, is merged into the stored seasons first (a season
/// refreshed from TMDB because the episode was missing). The caller commits; on
/// `Duplicate`/`EpisodeMissing`/`ShowMissing` nothing was written.
///
/// The usual case (no fresh season) is two statements: lock the show, find the episode and
/// claim the idempotency key ([`shows::lock_episode`]), then set the episode's two fields in
/// place ([`shows::mark_watched_at`]) or note the sync. The seasons JSON never leaves the
/// database.
pub async fn mark_episode_in(
    tx: &Transaction<'_>,
    req: &MarkRequest<'_>,
    fresh_season: Option<Value>,
) -> Result<MarkOutcome, DbError> {
    if let Some(fresh) = fresh_season {
        return mark_with_fresh_season(tx, req, fresh).await;
    }
    let Some(locked) = shows::lock_episode(
        tx,
        req.tvshow_id,
        req.season,
        req.episode,
        req.idempotency_key,
        req.message_id,
    )
    .await?
    else {
        return Ok(MarkOutcome::ShowMissing);
    };
    // The in-transaction idempotency check: the key was there before this transaction.
    if !locked.claimed {
        return Ok(MarkOutcome::Duplicate);
    }
    let Some(spot) = locked.spot else {
        if let Some(key) = req.idempotency_key {
            processed::release(tx, key).await?;
        }
        return Ok(MarkOutcome::EpisodeMissing {
            show_tmdb_id: locked.tmdb_id,
        });
    };
    if spot.watched {
        shows::note_synced(tx, req.tvshow_id).await?;
        return Ok(MarkOutcome::AlreadyWatched {
            date_watched: spot.date_watched,
        });
    }
    // The episode was counted unwatched; every other episode is as counted.
    let watched = locked.watched_count + 1;
    let date = watched_date(req.watched_at);
    shows::mark_watched_at(tx, req.tvshow_id, &spot, &date, watched, locked.total_count).await?;
    Ok(MarkOutcome::Marked {
        watched_episodes: watched,
        total_episodes: locked.total_count,
    })
}

/// How `dateWatched` is stored.
fn watched_date(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The rare path: the episode was missing and its season was refetched from TMDB. The whole
/// seasons JSON is read, merged and written back once.
async fn mark_with_fresh_season(
    tx: &Transaction<'_>,
    req: &MarkRequest<'_>,
    fresh: Value,
) -> Result<MarkOutcome, DbError> {
    let Some((mut seasons, show_tmdb_id)) = shows::lock_seasons(tx, req.tvshow_id).await? else {
        return Ok(MarkOutcome::ShowMissing);
    };
    if let Some(key) = req.idempotency_key {
        if processed::contains(tx, key).await? {
            return Ok(MarkOutcome::Duplicate);
        }
    }
    merge_season(&mut seasons, fresh);
    let Some(applied) = apply_mark(&mut seasons, req.season, req.episode, req.watched_at) else {
        return Ok(MarkOutcome::EpisodeMissing { show_tmdb_id });
    };
    if let Some(key) = req.idempotency_key {
        processed::record(tx, key, req.message_id).await?;
    }
    // Saved even when the episode was watched already: the merged season is new.
    let (watched, total) = counts(&seasons);
    shows::save_seasons(tx, req.tvshow_id, &seasons, watched, total).await?;
    Ok(applied.outcome(watched, total))
}

/// One episode a history sync found watched.
#[derive(Debug, Clone)]
pub struct Watch {
    pub season: i64,
    pub episode: i64,
    pub watched_at: DateTime<Utc>,
}

/// Marks several episodes of one show inside the caller's transaction (a history sync): the
/// seasons are read and locked once and written back once, whatever the number of episodes.
/// Never overwrites an episode already watched. One outcome per watch, in order (`Marked`
/// carries the counts after all of them); `None`: the show does not exist.
pub async fn mark_episodes_in(
    tx: &Transaction<'_>,
    tvshow_id: ShowId,
    watches: &[Watch],
) -> Result<Option<Vec<MarkOutcome>>, DbError> {
    let Some((mut seasons, show_tmdb_id)) = shows::lock_seasons(tx, tvshow_id).await? else {
        return Ok(None);
    };
    let applied: Vec<Option<Applied>> = watches
        .iter()
        .map(|w| apply_mark(&mut seasons, w.season, w.episode, w.watched_at))
        .collect();
    let (watched, total) = counts(&seasons);
    let outcomes: Vec<MarkOutcome> = applied
        .into_iter()
        .map(|a| match a {
            None => MarkOutcome::EpisodeMissing { show_tmdb_id },
            Some(applied) => applied.outcome(watched, total),
        })
        .collect();
    if outcomes
        .iter()
        .any(|o| matches!(o, MarkOutcome::Marked { .. }))
    {
        shows::save_seasons(tx, tvshow_id, &seasons, watched, total).await?;
    } else {
        shows::note_synced(tx, tvshow_id).await?;
    }
    Ok(Some(outcomes))
}

/// What [`apply_mark`] did to one episode.
enum Applied {
    Marked,
    AlreadyWatched { date_watched: Option<String> },
}

impl Applied {
    /// As a [`MarkOutcome`], with the show's counts after the edit.
    fn outcome(self, watched_episodes: i32, total_episodes: i32) -> MarkOutcome {
        match self {
            Self::Marked => MarkOutcome::Marked {
                watched_episodes,
                total_episodes,
            },
            Self::AlreadyWatched { date_watched } => MarkOutcome::AlreadyWatched { date_watched },
        }
    }
}

/// Marks the episode in `seasons` unless it is watched already (its date is kept); `None` when
/// the seasons lack it.
fn apply_mark(
    seasons: &mut Value,
    season: i64,
    episode: i64,
    watched_at: DateTime<Utc>,
) -> Option<Applied> {
    let ep = find_episode_mut(seasons, season, episode)?;
    if ep.get("watched").and_then(Value::as_bool) == Some(true) {
        return Some(Applied::AlreadyWatched {
            date_watched: ep
                .get("dateWatched")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    ep["watched"] = Value::Bool(true);
    ep["dateWatched"] = Value::String(watched_date(watched_at));
    Some(Applied::Marked)
}

fn find_episode_mut(seasons: &mut Value, season: i64, episode: i64) -> Option<&mut Value> {
    seasons
        .as_array_mut()?
        .iter_mut()
        .find(|s| s.get("seasonNumber").and_then(Value::as_i64) == Some(season))?
        .get_mut("episodes")?
        .as_array_mut()?
        .iter_mut()
        .find(|e| e.get("episodeNumber").and_then(Value::as_i64) == Some(episode))
}

/// (watched, total) over every season, specials included.
pub fn counts(seasons: &Value) -> (i32, i32) {
    let episodes = seasons
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("episodes").and_then(Value::as_array))
        .flatten();
    let (mut watched, mut total) = (0i32, 0i32);
    for e in episodes {
        total += 1;
        if e.get("watched").and_then(Value::as_bool) == Some(true) {
            watched += 1;
        }
    }
    (watched, total)
}

/// A TMDB season in the tracker's shape, nothing watched.
pub fn season_from_tmdb(season: &SeasonDetails) -> Value {
    let episodes: Vec<Value> = season
        .episodes
        .iter()
        .map(|e| {
            json!({
                "episodeNumber": e.episode_number,
                "title": e.name,
                "airDate": e.air_date,
                "watched": false,
                "dateWatched": null,
            })
        })
        .collect();
    json!({"seasonNumber": season.season_number, "episodes": episodes})
}

/// Replaces (or inserts, in order) a season with fresh data, keeping what the user already
/// watched and any stored episodes the fresh data lacks.
fn merge_season(seasons: &mut Value, mut fresh: Value) {
    if !seasons.is_array() {
        *seasons = json!([]);
    }
    let list = seasons.as_array_mut().expect("array");
    let number = fresh.get("seasonNumber").and_then(Value::as_i64);
    let Some(pos) = list
        .iter()
        .position(|s| s.get("seasonNumber").and_then(Value::as_i64) == number)
    else {
        let at = list
            .iter()
            .position(|s| s.get("seasonNumber").and_then(Value::as_i64) > number)
            .unwrap_or(list.len());
        list.insert(at, fresh);
        return;
    };
    let old_episodes: Vec<Value> = list[pos]
        .get("episodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(new_episodes) = fresh.get_mut("episodes").and_then(Value::as_array_mut) {
        for new in new_episodes.iter_mut() {
            let n = new.get("episodeNumber").and_then(Value::as_i64);
            if let Some(old) = old_episodes
                .iter()
                .find(|o| o.get("episodeNumber").and_then(Value::as_i64) == n)
            {
                for field in ["watched", "dateWatched"] {
                    if let Some(v) = old.get(field) {
                        new[field] = v.clone();
                    }
                }
            }
        }
        for old in &old_episodes {
            let n = old.get("episodeNumber").and_then(Value::as_i64);
            if !new_episodes
                .iter()
                .any(|e| e.get("episodeNumber").and_then(Value::as_i64) == n)
            {
                new_episodes.push(old.clone());
            }
        }
        new_episodes.sort_by_key(|e| e.get("episodeNumber").and_then(Value::as_i64));
    }
    list[pos] = fresh;
}

/// Inserts a show fetched from TMDB (status Watching, source plex), or finds the row another
/// message inserted first. Returns the show id and whether this call created it.
pub async fn insert_show_from_tmdb(
    tx: &impl GenericClient,
    show: &TvDetails,
    seasons: &[SeasonDetails],
) -> Result<(ShowId, bool), DbError> {
    let mut stored: Vec<&SeasonDetails> = seasons.iter().collect();
    stored.sort_by_key(|s| s.season_number);
    let seasons_json = Value::Array(stored.iter().map(|s| season_from_tmdb(s)).collect());
    let (_, total) = counts(&seasons_json);
    let start_date = show
        .first_air_date
        .as_deref()
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let tmdb_id = i32::try_from(show.id).map_err(|_| {
        DbError::Config(format!(
            "TMDB id {} does not fit the tracker schema",
            show.id
        ))
    })?;
    let new = shows::NewShow {
        tmdb_id,
        title: &show.name,
        start_date,
        seasons: &seasons_json,
        total_episodes: total,
    };
    if let Some(id) = shows::insert(tx, &new).await? {
        return Ok((id, true));
    }
    let (id, _) = shows::find_by_tmdb_id(tx, tmdb_id)
        .await?
        .ok_or_else(|| DbError::Config(format!("show with TMDB id {tmdb_id} vanished")))?;
    Ok((id, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_watched_state_and_orders_seasons() {
        let mut seasons = json!([
            {"seasonNumber": 2, "episodes": [{"episodeNumber": 1, "watched": true, "dateWatched": "2020-01-01T00:00:00Z"}]},
        ]);
        merge_season(
            &mut seasons,
            json!({"seasonNumber": 1, "episodes": [{"episodeNumber": 1, "watched": false, "dateWatched": null}]}),
        );
        merge_season(
            &mut seasons,
            json!({"seasonNumber": 2, "episodes": [
                {"episodeNumber": 1, "title": "A", "watched": false, "dateWatched": null},
                {"episodeNumber": 2, "title": "B", "watched": false, "dateWatched": null}
            ]}),
        );
        assert_eq!(seasons[0]["seasonNumber"], 1);
        assert_eq!(seasons[1]["episodes"][0]["watched"], true);
        assert_eq!(
            seasons[1]["episodes"][0]["dateWatched"],
            "2020-01-01T00:00:00Z"
        );
        assert_eq!(seasons[1]["episodes"][0]["title"], "A");
        assert_eq!(seasons[1]["episodes"][1]["episodeNumber"], 2);
        assert_eq!(counts(&seasons), (1, 3));
    }
}
