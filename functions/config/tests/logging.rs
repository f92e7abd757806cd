//! No log line contains the Plex token. In its own test binary: the subscriber captures
//! every line of this process, and no other test races it for tracing's callsite cache.

use config::{handle, plex_tv::PlexTvClient, State};
use lambda_http::{Body, Response};
use plexsync::{
    api::testing::{authed, text},
    crypto::generate_key_hex,
    testing::{fixtures, fresh_db, moto_config, secret, unique_suffix, LogCapture, TestDb},
};
use serde_json::json;
use wiremock::{matchers::path, Mock, MockServer, ResponseTemplate};

const PLEX_TOKEN: &str = "yZxW9vUtSrQpOnMlKjIh";

/// The function's state and its database, which lives (and is dropped) with the test.
async fn state(plex: &MockServer) -> (State, TestDb) {
    let db = fresh_db().await;
    let sdk = moto_config().await;
    let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
    let state = State {
        api,
        plex_tv: PlexTvClient::new(plex.uri().parse().unwrap()),
        public_base_url: "https://api.example.com".parse().unwrap(),
        encryption_key_id: secret(&sdk, &generate_key_hex()).await,
        webhook_secret_id: format!("plexsync-test/webhook-{}", unique_suffix()),
    };
    (state, db)
}

async fn call(state: &State, method: &str, body: Option<serde_json::Value>) -> Response<Body> {
    let resp = handle(state, authed(method, "/api/plex/config", body)).await;
    assert!(!text(&resp).contains(PLEX_TOKEN));
    resp
}

#[tokio::test]
async fn no_log_line_contains_the_plex_token() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let plex = MockServer::start().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_user()))
        .mount(&plex)
        .await;
    Mock::given(path("/api/v2/resources"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::plex_tv_resources()))
        .mount(&plex)
        .await;
    let (s, _db) = state(&plex).await;
    assert_eq!(
        call(&s, "POST", Some(json!({"plexToken": PLEX_TOKEN})))
            .await
            .status(),
        200
    );
    call(&s, "GET", None).await;
    call(&s, "DELETE", None).await;
    // The token in a field where it does not belong: the 400 names the field, not the value.
    let resp = call(
        &s,
        "POST",
        Some(json!({"plexToken": PLEX_TOKEN, "enabled": PLEX_TOKEN})),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let failing = MockServer::start().await;
    Mock::given(path("/api/v2/user"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&failing)
        .await;
    let (s, _db) = state(&failing).await;
    assert_eq!(
        call(&s, "POST", Some(json!({"plexToken": PLEX_TOKEN})))
            .await
            .status(),
        502
    );

    let logs = captured.text();
    assert!(
        logs.contains("plex configuration saved"),
        "logging was captured: {logs}"
    );
    assert!(logs.contains("plex.tv call failed"), "{logs}");
    assert!(
        !logs.contains(PLEX_TOKEN),
        "a log line contains the Plex token"
    );
}
