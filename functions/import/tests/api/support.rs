//! Harness: the import function, the processor and the conflicts function over one fresh
//! database, a moto FIFO queue between them, and wiremock stand-ins for the user's Plex Media
//! Server (a small library: new-agent, legacy-agent and unmatched shows, specials, an unwatched
//! show, a movie section) and TMDB.

use std::{sync::Arc, time::Duration};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::{authed, json},
    crypto::Keyring,
    pipeline::{KeySource, Pipeline},
    plex::PlexServerClient,
    testing::{fifo_queue, fixtures, fresh_db, moto_config, TestDb},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path, query_param},
    Mock, MockServer, ResponseTemplate,
};

pub const PLEX_TOKEN: &str = "pLx-tok3n-1mp0rt-7c6b";
/// Rating keys of the stub library's shows.
pub const OFFICE: &str = "48200";
pub const OFFICE_UK: &str = "51000";
pub const UNMATCHED: &str = "60100";
pub const GOT: &str = "1199";
pub const UNWATCHED: &str = "70000";

pub struct Harness {
    pub db: TestDb,
    pub sdk: aws_config::SdkConfig,
    pub queue_url: String,
    pub plex: MockServer,
    pub tmdb: MockServer,
    pub keyring: Arc<Keyring>,
    pub import: import::State,
    pub conflicts: conflicts::State,
    /// Tracker show ids.
    pub office_show: i32,
    pub got_show: i32,
}

/// A pipeline over `pool` (the shared TMDB bucket in that database, as deployed).
pub fn pipeline(pool: plexsync::db::DbPool, tmdb: &MockServer, keyring: &Arc<Keyring>) -> Pipeline {
    Pipeline {
        tmdb: plexsync::testing::tmdb_client(&tmdb.uri(), 100, Duration::from_secs(1))
            .with_shared_limit(pool.clone(), plexsync::tmdb::SHARED_RATE),
        pool,
        plex: PlexServerClient::with_timeout(Duration::from_secs(30)).unwrap(),
        keys: KeySource::Fixed(keyring.clone()),
    }
}

/// Season `n` of a show in the tracker's shape, `count` episodes, nothing watched.
pub fn season(n: i64, count: i64) -> Value {
    let episodes: Vec<Value> = (1..=count)
        .map(|e| json!({"episodeNumber": e, "title": format!("Episode {e}"), "airDate": null, "watched": false, "dateWatched": null}))
        .collect();
    json!({"seasonNumber": n, "episodes": episodes})
}

fn leaf(key: &str, season: i64, episode: i64, viewed: Option<i64>) -> Value {
    let mut l = json!({
        "ratingKey": key, "key": format!("/library/metadata/{key}"), "type": "episode",
        "guid": format!("plex://episode/{key}"), "title": format!("Episode {episode}"),
        "index": episode, "parentIndex": season, "duration": 1380000, "addedAt": 1690000000
    });
    if let Some(at) = viewed {
        l["viewCount"] = json!(1);
        l["lastViewedAt"] = json!(at);
    }
    l
}

fn container(metadata: Vec<Value>) -> Value {
    json!({"MediaContainer": {"size": metadata.len(), "allowSync": true, "Metadata": metadata}})
}

impl Harness {
    pub async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let queue_url = fifo_queue(&sdk).await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let (conflicts_api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let (encryption_key_id, keyring) = plexsync::testing::key_secret(&sdk).await;
        let keyring = Arc::new(keyring);
        let plex = MockServer::start().await;
        let tmdb = MockServer::start().await;
        let c = db.pool.get().await.unwrap();
        c.execute(
            "INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_uuid,
                                      plex_server_name, plex_account_id, plex_account_name,
                                      allow_insecure_http)
             VALUES (1, $1, $2, $3, 'basement-nas', 12345678, 'alice', true)",
            &[
                &keyring.encrypt(&SecretString::from(PLEX_TOKEN.to_string())),
                &plex.uri(),
                &fixtures::server_uuid(),
            ],
        )
        .await
        .unwrap();
        // The tracker: The Office (US) with season 1 (S01E04 watched by hand in 2019), and
        // Game of Thrones with season 1 of three episodes.
        let season_1: plexsync::tmdb::SeasonDetails =
            serde_json::from_value(fixtures::tmdb_the_office_season_1()).unwrap();
        let mut office_seasons = json!([plexsync::episodes::season_from_tmdb(&season_1)]);
        office_seasons[0]["episodes"][3]["watched"] = json!(true);
        office_seasons[0]["episodes"][3]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
        let show = |tmdb: i32, title: &'static str, seasons: Value| {
            let c = &c;
            async move {
                let (watched, total) = plexsync::episodes::counts(&seasons);
                c.query_one(
                    "INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons,
                                          watched_episodes, total_episodes)
                     VALUES ($1, $2, '2005-03-24', 'Watching', $3, $4, $5) RETURNING id",
                    &[&tmdb, &title, &seasons, &watched, &total],
                )
                .await
                .unwrap()
                .get::<_, i32>(0)
            }
        };
        let office_show = show(2316, "The Office", office_seasons).await;
        let got_show = show(1399, "Game of Thrones", json!([season(1, 3)])).await;
        drop(c);
        let h = Self {
            import: import::State {
                api,
                plex: PlexServerClient::with_timeout(Duration::from_secs(30)).unwrap(),
                sqs: aws_sdk_sqs::Client::new(&sdk),
                queue_url: queue_url.clone(),
                encryption_key_id,
            },
            conflicts: conflicts::State {
                api: conflicts_api,
                pipeline: pipeline(db.pool.clone(), &tmdb, &keyring),
                bulk_budget: Duration::from_secs(15),
                replay_budget: conflicts::REPLAY_BUDGET,
                // The processor's queue: what a replay has no time for goes there.
                queue: conflicts::requeue::EventQueue {
                    sqs: aws_sdk_sqs::Client::new(&sdk),
                    url: queue_url.clone(),
                },
            },
            db,
            sdk,
            queue_url,
            plex,
            tmdb,
            keyring,
            office_show,
            got_show,
        };
        h.serve_library().await;
        h.serve_tmdb().await;
        h
    }

    /// The processor's SQS handler over the database `pool` (a dead one simulates an outage).
    pub fn processor(&self, pool: plexsync::db::DbPool) -> processor::Processor {
        processor::Processor {
            pipeline: pipeline(pool, &self.tmdb, &self.keyring),
            max_receive_count: 5,
            timing: processor::Timing::default(),
            retention: Default::default(),
        }
    }

    async fn plex_get(&self, at: &str, body: Value) {
        Mock::given(method("GET"))
            .and(path(at))
            .and(header("x-plex-token", PLEX_TOKEN))
            .and(header("accept", "application/json"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.plex)
            .await;
    }

    /// alice's library: TV Shows (section 2), Anime (section 5, legacy agent), Movies (1).
    async fn serve_library(&self) {
        let section = |key: &str, kind: &str, title: &str, agent: &str| {
            json!({"allowSync": true, "key": key, "type": kind, "title": title, "agent": agent,
                   "scanner": "Plex Series Scanner", "language": "en-US",
                   "uuid": format!("a1b2c3d4-0000-4000-8000-00000000000{key}"),
                   "updatedAt": 1700000000, "createdAt": 1600000000, "scannedAt": 1700000000,
                   "content": true, "directory": true, "hidden": 0,
                   "Location": [{"id": key.parse::<i64>().unwrap(), "path": format!("/data/{title}")}]})
        };
        self.plex_get(
            "/library/sections",
            json!({"MediaContainer": {"size": 3, "allowSync": false, "title1": "Plex Library",
            "Directory": [
                section("1", "movie", "Movies", "tv.plex.agents.movie"),
                section("2", "show", "TV Shows", "tv.plex.agents.series"),
                section("5", "show", "Anime", "com.plexapp.agents.thetvdb"),
            ]}}),
        )
        .await;
        let office = &fixtures::plex_server_show_the_office()["MediaContainer"]["Metadata"][0];
        let mut office = office.clone();
        office["viewedLeafCount"] = json!(4);
        office["lastViewedAt"] = json!(1700259200);
        let show = |key: &str, guid: &str, title: &str, year: i64, guids: Value, viewed: i64| {
            json!({"ratingKey": key, "key": format!("/library/metadata/{key}/children"),
                   "guid": guid, "type": "show", "title": title, "year": year,
                   "leafCount": 12, "viewedLeafCount": viewed, "childCount": 2,
                   "lastViewedAt": if viewed > 0 { json!(1700300000) } else { Value::Null },
                   "Guid": guids})
        };
        self.plex_get(
            "/library/sections/2/all",
            container(vec![
                office,
                show(
                    OFFICE_UK,
                    "plex://show/5d9c08544eefaa001f5d0001",
                    "The Office",
                    2001,
                    json!([{"id": "imdb://tt0290978"}, {"id": "tmdb://2996"}, {"id": "tvdb://78107"}]),
                    2,
                ),
                // Personal media Plex could not match: no ids at all.
                show(UNMATCHED, "local://60100", "The Office", 2005, json!([]), 2),
                show(
                    UNWATCHED,
                    "plex://show/5d9c08544eefaa001f5d0002",
                    "Severance",
                    2022,
                    json!([{"id": "tmdb://95396"}]),
                    0,
                ),
            ]),
        )
        .await;
        let mut got = show(
            GOT,
            "com.plexapp.agents.thetvdb://121361?lang=en",
            "Game of Thrones",
            2011,
            json!([]),
            3,
        );
        got.as_object_mut().unwrap().remove("Guid");
        self.plex_get("/library/sections/5/all", container(vec![got]))
            .await;
        self.plex_get(
            &format!("/library/metadata/{OFFICE}/allLeaves"),
            fixtures::plex_server_office_all_leaves(),
        )
        .await;
        self.plex_get(
            &format!("/library/metadata/{OFFICE_UK}/allLeaves"),
            container(vec![
                leaf("51001", 1, 1, Some(1600000000)),
                leaf("51002", 1, 2, Some(1600086400)),
                leaf("51003", 1, 3, None),
            ]),
        )
        .await;
        self.plex_get(
            &format!("/library/metadata/{UNMATCHED}/allLeaves"),
            container(vec![
                leaf("60105", 1, 5, Some(1650000000)),
                leaf("60106", 1, 6, Some(1650086400)),
            ]),
        )
        .await;
        // Legacy agent episodes carry legacy guids; S00E01 is a special the tracker lacks.
        let mut got_leaves = vec![
            leaf("1201", 0, 1, Some(1500000000)),
            leaf("1202", 1, 1, Some(1500086400)),
            leaf("1203", 1, 2, Some(1500172800)),
            leaf("1204", 1, 3, None),
        ];
        for l in &mut got_leaves {
            let (s, e) = (l["parentIndex"].clone(), l["index"].clone());
            l["guid"] = json!(format!(
                "com.plexapp.agents.thetvdb://121361/{s}/{e}?lang=en"
            ));
        }
        self.plex_get(
            &format!("/library/metadata/{GOT}/allLeaves"),
            container(got_leaves),
        )
        .await;
    }

    pub async fn tmdb_get(&self, at: &str, body: Value) {
        plexsync::testing::serve_json(&self.tmdb, at, body).await;
    }

    async fn serve_tmdb(&self) {
        for at in ["/3/tv/2996", "/3/tv/2996/season/1"] {
            self.tmdb_get(at, fixtures::tmdb(at)).await;
        }
        self.tmdb_get("/3/search/tv", fixtures::tmdb_search_the_office())
            .await;
        // Season 2 of The Office, which the tracker lacks: fetched once to mark S02E01.
        self.tmdb_get(
            "/3/tv/2316/season/2",
            json!({"id": 3628, "season_number": 2, "name": "Season 2", "episodes": [
                {"id": 64500, "episode_number": 1, "season_number": 2, "name": "The Dundies", "air_date": "2005-09-20", "show_id": 2316},
                {"id": 64501, "episode_number": 2, "season_number": 2, "name": "Sexual Harassment", "air_date": "2005-09-27", "show_id": 2316}
            ]}),
        )
        .await;
        Mock::given(method("GET"))
            .and(path("/3/find/121361"))
            .and(query_param("external_source", "tvdb_id"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "movie_results": [], "person_results": [], "tv_episode_results": [], "tv_season_results": [],
                "tv_results": [{"id": 1399, "name": "Game of Thrones", "first_air_date": "2011-04-17", "media_type": "tv"}]
            })))
            .mount(&self.tmdb)
            .await;
        // Anything else (GoT's specials season among them) is TMDB's 404.
    }

    pub async fn call(&self, req: Request) -> Response<Body> {
        import::handle(&self.import, req).await
    }

    /// `POST /api/plex/import` with `body`; the response status and JSON.
    pub async fn start(&self, body: Option<Value>) -> (u16, Value) {
        let resp = self.call(authed("POST", "/api/plex/import", body)).await;
        (resp.status().as_u16(), json(&resp))
    }

    pub async fn latest(&self) -> Value {
        let resp = self.call(authed("GET", "/api/plex/import", None)).await;
        assert_eq!(resp.status(), 200);
        json(&resp)["import"].clone()
    }

    /// Receives up to ten messages (their group and receive count as Lambda passes them).
    pub async fn receive(&self) -> Vec<(SqsMessage, String)> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let out = sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| {
                let mut record = SqsMessage::default();
                record.message_id = m.message_id().map(str::to_owned);
                record.body = m.body().map(str::to_owned);
                for (k, v) in m.attributes().into_iter().flatten() {
                    record.attributes.insert(k.as_str().to_owned(), v.clone());
                }
                (record, m.receipt_handle().unwrap_or_default().to_owned())
            })
            .collect()
    }

    /// One batch through `processor`: acknowledged records are deleted, failed ones come back
    /// after the queue's visibility timeout. Returns how many records it got.
    pub async fn process_batch(&self, processor: &processor::Processor) -> usize {
        let received = self.receive().await;
        if received.is_empty() {
            return 0;
        }
        let mut event = SqsEvent::default();
        event.records = received.iter().map(|(r, _)| r.clone()).collect();
        // A deadline no test reaches: the batch is never cut short.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        let response = processor::handle_batch(processor, event, deadline).await;
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for (record, receipt) in &received {
            if !failed.contains(record.message_id.as_ref().unwrap()) {
                sqs.delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            }
        }
        received.len()
    }

    /// Runs the processor until the queue is empty (waiting out visibility timeouts).
    pub async fn drain(&self, processor: &processor::Processor) {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for _ in 0..200 {
            if self.process_batch(processor).await > 0 {
                continue;
            }
            let attrs = sqs
                .get_queue_attributes()
                .queue_url(&self.queue_url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .unwrap();
            let count = |name: aws_sdk_sqs::types::QueueAttributeName| -> i64 {
                attrs
                    .attributes()
                    .and_then(|a| a.get(&name))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            use aws_sdk_sqs::types::QueueAttributeName as A;
            if count(A::ApproximateNumberOfMessages)
                + count(A::ApproximateNumberOfMessagesNotVisible)
                == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("the queue did not drain");
    }

    pub async fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.db.client().await.query(sql, &[]).await.unwrap()
    }

    pub async fn seasons(&self, id: i32) -> Value {
        self.db.seasons(id).await
    }

    /// Every tracker show: (tmdb id, title, seasons, watched count), by TMDB id.
    pub async fn tracker(&self) -> Vec<(Option<i32>, String, Value, i32)> {
        self.query(
            "SELECT tmdb_id, title, seasons, watched_episodes FROM tvshows ORDER BY tmdb_id, id",
        )
        .await
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
    }
}

/// `(season, episode) -> dateWatched` of the watched episodes of `seasons`.
pub fn watched(seasons: &Value) -> Vec<(i64, i64, String)> {
    let mut out = Vec::new();
    for s in seasons.as_array().into_iter().flatten() {
        for e in s["episodes"].as_array().into_iter().flatten() {
            if e["watched"] == true {
                out.push((
                    s["seasonNumber"].as_i64().unwrap(),
                    e["episodeNumber"].as_i64().unwrap(),
                    e["dateWatched"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out
}

/// A dead database (nothing listens on port 1): every use fails as a connection error.
pub fn dead_pool() -> plexsync::db::DbPool {
    plexsync::db::pool(&SecretString::from(
        "postgres://plexsync:x@127.0.0.1:1/plexsync?connect_timeout=1".to_string(),
    ))
    .unwrap()
}
