#![warn(unreachable_pub)]
//! `mappings` handler.
//!
//! - `GET /api/plex/mappings`: every Plex show we know (`unmapped`, `conflicts`, pagination).
//! - `POST /api/plex/mappings/{id}/confirm`: map to a tracker show, as the user says.
//! - `DELETE /api/plex/mappings/{id}`: stop syncing the show (the mapping stays).
//! - `POST /api/plex/mappings/bulk`: turn sync on or off for many mappings ([`bulk`]).
//! - `POST /api/plex/mappings/{id}/sync`: history sync from the Plex server
//!   ([`sync::sync_show_progress`]).

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{
        self, json, page_request, query_bool, route_not_found, routes, ApiContext, ApiError,
        RouteMatch, StrictBody,
    },
    env::Env,
    ids::{MappingId, RowId, ShowId},
    pipeline::StartupError,
    plex::PlexServerClient,
    store::mappings::{self, Mapping, MappingFilter},
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

mod bulk;
pub mod sync;

use sync::SyncReport;

pub struct State {
    pub api: ApiContext,
    /// Talks to the user's Plex server for the history sync.
    pub plex: PlexServerClient,
    /// Secrets Manager id of the key that decrypts the stored Plex token.
    pub encryption_key_id: String,
    /// See [`SYNC_BUDGET`].
    pub sync_budget: Duration,
}

/// A history sync answers within this long: the function's timeout is 28 s and API Gateway's
/// 30 s. A sync still running then is given up (its transaction rolls back) and answered 503;
/// it is safe to run again, since it never overwrites an episode already watched.
pub const SYNC_BUDGET: Duration = Duration::from_secs(25);

impl State {
    /// The API's variables plus `ENCRYPTION_KEY_SECRET_ID`.
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        Ok(Self {
            api: ApiContext::from_env(env, sdk)?,
            plex: PlexServerClient::for_listings()?,
            encryption_key_id: env.required("ENCRYPTION_KEY_SECRET_ID")?,
            sync_budget: SYNC_BUDGET,
        })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let req = &req;
    let serve = state.api.serve(req, routes::MAPPINGS, |route| async move {
        match route.key() {
            ("GET", "/api/plex/mappings") => list(state, req).await,
            ("POST", "/api/plex/mappings/bulk") => bulk::switch_sync(state, req).await,
            ("POST", "/api/plex/mappings/{id}/confirm") => confirm(state, &route, req).await,
            ("DELETE", "/api/plex/mappings/{id}") => disable(state, &route).await,
            ("POST", "/api/plex/mappings/{id}/sync") => sync(state, &route).await,
            _ => Err(route_not_found(req)),
        }
    });
    serve.await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    mappings: Vec<Mapping>,
    next_cursor: Option<String>,
}

async fn list(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let filter = MappingFilter {
        unmapped: query_bool(req, "unmapped")?.unwrap_or(false),
        conflicts: query_bool(req, "conflicts")?.unwrap_or(false),
    };
    let page = page_request(req)?;
    let page = mappings::list(&state.api.pool, filter, &page).await?;
    Ok(json(
        StatusCode::OK,
        &ListResponse {
            mappings: page.items,
            next_cursor: page.next_cursor,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConfirmBody {
    tvshow_id: i64,
}

impl StrictBody for ConfirmBody {
    const FIELDS: &'static [&'static str] = &["tvshowId"];
}

#[derive(Serialize)]
struct MappingResponse {
    success: bool,
    mapping: Mapping,
}

async fn confirm(
    state: &State,
    route: &RouteMatch,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let id: MappingId = route.row_id("id")?;
    let body: ConfirmBody = api::parse_body(req)?;
    if body.tvshow_id <= 0 {
        return Err(ApiError::BadRequest(
            "tvshowId must be a positive integer".into(),
        ));
    }
    let tvshow_id = ShowId::from_request(body.tvshow_id).ok_or_else(|| {
        ApiError::Unprocessable(format!("tvshow {} does not exist", body.tvshow_id))
    })?;
    let mapping = mappings::confirm(&state.api.pool, id, tvshow_id).await?;
    tracing::info!(mapping = id.0, tvshow = tvshow_id.0, "mapping confirmed");
    Ok(json(
        StatusCode::OK,
        &MappingResponse {
            success: true,
            mapping,
        },
    ))
}

async fn disable(state: &State, route: &RouteMatch) -> Result<Response<Body>, ApiError> {
    let id: MappingId = route.row_id("id")?;
    let mapping = mappings::disable(&state.api.pool, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("mapping {id} does not exist")))?;
    tracing::info!(mapping = id.0, "sync disabled for mapping");
    Ok(json(
        StatusCode::OK,
        &MappingResponse {
            success: true,
            mapping,
        },
    ))
}

#[derive(Serialize)]
struct SyncResponse {
    success: bool,
    #[serde(flatten)]
    report: SyncReport,
}

async fn sync(state: &State, route: &RouteMatch) -> Result<Response<Body>, ApiError> {
    let id = route.row_id("id")?;
    let keyring = state.api.keyring(&state.encryption_key_id).await?;
    let work = sync::sync_show_progress(&state.api.pool, &state.plex, &keyring, id);
    let Ok(report) = tokio::time::timeout(state.sync_budget, work).await else {
        tracing::warn!(mapping = %id, "history sync out of time; given up");
        return Err(ApiError::Unavailable(format!(
            "history sync did not finish within {} s; what it had not saved was rolled back, and it is safe to run again",
            state.sync_budget.as_secs()
        )));
    };
    let report = report?;
    Ok(json(
        StatusCode::OK,
        &SyncResponse {
            success: true,
            report,
        },
    ))
}
