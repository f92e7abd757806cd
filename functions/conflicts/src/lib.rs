//! `conflicts` handler.
//!
//! - `GET /api/plex/conflicts`: unresolved conflicts with their potential matches.
//! - `POST /api/plex/conflicts/{id}/resolve`: `select` a tracker show or `ignore` the Plex show,
//!   in one transaction; then the conflict's pending events are handed to [`replay_pending`].
//!   `create_new` (create the show from TMDB) answers 501 until the TMDB client is wired in.

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{self, routes, ApiContext, PageRequest, RouteMatch, StrictBody},
    config::{ConfigError, Env},
    http::{json, respond, route_not_found},
    store::conflicts::{self, Conflict, Resolution, ResolveError, Resolved},
    ApiError,
};
use serde::{Deserialize, Serialize};

pub struct State {
    pub api: ApiContext,
}

impl State {
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            api: ApiContext::from_env(env, sdk)?,
        })
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
    let page = PageRequest::from_request(req)?;
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

/// The seed's body: `{action, tvshowId?, createNew?: {tmdbId}}`.
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

/// What happened to the conflict's pending events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayReport {
    /// Events that were waiting for this conflict.
    pub pending: usize,
    /// Events that went through the processor.
    pub replayed: usize,
    /// Why they were not replayed, when they were not.
    pub note: Option<&'static str>,
}

/// The one place where a resolution's pending events are replayed through the processor's
/// code. Until that code is wired in, the events stay stored (unreplayed) and the answer says
/// so; `store::conflicts::mark_replayed` records a replay.
pub async fn replay_pending(_state: &State, resolved: &Resolved) -> ReplayReport {
    let pending = resolved.pending.len();
    match resolved.resolution {
        Resolution::Ignore => ReplayReport {
            pending,
            replayed: 0,
            note: (pending > 0).then_some("the show is ignored; its pending events are not synced"),
        },
        Resolution::Select { .. } => ReplayReport {
            pending,
            replayed: 0,
            note: (pending > 0).then_some(
                "pending events are kept; replaying them through the processor is not wired in yet",
            ),
        },
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResolveResponse {
    success: bool,
    conflict_id: i64,
    action: Action,
    tvshow_id: Option<i64>,
    mapping_id: i32,
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
    let resolution = match body.action {
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
            Resolution::Select { tvshow_id }
        }
        Action::Ignore => {
            if body.tvshow_id.is_some() {
                return Err(misplaced("tvshowId"));
            }
            if body.create_new.is_some() {
                return Err(misplaced("createNew"));
            }
            Resolution::Ignore
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
            return match conflicts::is_resolved(&state.api.pool, id).await? {
                None => Err(ApiError::NotFound(format!("conflict {id} does not exist"))),
                Some(true) => Err(ApiError::Conflict(format!(
                    "conflict {id} is already resolved"
                ))),
                Some(false) => Err(ApiError::NotImplemented(
                    "create_new is not available yet (it needs the TMDB client); use select or ignore"
                        .into(),
                )),
            };
        }
    };
    let resolved = conflicts::resolve(&state.api.pool, id, resolution)
        .await
        .map_err(|e| match e {
            ResolveError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ResolveError::AlreadyResolved(_) => ApiError::Conflict(e.to_string()),
            ResolveError::UnknownShow(_) => ApiError::Unprocessable(e.to_string()),
            ResolveError::Db(db) => db.into(),
        })?;
    tracing::info!(
        conflict = id,
        action = ?body.action,
        mapping = resolved.mapping_id,
        pending = resolved.pending.len(),
        "conflict resolved"
    );
    let replay = replay_pending(state, &resolved).await;
    Ok(json(
        StatusCode::OK,
        &ResolveResponse {
            success: true,
            conflict_id: id,
            action: body.action,
            tvshow_id: match resolution {
                Resolution::Select { tvshow_id } => Some(tvshow_id),
                Resolution::Ignore => None,
            },
            mapping_id: resolved.mapping_id,
            replay,
        },
    ))
}
