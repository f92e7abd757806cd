//! `conflicts` handler against real Postgres and moto Secrets Manager.

use chrono::{Duration, Utc};
use conflicts_fn::{handle, State};
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::{authed, json, request, API_TOKEN},
    payload::{Decision, WebhookPayload},
    queue::QueueMessage,
    testing::{fixtures, fresh_db, moto_config, TestDb},
};
use serde_json::{json, Value};

const SERVER: &str = "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f";

struct Harness {
    state: State,
    db: TestDb,
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
        let c = db.pool.get().await.unwrap();
        let office_show: i32 = c
            .query_one(
                "INSERT INTO tvshows (tmdb_id, title, show_start_date) VALUES (2316, 'The Office', '2005-03-24') RETURNING id",
                &[],
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
            state: State { api },
            db,
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
    assert_eq!(body["replay"]["replayed"], 0);
    assert!(body["replay"]["note"].as_str().is_some());

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

#[tokio::test]
async fn create_new_is_validated_then_answers_501() {
    let h = Harness::new().await;
    let resp = h
        .resolve(
            h.office,
            json!({"action": "create_new", "createNew": {"tmdbId": 2316}}),
        )
        .await;
    assert_eq!(resp.status(), 501);
    assert_eq!(json(&resp)["error"], "not_implemented");
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
    assert_eq!(
        h.resolve(
            h.got,
            json!({"action": "create_new", "createNew": {"tmdbId": 1399}})
        )
        .await
        .status(),
        409
    );
    assert!(
        !h.conflict_row(h.office).await.get::<_, bool>(0),
        "still open"
    );
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
