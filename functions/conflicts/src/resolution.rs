//! Settling a conflict beyond the store's transaction: creating the show from TMDB
//! (`create_new`) and replaying the conflict's pending events through the processor, so
//! marking, logging and idempotency are the processor's own.
//!
//! Both end by the request's deadline, so the answer reaches API Gateway (30 s): TMDB calls
//! stop at it, no event is started after it, and the events the replay had no time for are
//! handed to the processor's queue ([`crate::requeue`]).

use serde::Serialize;
use tokio::time::Instant;

use crate::requeue::EventQueue;

use plexsync::{
    api::ApiError,
    db::DbError,
    episodes,
    ids::{ConflictId, PendingEventId, ShowId},
    pipeline::{self, Outcome, Pipeline},
    queue::QueueMessage,
    store::{
        conflicts::{self, PendingEvent, Resolution, Resolved},
        logs::LogStatus,
        shows, DecisionError,
    },
    tmdb::{SeasonDetails, TmdbError, TvDetails},
};

/// What happened to one pending event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayedEvent {
    pub pending_event_id: PendingEventId,
    /// The processor's status (`success`, `duplicate`, `ignored`, `failed`, ...); `queued`
    /// when it was handed to the processor's queue (no time left to replay it here), or
    /// `pending` when it was kept for a retry.
    pub status: String,
    pub action: Option<String>,
    pub reason: Option<String>,
    pub season: Option<i64>,
    pub episode: Option<i64>,
}

/// What happened to a resolution's pending events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Events that were waiting for this conflict.
    pub pending: usize,
    /// Events that went through the processor (and are recorded as replayed).
    pub replayed: usize,
    pub marked: usize,
    pub already_watched: usize,
    /// Already processed earlier (same idempotency key): nothing changed.
    pub duplicate: usize,
    pub ignored: usize,
    pub failed: usize,
    /// Not replayed because of a transient failure (or the queue would not take them): kept,
    /// un-replayed, for a retry.
    pub still_pending: usize,
    /// Not replayed here for lack of time: handed to the processor's queue, which marks them
    /// shortly (the activity log shows them).
    pub queued: usize,
    /// `S01E01`-style labels of the episodes marked watched.
    pub marked_episodes: Vec<String>,
    pub events: Vec<ReplayedEvent>,
    pub note: Option<String>,
}

impl ReplayReport {
    /// Counts one replayed event by what the processor did with it.
    fn count(
        &mut self,
        id: PendingEventId,
        outcome: Outcome,
        (season, episode): (Option<i64>, Option<i64>),
    ) {
        self.replayed += 1;
        let action = outcome.action.as_deref();
        match outcome.status {
            LogStatus::Success
                if matches!(
                    action,
                    Some("marked_watched" | "auto_added_show_and_marked_watched")
                ) =>
            {
                self.marked += 1;
                if let (Some(s), Some(e)) = (season, episode) {
                    self.marked_episodes.push(format!("S{s:02}E{e:02}"));
                }
            }
            LogStatus::Success if action == Some("already_watched") => self.already_watched += 1,
            LogStatus::Success => {}
            LogStatus::Duplicate => self.duplicate += 1,
            LogStatus::Ignored => self.ignored += 1,
            // Pended again (another open conflict for the show): counted as failed here; it is
            // stored with that conflict.
            LogStatus::Failed | LogStatus::NeedsResolution => self.failed += 1,
        }
        self.events.push(ReplayedEvent {
            pending_event_id: id,
            status: outcome.status.as_str().to_owned(),
            action: outcome.action,
            reason: outcome.reason,
            season,
            episode,
        });
    }

    /// The replay stopped at `rest[0]` (out of time, or a transient failure): the events the
    /// queue took are `queued`, the others stay pending.
    fn hand_off(
        &mut self,
        stopped: &Stopped,
        rest: &[PendingEvent],
        sent: &[PendingEventId],
        queue_error: Option<&str>,
    ) {
        for event in rest {
            let (season, episode) = episode_of(&event.message.to_string());
            let queued = sent.contains(&event.id);
            self.events.push(ReplayedEvent {
                pending_event_id: event.id,
                status: if queued { "queued" } else { "pending" }.into(),
                action: None,
                reason: (!queued).then(|| queue_error.unwrap_or_default().to_string()),
                season,
                episode,
            });
        }
        self.queued = sent.len();
        self.still_pending = rest.len() - sent.len();
        let why = match stopped {
            Stopped::OutOfTime => "were not replayed in time".to_string(),
            Stopped::Transient(error) => format!("could not be replayed now ({error})"),
        };
        let mut note = format!(
            "{} event(s) {why} and went to the processor's queue, which marks them shortly and retries while it fails (see the activity log)",
            self.queued
        );
        if let Some(error) = queue_error {
            note.push_str(&format!(
                "; {} could not be queued ({error}): they are kept un-replayed and can be retried by replaying their log entries",
                self.still_pending
            ));
        }
        self.note = Some(note);
    }
}

/// `(season, episode)` of a stored queue message, for the report.
fn episode_of(body: &str) -> (Option<i64>, Option<i64>) {
    QueueMessage::from_body(body)
        .ok()
        .and_then(|m| m.event.episode.map(|e| (e.season, e.number)))
        .unzip()
}

/// Why a replay stopped before its last event.
enum Stopped {
    OutOfTime,
    Transient(String),
}

/// Replays the resolution's pending events, oldest first, through
/// [`pipeline::process_body_until`]; each one processed is marked replayed.
///
/// No event starts after `deadline`, and one still running then is given up (its
/// transaction rolls back; had it committed, its idempotency key makes the queued copy a
/// duplicate). A transient failure (database or TMDB unavailable) stops the replay too. Either
/// way that event and the rest go to the processor's queue in their show's group (FIFO order
/// kept), which retries them as it retries any scrobble, and are marked replayed (handed over).
/// Those the queue does not take stay pending, retryable by replaying their log entries; the
/// resolution itself stands.
#[tracing::instrument(skip_all, fields(conflict = resolved.conflict_id.0, pending = resolved.pending.len()))]
pub async fn replay_pending(
    state: &Pipeline,
    queue: &EventQueue,
    resolved: &Resolved,
    deadline: Instant,
) -> ReplayReport {
    let mut report = ReplayReport {
        pending: resolved.pending.len(),
        ..ReplayReport::default()
    };
    if resolved.resolution == Resolution::Ignore {
        if report.pending > 0 {
            report.note = Some("the show is ignored; its pending events are not synced".into());
        }
        return report;
    }
    for (i, event) in resolved.pending.iter().enumerate() {
        let body = event.message.to_string();
        let message_id = format!("conflict-{}-event-{}", resolved.conflict_id, event.id);
        let replay = pipeline::process_body_until(state, &body, &message_id, None, deadline);
        let result = if Instant::now() >= deadline {
            None
        } else {
            tokio::time::timeout_at(deadline, replay).await.ok()
        };
        let stopped = match result {
            // Cut by the clock (a transient failure once the deadline has passed is the
            // deadline too: TMDB stopped at it).
            None => Stopped::OutOfTime,
            Some(Err(_)) if Instant::now() >= deadline => Stopped::OutOfTime,
            Some(Err(e)) => Stopped::Transient(e.0),
            Some(Ok(outcome)) => {
                if let Err(e) = conflicts::mark_replayed(&state.pool, &[event.id]).await {
                    // Processed but not recorded: a later replay is a duplicate, nothing more.
                    tracing::warn!(error = %e, event = event.id.0, "replayed event not recorded");
                }
                report.count(event.id, outcome, episode_of(&body));
                continue;
            }
        };
        hand_off(state, queue, resolved, i, &stopped, &mut report).await;
        break;
    }
    tracing::info!(
        replayed = report.replayed,
        marked = report.marked,
        still_pending = report.still_pending,
        queued = report.queued,
        "pending events replayed"
    );
    report
}

/// Sends the pending events from index `from` on to the processor's queue and records those
/// it took as replayed.
async fn hand_off(
    state: &Pipeline,
    queue: &EventQueue,
    resolved: &Resolved,
    from: usize,
    stopped: &Stopped,
    report: &mut ReplayReport,
) {
    let rest = &resolved.pending[from..];
    match stopped {
        Stopped::OutOfTime => tracing::warn!(
            left = rest.len(),
            "replay out of time; the rest goes to the queue"
        ),
        Stopped::Transient(error) => {
            tracing::warn!(left = rest.len(), %error, "replay stopped by a transient failure; the rest goes to the queue")
        }
    }
    let (sent, error) = queue.send(resolved.conflict_id, rest).await;
    if !sent.is_empty() {
        if let Err(e) = conflicts::mark_replayed(&state.pool, &sent).await {
            // Queued but not recorded: the processor marks them; a later replay of their log
            // entries would be a duplicate, nothing more.
            tracing::warn!(error = %e, "queued events not recorded as replayed");
        }
    }
    report.hand_off(stopped, rest, &sent, error.as_deref());
}

/// The tracker show a `create_new` resolution mapped to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedShow {
    pub tvshow_id: ShowId,
    pub tmdb_id: i64,
    pub title: String,
    /// False when a tracker show with this TMDB id already existed and was used.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateNewError {
    #[error(transparent)]
    Resolve(#[from] DecisionError),
    #[error("TMDB has no show {0}")]
    TmdbMissing(i64),
    #[error("TMDB could not be reached: {0}")]
    TmdbUnavailable(String),
}

impl From<CreateNewError> for ApiError {
    fn from(err: CreateNewError) -> Self {
        match err {
            CreateNewError::Resolve(e) => e.into(),
            CreateNewError::TmdbMissing(_) => ApiError::Unprocessable(err.to_string()),
            CreateNewError::TmdbUnavailable(_) => ApiError::BadGateway(err.to_string()),
        }
    }
}

impl From<DbError> for CreateNewError {
    fn from(e: DbError) -> Self {
        Self::Resolve(DecisionError::Db(e))
    }
}

impl From<tokio_postgres::Error> for CreateNewError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Resolve(e.into())
    }
}

/// `create_new`: creates the tracker show from TMDB with the processor's code (or uses the
/// tracker show that already has this TMDB id), maps the Plex show to it and resolves the
/// conflict as `user_created_new`, all in one transaction. TMDB is called before the
/// transaction so no connection is held across HTTP; the conflict is checked first so a
/// resolved or unknown conflict costs no TMDB call.
#[tracing::instrument(skip(state))]
pub async fn create_new(
    state: &Pipeline,
    conflict_id: ConflictId,
    tmdb_id: i64,
    deadline: Instant,
) -> Result<(Resolved, CreatedShow), CreateNewError> {
    match conflicts::is_resolved(&state.pool, conflict_id).await? {
        None => return Err(DecisionError::ConflictNotFound(conflict_id).into()),
        Some(true) => return Err(DecisionError::AlreadyResolved(conflict_id).into()),
        Some(false) => {}
    }
    // The tracker's column is an int4: a larger id cannot be a show it could hold.
    let Ok(tmdb_i32) = i32::try_from(tmdb_id) else {
        return Err(CreateNewError::TmdbMissing(tmdb_id));
    };
    let client = state.pool.get().await.map_err(DbError::from)?;
    let existing = shows::find_by_tmdb_id(&client, tmdb_i32).await?;
    drop(client);
    let source = match existing {
        Some((id, title)) => Source::Existing(id, title),
        None => match state.tmdb.until(deadline).show_with_seasons(tmdb_id).await {
            Ok((details, seasons)) => Source::Tmdb(details, seasons),
            Err(TmdbError::NotFound(_)) => return Err(CreateNewError::TmdbMissing(tmdb_id)),
            Err(e) => return Err(CreateNewError::TmdbUnavailable(e.to_string())),
        },
    };

    let mut client = state.pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    conflicts::lock_open(&tx, conflict_id).await?;
    let show = match source {
        Source::Existing(tvshow_id, title) => CreatedShow {
            tvshow_id,
            tmdb_id,
            title,
            created: false,
        },
        Source::Tmdb(details, seasons) => {
            let (tvshow_id, created) =
                episodes::insert_show_from_tmdb(&tx, &details, &seasons).await?;
            CreatedShow {
                tvshow_id,
                tmdb_id,
                title: details.name,
                created,
            }
        }
    };
    let resolved = conflicts::resolve_in(
        &tx,
        conflict_id,
        Resolution::CreateNew {
            tvshow_id: show.tvshow_id,
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        tvshow_id = show.tvshow_id.0,
        created = show.created,
        "conflict resolved with a show from TMDB"
    );
    Ok((resolved, show))
}

enum Source {
    Existing(ShowId, String),
    Tmdb(TvDetails, Vec<SeasonDetails>),
}
