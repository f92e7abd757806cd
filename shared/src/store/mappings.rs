//! `plex_show_mappings`: which tracker show a Plex show syncs into.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use tokio_postgres::{types::ToSql, Row};

use crate::{
    db::{DbError, DbPool},
    ids::{ConflictId, MappingId, ShowId},
    paging::{Cursor, Page, PageRequest},
    store::{shows, DecisionError},
};

/// A mapping as the API shows it, with the tracker show's title and any open conflict.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mapping {
    /// `None` for a Plex show that is only in an open conflict so far (the processor creates
    /// the mapping once the conflict is resolved); listed by `?conflicts=true` only.
    pub id: Option<MappingId>,
    /// The media server kind the show is on (`plex`, `jellyfin`, `emby`).
    pub sender: String,
    pub plex_server_uuid: String,
    pub plex_rating_key: String,
    pub plex_guid: String,
    pub plex_title: String,
    pub plex_year: Option<i32>,
    pub tmdb_id: Option<i32>,
    pub tvdb_id: Option<i32>,
    pub imdb_id: Option<String>,
    pub tvshow_id: Option<ShowId>,
    pub tvshow_title: Option<String>,
    pub match_confidence: Option<f64>,
    pub match_method: Option<String>,
    pub manually_confirmed: bool,
    pub sync_enabled: bool,
    /// The show's open conflict, if any.
    pub conflict_id: Option<ConflictId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const SELECT: &str =
    "SELECT m.id, m.plex_server_uuid, m.plex_rating_key, m.plex_guid, m.plex_title,
        m.plex_year, m.tmdb_id, m.tvdb_id, m.imdb_id, m.tvshow_id, t.title,
        m.match_confidence::float8, m.match_method, m.manually_confirmed, m.sync_enabled,
        (SELECT c.id FROM plex_conflicts c
          WHERE NOT c.resolved AND c.sender = m.sender
            AND c.plex_server_uuid = m.plex_server_uuid
            AND c.plex_rating_key = m.plex_rating_key) AS conflict_id,
        m.created_at, m.updated_at, m.sender
   FROM plex_show_mappings m
   LEFT JOIN tvshows t ON t.id = m.tvshow_id";

fn from_row(r: &Row) -> Mapping {
    Mapping {
        id: r.get(0),
        plex_server_uuid: r.get(1),
        plex_rating_key: r.get(2),
        plex_guid: r.get(3),
        plex_title: r.get(4),
        plex_year: r.get(5),
        tmdb_id: r.get(6),
        tvdb_id: r.get(7),
        imdb_id: r.get(8),
        tvshow_id: r.get(9),
        tvshow_title: r.get(10),
        match_confidence: r.get(11),
        match_method: r.get(12),
        manually_confirmed: r.get(13),
        sync_enabled: r.get(14),
        conflict_id: r.get(15),
        created_at: r.get(16),
        updated_at: r.get(17),
        sender: r.get(18),
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappingFilter {
    /// Only Plex shows not mapped to a tracker show.
    pub unmapped: bool,
    /// Only Plex shows with an open conflict, including those that have no mapping row yet
    /// (a show new to the processor gets its mapping when the conflict is resolved).
    pub conflicts: bool,
}

/// In id order; with `filter.conflicts`, every Plex show with an open conflict, in conflict id
/// order (the cursor is then the conflict id).
#[tracing::instrument(skip(pool))]
pub async fn list(
    pool: &DbPool,
    filter: MappingFilter,
    page: &PageRequest,
) -> Result<Page<Mapping>, DbError> {
    if filter.conflicts {
        return list_in_conflict(pool, filter.unmapped, page).await;
    }
    let mut sql = format!("{SELECT} WHERE true");
    if filter.unmapped {
        sql.push_str(" AND m.tvshow_id IS NULL");
    }
    let after = page.after.as_ref().map(|c| c.id).unwrap_or(0);
    let limit = page.fetch_limit();
    let params: [&(dyn ToSql + Sync); 2] = [&after, &limit];
    // The cursor is any i64 (it is the client's); the cast compares it with the int4 ids.
    sql.push_str(" AND m.id > $1::int8 ORDER BY m.id LIMIT $2");
    let client = pool.get().await?;
    let rows = client.query(&sql, &params).await?;
    let items = rows.iter().map(from_row).collect();
    Ok(page.page(items, |m: &Mapping| Cursor {
        created_at: None,
        id: m.id.map_or(0, i64::from),
    }))
}

/// The Plex shows with an open conflict: the conflict, with the show's mapping when it has one.
async fn list_in_conflict(
    pool: &DbPool,
    unmapped: bool,
    page: &PageRequest,
) -> Result<Page<Mapping>, DbError> {
    let after = page.after.as_ref().map(|c| c.id).unwrap_or(0);
    let limit = page.fetch_limit();
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT m.id, c.plex_server_uuid, c.plex_rating_key, COALESCE(m.plex_guid, c.plex_guid),
                    COALESCE(m.plex_title, c.plex_title), COALESCE(m.plex_year, c.plex_year),
                    m.tmdb_id, m.tvdb_id, m.imdb_id, m.tvshow_id, t.title,
                    m.match_confidence::float8, m.match_method,
                    COALESCE(m.manually_confirmed, false), COALESCE(m.sync_enabled, true),
                    c.id, COALESCE(m.created_at, c.created_at), COALESCE(m.updated_at, c.updated_at),
                    c.sender
               FROM plex_conflicts c
               LEFT JOIN plex_show_mappings m
                      ON m.sender = c.sender AND m.plex_server_uuid = c.plex_server_uuid
                     AND m.plex_rating_key = c.plex_rating_key
               LEFT JOIN tvshows t ON t.id = m.tvshow_id
              WHERE NOT c.resolved AND (NOT $1 OR m.tvshow_id IS NULL) AND c.id > $2::int8
              ORDER BY c.id
              LIMIT $3",
            &[&unmapped, &after, &limit],
        )
        .await?;
    let items = rows.iter().map(from_row).collect();
    Ok(page.page(items, |m: &Mapping| Cursor {
        created_at: None,
        id: m.conflict_id.map_or(0, i64::from),
    }))
}

#[tracing::instrument(skip(pool))]
pub async fn get(pool: &DbPool, id: MappingId) -> Result<Option<Mapping>, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_opt(&format!("{SELECT} WHERE m.id = $1"), &[&id])
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// The user's word: map to `tvshow_id` with full confidence, and sync again.
#[tracing::instrument(skip(pool))]
pub async fn confirm(
    pool: &DbPool,
    id: MappingId,
    tvshow_id: ShowId,
) -> Result<Mapping, DecisionError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let tx = client.transaction().await?;
    if tx
        .query_opt(
            "SELECT 1 FROM plex_show_mappings WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?
        .is_none()
    {
        return Err(DecisionError::MappingNotFound(id));
    }
    let Some(show_tmdb) = shows::tmdb_id_of(&tx, tvshow_id).await? else {
        return Err(DecisionError::UnknownShow(tvshow_id));
    };
    set_tvshow(&tx, id, tvshow_id, show_tmdb, "manual").await?;
    tx.commit().await?;
    drop(client);
    get(pool, id)
        .await?
        .ok_or(DecisionError::MappingNotFound(id))
}

/// Maps to `tvshow_id` as the user decided (`method` says how): full confidence, confirmed,
/// syncing; the show's TMDB id is kept when it has one.
pub async fn set_tvshow(
    client: &impl GenericClient,
    id: MappingId,
    tvshow_id: ShowId,
    tmdb_id: Option<i32>,
    method: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE plex_show_mappings
                SET tvshow_id = $2, tmdb_id = COALESCE($3, tmdb_id), manually_confirmed = true,
                    match_method = $4, match_confidence = 1.0, sync_enabled = true,
                    updated_at = now()
              WHERE id = $1",
            &[&id, &tvshow_id, &tmdb_id, &method],
        )
        .await?;
    Ok(())
}

/// Turns sync off for one show (the mapping stays). `None` when the id is unknown.
#[tracing::instrument(skip(pool))]
pub async fn disable(pool: &DbPool, id: MappingId) -> Result<Option<Mapping>, DbError> {
    let client = pool.get().await?;
    let found = turn_sync_off(&client, id).await?;
    drop(client);
    if !found {
        return Ok(None);
    }
    get(pool, id).await
}

/// `sync_enabled = false`; `false` when the id is unknown.
pub async fn turn_sync_off(client: &impl GenericClient, id: MappingId) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE plex_show_mappings SET sync_enabled = false, updated_at = now() WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(n > 0)
}

/// What a bulk sync switch did to one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncSwitch {
    Updated,
    /// Already in the wanted state: not written.
    Unchanged,
    NotFound,
    /// Sync cannot be turned on for a Plex show that is not mapped to a tracker show.
    NotMapped,
}

/// Turns sync on or off for every mapping in `ids` in one statement; one outcome per distinct
/// id, in the order given. A mapping without a tracker show is never turned on.
#[tracing::instrument(skip(pool, ids), fields(ids = ids.len()))]
pub async fn set_sync_enabled(
    pool: &DbPool,
    ids: &[i64],
    enabled: bool,
) -> Result<Vec<(i64, SyncSwitch)>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "WITH wanted AS (
                 SELECT id, min(ord) AS ord FROM unnest($1::int8[]) WITH ORDINALITY AS w(id, ord)
                  GROUP BY id),
             updated AS (
                 UPDATE plex_show_mappings m SET sync_enabled = $2, updated_at = now()
                  WHERE m.id IN (SELECT id FROM wanted) AND m.sync_enabled <> $2
                    AND (NOT $2 OR m.tvshow_id IS NOT NULL)
                 RETURNING m.id)
             SELECT w.id, m.id IS NOT NULL, m.tvshow_id IS NOT NULL, u.id IS NOT NULL
               FROM wanted w
               LEFT JOIN plex_show_mappings m ON m.id = w.id
               LEFT JOIN updated u ON u.id = w.id
              ORDER BY w.ord",
            &[&ids, &enabled],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let outcome = match (r.get(1), r.get(2), r.get(3)) {
                (false, _, _) => SyncSwitch::NotFound,
                (true, _, true) => SyncSwitch::Updated,
                (true, false, false) if enabled => SyncSwitch::NotMapped,
                (true, _, false) => SyncSwitch::Unchanged,
            };
            (r.get(0), outcome)
        })
        .collect())
}

/// What identifies a show on its media server: the sender kind and server, the rating key (item
/// id), and the guid, which survives the show being removed and re-added to the library (it then
/// gets a new rating key).
#[derive(Debug, Clone, Copy)]
pub struct PlexShowKey<'a> {
    /// `plex`, `jellyfin` or `emby`.
    pub sender: &'a str,
    pub server_uuid: &'a str,
    pub rating_key: &'a str,
    pub guid: &'a str,
}

/// The mapping the processor and the history sync work from.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingState {
    pub id: MappingId,
    pub sender: String,
    pub plex_rating_key: String,
    pub tvshow_id: Option<ShowId>,
    pub sync_enabled: bool,
}

fn state_from_row(r: &Row) -> MappingState {
    MappingState {
        id: r.get(0),
        plex_rating_key: r.get(1),
        tvshow_id: r.get(2),
        sync_enabled: r.get(3),
        sender: r.get(4),
    }
}

/// Whether [`find_for_show`] locks the row for the rest of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    No,
    ForUpdate,
}

macro_rules! find_for_show_sql {
    () => {
        "SELECT id, plex_rating_key, tvshow_id, sync_enabled, sender FROM plex_show_mappings
          WHERE sender = $4 AND plex_server_uuid = $1
            AND (plex_rating_key = $2 OR plex_guid = $3)
          ORDER BY (plex_rating_key = $2) DESC
          LIMIT 1"
    };
}

/// The show's mapping: by rating key, else by guid (re-added to the library).
pub async fn find_for_show(
    client: &impl GenericClient,
    show: PlexShowKey<'_>,
    lock: Lock,
) -> Result<Option<MappingState>, DbError> {
    let sql = match lock {
        Lock::No => find_for_show_sql!(),
        Lock::ForUpdate => concat!(find_for_show_sql!(), " FOR UPDATE"),
    };
    let row = client
        .query_opt(
            &client.prepare_cached(sql).await?,
            &[
                &show.server_uuid,
                &show.rating_key,
                &show.guid,
                &show.sender,
            ],
        )
        .await?;
    Ok(row.as_ref().map(state_from_row))
}

/// Mapping `id` as the history sync needs it.
pub async fn find_state(
    client: &impl GenericClient,
    id: MappingId,
) -> Result<Option<MappingState>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, plex_rating_key, tvshow_id, sync_enabled, sender FROM plex_show_mappings
              WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(row.as_ref().map(state_from_row))
}

/// Points a mapping found by guid at the show's new rating key.
pub async fn move_to_rating_key(
    client: &impl GenericClient,
    id: MappingId,
    rating_key: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE plex_show_mappings SET plex_rating_key = $2 WHERE id = $1",
            &[&id, &rating_key],
        )
        .await?;
    Ok(())
}

/// A mapping to create.
#[derive(Debug)]
pub struct NewMapping<'a> {
    pub show: PlexShowKey<'a>,
    pub title: &'a str,
    pub year: Option<i32>,
    pub tvdb_id: Option<i32>,
    pub imdb_id: Option<&'a str>,
    pub tmdb_id: Option<i32>,
    pub tvshow_id: Option<ShowId>,
    /// Stored rounded to two decimals.
    pub confidence: Option<f64>,
    pub method: &'a str,
    pub manually_confirmed: bool,
    pub sync_enabled: bool,
}

/// Creates the mapping. `None`: one for this show exists already (a concurrent message or
/// resolution created it first).
pub async fn insert(
    client: &impl GenericClient,
    m: &NewMapping<'_>,
) -> Result<Option<MappingId>, DbError> {
    let row = client
        .query_opt(
            "INSERT INTO plex_show_mappings
                (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                 tvdb_id, imdb_id, tmdb_id, tvshow_id, match_confidence, match_method,
                 manually_confirmed, sync_enabled, sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, round($10::float8::numeric, 2), $11,
                     $12, $13, $14)
             ON CONFLICT DO NOTHING
             RETURNING id",
            &[
                &m.show.server_uuid,
                &m.show.rating_key,
                &m.show.guid,
                &m.title,
                &m.year,
                &m.tvdb_id,
                &m.imdb_id,
                &m.tmdb_id,
                &m.tvshow_id,
                &m.confidence,
                &m.method,
                &m.manually_confirmed,
                &m.sync_enabled,
                &m.show.sender,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Serialises decisions about one Plex show (`show_key`) for the rest of the transaction:
/// concurrent messages for a new show then see the first one's mapping or conflict.
pub async fn lock_show_identity(
    client: &impl GenericClient,
    show_key: &str,
) -> Result<(), DbError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
            &[&format!("plex-show:{show_key}")],
        )
        .await?;
    Ok(())
}
