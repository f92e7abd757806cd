//! The fuzzy title query runs on the trigram GIN index (`idx_tvshows_title_trgm`), not a scan of
//! `tvshows`: `%` with pg_trgm's threshold set for the query's transaction. Shown with `EXPLAIN`
//! on a tracker of 50,000 shows.

use plexsync::{matching::FUZZY_MIN_SIMILARITY, store::shows, testing};
use serde_json::Value;

/// 50,000 shows with two-word titles and a number ("Harbor Signal 1234"), plus The Office (US
/// and UK) and a near miss.
async fn big_tracker(db: &testing::TestDb) {
    let client = db.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO tvshows (title, show_start_date)
             SELECT (ARRAY['Night','City','Blue','River','Dark','Crown','Harbor','Signal','Garden','Winter'])[1 + i % 10]
                    || ' ' ||
                    (ARRAY['Falls','Street','Line','Hours','Road','Code','Point','Season','Days','Files'])[1 + (i / 10) % 10]
                    || ' ' || i,
                    date '1990-01-01' + (i % 12000)
               FROM generate_series(1, 50000) AS i;
             INSERT INTO tvshows (tmdb_id, title, show_start_date) VALUES
                 (2316, 'The Office', '2005-03-24'),
                 (2996, 'The Office', '2001-07-09'),
                 (NULL, 'The Offer', '2022-04-28');
             ANALYZE tvshows;",
        )
        .await
        .unwrap();
}

/// Every node of a JSON plan, depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut out = vec![plan];
    for child in plan["Plans"].as_array().into_iter().flatten() {
        out.extend(nodes(child));
    }
    out
}

#[tokio::test]
async fn the_fuzzy_title_query_uses_the_trigram_index_on_50000_shows() {
    let db = testing::fresh_db().await;
    big_tracker(&db).await;
    let mut client = db.pool.get().await.unwrap();

    let tx = client.transaction().await.unwrap();
    shows::set_similarity_threshold(&tx, FUZZY_MIN_SIMILARITY)
        .await
        .unwrap();
    let explained: Value = tx
        .query_one(
            &format!("EXPLAIN (FORMAT JSON) {}", shows::SIMILAR_TITLES_SQL),
            &[
                &"The Office",
                &(FUZZY_MIN_SIMILARITY as f32),
                &false,
                &None::<i32>,
            ],
        )
        .await
        .unwrap()
        .get(0);
    tx.rollback().await.unwrap();
    let plan = &explained[0]["Plan"];
    let all = nodes(plan);
    assert!(
        all.iter()
            .any(|n| n["Index Name"] == "idx_tvshows_title_trgm"),
        "the GIN index is used: {plan:#}"
    );
    assert!(
        !all.iter().any(|n| n["Node Type"] == "Seq Scan"),
        "no sequential scan of tvshows: {plan:#}"
    );

    // And the query still finds what it should, best first.
    let found = shows::similar_titles(&mut client, "The Office", FUZZY_MIN_SIMILARITY, false, None)
        .await
        .unwrap();
    let titles: Vec<&str> = found.iter().map(|m| m.title.as_str()).collect();
    assert_eq!(titles[..2], ["The Office", "The Office"], "{titles:?}");
    assert!(found.iter().all(|m| m.similarity >= FUZZY_MIN_SIMILARITY));
    let with_year = shows::similar_titles(
        &mut client,
        "The Office",
        FUZZY_MIN_SIMILARITY,
        false,
        Some(2001),
    )
    .await
    .unwrap();
    assert_eq!(with_year.first().and_then(|m| m.tmdb_id), Some(2996));
}

/// The threshold is the transaction's own: a pooled connection does not keep it.
#[tokio::test]
async fn the_threshold_does_not_leak_to_the_connection() {
    let db = testing::fresh_db().await;
    let mut client = db.pool.get().await.unwrap();
    shows::similar_titles(&mut client, "The Office", 0.8, false, None)
        .await
        .unwrap();
    let threshold: String = client
        .query_one("SHOW pg_trgm.similarity_threshold", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(threshold, "0.3", "pg_trgm's default, untouched");
}
