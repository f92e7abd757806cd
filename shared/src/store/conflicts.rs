//! `plex_conflicts` and their `plex_pending_events`: shows the processor could not map on its
//! own, and how the user settles them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use deadpool_postgres::Transaction;

use crate::{
    db::{DbError, DbPool},
    paging::{Cursor, Page, PageRequest},
};

/// An open conflict as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub id: i32,
    /// The media server kind the show is on (`plex`, `jellyfin`, `emby`).
    pub sender: String,
    pub plex_server_uuid: String,
    pub plex_rating_key: String,
    pub plex_guid: String,
    pub plex_title: String,
    pub plex_year: Option<i32>,
    pub conflict_type: String,
    /// `[{tvshowId, title, tmdbId, matchScore, source}]` as the processor stored it.
    pub potential_matches: serde_json::Value,
    /// Events waiting for the resolution.
    pub pending_events: i64,
    pub created_at: DateTime<Utc>,
}

/// Unresolved conflicts, newest first.
#[tracing::instrument(skip(pool))]
pub async fn list_open(pool: &DbPool, page: &PageRequest) -> Result<Page<Conflict>, DbError> {
    let (after_t, after_id) = match &page.after {
        Some(c) => (c.created_at, Some(c.id)),
        None => (None, None),
    };
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT c.id, c.plex_server_uuid, c.plex_rating_key, c.plex_guid, c.plex_title,
                    c.plex_year, c.conflict_type, c.potential_matches,
                    (SELECT count(*) FROM plex_pending_events p
                      WHERE p.conflict_id = c.id AND p.replayed_at IS NULL),
                    c.created_at, c.sender
               FROM plex_conflicts c
              WHERE NOT c.resolved
                AND ($1::timestamptz IS NULL OR (c.created_at, c.id) < ($1::timestamptz, $2::int8))
              ORDER BY c.created_at DESC, c.id DESC
              LIMIT $3",
            &[&after_t, &after_id, &page.fetch_limit()],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| Conflict {
            id: r.get(0),
            plex_server_uuid: r.get(1),
            plex_rating_key: r.get(2),
            plex_guid: r.get(3),
            plex_title: r.get(4),
            plex_year: r.get(5),
            conflict_type: r.get(6),
            potential_matches: r.get(7),
            pending_events: r.get(8),
            created_at: r.get(9),
            sender: r.get(10),
        })
        .collect();
    Ok(page.page(items, |c: &Conflict| Cursor {
        created_at: Some(c.created_at),
        id: c.id.into(),
    }))
}

#[tracing::instrument(skip(pool))]
pub async fn count_open(pool: &DbPool) -> Result<i64, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM plex_conflicts WHERE NOT resolved",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether the conflict exists and is still open: `None` unknown, `Some(true)` resolved.
#[tracing::instrument(skip(pool))]
pub async fn is_resolved(pool: &DbPool, id: i64) -> Result<Option<bool>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT resolved FROM plex_conflicts WHERE id = $1::int8",
            &[&id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// How the user settles a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Map the Plex show to this tracker show.
    Select { tvshow_id: i64 },
    /// Map the Plex show to a tracker show just created from TMDB (see `resolution::create_new`).
    CreateNew { tvshow_id: i64 },
    /// Never sync this Plex show: a mapping with sync off keeps it from raising new conflicts.
    Ignore,
}

impl Resolution {
    fn action(self) -> &'static str {
        match self {
            Self::Select { .. } => "user_selected",
            Self::CreateNew { .. } => "user_created_new",
            Self::Ignore => "ignored",
        }
    }

    /// The tracker show the Plex show is mapped to, if any.
    pub fn tvshow_id(self) -> Option<i64> {
        match self {
            Self::Select { tvshow_id } | Self::CreateNew { tvshow_id } => Some(tvshow_id),
            Self::Ignore => None,
        }
    }

    /// `plex_show_mappings.match_method` for the mapping it writes.
    fn match_method(self) -> &'static str {
        match self {
            Self::Select { .. } => "manual",
            Self::CreateNew { .. } => "user_created_new",
            Self::Ignore => "ignored",
        }
    }
}

/// An event that arrived while the conflict was open (the queue message JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    pub id: i64,
    pub idempotency_key: String,
    pub message: serde_json::Value,
}

/// The outcome of a resolution, with the pending events the caller replays.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub conflict_id: i64,
    pub resolution: Resolution,
    pub mapping_id: i32,
    /// Not yet replayed, oldest first. Empty for `Ignore`'s purposes only in the sense that
    /// the caller does not replay them; they are returned either way.
    pub pending: Vec<PendingEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("conflict {0} does not exist")]
    NotFound(i64),
    #[error("conflict {0} is already resolved")]
    AlreadyResolved(i64),
    #[error("tvshow {0} does not exist")]
    UnknownShow(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for ResolveError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

/// Resolves a conflict in one transaction: marks it resolved and creates or updates the show's
/// mapping. Returns the conflict's pending events so the caller can replay them (one place to
/// add the replay). The row lock makes a concurrent second resolve wait, then see it resolved.
#[tracing::instrument(skip(pool))]
pub async fn resolve(
    pool: &DbPool,
    id: i64,
    resolution: Resolution,
) -> Result<Resolved, ResolveError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    let resolved = resolve_in(&tx, id, resolution).await?;
    tx.commit().await?;
    Ok(resolved)
}

/// Whether the conflict exists and is still open, locking its row for the rest of the
/// transaction (a concurrent resolve waits, then sees it resolved).
pub async fn lock_open(tx: &Transaction<'_>, id: i64) -> Result<(), ResolveError> {
    let row = tx
        .query_opt(
            "SELECT resolved FROM plex_conflicts WHERE id = $1::int8 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(ResolveError::NotFound(id))?;
    if row.get::<_, bool>(0) {
        return Err(ResolveError::AlreadyResolved(id));
    }
    Ok(())
}

/// [`resolve`] inside the caller's transaction (which commits), so a resolution can add its
/// own writes (a show created from TMDB) to the same commit.
pub async fn resolve_in(
    tx: &Transaction<'_>,
    id: i64,
    resolution: Resolution,
) -> Result<Resolved, ResolveError> {
    let conflict = tx
        .query_opt(
            "SELECT plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year, resolved,
                    sender
               FROM plex_conflicts WHERE id = $1::int8 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(ResolveError::NotFound(id))?;
    if conflict.get::<_, bool>(5) {
        return Err(ResolveError::AlreadyResolved(id));
    }
    let server_uuid: String = conflict.get(0);
    let rating_key: String = conflict.get(1);
    let guid: String = conflict.get(2);
    let title: String = conflict.get(3);
    let year: Option<i32> = conflict.get(4);
    let sender: String = conflict.get(6);

    let (tvshow_id, tmdb_id): (Option<i32>, Option<i32>) = match resolution {
        Resolution::Select { tvshow_id } | Resolution::CreateNew { tvshow_id } => {
            let row = tx
                .query_opt(
                    "SELECT id, tmdb_id FROM tvshows WHERE id = $1::int8",
                    &[&tvshow_id],
                )
                .await?
                .ok_or(ResolveError::UnknownShow(tvshow_id))?;
            (Some(row.get(0)), row.get(1))
        }
        Resolution::Ignore => (None, None),
    };

    // The show may already have a mapping under its rating key or its guid (re-added to the
    // library); update that one rather than trip either unique constraint.
    let existing = tx
        .query_opt(
            "SELECT id, plex_rating_key = $2 FROM plex_show_mappings
              WHERE sender = $4 AND plex_server_uuid = $1
                AND (plex_rating_key = $2 OR plex_guid = $3)
              ORDER BY (plex_rating_key = $2) DESC LIMIT 1 FOR UPDATE",
            &[&server_uuid, &rating_key, &guid, &sender],
        )
        .await?
        .map(|r| (r.get::<_, i32>(0), r.get::<_, bool>(1)));
    if let Some((mid, false)) = existing {
        // Found by guid only, so no row holds the new rating key: move the mapping to it.
        tx.execute(
            "UPDATE plex_show_mappings SET plex_rating_key = $2 WHERE id = $1",
            &[&mid, &rating_key],
        )
        .await?;
    }
    let existing = existing.map(|(mid, _)| mid);
    let mapping_id: i32 = match (resolution, existing) {
        (Resolution::Select { .. } | Resolution::CreateNew { .. }, Some(mid)) => {
            tx.execute(
                "UPDATE plex_show_mappings
                    SET tvshow_id = $2, tmdb_id = COALESCE($3, tmdb_id), match_confidence = 1.0,
                        match_method = $4, manually_confirmed = true, sync_enabled = true,
                        updated_at = now()
                  WHERE id = $1",
                &[&mid, &tvshow_id, &tmdb_id, &resolution.match_method()],
            )
            .await?;
            mid
        }
        (Resolution::Ignore, Some(mid)) => {
            tx.execute(
                "UPDATE plex_show_mappings SET sync_enabled = false, updated_at = now() WHERE id = $1",
                &[&mid],
            )
            .await?;
            mid
        }
        (_, None) => {
            let select = resolution.tvshow_id().is_some();
            tx.query_one(
                "INSERT INTO plex_show_mappings
                        (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                         tmdb_id, tvshow_id, match_confidence, match_method, manually_confirmed,
                         sync_enabled, sender)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN 1.0 END, $9, true, $8, $10)
                 RETURNING id",
                &[
                    &server_uuid,
                    &rating_key,
                    &guid,
                    &title,
                    &year,
                    &tmdb_id,
                    &tvshow_id,
                    &select,
                    &resolution.match_method(),
                    &sender,
                ],
            )
            .await?
            .get(0)
        }
    };

    tx.execute(
        "UPDATE plex_conflicts
            SET resolved = true, resolved_at = now(), resolved_tvshow_id = $2,
                resolution_action = $3, updated_at = now()
          WHERE id = $1::int8",
        &[&id, &tvshow_id, &resolution.action()],
    )
    .await?;
    let pending = tx
        .query(
            "SELECT id, idempotency_key, message FROM plex_pending_events
              WHERE conflict_id = $1::int8 AND replayed_at IS NULL ORDER BY id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| PendingEvent {
            id: r.get(0),
            idempotency_key: r.get(1),
            message: r.get(2),
        })
        .collect();
    Ok(Resolved {
        conflict_id: id,
        resolution,
        mapping_id,
        pending,
    })
}

/// Records that pending events went through the processor (called by the replay).
#[tracing::instrument(skip(pool))]
pub async fn mark_replayed(pool: &DbPool, ids: &[i64]) -> Result<u64, DbError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "UPDATE plex_pending_events SET replayed_at = now() WHERE id = ANY($1) AND replayed_at IS NULL",
            &[&ids],
        )
        .await?)
}
