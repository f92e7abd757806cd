//! Imports end to end: start → queue → processor → tracker, checked exactly; a re-run changes
//! nothing; an outage halfway resumes to the same end state; a conflict holds the show's
//! episodes until the user resolves it.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use plexsync::api::testing::{authed, json};
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, ResponseTemplate,
};

use crate::support::*;

/// The episodes Plex says were watched, as the tracker must hold them after the import.
fn expected_office() -> Vec<(i64, i64, String)> {
    vec![
        (1, 1, "2023-11-14T22:13:20.000Z".into()),
        (1, 2, "2023-11-15T22:13:20.000Z".into()),
        // Watched by hand in 2019: its date is kept.
        (1, 4, "2019-05-01T20:00:00.000Z".into()),
        // Season 2 was refreshed from TMDB to hold it.
        (2, 1, "2023-11-17T22:13:20.000Z".into()),
    ]
}

async fn check_first_import(h: &Harness) -> Value {
    let import = h.latest().await;
    assert_eq!(import["status"], "completed", "{import}");
    assert!(import["finishedAt"].is_string());
    assert_eq!(
        import["counts"],
        json!({"showsTotal": 4, "showsDone": 4, "mapped": 2, "autoAdded": 1, "conflicts": 1,
               "failed": 0, "episodesMarked": 7, "alreadyWatched": 1}),
        "{import}"
    );
    assert_eq!(watched(&h.seasons(h.office_show).await), expected_office());
    // The legacy-agent show, found through its TVDB id; its special S00E01 is in neither the
    // tracker nor TMDB, so it is reported, not invented.
    assert_eq!(
        watched(&h.seasons(h.got_show).await),
        vec![
            (1, 1, "2017-07-15T02:40:00.000Z".into()),
            (1, 2, "2017-07-16T02:40:00.000Z".into())
        ]
    );
    // The UK Office was added from TMDB with its two watched episodes.
    let tracker = h.tracker().await;
    let uk: Vec<_> = tracker.iter().filter(|t| t.0 == Some(2996)).collect();
    assert_eq!(uk.len(), 1);
    assert_eq!(
        watched(&uk[0].2),
        vec![
            (1, 1, "2020-09-13T12:26:40.000Z".into()),
            (1, 2, "2020-09-14T12:26:40.000Z".into())
        ]
    );
    assert_eq!(uk[0].3, 2);
    assert_eq!(tracker.len(), 3, "no other show was added");
    // One open conflict for the unmatched show, holding its two episodes.
    let conflicts = h
        .query(
            "SELECT c.plex_rating_key, count(p.id) FROM plex_conflicts c
               LEFT JOIN plex_pending_events p ON p.conflict_id = c.id
              WHERE NOT c.resolved GROUP BY c.plex_rating_key",
        )
        .await;
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].get::<_, String>(0), UNMATCHED);
    assert_eq!(conflicts[0].get::<_, i64>(1), 2);
    import
}

/// The activity log: exactly one summary row per show of each import, none per episode.
async fn log_rows(h: &Harness) -> Vec<(String, String, Option<String>)> {
    h.query(
        "SELECT plex_rating_key, status, action_taken FROM plex_webhook_logs
          ORDER BY id",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn an_import_marks_what_plex_watched_and_a_rerun_changes_nothing() {
    let h = Harness::new().await;
    assert_eq!(h.start(None).await.0, 202);
    let processor = h.processor(h.db.pool.clone());
    h.drain(&processor).await;
    check_first_import(&h).await;
    let mut rows = log_rows(&h).await;
    rows.sort();
    assert_eq!(
        rows,
        vec![
            (GOT.into(), "success".into(), Some("imported".into())),
            (OFFICE.into(), "success".into(), Some("imported".into())),
            (
                OFFICE_UK.into(),
                "success".into(),
                Some("auto_added_show_and_imported".into())
            ),
            (
                UNMATCHED.into(),
                "needs_resolution".into(),
                Some("needs_user_input".into())
            ),
        ]
    );
    let types = h
        .query("SELECT DISTINCT event_type FROM plex_webhook_logs")
        .await;
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].get::<_, String>(0), "import.show");

    let before = h.tracker().await;
    let requests_before = h.tmdb.received_requests().await.unwrap().len();
    let (status, body) = h.start(None).await;
    assert_eq!(status, 202, "{body}");
    h.drain(&processor).await;
    let rerun = h.latest().await;
    assert_eq!(rerun["status"], "completed");
    assert_ne!(rerun["id"], body["import"]["id"].as_i64().unwrap() - 1);
    assert_eq!(
        rerun["counts"],
        json!({"showsTotal": 4, "showsDone": 4, "mapped": 3, "autoAdded": 0, "conflicts": 1,
               "failed": 0, "episodesMarked": 0, "alreadyWatched": 8}),
        "{rerun}"
    );
    assert_eq!(h.tracker().await, before, "a re-run changes nothing");
    let pending = h.query("SELECT count(*) FROM plex_pending_events").await;
    assert_eq!(pending[0].get::<_, i64>(0), 2, "no episode pended twice");
    assert_eq!(log_rows(&h).await.len(), 8);
    // Mapped shows need no TMDB call the second time (GoT's missing special retries its season).
    let extra: Vec<String> = h.tmdb.received_requests().await.unwrap()[requests_before..]
        .iter()
        .map(|r| r.url.path().to_owned())
        .filter(|p| !p.starts_with("/3/tv/1399/season/0") && !p.starts_with("/3/search"))
        .collect();
    assert_eq!(extra, Vec::<String>::new());
}

#[tokio::test]
async fn an_outage_halfway_resumes_to_the_same_end_state() {
    let h = Harness::new().await;
    assert_eq!(h.start(None).await.0, 202);
    // The database is down for the first batch: every record is returned to the queue.
    let down = h.processor(dead_pool());
    let seen = h.process_batch(&down).await;
    assert!(seen > 0);
    assert_eq!(h.latest().await["counts"]["showsDone"], 0);
    // TMDB fails while The Office's season 2 is refreshed: the show is mapped by then, its
    // marks are not; the retry finishes it.
    Mock::given(method("GET"))
        .and(path("/3/tv/2316/season/2"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(3)
        .with_priority(1)
        .mount(&h.tmdb)
        .await;
    // A crash after the UK Office was added from TMDB and mapped, before its episodes were
    // marked: what the first delivery left behind. The retry must still count it as added.
    let c = h.db.pool.get().await.unwrap();
    let season: plexsync::tmdb::SeasonDetails =
        serde_json::from_value(plexsync::testing::fixtures::tmdb("/3/tv/2996/season/1")).unwrap();
    let uk: i32 = c
        .query_one(
            "INSERT INTO tvshows (tmdb_id, title, show_start_date, seasons, total_episodes, source)
             VALUES (2996, 'The Office', '2001-07-09', $1, 6, 'plex') RETURNING id",
            &[&json!([plexsync::episodes::season_from_tmdb(&season)])],
        )
        .await
        .unwrap()
        .get(0);
    c.execute(
        "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                plex_year, tmdb_id, tvshow_id, match_confidence, match_method, manually_confirmed)
         VALUES ($1, $2, 'plex://show/5d9c08544eefaa001f5d0001', 'The Office', 2001, 2996, $3,
                 1.0, 'auto_added:tmdb_id', true)",
        &[&plexsync::testing::fixtures::server_uuid(), &OFFICE_UK, &uk],
    )
    .await
    .unwrap();
    drop(c);
    h.drain(&h.processor(h.db.pool.clone())).await;
    check_first_import(&h).await;
    let refreshes = h
        .tmdb
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/3/tv/2316/season/2")
        .count();
    assert_eq!(refreshes, 4, "three failed attempts, then the retry's");
    let office_rows = h
        .query(&format!(
            "SELECT count(*) FROM plex_webhook_logs WHERE plex_rating_key = '{OFFICE}'"
        ))
        .await;
    assert_eq!(
        office_rows[0].get::<_, i64>(0),
        1,
        "one summary row, after the retry"
    );
}

#[tokio::test]
async fn a_show_sent_to_the_dlq_untried_is_imported_when_its_message_is_redriven() {
    let h = Harness::new().await;
    assert_eq!(h.start(None).await.0, 202);
    let mut records = Vec::new();
    for _ in 0..10 {
        records.extend(h.receive().await.into_iter().map(|(r, _)| r));
        if records.len() == 4 {
            break;
        }
    }
    assert_eq!(records.len(), 4, "one message per show");
    // Every message on its last receive, with no time left to start any (the answer's stop
    // is past): each show is recorded failed on its way to the dead-letter queue.
    let last = processor::Processor {
        max_receive_count: 1,
        timing: processor::Timing {
            answer: Duration::from_secs(20),
            ..processor::Timing::default()
        },
        ..h.processor(h.db.pool.clone())
    };
    let mut event = SqsEvent::default();
    event.records = records;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let response = processor::handle_batch(&last, event.clone(), deadline).await;
    assert_eq!(response.batch_item_failures.len(), 4);
    let import = h.latest().await;
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(import["counts"]["failed"], 4, "{import}");

    // The redrive delivers the same messages again: each show is tried, not taken as done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
    let response = processor::handle_batch(&h.processor(h.db.pool.clone()), event, deadline).await;
    assert!(response.batch_item_failures.is_empty());
    check_first_import(&h).await;
    let rows = log_rows(&h).await;
    let failed = rows.iter().filter(|r| r.1 == "failed").count();
    assert_eq!((rows.len(), failed), (8, 4), "{rows:?}");
}

#[tokio::test]
async fn a_conflict_holds_the_shows_episodes_until_it_is_resolved() {
    let h = Harness::new().await;
    assert_eq!(h.start(None).await.0, 202);
    h.drain(&h.processor(h.db.pool.clone())).await;
    let id: i32 = h
        .query("SELECT id FROM plex_conflicts WHERE NOT resolved")
        .await[0]
        .get(0);
    let resp = conflicts::handle(
        &h.conflicts,
        authed(
            "POST",
            &format!("/api/plex/conflicts/{id}/resolve"),
            Some(json!({"action": "select", "tvshowId": h.office_show})),
        ),
    )
    .await;
    let body = json(&resp);
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(body["replay"]["marked"], 2, "{body}");
    let mut expected = expected_office();
    expected.insert(3, (1, 5, "2022-04-15T05:20:00.000Z".into()));
    expected.insert(4, (1, 6, "2022-04-16T05:20:00.000Z".into()));
    assert_eq!(watched(&h.seasons(h.office_show).await), expected);
    // A later import maps the show directly.
    assert_eq!(h.start(None).await.0, 202);
    h.drain(&h.processor(h.db.pool.clone())).await;
    let counts = &h.latest().await["counts"];
    assert_eq!(
        (counts["conflicts"].clone(), counts["mapped"].clone()),
        (json!(0), json!(4))
    );
}
