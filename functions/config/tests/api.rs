//! `config` handler against real Postgres, moto Secrets Manager and a wiremock plex.tv.

use config::{handle, plex_tv::PlexTvClient, State};
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::{authed, json, request, text, ALLOWED_ORIGIN, API_TOKEN},
    crypto::{generate_key_hex, Keyring},
    secrets::SecretsCache,
    testing::{fixtures, fresh_db, moto_config, secret, unique_suffix, TestDb},
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path},
    Mock, MockServer, ResponseTemplate,
};

/// A realistic Plex token (20 characters, like the ones Plex issues).
const PLEX_TOKEN: &str = "yZxW9vUtSrQpOnMlKjIh";
const PUBLIC_BASE: &str = "https://api.example.com";

struct Harness {
    state: State,
    db: TestDb,
    plex: MockServer,
    sdk: aws_config::SdkConfig,
    api_token_id: String,
}

impl Harness {
    async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, api_token_id) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let key_id = secret(&sdk, &generate_key_hex()).await;
        let plex = MockServer::start().await;
        let state = State {
            api,
            plex_tv: PlexTvClient::new(plex.uri().parse().unwrap()),
            public_base_url: PUBLIC_BASE.parse().unwrap(),
            encryption_key_id: key_id,
            // Not created: the first save creates it.
            webhook_secret_id: format!("plexsync-test/webhook-{}", unique_suffix()),
        };
        Self {
            state,
            db,
            plex,
            sdk,
            api_token_id,
        }
    }

    async fn plex_tv_ok(&self) {
        Mock::given(method("GET"))
            .and(path("/api/v2/user"))
            .and(header("X-Plex-Token", PLEX_TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
            .mount(&self.plex)
            .await;
        Mock::given(method("GET"))
            .and(path("/api/v2/resources"))
            .and(header("X-Plex-Token", PLEX_TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_resources()))
            .mount(&self.plex)
            .await;
    }

    async fn call(&self, req: Request) -> Response<Body> {
        let resp = handle(&self.state, req).await;
        // Whatever happened, the token never comes back.
        assert!(
            !text(&resp).contains(PLEX_TOKEN),
            "response contains the Plex token"
        );
        resp
    }

    async fn post(&self, body: Value) -> Response<Body> {
        self.call(authed("POST", "/api/plex/config", Some(body)))
            .await
    }

    /// A fresh cache: what another Lambda instance (the webhook) would read.
    async fn stored_webhook_secret(&self) -> Option<String> {
        SecretsCache::new(aws_sdk_secretsmanager::Client::new(&self.sdk))
            .get(&self.state.webhook_secret_id)
            .await
            .unwrap()
            .map(|s| s.expose_secret().to_string())
    }

    async fn config_row(&self) -> Option<tokio_postgres::Row> {
        self.db
            .pool
            .get()
            .await
            .unwrap()
            .query_opt(
                "SELECT plex_token, plex_server_url, plex_server_name, plex_server_uuid,
                        plex_account_id, plex_account_name, enabled, auto_add_shows, auto_mark_watched
                   FROM plex_config",
                &[],
            )
            .await
            .unwrap()
    }
}

fn secret_of(webhook_url: &str) -> String {
    let url = url::Url::parse(webhook_url).unwrap();
    assert_eq!(url.path(), "/api/plex/webhook");
    url.query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .expect("secret query parameter")
}

#[tokio::test]
async fn post_validates_with_plex_tv_discovers_server_encrypts_and_returns_webhook_url() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "autoAddShows": false}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["serverName"], "basement-nas");
    let webhook_url = body["webhookUrl"].as_str().unwrap();
    assert!(webhook_url.starts_with("https://api.example.com/api/plex/webhook?secret="));
    let secret = secret_of(webhook_url);
    assert_eq!(secret.len(), 43, "32 random bytes, base64url");
    assert_eq!(
        h.stored_webhook_secret().await.as_deref(),
        Some(secret.as_str())
    );

    let row = h.config_row().await.expect("config stored");
    let stored_token: String = row.get(0);
    assert!(!stored_token.contains(PLEX_TOKEN), "token stored in clear");
    let key = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&h.sdk))
        .get(&h.state.encryption_key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        Keyring::from_secret(&key)
            .unwrap()
            .decrypt(&stored_token)
            .unwrap()
            .expose_secret(),
        PLEX_TOKEN
    );
    // The remote, direct https connection of the owned server, not the LAN or relay one.
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("https://198-51-100-23.0123456789abcdef0123456789abcdef.plex.direct:32400")
    );
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("basement-nas")
    );
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f")
    );
    assert_eq!(row.get::<_, Option<i64>>(4), Some(12345678));
    assert_eq!(row.get::<_, Option<String>>(5).as_deref(), Some("alice"));
    assert!(row.get::<_, bool>(6), "enabled by default");
    assert!(!row.get::<_, bool>(7), "autoAddShows false as sent");
    assert!(row.get::<_, bool>(8), "autoMarkWatched default");
}

#[tokio::test]
async fn later_saves_keep_the_webhook_secret_and_flags_unless_asked() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let first = json(
        &h.post(json!({"plexToken": PLEX_TOKEN, "autoMarkWatched": false}))
            .await,
    );
    let second = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(second.status(), 200);
    let second = json(&second);
    assert_eq!(first["webhookUrl"], second["webhookUrl"], "secret kept");
    assert!(
        !h.config_row().await.unwrap().get::<_, bool>(8),
        "flag kept"
    );

    let rotated = json(
        &h.post(json!({"plexToken": PLEX_TOKEN, "rotateWebhookSecret": true}))
            .await,
    );
    assert_ne!(first["webhookUrl"], rotated["webhookUrl"]);
    let new_secret = secret_of(rotated["webhookUrl"].as_str().unwrap());
    assert_eq!(
        h.stored_webhook_secret().await.as_deref(),
        Some(new_secret.as_str())
    );
}

#[tokio::test]
async fn an_existing_webhook_secret_is_kept_on_first_save() {
    let mut h = Harness::new().await;
    h.plex_tv_ok().await;
    h.state.webhook_secret_id = secret(&h.sdk, "pre-provisioned-secret-0123456789abcdef").await;
    let body = json(&h.post(json!({"plexToken": PLEX_TOKEN})).await);
    assert_eq!(
        secret_of(body["webhookUrl"].as_str().unwrap()),
        "pre-provisioned-secret-0123456789abcdef"
    );
}

#[tokio::test]
async fn explicit_server_url_is_stored_and_named_from_plex_tv() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let resp = h
        .post(json!({
            "plexToken": PLEX_TOKEN,
            "plexServerUrl": "https://192-168-1-20.0123456789abcdef0123456789abcdef.plex.direct:32400/"
        }))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    assert_eq!(json(&resp)["serverName"], "basement-nas");
    let row = h.config_row().await.unwrap();
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("https://192-168-1-20.0123456789abcdef0123456789abcdef.plex.direct:32400")
    );
}

#[tokio::test]
async fn no_owned_server_without_url_is_422_and_stores_nothing() {
    let h = Harness::new().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
        .mount(&h.plex)
        .await;
    let only_shared: Vec<Value> = fixtures::plex_tv_resources()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["owned"] == false)
        .cloned()
        .collect();
    Mock::given(path("/api/v2/resources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(only_shared))
        .mount(&h.plex)
        .await;
    let resp = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(resp.status(), 422);
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("plexServerUrl"));
    assert!(h.config_row().await.is_none());
    assert!(h.stored_webhook_secret().await.is_none());
}

#[tokio::test]
async fn rejected_token_is_422_and_plex_tv_outage_is_502_nothing_stored() {
    let h = Harness::new().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"errors": [{"code": 1001, "message": "User could not be authenticated", "status": 401}]})))
        .up_to_n_times(1)
        .mount(&h.plex)
        .await;
    let resp = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(resp.status(), 422);
    let body = json(&resp);
    assert_eq!(body["status"], "error");
    assert_eq!(body["message"], "token rejected by plex.tv");

    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&h.plex)
        .await;
    let resp = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(resp.status(), 502);
    assert!(json(&resp)["message"].as_str().unwrap().contains("plex.tv"));

    assert!(h.config_row().await.is_none(), "nothing stored");
    assert!(
        h.stored_webhook_secret().await.is_none(),
        "no secret written"
    );

    // plex.tv not answering at all.
    let mut down = Harness::new().await;
    down.state.plex_tv = PlexTvClient::new("http://127.0.0.1:9".parse().unwrap());
    let resp = down.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(resp.status(), 502);
    assert!(down.config_row().await.is_none());
}

#[tokio::test]
async fn bad_bodies_are_400_or_413_and_never_reach_plex_tv() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let cases: Vec<(Body, u16, Vec<&str>)> = vec![
        (Body::from(json!({}).to_string()), 400, vec!["plexToken"]),
        (
            Body::from(json!({"plexToken": PLEX_TOKEN, "foo": 1, "serverUrl": "x"}).to_string()),
            400,
            vec!["foo", "serverUrl"],
        ),
        (
            Body::from(json!({"plexToken": PLEX_TOKEN, "autoAddShows": "yes"}).to_string()),
            400,
            vec!["autoAddShows"],
        ),
        (
            Body::from(json!({"plexToken": 12345}).to_string()),
            400,
            vec!["plexToken"],
        ),
        (
            Body::from(json!({"plexToken": "short"}).to_string()),
            400,
            vec!["plexToken"],
        ),
        (
            Body::from(json!({"plexToken": "a".repeat(201)}).to_string()),
            400,
            vec!["plexToken"],
        ),
        (
            Body::from(json!({"plexToken": "has spaces in it, twenty+"}).to_string()),
            400,
            vec!["plexToken"],
        ),
        (
            Body::from(json!({"plexToken": PLEX_TOKEN, "plexServerUrl": "ftp://nas"}).to_string()),
            400,
            vec!["plexServerUrl"],
        ),
        (
            Body::from(json!({"plexToken": PLEX_TOKEN, "plexServerUrl": "not a url"}).to_string()),
            400,
            vec!["plexServerUrl"],
        ),
        (Body::from("{\"plexToken\": "), 400, vec!["JSON"]),
        (Body::from("[]"), 400, vec!["object"]),
        (Body::Empty, 400, vec!["empty"]),
        (
            Body::from(json!({"plexToken": PLEX_TOKEN, "pad": "x".repeat(70_000)}).to_string()),
            413,
            vec![],
        ),
    ];
    for (body, status, words) in cases {
        let resp = h
            .call(request("POST", "/api/plex/config", Some(API_TOKEN), body))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{j}");
        assert_eq!(j["status"], "error");
        for w in words {
            assert!(j["message"].as_str().unwrap().contains(w), "{w}: {j}");
        }
    }
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    assert!(h.config_row().await.is_none());
}

#[tokio::test]
async fn get_never_returns_the_token_and_has_the_seed_shape() {
    let h = Harness::new().await;
    let before = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(
        before,
        json!({
            "configured": false, "enabled": false, "autoAddShows": true, "autoMarkWatched": true,
            "serverName": null, "serverUrl": null, "plexAccountName": null,
            "allowedAccounts": [], "lastWebhookReceived": null, "webhookUrl": null
        })
    );
    h.plex_tv_ok().await;
    let saved = json(
        &h.post(json!({"plexToken": PLEX_TOKEN, "autoAddShows": false}))
            .await,
    );
    h.db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "UPDATE plex_config SET last_webhook_received = '2026-11-28T17:00:00Z'",
            &[],
        )
        .await
        .unwrap();
    let resp = h.call(authed("GET", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["configured"], true);
    assert_eq!(body["enabled"], true);
    assert_eq!(body["autoAddShows"], false);
    assert_eq!(body["autoMarkWatched"], true);
    assert_eq!(body["serverName"], "basement-nas");
    assert_eq!(body["plexAccountName"], "alice");
    assert_eq!(body["lastWebhookReceived"], "2026-11-28T17:00:00Z");
    assert_eq!(body["webhookUrl"], saved["webhookUrl"]);
    assert!(body.get("plexToken").is_none());
    let stored: String = h.config_row().await.unwrap().get(0);
    assert!(!text(&resp).contains(&stored), "not even the ciphertext");
}

#[tokio::test]
async fn delete_soft_disables_and_keeps_mappings() {
    let h = Harness::new().await;
    let resp = h.call(authed("DELETE", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 404, "nothing to disable yet");
    h.plex_tv_ok().await;
    h.post(json!({"plexToken": PLEX_TOKEN})).await;
    let client = h.db.pool.get().await.unwrap();
    client
        .execute(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title)
             VALUES ('7f3e1c2b9a8d4e6f5a4b3c2d1e0f9a8b7c6d5e4f', '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office')",
            &[],
        )
        .await
        .unwrap();
    let resp = h.call(authed("DELETE", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp), json!({"success": true, "enabled": false}));
    let row = h.config_row().await.expect("row kept");
    assert!(!row.get::<_, bool>(6));
    let n: i64 = client
        .query_one("SELECT count(*) FROM plex_show_mappings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "mappings kept");
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["configured"], true);
    assert_eq!(view["enabled"], false);
    // Saving again re-enables only when asked.
    h.post(json!({"plexToken": PLEX_TOKEN, "enabled": true}))
        .await;
    assert!(h.config_row().await.unwrap().get::<_, bool>(6));
}

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    for (m, p) in plexsync::api::routes::CONFIG {
        let body = if *m == "POST" {
            Body::from(json!({"plexToken": PLEX_TOKEN}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token"), Some("")] {
            let resp = h.call(request(m, p, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {p} {auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let j = json(&resp);
            assert_eq!(j["status"], "error");
            assert_eq!(j["error"], "unauthorized");
        }
    }
    let basic = lambda_http::http::Request::builder()
        .method("GET")
        .uri("/api/plex/config")
        .header("authorization", format!("Basic {API_TOKEN}"))
        .body(Body::Empty)
        .unwrap();
    assert_eq!(h.call(basic).await.status(), 401);
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    assert!(h.config_row().await.is_none());
}

#[tokio::test]
async fn a_rotated_api_token_is_picked_up_on_mismatch() {
    let h = Harness::new().await;
    assert_eq!(
        h.call(authed("GET", "/api/plex/config", None))
            .await
            .status(),
        200
    );
    aws_sdk_secretsmanager::Client::new(&h.sdk)
        .put_secret_value()
        .secret_id(&h.api_token_id)
        .secret_string("rotated-api-token-aaaaaaaaaaaaaaaa")
        .send()
        .await
        .unwrap();
    let resp = h
        .call(request(
            "GET",
            "/api/plex/config",
            Some("rotated-api-token-aaaaaaaaaaaaaaaa"),
            Body::Empty,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        h.call(authed("GET", "/api/plex/config", None))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn cors_preflight_and_headers_follow_the_allowlist() {
    let h = Harness::new().await;
    let preflight = |origin: &str| {
        lambda_http::http::Request::builder()
            .method("OPTIONS")
            .uri("/api/plex/config")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::Empty)
            .unwrap()
    };
    let resp = h.call(preflight(ALLOWED_ORIGIN)).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    assert!(resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let resp = h.call(preflight("https://evil.example.net")).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let mut req = authed("GET", "/api/plex/config", None);
    req.headers_mut()
        .insert("origin", ALLOWED_ORIGIN.parse().unwrap());
    let resp = h.call(req).await;
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let mut req = request("GET", "/api/plex/config", None, Body::Empty);
    req.headers_mut()
        .insert("origin", ALLOWED_ORIGIN.parse().unwrap());
    let resp = h.call(req).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN,
        "a browser can read the 401"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("PUT", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");
    assert_eq!(json(&resp)["status"], "error");
    let resp = h.call(authed("GET", "/api/plex/configuration", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["error"], "not_found");
}

#[tokio::test]
async fn allowed_accounts_are_saved_shown_and_kept_until_changed() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "allowedAccounts": ["bob", 2]}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let stored = |h: &Harness| {
        let pool = h.db.pool.clone();
        async move {
            pool.get()
                .await
                .unwrap()
                .query_one("SELECT allowed_accounts FROM plex_config", &[])
                .await
                .unwrap()
                .get::<_, Value>(0)
        }
    };
    // The shape the processor's account gate reads: names as strings, ids as numbers.
    assert_eq!(stored(&h).await, json!(["bob", 2]));
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["allowedAccounts"], json!(["bob", 2]));

    // A save that does not mention the list keeps it; an empty list clears it.
    assert_eq!(h.post(json!({"plexToken": PLEX_TOKEN})).await.status(), 200);
    assert_eq!(stored(&h).await, json!(["bob", 2]));
    assert_eq!(
        h.post(json!({"plexToken": PLEX_TOKEN, "allowedAccounts": []}))
            .await
            .status(),
        200
    );
    assert_eq!(stored(&h).await, json!([]));
}

#[tokio::test]
async fn bad_allowed_accounts_are_400_and_store_nothing() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let too_many: Vec<Value> = (0..51).map(|i| json!(format!("user{i}"))).collect();
    for bad in [
        json!([""]),
        json!([true]),
        json!("bob"),
        json!([-1]),
        json!(too_many),
    ] {
        let resp = h
            .post(json!({"plexToken": PLEX_TOKEN, "allowedAccounts": bad}))
            .await;
        assert_eq!(resp.status(), 400, "{bad}: {}", text(&resp));
        assert_eq!(json(&resp)["status"], "error");
    }
    assert!(h.config_row().await.is_none());
}
