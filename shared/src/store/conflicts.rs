//! `plex_conflicts` and their `plex_pending_events`: shows the processor could not map on its
//! own, and how the user settles them.

use chrono::{DateTime, Utc};
use serde::Serialize;

use deadpool_postgres::{GenericClient, Transaction};

use crate::{
    db::{DbError, DbPool},
    ids::{ConflictId, MappingId, PendingEventId, ShowId},
    paging::{Cursor, Page, PageRequest},
    store::{
        mappings::{self, Lock, NewMapping, PlexShowKey},
        shows, DecisionError,
    },
};

/// An open conflict as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub id: ConflictId,
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
                -- the cursor id is any i64 (it is the client's): cast to compare with int4 ids
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
            &client
                .prepare_cached("SELECT count(*) FROM plex_conflicts WHERE NOT resolved")
                .await?,
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Whether the conflict exists and is still open: `None` unknown, `Some(true)` resolved.
#[tracing::instrument(skip(pool))]
pub async fn is_resolved(pool: &DbPool, id: ConflictId) -> Result<Option<bool>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt("SELECT resolved FROM plex_conflicts WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A conflict's state and candidates, as a bulk resolution reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSet {
    pub id: ConflictId,
    pub resolved: bool,
    /// `[{tvshowId, title, tmdbId, matchScore, source}]` as the processor stored it.
    pub potential_matches: serde_json::Value,
}

/// The conflicts named by `ids` (open or not; unknown ids are absent), or without `ids` every
/// open conflict; in id order.
#[tracing::instrument(skip(pool, ids))]
pub async fn candidate_sets(
    pool: &DbPool,
    ids: Option<&[i64]>,
) -> Result<Vec<CandidateSet>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            // The ids are the client's numbers (any i64): compared as int8 with the int4 ids.
            "SELECT id, resolved, potential_matches FROM plex_conflicts
              WHERE CASE WHEN $1::int8[] IS NULL THEN NOT resolved ELSE id = ANY($1) END
              ORDER BY id",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| CandidateSet {
            id: r.get(0),
            resolved: r.get(1),
            potential_matches: r.get(2),
        })
        .collect())
}

/// How the user settles a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Map the Plex show to this tracker show.
    Select { tvshow_id: ShowId },
    /// Map the Plex show to a tracker show just created from TMDB (see `resolution::create_new`).
    CreateNew { tvshow_id: ShowId },
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
    pub fn tvshow_id(self) -> Option<ShowId> {
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
    pub id: PendingEventId,
    pub idempotency_key: String,
    pub message: serde_json::Value,
}

/// The outcome of a resolution, with the pending events the caller replays.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub conflict_id: ConflictId,
    pub resolution: Resolution,
    pub mapping_id: MappingId,
    /// Not yet replayed, oldest first. Empty for `Ignore`'s purposes only in the sense that
    /// the caller does not replay them; they are returned either way.
    pub pending: Vec<PendingEvent>,
}

/// Resolves a conflict in one transaction: marks it resolved and creates or updates the show's
/// mapping. Returns the conflict's pending events so the caller can replay them (one place to
/// add the replay). The row lock makes a concurrent second resolve wait, then see it resolved.
#[tracing::instrument(skip(pool))]
pub async fn resolve(
    pool: &DbPool,
    id: ConflictId,
    resolution: Resolution,
) -> Result<Resolved, DecisionError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    let resolved = resolve_in(&tx, id, resolution).await?;
    tx.commit().await?;
    Ok(resolved)
}

/// The Plex show of an open conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenConflict {
    pub sender: String,
    pub server_uuid: String,
    pub rating_key: String,
    pub guid: String,
    pub title: String,
    pub year: Option<i32>,
}

/// The conflict, if it exists and is still open, locking its row for the rest of the
/// transaction (a concurrent resolve waits, then sees it resolved).
pub async fn lock_open(
    tx: &Transaction<'_>,
    id: ConflictId,
) -> Result<OpenConflict, DecisionError> {
    let row = tx
        .query_opt(
            "SELECT plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year, resolved,
                    sender
               FROM plex_conflicts WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .ok_or(DecisionError::ConflictNotFound(id))?;
    if row.get::<_, bool>(5) {
        return Err(DecisionError::AlreadyResolved(id));
    }
    Ok(OpenConflict {
        sender: row.get(6),
        server_uuid: row.get(0),
        rating_key: row.get(1),
        guid: row.get(2),
        title: row.get(3),
        year: row.get(4),
    })
}

/// [`resolve`] inside the caller's transaction (which commits), so a resolution can add its
/// own writes (a show created from TMDB) to the same commit.
pub async fn resolve_in(
    tx: &Transaction<'_>,
    id: ConflictId,
    resolution: Resolution,
) -> Result<Resolved, DecisionError> {
    let conflict = lock_open(tx, id).await?;
    let (tvshow_id, tmdb_id) = match resolution.tvshow_id() {
        Some(tvshow_id) => {
            let tmdb_id = shows::tmdb_id_of(tx, tvshow_id)
                .await?
                .ok_or(DecisionError::UnknownShow(tvshow_id))?;
            (Some(tvshow_id), tmdb_id)
        }
        None => (None, None),
    };
    let mapping_id = settle_mapping(tx, &conflict, resolution, tvshow_id, tmdb_id).await?;
    tx.execute(
        "UPDATE plex_conflicts
            SET resolved = true, resolved_at = now(), resolved_tvshow_id = $2,
                resolution_action = $3, updated_at = now()
          WHERE id = $1",
        &[&id, &tvshow_id, &resolution.action()],
    )
    .await?;
    let pending = tx
        .query(
            "SELECT id, idempotency_key, message FROM plex_pending_events
              WHERE conflict_id = $1 AND replayed_at IS NULL ORDER BY id",
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

/// Creates or updates the show's mapping as the resolution says; returns its id. The show may
/// already have a mapping under its rating key or its guid (re-added to the library): that one
/// is updated rather than trip either unique constraint.
async fn settle_mapping(
    tx: &Transaction<'_>,
    conflict: &OpenConflict,
    resolution: Resolution,
    tvshow_id: Option<ShowId>,
    tmdb_id: Option<i32>,
) -> Result<MappingId, DecisionError> {
    let show = PlexShowKey {
        sender: &conflict.sender,
        server_uuid: &conflict.server_uuid,
        rating_key: &conflict.rating_key,
        guid: &conflict.guid,
    };
    let existing = mappings::find_for_show(tx, show, Lock::ForUpdate).await?;
    if let Some(m) = &existing {
        if m.plex_rating_key != conflict.rating_key {
            // Found by guid only, so no row holds the new rating key: move the mapping to it.
            mappings::move_to_rating_key(tx, m.id, &conflict.rating_key).await?;
        }
    }
    match (tvshow_id, existing) {
        (Some(tvshow_id), Some(m)) => {
            mappings::set_tvshow(tx, m.id, tvshow_id, tmdb_id, resolution.match_method()).await?;
            Ok(m.id)
        }
        (None, Some(m)) => {
            mappings::turn_sync_off(tx, m.id).await?;
            Ok(m.id)
        }
        (_, None) => {
            let new = NewMapping {
                show,
                title: &conflict.title,
                year: conflict.year,
                tvdb_id: None,
                imdb_id: None,
                tmdb_id,
                tvshow_id,
                confidence: tvshow_id.map(|_| 1.0),
                method: resolution.match_method(),
                manually_confirmed: true,
                sync_enabled: tvshow_id.is_some(),
            };
            mappings::insert(tx, &new).await?.ok_or_else(|| {
                DbError::Config("a mapping for this show appeared during the resolution".into())
                    .into()
            })
        }
    }
}

/// The open conflict of this show, if any.
pub async fn find_open_for_show(
    client: &impl GenericClient,
    show: PlexShowKey<'_>,
) -> Result<Option<ConflictId>, DbError> {
    let row = client
        .query_opt(
            "SELECT id FROM plex_conflicts
              WHERE sender = $3 AND plex_server_uuid = $1 AND plex_rating_key = $2
                AND NOT resolved",
            &[&show.server_uuid, &show.rating_key, &show.sender],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A conflict to open (or whose candidates to refresh).
#[derive(Debug)]
pub struct NewConflict<'a> {
    pub show: PlexShowKey<'a>,
    pub title: &'a str,
    pub year: Option<i32>,
    pub conflict_type: &'a str,
    /// `[{tvshowId, title, tmdbId, matchScore, source}]`.
    pub potential_matches: &'a serde_json::Value,
}

/// Opens the show's conflict, or refreshes the candidates of the one already open; its id.
pub async fn upsert_open(
    client: &impl GenericClient,
    c: &NewConflict<'_>,
) -> Result<ConflictId, DbError> {
    let row = client
        .query_one(
            "INSERT INTO plex_conflicts
                (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                 conflict_type, potential_matches, sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (sender, plex_server_uuid, plex_rating_key) WHERE NOT resolved
             DO UPDATE SET potential_matches = EXCLUDED.potential_matches,
                           conflict_type = EXCLUDED.conflict_type,
                           updated_at = now()
             RETURNING id",
            &[
                &c.show.server_uuid,
                &c.show.rating_key,
                &c.show.guid,
                &c.title,
                &c.year,
                &c.conflict_type,
                c.potential_matches,
                &c.show.sender,
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Keeps an event for replay when the conflict is resolved (once per idempotency key), if the
/// conflict is still open; `false` when it was resolved meanwhile (nothing written).
///
/// The conflict's row is share-locked before the check, so a resolve (which locks it for
/// update) either committed first, and the caller finds the mapping it wrote, or waits for this
/// transaction and then finds the event among the ones it replays. Without the lock an event
/// attached as the resolve commits would wait on a resolved conflict forever.
pub async fn attach_pending_event(
    client: &impl GenericClient,
    conflict_id: ConflictId,
    idempotency_key: &str,
    message: &serde_json::Value,
) -> Result<bool, DbError> {
    let open = client
        .query_opt(
            "SELECT 1 FROM plex_conflicts WHERE id = $1 AND NOT resolved FOR SHARE",
            &[&conflict_id],
        )
        .await?;
    if open.is_none() {
        return Ok(false);
    }
    client
        .execute(
            "INSERT INTO plex_pending_events (conflict_id, idempotency_key, message)
             VALUES ($1, $2, $3)
             ON CONFLICT (conflict_id, idempotency_key) DO NOTHING",
            &[&conflict_id, &idempotency_key, message],
        )
        .await?;
    Ok(true)
}

/// Records that pending events went through the processor (called by the replay).
#[tracing::instrument(skip(pool))]
pub async fn mark_replayed(pool: &DbPool, ids: &[PendingEventId]) -> Result<u64, DbError> {
    let client = pool.get().await?;
    Ok(client
        .execute(
            "UPDATE plex_pending_events SET replayed_at = now() WHERE id = ANY($1) AND replayed_at IS NULL",
            &[&ids],
        )
        .await?)
}
