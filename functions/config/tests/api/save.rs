//! Saving the Plex settings: validation with plex.tv, server discovery, the webhook secret,
//! allowed accounts, and bad bodies that store nothing.

use config::plex_tv::PlexTvClient;
use lambda_http::Body;
use plexsync::{
    api::testing::{authed, json, request, text, API_TOKEN},
    crypto::Keyring,
    secrets::SecretsCache,
    testing::{fixtures, secret},
};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use wiremock::{matchers::path, Mock, ResponseTemplate};

use crate::support::*;

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
        Some(fixtures::server_uuid())
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

#[tokio::test]
async fn a_plain_http_server_url_needs_the_explicit_opt_in() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let lan = "http://192.168.1.20:32400";

    // Without the opt-in: 400 before plex.tv is asked, nothing stored.
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "plexServerUrl": lan}))
        .await;
    assert_eq!(resp.status(), 400, "{}", text(&resp));
    let body = json(&resp);
    assert_eq!(body["error"], "bad_request");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("plain http") && message.contains("allowInsecureHttp"),
        "{message}"
    );
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    assert!(h.config_row().await.is_none());

    // With it: stored with the flag, and the view says so.
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "plexServerUrl": lan, "allowInsecureHttp": true}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let row = h.config_row().await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some(lan));
    assert!(row.get::<_, bool>(9));
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["allowInsecureHttp"], true);
    assert_eq!(view["serverUrl"], lan);

    // A later save without it (an https server now) clears it.
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "plexServerUrl": "https://plex.example.com:32400"}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    assert!(!h.config_row().await.unwrap().get::<_, bool>(9));
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["allowInsecureHttp"], false);
}

#[tokio::test]
async fn a_discovered_server_with_only_http_connections_needs_the_opt_in_too() {
    let h = Harness::new().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
        .mount(&h.plex)
        .await;
    let mut resources = fixtures::plex_tv_resources();
    for resource in resources.as_array_mut().unwrap() {
        if let Some(connections) = resource["connections"].as_array_mut() {
            connections.retain(|c| c["protocol"] == "http");
        }
    }
    Mock::given(path("/api/v2/resources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(resources))
        .mount(&h.plex)
        .await;
    let resp = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(resp.status(), 422, "{}", text(&resp));
    assert!(json(&resp)["message"]
        .as_str()
        .unwrap()
        .contains("allowInsecureHttp"));
    assert!(h.config_row().await.is_none());
    let resp = h
        .post(json!({"plexToken": PLEX_TOKEN, "allowInsecureHttp": true}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let row = h.config_row().await.unwrap();
    assert!(row
        .get::<_, Option<String>>(1)
        .unwrap()
        .starts_with("http://"));
}
