//! Harness: the mappings function over a fresh database holding The Office and Game of Thrones,
//! mappings for three Plex shows, and a wiremock Plex Media Server (plain http, so the stored
//! configuration allows it).

use std::time::Duration;

use lambda_http::{Body, Request, Response};
use mappings::{handle, State};
use plexsync::{
    api::testing::{authed, json},
    crypto::{generate_key_hex, Keyring},
    plex::PlexServerClient,
    testing::{fixtures, fresh_db, moto_config, TestDb},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::MockServer;

pub const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c5b4a";

pub struct Harness {
    pub state: State,
    pub db: TestDb,
    /// The user's Plex Media Server.
    pub plex: MockServer,
    pub office_show: i32,
    pub got_show: i32,
    pub office: i32,
    pub got: i32,
    pub breaking_bad: i32,
    /// The encryption key the stored token was sealed with.
    pub key_hex: String,
}

impl Harness {
    /// The tracker has The Office and Game of Thrones; Plex knows three shows: The Office
    /// (mapped via TVDB), Game of Thrones (unmapped, open conflict) and Breaking Bad
    /// (unmapped, sync off).
    pub async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let key_hex = generate_key_hex();
        let encryption_key_id = plexsync::testing::secret(&sdk, &key_hex).await;
        let keyring = Keyring::from_secret(&SecretString::from(key_hex.clone())).unwrap();
        let plex = MockServer::start().await;
        let c = db.pool.get().await.unwrap();
        c.execute(
            "INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_uuid,
                                      plex_account_id, plex_account_name, allow_insecure_http)
             VALUES (1, $1, $2, $3, 1, 'alice', true)",
            &[
                &keyring.encrypt(&SecretString::from(PLEX_TOKEN.to_string())),
                &plex.uri(),
                &fixtures::server_uuid(),
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
                    &[&fixtures::server_uuid(), &key, &guid, &title, &year, &tvdb, &tvshow, &confidence, &method, &sync],
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
            &[&fixtures::server_uuid(), &json!([{"tvshowId": got_show, "title": "Game of Thrones", "tmdbId": 1399, "matchScore": 0.82, "source": "title"}])],
        )
        .await
        .unwrap();
        drop(c);
        Self {
            state: State {
                api,
                // Generous: the stub answers at once, and a loaded machine must not turn a
                // sync into a timeout. The timeout case sets an impatient client itself.
                plex: PlexServerClient::with_timeout(Duration::from_secs(30)).unwrap(),
                encryption_key_id,
                // Likewise: the budget case sets its own.
                sync_budget: Duration::from_secs(3600),
            },
            db,
            plex,
            office_show,
            got_show,
            office,
            got,
            breaking_bad,
            key_hex,
        }
    }

    pub async fn call(&self, req: Request) -> Response<Body> {
        handle(&self.state, req).await
    }

    pub async fn get(&self, uri: &str) -> Value {
        let resp = self.call(authed("GET", uri, None)).await;
        assert_eq!(resp.status(), 200, "{uri}");
        json(&resp)
    }

    pub async fn row(&self, id: i32) -> tokio_postgres::Row {
        self.db.client().await
            .query_one(
                "SELECT tvshow_id, manually_confirmed, match_method, match_confidence::float8, sync_enabled, tmdb_id
                   FROM plex_show_mappings WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
    }
}

pub fn ids(body: &Value) -> Vec<i64> {
    body["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_i64().unwrap())
        .collect()
}
