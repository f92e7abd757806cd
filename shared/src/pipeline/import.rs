//! One show of a history import (an [`ImportShowMessage`]): its watched episodes are read from
//! the Plex server (`allLeaves`, with `lastViewedAt`) and become the scrobbles a webhook would
//! have queued; the show then goes through the pipeline's own show finding (mapping, open
//! conflict, the resolution ladder, auto-add) and marking, so an import can do nothing a
//! scrobble could not.
//!
//! Differences, all about volume: the episodes are marked in one transaction, the activity log
//! gets one summary row per show (not one per episode), and the show's result is recorded in
//! `plex_import_shows` in that same transaction, so a redelivered message changes and counts
//! nothing twice. A conflict keeps every episode as a pending event, replayed on resolution.

use std::{collections::HashMap, time::Instant};

use chrono::{TimeZone, Utc};
use deadpool_postgres::GenericClient;
use serde_json::{json, Value};

use super::{
    find_show, load_config, plex_target, Decided, Failure, Mapped, Outcome, Pipeline, SenderConfig,
    Subject, TransientError,
};
use crate::db::DbError;
use crate::episodes::{self, MarkOutcome, MarkRequest};
use crate::ids::ShowId;
use crate::payload::{AccountRef, EpisodeRef, EventKind, ExternalIds, ItemKind, PlexEvent};
use crate::plex::{PlexError, PlexLeaf};
use crate::queue::{ImportShowMessage, QueueMessage};
use crate::senders::Sender;
use crate::store::{
    imports::{self, ShowOutcome, ShowResult},
    logs::{self, LogStatus, NewLogEntry},
};
use crate::tmdb::{TmdbClient, TmdbError};

/// The `event_type` of an imported show's summary row in the activity log.
pub const IMPORT_EVENT_TYPE: &str = "import.show";

/// What the show-finding steps need about an imported show.
pub(super) struct ShowCtx<'a> {
    msg: &'a ImportShowMessage,
    message_id: &'a str,
    pub(super) receive_count: Option<i64>,
    started: Instant,
    /// The show's watched episodes as scrobble messages, oldest play first. Never empty.
    pub(super) plays: Vec<QueueMessage>,
    /// TMDB until the message's deadline.
    pub(super) tmdb: TmdbClient,
}

impl ShowCtx<'_> {
    /// Records an outcome the show-finding steps decided (sync off, a conflict): the show's
    /// result first (nothing more is written when a redelivery finds it recorded), then its
    /// summary row.
    pub(super) async fn conclude(
        &self,
        client: &impl GenericClient,
        outcome: Outcome,
    ) -> Result<Outcome, Failure> {
        let show_outcome = match outcome.status {
            LogStatus::NeedsResolution => ShowOutcome::Conflict,
            LogStatus::Failed => ShowOutcome::Failed,
            _ => ShowOutcome::Skipped,
        };
        let result = ShowResult {
            outcome: show_outcome,
            episodes_marked: 0,
            already_watched: 0,
            detail: outcome.reason.as_deref(),
        };
        if imports::record_show(
            client,
            self.msg.import_id,
            &self.msg.show.rating_key,
            &result,
        )
        .await?
        {
            summary_row(
                client,
                self.msg,
                self.message_id,
                self.receive_count,
                self.started,
                &outcome,
            )
            .await?;
        }
        Ok(outcome)
    }
}

/// Processes one imported show. `Err` (nothing written) when it should be retried.
#[tracing::instrument(skip(state, msg, tmdb_until), fields(import = msg.import_id, show = %msg.show.title))]
pub(super) async fn process_show(
    state: &Pipeline,
    msg: &ImportShowMessage,
    message_id: &str,
    receive_count: Option<i64>,
    tmdb_until: tokio::time::Instant,
) -> Result<Outcome, TransientError> {
    let started = Instant::now();
    let tmdb = state.tmdb.until(tmdb_until);
    let outcome = match run(state, &tmdb, msg, message_id, receive_count, started).await {
        Ok(outcome) => outcome,
        Err(Failure::Transient(reason)) => {
            tracing::warn!(%reason, "transient failure; the show will be retried");
            return Err(TransientError(reason));
        }
        Err(Failure::Permanent(reason)) => {
            tracing::warn!(%reason, "imported show failed");
            record_failure(state, msg, message_id, receive_count, started, &reason).await?
        }
    };
    // After the show's own commit, so the last show of the import to finish sees every other.
    let client = state.pool.get().await.map_err(|e| db_transient(e.into()))?;
    imports::complete_if_done(&client, msg.import_id)
        .await
        .map_err(db_transient)?;
    tracing::info!(
        status = outcome.status.as_str(),
        action = outcome.action.as_deref(),
        reason = outcome.reason.as_deref(),
        "imported show processed"
    );
    Ok(outcome)
}

/// The last receive failed transiently: the show is recorded as failed (its summary row says
/// why) so the import can complete; the message goes to the dead-letter queue.
pub(super) async fn give_up(
    state: &Pipeline,
    msg: &ImportShowMessage,
    message_id: &str,
    receive_count: Option<i64>,
    reason: &str,
) -> Result<(), TransientError> {
    record_failure(
        state,
        msg,
        message_id,
        receive_count,
        Instant::now(),
        reason,
    )
    .await?;
    let client = state.pool.get().await.map_err(|e| db_transient(e.into()))?;
    imports::complete_if_done(&client, msg.import_id)
        .await
        .map_err(db_transient)?;
    Ok(())
}

fn db_transient(e: DbError) -> TransientError {
    TransientError(e.to_string())
}

async fn record_failure(
    state: &Pipeline,
    msg: &ImportShowMessage,
    message_id: &str,
    receive_count: Option<i64>,
    started: Instant,
    reason: &str,
) -> Result<Outcome, TransientError> {
    let outcome = Outcome::failed(reason);
    let mut client = state.pool.get().await.map_err(|e| db_transient(e.into()))?;
    let tx = client
        .transaction()
        .await
        .map_err(|e| db_transient(e.into()))?;
    let result = ShowResult {
        outcome: ShowOutcome::Failed,
        episodes_marked: 0,
        already_watched: 0,
        detail: Some(reason),
    };
    if imports::record_show(&tx, msg.import_id, &msg.show.rating_key, &result)
        .await
        .map_err(db_transient)?
    {
        summary_row(&tx, msg, message_id, receive_count, started, &outcome)
            .await
            .map_err(db_transient)?;
    }
    tx.commit().await.map_err(|e| db_transient(e.into()))?;
    Ok(outcome)
}

async fn run(
    state: &Pipeline,
    tmdb: &TmdbClient,
    msg: &ImportShowMessage,
    message_id: &str,
    receive_count: Option<i64>,
    started: Instant,
) -> Result<Outcome, Failure> {
    let client = state.pool.get().await?;
    if let Some(outcome) = settled(&client, msg).await? {
        return Ok(outcome);
    }
    let mut ctx = ShowCtx {
        msg,
        message_id,
        receive_count,
        started,
        plays: Vec::new(),
        tmdb: tmdb.clone(),
    };
    let config = match import_gate(load_config(&client, Sender::Plex).await?) {
        Ok(config) => config,
        Err(why) => return ctx.conclude(&client, Outcome::ignored(why)).await,
    };
    drop(client);
    let Some(target) = plex_target(state, &config).await else {
        return Err(Failure::Permanent(
            "no usable Plex server URL (none, or plain http without allowInsecureHttp) or no usable stored token: the show's episodes cannot be read"
                .into(),
        ));
    };
    let leaves = target
        .client
        .all_leaves(&target.server, &msg.show.rating_key, &target.token)
        .await
        .map_err(plex_failure)?;
    drop(target);
    ctx.plays = plays(msg, &leaves);
    if ctx.plays.is_empty() {
        let client = state.pool.get().await?;
        let since = msg
            .watched_since
            .map(|d| format!(" since {d}"))
            .unwrap_or_default();
        return ctx
            .conclude(&client, Outcome::ignored(format!("nothing watched{since}")))
            .await;
    }
    let client = state.pool.get().await?;
    match find_show(state, Subject::Show(&ctx), client, &config).await? {
        (Decided::Done(outcome), _) => Ok(outcome),
        (Decided::Show(tvshow_id, how), _) => mark_all(state, &ctx, tvshow_id, how).await,
    }
}

/// The outcome of a show the import no longer needs: one it does not list, or one done.
async fn settled(
    client: &impl GenericClient,
    msg: &ImportShowMessage,
) -> Result<Option<Outcome>, Failure> {
    Ok(
        match imports::show_done(client, msg.import_id, &msg.show.rating_key).await? {
            None => Some(Outcome::ignored(format!(
                "import {} does not list this show",
                msg.import_id
            ))),
            Some(true) => Some(Outcome::new(
                LogStatus::Duplicate,
                None,
                Some("show already imported".into()),
            )),
            Some(false) => None,
        },
    )
}

/// The Plex settings when they let an import mark episodes; otherwise why not.
fn import_gate(config: Option<SenderConfig>) -> Result<SenderConfig, &'static str> {
    match config {
        Some(c) if c.enabled && c.auto_mark_watched => Ok(c),
        Some(c) if !c.enabled => Err("Plex integration is disabled"),
        Some(_) => Err("auto-mark watched is off"),
        None => Err("Plex integration is not configured"),
    }
}

/// An unreachable or slow server may answer later; a refused token or an unknown show will not.
fn plex_failure(e: PlexError) -> Failure {
    match e {
        PlexError::Timeout | PlexError::Unreachable(_) => Failure::Transient(e.to_string()),
        PlexError::Rejected | PlexError::Unexpected(_) | PlexError::PlainHttp => {
            Failure::Permanent(e.to_string())
        }
    }
}

/// The watched episodes (since the import's date) as the scrobbles a webhook would have queued
/// for them, oldest play first. Plex's play of the server owner: the owner's own play.
fn plays(msg: &ImportShowMessage, leaves: &[PlexLeaf]) -> Vec<QueueMessage> {
    let since = msg
        .watched_since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    let mut plays: Vec<QueueMessage> = leaves
        .iter()
        .filter(|l| l.view_count.unwrap_or(0) > 0)
        .filter_map(|leaf| {
            let (season, number) = (leaf.parent_index?, leaf.index?);
            let rating_key = leaf.rating_key.clone()?;
            let viewed_at = leaf
                .last_viewed_at
                .and_then(|t| Utc.timestamp_opt(t, 0).single());
            if let (Some(since), Some(at)) = (since, viewed_at) {
                if at < since {
                    return None;
                }
            }
            let event = PlexEvent {
                sender: Sender::Plex,
                kind: EventKind::Scrobble,
                item: ItemKind::Episode,
                server_uuid: msg.server_uuid.clone(),
                server_title: msg.server_title.clone(),
                account: AccountRef {
                    id: None,
                    title: None,
                    is_webhook_user: true,
                    owns_server: true,
                    uuid: None,
                },
                show: msg.show.clone(),
                season: Some(season),
                episode: Some(EpisodeRef {
                    rating_key: rating_key.clone(),
                    guid: leaf.guid.clone(),
                    season,
                    number,
                    title: leaf.title.clone(),
                    ids: ExternalIds::from_guid_array(&leaf.guids),
                }),
                item_rating_key: rating_key.clone(),
                viewed_at,
            };
            let raw = json!({
                "import": msg.import_id,
                "ratingKey": rating_key,
                "parentIndex": season,
                "index": number,
                "lastViewedAt": leaf.last_viewed_at,
            });
            Some(QueueMessage::new(
                event,
                raw,
                viewed_at.unwrap_or_else(Utc::now),
                None,
                Some(format!("import:{}", msg.import_id)),
            ))
        })
        .collect();
    plays.sort_by_key(|p| p.event.viewed_at);
    plays
}

/// What marking the show's plays did.
#[derive(Default)]
struct Tally {
    marked: i32,
    already: i32,
    /// `S00E05`-style labels of plays the tracker's seasons (even refreshed) do not have.
    missing: Vec<String>,
}

/// Marks every play in one transaction with the show's result and summary row. Seasons the
/// tracker lacks are refreshed from TMDB once (as for a scrobble), before a second attempt.
async fn mark_all(
    state: &Pipeline,
    ctx: &ShowCtx<'_>,
    tvshow_id: ShowId,
    how: Mapped,
) -> Result<Outcome, Failure> {
    let mut fresh: HashMap<i64, Value> = HashMap::new();
    let mut refreshed = matches!(how, Mapped::Added);
    loop {
        let mut client = state.pool.get().await?;
        let tx = client.transaction().await?;
        let (tally, to_refresh) = mark_plays(&tx, ctx, tvshow_id, &mut fresh).await?;
        if !to_refresh.is_empty() && !refreshed {
            // Nothing is kept from this attempt: the next one marks with the fresh seasons.
            drop(tx);
            drop(client);
            fresh = refreshed_seasons(&ctx.tmdb, &to_refresh).await?;
            refreshed = true;
            continue;
        }
        // A retry after a crash between adding the show and marking it finds it mapped.
        let how = match how {
            Mapped::Existing
                if imports::show_added_during(&tx, ctx.msg.import_id, tvshow_id).await? =>
            {
                Mapped::Added
            }
            how => how,
        };
        let outcome = marked_outcome(tvshow_id, how, &tally);
        let result = ShowResult {
            outcome: match how {
                Mapped::Added => ShowOutcome::AutoAdded,
                _ => ShowOutcome::Mapped,
            },
            episodes_marked: tally.marked,
            already_watched: tally.already,
            detail: outcome.reason.as_deref(),
        };
        if !imports::record_show(&tx, ctx.msg.import_id, &ctx.msg.show.rating_key, &result).await? {
            // Recorded meanwhile by an earlier delivery: roll back, change nothing.
            return Ok(Outcome::new(
                LogStatus::Duplicate,
                None,
                Some("show already imported".into()),
            ));
        }
        summary_row(
            &tx,
            ctx.msg,
            ctx.message_id,
            ctx.receive_count,
            ctx.started,
            &outcome,
        )
        .await?;
        tx.commit().await?;
        return Ok(outcome);
    }
}

/// Marks each play of the show in `tx`, the seasons in `fresh` (refreshed from TMDB) first.
/// Returns the tally and the seasons whose episodes the tracker does not have yet.
async fn mark_plays(
    tx: &deadpool_postgres::Transaction<'_>,
    ctx: &ShowCtx<'_>,
    tvshow_id: ShowId,
    fresh: &mut HashMap<i64, Value>,
) -> Result<(Tally, Vec<(i64, Option<i32>)>), Failure> {
    let mut tally = Tally::default();
    let mut to_refresh: Vec<(i64, Option<i32>)> = Vec::new();
    for play in &ctx.plays {
        let Some(ep) = play.event.episode.as_ref() else {
            continue;
        };
        let key = play.idempotency_key();
        let req = MarkRequest {
            tvshow_id,
            season: ep.season,
            episode: ep.number,
            watched_at: play.event.viewed_at.unwrap_or(play.received_at),
            idempotency_key: Some(&key),
            message_id: Some(ctx.message_id),
        };
        match episodes::mark_episode_in(tx, &req, fresh.remove(&ep.season)).await? {
            MarkOutcome::Marked { .. } => tally.marked += 1,
            MarkOutcome::AlreadyWatched { .. } | MarkOutcome::Duplicate => tally.already += 1,
            MarkOutcome::EpisodeMissing { show_tmdb_id } => {
                tally
                    .missing
                    .push(format!("S{:02}E{:02}", ep.season, ep.number));
                if !to_refresh.iter().any(|(s, _)| *s == ep.season) {
                    to_refresh.push((ep.season, show_tmdb_id));
                }
            }
            MarkOutcome::ShowMissing => {
                return Err(Failure::Permanent(format!(
                    "tracker show {tvshow_id} no longer exists"
                )))
            }
        }
    }
    Ok((tally, to_refresh))
}

/// The seasons to retry with, from TMDB (a season TMDB does not have is left out: its
/// episodes stay missing).
async fn refreshed_seasons(
    tmdb: &TmdbClient,
    seasons: &[(i64, Option<i32>)],
) -> Result<HashMap<i64, Value>, Failure> {
    let mut fresh = HashMap::new();
    for &(season, show_tmdb_id) in seasons {
        let Some(show_tmdb_id) = show_tmdb_id else {
            continue;
        };
        match tmdb.season(i64::from(show_tmdb_id), season).await {
            Ok(details) => {
                fresh.insert(season, episodes::season_from_tmdb(&details));
            }
            Err(TmdbError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fresh)
}

fn marked_outcome(tvshow_id: ShowId, how: Mapped, tally: &Tally) -> Outcome {
    let action = match how {
        Mapped::Added => "auto_added_show_and_imported",
        _ => "imported",
    };
    let mut reason = format!(
        "{} episode(s) marked watched, {} already watched",
        tally.marked, tally.already
    );
    if !tally.missing.is_empty() {
        const SHOWN: usize = 10;
        let mut labels = tally.missing[..tally.missing.len().min(SHOWN)].join(", ");
        if tally.missing.len() > SHOWN {
            labels.push_str(", …");
        }
        reason.push_str(&format!(
            "; {} not in the tracker's seasons or TMDB's: {labels}",
            tally.missing.len()
        ));
    }
    Outcome::new(LogStatus::Success, Some(action), Some(reason)).with_show(tvshow_id)
}

/// The show's one activity-log row.
async fn summary_row(
    client: &impl GenericClient,
    msg: &ImportShowMessage,
    message_id: &str,
    receive_count: Option<i64>,
    started: Instant,
    outcome: &Outcome,
) -> Result<(), DbError> {
    let key = format!("import:{}:{}", msg.import_id, msg.show.rating_key);
    let payload = serde_json::to_value(msg).unwrap_or(Value::Null);
    let entry = NewLogEntry {
        message_id,
        idempotency_key: &key,
        event_type: IMPORT_EVENT_TYPE,
        plex_rating_key: &msg.show.rating_key,
        plex_title: &msg.show.title,
        plex_season: None,
        plex_episode: None,
        payload: &payload,
        status: outcome.status,
        error_message: outcome.reason.as_deref(),
        processing_duration_ms: i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX),
        receive_count: receive_count.and_then(|n| i32::try_from(n).ok()),
        action_taken: outcome.action.as_deref(),
        tvshow_id: outcome.tvshow_id,
        sender: Sender::Plex,
        received_at: Utc::now(),
    };
    logs::record(client, &entry).await
}
