use plexsync::{db, testing};
use secrecy::SecretString;
use tokio_postgres::error::SqlState;

use crate::sql::{assert_rejected, texts};

async fn count(client: &tokio_postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn apply_then_reapply_is_a_noop() {
    let (_, url) = testing::empty_db().await;
    let pool = db::pool(&SecretString::from(url)).unwrap();
    let first = db::migrate(&pool).await.unwrap();
    assert_eq!(
        first,
        vec![
            "V1__tracker_baseline",
            "V2__plex_integration",
            "V3__media_senders",
            "V4__plex_imports",
            "V5__webhook_received_on_logs",
            "V6__plex_plain_http_opt_in",
            "V7__fk_indexes_and_retention",
            "V8__drop_last_webhook_received_fn"
        ]
    );
    let second = db::migrate(&pool).await.unwrap();
    assert!(second.is_empty(), "re-applying applied {second:?}");
    let client = pool.get().await.unwrap();
    assert_eq!(
        count(&client, "SELECT count(*) FROM refinery_schema_history").await,
        8
    );
    for table in [
        "tvshows",
        "plex_config",
        "plex_show_mappings",
        "plex_webhook_logs",
        "plex_conflicts",
        "plex_pending_events",
        "plex_processed_messages",
        "tmdb_id_cache",
        "media_senders",
        "plex_imports",
        "plex_import_shows",
        "rate_limit_buckets",
    ] {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
            .await
            .unwrap()
            .get(0);
        assert!(exists, "{table} missing");
    }
}

#[tokio::test]
async fn concurrent_migrations_apply_once() {
    let (_, url) = testing::empty_db().await;
    let pool = db::pool(&SecretString::from(url)).unwrap();
    let (a, b) = tokio::join!(db::migrate(&pool), db::migrate(&pool));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 8, "{a:?} {b:?}");
}

#[tokio::test]
async fn the_sender_kind_is_part_of_a_shows_server_identity() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let insert = |sender: &'static str| {
        format!(
            "INSERT INTO plex_show_mappings (sender, plex_server_uuid, plex_rating_key, plex_guid,
                                             plex_title)
             VALUES ('{sender}', 'srv', '48200', 'unknown://48200', 'The Office')"
        )
    };
    client.execute(&insert("plex"), &[]).await.unwrap();
    client.execute(&insert("jellyfin"), &[]).await.unwrap();
    client.execute(&insert("emby"), &[]).await.unwrap();
    assert_rejected(
        client.execute(&insert("jellyfin"), &[]).await,
        SqlState::UNIQUE_VIOLATION,
    );
    assert!(client.execute(&insert("kodi"), &[]).await.is_err());
    // Rows written before senders existed are Plex's.
    client
        .execute(
            "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                                         conflict_type)
             VALUES ('srv', '48200', 'unknown://48200', 'The Office', 'no_match')",
            &[],
        )
        .await
        .unwrap();
    let sender: String = client
        .query_one("SELECT sender FROM plex_conflicts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sender, "plex");
    client
        .execute(
            "INSERT INTO plex_conflicts (sender, plex_server_uuid, plex_rating_key, plex_guid,
                                         plex_title, conflict_type)
             VALUES ('jellyfin', 'srv', '48200', 'unknown://48200', 'The Office', 'no_match')",
            &[],
        )
        .await
        .expect("one open conflict per show *per sender*");
}

#[tokio::test]
async fn all_timestamps_are_timestamptz() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let naive = count(
        &client,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'",
    )
    .await;
    assert_eq!(naive, 0);
}

async fn insert_show(client: &tokio_postgres::Client, tmdb_id: i32, title: &str) -> i32 {
    client
        .query_one(
            "INSERT INTO tvshows (tmdb_id, title) VALUES ($1, $2) RETURNING id",
            &[&tmdb_id, &title],
        )
        .await
        .unwrap()
        .get(0)
}

const OPEN_CONFLICT: &str = "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title, conflict_type) \
     VALUES ('srv', $1, 'plex://show/abc', 'The Office', 'no_match') RETURNING id";

#[tokio::test]
async fn only_one_open_conflict_per_show_but_many_resolved() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let first: i32 = client
        .query_one(OPEN_CONFLICT, &[&"48200"])
        .await
        .unwrap()
        .get(0);
    assert_rejected(
        client.query_one(OPEN_CONFLICT, &[&"48200"]).await,
        SqlState::UNIQUE_VIOLATION,
    );
    // Another show may have its own open conflict.
    client.query_one(OPEN_CONFLICT, &[&"48300"]).await.unwrap();

    // Resolve the first; a new open conflict for the same show is then allowed, and again.
    for _ in 0..2 {
        client
            .execute(
                "UPDATE plex_conflicts SET resolved = true, resolved_at = now(), resolution_action = 'ignored' \
                 WHERE plex_rating_key = '48200' AND NOT resolved",
                &[],
            )
            .await
            .unwrap();
        client.query_one(OPEN_CONFLICT, &[&"48200"]).await.unwrap();
    }
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM plex_conflicts WHERE plex_rating_key = '48200'"
        )
        .await,
        3
    );
    assert!(first > 0);

    // resolved without a resolution time is rejected.
    assert_rejected(
        client
            .execute(
                "UPDATE plex_conflicts SET resolved = true WHERE plex_rating_key = '48300'",
                &[],
            )
            .await,
        SqlState::CHECK_VIOLATION,
    );
}

#[tokio::test]
async fn mapping_survives_show_deletion_with_sync_disabled() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let show = insert_show(&client, 2316, "The Office").await;
    let mapping: i32 = client
        .query_one(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title, tmdb_id, tvshow_id, match_confidence, match_method) \
             VALUES ('srv', '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', 2316, $1, 1.0, 'tmdb_id') RETURNING id",
            &[&show],
        )
        .await
        .unwrap()
        .get(0);
    let logged = client
        .execute(
            "INSERT INTO plex_webhook_logs (event_type, payload, status, tvshow_id) VALUES ('media.scrobble', '{}', 'success', $1)",
            &[&show],
        )
        .await
        .unwrap();
    assert_eq!(logged, 1);

    client
        .execute("DELETE FROM tvshows WHERE id = $1", &[&show])
        .await
        .unwrap();

    let row = client
        .query_one(
            "SELECT tvshow_id, sync_enabled, tmdb_id FROM plex_show_mappings WHERE id = $1",
            &[&mapping],
        )
        .await
        .expect("mapping row kept after its show was deleted");
    assert_eq!(row.get::<_, Option<i32>>(0), None);
    assert!(
        !row.get::<_, bool>(1),
        "sync must be disabled so auto-add does not bring the show back"
    );
    assert_eq!(row.get::<_, Option<i32>>(2), Some(2316));
    assert_eq!(
        count(
            &client,
            "SELECT count(*) FROM plex_webhook_logs WHERE tvshow_id IS NULL"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn mapping_is_unique_per_server_and_show() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let insert = "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title) VALUES ($1, $2, $3, 'X')";
    client
        .execute(insert, &[&"srv-a", &"1", &"plex://show/1"])
        .await
        .unwrap();
    // Same rating key on another server is another show.
    client
        .execute(insert, &[&"srv-b", &"1", &"plex://show/1"])
        .await
        .unwrap();
    assert_rejected(
        client
            .execute(insert, &[&"srv-a", &"1", &"plex://show/2"])
            .await,
        SqlState::UNIQUE_VIOLATION,
    );
    assert_rejected(
        client
            .execute(insert, &[&"srv-a", &"2", &"plex://show/1"])
            .await,
        SqlState::UNIQUE_VIOLATION,
    );
}

#[tokio::test]
async fn trigram_index_serves_fuzzy_title_search() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    insert_show(&client, 2316, "The Office").await;
    insert_show(&client, 1418, "The Big Bang Theory").await;
    let rows = client
        .query(
            "SELECT title, similarity(title, $1) AS sim FROM tvshows WHERE title % $1 ORDER BY sim DESC",
            &[&"The Office (US)"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "The Office");
    let plan: Vec<String> = texts(
        &client,
        "EXPLAIN (COSTS OFF) SELECT id FROM tvshows WHERE title % 'office'",
    )
    .await;
    // With two rows the planner may still choose a seq scan; force the index to prove it exists.
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let forced: Vec<String> = texts(
        &client,
        "EXPLAIN (COSTS OFF) SELECT id FROM tvshows WHERE title % 'office'",
    )
    .await;
    assert!(
        forced.iter().any(|l| l.contains("idx_tvshows_title_trgm")),
        "plan without index: {plan:?} / forced: {forced:?}"
    );
}

#[tokio::test]
async fn unreachable_database_is_a_transient_error() {
    let pool = db::pool(&SecretString::from(
        "postgres://nobody:nothing@127.0.0.1:1/none".to_string(),
    ))
    .unwrap();
    let err = db::migrate(&pool).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    let api: plexsync::api::ApiError = err.into();
    assert_eq!(api.status().as_u16(), 503);
}

#[tokio::test]
async fn client_side_type_error_is_not_transient() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    // i64 parameter against an int4 column: a bug in our code, retrying cannot help.
    let err = client
        .query("SELECT id FROM tvshows WHERE id = $1", &[&1_i64])
        .await
        .map_err(plexsync::db::DbError::from)
        .unwrap_err();
    assert!(!err.is_transient(), "{err}");
    let api: plexsync::api::ApiError = err.into();
    assert_eq!(api.status().as_u16(), 500);
}

#[tokio::test]
async fn newer_schema_than_the_code_is_tolerated_but_changed_migrations_abort() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    // What a rollback sees: the database ran a migration this build does not have.
    client
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             SELECT 99, 'from_a_newer_release', applied_on, '1' FROM refinery_schema_history WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    assert!(db::migrate(&test_db.pool).await.unwrap().is_empty());

    // A migration edited after it was applied is a mistake worth stopping a deploy for.
    client
        .execute(
            "UPDATE refinery_schema_history SET checksum = '12345' WHERE version = 2",
            &[],
        )
        .await
        .unwrap();
    let err = db::migrate(&test_db.pool).await.unwrap_err();
    assert!(matches!(err, db::DbError::Migration(_)), "{err}");
}

/// V1 and V2 had their comments reworded after release: a database that recorded their earlier
/// checksums takes the new ones instead of aborting the deploy.
#[tokio::test]
async fn a_database_migrated_before_the_comment_rewording_still_migrates() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let checksums =
        "SELECT checksum FROM refinery_schema_history WHERE version IN (1, 2) ORDER BY version";
    let current: Vec<String> = texts(&client, checksums).await;
    // What a database migrated by an earlier release holds.
    client
        .execute(
            "UPDATE refinery_schema_history SET checksum = CASE version
                 WHEN 1 THEN '16137018667484369832' ELSE '13415879746427247875' END
              WHERE version IN (1, 2)",
            &[],
        )
        .await
        .unwrap();
    assert!(db::migrate(&test_db.pool).await.unwrap().is_empty());
    let adopted: Vec<String> = texts(&client, checksums).await;
    assert_eq!(adopted, current);
    assert_ne!(current[0], "16137018667484369832", "V1's text did change");
}

/// Every foreign key has an index led by its column: `ON DELETE SET NULL` / `CASCADE` from a
/// deleted tracker show (or conflict) would otherwise scan the whole referencing table under
/// lock, once per deleted row.
#[tokio::test]
async fn every_foreign_key_column_is_indexed() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    let unindexed: Vec<String> = texts(
        &client,
        "SELECT c.conrelid::regclass::text || '.' || a.attname
               FROM pg_constraint c
               JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
              WHERE c.contype = 'f'
                AND c.connamespace = 'public'::regnamespace
                AND NOT EXISTS (
                    SELECT 1 FROM pg_index i
                     WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1])
              ORDER BY 1",
    )
    .await;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}
