//! `tvshows`: the tracker's shows, as the processor's title matching reads them.

use deadpool_postgres::GenericClient;

use crate::db::DbError;

/// A tracker show whose title is similar to the Plex title.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleMatch {
    pub id: i32,
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
