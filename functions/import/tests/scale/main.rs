//! `make import-demo`: a generated library of 2,000 shows and 50,000 watched episodes imported
//! end to end (the import function's handler → a moto FIFO queue → four concurrent processor
//! workers → Postgres), against HTTP stand-ins for the Plex server and TMDB that serve the
//! generated library. Then every tracker show is checked exactly. Ignored by `cargo test`
//! (minutes of work); the run writes its figures to `target/import-demo.md`, which
//! `scripts/import-demo.sh` copies into BENCHMARKS.md.
//!
//! The library's mix (by show number modulo 100):
//! - 0–64 new agent, `Guid` with TMDB/TVDB/IMDb ids, in the tracker → mapped by TMDB id;
//! - 65–79 legacy TheTVDB agent guid, no `Guid` array, in the tracker → TMDB `/find` by TVDB id;
//! - 80–91 new agent, not in the tracker → added from TMDB (show + each season);
//! - 92–95 personal media (`local://`, no ids) TMDB does not know → a conflict, no candidates;
//! - 96–99 personal media titled like a tracker show (duplicate titles) → an ambiguous conflict.
//!
//! Every show has 25 watched episodes; every tenth has a watched special (S00E01), which half of
//! those lack in the tracker (refreshed from TMDB); every seventh had S01E01 marked by hand in
//! 2019 (its date must stay). TMDB answers 429 above 40 requests per second, as TMDB does near
//! its limit.
// The pipeline's futures (driven through the processor here) nest deeper than the default limit.
#![recursion_limit = "256"]

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use plexsync::{
    api::testing::{authed, json},
    crypto::Keyring,
    pipeline::{KeySource, Pipeline},
    plex::PlexServerClient,
    testing::{fifo_queue, fresh_db, moto_config},
    tmdb::TmdbClient,
};
use secrecy::SecretString;
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SHOWS: usize = 2000;
const WATCHED_PER_SHOW: usize = 25;
const EPISODES_PER_SEASON: i64 = 13;
const WORKERS: usize = 4;
const SERVER_UUID: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6";
const PLEX_TOKEN: &str = "pLx-sc4le-t0ken";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    NewAgent,
    Legacy,
    AutoAdd,
    Unknown,
    Duplicate,
}

struct Show {
    i: usize,
    kind: Kind,
    title: String,
    tmdb: i64,
    tvdb: i64,
    seasons: i64,
    /// (season, episode, lastViewedAt), oldest first.
    watched: Vec<(i64, i64, i64)>,
}

impl Show {
    fn new(i: usize) -> Self {
        let kind = match i % 100 {
            0..=64 => Kind::NewAgent,
            65..=79 => Kind::Legacy,
            80..=91 => Kind::AutoAdd,
            92..=95 => Kind::Unknown,
            _ => Kind::Duplicate,
        };
        let title = match kind {
            Kind::Unknown => format!("Home Videos {i}"),
            // The same title as the tracker show numbered 96 lower (a new-agent show).
            Kind::Duplicate => title_of(i - 96),
            _ => title_of(i),
        };
        let seasons = 2 + (i % 4) as i64;
        let mut watched = Vec::new();
        let base = 1_600_000_000 + i as i64 * 10_000;
        if i % 10 == 0 {
            watched.push((0, 1, base));
        }
        let mut n = 0i64;
        while watched.len() < WATCHED_PER_SHOW {
            let (s, e) = (1 + n / EPISODES_PER_SEASON, 1 + n % EPISODES_PER_SEASON);
            watched.push((s, e, base + 60 * (n + 1)));
            n += 1;
        }
        Self {
            i,
            kind,
            title,
            tmdb: 500_000 + i as i64,
            tvdb: 900_000 + i as i64,
            seasons,
            watched,
        }
    }

    fn rating_key(&self) -> String {
        (100_000 + self.i).to_string()
    }

    fn in_tracker(&self) -> bool {
        matches!(self.kind, Kind::NewAgent | Kind::Legacy)
    }

    /// The tracker holds season 0 for half the shows with a watched special.
    fn tracker_has_specials(&self) -> bool {
        self.i % 20 == 0
    }

    fn hand_marked(&self) -> bool {
        self.in_tracker() && self.i % 7 == 0
    }

    fn section_entry(&self) -> Value {
        let key = self.rating_key();
        let last = self.watched.iter().map(|w| w.2).max();
        let mut v = json!({
            "ratingKey": key, "key": format!("/library/metadata/{key}/children"), "type": "show",
            "title": self.title, "year": 2000 + (self.i % 20) as i64,
            "leafCount": self.seasons * EPISODES_PER_SEASON + 1,
            "viewedLeafCount": self.watched.len(), "childCount": self.seasons,
            "lastViewedAt": last, "addedAt": 1_590_000_000
        });
        match self.kind {
            Kind::NewAgent | Kind::AutoAdd => {
                v["guid"] = json!(format!("plex://show/5d9c{:020x}", self.i));
                v["Guid"] = json!([
                    {"id": format!("imdb://tt{}", 7_000_000 + self.i)},
                    {"id": format!("tmdb://{}", self.tmdb)},
                    {"id": format!("tvdb://{}", self.tvdb)}
                ]);
            }
            Kind::Legacy => {
                v["guid"] = json!(format!(
                    "com.plexapp.agents.thetvdb://{}?lang=en",
                    self.tvdb
                ))
            }
            Kind::Unknown | Kind::Duplicate => v["guid"] = json!(format!("local://{key}")),
        }
        v
    }

    fn all_leaves(&self) -> Value {
        let base = 200_000 + self.i * 100;
        let mut leaves = Vec::new();
        let mut add = |s: i64, e: i64, n: usize| {
            let key = (base * 10 + n).to_string();
            let mut leaf = json!({
                "ratingKey": key, "key": format!("/library/metadata/{key}"), "type": "episode",
                "title": format!("Episode {e}"), "grandparentTitle": self.title,
                "index": e, "parentIndex": s, "duration": 1_380_000, "addedAt": 1_590_000_000
            });
            leaf["guid"] = match self.kind {
                Kind::Legacy => json!(format!(
                    "com.plexapp.agents.thetvdb://{}/{s}/{e}?lang=en",
                    self.tvdb
                )),
                Kind::Unknown | Kind::Duplicate => json!(format!("local://{key}")),
                _ => json!(format!("plex://episode/5d9d{key:0>20}")),
            };
            if let Some(w) = self.watched.iter().find(|w| (w.0, w.1) == (s, e)) {
                leaf["viewCount"] = json!(1);
                leaf["lastViewedAt"] = json!(w.2);
            }
            leaves.push(leaf);
        };
        add(0, 1, 0);
        for s in 1..=self.seasons {
            for e in 1..=EPISODES_PER_SEASON {
                add(s, e, (s * 100 + e) as usize);
            }
        }
        json!({"MediaContainer": {"size": leaves.len(), "Metadata": leaves}})
    }

    /// The tracker's seasons before the import.
    fn tracker_seasons(&self) -> Value {
        let mut seasons = Vec::new();
        if self.tracker_has_specials() {
            seasons.push(season_json(0, 1));
        }
        for s in 1..=self.seasons {
            seasons.push(season_json(s, EPISODES_PER_SEASON));
        }
        let mut seasons = Value::Array(seasons);
        if self.hand_marked() {
            let first = seasons
                .as_array_mut()
                .unwrap()
                .iter_mut()
                .find(|s| s["seasonNumber"] == 1)
                .unwrap();
            first["episodes"][0]["watched"] = json!(true);
            first["episodes"][0]["dateWatched"] = json!(HAND_DATE);
        }
        seasons
    }

    /// What the tracker must hold afterwards: (season, episode) → date, for shows it has.
    fn expected(&self) -> BTreeMap<(i64, i64), String> {
        let mut out: BTreeMap<(i64, i64), String> = self
            .watched
            .iter()
            .map(|&(s, e, at)| ((s, e), date(at)))
            .collect();
        if self.hand_marked() {
            out.insert((1, 1), HAND_DATE.into());
        }
        out
    }
}

const HAND_DATE: &str = "2019-01-01T00:00:00.000Z";

fn title_of(i: usize) -> String {
    format!("Generated Show {i:04}")
}

fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn season_json(n: i64, count: i64) -> Value {
    let episodes: Vec<Value> = (1..=count)
        .map(|e| json!({"episodeNumber": e, "title": format!("Episode {e}"), "airDate": "2010-01-01", "watched": false, "dateWatched": null}))
        .collect();
    json!({"seasonNumber": n, "episodes": episodes})
}

fn tmdb_season(show: &Show, n: i64) -> Value {
    let count = if n == 0 { 1 } else { EPISODES_PER_SEASON };
    let episodes: Vec<Value> = (1..=count)
        .map(|e| json!({"id": show.tmdb * 1000 + n * 100 + e, "episode_number": e, "season_number": n,
                        "name": format!("Episode {e}"), "air_date": "2010-01-01", "show_id": show.tmdb}))
        .collect();
    json!({"id": show.tmdb * 10 + n, "season_number": n, "name": format!("Season {n}"), "episodes": episodes})
}

struct Library {
    shows: Vec<Show>,
}

impl Library {
    fn by_key(&self, key: &str) -> Option<&Show> {
        let i = key.parse::<usize>().ok()?.checked_sub(100_000)?;
        self.shows.get(i)
    }

    fn by_tmdb(&self, id: &str) -> Option<&Show> {
        let i = id.parse::<usize>().ok()?.checked_sub(500_000)?;
        self.shows.get(i).filter(|s| s.kind != Kind::Unknown)
    }
}

/// The Plex Media Server of the generated library.
struct PlexStub(Arc<Library>);

impl Respond for PlexStub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let token = req
            .headers
            .get("x-plex-token")
            .and_then(|v| v.to_str().ok());
        if token != Some(PLEX_TOKEN) {
            return ResponseTemplate::new(401);
        }
        let parts: Vec<&str> = req.url.path().trim_matches('/').split('/').collect();
        let body = match parts.as_slice() {
            ["library", "sections"] => json!({"MediaContainer": {"size": 2, "Directory": [
                {"key": "1", "type": "movie", "title": "Movies", "agent": "tv.plex.agents.movie"},
                {"key": "2", "type": "show", "title": "TV Shows", "agent": "tv.plex.agents.series"}
            ]}}),
            ["library", "sections", "2", "all"] => {
                let shows: Vec<Value> = self.0.shows.iter().map(Show::section_entry).collect();
                json!({"MediaContainer": {"size": shows.len(), "librarySectionID": 2, "Metadata": shows}})
            }
            ["library", "metadata", key, "allLeaves"] => match self.0.by_key(key) {
                Some(show) => show.all_leaves(),
                None => return ResponseTemplate::new(404),
            },
            // A show's own metadata: personal media has none worth reading.
            _ => return ResponseTemplate::new(404),
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// TMDB for the generated library, answering 429 above 40 requests in any second.
struct TmdbStub {
    library: Arc<Library>,
    recent: Mutex<VecDeque<Instant>>,
    throttled: Arc<Mutex<usize>>,
}

impl Respond for TmdbStub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        {
            let mut recent = self.recent.lock().unwrap();
            let now = Instant::now();
            while recent
                .front()
                .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
            {
                recent.pop_front();
            }
            if recent.len() >= 40 {
                *self.throttled.lock().unwrap() += 1;
                return ResponseTemplate::new(429).insert_header("retry-after", "1");
            }
            recent.push_back(now);
        }
        let lib = &self.library;
        let parts: Vec<&str> = req.url.path().trim_matches('/').split('/').collect();
        let not_found = || {
            ResponseTemplate::new(404).set_body_json(json!({"success": false, "status_code": 34,
                "status_message": "The resource you requested could not be found."}))
        };
        let body = match parts.as_slice() {
            ["3", "find", id] => {
                let tv: Vec<Value> = lib
                    .shows
                    .iter()
                    .filter(|s| s.kind == Kind::Legacy && s.tvdb.to_string() == *id)
                    .map(|s| json!({"id": s.tmdb, "name": s.title, "media_type": "tv"}))
                    .collect();
                json!({"movie_results": [], "person_results": [], "tv_season_results": [],
                       "tv_episode_results": [], "tv_results": tv})
            }
            ["3", "search", "tv"] => {
                let query = req
                    .url
                    .query_pairs()
                    .find(|(k, _)| k == "query")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let results: Vec<Value> = lib
                    .shows
                    .iter()
                    .filter(|s| matches!(s.kind, Kind::NewAgent) && s.title == query)
                    .map(|s| json!({"id": s.tmdb, "name": s.title, "first_air_date": "2010-01-01"}))
                    .collect();
                json!({"page": 1, "total_pages": 1, "total_results": results.len(), "results": results})
            }
            ["3", "tv", id] => match lib.by_tmdb(id) {
                Some(s) => {
                    let seasons: Vec<Value> = (0..=s.seasons)
                        .map(|n| json!({"season_number": n, "episode_count": if n == 0 { 1 } else { EPISODES_PER_SEASON }}))
                        .collect();
                    json!({"id": s.tmdb, "name": s.title, "first_air_date": "2010-01-01", "seasons": seasons})
                }
                None => return not_found(),
            },
            ["3", "tv", id, "season", n] => match (lib.by_tmdb(id), n.parse::<i64>()) {
                (Some(s), Ok(n)) if n <= s.seasons => tmdb_season(s, n),
                _ => return not_found(),
            },
            _ => return not_found(),
        };
        ResponseTemplate::new(200).set_body_json(body)
    }
}

fn pipeline(pool: plexsync::db::DbPool, tmdb: &str, keyring: &Arc<Keyring>) -> Pipeline {
    // The deployed client: its retry policy and per-instance cap, plus the shared bucket.
    let client = TmdbClient::new(&plexsync::env::TmdbConfig {
        base_url: tmdb.parse().unwrap(),
        token: SecretString::from("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0In0.c2ln".to_string()),
    })
    .unwrap()
    .with_shared_limit(pool.clone(), plexsync::tmdb::SHARED_RATE);
    Pipeline {
        pool,
        tmdb: client,
        plex: PlexServerClient::new().unwrap(),
        keys: KeySource::Fixed(keyring.clone()),
    }
}

/// Whether the queue holds nothing, visible or in flight.
async fn drained(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> bool {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let count = |name: QueueAttributeName| -> i64 {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        == 0
}

/// One Lambda instance behind the event source mapping: receive up to ten, process, delete
/// what was not reported failed. Stops when the start has returned and the queue is empty.
async fn worker(
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    processor: processor::Processor,
    started: Arc<AtomicBool>,
) {
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = out.messages();
        if messages.is_empty() {
            if started.load(Ordering::SeqCst) && drained(&sqs, &queue_url).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = m.message_id().map(str::to_owned);
                r.body = m.body().map(str::to_owned);
                for (k, v) in m.attributes().into_iter().flatten() {
                    r.attributes.insert(k.as_str().to_owned(), v.clone());
                }
                r
            })
            .collect();
        // The processor's Lambda timeout (60 s in template.yaml) from the batch's start.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let response = processor::handle_batch(&processor, event, deadline).await;
        for m in messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| Some(f.item_identifier.as_str()) == m.message_id());
            if !failed {
                sqs.delete_message()
                    .queue_url(&queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes of work: run by make import-demo"]
async fn import_demo_2000_shows() {
    let library = Arc::new(Library {
        shows: (0..SHOWS).map(Show::new).collect(),
    });
    let watched_total: usize = library.shows.iter().map(|s| s.watched.len()).sum();
    assert_eq!(watched_total, 50_000);

    let db = fresh_db().await;
    let sdk = moto_config().await;
    let queue_url = fifo_queue(&sdk).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    // moto's test queue hides a received message for 2 s; a batch may take longer here.
    sqs.set_queue_attributes()
        .queue_url(&queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .unwrap();
    let plex = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(PlexStub(library.clone()))
        .mount(&plex)
        .await;
    let tmdb = MockServer::start().await;
    let throttled = Arc::new(Mutex::new(0));
    Mock::given(wiremock::matchers::any())
        .respond_with(TmdbStub {
            library: library.clone(),
            recent: Mutex::new(VecDeque::new()),
            throttled: throttled.clone(),
        })
        .mount(&tmdb)
        .await;

    let (encryption_key_id, keyring) = plexsync::testing::key_secret(&sdk).await;
    let keyring = Arc::new(keyring);
    let c = db.pool.get().await.unwrap();
    c.execute(
        "INSERT INTO plex_config (user_id, plex_token, plex_server_url, plex_server_uuid,
                                  plex_server_name, plex_account_id, plex_account_name,
                                  allow_insecure_http)
         VALUES (1, $1, $2, $3, 'big-nas', 1, 'alice', true)",
        &[
            &keyring.encrypt(&SecretString::from(PLEX_TOKEN.to_string())),
            &plex.uri(),
            &SERVER_UUID,
        ],
    )
    .await
    .unwrap();
    for show in library.shows.iter().filter(|s| s.in_tracker()) {
        let seasons = show.tracker_seasons();
        let (watched, total) = plexsync::episodes::counts(&seasons);
        c.execute(
            "INSERT INTO tvshows (tmdb_id, title, show_start_date, status, seasons,
                                  watched_episodes, total_episodes)
             VALUES ($1, $2, '2010-01-01', 'Watching', $3, $4, $5)",
            &[&(show.tmdb as i32), &show.title, &seasons, &watched, &total],
        )
        .await
        .unwrap();
    }
    drop(c);

    let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
    let state = import::State {
        api,
        plex: PlexServerClient::with_timeout(Duration::from_secs(10)).unwrap(),
        sqs: sqs.clone(),
        queue_url: queue_url.clone(),
        encryption_key_id,
    };

    // The processor consumes while the start is still queueing, as the event source mapping
    // does (moto's FIFO queue also slows down with its length, which this keeps short).
    let start_returned = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            tokio::spawn(worker(
                sqs.clone(),
                queue_url.clone(),
                processor::Processor {
                    pipeline: pipeline(db.pool.clone(), &tmdb.uri(), &keyring),
                    max_receive_count: 5,
                    timing: processor::Timing::default(),
                    retention: Default::default(),
                },
                start_returned.clone(),
            ))
        })
        .collect();
    let started = Instant::now();
    let resp = import::handle(&state, authed("POST", "/api/plex/import", None)).await;
    let started_body = json(&resp);
    assert_eq!(resp.status(), 202, "{started_body}");
    let start_secs = started.elapsed().as_secs_f64();
    start_returned.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let total_secs = started.elapsed().as_secs_f64();

    let resp = import::handle(&state, authed("GET", "/api/plex/import", None)).await;
    let import = json(&resp)["import"].clone();
    let shows_of = |k: &[Kind]| library.shows.iter().filter(|s| k.contains(&s.kind)).count();
    let hand = library.shows.iter().filter(|s| s.hand_marked()).count();
    let marked_expected = library
        .shows
        .iter()
        .filter(|s| matches!(s.kind, Kind::NewAgent | Kind::Legacy | Kind::AutoAdd))
        .map(|s| s.watched.len())
        .sum::<usize>()
        - hand;
    // Shows that did not end as planned, with why (their summary row's reason), for the record.
    let odd: Vec<(String, String, Option<String>)> = db
        .pool
        .get()
        .await
        .unwrap()
        .query(
            "SELECT plex_rating_key, outcome, detail FROM plex_import_shows
              WHERE outcome IS NULL OR outcome = 'failed' ORDER BY 1 LIMIT 20",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get::<_, Option<String>>(1).unwrap_or_default(),
                r.get(2),
            )
        })
        .collect();
    assert!(odd.is_empty(), "shows not imported: {odd:?}");
    assert_eq!(import["status"], "completed", "{import}");
    assert_eq!(
        import["counts"],
        json!({
            "showsTotal": SHOWS, "showsDone": SHOWS,
            "mapped": shows_of(&[Kind::NewAgent, Kind::Legacy]),
            "autoAdded": shows_of(&[Kind::AutoAdd]),
            "conflicts": shows_of(&[Kind::Unknown, Kind::Duplicate]),
            "failed": 0, "episodesMarked": marked_expected, "alreadyWatched": hand
        }),
        "{import}"
    );

    // Exact tracker checks: every show's watched episodes and dates.
    let c = db.pool.get().await.unwrap();
    let rows = c
        .query(
            "SELECT tmdb_id, seasons, watched_episodes FROM tvshows",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        shows_of(&[Kind::NewAgent, Kind::Legacy, Kind::AutoAdd]),
        "no show added twice, none invented"
    );
    let mut checked_episodes = 0;
    for row in &rows {
        let tmdb_id: i32 = row.get(0);
        let show = library.by_tmdb(&tmdb_id.to_string()).unwrap();
        let seasons: Value = row.get(1);
        let mut got = BTreeMap::new();
        for s in seasons.as_array().unwrap() {
            for e in s["episodes"].as_array().unwrap() {
                if e["watched"] == true {
                    got.insert(
                        (
                            s["seasonNumber"].as_i64().unwrap(),
                            e["episodeNumber"].as_i64().unwrap(),
                        ),
                        e["dateWatched"].as_str().unwrap().to_owned(),
                    );
                }
            }
        }
        assert_eq!(got, show.expected(), "show {}", show.i);
        assert_eq!(row.get::<_, i32>(2) as usize, got.len(), "show {}", show.i);
        checked_episodes += got.len();
    }
    let pending: i64 = c
        .query_one(
            "SELECT count(*) FROM plex_pending_events p JOIN plex_conflicts c ON c.id = p.conflict_id
              WHERE NOT c.resolved",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let conflict_shows = shows_of(&[Kind::Unknown, Kind::Duplicate]);
    assert_eq!(pending as usize, conflict_shows * WATCHED_PER_SHOW);
    let log_rows: i64 = c
        .query_one("SELECT count(*) FROM plex_webhook_logs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(log_rows as usize, SHOWS, "one summary row per show");

    let requests = tmdb.received_requests().await.unwrap();
    let throttled = *throttled.lock().unwrap();
    let by_kind = |prefix: &str| {
        requests
            .iter()
            .filter(|r| r.url.path().starts_with(prefix))
            .count()
    };
    let report = format!(
        "| shows (watched) | watched episodes | `POST` (list + enqueue, while processing) | import, end to end | TMDB requests | of which 429 | processor workers |\n\
         |---|---|---|---|---|---|---|\n\
         | {SHOWS} | {watched_total} | {start_secs:.1} s | {total_secs:.0} s | {} (find {}, search {}, tv {}) | {throttled} | {WORKERS} |\n\n\
         Result: {} mapped, {} added from TMDB, {} in conflicts ({} episodes pending), 0 failed; \
         {} episodes marked, {} already watched (dates kept); {} tracker episodes checked \
         exactly; {} activity-log rows.\n",
        requests.len(),
        by_kind("/3/find"),
        by_kind("/3/search"),
        by_kind("/3/tv"),
        import["counts"]["mapped"],
        import["counts"]["autoAdded"],
        import["counts"]["conflicts"],
        pending,
        import["counts"]["episodesMarked"],
        import["counts"]["alreadyWatched"],
        checked_episodes,
        log_rows,
    );
    println!("{report}");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/import-demo.md");
    std::fs::write(out, &report).unwrap();
}
