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
