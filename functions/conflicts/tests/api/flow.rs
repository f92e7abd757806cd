//! The conflict flow whole, through the functions that carry it: the processor opens the
//! conflict from a real scrobble (its own candidate shape, not a hand-inserted one), the API
//! lists and resolves it, the replay marks the episode; and when the replay fails transiently,
//! the event goes to the processor's queue and the processor's retry ends with the mark, once
//! (a later replay of its log entry is a duplicate).

use chrono::{SecondsFormat, TimeZone, Utc};
use lambda_http::{Body, Response};
use plexsync::{
    api::testing::{authed, json},
    pipeline::{KeySource, Pipeline},
    plex::PlexServerClient,
    testing::{fifo_queue_with_dlq, fixtures, moto_config},
};
use processor::Processor;
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, ResponseTemplate,
};

use crate::support::*;

/// The processor and logs functions next to the conflicts function, on the same database,
/// TMDB stub and queue.
struct Neighbours {
    processor: Processor,
    logs: logs::State,
}

impl Harness {
    async fn neighbours(&self) -> Neighbours {
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(self.db.pool.clone(), &sdk).await;
        let (queue_url, dlq_url) = fifo_queue_with_dlq(&sdk).await;
        Neighbours {
            processor: Processor {
                pipeline: Pipeline {
                    pool: self.db.pool.clone(),
                    tmdb: tmdb_client(&self.tmdb.uri()),
                    plex: PlexServerClient::new().unwrap(),
                    keys: KeySource::None,
                },
                max_receive_count: 5,
                timing: processor::Timing::default(),
                retention: Default::default(),
            },
            logs: logs::State {
                api,
                sqs: aws_sdk_sqs::Client::new(&sdk),
                queue_url,
                dlq_url,
            },
        }
    }

    async fn rows(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.db.client().await.query(sql, &[]).await.unwrap()
    }

    async fn episode_2(&self) -> Value {
        let seasons: Value = self
            .rows(&format!(
                "SELECT seasons FROM tvshows WHERE id = {}",
                self.office_show
            ))
            .await[0]
            .get(0);
        // No seasons at all until the replay refreshes season 1 from TMDB.
        seasons[0]["episodes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["episodeNumber"] == 2)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// (status, action, tvshow id) of every log row, in order.
    async fn log_rows(&self) -> Vec<(String, Option<String>, Option<i32>)> {
        self.rows("SELECT status, action_taken, tvshow_id FROM plex_webhook_logs ORDER BY id")
            .await
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

impl Neighbours {
    /// What Lambda does with the queue: receive, hand the batch to the processor, delete what
    /// it acknowledged. Returns the number of records it got.
    async fn run_processor(&self) -> usize {
        let received = self
            .logs
            .sqs
            .receive_message()
            .queue_url(&self.logs.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages();
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "attributes": {
                        "ApproximateReceiveCount": "1",
                        "MessageGroupId": m.attributes()
                            .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
                            .cloned()
                            .unwrap_or_default(),
                    },
                    "eventSource": "aws:sqs",
                })
            })
            .collect();
        // A deadline no test reaches: the batch is never cut short.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let response = processor::handle_batch(
            &self.processor,
            serde_json::from_value(json!({ "Records": records })).unwrap(),
            deadline,
        )
        .await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        for m in messages {
            self.logs
                .sqs
                .delete_message()
                .queue_url(&self.logs.queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages.len()
    }

    async fn replay_log(&self, id: i64) -> Response<Body> {
        logs::handle(
            &self.logs,
            authed("POST", &format!("/api/plex/logs/{id}/replay"), None),
        )
        .await
    }
}

#[tokio::test]
async fn a_processor_conflict_resolved_then_retried_after_a_failed_replay_marks_once() {
    let mut h = Harness::new().await;
    let n = h.neighbours().await;
    // The conflicts function hands what it cannot replay to the processor's queue.
    h.state.queue.url = n.logs.queue_url.clone();
    h.stub_search().await;
    // The tracker show has no seasons yet: marking needs TMDB's season 1, which fails on the
    // replay's attempts (the client tries twice) and answers afterwards.
    h.rows(&format!(
        "UPDATE tvshows SET seasons = '[]', total_episodes = 0 WHERE id = {}",
        h.office_show
    ))
    .await;
    Mock::given(method("GET"))
        .and(path("/3/tv/2316/season/1"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"status_code": 11, "status_message": "Internal error."})),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&h.tmdb)
        .await;
    Mock::given(method("GET"))
        .and(path("/3/tv/2316/season/1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office_season_1()),
        )
        .mount(&h.tmdb)
        .await;

    // A scrobble of a show Plex could not match, as the webhook queues it, processed by the
    // processor's handler: it opens the conflict and holds the event.
    let scrobble = fixtures::plex_unmatched_episode_scrobble();
    let queued_body = queued(scrobble.clone()).to_string();
    let sent = n
        .logs
        .sqs
        .send_message()
        .queue_url(&n.logs.queue_url)
        .message_body(&queued_body)
        .message_group_id(format!("{}:61000", fixtures::server_uuid()))
        .message_deduplication_id("first-delivery")
        .send()
        .await;
    sent.unwrap();
    assert_eq!(n.run_processor().await, 1);
    assert_eq!(h.log_rows().await[0].0, "needs_resolution");

    // The user lists it and picks the candidate the processor offered for TMDB 2316.
    let listed = json(&h.call(authed("GET", "/api/plex/conflicts", None)).await);
    let conflict = listed["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["plexRatingKey"] == "61000")
        .expect("the processor's conflict is listed")
        .clone();
    assert_eq!(conflict["pendingEvents"], 1);
    let pick = conflict["potentialMatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["tmdbId"] == 2316 && !m["tvshowId"].is_null())
        .expect("the tracker's The Office is offered")
        .clone();
    assert_eq!(pick["tvshowId"], h.office_show);

    // Resolving maps the show; the replay hits TMDB's failure and hands the event to the
    // processor's queue, where the processor's own retry marks it.
    let resp = h
        .resolve(
            &conflict["id"],
            json!({"action": "select", "tvshowId": pick["tvshowId"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["replay"]["queued"], 1, "{body}");
    assert_eq!(body["replay"]["stillPending"], 0);
    assert_eq!(body["replay"]["marked"], 0);
    assert_eq!(h.episode_2().await, Value::Null, "nothing marked yet");
    assert_eq!(
        h.log_rows().await,
        [(
            "needs_resolution".to_string(),
            Some("needs_user_input".to_string()),
            None
        )]
    );
    assert_eq!(n.run_processor().await, 1);
    let viewed_at = Utc
        .timestamp_opt(scrobble["Metadata"]["lastViewedAt"].as_i64().unwrap(), 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let e2 = h.episode_2().await;
    assert_eq!(e2["watched"], true, "{e2}");
    assert_eq!(e2["dateWatched"], viewed_at.as_str());
    let marked = (
        "success".to_string(),
        Some("marked_watched".to_string()),
        Some(h.office_show),
    );
    assert_eq!(h.log_rows().await[1..], *std::slice::from_ref(&marked));

    // A retry by hand (replaying the event's log entry) changes nothing: one mark, one
    // success row.
    let log_id: i64 = h
        .rows("SELECT id FROM plex_webhook_logs WHERE status = 'needs_resolution'")
        .await[0]
        .get(0);
    assert_eq!(n.replay_log(log_id).await.status(), 202);
    assert_eq!(n.run_processor().await, 1);
    let rows = h.log_rows().await;
    assert_eq!(rows[1..2], [marked]);
    assert_eq!(
        rows[2..].iter().map(|r| (&*r.0, &r.1)).collect::<Vec<_>>(),
        [("duplicate", &None)]
    );
    assert_eq!(h.episode_2().await["dateWatched"], viewed_at.as_str());
    let counts = &h
        .rows(&format!(
            "SELECT watched_episodes, (SELECT count(*) FROM plex_processed_messages)
               FROM tvshows WHERE id = {}",
            h.office_show
        ))
        .await[0];
    assert_eq!((counts.get::<_, i32>(0), counts.get::<_, i64>(1)), (1, 1));
}
