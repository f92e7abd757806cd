// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
//! `conflicts` handler.
//!
//! - `GET /api/plex/conflicts`: unresolved conflicts with their potential matches.
//! - `POST /api/plex/conflicts/{id}/resolve`: `select` a tracker show, `create_new` (create the
//!   show from TMDB, or use the tracker show that already has that TMDB id) or `ignore` the Plex
//!   show, in one transaction; then the conflict's pending events are replayed through the
//!   processor ([`resolution::replay_pending`]) and the answer says what was marked.

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{
        self, json, page_request, respond, route_not_found, routes, ApiContext, ApiError,
        RouteMatch, StrictBody,
    },
    env::Env,
    pipeline::{Pipeline, StartupError},
    store::conflicts::{self, Conflict, Resolution},
};
use serde::{Deserialize, Serialize};

pub mod resolution;

use resolution::{CreatedShow, ReplayReport};

pub struct State {
    pub api: ApiContext,
    /// The processor's state (sharing the API's pool): TMDB for `create_new`, and what the
    /// replay of pending events needs.
    pub pipeline: Pipeline,
}

impl State {
    /// The API's variables plus `TMDB_API_TOKEN`, `TMDB_BASE_URL`, `ENCRYPTION_KEY_SECRET_ID`.
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let api = ApiContext::from_env(env, sdk)?;
        let pipeline = Pipeline::with_pool(api.pool.clone(), env, sdk)?;
        Ok(Self { api, pipeline })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let route = match state.api.begin(&req, routes::CONFLICTS).await {
        Ok(route) => route,
        Err(resp) => return resp,
    };
    let result = match route.key() {
        ("GET", "/api/plex/conflicts") => list(state, &req).await,
        ("POST", "/api/plex/conflicts/{id}/resolve") => resolve(state, &route, &req).await,
        _ => Err(route_not_found(&req)),
    };
    state.api.finish(&req, respond(result))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    conflicts: Vec<Conflict>,
    next_cursor: Option<String>,
}

async fn list(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let page = page_request(req)?;
    let page = conflicts::list_open(&state.api.pool, &page).await?;
    Ok(json(
        StatusCode::OK,
        &ListResponse {
            conflicts: page.items,
            next_cursor: page.next_cursor,
        },
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Select,
    CreateNew,
    Ignore,
}

/// The resolve body: `{action, tvshowId?, createNew?: {tmdbId}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResolveBody {
    action: Action,
    tvshow_id: Option<i64>,
    create_new: Option<CreateNew>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateNew {
    tmdb_id: i64,
}

impl StrictBody for ResolveBody {
    const FIELDS: &'static [&'static str] = &["action", "tvshowId", "createNew"];
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResolveResponse {
    success: bool,
    conflict_id: i64,
    action: Action,
    tvshow_id: Option<i64>,
    mapping_id: i32,
    /// For `create_new`: the show created from TMDB (or the existing one used).
    #[serde(skip_serializing_if = "Option::is_none")]
    created_show: Option<CreatedShow>,
    replay: ReplayReport,
}

async fn resolve(
    state: &State,
    route: &RouteMatch,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let id = route.id("id")?;
    let body: ResolveBody = api::parse_body(req)?;
    let misplaced = |field: &str| {
        ApiError::BadRequest(format!(
            "{field} does not apply to action {}",
            match body.action {
                Action::Select => "select",
                Action::CreateNew => "create_new",
                Action::Ignore => "ignore",
            }
        ))
    };
    let (resolved, created_show) = match body.action {
        Action::Select => {
            if body.create_new.is_some() {
                return Err(misplaced("createNew"));
            }
            let tvshow_id = body.tvshow_id.ok_or_else(|| {
                ApiError::Unprocessable("tvshowId is required for action select".into())
            })?;
            if tvshow_id <= 0 {
                return Err(ApiError::BadRequest(
                    "tvshowId must be a positive integer".into(),
                ));
            }
            let resolved =
                conflicts::resolve(&state.api.pool, id, Resolution::Select { tvshow_id })
                    .await
                    .map_err(ApiError::from)?;
            (resolved, None)
        }
        Action::Ignore => {
            if body.tvshow_id.is_some() {
                return Err(misplaced("tvshowId"));
            }
            if body.create_new.is_some() {
                return Err(misplaced("createNew"));
            }
            let resolved = conflicts::resolve(&state.api.pool, id, Resolution::Ignore)
                .await
                .map_err(ApiError::from)?;
            (resolved, None)
        }
        Action::CreateNew => {
            if body.tvshow_id.is_some() {
                return Err(misplaced("tvshowId"));
            }
            let tmdb_id = body.create_new.as_ref().map(|c| c.tmdb_id).ok_or_else(|| {
                ApiError::Unprocessable("createNew.tmdbId is required for action create_new".into())
            })?;
            if tmdb_id <= 0 {
                return Err(ApiError::BadRequest(
                    "createNew.tmdbId must be a positive integer".into(),
                ));
            }
            let (resolved, show) = resolution::create_new(&state.pipeline, id, tmdb_id).await?;
            (resolved, Some(show))
        }
    };
    tracing::info!(
        conflict = id,
        action = ?body.action,
        mapping = resolved.mapping_id,
        pending = resolved.pending.len(),
        "conflict resolved"
    );
    let replay = resolution::replay_pending(&state.pipeline, &resolved).await;
    Ok(json(
        StatusCode::OK,
        &ResolveResponse {
            success: true,
            conflict_id: id,
            action: body.action,
            tvshow_id: resolved.resolution.tvshow_id(),
            mapping_id: resolved.mapping_id,
            created_show,
            replay,
        },
    ))
}
