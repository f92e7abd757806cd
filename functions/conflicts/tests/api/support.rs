//! Harness: the conflicts function over a fresh database holding The Office (US and UK) and
//! Game of Thrones, open conflicts with pending scrobbles, and a wiremock TMDB.

use std::sync::Arc;

use chrono::{Duration, SecondsFormat, TimeZone, Utc};
use conflicts::{handle, requeue::EventQueue, State};
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::authed,
    crypto::{generate_key_hex, Keyring},
    pipeline::{KeySource, Pipeline},
    plex::PlexServerClient,
    queue::QueueMessage,
    testing::{fifo_queue, fixtures, fresh_db, moto_config, TestDb},
    tmdb::{RetryPolicy, SeasonDetails, TmdbClient},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::MockServer;

pub const PLEX_TOKEN: &str = "pLx-tok3n-9f8e7d6c5b4a";
/// `lastViewedAt` of the fixture scrobbles, as the tracker stores it.
pub fn fixture_viewed_at() -> String {
    Utc.timestamp_opt(1764339000, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn tmdb_client(uri: &str) -> TmdbClient {
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
pub fn office_seasons() -> Value {
    let season: SeasonDetails =
        serde_json::from_value(fixtures::tmdb_the_office_season_1()).unwrap();
    json!([plexsync::episodes::season_from_tmdb(&season)])
}

pub struct Harness {
    pub state: State,
    pub db: TestDb,
    pub tmdb: MockServer,
    pub office_show: i32,
    pub office_uk_show: i32,
    /// "The Office" (2005) from the fixture scrobble: US or UK? Two pending scrobbles.
    pub office: i32,
    /// Game of Thrones, older, no candidates.
    pub got: i32,
}

pub fn queued(payload: Value) -> Value {
    serde_json::to_value(plexsync::testing::plex_message(payload, Utc::now())).unwrap()
}

impl Harness {
    pub async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let tmdb = MockServer::start().await;
        let keyring =
            Arc::new(Keyring::from_secret(&SecretString::from(generate_key_hex())).unwrap());
        let pipeline = Pipeline {
            pool: db.pool.clone(),
            tmdb: tmdb_client(&tmdb.uri()),
            plex: PlexServerClient::with_timeout(std::time::Duration::from_secs(30)).unwrap(),
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
                &fixtures::server_uuid(),
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
                &[&fixtures::server_uuid(), &matches, &now],
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
            &[&fixtures::server_uuid()],
        )
        .await
        .unwrap();
        drop(c);
        Self {
            state: State {
                api,
                pipeline,
                // No budget in tests: the one that stops a bulk request is set where tested.
                bulk_budget: std::time::Duration::MAX,
                // Likewise for the replay (an hour: an Instant cannot take Duration::MAX).
                replay_budget: std::time::Duration::from_secs(3600),
                queue: EventQueue {
                    sqs: aws_sdk_sqs::Client::new(&sdk),
                    url: fifo_queue(&sdk).await,
                },
            },
            db,
            tmdb,
            office_show,
            office_uk_show,
            office,
            got,
        }
    }

    pub async fn call(&self, req: Request) -> Response<Body> {
        handle(&self.state, req).await
    }

    pub async fn resolve(&self, id: impl std::fmt::Display, body: Value) -> Response<Body> {
        self.call(authed(
            "POST",
            &format!("/api/plex/conflicts/{id}/resolve"),
            Some(body),
        ))
        .await
    }

    /// The user resolves The Office's conflict by selecting the tracker's The Office.
    pub async fn select_office(&self) -> Response<Body> {
        self.resolve(
            self.office,
            json!({"action": "select", "tvshowId": self.office_show}),
        )
        .await
    }

    /// TMDB's title search for "The Office" (three shows: US, UK, AU).
    pub async fn stub_search(&self) {
        wiremock::Mock::given(wiremock::matchers::method("GET"))
            .and(wiremock::matchers::path("/3/search/tv"))
            .and(wiremock::matchers::query_param("query", "The Office"))
            .respond_with(
                wiremock::ResponseTemplate::new(200)
                    .set_body_json(fixtures::tmdb_search_the_office()),
            )
            .mount(&self.tmdb)
            .await;
    }

    /// Asserts the conflict is resolved by `action` onto `show`; returns its row (see
    /// `conflict_row`).
    pub async fn assert_resolved(
        &self,
        id: i32,
        action: &str,
        show: Option<i32>,
    ) -> tokio_postgres::Row {
        let row = self.conflict_row(id).await;
        assert!(row.get::<_, bool>(0), "conflict {id} resolved");
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(action));
        assert_eq!(row.get::<_, Option<i32>>(2), show);
        row
    }

    /// A tracker show's seasons (JSON).
    pub async fn seasons(&self, show: i32) -> Value {
        self.db
            .client()
            .await
            .query_one("SELECT seasons FROM tvshows WHERE id = $1", &[&show])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn conflict_row(&self, id: i32) -> tokio_postgres::Row {
        self.db
            .client()
            .await
            .query_one(
                "SELECT resolved, resolution_action, resolved_tvshow_id, resolved_at IS NOT NULL
                   FROM plex_conflicts WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap()
    }

    pub async fn mappings(&self) -> Vec<tokio_postgres::Row> {
        self.db
            .client()
            .await
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
