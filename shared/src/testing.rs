//! Test harness: a fresh, migrated database per test (so tests run in parallel), moto-backed
//! AWS clients, and HTTP stubs for services we do not own. Missing services fail the test with
//! a message saying how to start them; nothing is skipped silently.

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use secrecy::SecretString;
use url::Url;

use crate::db::{self, DbPool};

const HOW_TO_START: &str =
    "run the tests with `make test`, which starts Postgres and moto_server and sets \
DATABASE_URL and AWS_ENDPOINT_URL";

/// A uniquely named database with every migration applied. Dropping it drops the database
/// (each is ~8 MB, and a full run creates hundreds); set `PLEXSYNC_KEEP_TEST_DB=1` to keep them
/// for a post-mortem. Databases of killed runs are dropped by `scripts/drop-stale-dbs.sh`.
pub struct TestDb {
    pub pool: DbPool,
    pub name: String,
    pub url: SecretString,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os("PLEXSYNC_KEEP_TEST_DB").is_some() {
            return;
        }
        // `Drop` cannot await, and the test's runtime may be shutting down: drop the database
        // from a thread with a runtime of its own. FORCE ends the pool's connections.
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping a test database");
            rt.block_on(async {
                let admin = admin_client(&base_database_url()).await;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                if let Err(e) = admin.batch_execute(&sql).await {
                    eprintln!("could not drop test database {name}: {e}");
                }
            });
        });
        let _ = dropper.join();
    }
}

fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| panic!("DATABASE_URL is not set: {HOW_TO_START}"))
}

/// The admin connection used to create test databases.
async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot connect to Postgres at DATABASE_URL ({e}): {HOW_TO_START}")
        });
    tokio::spawn(connection);
    client
}

/// A fresh database, migrated, with a small pool.
pub async fn fresh_db() -> TestDb {
    let (name, url) = empty_db().await;
    let pool = db::pool(&SecretString::from(url.clone())).expect("pool for test database");
    db::migrate(&pool)
        .await
        .expect("migrations apply to a fresh database");
    TestDb {
        pool,
        name,
        url: SecretString::from(url),
    }
}

impl TestDb {
    /// The `seasons` JSON of tracker show `id`.
    pub async fn seasons(&self, id: i32) -> serde_json::Value {
        self.client()
            .await
            .query_one("SELECT seasons FROM tvshows WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0)
    }

    /// A connection from the test's pool.
    pub async fn client(&self) -> db::Client {
        self.pool
            .get()
            .await
            .expect("a connection to the test database")
    }

    /// Another pool on this database for a test that runs `connections` messages at once: none
    /// waits for a connection, and lock waits have no limit. Under the runtime limits (a 10 s
    /// wait for one of four connections, a 5 s lock timeout) a loaded machine turned such
    /// tests' queues into transient failures; what they check is the outcome, not the speed.
    pub fn pool_for_concurrency(&self, connections: usize) -> DbPool {
        db::pool_with(
            &self.url,
            db::PoolSettings {
                max_size: connections,
                statement_timeout: None,
                lock_timeout: None,
                ..db::PoolSettings::RUNTIME
            },
        )
        .expect("pool for test database")
    }
}

/// `url` with another user and password (a runtime role's URL for the same database).
pub fn url_as(url: &str, user: &str, password: &str) -> String {
    let mut url = Url::parse(url).expect("a database URL");
    url.set_username(user).expect("a user");
    url.set_password(Some(password)).expect("a password");
    url.to_string()
}

/// Drops a test database and then a role a test created in it (roles are cluster-wide, so
/// they are not left behind). Waits for the role's sessions to end first: only the role
/// itself could terminate them.
pub async fn drop_db_and_role(db_name: &str, role: &str) {
    let admin = admin_client(&base_database_url()).await;
    for _ in 0..100 {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&role],
            )
            .await
            .expect("pg_stat_activity")
            .get(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)"
        ))
        .await
        .expect("drop the test database");
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS \"{role}\""))
        .await
        .expect("drop the test role");
}

/// A fresh database with nothing applied (for migration tests). Returns its name and URL.
pub async fn empty_db() -> (String, String) {
    let base = base_database_url();
    let admin = admin_client(&base).await;
    // The creation time in the name lets `scripts/drop-stale-dbs.sh` remove only databases
    // left behind by runs that are over, never those of a run still going.
    let name = format!(
        "plexsync_test_{}_{}",
        chrono::Utc::now().timestamp(),
        crate::crypto::random_token(9)
            .to_lowercase()
            .replace(['-', '_'], "x")
    );
    admin
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database (the role needs CREATEDB): {e}"));
    let mut url = Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    (name, url.to_string())
}

/// SDK configuration pointed at moto_server (`AWS_ENDPOINT_URL`), with dummy credentials.
pub async fn moto_config() -> SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set (moto_server): {HOW_TO_START}"));
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "plexsync-tests",
        ))
        .load()
        .await;
    // Fail loudly and early when moto is not running rather than with an SDK timeout later.
    aws_sdk_sqs::Client::new(&config)
        .list_queues()
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!("moto_server is not answering at {endpoint} ({e}): {HOW_TO_START}")
        });
    config
}

/// A uniquely named FIFO queue (with its DLQ) on moto; returns the queue URL.
pub async fn fifo_queue(config: &SdkConfig) -> String {
    fifo_queue_with_dlq(config).await.0
}

/// A uniquely named FIFO queue and its DLQ on moto; returns both URLs (queue, DLQ).
pub async fn fifo_queue_with_dlq(config: &SdkConfig) -> (String, String) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let sqs = aws_sdk_sqs::Client::new(config);
    let suffix = unique_suffix();
    let dlq = sqs
        .create_queue()
        .queue_name(format!("plexsync-test-dlq-{suffix}.fifo"))
        .attributes(A::FifoQueue, "true")
        .send()
        .await
        .expect("create DLQ on moto");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(dlq.queue_url().unwrap_or_default())
        .attribute_names(A::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes()
        .and_then(|a| a.get(&A::QueueArn).cloned())
        .expect("DLQ arn");
    let queue = sqs
        .create_queue()
        .queue_name(format!("plexsync-test-{suffix}.fifo"))
        .attributes(A::FifoQueue, "true")
        .attributes(A::VisibilityTimeout, "2")
        .attributes(
            A::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"5"}}"#),
        )
        .send()
        .await
        .expect("create FIFO queue on moto");
    (
        queue.queue_url().expect("queue url").to_string(),
        dlq.queue_url().expect("DLQ url").to_string(),
    )
}

/// Creates a uniquely named secret with `value`; returns its id (name).
pub async fn secret(config: &SdkConfig, value: &str) -> String {
    let name = format!("plexsync-test/{}", unique_suffix());
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(&name)
        .secret_string(value)
        .send()
        .await
        .expect("create secret on moto");
    name
}

/// A fresh encryption key stored as a secret on moto: the secret's id and the key's keyring.
pub async fn key_secret(config: &SdkConfig) -> (String, crate::crypto::Keyring) {
    let key_hex = crate::crypto::generate_key_hex();
    let id = secret(config, &key_hex).await;
    let keyring = crate::crypto::Keyring::from_secret(&SecretString::from(key_hex)).unwrap();
    (id, keyring)
}

/// A TMDB client for a wiremock stand-in at `uri`: a dummy token, quick retries (3 attempts)
/// and a rate limit of `max_requests` per `window`.
pub fn tmdb_client(uri: &str, max_requests: usize, window: Duration) -> crate::tmdb::TmdbClient {
    crate::tmdb::TmdbClient::with_options(
        &crate::env::TmdbConfig {
            base_url: uri.parse().unwrap(),
            token: SecretString::from("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ0ZXN0In0.c2ln".to_string()),
        },
        crate::tmdb::RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(5),
        },
        max_requests,
        window,
        Duration::from_secs(5),
    )
    .unwrap()
}

/// Serves `body` as JSON to every GET of `at` on the stub `server`.
pub async fn serve_json(server: &wiremock::MockServer, at: &str, body: serde_json::Value) {
    use wiremock::{matchers, Mock, ResponseTemplate};
    Mock::given(matchers::method("GET"))
        .and(matchers::path(at))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// Collects every line a tracing subscriber writes, for tests that check what reaches the logs:
/// `.with_writer(move || capture.clone())` on the subscriber, then `text()`.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("log lines are UTF-8")
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A name no other test will pick.
pub fn unique_suffix() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// What `sender`'s edge decides about this payload JSON (the parsers' unit tests).
pub fn decide_as(
    sender: crate::senders::Sender,
    payload: serde_json::Value,
) -> Result<crate::payload::Decision, crate::payload::PayloadError> {
    sender
        .decide(payload.to_string().as_bytes())
        .map(|(decision, _)| decision)
}

/// The queue message the webhook makes of a Plex payload it accepts, received at
/// `received_at`; panics when the payload is ignored.
pub fn plex_message(
    payload: serde_json::Value,
    received_at: chrono::DateTime<chrono::Utc>,
) -> crate::queue::QueueMessage {
    let (decision, raw) = crate::senders::Sender::Plex
        .decide(payload.to_string().as_bytes())
        .expect("a valid payload");
    let crate::payload::Decision::Process(event) = decision else {
        panic!("the payload is ignored by the webhook's filter")
    };
    crate::queue::QueueMessage::new(*event, raw, received_at, None, None)
}

/// The event `sender`'s edge makes of a payload it must process; panics when it is ignored.
pub fn processed_as(
    sender: crate::senders::Sender,
    payload: serde_json::Value,
) -> crate::payload::PlexEvent {
    match decide_as(sender, payload).expect("a valid payload") {
        crate::payload::Decision::Process(event) => *event,
        crate::payload::Decision::Ignore(reason) => panic!("ignored: {reason}"),
    }
}

/// The test world of `fixtures/world.json` (shared with tools/stubs.py, the end-to-end test and
/// the demo): realistic Plex, plex.tv and TMDB payloads with real ids (The Office (US) is TMDB
/// 2316). Each call returns a fresh copy a test may change.
pub mod fixtures {
    use std::sync::LazyLock;

    use serde_json::{json, Value};

    static WORLD: LazyLock<Value> = LazyLock::new(|| {
        serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/world.json"
        )))
        .expect("fixtures/world.json is valid JSON")
    });

    /// `section.key` of the world (keys of plex_server, plex_tv and tmdb are request paths).
    fn world(section: &str, key: &str) -> Value {
        WORLD[section]
            .get(key)
            .cloned()
            .unwrap_or_else(|| panic!("fixtures/world.json has no {section}.{key:?}"))
    }

    /// The uuid of alice's Plex Media Server, basement-nas (what its webhooks carry).
    pub fn server_uuid() -> &'static str {
        WORLD["plex_webhooks"]["episode_scrobble"]["Server"]["uuid"]
            .as_str()
            .expect("the scrobble names its server")
    }

    /// Any TMDB response of the world by its path (`/3/tv/2996`, `/3/tv/2996/season/1`, ...).
    pub fn tmdb(path: &str) -> Value {
        world("tmdb", path)
    }

    /// `GET /3/tv/2316` (trimmed to the fields we read).
    pub fn tmdb_the_office() -> Value {
        world("tmdb", "/3/tv/2316")
    }

    /// `GET /3/tv/2316/season/1`.
    pub fn tmdb_the_office_season_1() -> Value {
        world("tmdb", "/3/tv/2316/season/1")
    }

    /// `GET /3/find/110413?external_source=tvdb_id`: The Office S01E01 by its TVDB episode id.
    pub fn tmdb_find_office_pilot() -> Value {
        let mut pilot = tmdb_the_office_season_1()["episodes"][0].take();
        pilot["media_type"] = json!("tv_episode");
        json!({
            "movie_results": [], "person_results": [], "tv_results": [], "tv_season_results": [],
            "tv_episode_results": [pilot]
        })
    }

    /// `GET {plex server}/library/metadata/48200` (Accept: JSON): the *show's* metadata, whose
    /// `Guid` array holds the show's ids (TMDB 2316, TVDB 73244, IMDb tt0386676).
    pub fn plex_server_show_the_office() -> Value {
        world("plex_server", "/library/metadata/48200")
    }

    /// `GET {plex server}/library/metadata/48200/allLeaves` (Accept: JSON): every episode of The
    /// Office with the owner's watch state (trimmed to five). S01E01, S01E02, S01E04 and S02E01
    /// are watched; S01E03 was only started (`viewOffset`, no `viewCount`).
    pub fn plex_server_office_all_leaves() -> Value {
        world("plex_server", "/library/metadata/48200/allLeaves")
    }

    /// `GET /3/search/tv?query=The Office` (first results, trimmed).
    pub fn tmdb_search_the_office() -> Value {
        world("tmdb", "/3/search/tv?query=The Office")
    }

    /// A Plex Media Server webhook payload as the new Plex agent sends it: The Office (US)
    /// S01E01 "Pilot" scrobbled by the server owner. The `Guid` array holds the *episode's* ids.
    pub fn plex_episode_scrobble() -> Value {
        world("plex_webhooks", "episode_scrobble")
    }

    /// The same kind of event from a server still on the legacy TheTVDB agent:
    /// Game of Thrones (TVDB 121361) S01E01. The show id sits in the episode guid.
    pub fn plex_legacy_episode_scrobble() -> Value {
        world("plex_webhooks", "legacy_episode_scrobble")
    }

    /// An episode of a show Plex could not match (`local://` guids, no `Guid` array), titled
    /// "The Office" like two of TMDB's shows: S01E02.
    pub fn plex_unmatched_episode_scrobble() -> Value {
        world("plex_webhooks", "unmatched_episode_scrobble")
    }

    /// A movie scrobble (never synced).
    pub fn plex_movie_scrobble() -> Value {
        world("plex_webhooks", "movie_scrobble")
    }

    /// `library.new` for a newly added show (new agent; here the Guid array is the show's).
    pub fn plex_library_new_show() -> Value {
        world("plex_webhooks", "library_new_show")
    }

    /// Another household member's play on the owner's server: `user` is false.
    pub fn plex_other_account_scrobble() -> Value {
        let mut payload = plex_episode_scrobble();
        payload["user"] = json!(false);
        payload["Account"] = world("plex_webhooks", "other_account");
        payload
    }

    /// Jellyfin (webhook plugin, Generic destination, Send All Properties): alice finished The
    /// Office S01E02 "Diversity Day". `Provider_*` are the *episode's* ids.
    pub fn jellyfin_playback_stop() -> Value {
        world("jellyfin_webhooks", "playback_stop")
    }

    /// Jellyfin `UserDataSaved`: alice marked S01E02 played by hand (`TogglePlayed`).
    pub fn jellyfin_user_data_saved() -> Value {
        world("jellyfin_webhooks", "user_data_saved")
    }

    /// Jellyfin `PlaybackStop` of a movie (never synced).
    pub fn jellyfin_movie_playback_stop() -> Value {
        world("jellyfin_webhooks", "movie_playback_stop")
    }

    /// The same Jellyfin play by bob, another user of alice's server.
    pub fn jellyfin_other_user_playback_stop() -> Value {
        let mut payload = jellyfin_playback_stop();
        for (k, v) in world("jellyfin_webhooks", "other_user")
            .as_object()
            .expect("other_user is an object")
        {
            payload[k] = v.clone();
        }
        payload
    }

    /// Emby `playback.stop` (JSON body): alice finished The Office S01E03 "Health Care";
    /// `PlaybackInfo.PlayedToCompletion` is true and `Item.ProviderIds` are the episode's.
    pub fn emby_playback_stop() -> Value {
        world("emby_webhooks", "playback_stop")
    }

    /// Emby `item.markplayed` for the same episode.
    pub fn emby_mark_played() -> Value {
        world("emby_webhooks", "mark_played")
    }

    /// Emby `playback.stop` of a movie (never synced).
    pub fn emby_movie_playback_stop() -> Value {
        world("emby_webhooks", "movie_playback_stop")
    }

    /// The same Emby play by bob, another user of alice's server.
    pub fn emby_other_user_playback_stop() -> Value {
        let mut payload = emby_playback_stop();
        payload["User"] = world("emby_webhooks", "other_user");
        payload
    }

    /// Any payload with its event replaced (`media.play`, `media.pause`, ...).
    pub fn with_event(mut payload: Value, event: &str) -> Value {
        payload["event"] = json!(event);
        payload
    }

    /// `GET https://plex.tv/api/v2/resources?includeHttps=1&includeRelay=1` for alice: her own
    /// server (LAN, remote https, relay connections), a server shared with her, and a player.
    pub fn plex_tv_resources() -> Value {
        world("plex_tv", "/api/v2/resources")
    }

    /// `GET https://plex.tv/api/v2/user` for a valid token.
    pub fn plex_tv_user() -> Value {
        world("plex_tv", "/api/v2/user")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The stubs, the end-to-end test and the demo rely on these facts agreeing.
        #[test]
        fn the_world_is_consistent() {
            let uuid = server_uuid();
            assert_eq!(uuid.len(), 40);
            for p in [plex_movie_scrobble(), plex_library_new_show()] {
                assert_eq!(p["Server"]["uuid"], uuid);
            }
            let owned: Vec<Value> = plex_tv_resources()
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["owned"] == true && r["provides"] == "server")
                .cloned()
                .collect();
            assert_eq!(owned.len(), 1);
            assert_eq!(owned[0]["clientIdentifier"], uuid);
            assert_eq!(owned[0]["name"], plex_episode_scrobble()["Server"]["title"]);

            let office = tmdb_the_office();
            let show_guids = json!([
                {"id": format!("imdb://{}", office["external_ids"]["imdb_id"].as_str().unwrap())},
                {"id": format!("tmdb://{}", office["id"])},
                {"id": format!("tvdb://{}", office["external_ids"]["tvdb_id"])}
            ]);
            assert_eq!(plex_library_new_show()["Metadata"]["Guid"], show_guids);
            let plex_show = &plex_server_show_the_office()["MediaContainer"]["Metadata"][0];
            assert_eq!(plex_show["Guid"], show_guids);
            let scrobble = plex_episode_scrobble();
            assert_eq!(
                plex_show["ratingKey"],
                scrobble["Metadata"]["grandparentRatingKey"]
            );

            // Jellyfin's S01E02 and Emby's S01E03 carry those episodes' real ids.
            for (payload, number) in [
                (jellyfin_playback_stop(), 2),
                (emby_playback_stop()["Item"].clone(), 3),
            ] {
                let ext = world(
                    "tmdb",
                    &format!("/3/tv/2316/season/1/episode/{number}/external_ids"),
                );
                let text = payload.to_string();
                for id in [ext["tvdb_id"].to_string(), ext["id"].to_string()] {
                    assert!(text.contains(&format!("\"{id}\"")), "{number}: {id}");
                }
                assert!(text.contains(ext["imdb_id"].as_str().unwrap()));
            }
            let pilot = &tmdb_the_office_season_1()["episodes"][0];
            assert_eq!(pilot["show_id"], office["id"]);
            let ext = world("tmdb", "/3/tv/2316/season/1/episode/1/external_ids");
            assert_eq!(ext["id"], pilot["id"]);
            assert_eq!(
                scrobble["Metadata"]["Guid"],
                json!([
                    {"id": format!("imdb://{}", ext["imdb_id"].as_str().unwrap())},
                    {"id": format!("tmdb://{}", pilot["id"])},
                    {"id": format!("tvdb://{}", ext["tvdb_id"])}
                ])
            );
        }
    }
}

/// What a [`WireCounter`] saw clients send, in Postgres wire-protocol messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireCounts {
    /// Statements run: each `Execute`, and each simple `Query` (`BEGIN`, `COMMIT`, the pool's
    /// liveness check).
    pub statements: u64,
    /// Round trips: the times the client waited for the server, i.e. each read of its side that
    /// ends a `Sync` or a simple `Query`. Statements pipelined (sent back to back, each with its
    /// own `Sync`, before any answer) arrive in one read and count once: the client's next
    /// message can only follow the server's answer, so it cannot arrive in the same read.
    pub round_trips: u64,
    /// Statements parsed (`Parse`): a statement prepared once per connection counts once.
    pub parses: u64,
}

/// A TCP proxy in front of the test database that counts the statements and round trips of
/// its clients (the same counting as the bench's proxy, `tools/lambda_bench.py`). Point a pool
/// at [`Self::url`].
pub struct WireCounter {
    pub url: SecretString,
    counts: std::sync::Arc<std::sync::Mutex<WireCounts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WireCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl WireCounter {
    /// A proxy for `db` on a free loopback port.
    pub async fn start(db: &TestDb) -> Self {
        use secrecy::ExposeSecret;
        let mut url = Url::parse(db.url.expose_secret()).expect("test database URL");
        let upstream = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the counting proxy");
        let port = listener.local_addr().expect("proxy address").port();
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(port)).expect("port");
        // Plaintext, or there is nothing to count (`prefer` would encrypt when the server can).
        let query: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "sslmode")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(query)
            .append_pair("sslmode", "disable");
        let counts = std::sync::Arc::new(std::sync::Mutex::new(WireCounts::default()));
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("connect to Postgres");
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(copy(server_read, client_write, None));
                tokio::spawn(copy(client_read, server_write, Some(shared.clone())));
            }
        });
        Self {
            url: SecretString::from(url.to_string()),
            counts,
            task,
        }
    }

    /// What was counted so far.
    pub fn counts(&self) -> WireCounts {
        *self.counts.lock().expect("counts")
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        *self.counts.lock().expect("counts") = WireCounts::default();
    }
}

/// Copies one direction of a proxied connection; on the client's side, counts its messages.
async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counts: Option<std::sync::Arc<std::sync::Mutex<WireCounts>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut started = false;
    loop {
        let n = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&chunk[..n]).await.is_err() {
            return;
        }
        let Some(counts) = &counts else { continue };
        buf.extend_from_slice(&chunk[..n]);
        // The startup message, and the SSL / GSS encryption requests that may precede it, have
        // a length and a code but no type byte.
        while !started && buf.len() >= 8 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < len {
                break;
            }
            let code = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
            started = !matches!(code, 80_877_103 | 80_877_104);
            buf.drain(..len);
        }
        if !started {
            continue;
        }
        let mut waits = false;
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 1 + len {
                break;
            }
            let mut c = counts.lock().expect("counts");
            match buf[0] {
                b'Q' => {
                    c.statements += 1;
                    waits = true;
                }
                b'E' => c.statements += 1,
                b'S' => waits = true,
                b'P' => c.parses += 1,
                _ => {}
            }
            drop(c);
            buf.drain(..1 + len);
        }
        if waits {
            counts.lock().expect("counts").round_trips += 1;
        }
    }
}
