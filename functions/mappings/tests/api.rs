//! `mappings` handler against real Postgres and moto Secrets Manager.

use std::time::Duration;

use chrono::{SecondsFormat, TimeZone, Utc};
use lambda_http::{Body, Request, Response};
use mappings::{handle, State};
use plexsync::{
    api::testing::{authed, json, request, text},
    crypto::{generate_key_hex, Keyring},
    plex::PlexServerClient,
    testing::{fixtures, fresh_db, moto_config, TestDb},
    tmdb::SeasonDetails,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path},
    Mock, MockServer, ResponseTemplate,
};

const SERVER: &str = "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f";
const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c5b4a";

struct Harness {
    state: State,
    db: TestDb,
    /// The user's Plex Media Server.
    plex: MockServer,
    office_show: i32,
    got_show: i32,
    office: i32,
    got: i32,
    breaking_bad: i32,
}

impl Harness {
    /// The tracker has The Office and Game of Thrones; Plex knows three shows: The Office
    /// (mapped via TVDB), Game of Thrones (unmapped, open conflict) and Breaking Bad
    /// (unmapped, sync off).
    async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let key_hex = generate_key_hex();
        let encryption_key_id = plexsync::testing::secret(&sdk, &key_hex).await;
        let keyring = Keyring::from_secret(&SecretString::from(key_hex)).unwrap();
        let plex = MockServer::start().await;
        let c = db.pool.get().await.unwrap();
        c.execute(
            "INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_uuid,
                                      plex_account_id, plex_account_name)
             VALUES (1, $1, $2, $3, 1, 'alice')",
            &[
                &keyring.encrypt(&SecretString::from(PLEX_TOKEN.to_string())),
                &plex.uri(),
                &SERVER,
            ],
        )
        .await
        .unwrap();
        let show = |tmdb: i32, title: &'static str| {
            let c = &c;
            async move {
                c.query_one(
                    "INSERT INTO tvshows (tmdb_id, title, show_start_date, status)
                     VALUES ($1, $2, '2005-03-24', 'Watching') RETURNING id",
                    &[&tmdb, &title],
                )
                .await
                .unwrap()
                .get::<_, i32>(0)
            }
        };
        let office_show = show(2316, "The Office").await;
        let got_show = show(1399, "Game of Thrones").await;
        let mapping = |key: &'static str,
                       guid: &'static str,
                       title: &'static str,
                       year: i32,
                       tvdb: Option<i32>,
                       tvshow: Option<i32>,
                       confidence: Option<f64>,
                       method: Option<&'static str>,
                       sync: bool| {
            let c = &c;
            async move {
                c.query_one(
                    "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                            plex_year, tvdb_id, tvshow_id, match_confidence, match_method, sync_enabled)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8::numeric, $9, $10) RETURNING id",
                    &[&SERVER, &key, &guid, &title, &year, &tvdb, &tvshow, &confidence, &method, &sync],
                )
                .await
                .unwrap()
                .get::<_, i32>(0)
            }
        };
        let office = mapping(
            "48200",
            "plex://show/5d9c086c46115600200aa2fe",
            "The Office",
            2005,
            Some(73244),
            Some(office_show),
            Some(0.95),
            Some("tvdb"),
            true,
        )
        .await;
        let got = mapping(
            "1199",
            "com.plexapp.agents.thetvdb://121361?lang=en",
            "Game of Thrones",
            2011,
            Some(121361),
            None,
            None,
            None,
            true,
        )
        .await;
        let breaking_bad = mapping(
            "3120",
            "plex://show/5d9c08544eefaa001f5daa50",
            "Breaking Bad",
            2008,
            Some(81189),
            None,
            Some(0.62),
            Some("fuzzy"),
            false,
        )
        .await;
        c.execute(
            "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                    conflict_type, potential_matches)
             VALUES ($1, '1199', 'com.plexapp.agents.thetvdb://121361?lang=en', 'Game of Thrones', 2011,
                    'multiple_matches', $2)",
            &[&SERVER, &json!([{"tvshowId": got_show, "title": "Game of Thrones", "tmdbId": 1399, "matchScore": 0.82, "source": "title"}])],
        )
        .await
        .unwrap();
        drop(c);
        Self {
            state: State {
                api,
                plex: PlexServerClient::with_timeout(Duration::from_millis(700)).unwrap(),
                encryption_key_id,
            },
            db,
            plex,
            office_show,
            got_show,
            office,
            got,
            breaking_bad,
        }
    }

    async fn call(&self, req: Request) -> Response<Body> {
        handle(&self.state, req).await
    }

    async fn get(&self, uri: &str) -> Value {
        let resp = self.call(authed("GET", uri, None)).await;
        assert_eq!(resp.status(), 200, "{uri}");
        json(&resp)
    }

    async fn row(&self, id: i32) -> tokio_postgres::Row {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT tvshow_id, manually_confirmed, match_method, match_confidence::float8, sync_enabled, tmdb_id
                   FROM plex_show_mappings WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
    }
}

fn ids(body: &Value) -> Vec<i64> {
    body["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn list_has_the_seed_fields_and_the_show_title() {
    let h = Harness::new().await;
    let body = h.get("/api/plex/mappings").await;
    assert_eq!(
        ids(&body),
        vec![h.office as i64, h.got as i64, h.breaking_bad as i64]
    );
    let office = &body["mappings"][0];
    assert_eq!(office["plexTitle"], "The Office");
    assert_eq!(office["plexYear"], 2005);
    assert_eq!(office["tvshowId"], h.office_show);
    assert_eq!(office["tvshowTitle"], "The Office");
    assert_eq!(office["matchConfidence"], 0.95);
    assert_eq!(office["matchMethod"], "tvdb");
    assert_eq!(office["syncEnabled"], true);
    assert_eq!(office["conflictId"], Value::Null);
    let got = &body["mappings"][1];
    assert_eq!(got["tvshowId"], Value::Null);
    assert_eq!(got["tvshowTitle"], Value::Null);
    assert!(got["conflictId"].as_i64().is_some());
    assert_eq!(body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn unmapped_and_conflicts_filters() {
    let h = Harness::new().await;
    let body = h.get("/api/plex/mappings?unmapped=true").await;
    assert_eq!(ids(&body), vec![h.got as i64, h.breaking_bad as i64]);
    let body = h.get("/api/plex/mappings?conflicts=true").await;
    assert_eq!(ids(&body), vec![h.got as i64]);
    let body = h.get("/api/plex/mappings?conflicts=1&unmapped=1").await;
    assert_eq!(ids(&body), vec![h.got as i64]);
    let body = h.get("/api/plex/mappings?unmapped=false").await;
    assert_eq!(ids(&body).len(), 3);
    for bad in ["unmapped=maybe", "conflicts=yes", "limit=0", "cursor=%%%"] {
        let resp = h
            .call(authed("GET", &format!("/api/plex/mappings?{bad}"), None))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn pagination_by_id() {
    let h = Harness::new().await;
    let first = h.get("/api/plex/mappings?limit=2").await;
    assert_eq!(ids(&first), vec![h.office as i64, h.got as i64]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = h
        .get(&format!("/api/plex/mappings?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), vec![h.breaking_bad as i64]);
    assert_eq!(second["nextCursor"], Value::Null);
    let filtered = h.get("/api/plex/mappings?unmapped=true&limit=1").await;
    let cursor = filtered["nextCursor"].as_str().unwrap();
    let rest = h
        .get(&format!(
            "/api/plex/mappings?unmapped=true&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), vec![h.breaking_bad as i64]);
}

#[tokio::test]
async fn confirm_maps_manually_with_full_confidence_and_re_enables_sync() {
    let h = Harness::new().await;
    let resp = h
        .call(authed(
            "POST",
            &format!("/api/plex/mappings/{}/confirm", h.breaking_bad),
            Some(json!({"tvshowId": h.got_show})),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["success"], true);
    let m = &body["mapping"];
    assert_eq!(m["id"], h.breaking_bad);
    assert_eq!(m["tvshowId"], h.got_show);
    assert_eq!(m["tvshowTitle"], "Game of Thrones");
    assert_eq!(m["manuallyConfirmed"], true);
    assert_eq!(m["matchMethod"], "manual");
    assert_eq!(m["matchConfidence"], 1.0);
    assert_eq!(m["syncEnabled"], true);
    let row = h.row(h.breaking_bad).await;
    assert_eq!(row.get::<_, Option<i32>>(0), Some(h.got_show));
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("manual"));
    assert_eq!(row.get::<_, Option<f64>>(3), Some(1.0));
    assert!(row.get::<_, bool>(4));
    assert_eq!(
        row.get::<_, Option<i32>>(5),
        Some(1399),
        "the show's TMDB id is recorded"
    );
}

#[tokio::test]
async fn confirm_rejects_unknown_ids_and_bad_bodies_without_changing_anything() {
    let h = Harness::new().await;
    let uri = format!("/api/plex/mappings/{}/confirm", h.got);
    let cases: Vec<(String, Body, u16, &str)> = vec![
        (
            "/api/plex/mappings/999999/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            404,
            "mapping 999999",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": 424242}).to_string()),
            422,
            "tvshow 424242",
        ),
        (
            "/api/plex/mappings/abc/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            400,
            "positive integer",
        ),
        (
            "/api/plex/mappings/0/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            400,
            "positive integer",
        ),
        (uri.clone(), Body::from("{}"), 400, "tvshowId"),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": h.got_show, "force": true}).to_string()),
            400,
            "force",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": "12"}).to_string()),
            400,
            "tvshowId",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": 1.5}).to_string()),
            400,
            "tvshowId",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": -3}).to_string()),
            400,
            "tvshowId",
        ),
        (uri.clone(), Body::from("tvshowId=3"), 400, "JSON"),
        (uri.clone(), Body::Empty, 400, "empty"),
        (
            uri.clone(),
            Body::from(format!(
                "{{\"tvshowId\": 1, \"x\": \"{}\"}}",
                "y".repeat(70_000)
            )),
            413,
            "larger",
        ),
    ];
    for (uri, body, status, word) in cases {
        let resp = h
            .call(request(
                "POST",
                &uri,
                Some(plexsync::api::testing::API_TOKEN),
                body,
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{uri}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{word}: {j}");
    }
    let row = h.row(h.got).await;
    assert_eq!(row.get::<_, Option<i32>>(0), None, "unchanged");
    assert!(!row.get::<_, bool>(1));
}

#[tokio::test]
async fn delete_turns_sync_off_and_keeps_the_mapping() {
    let h = Harness::new().await;
    let resp = h
        .call(authed(
            "DELETE",
            &format!("/api/plex/mappings/{}", h.office),
            None,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["mapping"]["syncEnabled"], false);
    assert_eq!(body["mapping"]["tvshowId"], h.office_show, "mapping kept");
    assert!(!h.row(h.office).await.get::<_, bool>(4));
    assert_eq!(ids(&h.get("/api/plex/mappings").await).len(), 3);
    let resp = h
        .call(authed("DELETE", "/api/plex/mappings/999999", None))
        .await;
    assert_eq!(resp.status(), 404);
    let resp = h
        .call(authed("DELETE", "/api/plex/mappings/the-office", None))
        .await;
    assert_eq!(resp.status(), 400);
}

fn at(unix: i64) -> String {
    Utc.timestamp_opt(unix, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Harness {
    /// Gives The Office its season 1 (six episodes); S01E04 watched by hand in 2019.
    async fn office_season_1(&self) {
        let season: SeasonDetails =
            serde_json::from_value(fixtures::tmdb_the_office_season_1()).unwrap();
        let mut seasons = json!([plexsync::episodes::season_from_tmdb(&season)]);
        seasons[0]["episodes"][3]["watched"] = json!(true);
        seasons[0]["episodes"][3]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .execute(
                "UPDATE tvshows SET seasons = $2, watched_episodes = 1, total_episodes = 6 WHERE id = $1",
                &[&self.office_show, &seasons],
            )
            .await
            .unwrap();
    }

    async fn office_episodes(&self) -> (Vec<Value>, i32) {
        let row = self
            .db
            .pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT seasons, watched_episodes FROM tvshows WHERE id = $1",
                &[&self.office_show],
            )
            .await
            .unwrap();
        let seasons: Value = row.get(0);
        (
            seasons[0]["episodes"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            row.get(1),
        )
    }

    async fn serve_leaves(&self, response: ResponseTemplate) {
        self.plex.reset().await;
        Mock::given(method("GET"))
            .and(path("/library/metadata/48200/allLeaves"))
            .and(header("x-plex-token", PLEX_TOKEN))
            .and(header("accept", "application/json"))
            .respond_with(response)
            .mount(&self.plex)
            .await;
    }

    async fn sync(&self, id: i32) -> Response<Body> {
        let resp = self
            .call(authed(
                "POST",
                &format!("/api/plex/mappings/{id}/sync"),
                None,
            ))
            .await;
        assert!(
            !text(&resp).contains(PLEX_TOKEN),
            "token leaked: {}",
            text(&resp)
        );
        resp
    }

    async fn set_config(&self, sql: &str) {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .execute(sql, &[])
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn sync_marks_what_plex_has_watched_and_keeps_manual_dates() {
    let h = Harness::new().await;
    h.office_season_1().await;
    h.serve_leaves(
        ResponseTemplate::new(200).set_body_json(fixtures::plex_server_office_all_leaves()),
    )
    .await;

    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["mappingId"], h.office);
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["watchedInPlex"], 4);
    assert_eq!(body["marked"], 2);
    assert_eq!(body["alreadyWatched"], 1);
    assert_eq!(
        body["notInTracker"], 1,
        "S02E01 is not in the tracker's seasons"
    );
    assert_eq!(body["markedEpisodes"], json!(["S01E01", "S01E02"]));

    let (episodes, watched) = h.office_episodes().await;
    assert_eq!(episodes[0]["watched"], true);
    assert_eq!(episodes[0]["dateWatched"], at(1700000000).as_str());
    assert_eq!(episodes[1]["dateWatched"], at(1700086400).as_str());
    assert_eq!(episodes[2]["watched"], false, "only started in Plex");
    assert_eq!(
        episodes[3]["dateWatched"], "2019-05-01T20:00:00.000Z",
        "kept"
    );
    assert_eq!(episodes[4]["watched"], false);
    assert_eq!(watched, 3);

    // Again: nothing new, nothing overwritten.
    let again = json(&h.sync(h.office).await);
    assert_eq!(again["marked"], 0);
    assert_eq!(again["alreadyWatched"], 3);
    assert_eq!(h.office_episodes().await.0, episodes);
}

#[tokio::test]
async fn sync_errors_have_their_statuses_and_change_nothing() {
    let h = Harness::new().await;
    h.office_season_1().await;
    let before = h.office_episodes().await;

    let resp = h.sync(h.got).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        json(&resp)["message"],
        "mapping is not linked to a tracker show"
    );
    assert_eq!(h.sync(999999).await.status(), 404);
    let resp = h
        .call(authed("POST", "/api/plex/mappings/x/sync", None))
        .await;
    assert_eq!(resp.status(), 400);

    // The Plex server rejects the token.
    h.serve_leaves(
        ResponseTemplate::new(401)
            .set_body_string("<html><head><title>Unauthorized</title></head></html>"),
    )
    .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "Plex server rejected the token");

    // The server errors, answers garbage, or is too slow.
    h.serve_leaves(ResponseTemplate::new(500)).await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 502);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("Plex server"));
    h.serve_leaves(ResponseTemplate::new(200).set_body_string("<MediaContainer size=\"0\"/>"))
        .await;
    assert_eq!(h.sync(h.office).await.status(), 502);
    h.serve_leaves(
        ResponseTemplate::new(200)
            .set_body_json(fixtures::plex_server_office_all_leaves())
            .set_delay(Duration::from_secs(3)),
    )
    .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 502);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("did not answer in time"));

    // Unreachable: nothing listens there.
    h.set_config("UPDATE plex_config SET plex_server_url = 'http://127.0.0.1:9'")
        .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 502);
    let body = json(&resp);
    assert_eq!(body["error"], "bad_gateway");
    assert!(
        body["message"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );

    // No server URL, integration disabled, not configured at all.
    h.set_config("UPDATE plex_config SET plex_server_url = NULL")
        .await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("server URL"));
    h.set_config("UPDATE plex_config SET plex_server_url = 'http://127.0.0.1:9', enabled = false")
        .await;
    assert_eq!(h.sync(h.office).await.status(), 422);
    h.set_config("DELETE FROM plex_config").await;
    let resp = h.sync(h.office).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "Plex is not configured");

    // Sync turned off for the show.
    assert_eq!(
        h.call(authed(
            "DELETE",
            &format!("/api/plex/mappings/{}", h.office),
            None
        ))
        .await
        .status(),
        200
    );
    assert_eq!(h.sync(h.office).await.status(), 409);

    assert_eq!(h.office_episodes().await, before, "nothing marked");
}

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    for (m, p) in plexsync::api::routes::MAPPINGS {
        let uri = p.replace("{id}", &h.got.to_string());
        let body = if *m == "POST" {
            Body::from(json!({"tvshowId": h.got_show}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token")] {
            let resp = h.call(request(m, &uri, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {uri} {auth:?}");
            assert_eq!(json(&resp)["error"], "unauthorized");
        }
    }
    let row = h.row(h.got).await;
    assert_eq!(row.get::<_, Option<i32>>(0), None, "nothing changed");
    assert!(row.get::<_, bool>(4));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("PATCH", "/api/plex/mappings/1", None)).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE");
    let resp = h
        .call(authed("GET", "/api/plex/mappings/1/other", None))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["status"], "error");
}
