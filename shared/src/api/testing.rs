//! Test support for the functions' handler tests: contexts on moto, API Gateway-shaped
//! requests, response bodies.

use std::{sync::Arc, time::Duration};

use lambda_http::{http, Body, Request, RequestExt, Response};

use super::{ApiContext, Cors};
use crate::{db::DbPool, env::Env, secrets::SecretsCache};

/// The API token the test contexts accept.
pub const API_TOKEN: &str = "test-api-token-4f1c2a9e8b7d6c5e3f2a1b0c";
/// An origin the test contexts allow.
pub const ALLOWED_ORIGIN: &str = "https://tracker.example.com";

/// A secrets cache on moto that re-reads on every mismatch (no rate limit), so rotation
/// tests do not wait.
pub fn secrets_cache(sdk: &aws_config::SdkConfig) -> Arc<SecretsCache> {
    Arc::new(SecretsCache::with_timings(
        aws_sdk_secretsmanager::Client::new(sdk),
        Duration::from_secs(300),
        Duration::ZERO,
    ))
}

/// A context on `pool` whose API token lives in a fresh moto secret. Returns the context
/// and the token's secret id.
pub async fn context(pool: DbPool, sdk: &aws_config::SdkConfig) -> (ApiContext, String) {
    let token_id = crate::testing::secret(sdk, API_TOKEN).await;
    let cors = Cors::from_env(&Env::from_map([(Cors::ENV, ALLOWED_ORIGIN)])).expect("cors");
    (
        ApiContext::new(pool, secrets_cache(sdk), token_id.clone(), cors),
        token_id,
    )
}

/// A request as API Gateway hands it over (query parameters parsed into the extension),
/// authorised with `auth` (`Some(API_TOKEN)` for the happy path).
pub fn request(method: &str, uri: &str, auth: Option<&str>, body: Body) -> Request {
    let mut builder = http::Request::builder().method(method).uri(uri);
    if let Some(token) = auth {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    if !matches!(body, Body::Empty) {
        builder = builder.header("content-type", "application/json");
    }
    let req = builder.body(body).expect("valid test request");
    let query: std::collections::HashMap<String, Vec<String>> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes()).fold(
                std::collections::HashMap::new(),
                |mut m: std::collections::HashMap<String, Vec<String>>, (k, v)| {
                    m.entry(k.into_owned()).or_default().push(v.into_owned());
                    m
                },
            )
        })
        .unwrap_or_default();
    req.with_query_string_parameters(query)
}

/// An authorised request with an optional JSON body.
pub fn authed(method: &str, uri: &str, body: Option<serde_json::Value>) -> Request {
    let body = body.map_or(Body::Empty, |b| Body::from(b.to_string()));
    request(method, uri, Some(API_TOKEN), body)
}

/// The response body as JSON (panics with the body text when it is not JSON).
pub fn json(resp: &Response<Body>) -> serde_json::Value {
    serde_json::from_slice(resp.body().as_ref()).unwrap_or_else(|e| {
        panic!(
            "response is not JSON ({e}): {}",
            String::from_utf8_lossy(resp.body().as_ref())
        )
    })
}

/// The response body as text.
pub fn text(resp: &Response<Body>) -> String {
    String::from_utf8_lossy(resp.body().as_ref()).into_owned()
}
