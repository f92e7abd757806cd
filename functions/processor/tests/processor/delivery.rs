//! Concurrency, failures, retries and the SQS handler.

use std::time::Duration;

use plexsync::pipeline::{process_message, KeySource, Pipeline};
use plexsync::plex::PlexServerClient;
use plexsync::queue::QueueMessage;
use plexsync::store::logs::LogStatus;
use plexsync::testing::fixtures;
use processor::Processor;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::support::*;

/// 20 messages for one new show processed concurrently (bypassing FIFO ordering): one show
/// added, one mapping, no failure.
#[tokio::test]
async fn twenty_concurrent_messages_for_a_new_show_give_one_mapping() {
    let h = harness().await;
    stub_office_for_auto_add(&h).await;
    let messages: Vec<QueueMessage> = (0..20)
        .map(|i| {
            let mut p = fixtures::plex_episode_scrobble();
            p["Metadata"]["index"] = (i % 6 + 1).into();
            p["Metadata"]["ratingKey"] = (48300 + i).to_string().into();
            p["Metadata"]["lastViewedAt"] = (1764339000 + i * 60).into();
            message(p)
        })
        .collect();
    let results = h.process_concurrently(&messages).await;
    for r in &results {
        let o = r.as_ref().expect("no transient failure");
        assert_eq!(o.status, LogStatus::Success, "{o:?}");
    }
    assert_eq!(h.count("SELECT count(*) FROM tvshows").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 1);
    assert_eq!(
        h.count("SELECT count(*) FROM plex_webhook_logs WHERE status = 'success'")
            .await,
        20
    );
    let id: i32 = h.query("SELECT id FROM tvshows").await[0].get(0);
    let seasons = h.seasons(id).await;
    for n in 1..=6 {
        assert_eq!(episode(&seasons, 1, n)["watched"], true, "E{n}");
    }
    assert_eq!(
        h.count("SELECT watched_episodes::bigint FROM tvshows")
            .await,
        6
    );
}

#[tokio::test]
async fn twenty_concurrent_messages_for_an_unmatched_show_give_one_conflict() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": []})).await;
    let messages: Vec<QueueMessage> = (0..20)
        .map(|i| message(office_episode(i % 6 + 1 + 6 * (i / 6))))
        .collect();
    let results = h.process_concurrently(&messages).await;
    for r in &results {
        assert_eq!(
            r.as_ref().expect("no failure").status,
            LogStatus::NeedsResolution
        );
    }
    assert_eq!(h.count("SELECT count(*) FROM plex_conflicts").await, 1);
    assert_eq!(
        h.count("SELECT count(*) FROM plex_pending_events").await,
        20
    );
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 20);
}

#[tokio::test]
async fn database_down_fails_the_record_and_writes_nothing() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let down = Pipeline {
        pool: plexsync::db::pool(&SecretString::from(
            "postgres://postgres@127.0.0.1:1/plexsync".to_string(),
        ))
        .unwrap(),
        tmdb: tmdb_client(&h.tmdb.uri()),
        plex: PlexServerClient::new().unwrap(),
        keys: KeySource::None,
    };
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response = processor::handle_batch(
        &Processor {
            pipeline: down,
            max_receive_count: MAX_RECEIVE_COUNT,
            timing: Timing::default(),
            retention: Default::default(),
        },
        sqs_event(&[("m-down", body, 1)]),
        ample_time(),
    )
    .await;
    assert_eq!(failed_ids(&response), ["m-down"]);
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);
    assert_eq!(
        h.count("SELECT count(*) FROM plex_processed_messages")
            .await,
        0
    );
}

#[tokio::test]
async fn tmdb_outage_fails_the_record_and_writes_nothing() {
    let h = harness().await;
    h.stub_tmdb_outage().await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response = h.handle(sqs_event(&[("m-503", body, 1)])).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(
        h.tmdb.received_requests().await.unwrap().len(),
        3,
        "retried before giving up"
    );
    for table in [
        "plex_webhook_logs",
        "plex_show_mappings",
        "plex_conflicts",
        "plex_processed_messages",
        "tmdb_id_cache",
    ] {
        assert_eq!(
            h.count(&format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
}

/// On its last receive a transiently failing record is logged `failed` with the error (and so
/// is the rest of its show's records, returned unprocessed behind it) before SQS moves it to the DLQ;
/// earlier receives write nothing.
#[tokio::test]
async fn the_last_receive_of_a_failing_record_is_logged_failed() {
    let h = harness().await;
    h.stub_tmdb_outage().await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    let first = message(fixtures::plex_episode_scrobble()).to_body();
    let second = message(office_episode(2)).to_body();

    let early = h
        .handle(sqs_event(&[
            ("m-1", first.clone(), 4),
            ("m-2", second.clone(), 4),
        ]))
        .await;
    assert_eq!(early.batch_item_failures.len(), 2);
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);

    let last = h
        .handle(sqs_event(&[("m-1", first, 5), ("m-2", second, 5)]))
        .await;
    assert_eq!(
        failed_ids(&last),
        ["m-1", "m-2"],
        "still failed, so SQS moves them on"
    );
    let logs = h.logs().await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    for (log, id) in logs.iter().zip(["m-1", "m-2"]) {
        assert_eq!(log.status, "failed");
        assert_eq!(log.message_id.as_deref(), Some(id));
        assert_eq!(log.receive_count, Some(5));
        assert_eq!(log.title.as_deref(), Some("The Office"));
        assert_eq!(
            log.payload["event"], "media.scrobble",
            "the Plex payload, replayable"
        );
        let error = log.error.as_deref().unwrap();
        assert!(error.contains("gave up after 5 receives"), "{error}");
    }
    assert!(
        logs[0].error.as_deref().unwrap().contains("503"),
        "{:?}",
        logs[0].error
    );
    assert!(
        logs[1]
            .error
            .as_deref()
            .unwrap()
            .contains("earlier message of its show failed"),
        "{:?}",
        logs[1].error
    );
    assert_eq!(logs[1].episode, Some(2));
}

#[tokio::test]
async fn tmdb_429_with_retry_after_is_waited_out() {
    let h = harness().await;
    Mock::given(method("GET"))
        .and(path("/3/find/110413"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(json!({"success": false, "status_code": 25,
                    "status_message": "Your request count (41) is over the allowed limit of 40."})),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.tmdb)
        .await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(h.tmdb_requests("/3/find/110413").await, 2);
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
}

#[tokio::test]
async fn unreadable_body_is_logged_failed_and_acknowledged() {
    let h = harness().await;
    let response = h
        .handle(sqs_event(&[(
            "m-bad",
            "{\"version\": 1, \"event\": 42}".to_string(),
            3,
        )]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, "failed");
    assert_eq!(
        logs[0].payload,
        json!({"body": "{\"version\": 1, \"event\": 42}"})
    );
    assert_eq!(logs[0].receive_count, Some(3));
    assert!(logs[0].error.as_deref().unwrap().contains("not valid"));
}

#[tokio::test]
async fn batch_records_are_processed_in_order_with_their_receive_counts() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let first = message(fixtures::plex_episode_scrobble()).to_body();
    let second = message(office_episode(2)).to_body();
    let response = h
        .handle(sqs_event(&[("m-a", first, 4), ("m-b", second, 1)]))
        .await;
    assert!(response.batch_item_failures.is_empty());
    let logs = h.logs().await;
    let ids: Vec<_> = logs
        .iter()
        .map(|l| (l.message_id.clone().unwrap(), l.receive_count))
        .collect();
    assert_eq!(
        ids,
        [("m-a".to_string(), Some(4)), ("m-b".to_string(), Some(1))]
    );
    let seasons = h.seasons(office).await;
    assert_eq!(
        episode(&seasons, 1, 2)["watched"],
        true,
        "mapped by the first record"
    );
}

/// A Plex server that does not answer in time: retried through SQS on the first deliveries,
/// skipped on later ones so the show still reaches a conflict instead of the DLQ.
#[tokio::test]
async fn plex_timeout_is_transient_at_first_then_skipped() {
    let h = harness().await;
    let plex = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/library/metadata/48200"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(Duration::from_secs(30))
                .set_body_json(fixtures::plex_server_show_the_office()),
        )
        .mount(&plex)
        .await;
    h.configure(json!({"plex_server_url": plex.uri()})).await;
    stub_search(&h, json!({"page": 1, "results": []})).await;
    let msg = message(office_scrobble_with_guids(&[]));
    let state = h.state_with_plex_timeout(Duration::from_millis(500));

    let first = process_message(&state, &msg, "m-t", Some(1)).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);

    let later = process_message(&state, &msg, "m-t", Some(3)).await.unwrap();
    assert_eq!(later.status, LogStatus::NeedsResolution);
    assert_eq!(h.count("SELECT count(*) FROM plex_conflicts").await, 1);
}

/// Conversions are cached for 24 h: a second show identity with the same episode ids does not
/// call TMDB again, and an entry older than a day is refetched.
#[tokio::test]
async fn id_conversions_are_cached_for_a_day() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    let on_server = |uuid: &str| {
        let mut p = fixtures::plex_episode_scrobble();
        p["Server"]["uuid"] = uuid.into();
        p
    };
    h.process(on_server("aaaa")).await;
    h.process(on_server("bbbb")).await;
    assert_eq!(h.tmdb_requests("/3/find/110413").await, 1);
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 2);

    h.query("UPDATE tmdb_id_cache SET fetched_at = now() - interval '25 hours'")
        .await;
    h.process(on_server("cccc")).await;
    assert_eq!(h.tmdb_requests("/3/find/110413").await, 2);
}

/// FIFO: after a record that must be retried, the rest of its group is not processed and is
/// returned for retry as well, so no later event overtakes it.
#[tokio::test]
async fn records_after_a_transient_failure_are_returned_unprocessed() {
    let h = harness().await;
    h.stub_tmdb_outage().await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response = h
        .handle(sqs_event(&[
            ("m-1", body, 1),
            ("m-2", "not json".to_string(), 1),
        ]))
        .await;
    assert_eq!(failed_ids(&response), ["m-1", "m-2"]);
    // m-2 would have been logged `failed` had it been processed.
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);
}

/// ...but records of other message groups in the same batch are processed: a message that keeps
/// failing does not take its batch-mates to the dead-letter queue with it.
#[tokio::test]
async fn a_transient_failure_holds_back_only_its_own_group() {
    let h = harness().await;
    h.stub_tmdb_outage().await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let show = format!("{}:48200", fixtures::server_uuid());
    let response = h
        .handle(sqs_event_in_groups(&[
            ("m-1", body, 1, &show),
            ("m-2", "not json".to_string(), 1, "other-server:777"),
            ("m-3", "not json either".to_string(), 1, &show),
        ]))
        .await;
    assert_eq!(failed_ids(&response), ["m-1", "m-3"]);
    // m-2 (another show) was processed: logged `failed` as unreadable, and acknowledged.
    assert_eq!(
        h.count(
            "SELECT count(*) FROM plex_webhook_logs WHERE message_id = 'm-2' AND status = 'failed'"
        )
        .await,
        1
    );
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 1);
}

/// The EMF line the OpenConflicts alarm reads, emitted after each batch with the database's
/// count of unresolved conflicts.
#[tokio::test]
async fn a_batch_emits_the_open_conflicts_metric_with_the_real_count() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": [], "total_results": 0})).await;
    let body = message(office_episode(1)).to_body();
    let processor = h.processor();
    let (response, lines) = plexsync::metrics::capture(processor::handle_batch(
        &processor,
        sqs_event(&[("m-conflict", body, 1)]),
        ample_time(),
    ))
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        h.count("SELECT count(*) FROM plex_conflicts WHERE NOT resolved")
            .await,
        1
    );
    let docs: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("EMF lines are JSON"))
        .collect();
    let open: Vec<_> = docs
        .iter()
        .filter(|d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] == "OpenConflicts")
        .collect();
    assert_eq!(open.len(), 1, "{lines:?}");
    assert_eq!(
        open[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "plexsync"
    );
    assert_eq!(open[0]["OpenConflicts"], 1.0);
    // The TMDB search it made is counted too, as a success.
    let tmdb: Vec<_> = docs
        .iter()
        .filter(|d| d.get("TmdbRequests").is_some())
        .collect();
    assert!(!tmdb.is_empty(), "{lines:?}");
    assert!(tmdb.iter().all(|d| d["TmdbErrors"] == 0.0));
}

/// The function's real start-up path (`Processor::from_env`, as `main` runs it) with only secret
/// ids in its environment, against moto and Postgres: the pool reaches the database the secret
/// names, TMDB receives the token read from its secret, and the redrive limit comes from
/// MAX_RECEIVE_COUNT.
#[tokio::test]
async fn the_processor_starts_from_its_environment_and_marks() {
    let h = harness().await;
    let tmdb_token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJwcm9jZXNzb3IifQ.c2ln";
    Mock::given(method("GET"))
        .and(path("/3/find/110413"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {tmdb_token}").as_str(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::tmdb_find_office_pilot()))
        .mount(&h.tmdb)
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let sdk = plexsync::testing::moto_config().await;
    let url_id = plexsync::testing::secret(&sdk, h.db.url.expose_secret()).await;
    let token_id = plexsync::testing::secret(&sdk, tmdb_token).await;
    let key_id = plexsync::testing::secret(&sdk, &plexsync::crypto::generate_key_hex()).await;
    let tmdb_url = h.tmdb.uri();
    let env = plexsync::env::Env::from_map([
        ("DATABASE_URL_SECRET_ID", url_id.as_str()),
        ("TMDB_API_TOKEN_SECRET_ID", token_id.as_str()),
        ("ENCRYPTION_KEY_SECRET_ID", key_id.as_str()),
        ("TMDB_BASE_URL", tmdb_url.as_str()),
        ("MAX_RECEIVE_COUNT", "3"),
    ])
    .with_secrets(&plexsync::secrets::SecretsCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
    ))
    .await
    .unwrap();
    let processor = Processor::from_env(&env, &sdk).expect("the processor state builds");
    assert_eq!(processor.max_receive_count, 3);

    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response =
        processor::handle_batch(&processor, sqs_event(&[("m-env", body, 1)]), ample_time()).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
    let logs = h.logs().await;
    assert_eq!(
        (logs[0].status.as_str(), logs[0].action.as_deref()),
        ("success", Some("marked_watched"))
    );
}
