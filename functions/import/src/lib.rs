#![warn(unreachable_pub)]
//! `import` handler: the user's Plex watch history, brought into the tracker.
//!
//! - `POST /api/plex/import`: starts an import ([`start::start`]): lists the TV shows of the
//!   server's library and queues one message per watched show, which the processor takes
//!   through the scrobbles' matching and marking. `202` at once; the work happens in the queue.
//! - `GET /api/plex/import`: the latest import, with its progress or result.

use chrono::NaiveDate;
use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{self, body_bytes, json, route_not_found, routes, ApiContext, ApiError, StrictBody},
    env::Env,
    pipeline::StartupError,
    plex::PlexServerClient,
    store::imports::{self, Import},
};
use serde::{Deserialize, Serialize};

pub mod start;

pub struct State {
    pub api: ApiContext,
    /// Lists the library on the user's Plex server.
    pub plex: PlexServerClient,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    /// Secrets Manager id of the key that decrypts the stored Plex token.
    pub encryption_key_id: String,
}

impl State {
    /// The API's variables plus `ENCRYPTION_KEY_SECRET_ID` and `QUEUE_URL`.
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            api: ApiContext::from_env(env, sdk)?,
            plex: PlexServerClient::for_listings()?,
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue_url: env.url("QUEUE_URL")?.to_string(),
            encryption_key_id: env.required("ENCRYPTION_KEY_SECRET_ID")?,
        })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let req = &req;
    let serve = state.api.serve(req, routes::IMPORT, |route| async move {
        match route.key() {
            ("GET", "/api/plex/import") => latest(state).await,
            ("POST", "/api/plex/import") => begin(state, req).await,
            _ => Err(route_not_found(req)),
        }
    });
    serve.await
}

#[derive(Serialize)]
struct ImportResponse {
    import: Option<Import>,
}

async fn latest(state: &State) -> Result<Response<Body>, ApiError> {
    let client = state.api.pool.get().await?;
    let import = imports::latest(&client).await?;
    Ok(json(StatusCode::OK, &ImportResponse { import }))
}

/// `POST /api/plex/import` body; every field optional, and so is the body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartBody {
    /// Library section keys to import (default: every TV section).
    #[serde(default)]
    pub sections: Option<Vec<String>>,
    /// Only episodes last watched on or after this day (UTC).
    #[serde(default)]
    pub watched_since: Option<NaiveDate>,
}

impl StrictBody for StartBody {
    const FIELDS: &'static [&'static str] = &["sections", "watchedSince"];
}

async fn begin(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let body = if body_bytes(req).iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        api::parse_body::<StartBody>(req)?
    };
    let request = start::ImportRequest::parse(body)?;
    let import = start::start(state, &request).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &ImportResponse {
            import: Some(import),
        },
    ))
}
