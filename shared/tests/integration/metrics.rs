use plexsync::{metrics, testing};

#[tokio::test]
async fn open_conflicts_counts_only_unresolved_ones() {
    let test_db = testing::fresh_db().await;
    let client = test_db.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO plex_conflicts (plex_rating_key, plex_guid, plex_title, conflict_type, resolved, resolved_at, resolution_action)
             VALUES ('1001', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', 'multiple_matches', false, NULL, NULL),
                    ('1002', 'plex://show/5d9c0874ffd9ef001e99607a', 'Doctor Who', 'ambiguous', false, NULL, NULL),
                    ('1003', 'plex://show/5d9c08a4e9d5a1001f4e7c61', 'Ghosts', 'no_match', true, now(), 'ignored')",
        )
        .await
        .unwrap();
    assert_eq!(
        metrics::report_open_conflicts(&test_db.pool).await.unwrap(),
        2
    );
}
