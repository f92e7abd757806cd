//! `tvshows`: the tracker's shows. The processor finds them by TMDB id or by title, adds them
//! from TMDB, and edits their `seasons` JSON when an episode is watched.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use crate::{db::DbError, ids::ShowId};

/// The show with this TMDB id: its id and title.
pub async fn find_by_tmdb_id(
    client: &impl GenericClient,
    tmdb_id: i32,
) -> Result<Option<(ShowId, String)>, DbError> {
    let row = client
        .query_opt(
            "SELECT id, title FROM tvshows WHERE tmdb_id = $1",
            &[&tmdb_id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Whether show `id` exists, and its TMDB id.
pub async fn tmdb_id_of(
    client: &impl GenericClient,
    id: ShowId,
) -> Result<Option<Option<i32>>, DbError> {
    let row = client
        .query_opt("SELECT tmdb_id FROM tvshows WHERE id = $1", &[&id])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// A tracker show whose title is similar to the Plex title.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleMatch {
    pub id: ShowId,
    pub title: String,
    pub tmdb_id: Option<i32>,
    /// pg_trgm similarity, 0 to 1.
    pub similarity: f64,
}

/// The fuzzy title query. `title % $1` is what lets Postgres use the trigram GIN index
/// (`idx_tvshows_title_trgm`) instead of reading every show; it compares with
/// `pg_trgm.similarity_threshold`, which [`similar_titles`] sets to `$2` for its transaction
/// ([`set_similarity_threshold`]). The explicit `similarity >= $2` keeps the result exact whatever
/// the threshold. Parameters: title, minimum similarity (real), only shows without a TMDB id,
/// the show's year.
pub const SIMILAR_TITLES_SQL: &str =
    "SELECT id, title, tmdb_id, similarity(title, $1)::float8 AS sim
   FROM tvshows
  WHERE title % $1
    AND similarity(title, $1) >= $2
    AND (NOT $3 OR tmdb_id IS NULL)
    AND ($4::int IS NULL OR show_start_date IS NULL
         OR abs(EXTRACT(YEAR FROM show_start_date)::int - $4) <= 1)
  ORDER BY sim DESC, id
  LIMIT 5";

/// Sets pg_trgm's `%` threshold until the end of the current transaction (a pooled connection
/// keeps nothing).
pub async fn set_similarity_threshold(
    client: &impl GenericClient,
    threshold: f64,
) -> Result<(), DbError> {
    client
        .execute(
            "SELECT set_config('pg_trgm.similarity_threshold', $1, true)",
            &[&threshold.to_string()],
        )
        .await?;
    Ok(())
}

/// Up to five shows whose title has pg_trgm similarity `>= min_similarity` with `title`, best
/// first, found through the trigram index ([`SIMILAR_TITLES_SQL`]). With `only_without_tmdb_id`
/// (the Plex show's TMDB id is known, and a show holding a TMDB id is another show), shows with
/// one are left out; with `year`, so are shows that started more than a year apart. Runs in a
/// transaction of its own (a savepoint inside one) that holds the threshold.
pub async fn similar_titles(
    client: &mut impl GenericClient,
    title: &str,
    min_similarity: f64,
    only_without_tmdb_id: bool,
    year: Option<i32>,
) -> Result<Vec<TitleMatch>, DbError> {
    let tx = client.transaction().await?;
    set_similarity_threshold(&tx, min_similarity).await?;
    let rows = tx
        .query(
            SIMILAR_TITLES_SQL,
            &[
                &title,
                &(min_similarity as f32),
                &only_without_tmdb_id,
                &year,
            ],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| TitleMatch {
            id: r.get(0),
            title: r.get(1),
            tmdb_id: r.get(2),
            similarity: r.get(3),
        })
        .collect())
}

/// pg_trgm similarity of `title` with each of `others`, in order (the measure of
/// [`similar_titles`]).
pub async fn similarities(
    client: &impl GenericClient,
    title: &str,
    others: &[String],
) -> Result<Vec<f64>, DbError> {
    let rows = client
        .query(
            "SELECT similarity($1, t)::float8 FROM unnest($2::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            &[&title, &others],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The show's seasons JSON and TMDB id, locking its row for the rest of the transaction (the
/// lock serialises every change to the seasons: concurrent scrobbles of two episodes would
/// otherwise overwrite each other's edit). `None`: the show does not exist.
pub async fn lock_seasons(
    client: &impl GenericClient,
    id: ShowId,
) -> Result<Option<(Value, Option<i32>)>, DbError> {
    let row = client
        .query_opt(
            &client
                .prepare_cached("SELECT seasons, tmdb_id FROM tvshows WHERE id = $1 FOR UPDATE")
                .await?,
            &[&id],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}

/// Where an episode sits in a show's `seasons` array, as [`lock_episode`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpisodeSpot {
    /// Index of its season in `seasons`, and of the episode in that season's `episodes`.
    pub season_index: i32,
    pub episode_index: i32,
    pub watched: bool,
    pub date_watched: Option<String>,
}

/// A show row locked by [`lock_episode`], with what marking one episode needs: no more of its
/// `seasons` than the one episode leaves the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedEpisode {
    pub tmdb_id: Option<i32>,
    /// `None`: the stored seasons do not have the episode.
    pub spot: Option<EpisodeSpot>,
    /// Episodes watched and in total over every season, as stored now.
    pub watched_count: i32,
    pub total_count: i32,
    /// `false`: the idempotency key was recorded already (by this or a concurrent transaction
    /// that committed first), so the message was applied before. `true` without a key.
    pub claimed: bool,
}

/// Locks show `id` (for the rest of the transaction), finds episode `season`/`episode` in its
/// seasons and counts them, and records the idempotency key, in one statement. `None`: the
/// show does not exist (and no key was recorded).
///
/// The row lock serialises every change to the seasons. The episode is found in the row
/// version the lock returns: the lock is taken alone (CTE `locked`), because when it waits for
/// a concurrent mark, Postgres re-reads the locked row but not what was joined to it, so a
/// search joined in the same `SELECT ... FOR UPDATE` would see the seasons as they were before
/// that mark. The key is claimed with `ON CONFLICT DO NOTHING`, which sees a key committed
/// while this statement waited for the lock (a plain `SELECT` of it would not: its snapshot
/// predates the wait). The caller decides by `claimed` and `spot`, and must
/// [`super::processed::release`] a claimed key when the episode is missing.
pub async fn lock_episode(
    client: &impl GenericClient,
    id: ShowId,
    season: i64,
    episode: i64,
    idempotency_key: Option<&str>,
    message_id: Option<&str>,
) -> Result<Option<LockedEpisode>, DbError> {
    let statement = client
        .prepare_cached(
            "WITH locked AS (
                 SELECT tmdb_id, seasons FROM tvshows WHERE id = $1 FOR UPDATE
             ), target AS (
                 SELECT t.tmdb_id, spot.season_index, spot.episode_index, spot.watched,
                        spot.date_watched, c.watched_count, c.total_count
                   FROM locked t
                   LEFT JOIN LATERAL (
                        SELECT (s.n - 1)::int AS season_index, (e.n - 1)::int AS episode_index,
                               coalesce(e.ep -> 'watched' = 'true'::jsonb, false) AS watched,
                               CASE WHEN jsonb_typeof(e.ep -> 'dateWatched') = 'string'
                                    THEN e.ep ->> 'dateWatched' END AS date_watched
                          FROM jsonb_array_elements(t.seasons) WITH ORDINALITY AS s(season, n)
                         CROSS JOIN LATERAL jsonb_array_elements(
                                 CASE WHEN jsonb_typeof(s.season -> 'episodes') = 'array'
                                      THEN s.season -> 'episodes' ELSE '[]' END)
                               WITH ORDINALITY AS e(ep, n)
                         WHERE s.season -> 'seasonNumber' = to_jsonb($2::int8)
                           AND e.ep -> 'episodeNumber' = to_jsonb($3::int8)
                         ORDER BY s.n, e.n
                         LIMIT 1) spot ON true
                  CROSS JOIN LATERAL (
                        SELECT (count(*) FILTER (WHERE e.ep -> 'watched' = 'true'::jsonb))::int
                                   AS watched_count,
                               count(*)::int AS total_count
                          FROM jsonb_array_elements(t.seasons) AS s(season)
                         CROSS JOIN LATERAL jsonb_array_elements(
                                 CASE WHEN jsonb_typeof(s.season -> 'episodes') = 'array'
                                      THEN s.season -> 'episodes' ELSE '[]' END) AS e(ep)) c
             ), claim AS (
                 INSERT INTO plex_processed_messages (idempotency_key, message_id)
                 SELECT $4::text, $5::text FROM target WHERE $4::text IS NOT NULL
                 ON CONFLICT (idempotency_key) DO NOTHING
                 RETURNING true
             )
             SELECT tmdb_id, season_index, episode_index, watched, date_watched,
                    watched_count, total_count,
                    $4::text IS NULL OR EXISTS (SELECT 1 FROM claim) AS claimed
               FROM target",
        )
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[&id, &season, &episode, &idempotency_key, &message_id],
        )
        .await?;
    Ok(row.map(|r| LockedEpisode {
        tmdb_id: r.get(0),
        spot: r.get::<_, Option<i32>>(1).map(|season_index| EpisodeSpot {
            season_index,
            episode_index: r.get(2),
            watched: r.get(3),
            date_watched: r.get(4),
        }),
        watched_count: r.get(5),
        total_count: r.get(6),
        claimed: r.get(7),
    }))
}

/// Marks the episode at `spot` watched on `date_watched` in place (`jsonb_set` of its two
/// fields: the rest of the seasons never travels), with the show's new counts, and notes the
/// Plex sync. The row must be locked by [`lock_episode`] in this transaction, so `spot` is
/// still where the episode is.
pub async fn mark_watched_at(
    client: &impl GenericClient,
    id: ShowId,
    spot: &EpisodeSpot,
    date_watched: &str,
    watched_episodes: i32,
    total_episodes: i32,
) -> Result<(), DbError> {
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE tvshows
                SET seasons = jsonb_set(
                        jsonb_set(seasons, ARRAY[$2::int::text, 'episodes', $3::int::text, 'watched'],
                                  'true'::jsonb),
                        ARRAY[$2::int::text, 'episodes', $3::int::text, 'dateWatched'],
                        to_jsonb($4::text)),
                    watched_episodes = $5, total_episodes = $6,
                    plex_synced = true, plex_last_sync = now(), updated_at = now()
              WHERE id = $1",
                )
                .await?,
            &[
                &id,
                &spot.season_index,
                &spot.episode_index,
                &date_watched,
                &watched_episodes,
                &total_episodes,
            ],
        )
        .await?;
    Ok(())
}

/// Stores edited seasons with their counts, and notes the Plex sync.
pub async fn save_seasons(
    client: &impl GenericClient,
    id: ShowId,
    seasons: &Value,
    watched_episodes: i32,
    total_episodes: i32,
) -> Result<(), DbError> {
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE tvshows
                SET seasons = $2, watched_episodes = $3, total_episodes = $4,
                    plex_synced = true, plex_last_sync = now(), updated_at = now()
              WHERE id = $1",
                )
                .await?,
            &[&id, seasons, &watched_episodes, &total_episodes],
        )
        .await?;
    Ok(())
}

/// Notes a Plex sync that changed nothing.
pub async fn note_synced(client: &impl GenericClient, id: ShowId) -> Result<(), DbError> {
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE tvshows SET plex_synced = true, plex_last_sync = now() WHERE id = $1",
                )
                .await?,
            &[&id],
        )
        .await?;
    Ok(())
}

/// A show to add from TMDB.
#[derive(Debug)]
pub struct NewShow<'a> {
    pub tmdb_id: i32,
    pub title: &'a str,
    pub start_date: Option<chrono::NaiveDate>,
    pub seasons: &'a Value,
    pub total_episodes: i32,
}

/// Inserts the show (status Watching, source plex). `None`: a show with this TMDB id exists
/// already (another message inserted it first).
pub async fn insert(
    client: &impl GenericClient,
    show: &NewShow<'_>,
) -> Result<Option<ShowId>, DbError> {
    let row = client
        .query_opt(
            "INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons,
                                  watched_episodes, total_episodes, source, plex_synced)
             VALUES ($1, $2, $3, 'Watching', $4, 0, $5, 'plex', true)
             ON CONFLICT (tmdb_id) DO NOTHING
             RETURNING id",
            &[
                &show.tmdb_id,
                &show.title,
                &show.start_date,
                show.seasons,
                &show.total_episodes,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
