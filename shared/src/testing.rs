//! Test harness: a fresh, migrated database per test (so tests run in parallel), moto-backed
//! AWS clients, and HTTP stubs for services we do not own. Missing services fail the test with
//! a message saying how to start them; nothing is skipped silently.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::Credentials;
use secrecy::SecretString;
use url::Url;

use crate::db::{self, DbPool};

const HOW_TO_START: &str =
    "run the tests with `make test`, which starts Postgres and moto_server and sets \
DATABASE_URL and AWS_ENDPOINT_URL";

/// A uniquely named database with every migration applied. It is left behind on purpose (a
/// `Drop` cannot await); `make test` drops leftover `plexsync_test_*` databases older than two hours before a run.
pub struct TestDb {
    pub pool: DbPool,
    pub name: String,
    pub url: SecretString,
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
    queue.queue_url().expect("queue url").to_string()
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

/// A name no other test will pick.
pub fn unique_suffix() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// Realistic TMDB and plex.tv payloads for HTTP stubs (real ids: The Office (US) is TMDB 2316).
pub mod fixtures {
    use serde_json::{json, Value};

    /// `GET /3/tv/2316` (trimmed to the fields we read).
    pub fn tmdb_the_office() -> Value {
        json!({
            "id": 2316,
            "name": "The Office",
            "original_name": "The Office",
            "first_air_date": "2005-03-24",
            "status": "Ended",
            "number_of_seasons": 9,
            "number_of_episodes": 201,
            "external_ids": {"imdb_id": "tt0386676", "tvdb_id": 73244},
            "seasons": [
                {"id": 3627, "season_number": 0, "episode_count": 29, "name": "Specials", "air_date": "2007-07-13"},
                {"id": 3626, "season_number": 1, "episode_count": 6, "name": "Season 1", "air_date": "2005-03-24"},
                {"id": 3628, "season_number": 2, "episode_count": 22, "name": "Season 2", "air_date": "2005-09-20"}
            ]
        })
    }

    /// `GET /3/tv/2316/season/1`.
    pub fn tmdb_the_office_season_1() -> Value {
        let titles = [
            "Pilot",
            "Diversity Day",
            "Health Care",
            "The Alliance",
            "Basketball",
            "Hot Girl",
        ];
        let dates = [
            "2005-03-24",
            "2005-03-29",
            "2005-04-05",
            "2005-04-12",
            "2005-04-19",
            "2005-04-26",
        ];
        let episodes: Vec<Value> = titles
            .iter()
            .zip(dates)
            .enumerate()
            .map(|(i, (title, date))| {
                json!({"id": 397627 + i as i64, "episode_number": i + 1, "season_number": 1, "name": title, "air_date": date})
            })
            .collect();
        json!({"id": 3626, "season_number": 1, "name": "Season 1", "air_date": "2005-03-24", "episodes": episodes})
    }

    /// `GET /3/find/{tvdb episode id}?external_source=tvdb_id` for The Office S01E01.
    pub fn tmdb_find_office_pilot() -> Value {
        json!({
            "movie_results": [], "person_results": [], "tv_results": [], "tv_season_results": [],
            "tv_episode_results": [{
                "id": 397627, "name": "Pilot", "episode_number": 1, "season_number": 1,
                "show_id": 2316, "air_date": "2005-03-24", "episode_type": "standard"
            }]
        })
    }

    /// `GET {plex server}/library/metadata/48200` (Accept: JSON): the *show's* metadata, whose
    /// `Guid` array holds the show's ids (TMDB 2316, TVDB 73244, IMDb tt0386676).
    pub fn plex_server_show_the_office() -> Value {
        json!({
            "MediaContainer": {
                "size": 1, "allowSync": true, "identifier": "com.plexapp.plugins.library",
                "librarySectionID": 2, "librarySectionTitle": "TV Shows",
                "Metadata": [{
                    "ratingKey": "48200", "key": "/library/metadata/48200/children",
                    "guid": "plex://show/5d9c086c46115600200aa2fe", "type": "show",
                    "title": "The Office", "contentRating": "TV-14", "year": 2005,
                    "originallyAvailableAt": "2005-03-24", "leafCount": 201, "childCount": 9,
                    "Guid": [{"id": "imdb://tt0386676"}, {"id": "tmdb://2316"}, {"id": "tvdb://73244"}]
                }]
            }
        })
    }

    /// `GET {plex server}/library/metadata/48200/allLeaves` (Accept: JSON): every episode of The
    /// Office with the owner's watch state (trimmed to five). S01E01, S01E02, S01E04 and S02E01
    /// are watched; S01E03 was only started (`viewOffset`, no `viewCount`).
    pub fn plex_server_office_all_leaves() -> Value {
        let ep = |key: i64,
                  season: i64,
                  index: i64,
                  title: &str,
                  aired: &str,
                  viewed: Option<(i64, i64)>| {
            let mut e = json!({
                "ratingKey": key.to_string(), "key": format!("/library/metadata/{key}"),
                "parentRatingKey": if season == 1 { "48207" } else { "48208" },
                "grandparentRatingKey": "48200",
                "guid": format!("plex://episode/5d9c0874ffd9ef001e99{key}"),
                "type": "episode", "title": title, "grandparentTitle": "The Office",
                "parentTitle": format!("Season {season}"), "contentRating": "TV-14",
                "index": index, "parentIndex": season, "year": 2005,
                "originallyAvailableAt": aired, "duration": 1380000,
                "addedAt": 1690000000, "updatedAt": 1700000000
            });
            match viewed {
                Some((count, at)) => {
                    e["viewCount"] = json!(count);
                    e["lastViewedAt"] = json!(at);
                }
                None => e["viewOffset"] = json!(612000),
            }
            e
        };
        json!({
            "MediaContainer": {
                "size": 5, "allowSync": true, "identifier": "com.plexapp.plugins.library",
                "key": "48200", "librarySectionID": 2, "librarySectionTitle": "TV Shows",
                "mediaTagPrefix": "/system/bundle/media/flags/", "title1": "TV Shows",
                "title2": "The Office", "viewGroup": "episode", "viewMode": 65592,
                "Metadata": [
                    ep(48213, 1, 1, "Pilot", "2005-03-24", Some((2, 1700000000))),
                    ep(48214, 1, 2, "Diversity Day", "2005-03-29", Some((1, 1700086400))),
                    ep(48215, 1, 3, "Health Care", "2005-04-05", None),
                    ep(48216, 1, 4, "The Alliance", "2005-04-12", Some((1, 1700172800))),
                    ep(48230, 2, 1, "The Dundies", "2005-09-20", Some((1, 1700259200)))
                ]
            }
        })
    }

    /// `GET /3/search/tv?query=The Office` (first results, trimmed).
    pub fn tmdb_search_the_office() -> Value {
        json!({
            "page": 1, "total_pages": 1, "total_results": 3,
            "results": [
                {"id": 2316, "name": "The Office", "original_name": "The Office", "first_air_date": "2005-03-24", "origin_country": ["US"]},
                {"id": 2996, "name": "The Office", "original_name": "The Office", "first_air_date": "2001-07-09", "origin_country": ["GB"]},
                {"id": 127635, "name": "The Office", "original_name": "The Office", "first_air_date": "2022-10-20", "origin_country": ["AU"]}
            ]
        })
    }

    /// `GET /3/find/{id}` that matched nothing.
    pub fn tmdb_find_nothing() -> Value {
        json!({"movie_results": [], "person_results": [], "tv_results": [], "tv_season_results": [], "tv_episode_results": []})
    }

    /// A Plex Media Server webhook payload as the new Plex agent sends it: The Office (US)
    /// S01E01 "Pilot" scrobbled by the server owner. The `Guid` array holds the *episode's* ids.
    pub fn plex_episode_scrobble() -> Value {
        json!({
            "event": "media.scrobble",
            "user": true,
            "owner": true,
            "Account": {"id": 1, "thumb": "https://plex.tv/users/a1b2c3d4e5f60718/avatar?c=1700000000", "title": "alice"},
            "Server": {"title": "basement-nas", "uuid": "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f"},
            "Player": {"local": true, "publicAddress": "198.51.100.23", "title": "Living Room TV", "uuid": "r2k9x7c4v1b8n5m3"},
            "Metadata": {
                "librarySectionType": "show",
                "ratingKey": "48213",
                "key": "/library/metadata/48213",
                "parentRatingKey": "48207",
                "grandparentRatingKey": "48200",
                "guid": "plex://episode/5d9c0874ffd9ef001e99607a",
                "parentGuid": "plex://season/602e67e61d3358002c411c3e",
                "grandparentGuid": "plex://show/5d9c086c46115600200aa2fe",
                "type": "episode",
                "title": "Pilot",
                "grandparentKey": "/library/metadata/48200",
                "parentKey": "/library/metadata/48207",
                "librarySectionTitle": "TV Shows",
                "librarySectionID": 2,
                "librarySectionKey": "/library/sections/2",
                "grandparentTitle": "The Office",
                "parentTitle": "Season 1",
                "contentRating": "TV-14",
                "summary": "The premiere episode introduces the boss and staff of the Dunder-Mifflin Paper Company.",
                "index": 1,
                "parentIndex": 1,
                "audienceRating": 7.4,
                "viewCount": 1,
                "lastViewedAt": 1764339000,
                "year": 2005,
                "thumb": "/library/metadata/48213/thumb/1700000000",
                "art": "/library/metadata/48200/art/1700000000",
                "grandparentThumb": "/library/metadata/48200/thumb/1700000000",
                "duration": 1380000,
                "originallyAvailableAt": "2005-03-24",
                "addedAt": 1690000000,
                "updatedAt": 1700000000,
                "Guid": [
                    {"id": "imdb://tt0664521"},
                    {"id": "tmdb://397627"},
                    {"id": "tvdb://110413"}
                ]
            }
        })
    }

    /// The same kind of event from a server still on the legacy TheTVDB agent:
    /// Game of Thrones (TVDB 121361) S01E01. The show id sits in the episode guid.
    pub fn plex_legacy_episode_scrobble() -> Value {
        json!({
            "event": "media.scrobble",
            "user": true,
            "owner": true,
            "Account": {"id": 1, "title": "alice"},
            "Server": {"title": "old-htpc", "uuid": "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d"},
            "Player": {"local": false, "publicAddress": "203.0.113.40", "title": "Chrome", "uuid": "k3j4h5g6"},
            "Metadata": {
                "librarySectionType": "show",
                "ratingKey": "1201",
                "key": "/library/metadata/1201",
                "parentRatingKey": "1200",
                "grandparentRatingKey": "1199",
                "guid": "com.plexapp.agents.thetvdb://121361/1/1?lang=en",
                "parentGuid": "com.plexapp.agents.thetvdb://121361/1?lang=en",
                "grandparentGuid": "com.plexapp.agents.thetvdb://121361?lang=en",
                "type": "episode",
                "title": "Winter Is Coming",
                "grandparentTitle": "Game of Thrones",
                "parentTitle": "Season 1",
                "index": 1,
                "parentIndex": 1,
                "year": 2011,
                "addedAt": 1500000000,
                "updatedAt": 1500000000
            }
        })
    }

    /// A movie scrobble (never synced).
    pub fn plex_movie_scrobble() -> Value {
        json!({
            "event": "media.scrobble", "user": true, "owner": true,
            "Account": {"id": 1, "title": "alice"},
            "Server": {"title": "basement-nas", "uuid": "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f"},
            "Player": {"local": true, "publicAddress": "198.51.100.23", "title": "Living Room TV", "uuid": "r2k9x7c4v1b8n5m3"},
            "Metadata": {
                "librarySectionType": "movie", "ratingKey": "9001", "key": "/library/metadata/9001",
                "guid": "plex://movie/5d7768ba96b655001fdc0408", "type": "movie", "title": "Inception",
                "year": 2010, "Guid": [{"id": "imdb://tt1375666"}, {"id": "tmdb://27205"}, {"id": "tvdb://97"}]
            }
        })
    }

    /// `library.new` for a newly added show (new agent; here the Guid array is the show's).
    pub fn plex_library_new_show() -> Value {
        json!({
            "event": "library.new", "user": true, "owner": true,
            "Account": {"id": 1, "title": "alice"},
            "Server": {"title": "basement-nas", "uuid": "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f"},
            "Metadata": {
                "librarySectionType": "show", "ratingKey": "51000", "key": "/library/metadata/51000/children",
                "guid": "plex://show/5d9c086c46115600200aa2fe", "type": "show", "title": "The Office",
                "year": 2005, "addedAt": 1764300000,
                "Guid": [{"id": "imdb://tt0386676"}, {"id": "tmdb://2316"}, {"id": "tvdb://73244"}]
            }
        })
    }

    /// Another household member's play on the owner's server: `user` is false.
    pub fn plex_other_account_scrobble() -> Value {
        let mut payload = plex_episode_scrobble();
        payload["user"] = json!(false);
        payload["Account"] = json!({"id": 2, "thumb": "https://plex.tv/users/f0e1d2c3b4a59687/avatar", "title": "bob"});
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
        json!([
            {
                "name": "Living Room TV", "product": "Plex for Android (TV)", "productVersion": "10.19.0.2434",
                "platform": "Android", "platformVersion": "11", "device": "SHIELD Android TV",
                "clientIdentifier": "r2k9x7c4v1b8n5m3", "createdAt": "2024-02-11T19:02:41Z",
                "lastSeenAt": "2026-11-27T21:14:05Z", "provides": "client,player,pubsub-player",
                "ownerId": null, "sourceTitle": null, "publicAddress": "198.51.100.23",
                "accessToken": "plr-device-token-5f4e3d2c1b", "owned": true, "home": false, "synced": false,
                "relay": false, "presence": true, "httpsRequired": false, "publicAddressMatches": true,
                "dnsRebindingProtection": false, "natLoopbackSupported": false, "connections": []
            },
            {
                "name": "bobs-server", "product": "Plex Media Server", "productVersion": "1.41.2.9200-c6bbc1b53",
                "platform": "Windows", "platformVersion": "10.0 (Build 19045)", "device": "PC",
                "clientIdentifier": "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00", "createdAt": "2022-06-01T10:00:00Z",
                "lastSeenAt": "2026-11-28T08:00:00Z", "provides": "server", "ownerId": 87654321,
                "sourceTitle": "bob", "publicAddress": "203.0.113.77", "accessToken": "shared-server-token-9a8b7c",
                "owned": false, "home": false, "synced": false, "relay": true, "presence": true,
                "httpsRequired": true, "publicAddressMatches": false, "dnsRebindingProtection": false,
                "natLoopbackSupported": true,
                "connections": [
                    {"protocol": "https", "address": "203.0.113.77", "port": 32400,
                     "uri": "https://203-0-113-77.fedcba9876543210fedcba9876543210.plex.direct:32400",
                     "local": false, "relay": false, "IPv6": false}
                ]
            },
            {
                "name": "basement-nas", "product": "Plex Media Server", "productVersion": "1.41.2.9200-c6bbc1b53",
                "platform": "Linux", "platformVersion": "Ubuntu 22.04.4 LTS", "device": "Docker Container",
                "clientIdentifier": "7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f", "createdAt": "2023-01-15T18:22:03Z",
                "lastSeenAt": "2026-11-28T17:59:12Z", "provides": "server", "ownerId": null,
                "sourceTitle": null, "publicAddress": "198.51.100.23", "accessToken": "server-access-token-1a2b3c4d",
                "owned": true, "home": false, "synced": false, "relay": true, "presence": true,
                "httpsRequired": false, "publicAddressMatches": true, "dnsRebindingProtection": false,
                "natLoopbackSupported": false,
                "connections": [
                    {"protocol": "https", "address": "192.168.1.20", "port": 32400,
                     "uri": "https://192-168-1-20.0123456789abcdef0123456789abcdef.plex.direct:32400",
                     "local": true, "relay": false, "IPv6": false},
                    {"protocol": "http", "address": "192.168.1.20", "port": 32400,
                     "uri": "http://192.168.1.20:32400", "local": true, "relay": false, "IPv6": false},
                    {"protocol": "https", "address": "143.110.1.5", "port": 8443,
                     "uri": "https://143-110-1-5.0123456789abcdef0123456789abcdef.plex.direct:8443",
                     "local": false, "relay": true, "IPv6": false},
                    {"protocol": "https", "address": "198.51.100.23", "port": 32400,
                     "uri": "https://198-51-100-23.0123456789abcdef0123456789abcdef.plex.direct:32400",
                     "local": false, "relay": false, "IPv6": false}
                ]
            }
        ])
    }

    /// `GET https://plex.tv/api/v2/user` for a valid token.
    pub fn plex_tv_user() -> Value {
        json!({
            "id": 12345678, "uuid": "a1b2c3d4e5f60718", "username": "alice", "title": "alice",
            "email": "alice@example.com", "friendlyName": "Alice", "locale": null,
            "confirmed": true, "joinedAt": 1546300800, "emailOnlyAuth": false,
            "hasPassword": true, "protected": false, "thumb": "https://plex.tv/users/a1b2c3d4e5f60718/avatar",
            "subscription": {"active": true, "status": "Active", "plan": "lifetime"}
        })
    }
}
