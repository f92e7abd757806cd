//! `conflicts` handler against real Postgres and moto Secrets Manager.

use std::sync::Arc;

use chrono::{Duration, SecondsFormat, TimeZone, Utc};
use conflicts::{handle, State};
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::{authed, json, request, API_TOKEN},
    crypto::{generate_key_hex, Keyring},
    payload::{Decision, WebhookPayload},
    pipeline::{KeySource, Pipeline},
    plex::PlexServerClient,
    queue::QueueMessage,
    testing::{fixtures, fresh_db, moto_config, TestDb},
    tmdb::{RetryPolicy, SeasonDetails, TmdbClient},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, MockServer, ResponseTemplate,
};

const SERVER: &str = "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f";
const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c5b4a";
/// `lastViewedAt` of the fixture scrobbles, as the tracker stores it.
fn fixture_viewed_at() -> String {
    Utc.timestamp_opt(1764339000, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn tmdb_client(uri: &str) -> TmdbClient {
    TmdbClient::with_options(
        &plexsync::env::TmdbConfig {
            base_url: uri.parse().unwrap(),
            token: SecretString::from("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0In0.c2ln".to_string()),
        },
        RetryPolicy {
            max_attempts: 2,
            base_delay: std::time::Duration::from_millis(10),
            max_delay: std::time::Duration::from_millis(20),
            max_retry_after: std::time::Duration::from_secs(1),
        },
        40,
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}

/// The Office season 1 in the tracker's shape (six episodes, none watched).
fn office_seasons() -> Value {
    let season: SeasonDetails =
        serde_json::from_value(fixtures::tmdb_the_office_season_1()).unwrap();
    json!([plexsync::episodes::season_from_tmdb(&season)])
}

struct Harness {
    state: State,
    db: TestDb,
    tmdb: MockServer,
    office_show: i32,
    office_uk_show: i32,
    /// "The Office" (2005) from the fixture scrobble: US or UK? Two pending scrobbles.
    office: i32,
    /// Game of Thrones, older, no candidates.
    got: i32,
}

fn queued(payload: Value) -> Value {
    let (p, raw) = WebhookPayload::from_json(payload.to_string().as_bytes()).unwrap();
    let Decision::Process(event) = p.decide().unwrap() else {
        panic!("fixture is processable")
    };
    serde_json::to_value(QueueMessage::new(*event, raw, Utc::now(), None, None)).unwrap()
}

impl Harness {
    async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let tmdb = MockServer::start().await;
        let keyring =
            Arc::new(Keyring::from_secret(&SecretString::from(generate_key_hex())).unwrap());
        let pipeline = Pipeline {
            pool: db.pool.clone(),
            tmdb: tmdb_client(&tmdb.uri()),
            plex: PlexServerClient::with_timeout(std::time::Duration::from_millis(500)).unwrap(),
            keys: KeySource::Fixed(keyring.clone()),
        };
        let c = db.pool.get().await.unwrap();
        // The integration as the config function saves it (the processor reads it on replay).
        c.execute(
            "INSERT INTO plex_config (user_id, plex_token, plex_server_uuid, plex_account_id,
                                      plex_account_name, enabled, auto_add_shows, auto_mark_watched)
             VALUES (1, $1, $2, 1, 'alice', true, true, true)",
            &[
                &keyring.encrypt(&SecretString::from(PLEX_TOKEN.to_string())),
                &SERVER,
            ],
        )
        .await
        .unwrap();
        let office_show: i32 = c
            .query_one(
                "INSERT INTO tvshows (tmdb_id, title, show_start_date, seasons, total_episodes)
                 VALUES (2316, 'The Office', '2005-03-24', $1, 6) RETURNING id",
                &[&office_seasons()],
            )
            .await
            .unwrap()
            .get(0);
        let office_uk_show: i32 = c
            .query_one(
                "INSERT INTO tvshows (tmdb_id, title, show_start_date) VALUES (2996, 'The Office', '2001-07-09') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        let now = Utc::now();
        let got: i32 = c
            .query_one(
                "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                        conflict_type, created_at)
                 VALUES ('0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d', '1199', 'com.plexapp.agents.thetvdb://121361?lang=en',
                         'Game of Thrones', NULL, 'no_match', $1) RETURNING id",
                &[&(now - Duration::hours(2))],
            )
            .await
            .unwrap()
            .get(0);
        let matches = json!([
            {"tvshowId": office_show, "title": "The Office", "tmdbId": 2316, "matchScore": 0.85, "source": "title"},
            {"tvshowId": office_uk_show, "title": "The Office", "tmdbId": 2996, "matchScore": 0.85, "source": "title"}
        ]);
        let office: i32 = c
            .query_one(
                "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                        conflict_type, potential_matches, created_at)
                 VALUES ($1, '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', NULL,
                         'multiple_matches', $2, $3) RETURNING id",
                &[&SERVER, &matches, &now],
            )
            .await
            .unwrap()
            .get(0);
        let pilot = queued(fixtures::plex_episode_scrobble());
        let mut second = fixtures::plex_episode_scrobble();
        second["Metadata"]["ratingKey"] = json!("48214");
        second["Metadata"]["index"] = json!(2);
        second["Metadata"]["title"] = json!("Diversity Day");
        second["Metadata"]["Guid"] =
            json!([{"id": "imdb://tt0664514"}, {"id": "tmdb://397628"}, {"id": "tvdb://110414"}]);
        for message in [pilot, queued(second)] {
            let key = QueueMessage::from_body(&message.to_string())
                .unwrap()
                .idempotency_key();
            c.execute(
                "INSERT INTO plex_pending_events (conflict_id, idempotency_key, message) VALUES ($1, $2, $3)",
                &[&office, &key, &message],
            )
            .await
            .unwrap();
        }
        // Already resolved: never listed.
        c.execute(
            "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title, conflict_type,
                    resolved, resolved_at, resolution_action)
             VALUES ($1, '3120', 'plex://show/5d9c08544eefaa001f5daa50', 'Breaking Bad', 'no_match', true, now(), 'ignored')",
            &[&SERVER],
        )
        .await
        .unwrap();
        drop(c);
        Self {
            state: State { api, pipeline },
            db,
            tmdb,
            office_show,
            office_uk_show,
            office,
            got,
        }
    }

    async fn call(&self, req: Request) -> Response<Body> {
        handle(&self.state, req).await
    }

    async fn resolve(&self, id: impl std::fmt::Display, body: Value) -> Response<Body> {
        self.call(authed(
            "POST",
            &format!("/api/plex/conflicts/{id}/resolve"),
            Some(body),
        ))
        .await
    }

    async fn conflict_row(&self, id: i32) -> tokio_postgres::Row {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT resolved, resolution_action, resolved_tvshow_id, resolved_at IS NOT NULL
                   FROM plex_conflicts WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
    }

    async fn mappings(&self) -> Vec<tokio_postgres::Row> {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query(
                "SELECT id, plex_rating_key, tvshow_id, match_method, match_confidence::float8,
                        manually_confirmed, sync_enabled, tmdb_id, plex_title
                   FROM plex_show_mappings ORDER BY id",
                &[],
            )
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn list_shows_open_conflicts_newest_first_with_matches() {
    let h = Harness::new().await;
    let resp = h.call(authed("GET", "/api/plex/conflicts", None)).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let list = body["conflicts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "the resolved one is not listed");
    assert_eq!(list[0]["id"], h.office);
    assert_eq!(list[1]["id"], h.got);
    let office = &list[0];
    assert_eq!(office["plexTitle"], "The Office");
    assert_eq!(office["conflictType"], "multiple_matches");
    assert_eq!(office["pendingEvents"], 2);
    let matches = office["potentialMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[0]["tvshowId"], h.office_show);
    assert_eq!(matches[0]["tmdbId"], 2316);
    assert_eq!(matches[0]["matchScore"], 0.85);
    assert!(office["createdAt"].as_str().is_some());
    assert_eq!(list[1]["potentialMatches"], json!([]));
    assert_eq!(body["nextCursor"], Value::Null);

    let first = json(
        &h.call(authed("GET", "/api/plex/conflicts?limit=1", None))
            .await,
    );
    assert_eq!(first["conflicts"][0]["id"], h.office);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = json(
        &h.call(authed(
            "GET",
            &format!("/api/plex/conflicts?limit=1&cursor={cursor}"),
            None,
        ))
        .await,
    );
    assert_eq!(second["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(second["conflicts"][0]["id"], h.got);
    assert_eq!(second["nextCursor"], Value::Null);
    for bad in ["limit=x", "cursor=abc"] {
        let resp = h
            .call(authed("GET", &format!("/api/plex/conflicts?{bad}"), None))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn select_resolves_maps_and_reports_pending_events_then_409() {
    let h = Harness::new().await;
    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["conflictId"], h.office);
    assert_eq!(body["action"], "select");
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["replay"]["pending"], 2);
    assert_eq!(body["replay"]["replayed"], 2, "{body}");

    let row = h.conflict_row(h.office).await;
    assert!(row.get::<_, bool>(0));
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("user_selected")
    );
    assert_eq!(row.get::<_, Option<i32>>(2), Some(h.office_show));
    assert!(row.get::<_, bool>(3));

    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    let m = &mappings[0];
    assert_eq!(body["mappingId"], m.get::<_, i32>(0));
    assert_eq!(m.get::<_, String>(1), "48200");
    assert_eq!(m.get::<_, Option<i32>>(2), Some(h.office_show));
    assert_eq!(m.get::<_, Option<String>>(3).as_deref(), Some("manual"));
    assert_eq!(m.get::<_, Option<f64>>(4), Some(1.0));
    assert!(m.get::<_, bool>(5));
    assert!(m.get::<_, bool>(6));
    assert_eq!(m.get::<_, Option<i32>>(7), Some(2316));

    let again = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_uk_show}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(json(&again)["error"], "conflict");
    assert_eq!(
        h.mappings().await[0].get::<_, Option<i32>>(2),
        Some(h.office_show),
        "unchanged"
    );

    let listed = json(&h.call(authed("GET", "/api/plex/conflicts", None)).await);
    assert_eq!(listed["conflicts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn select_updates_an_existing_mapping_instead_of_adding_one() {
    let h = Harness::new().await;
    let existing: i32 = h
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title, match_method, match_confidence, sync_enabled)
             VALUES ($1, '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', 'fuzzy', 0.62, false) RETURNING id",
            &[&SERVER],
        )
        .await
        .unwrap()
        .get(0);
    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_uk_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["mappingId"], existing);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_uk_show));
    assert_eq!(
        mappings[0].get::<_, Option<String>>(3).as_deref(),
        Some("manual")
    );
    assert!(mappings[0].get::<_, bool>(6), "sync back on");
}

#[tokio::test]
async fn select_moves_a_mapping_found_by_guid_to_the_new_rating_key() {
    let h = Harness::new().await;
    // The show was re-added to the library: same guid, old rating key.
    let existing: i32 = h
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title)
             VALUES ($1, '31000', 'plex://show/5d9c086c46115600200aa2fe', 'The Office') RETURNING id",
            &[&SERVER],
        )
        .await
        .unwrap()
        .get(0);
    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["mappingId"], existing);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, String>(1), "48200");
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_show));
}

#[tokio::test]
async fn ignore_resolves_and_keeps_the_show_from_syncing() {
    let h = Harness::new().await;
    let resp = h.resolve(h.got, json!({"action": "ignore"})).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["action"], "ignore");
    assert_eq!(body["tvshowId"], Value::Null);
    assert_eq!(body["replay"]["pending"], 0);
    let row = h.conflict_row(h.got).await;
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("ignored"));
    assert_eq!(row.get::<_, Option<i32>>(2), None);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, String>(1), "1199");
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), None);
    assert!(!mappings[0].get::<_, bool>(6), "sync off");
    assert_eq!(
        h.resolve(h.got, json!({"action": "ignore"})).await.status(),
        409
    );
}

#[tokio::test]
async fn concurrent_resolves_succeed_once() {
    let h = Harness::new().await;
    let a = h.resolve(
        h.office,
        json!({"action": "select", "tvshowId": h.office_show}),
    );
    let b = h.resolve(h.office, json!({"action": "ignore"}));
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(h.mappings().await.len(), 1);
}

#[tokio::test]
async fn unknown_ids_shows_and_bad_bodies_change_nothing() {
    let h = Harness::new().await;
    let office = h.office.to_string();
    let cases: Vec<(String, Body, u16, &str)> = vec![
        (
            "999999".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            404,
            "conflict 999999",
        ),
        (
            "abc".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            400,
            "positive integer",
        ),
        (
            "-1".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            400,
            "positive integer",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": 424242}).to_string()),
            422,
            "tvshow 424242",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select"}).to_string()),
            422,
            "tvshowId is required",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": 0}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": "7"}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(json!({"tvshowId": 7}).to_string()),
            400,
            "action",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "merge"}).to_string()),
            400,
            "action",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "ignore", "reason": "dupe", "note": 1}).to_string()),
            400,
            "note, reason",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "ignore", "tvshowId": 3}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(
                json!({"action": "create_new", "createNew": {"tmdbId": 2316, "x": 1}}).to_string(),
            ),
            400,
            "createNew",
        ),
        (office.clone(), Body::from("not json"), 400, "JSON"),
        (office.clone(), Body::Empty, 400, "empty"),
        (
            office.clone(),
            Body::from(format!(
                "{{\"action\":\"ignore\",\"pad\":\"{}\"}}",
                "z".repeat(70_000)
            )),
            413,
            "larger",
        ),
    ];
    for (id, body, status, word) in cases {
        let resp = h
            .call(request(
                "POST",
                &format!("/api/plex/conflicts/{id}/resolve"),
                Some(API_TOKEN),
                body,
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{id}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{word}: {j}");
    }
    assert!(
        !h.conflict_row(h.office).await.get::<_, bool>(0),
        "still open"
    );
    assert!(h.mappings().await.is_empty());
}

impl Harness {
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

    /// (replayed_at set) per pending event of the conflict, in id order.
    async fn pending_replayed(&self, conflict: i32) -> Vec<bool> {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query(
                "SELECT replayed_at IS NOT NULL FROM plex_pending_events WHERE conflict_id = $1 ORDER BY id",
                &[&conflict],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn logs(&self) -> Vec<(String, Option<String>, Option<i32>)> {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query(
                "SELECT status, action_taken, tvshow_id FROM plex_webhook_logs ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn stub_tmdb(&self, at: &str, status: u16, body: Value) {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.tmdb)
            .await;
    }

    async fn show_count(&self) -> i64 {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query_one("SELECT count(*) FROM tvshows", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn episode(seasons: &Value, season: i64, number: i64) -> Value {
    seasons
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seasonNumber"] == season)
        .unwrap()["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["episodeNumber"] == number)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn select_replays_pending_scrobbles_and_marks_the_episodes() {
    let h = Harness::new().await;
    // S01E02 was already watched by hand: its date must survive the replay.
    let mut seasons = office_seasons();
    seasons[0]["episodes"][1]["watched"] = json!(true);
    seasons[0]["episodes"][1]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    h.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE tvshows SET seasons = $2, watched_episodes = 1 WHERE id = $1",
            &[&h.office_show, &seasons],
        )
        .await
        .unwrap();

    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["pending"], 2, "{body}");
    assert_eq!(replay["replayed"], 2);
    assert_eq!(replay["marked"], 1);
    assert_eq!(replay["alreadyWatched"], 1);
    assert_eq!(replay["failed"], 0);
    assert_eq!(replay["stillPending"], 0);
    assert_eq!(replay["markedEpisodes"], json!(["S01E01"]));
    let events = replay["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status"], "success");
    assert_eq!(events[0]["action"], "marked_watched");
    assert_eq!(
        (events[0]["season"].clone(), events[0]["episode"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(events[1]["action"], "already_watched");
    assert_eq!(replay["note"], Value::Null);

    let seasons = h.seasons(h.office_show).await;
    let pilot = episode(&seasons, 1, 1);
    assert_eq!(pilot["watched"], true);
    assert_eq!(pilot["dateWatched"], fixture_viewed_at().as_str());
    let diversity = episode(&seasons, 1, 2);
    assert_eq!(diversity["dateWatched"], "2019-05-01T20:00:00.000Z");
    assert_eq!(episode(&seasons, 1, 3)["watched"], false);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
    // The processor logged each replay, against the selected show.
    let logs = h.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(logs
        .iter()
        .all(|(status, _, show)| status == "success" && *show == Some(h.office_show)));
    assert_eq!(logs[0].1.as_deref(), Some("marked_watched"));
    // Nothing calls TMDB when the show's seasons already hold the episodes.
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_transient_failure_keeps_the_events_pending() {
    let h = Harness::new().await;
    // The show's seasons are empty, so marking needs TMDB's season 1, and TMDB is down.
    h.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE tvshows SET seasons = '[]' WHERE id = $1",
            &[&h.office_show],
        )
        .await
        .unwrap();
    h.stub_tmdb(
        "/3/tv/2316/season/1",
        503,
        json!({"status_code": 11, "status_message": "Internal error."}),
    )
    .await;
    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_show}),
        )
        .await;
    assert_eq!(resp.status(), 200, "the resolution itself stands");
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["replayed"], 0, "{body}");
    assert_eq!(replay["stillPending"], 2);
    assert_eq!(replay["marked"], 0);
    let events = replay["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["status"] == "pending"));
    assert!(
        events[0]["reason"].as_str().unwrap().contains("TMDB"),
        "{body}"
    );
    let note = replay["note"].as_str().unwrap();
    assert!(
        note.contains("2 event(s)") && note.contains("kept"),
        "{note}"
    );
    // Kept for a retry: not marked replayed, nothing logged, nothing marked.
    assert_eq!(h.pending_replayed(h.office).await, vec![false, false]);
    assert!(h.logs().await.is_empty());
    assert_eq!(h.seasons(h.office_show).await, json!([]));
    assert!(h.conflict_row(h.office).await.get::<_, bool>(0));
}

#[tokio::test]
async fn create_new_creates_the_show_from_tmdb_maps_it_and_replays() {
    let h = Harness::new().await;
    // The tracker does not have The Office (US) yet.
    h.db.pool
        .get()
        .await
        .unwrap()
        .execute("DELETE FROM tvshows WHERE id = $1", &[&h.office_show])
        .await
        .unwrap();
    h.stub_tmdb("/3/tv/2316", 200, fixtures::tmdb_the_office())
        .await;
    h.stub_tmdb(
        "/3/tv/2316/season/1",
        200,
        fixtures::tmdb_the_office_season_1(),
    )
    .await;
    let mut season_2 = fixtures::tmdb_the_office_season_1();
    season_2["season_number"] = json!(2);
    season_2["id"] = json!(3628);
    season_2["episodes"] = json!([
        {"id": 397633, "episode_number": 1, "season_number": 2, "name": "The Dundies", "air_date": "2005-09-20"},
        {"id": 397634, "episode_number": 2, "season_number": 2, "name": "Sexual Harassment", "air_date": "2005-09-27"}
    ]);
    h.stub_tmdb("/3/tv/2316/season/2", 200, season_2).await;
    // Specials listed but not served: skipped, not fatal.
    h.stub_tmdb("/3/tv/2316/season/0", 404, json!({"status_code": 34, "status_message": "The resource you requested could not be found."}))
        .await;

    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 2316}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["action"], "create_new");
    let created = &body["createdShow"];
    assert_eq!(created["created"], true, "{body}");
    assert_eq!(created["tmdbId"], 2316);
    assert_eq!(created["title"], "The Office");
    let new_id = created["tvshowId"].as_i64().unwrap() as i32;
    assert_ne!(new_id, h.office_show);
    assert_eq!(body["tvshowId"], new_id);

    let row = h
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT tmdb_id, title, show_start_date::text, source, total_episodes, watched_episodes
               FROM tvshows WHERE id = $1",
            &[&new_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(2316));
    assert_eq!(row.get::<_, String>(1), "The Office");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("2005-03-24")
    );
    assert_eq!(row.get::<_, String>(3), "plex");
    assert_eq!(row.get::<_, i32>(4), 8);
    assert_eq!(row.get::<_, i32>(5), 2, "both pending scrobbles marked");

    let conflict = h.conflict_row(h.office).await;
    assert!(conflict.get::<_, bool>(0));
    assert_eq!(
        conflict.get::<_, Option<String>>(1).as_deref(),
        Some("user_created_new")
    );
    assert_eq!(conflict.get::<_, Option<i32>>(2), Some(new_id));
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(body["mappingId"], mappings[0].get::<_, i32>(0));
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(new_id));
    assert_eq!(
        mappings[0].get::<_, Option<String>>(3).as_deref(),
        Some("user_created_new")
    );
    assert_eq!(mappings[0].get::<_, Option<i32>>(7), Some(2316));

    assert_eq!(body["replay"]["marked"], 2, "{body}");
    assert_eq!(
        body["replay"]["markedEpisodes"],
        json!(["S01E01", "S01E02"])
    );
    let seasons = h.seasons(new_id).await;
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        fixture_viewed_at().as_str()
    );
    assert_eq!(episode(&seasons, 1, 2)["watched"], true);
    assert_eq!(episode(&seasons, 2, 1)["watched"], false);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
}

#[tokio::test]
async fn create_new_uses_the_tracker_show_that_has_the_tmdb_id() {
    let h = Harness::new().await;
    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 2316}}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["createdShow"]["created"], false);
    assert_eq!(body["createdShow"]["tvshowId"], h.office_show);
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["replay"]["marked"], 2);
    assert_eq!(h.show_count().await, 2, "no show added");
    assert!(
        h.tmdb.received_requests().await.unwrap().is_empty(),
        "TMDB not needed"
    );
    assert_eq!(
        h.conflict_row(h.office)
            .await
            .get::<_, Option<String>>(1)
            .as_deref(),
        Some("user_created_new")
    );
}

#[tokio::test]
async fn create_new_errors_leave_the_conflict_open() {
    let h = Harness::new().await;
    h.stub_tmdb("/3/tv/99999999", 404, json!({"status_code": 34, "status_message": "The resource you requested could not be found."}))
        .await;
    h.stub_tmdb(
        "/3/tv/1399",
        500,
        json!({"status_code": 11, "status_message": "Internal error."}),
    )
    .await;
    let before = h.show_count().await;

    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 99999999}}),
        )
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "TMDB has no show 99999999");

    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 1399}}),
        )
        .await;
    assert_eq!(resp.status(), 502);
    let j = json(&resp);
    assert_eq!(j["error"], "bad_gateway");
    assert!(j["message"].as_str().unwrap().contains("TMDB"), "{j}");

    // An id the tracker's int4 column cannot hold is no show either (and costs no call).
    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 9_999_999_999i64}}),
        )
        .await;
    assert_eq!(resp.status(), 422);

    assert_eq!(
        h.resolve(h.office, json!({"action": "create_new"}))
            .await
            .status(),
        422
    );
    assert_eq!(
        h.resolve(
            999999,
            json!({"action": "create_new", "createNew": {"tmdbId": 2316}})
        )
        .await
        .status(),
        404
    );
    h.resolve(h.got, json!({"action": "ignore"})).await;
    let requests = h.tmdb.received_requests().await.unwrap().len();
    assert_eq!(
        h.resolve(
            h.got,
            json!({"action": "create_new", "createNew": {"tmdbId": 1399}})
        )
        .await
        .status(),
        409
    );
    assert_eq!(
        h.tmdb.received_requests().await.unwrap().len(),
        requests,
        "a resolved conflict costs no TMDB call"
    );
    assert!(
        !h.conflict_row(h.office).await.get::<_, bool>(0),
        "still open"
    );
    assert_eq!(h.show_count().await, before);
    assert!(h
        .mappings()
        .await
        .iter()
        .all(|m| m.get::<_, String>(1) != "48200"));
    assert_eq!(h.pending_replayed(h.office).await, vec![false, false]);
}

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    for (m, p) in plexsync::api::routes::CONFLICTS {
        let uri = p.replace("{id}", &h.office.to_string());
        let body = if *m == "POST" {
            Body::from(json!({"action": "select", "tvshowId": h.office_show}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token")] {
            let resp = h.call(request(m, &uri, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {uri} {auth:?}");
            assert_eq!(json(&resp)["error"], "unauthorized");
        }
    }
    assert!(!h.conflict_row(h.office).await.get::<_, bool>(0));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("DELETE", "/api/plex/conflicts", None)).await;
    assert_eq!(resp.status(), 405);
    let resp = h.call(authed("GET", "/api/plex/conflicts/1", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["status"], "error");
}
