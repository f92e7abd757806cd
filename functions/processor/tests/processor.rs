//! End-to-end tests of the processor: real Postgres (fresh database per test), moto for the
//! encryption key secret, TMDB and the Plex server stubbed over HTTP with realistic payloads.

#![recursion_limit = "256"]

use std::{sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, TimeZone, Utc};
use plexsync::crypto::{generate_key_hex, Keyring};
use plexsync::payload::{Decision, WebhookPayload};
use plexsync::pipeline::{process_message, KeySource, LogStatus, Pipeline};
use plexsync::plex::PlexServerClient;
use plexsync::queue::QueueMessage;
use plexsync::testing::{self, fixtures, TestDb};
use plexsync::tmdb::{RetryPolicy, TmdbClient};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

const SERVER_UUID: &str = "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f";
const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c";

struct Harness {
    db: TestDb,
    tmdb: MockServer,
    keyring: Arc<Keyring>,
    state: Pipeline,
}

fn tmdb_client(uri: &str) -> TmdbClient {
    TmdbClient::with_options(
        &plexsync::env::TmdbConfig {
            base_url: uri.parse().unwrap(),
            token: SecretString::from("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0In0.c2ln".to_string()),
        },
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        40,
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .unwrap()
}

async fn harness() -> Harness {
    let db = testing::fresh_db().await;
    let tmdb = MockServer::start().await;
    let keyring = Arc::new(Keyring::from_secret(&SecretString::from(generate_key_hex())).unwrap());
    let state = Pipeline {
        pool: db.pool.clone(),
        tmdb: tmdb_client(&tmdb.uri()),
        plex: PlexServerClient::with_timeout(Duration::from_millis(800)).unwrap(),
        keys: KeySource::Fixed(keyring.clone()),
    };
    let h = Harness {
        db,
        tmdb,
        keyring,
        state,
    };
    h.configure(json!({})).await;
    h
}

impl Harness {
    /// Inserts (or replaces) the integration config; `overrides` sets columns by name.
    async fn configure(&self, overrides: Value) {
        let client = self.db.pool.get().await.unwrap();
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
                     allowed_accounts)
                 VALUES (1, $1, $2, $3, 12345678, 'alice', $4, $5, $6, $7)",
                &[
                    &token,
                    &server_url,
                    &SERVER_UUID,
                    &get_bool("enabled"),
                    &get_bool("auto_add_shows"),
                    &get_bool("auto_mark_watched"),
                    &allowed,
                ],
            )
            .await
            .unwrap();
    }

    async fn add_show(&self, tmdb_id: Option<i32>, title: &str, seasons: Value) -> i32 {
        let client = self.db.pool.get().await.unwrap();
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

    async fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query(sql, &[])
            .await
            .unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        self.query(sql).await[0].get(0)
    }

    async fn seasons(&self, id: i32) -> Value {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT seasons FROM tvshows WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    async fn logs(&self) -> Vec<Log> {
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

    async fn tmdb_requests(&self, path_is: &str) -> usize {
        self.tmdb
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == path_is)
            .count()
    }

    async fn stub_find(&self, id: &str, source: &str, body: Value) {
        Mock::given(method("GET"))
            .and(path(format!("/3/find/{id}")))
            .and(query_param("external_source", source))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.tmdb)
            .await;
    }

    async fn stub_get(&self, at: &str, body: Value) {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.tmdb)
            .await;
    }

    async fn process(&self, payload: Value) -> plexsync::pipeline::Outcome {
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
struct Log {
    status: String,
    action: Option<String>,
    error: Option<String>,
    tvshow_id: Option<i32>,
    receive_count: Option<i32>,
    message_id: Option<String>,
    season: Option<i32>,
    episode: Option<i32>,
    title: Option<String>,
    payload: Value,
    event_type: String,
}

fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 11, 28, 15, 0, 0).unwrap()
}

fn message(payload: Value) -> QueueMessage {
    let (parsed, raw) = WebhookPayload::from_json(payload.to_string().as_bytes()).unwrap();
    let Decision::Process(event) = parsed.decide().unwrap() else {
        panic!("fixture is ignored by the webhook filter")
    };
    QueueMessage::new(
        *event,
        raw,
        received_at(),
        Some("198.51.100.23".into()),
        Some("req-1".into()),
    )
}

fn sqs_event(records: &[(&str, String, u32)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body, count)| {
            json!({
                "messageId": id,
                "receiptHandle": format!("AQEB{id}"),
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": count.to_string(),
                    "SentTimestamp": "1764339001000",
                    "MessageGroupId": format!("{SERVER_UUID}:48200"),
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
fn office_seasons() -> Value {
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

fn episode(seasons: &Value, season: i64, number: i64) -> &Value {
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
fn office_scrobble_with_guids(guids: &[&str]) -> Value {
    let mut p = fixtures::plex_episode_scrobble();
    p["Metadata"]["Guid"] = guids.iter().map(|g| json!({"id": g})).collect();
    p
}

/// The Office scrobble of episode `n` of season 1 (its own rating key and view time).
fn office_episode(n: i64) -> Value {
    let mut p = fixtures::plex_episode_scrobble();
    p["Metadata"]["index"] = n.into();
    p["Metadata"]["ratingKey"] = (48212 + n).to_string().into();
    p["Metadata"]["lastViewedAt"] = (1764339000 + n * 1800).into();
    p["Metadata"]["Guid"] = json!([]);
    p
}

async fn mapping(h: &Harness) -> (Option<i32>, String, f64, bool) {
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

// ---------------------------------------------------------------------------------------------
// Ladder, one scenario per rung
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_tvdb_guid_maps_via_tvdb_and_marks_with_receipt_time() {
    let h = harness().await;
    h.stub_find(
        "121361",
        "tvdb_id",
        json!({"tv_results": [{"id": 1399, "name": "Game of Thrones", "first_air_date": "2011-04-17"}],
               "tv_episode_results": [], "movie_results": [], "person_results": [], "tv_season_results": []}),
    )
    .await;
    let got = h
        .add_show(
            Some(1399),
            "Game of Thrones",
            json!([{"seasonNumber": 1, "episodes": [
                {"episodeNumber": 1, "title": "Winter Is Coming", "airDate": "2011-04-17", "watched": false, "dateWatched": null},
                {"episodeNumber": 2, "title": "The Kingsroad", "airDate": "2011-04-24", "watched": false, "dateWatched": null}
            ]}]),
        )
        .await;

    let outcome = h.process(fixtures::plex_legacy_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");

    assert_eq!(mapping(&h).await, (Some(got), "tvdb_id".into(), 0.95, true));
    let seasons = h.seasons(got).await;
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    // No lastViewedAt in a legacy payload: the receipt time is the watch date.
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2025-11-28T15:00:00.000Z"
    );
    assert_eq!(episode(&seasons, 1, 2)["watched"], false);
    let row = &h
        .query(&format!(
            "SELECT watched_episodes, total_episodes, plex_last_sync IS NOT NULL FROM tvshows WHERE id = {got}"
        ))
        .await[0];
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2)
        ),
        (1, 2, true)
    );
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, "success");
    assert_eq!(logs[0].action.as_deref(), Some("marked_watched"));
    assert_eq!(logs[0].tvshow_id, Some(got));
    assert_eq!((logs[0].season, logs[0].episode), (Some(1), Some(1)));
    assert_eq!(
        logs[0].payload["Metadata"]["grandparentTitle"],
        "Game of Thrones"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM tmdb_id_cache WHERE source = 'tvdb_show' AND external_id = '121361' AND tmdb_id = 1399")
            .await,
        1
    );
}

/// New agent: the episode's tvdb id → /3/find → tv_episode_results[0].show_id. The tracker also
/// holds an unrelated show whose TMDB id equals the *episode's* TMDB id (397627): it must stay
/// untouched while The Office (2316) is marked.
#[tokio::test]
async fn new_agent_episode_tvdb_id_marks_the_right_show_not_the_episode_id_show() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let decoy = h
        .add_show(Some(397627), "Tiny Decoy Show", office_seasons())
        .await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(outcome.tvshow_id, Some(office));

    let seasons = h.seasons(office).await;
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    // lastViewedAt 1764339000 is the watch date.
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2025-11-28T14:10:00.000Z"
    );
    assert_eq!(h.seasons(decoy).await, office_seasons(), "decoy untouched");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tvdb_id".into(), 0.95, true)
    );
    let ids = &h
        .query("SELECT tmdb_id, tvdb_id, imdb_id FROM plex_show_mappings")
        .await[0];
    // Only show ids are stored on the mapping, never the episode's.
    assert_eq!(ids.get::<_, Option<i32>>(0), Some(2316));
    assert_eq!(ids.get::<_, Option<i32>>(1), None);
    assert_eq!(ids.get::<_, Option<String>>(2), None);
}

#[tokio::test]
async fn new_agent_episode_imdb_id_maps_via_imdb() {
    let h = harness().await;
    h.stub_find("tt0664521", "imdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h
        .process(office_scrobble_with_guids(&[
            "imdb://tt0664521",
            "tmdb://397627",
        ]))
        .await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "imdb_id".into(), 0.95, true)
    );
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
}

/// No usable episode ids: the Plex server's show metadata (token decrypted in memory with the key
/// from Secrets Manager) gives the show's TMDB id.
#[tokio::test]
async fn plex_server_metadata_gives_the_show_ids() {
    let mut h = harness().await;
    let aws = testing::moto_config().await;
    let key_hex = generate_key_hex();
    h.keyring = Arc::new(Keyring::from_secret(&SecretString::from(key_hex.clone())).unwrap());
    h.state.keys = KeySource::Secrets {
        cache: plexsync::secrets::SecretsCache::new(aws_sdk_secretsmanager_client(&aws)),
        secret_id: testing::secret(&aws, &key_hex).await,
    };
    let plex = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/library/metadata/48200"))
        .and(header("x-plex-token", PLEX_TOKEN))
        .and(header("accept", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixtures::plex_server_show_the_office()),
        )
        .expect(1)
        .mount(&plex)
        .await;
    h.configure(json!({"plex_server_url": plex.uri()})).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(office_scrobble_with_guids(&[])).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_id".into(), 1.0, true)
    );
    let ids = &h
        .query("SELECT tvdb_id, imdb_id FROM plex_show_mappings")
        .await[0];
    assert_eq!(ids.get::<_, Option<i32>>(0), Some(73244));
    assert_eq!(
        ids.get::<_, Option<String>>(1).as_deref(),
        Some("tt0386676")
    );
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

fn aws_sdk_secretsmanager_client(aws: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(aws)
}

async fn stub_search(h: &Harness, results: Value) {
    Mock::given(method("GET"))
        .and(path("/3/search/tv"))
        .and(query_param("query", "The Office"))
        .respond_with(ResponseTemplate::new(200).set_body_json(results))
        .mount(&h.tmdb)
        .await;
}

#[tokio::test]
async fn single_fuzzy_match_is_an_ambiguous_conflict_with_pending_event() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    let us = h.add_show(None, "The Office (US)", office_seasons()).await;
    h.add_show(Some(1396), "Breaking Bad", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");

    let rows = h
        .query("SELECT id, conflict_type, potential_matches, plex_rating_key, plex_title FROM plex_conflicts")
        .await;
    assert_eq!(rows.len(), 1);
    let conflict_id: i32 = rows[0].get(0);
    assert_eq!(rows[0].get::<_, String>(1), "ambiguous");
    assert_eq!(
        rows[0].get::<_, String>(3),
        "48200",
        "keyed on the show, not the episode"
    );
    let matches: Value = rows[0].get(2);
    let first = &matches[0];
    assert_eq!(first["tvshowId"], us);
    assert_eq!(first["source"], "tracker");
    let score = first["matchScore"].as_f64().unwrap();
    assert!(
        score > 0.5 && score < 0.9,
        "sim × 0.85, below auto-map: {score}"
    );
    // TMDB search candidates are offered too.
    assert!(matches
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["tmdbId"] == 2316 && m["source"] == "tmdb" && m["tvshowId"].is_null()));
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);
    assert_eq!(episode(&h.seasons(us).await, 1, 1)["watched"], false);

    // A repeat event for the show adds to the pending events, not a second conflict.
    let again = h.process(office_episode(2)).await;
    assert_eq!(again.status, LogStatus::NeedsResolution);
    assert_eq!(again.conflict_id, Some(conflict_id));
    assert_eq!(h.count("SELECT count(*) FROM plex_conflicts").await, 1);
    let pending = h
        .query("SELECT conflict_id, message FROM plex_pending_events ORDER BY id")
        .await;
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].get::<_, i32>(0), conflict_id);
    // The stored message is a whole queue message, ready to replay.
    let stored: Value = pending[1].get(1);
    let replay = QueueMessage::from_body(&stored.to_string()).unwrap();
    assert_eq!(replay.event.episode.unwrap().number, 2);
    let logs = h.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l.status == "needs_resolution"
                && l.action.as_deref() == Some("needs_user_input"))
    );
}

/// A TMDB search hit the tracker already has is offered once (as the tracker show), not twice.
#[tokio::test]
async fn tmdb_candidate_already_in_the_tracker_is_offered_once() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");
    let matches: Value = h
        .query("SELECT potential_matches FROM plex_conflicts")
        .await[0]
        .get(0);
    let with_2316: Vec<&Value> = matches
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["tmdbId"] == 2316)
        .collect();
    assert_eq!(with_2316.len(), 1, "{matches}");
    assert_eq!(with_2316[0]["tvshowId"], office);
    assert_eq!(with_2316[0]["source"], "tracker");
}

#[tokio::test]
async fn two_fuzzy_candidates_are_a_multiple_matches_conflict() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": []})).await;
    h.add_show(None, "The Office (US)", office_seasons()).await;
    h.add_show(None, "The Office (UK)", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, jsonb_array_length(potential_matches) FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "multiple_matches");
    assert_eq!(rows[0].get::<_, i32>(1), 2);
}

#[tokio::test]
async fn nothing_found_is_a_no_match_conflict() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": [], "total_results": 0})).await;
    h.add_show(Some(1396), "Breaking Bad", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, potential_matches FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "no_match");
    assert_eq!(rows[0].get::<_, Value>(1), json!([]));
    assert_eq!(
        h.count("SELECT count(*) FROM tvshows").await,
        1,
        "nothing auto-added without a TMDB id"
    );
}

/// Title search confirmed by the episode's TMDB id appearing in the candidate's season.
#[tokio::test]
async fn title_search_confirmed_by_episode_tmdb_id_resolves_the_show() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;
    h.stub_get(
        "/3/tv/2996/season/1",
        json!({"id": 3630, "season_number": 1, "episodes": [{"id": 60001, "episode_number": 1, "name": "Downsize"}]}),
    )
    .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h
        .process(office_scrobble_with_guids(&["tmdb://397627"]))
        .await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_search".into(), 0.95, true)
    );
}

async fn stub_office_for_auto_add(h: &Harness) {
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

#[tokio::test]
async fn unknown_show_with_tmdb_id_is_auto_added_mapped_and_marked() {
    let h = harness().await;
    stub_office_for_auto_add(&h).await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        outcome.action.as_deref(),
        Some("auto_added_show_and_marked_watched")
    );
    let rows = h
        .query(
            "SELECT id, tmdb_id, title, status, source, plex_synced, total_episodes, watched_episodes,
                    show_start_date::text, seasons
               FROM tvshows",
        )
        .await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let id: i32 = r.get(0);
    assert_eq!(r.get::<_, Option<i32>>(1), Some(2316));
    assert_eq!(r.get::<_, String>(2), "The Office");
    assert_eq!(r.get::<_, String>(3), "Watching");
    assert_eq!(r.get::<_, String>(4), "plex");
    assert!(r.get::<_, bool>(5));
    assert_eq!((r.get::<_, i32>(6), r.get::<_, i32>(7)), (7, 1));
    assert_eq!(r.get::<_, Option<String>>(8).as_deref(), Some("2005-03-24"));
    let seasons: Value = r.get(9);
    assert_eq!(seasons[0]["seasonNumber"], 0, "specials kept, in order");
    assert_eq!(seasons[1]["seasonNumber"], 1);
    assert_eq!(
        episode(&seasons, 1, 2),
        &json!({"episodeNumber": 2, "title": "Diversity Day", "airDate": "2005-03-29", "watched": false, "dateWatched": null})
    );
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    assert_eq!(
        mapping(&h).await,
        (Some(id), "auto_added:tvdb_id".into(), 0.95, true)
    );
}

#[tokio::test]
async fn auto_add_off_gives_a_no_match_conflict_offering_the_tmdb_show() {
    let h = harness().await;
    h.configure(json!({"auto_add_shows": false})).await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, potential_matches FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "no_match");
    let matches: Value = rows[0].get(1);
    assert_eq!(matches[0]["tmdbId"], 2316);
    assert_eq!(matches[0]["source"], "tmdb");
    assert_eq!(h.count("SELECT count(*) FROM tvshows").await, 0);
}

#[tokio::test]
async fn library_new_show_creates_the_mapping_and_marks_nothing() {
    let h = harness().await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let outcome = h.process(fixtures::plex_library_new_show()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(outcome.action.as_deref(), Some("show_mapped"));
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_id".into(), 1.0, true)
    );
    assert_eq!(h.seasons(office).await, office_seasons());
    assert_eq!(h.logs().await[0].event_type, "library.new");
}

// ---------------------------------------------------------------------------------------------
// Marking rules, gates, idempotency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn already_watched_episode_keeps_its_manual_date() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let mut seasons = office_seasons();
    seasons[0]["episodes"][0]["watched"] = json!(true);
    seasons[0]["episodes"][0]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    let office = h.add_show(Some(2316), "The Office", seasons.clone()).await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success);
    assert_eq!(outcome.action.as_deref(), Some("already_watched"));
    assert_eq!(h.seasons(office).await, seasons);
}

#[tokio::test]
async fn another_accounts_play_is_ignored_unless_allowed() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(fixtures::plex_other_account_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Ignored);
    let logs = h.logs().await;
    assert_eq!(logs[0].status, "ignored");
    assert!(
        logs[0].error.as_deref().unwrap().contains("bob"),
        "{logs:?}"
    );
    assert_eq!(h.seasons(office).await, office_seasons());
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());

    // A household member on the allowlist counts.
    h.configure(json!({"allowed_accounts": ["Bob"]})).await;
    let outcome = h.process(fixtures::plex_other_account_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
}

#[tokio::test]
async fn config_gates_ignore_with_a_reason() {
    let h = harness().await;
    h.query("DELETE FROM plex_config").await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(
        (o.status, o.reason.as_deref()),
        (
            LogStatus::Ignored,
            Some("Plex integration is not configured")
        )
    );
    h.configure(json!({"enabled": false})).await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(o.reason.as_deref(), Some("Plex integration is disabled"));
    h.configure(json!({"auto_mark_watched": false})).await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(o.reason.as_deref(), Some("auto-mark watched is off"));
    assert_eq!(
        h.count("SELECT count(*) FROM plex_webhook_logs WHERE status = 'ignored'")
            .await,
        3
    );
    assert_eq!(
        h.count(
            "SELECT count(*) FROM plex_config WHERE last_webhook_received = '2025-11-28T15:00:00Z'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn redelivered_message_is_a_duplicate_and_changes_nothing() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();

    let first = processor::handle_batch(&h.state, sqs_event(&[("m-1", body.clone(), 1)])).await;
    assert!(first.batch_item_failures.is_empty());
    let after_first = h
        .query(&format!(
            "SELECT seasons, updated_at, watched_episodes FROM tvshows WHERE id = {office}"
        ))
        .await;
    // Redelivery (SQS at-least-once), then the same payload replayed as a new message.
    let second = processor::handle_batch(
        &h.state,
        sqs_event(&[("m-1", body.clone(), 2), ("m-2", body, 1)]),
    )
    .await;
    assert!(second.batch_item_failures.is_empty());
    let after_second = h
        .query(&format!(
            "SELECT seasons, updated_at, watched_episodes FROM tvshows WHERE id = {office}"
        ))
        .await;
    assert_eq!(
        after_first[0].get::<_, Value>(0),
        after_second[0].get::<_, Value>(0)
    );
    assert_eq!(
        after_first[0].get::<_, DateTime<Utc>>(1),
        after_second[0].get::<_, DateTime<Utc>>(1)
    );
    assert_eq!(after_second[0].get::<_, i32>(2), 1);
    let logs = h.logs().await;
    let statuses: Vec<&str> = logs.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["success", "duplicate", "duplicate"]);
    assert_eq!(logs[1].receive_count, Some(2));
    assert_eq!(logs[1].message_id.as_deref(), Some("m-1"));
    assert_eq!(
        h.count("SELECT count(*) FROM plex_processed_messages")
            .await,
        1
    );
}

#[tokio::test]
async fn missing_episode_refreshes_its_season_once_else_fails_clearly() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;
    let mut stale = office_seasons();
    // Stored data stops at episode 4.
    stale[0]["episodes"].as_array_mut().unwrap().truncate(4);
    stale[0]["episodes"][0]["watched"] = json!(true);
    stale[0]["episodes"][0]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    let office = h.add_show(Some(2316), "The Office", stale).await;
    let mut e6 = fixtures::plex_episode_scrobble();
    e6["Metadata"]["index"] = 6.into();
    e6["Metadata"]["ratingKey"] = "48218".into();

    let outcome = h.process(e6).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    let seasons = h.seasons(office).await;
    assert_eq!(episode(&seasons, 1, 6)["watched"], true);
    assert_eq!(episode(&seasons, 1, 5)["watched"], false);
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2019-05-01T20:00:00.000Z"
    );
    let counts = &h
        .query(&format!(
            "SELECT watched_episodes, total_episodes FROM tvshows WHERE id = {office}"
        ))
        .await[0];
    assert_eq!((counts.get::<_, i32>(0), counts.get::<_, i32>(1)), (2, 6));

    let mut e99 = fixtures::plex_episode_scrobble();
    e99["Metadata"]["index"] = 99.into();
    e99["Metadata"]["ratingKey"] = "48299".into();
    let outcome = h.process(e99).await;
    assert_eq!(outcome.status, LogStatus::Failed);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains("S01E99") && reason.contains("TMDB"),
        "{reason}"
    );
    assert_eq!(h.logs().await.last().unwrap().status, "failed");
    assert_eq!(
        h.tmdb_requests("/3/tv/2316/season/1").await,
        2,
        "one refresh per message"
    );
}

#[tokio::test]
async fn specials_season_zero_is_marked_like_any_season() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let mut seasons = office_seasons();
    seasons.as_array_mut().unwrap().insert(
        0,
        json!({"seasonNumber": 0, "episodes": [{"episodeNumber": 1, "title": "The Accountants", "airDate": "2006-07-13", "watched": false, "dateWatched": null}]}),
    );
    let office = h.add_show(Some(2316), "The Office", seasons).await;
    // Map the show with S01E01 first, then the special (no Guid ids needed once mapped).
    h.process(fixtures::plex_episode_scrobble()).await;
    let mut special = office_episode(1);
    special["Metadata"]["parentIndex"] = 0.into();
    special["Metadata"]["ratingKey"] = "49001".into();
    let outcome = h.process(special).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(episode(&h.seasons(office).await, 0, 1)["watched"], true);
}

#[tokio::test]
async fn deleted_tracker_show_disables_sync_and_is_never_auto_added_again() {
    let h = harness().await;
    stub_office_for_auto_add(&h).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    assert_eq!(
        h.process(fixtures::plex_episode_scrobble()).await.status,
        LogStatus::Success
    );
    h.query(&format!("DELETE FROM tvshows WHERE id = {office}"))
        .await;

    let outcome = h.process(office_episode(2)).await;
    assert_eq!(outcome.status, LogStatus::Ignored);
    assert!(outcome.reason.unwrap().contains("sync disabled"));
    assert_eq!(h.count("SELECT count(*) FROM tvshows").await, 0);
    assert_eq!(mapping(&h).await, (None, "tvdb_id".into(), 0.95, false));
}

// ---------------------------------------------------------------------------------------------
// Concurrency, failures, the SQS handler
// ---------------------------------------------------------------------------------------------

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
    let ids: Vec<String> = (0..messages.len()).map(|i| format!("c-{i}")).collect();
    let results = futures_util::future::join_all(
        messages
            .iter()
            .zip(&ids)
            .map(|(m, id)| process_message(&h.state, m, id, Some(1))),
    )
    .await;
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
    let ids: Vec<String> = (0..messages.len()).map(|i| format!("c-{i}")).collect();
    let results = futures_util::future::join_all(
        messages
            .iter()
            .zip(&ids)
            .map(|(m, id)| process_message(&h.state, m, id, Some(1))),
    )
    .await;
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
    let response = processor::handle_batch(&down, sqs_event(&[("m-down", body, 1)])).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-down"]);
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
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.tmdb)
        .await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response = processor::handle_batch(&h.state, sqs_event(&[("m-503", body, 1)])).await;
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
    let response = processor::handle_batch(
        &h.state,
        sqs_event(&[("m-bad", "{\"version\": 1, \"event\": 42}".to_string(), 3)]),
    )
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
    let response = processor::handle_batch(
        &h.state,
        sqs_event(&[("m-a", first, 4), ("m-b", second, 1)]),
    )
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
                .set_delay(Duration::from_secs(3))
                .set_body_json(fixtures::plex_server_show_the_office()),
        )
        .mount(&plex)
        .await;
    h.configure(json!({"plex_server_url": plex.uri()})).await;
    stub_search(&h, json!({"page": 1, "results": []})).await;
    let msg = message(office_scrobble_with_guids(&[]));

    let first = process_message(&h.state, &msg, "m-t", Some(1)).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);

    let later = process_message(&h.state, &msg, "m-t", Some(3))
        .await
        .unwrap();
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

/// FIFO: after a record that must be retried, the rest of the batch is not processed and is
/// returned for retry as well, so no later event overtakes it.
#[tokio::test]
async fn records_after_a_transient_failure_are_returned_unprocessed() {
    let h = harness().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.tmdb)
        .await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let response = processor::handle_batch(
        &h.state,
        sqs_event(&[("m-1", body, 1), ("m-2", "not json".to_string(), 1)]),
    )
    .await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-1", "m-2"]);
    // m-2 would have been logged `failed` had it been processed.
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 0);
}
