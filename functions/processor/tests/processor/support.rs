//! Harness: a processor state over a fresh database and a wiremock TMDB, the integration
//! config, and realistic Plex scrobbles and SQS events.

use std::{sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use chrono::{DateTime, TimeZone, Utc};
use plexsync::crypto::{generate_key_hex, Keyring};
use plexsync::pipeline::{
    process_message, process_message_until, KeySource, Outcome, Pipeline, TransientError,
};
use plexsync::plex::PlexServerClient;
use plexsync::queue::QueueMessage;
use plexsync::testing::{self, fixtures, TestDb};
use plexsync::tmdb::TmdbClient;
pub use processor::{Processor, Timing};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

pub const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c";

pub struct Harness {
    pub db: TestDb,
    pub tmdb: MockServer,
    pub keyring: Arc<Keyring>,
    pub state: Pipeline,
}

/// The TMDB client of the tests: 40 requests per 10 s, as TMDB allows.
pub fn tmdb_client(uri: &str) -> TmdbClient {
    testing::tmdb_client(uri, 40, Duration::from_secs(10))
}

pub async fn harness() -> Harness {
    let db = testing::fresh_db().await;
    let tmdb = MockServer::start().await;
    let keyring = Arc::new(Keyring::from_secret(&SecretString::from(generate_key_hex())).unwrap());
    let state = pipeline(&db, &tmdb, &keyring);
    let h = Harness {
        db,
        tmdb,
        keyring,
        state,
    };
    h.configure(json!({})).await;
    h
}

/// A batch deadline no test reaches: the batch is never cut short.
pub fn ample_time() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(3600)
}

/// The queue's redrive limit in the tests (the template's value).
pub const MAX_RECEIVE_COUNT: i64 = 5;

fn pipeline(db: &TestDb, tmdb: &MockServer, keyring: &Arc<Keyring>) -> Pipeline {
    pipeline_on(db.pool.clone(), tmdb, keyring)
}

fn pipeline_on(pool: plexsync::db::DbPool, tmdb: &MockServer, keyring: &Arc<Keyring>) -> Pipeline {
    Pipeline {
        pool,
        tmdb: tmdb_client(&tmdb.uri()),
        // Generous: the stubs answer at once, and a loaded machine must not turn a success
        // into a timeout. The timeout test builds its own impatient client.
        plex: PlexServerClient::with_timeout(Duration::from_secs(30)).unwrap(),
        keys: KeySource::Fixed(keyring.clone()),
    }
}

impl Harness {
    /// The pipeline over a pool for `messages` messages processed at once (see
    /// [`TestDb::pool_for_concurrency`]).
    pub fn concurrent_state(&self, messages: usize) -> Pipeline {
        Pipeline {
            pool: self.db.pool_for_concurrency(messages),
            ..pipeline(&self.db, &self.tmdb, &self.keyring)
        }
    }

    /// The pipeline with a Plex server client that gives up after `timeout`.
    pub fn state_with_plex_timeout(&self, timeout: Duration) -> Pipeline {
        Pipeline {
            plex: PlexServerClient::with_timeout(timeout).unwrap(),
            ..pipeline(&self.db, &self.tmdb, &self.keyring)
        }
    }

    /// The pipeline over another pool (one through a counting proxy), same TMDB stub and key.
    pub fn pipeline_with(&self, pool: plexsync::db::DbPool) -> Pipeline {
        pipeline_on(pool, &self.tmdb, &self.keyring)
    }

    /// The SQS handler's state over the same database, TMDB stub and key.
    pub fn processor(&self) -> Processor {
        Processor {
            pipeline: pipeline(&self.db, &self.tmdb, &self.keyring),
            max_receive_count: MAX_RECEIVE_COUNT,
            timing: Timing::default(),
            retention: Default::default(),
        }
    }

    /// Runs `event` through the SQS handler with time to spare.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        processor::handle_batch(&self.processor(), event, ample_time()).await
    }

    /// Processes `messages` all at once (bypassing FIFO ordering), each as its first receive.
    pub async fn process_concurrently(
        &self,
        messages: &[QueueMessage],
    ) -> Vec<Result<Outcome, TransientError>> {
        let ids: Vec<String> = (0..messages.len()).map(|i| format!("c-{i}")).collect();
        let state = self.concurrent_state(messages.len());
        // All share one client's rate limit (40 requests per 10 s), so the last ones wait longer
        // than one message's TMDB budget: give them the time (the processor runs one at a time).
        let until = tokio::time::Instant::now() + Duration::from_secs(120);
        futures_util::future::join_all(
            messages
                .iter()
                .zip(&ids)
                .map(|(m, id)| process_message_until(&state, m, id, Some(1), until)),
        )
        .await
    }

    /// TMDB answers every request 503.
    pub async fn stub_tmdb_outage(&self) {
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&self.tmdb)
            .await;
    }

    /// Inserts (or replaces) the integration config; `overrides` sets columns by name.
    pub async fn configure(&self, overrides: Value) {
        let client = self.db.client().await;
        let token = self
            .keyring
            .encrypt(&SecretString::from(PLEX_TOKEN.to_string()));
        client
            .execute("DELETE FROM plex_config", &[])
            .await
            .unwrap();
        let get_bool = |k: &str| overrides.get(k).and_then(Value::as_bool).unwrap_or(true);
        let server_url = overrides
            .get("plex_server_url")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let allowed = overrides
            .get("allowed_accounts")
            .cloned()
            .unwrap_or(json!([]));
        client
            .execute(
                "INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_uuid,
                     plex_account_id, plex_account_name, enabled, auto_add_shows, auto_mark_watched,
                     allowed_accounts, allow_insecure_http)
                 VALUES (1, $1, $2, $3, 12345678, 'alice', $4, $5, $6, $7, $8)",
                &[
                    &token,
                    &server_url,
                    &fixtures::server_uuid(),
                    &get_bool("enabled"),
                    &get_bool("auto_add_shows"),
                    &get_bool("auto_mark_watched"),
                    &allowed,
                    // The stub Plex servers listen on plain http, as a LAN server the user
                    // allowed.
                    &get_bool("allow_insecure_http"),
                ],
            )
            .await
            .unwrap();
    }

    pub async fn add_show(&self, tmdb_id: Option<i32>, title: &str, seasons: Value) -> i32 {
        let client = self.db.client().await;
        let (watched, total) = plexsync::episodes::counts(&seasons);
        client
            .query_one(
                "INSERT INTO tvshows (tmdb_id, title, show_start_date, seasons, watched_episodes, total_episodes)
                 VALUES ($1, $2, '2005-03-24', $3, $4, $5) RETURNING id",
                &[&tmdb_id, &title, &seasons, &watched, &total],
            )
            .await
            .unwrap()
            .get(0)
    }

    pub async fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.db.client().await.query(sql, &[]).await.unwrap()
    }

    /// Waits until `n` sessions on this test's database wait for a lock (a row or key another
    /// transaction holds). A bounded wait for a state, not a timing assertion.
    pub async fn wait_for_lock_waiters(&self, n: i64) {
        for _ in 0..3000 {
            let waiting = self
                .count(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .await;
            if waiting >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{n} sessions never waited for the held lock");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await[0].get(0)
    }

    pub async fn seasons(&self, id: i32) -> Value {
        self.db.seasons(id).await
    }

    pub async fn logs(&self) -> Vec<Log> {
        self.query(
            "SELECT status, action_taken, error_message, tvshow_id, receive_count, message_id,
                    plex_season, plex_episode, plex_title, payload, event_type
               FROM plex_webhook_logs ORDER BY id",
        )
        .await
        .iter()
        .map(|r| Log {
            status: r.get(0),
            action: r.get(1),
            error: r.get(2),
            tvshow_id: r.get(3),
            receive_count: r.get(4),
            message_id: r.get(5),
            season: r.get(6),
            episode: r.get(7),
            title: r.get(8),
            payload: r.get(9),
            event_type: r.get(10),
        })
        .collect()
    }

    pub async fn tmdb_requests(&self, path_is: &str) -> usize {
        self.tmdb
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == path_is)
            .count()
    }

    pub async fn stub_find(&self, id: &str, source: &str, body: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/3/find/{id}")))
            .and(query_param("external_source", source))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.tmdb)
            .await;
    }

    pub async fn stub_get(&self, at: &str, body: Value) {
        plexsync::testing::serve_json(&self.tmdb, at, body).await;
    }

    pub async fn process(&self, payload: Value) -> plexsync::pipeline::Outcome {
        let msg = message(payload);
        process_message(
            &self.state,
            &msg,
            &format!("msg-{}", testing::unique_suffix()),
            Some(1),
        )
        .await
        .expect("no transient failure")
    }
}

#[derive(Debug)]
#[allow(dead_code)]
pub struct Log {
    pub status: String,
    pub action: Option<String>,
    pub error: Option<String>,
    pub tvshow_id: Option<i32>,
    pub receive_count: Option<i32>,
    pub message_id: Option<String>,
    pub season: Option<i32>,
    pub episode: Option<i32>,
    pub title: Option<String>,
    pub payload: Value,
    pub event_type: String,
}

/// The ids of the records the handler returned for retry, in order.
pub fn failed_ids(response: &SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

pub fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 28, 15, 0, 0).unwrap()
}

pub fn message(payload: Value) -> QueueMessage {
    QueueMessage {
        source_ip: Some("198.51.100.23".into()),
        request_id: Some("req-1".into()),
        ..plexsync::testing::plex_message(payload, received_at())
    }
}

pub fn sqs_event(records: &[(&str, String, u32)]) -> SqsEvent {
    let group = format!("{}:48200", fixtures::server_uuid());
    let records: Vec<_> = records
        .iter()
        .map(|(id, body, count)| (*id, body.clone(), *count, group.as_str()))
        .collect();
    sqs_event_in_groups(&records)
}

/// An SQS event whose records carry their own message group ids: (id, body, receive count, group).
pub fn sqs_event_in_groups(records: &[(&str, String, u32, &str)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body, count, group)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("AQEB{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": count.to_string(),
                    "SentTimestamp": "1764339001000",
                    "MessageGroupId": group,
                    "MessageDeduplicationId": "dedup",
                    "SequenceNumber": "18889999999999999999",
                    "ApproximateFirstReceiveTimestamp": "1764339001500"
                },
                "messageAttributes": {},
                "md5OfBody": "x",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:plexsync-events.fifo",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// The Office season 1 as the tracker stores it, nothing watched.
pub fn office_seasons() -> Value {
    let s1 = fixtures::tmdb_the_office_season_1();
    let episodes: Vec<Value> = s1["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({"episodeNumber": e["episode_number"], "title": e["name"], "airDate": e["air_date"],
                   "watched": false, "dateWatched": null})
        })
        .collect();
    json!([{"seasonNumber": 1, "episodes": episodes}])
}

pub fn episode(seasons: &Value, season: i64, number: i64) -> &Value {
    seasons
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seasonNumber"] == season)
        .and_then(|s| {
            s["episodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["episodeNumber"] == number)
        })
        .unwrap_or_else(|| panic!("S{season}E{number} not stored"))
}

/// The Office scrobble with only some of the episode's Guid ids.
pub fn office_scrobble_with_guids(guids: &[&str]) -> Value {
    let mut p = fixtures::plex_episode_scrobble();
    p["Metadata"]["Guid"] = guids.iter().map(|g| json!({"id": g})).collect();
    p
}

/// The Office scrobble of episode `n` of season 1 (its own rating key and view time).
pub fn office_episode(n: i64) -> Value {
    let mut p = fixtures::plex_episode_scrobble();
    p["Metadata"]["index"] = n.into();
    p["Metadata"]["ratingKey"] = (48212 + n).to_string().into();
    p["Metadata"]["lastViewedAt"] = (1764339000 + n * 1800).into();
    p["Metadata"]["Guid"] = json!([]);
    p
}

pub async fn mapping(h: &Harness) -> (Option<i32>, String, f64, bool) {
    let rows = h
        .query(
            "SELECT tvshow_id, match_method, match_confidence::float8, sync_enabled FROM plex_show_mappings",
        )
        .await;
    assert_eq!(rows.len(), 1, "exactly one mapping");
    (
        rows[0].get(0),
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
    )
}

pub async fn stub_search(h: &Harness, results: Value) {
    Mock::given(method("GET"))
        .and(path("/3/search/tv"))
        .and(query_param("query", "The Office"))
        .respond_with(ResponseTemplate::new(200).set_body_json(results))
        .mount(&h.tmdb)
        .await;
}

pub async fn stub_office_for_auto_add(h: &Harness) {
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    h.stub_get("/3/tv/2316", fixtures::tmdb_the_office()).await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;
    h.stub_get(
        "/3/tv/2316/season/0",
        json!({"id": 3627, "season_number": 0, "episodes": [
            {"id": 1079512, "episode_number": 1, "name": "The Accountants", "air_date": "2006-07-13"}
        ]}),
    )
    .await;
    // Season 2 is listed but not served: skipped (wiremock answers 404).
}
