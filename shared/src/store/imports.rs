//! `plex_imports` and `plex_import_shows`: history imports and the shows each one fans out.
//! An import's counts are summed over its shows' results, which the processor records in the
//! transaction that marks the show's episodes (so a redelivered message counts once).

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;

use crate::db::{DbError, DbPool};
use crate::ids::ShowId;

/// An import as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    pub id: i32,
    /// `running`, `completed` or `failed`.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Library section keys imported; empty: every TV section.
    pub sections: Vec<String>,
    pub watched_since: Option<NaiveDate>,
    pub counts: ImportCounts,
    pub error: Option<String>,
}

/// Progress and result, summed over the import's shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportCounts {
    pub shows_total: i64,
    pub shows_done: i64,
    pub mapped: i64,
    pub auto_added: i64,
    pub conflicts: i64,
    pub failed: i64,
    pub episodes_marked: i64,
    pub already_watched: i64,
}

/// What became of one show of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShowOutcome {
    /// Mapped to a tracker show (already, or now with confidence); its episodes marked.
    Mapped,
    /// Added to the tracker from TMDB, then marked.
    AutoAdded,
    /// Waits in a conflict for the user, with its episodes as the conflict's pending events.
    Conflict,
    Failed,
    /// Not synced: sync off for the show, the integration off, or nothing watched.
    Skipped,
}

impl ShowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mapped => "mapped",
            Self::AutoAdded => "auto_added",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// A show an import fans out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportShow {
    pub rating_key: String,
    pub title: String,
}

/// Result of one show, as the processor records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowResult<'a> {
    pub outcome: ShowOutcome,
    pub episodes_marked: i32,
    pub already_watched: i32,
    pub detail: Option<&'a str>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("import {0} is already running")]
    AlreadyRunning(i32),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for StartError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

const SELECT_IMPORT: &str = "
    SELECT i.id, i.status, i.started_at, i.finished_at, i.sections, i.watched_since, i.error,
           c.total, c.done, c.mapped, c.auto_added, c.conflicts, c.failed, c.marked, c.already
      FROM plex_imports i
      CROSS JOIN LATERAL (
        SELECT count(*) AS total,
               count(*) FILTER (WHERE s.outcome IS NOT NULL) AS done,
               count(*) FILTER (WHERE s.outcome = 'mapped') AS mapped,
               count(*) FILTER (WHERE s.outcome = 'auto_added') AS auto_added,
               count(*) FILTER (WHERE s.outcome = 'conflict') AS conflicts,
               count(*) FILTER (WHERE s.outcome = 'failed') AS failed,
               COALESCE(sum(s.episodes_marked), 0)::int8 AS marked,
               COALESCE(sum(s.already_watched), 0)::int8 AS already
          FROM plex_import_shows s WHERE s.import_id = i.id) c";

fn import_from(r: &tokio_postgres::Row) -> Import {
    Import {
        id: r.get(0),
        status: r.get(1),
        started_at: r.get(2),
        finished_at: r.get(3),
        sections: r.get(4),
        watched_since: r.get(5),
        error: r.get(6),
        counts: ImportCounts {
            shows_total: r.get(7),
            shows_done: r.get(8),
            mapped: r.get(9),
            auto_added: r.get(10),
            conflicts: r.get(11),
            failed: r.get(12),
            episodes_marked: r.get(13),
            already_watched: r.get(14),
        },
    }
}

/// The most recent import, if any.
#[tracing::instrument(skip(client))]
pub async fn latest(client: &impl GenericClient) -> Result<Option<Import>, DbError> {
    let sql = format!("{SELECT_IMPORT} ORDER BY i.id DESC LIMIT 1");
    Ok(client.query_opt(&sql, &[]).await?.as_ref().map(import_from))
}

/// One import by id.
#[tracing::instrument(skip(client))]
pub async fn find(client: &impl GenericClient, id: i32) -> Result<Option<Import>, DbError> {
    let sql = format!("{SELECT_IMPORT} WHERE i.id = $1");
    Ok(client
        .query_opt(&sql, &[&id])
        .await?
        .as_ref()
        .map(import_from))
}

/// Marks the running import failed when nothing has happened to it for `stalled_secs` (its
/// last show finished, or it started, that long ago): its remaining messages were lost (the
/// DLQ while the database was down too), and it must not block every later import.
/// Returns the id of the import it failed.
#[tracing::instrument(skip(client))]
pub async fn fail_stalled(
    client: &impl GenericClient,
    stalled_secs: f64,
) -> Result<Option<i32>, DbError> {
    let row = client
        .query_opt(
            "UPDATE plex_imports i
                SET status = 'failed', finished_at = now(),
                    error = 'stalled: no show finished for ' || ($1::float8 / 60)::int8 || ' minutes'
              WHERE i.status = 'running'
                AND GREATEST(i.started_at,
                             (SELECT max(s.finished_at) FROM plex_import_shows s
                               WHERE s.import_id = i.id))
                    < now() - make_interval(secs => $1::float8)
              RETURNING i.id",
            &[&stalled_secs],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Creates a running import and its shows in one transaction (completed at once when there
/// are no shows). The one-running-import index turns a concurrent start into `AlreadyRunning`.
#[tracing::instrument(skip(pool, shows), fields(shows = shows.len()))]
pub async fn start(
    pool: &DbPool,
    sections: &[String],
    watched_since: Option<NaiveDate>,
    shows: &[ImportShow],
) -> Result<Import, StartError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    let inserted = tx
        .query_opt(
            "INSERT INTO plex_imports (sections, watched_since) VALUES ($1, $2)
             ON CONFLICT ((true)) WHERE status = 'running' DO NOTHING
             RETURNING id",
            &[&sections, &watched_since],
        )
        .await?;
    let Some(row) = inserted else {
        let running: i32 = tx
            .query_one("SELECT id FROM plex_imports WHERE status = 'running'", &[])
            .await?
            .get(0);
        return Err(StartError::AlreadyRunning(running));
    };
    let id: i32 = row.get(0);
    let keys: Vec<&str> = shows.iter().map(|s| s.rating_key.as_str()).collect();
    let titles: Vec<&str> = shows.iter().map(|s| s.title.as_str()).collect();
    tx.execute(
        "INSERT INTO plex_import_shows (import_id, plex_rating_key, plex_title)
         SELECT $1, k, t FROM unnest($2::text[], $3::text[]) AS u(k, t)
         ON CONFLICT DO NOTHING",
        &[&id, &keys, &titles],
    )
    .await?;
    complete_if_done(&tx, id).await?;
    let import = find(&tx, id)
        .await?
        .ok_or_else(|| DbError::Config(format!("import {id} vanished")))?;
    tx.commit().await?;
    Ok(import)
}

/// Marks a running import failed with `error` (its start could not enqueue every show).
#[tracing::instrument(skip(client))]
pub async fn fail(client: &impl GenericClient, id: i32, error: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE plex_imports SET status = 'failed', error = $2, finished_at = now()
              WHERE id = $1 AND status = 'running'",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

/// Whether the import's show was handled already: `None` when the import does not list it,
/// `Some(false)` while it waits, and also when it was recorded `failed`: a failed show's message
/// (redriven from the dead-letter queue) tries it again.
pub async fn show_done(
    client: &impl GenericClient,
    import_id: i32,
    rating_key: &str,
) -> Result<Option<bool>, DbError> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT outcome IS NOT NULL AND outcome <> 'failed' FROM plex_import_shows
                      WHERE import_id = $1 AND plex_rating_key = $2",
                )
                .await?,
            &[&import_id, &rating_key],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Records a show's result, once: `false` (nothing written) when it was recorded already, so
/// the caller's transaction can roll back what a redelivery would double. A `failed` result is
/// the exception: a later success or conflict replaces it (the retry of a redriven message),
/// another failure does not (so it gets no second summary row).
pub async fn record_show(
    client: &impl GenericClient,
    import_id: i32,
    rating_key: &str,
    result: &ShowResult<'_>,
) -> Result<bool, DbError> {
    let n = client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE plex_import_shows
                        SET outcome = $3, episodes_marked = $4, already_watched = $5, detail = $6,
                            finished_at = now()
                      WHERE import_id = $1 AND plex_rating_key = $2
                        AND (outcome IS NULL OR (outcome = 'failed' AND $3 <> 'failed'))",
                )
                .await?,
            &[
                &import_id,
                &rating_key,
                &result.outcome.as_str(),
                &result.episodes_marked,
                &result.already_watched,
                &result.detail,
            ],
        )
        .await?;
    Ok(n == 1)
}

/// Completes the running import when none of its shows waits. Run after each show's own
/// commit (not inside it): of two shows finishing at once, the later check sees both.
pub async fn complete_if_done(
    client: &impl GenericClient,
    import_id: i32,
) -> Result<bool, DbError> {
    let n = client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE plex_imports i SET status = 'completed', finished_at = now()
                      WHERE i.id = $1 AND i.status = 'running'
                        AND NOT EXISTS (SELECT 1 FROM plex_import_shows s
                                         WHERE s.import_id = i.id AND s.outcome IS NULL)",
                )
                .await?,
            &[&import_id],
        )
        .await?;
    Ok(n == 1)
}

/// Whether tracker show `tvshow_id` was added from Plex after import `import_id` started. The
/// import counts such a show as added even when a crash between adding it and marking its
/// episodes made the retry find it mapped (a live scrobble's addition meanwhile counts too).
pub async fn show_added_during(
    client: &impl GenericClient,
    import_id: i32,
    tvshow_id: ShowId,
) -> Result<bool, DbError> {
    let row = client
        .query_one(
            &client
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM tvshows t JOIN plex_imports i ON i.id = $1
                                     WHERE t.id = $2 AND t.source = 'plex'
                                       AND t.created_at >= i.started_at)",
                )
                .await?,
            &[&import_id, &tvshow_id],
        )
        .await?;
    Ok(row.get(0))
}
