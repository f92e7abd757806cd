//! A save without `plexToken` keeps the stored (encrypted) token: changing a switch must not
//! need the token pasted again. Only an explicit new token replaces it.

use plexsync::{
    api::testing::{authed, json, text},
    crypto::Keyring,
    secrets::SecretsCache,
    testing::fixtures,
};
use secrecy::ExposeSecret;
use serde_json::json;
use wiremock::{
    matchers::{header, method, path},
    Mock, ResponseTemplate,
};

use crate::support::*;

/// Another valid token, for the explicit replacement.
const NEW_TOKEN: &str = "AbCdEfGhIjKlMnOpQrSt";

async fn stored_ciphertext(h: &Harness) -> String {
    h.config_row().await.expect("config stored").get(0)
}

/// What the processor does with the row: open it with the encryption key.
async fn opened(h: &Harness, ciphertext: &str) -> String {
    let key = SecretsCache::new(aws_sdk_secretsmanager::Client::new(&h.sdk))
        .get(&h.state.encryption_key_id)
        .await
        .unwrap()
        .unwrap();
    Keyring::from_secret(&key)
        .unwrap()
        .decrypt(ciphertext)
        .unwrap()
        .expose_secret()
        .to_string()
}

async fn token_set(h: &Harness) -> serde_json::Value {
    json(&h.call(authed("GET", "/api/plex/config", None)).await)["plexTokenSet"].clone()
}

/// plex.tv calls made with `token`.
async fn plex_tv_calls_with(h: &Harness, token: &str) -> usize {
    h.plex
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            r.headers
                .get("X-Plex-Token")
                .is_some_and(|v| v.as_bytes() == token.as_bytes())
        })
        .count()
}

#[tokio::test]
async fn a_save_without_a_token_changes_settings_and_keeps_the_stored_token() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    assert_eq!(token_set(&h).await, false);
    let first = h.post(json!({"plexToken": PLEX_TOKEN})).await;
    assert_eq!(first.status(), 200, "{}", text(&first));
    let before = stored_ciphertext(&h).await;
    assert_eq!(token_set(&h).await, true);
    let calls_before = plex_tv_calls_with(&h, PLEX_TOKEN).await;

    let resp = h
        .post(json!({"autoAddShows": false, "allowedAccounts": ["bob"]}))
        .await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    assert_eq!(json(&resp)["webhookUrl"], json(&first)["webhookUrl"]);

    let row = h.config_row().await.unwrap();
    assert!(!row.get::<_, bool>(7), "autoAddShows changed");
    assert_eq!(row.get::<_, String>(0), before, "ciphertext untouched");
    assert_eq!(opened(&h, &before).await, PLEX_TOKEN);
    assert_eq!(token_set(&h).await, true);
    // The stored token was checked with plex.tv again (account and servers).
    assert_eq!(plex_tv_calls_with(&h, PLEX_TOKEN).await, calls_before + 2);
    let view = json(&h.call(authed("GET", "/api/plex/config", None)).await);
    assert_eq!(view["allowedAccounts"], json!(["bob"]));
    assert!(view.get("plexToken").is_none());
}

#[tokio::test]
async fn an_explicit_new_token_replaces_the_stored_one() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    for p in ["/api/v2/user", "/api/v2/resources"] {
        let body = if p.ends_with("user") {
            fixtures::plex_tv_user()
        } else {
            fixtures::plex_tv_resources()
        };
        Mock::given(method("GET"))
            .and(path(p))
            .and(header("X-Plex-Token", NEW_TOKEN))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&h.plex)
            .await;
    }
    assert_eq!(h.post(json!({"plexToken": PLEX_TOKEN})).await.status(), 200);
    let before = stored_ciphertext(&h).await;

    let resp = h.post(json!({"plexToken": NEW_TOKEN})).await;
    assert_eq!(resp.status(), 200, "{}", text(&resp));
    let after = stored_ciphertext(&h).await;
    assert_ne!(after, before);
    assert_eq!(opened(&h, &after).await, NEW_TOKEN);
    assert!(!text(&resp).contains(NEW_TOKEN));
}

#[tokio::test]
async fn without_a_stored_token_a_save_needs_one_and_nothing_reaches_plex_tv() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    let resp = h.post(json!({"autoAddShows": false})).await;
    assert_eq!(resp.status(), 400);
    let body = json(&resp);
    assert_eq!(body["status"], "error");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("plexToken is required"),
        "{body}"
    );
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    assert!(h.config_row().await.is_none());
}

#[tokio::test]
async fn a_stored_token_plex_tv_no_longer_accepts_asks_for_a_new_one_and_stays() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    assert_eq!(h.post(json!({"plexToken": PLEX_TOKEN})).await.status(), 200);
    let before = stored_ciphertext(&h).await;
    // The user signed out of all devices in Plex: plex.tv refuses the stored token now.
    h.plex.reset().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&h.plex)
        .await;

    let resp = h.post(json!({"autoMarkWatched": false})).await;
    assert_eq!(resp.status(), 422);
    let message = json(&resp)["message"].as_str().unwrap().to_string();
    assert!(message.contains("stored Plex token"), "{message}");
    assert!(
        message.contains("enter your current Plex token"),
        "{message}"
    );
    let row = h.config_row().await.unwrap();
    assert_eq!(row.get::<_, String>(0), before);
    assert!(row.get::<_, bool>(8), "nothing else changed either");
}
