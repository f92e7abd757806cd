//! The batch and its invocation's deadline: a record starts only while its TMDB budget and a
//! margin fit before the deadline, TMDB time per record is bounded (retries included), and what
//! is not started goes back to the queue untried, so the batch always answers in time.

use std::time::Duration;

use plexsync::testing::fixtures;
use tokio::time::Instant;
use wiremock::{matchers::method, Mock, ResponseTemplate};

use crate::support::*;

/// Two seconds of TMDB per record, one more kept for the rest: a record starts only while at
/// least three seconds are left.
fn short_timing() -> Timing {
    Timing {
        tmdb_budget: Duration::from_secs(2),
        margin: Duration::from_secs(1),
        answer: Duration::from_millis(500),
    }
}

/// The SQS handler with [`short_timing`].
fn short_processor(h: &Harness) -> Processor {
    Processor {
        timing: short_timing(),
        ..h.processor()
    }
}

/// The Office's pilot (needs TMDB to find its show), then two plays by another account in
/// other shows' groups (no TMDB: ignored by the account gate, if they are ever processed).
fn batch() -> aws_lambda_events::event::sqs::SqsEvent {
    let slow = message(fixtures::plex_episode_scrobble()).to_body();
    let other = message(fixtures::plex_other_account_scrobble()).to_body();
    let office = format!("{}:48200", fixtures::server_uuid());
    sqs_event_in_groups(&[
        ("m-slow", slow, 1, office.as_str()),
        ("m-2", other.clone(), 1, "group-2"),
        ("m-3", other, 1, "group-3"),
    ])
}

/// TMDB answers, but only after 30 s: longer than any record's budget.
async fn stub_tmdb_hanging(h: &Harness) {
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(fixtures::tmdb_find_office_pilot()),
        )
        .mount(&h.tmdb)
        .await;
}

#[tokio::test]
async fn a_hanging_tmdb_costs_its_record_only_its_budget_and_the_rest_goes_back_untried() {
    let h = harness().await;
    stub_tmdb_hanging(&h).await;
    let processor = short_processor(&h);
    // Enough to start the first record (3 s needed), not a second one after it spent its 2 s.
    let deadline = Instant::now() + Duration::from_millis(4500);

    let response = processor::handle_batch(&processor, batch(), deadline).await;

    assert_eq!(failed_ids(&response), ["m-slow", "m-2", "m-3"]);
    let received = h.tmdb.received_requests().await.unwrap().len();
    assert_eq!(
        received, 1,
        "no TMDB retry after the record's budget ran out"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM plex_webhook_logs").await,
        0,
        "nothing processed: the first failed transiently, the others were not started"
    );
}

#[tokio::test]
async fn no_record_starts_when_the_deadline_is_nearer_than_a_records_budget() {
    let h = harness().await;
    let processor = short_processor(&h);
    let deadline = Instant::now() + Duration::from_secs(2);

    let response = processor::handle_batch(&processor, batch(), deadline).await;

    assert_eq!(failed_ids(&response), ["m-slow", "m-2", "m-3"]);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);
}

#[tokio::test]
async fn a_record_on_its_last_receive_goes_first_and_is_tried_even_short_of_time() {
    let h = harness().await;
    stub_tmdb_hanging(&h).await;
    // A record starts while 2 s are left; one still running 1 s before the deadline is given up.
    let processor = Processor {
        timing: Timing {
            tmdb_budget: Duration::from_secs(2),
            margin: Duration::ZERO,
            answer: Duration::from_secs(1),
        },
        ..h.processor()
    };
    let slow = message(fixtures::plex_episode_scrobble()).to_body();
    let other = message(fixtures::plex_other_account_scrobble()).to_body();
    let office = format!("{}:48200", fixtures::server_uuid());
    let event = sqs_event_in_groups(&[
        ("m-slow", slow, 1, office.as_str()),
        ("m-last", other, MAX_RECEIVE_COUNT as u32, "group-2"),
    ]);

    // Taken in order, the hanging first record would run until the answer's stop and the
    // second, on its last receive, would go to the DLQ untried (logged failed).
    let deadline = Instant::now() + Duration::from_millis(2500);
    let response = processor::handle_batch(&processor, event, deadline).await;

    assert_eq!(failed_ids(&response), ["m-slow"]);
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].message_id.as_deref(), Some("m-last"));
    assert_eq!(logs[0].status, "ignored", "tried: {logs:?}");
}

#[tokio::test]
async fn a_record_on_its_last_receive_starts_with_less_than_its_budget_left() {
    let h = harness().await;
    let processor = short_processor(&h);
    let other = message(fixtures::plex_other_account_scrobble()).to_body();
    let event = sqs_event(&[
        ("m-last", other.clone(), MAX_RECEIVE_COUNT as u32),
        ("m-next", other, 1),
    ]);

    // Too near for a fresh start (3 s needed), not for the answer's stop (0.5 s).
    let deadline = Instant::now() + Duration::from_secs(2);
    let response = processor::handle_batch(&processor, event, deadline).await;

    assert_eq!(
        failed_ids(&response),
        ["m-next"],
        "the other goes back untried"
    );
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].message_id.as_deref(), Some("m-last"));
    assert_eq!(logs[0].status, "ignored");
}

#[tokio::test]
async fn a_record_not_started_on_its_last_receive_is_logged_before_the_dlq() {
    let h = harness().await;
    // The answer's stop is already past: not even a last receive can start.
    let processor = Processor {
        timing: Timing {
            tmdb_budget: Duration::from_secs(2),
            margin: Duration::from_secs(3),
            answer: Duration::from_millis(4500),
        },
        ..h.processor()
    };
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let event = sqs_event(&[("m-last", body, MAX_RECEIVE_COUNT as u32)]);

    // Too near to start it (5 s needed, and the answer's stop is past), time enough (1.75 s)
    // to log it.
    let deadline = Instant::now() + Duration::from_secs(4);
    let response = processor::handle_batch(&processor, event, deadline).await;

    assert_eq!(failed_ids(&response), ["m-last"]);
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].status, "failed");
    let error = logs[0].error.as_deref().unwrap();
    assert!(
        error.contains("dead-letter") && error.contains("too little"),
        "{error}"
    );
}

#[tokio::test]
async fn a_record_stalled_on_the_database_is_given_up_so_the_batch_still_answers() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let mut e3 = fixtures::plex_episode_scrobble();
    e3["Metadata"]["index"] = 3.into();
    e3["Metadata"]["ratingKey"] = "48215".into();
    assert_eq!(
        h.process(e3).await.action.as_deref(),
        Some("marked_watched")
    );
    // A pool without lock_timeout: only the batch's own stop can end the wait.
    let processor = Processor {
        pipeline: h.concurrent_state(2),
        timing: Timing {
            tmdb_budget: Duration::from_secs(1),
            margin: Duration::from_secs(1),
            answer: Duration::from_secs(1),
        },
        ..h.processor()
    };
    // The tracker holds the show's row (a long transaction of its own).
    let mut holder = h.db.pool.get().await.unwrap();
    let tx = holder.transaction().await.unwrap();
    tx.execute(
        "SELECT id FROM tvshows WHERE id = $1 FOR UPDATE",
        &[&office],
    )
    .await
    .unwrap();
    let pilot = message(fixtures::plex_episode_scrobble()).to_body();
    let other = message(fixtures::plex_other_account_scrobble()).to_body();
    let office_group = format!("{}:48200", fixtures::server_uuid());
    let event = sqs_event_in_groups(&[
        ("m-stuck", pilot, 1, office_group.as_str()),
        ("m-next", other, 1, "group-2"),
    ]);

    // Starts the pilot (2 s needed, 3 s left), gives it up 1 s before the deadline.
    let deadline = Instant::now() + Duration::from_secs(3);
    let batch = processor::handle_batch(&processor, event, deadline);
    let response = tokio::time::timeout(Duration::from_secs(60), batch)
        .await
        .expect("the batch answers while the show's row is still locked");
    assert_eq!(failed_ids(&response), ["m-stuck", "m-next"]);

    // Once the row is free, the given-up transaction rolls back: nothing of it is kept.
    tx.rollback().await.unwrap();
    while h
        .count(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()",
        )
        .await
        > 0
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], false);
    let logged: Vec<_> = h
        .logs()
        .await
        .into_iter()
        .filter_map(|l| l.message_id)
        .collect();
    assert_eq!(logged.len(), 1, "only the setup's scrobble: {logged:?}");
}
