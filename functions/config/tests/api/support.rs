//! Harness: the config function over a fresh database, moto secrets and a wiremock plex.tv.

use config::{handle, plex_tv::PlexTvClient, State};
use lambda_http::{Body, Request, Response};
use plexsync::{
    api::testing::{authed, text},
    crypto::generate_key_hex,
    secrets::SecretsCache,
    testing::{fixtures, fresh_db, moto_config, secret, unique_suffix, TestDb},
};
use secrecy::ExposeSecret;
use serde_json::Value;
use wiremock::{
    matchers::{header, method, path},
    Mock, MockServer, ResponseTemplate,
};

/// A realistic Plex token (20 characters, like the ones Plex issues).
pub const PLEX_TOKEN: &str = "yZxW9vUtSrQpOnMlKjIh";
pub const PUBLIC_BASE: &str = "https://api.example.com";

pub struct Harness {
    pub state: State,
    pub db: TestDb,
    pub plex: MockServer,
    pub sdk: aws_config::SdkConfig,
    pub api_token_id: String,
}

impl Harness {
    pub async fn new() -> Self {
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

    pub async fn plex_tv_ok(&self) {
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

    pub async fn call(&self, req: Request) -> Response<Body> {
        let resp = handle(&self.state, req).await;
        // Whatever happened, the token never comes back.
        assert!(
            !text(&resp).contains(PLEX_TOKEN),
            "response contains the Plex token"
        );
        resp
    }

    pub async fn post(&self, body: Value) -> Response<Body> {
        self.call(authed("POST", "/api/plex/config", Some(body)))
            .await
    }

    /// A fresh cache: what another Lambda instance (the webhook) would read.
    pub async fn stored_webhook_secret(&self) -> Option<String> {
        SecretsCache::new(aws_sdk_secretsmanager::Client::new(&self.sdk))
            .get(&self.state.webhook_secret_id)
            .await
            .unwrap()
            .map(|s| s.expose_secret().to_string())
    }

    pub async fn config_row(&self) -> Option<tokio_postgres::Row> {
        self.db.client().await
            .query_opt(
                "SELECT plex_token, plex_server_url, plex_server_name, plex_server_uuid,
                        plex_account_id, plex_account_name, enabled, auto_add_shows, auto_mark_watched,
                        allow_insecure_http
                   FROM plex_config",
                &[],
            )
            .await
            .unwrap()
    }
}

pub fn secret_of(webhook_url: &str) -> String {
    let url = url::Url::parse(webhook_url).unwrap();
    assert_eq!(url.path(), "/api/plex/webhook");
    url.query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
        .expect("secret query parameter")
}
