// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
#![warn(unreachable_pub)]
//! `conflicts` handler.
//!
//! - `GET /api/plex/conflicts`: unresolved conflicts with their potential matches.
//! - `POST /api/plex/conflicts/{id}/resolve`: `select` a tracker show, `create_new` (create the
//!   show from TMDB, or use the tracker show that already has that TMDB id) or `ignore` the Plex
//!   show, in one transaction; then the conflict's pending events are replayed through the
//!   processor ([`resolution::replay_pending`]) and the answer says what was marked. The work
//!   ends by [`REPLAY_BUDGET`] after the request came in; what the replay had no time for goes
//!   to the processor's queue ([`requeue`]).
//! - `POST /api/plex/conflicts/bulk`: the same resolution for many conflicts, each in its own
//!   transaction with its own replay, within a time budget ([`bulk`]).

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{
        self, json, page_request, route_not_found, routes, ApiContext, ApiError, RouteMatch,
        StrictBody,
    },
    env::Env,
    ids::{ConflictId, MappingId, RowId, ShowId},
    pipeline::{Pipeline, StartupError},
    store::conflicts::{self, Conflict, Resolution, Resolved},
};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

mod bulk;
pub mod requeue;
pub mod resolution;

use requeue::EventQueue;

/// A resolution's TMDB calls and replay end this long after the request came in: the
/// function's timeout is 28 s and API Gateway's 30 s, and handing the rest to the queue and
/// answering must still fit.
pub const REPLAY_BUDGET: Duration = Duration::from_secs(20);

use resolution::{CreatedShow, ReplayReport};

pub struct State {
    pub api: ApiContext,
    /// The processor's state (sharing the API's pool): TMDB for `create_new`, and what the
    /// replay of pending events needs.
    pub pipeline: Pipeline,
    /// A bulk request starts no new conflict after this long, so its answer reaches API
    /// Gateway (30 s) while the last conflict's replay finishes.
    pub bulk_budget: Duration,
    /// See [`REPLAY_BUDGET`].
    pub replay_budget: Duration,
    /// Where the events the replay had no time for go.
    pub queue: EventQueue,
}

impl State {
    /// The API's variables plus `TMDB_API_TOKEN`, `TMDB_BASE_URL`, `ENCRYPTION_KEY_SECRET_ID`
    /// and `QUEUE_URL` (the processor's queue).
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, StartupError> {
        let api = ApiContext::from_env(env, sdk)?;
        let pipeline = Pipeline::with_pool(api.pool.clone(), env, sdk)?;
        Ok(Self {
            api,
            pipeline,
            bulk_budget: bulk::BUDGET,
            replay_budget: REPLAY_BUDGET,
            queue: EventQueue {
                sqs: aws_sdk_sqs::Client::new(sdk),
                url: env.url("QUEUE_URL")?.to_string(),
            },
        })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let req = &req;
    let serve = state.api.serve(req, routes::CONFLICTS, |route| async move {
        match route.key() {
            ("GET", "/api/plex/conflicts") => list(state, req).await,
            ("POST", "/api/plex/conflicts/bulk") => bulk::resolve_many(state, req).await,
            ("POST", "/api/plex/conflicts/{id}/resolve") => resolve(state, &route, req).await,
            _ => Err(route_not_found(req)),
        }
    });
    serve.await
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
    conflict_id: ConflictId,
    action: Action,
    tvshow_id: Option<ShowId>,
    mapping_id: MappingId,
    /// For `create_new`: the show created from TMDB (or the existing one used).
    #[serde(skip_serializing_if = "Option::is_none")]
    created_show: Option<CreatedShow>,
    replay: ReplayReport,
}

/// A resolve body checked against its action: exactly the fields that action takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResolveRequest {
    Select { tvshow_id: ShowId },
    CreateNew { tmdb_id: i64 },
    Ignore,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Self::Select => "select",
            Self::CreateNew => "create_new",
            Self::Ignore => "ignore",
        }
    }
}

impl ResolveBody {
    /// A field the action does not take is 400; a missing one it needs is 422.
    fn check(&self) -> Result<ResolveRequest, ApiError> {
        let misplaced = |field: &str| {
            ApiError::BadRequest(format!(
                "{field} does not apply to action {}",
                self.action.as_str()
            ))
        };
        let create_new = self.create_new.as_ref().map(|c| c.tmdb_id);
        match self.action {
            Action::Select if create_new.is_some() => Err(misplaced("createNew")),
            Action::Select => {
                let tvshow_id = positive(self.tvshow_id, "tvshowId", self.action)?;
                // Out of the column's range: no such show, as for any other unknown id.
                let tvshow_id = ShowId::from_request(tvshow_id).ok_or_else(|| {
                    ApiError::Unprocessable(format!("tvshow {tvshow_id} does not exist"))
                })?;
                Ok(ResolveRequest::Select { tvshow_id })
            }
            Action::Ignore if self.tvshow_id.is_some() => Err(misplaced("tvshowId")),
            Action::Ignore if create_new.is_some() => Err(misplaced("createNew")),
            Action::Ignore => Ok(ResolveRequest::Ignore),
            Action::CreateNew if self.tvshow_id.is_some() => Err(misplaced("tvshowId")),
            Action::CreateNew => Ok(ResolveRequest::CreateNew {
                tmdb_id: positive(create_new, "createNew.tmdbId", self.action)?,
            }),
        }
    }
}

/// A required id field: missing is 422, not a positive integer is 400.
fn positive(value: Option<i64>, field: &str, action: Action) -> Result<i64, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "{field} is required for action {}",
            action.as_str()
        ))
    })?;
    if value <= 0 {
        return Err(ApiError::BadRequest(format!(
            "{field} must be a positive integer"
        )));
    }
    Ok(value)
}

async fn resolve(
    state: &State,
    route: &RouteMatch,
    req: &Request,
) -> Result<Response<Body>, ApiError> {
    let id: ConflictId = route.row_id("id")?;
    let body: ResolveBody = api::parse_body(req)?;
    let deadline = Instant::now() + state.replay_budget;
    let settled = settle(state, id, body.check()?, deadline).await?;
    Ok(json(
        StatusCode::OK,
        &ResolveResponse {
            success: true,
            conflict_id: id,
            action: body.action,
            tvshow_id: settled.resolved.resolution.tvshow_id(),
            mapping_id: settled.resolved.mapping_id,
            created_show: settled.created_show,
            replay: settled.replay,
        },
    ))
}

/// A conflict resolved and its pending events replayed.
struct Settled {
    resolved: Resolved,
    created_show: Option<CreatedShow>,
    replay: ReplayReport,
}

/// Resolves one conflict (one transaction) and replays its pending events: the one path for
/// the single resolve and for each conflict of a bulk request.
async fn settle(
    state: &State,
    id: ConflictId,
    request: ResolveRequest,
    deadline: Instant,
) -> Result<Settled, ApiError> {
    let pool = &state.api.pool;
    let (resolved, created_show) = match request {
        ResolveRequest::Select { tvshow_id } => (
            conflicts::resolve(pool, id, Resolution::Select { tvshow_id }).await?,
            None,
        ),
        ResolveRequest::Ignore => (
            conflicts::resolve(pool, id, Resolution::Ignore).await?,
            None,
        ),
        ResolveRequest::CreateNew { tmdb_id } => {
            let (resolved, show) =
                resolution::create_new(&state.pipeline, id, tmdb_id, deadline).await?;
            (resolved, Some(show))
        }
    };
    tracing::info!(
        conflict = id.0,
        action = ?request,
        mapping = resolved.mapping_id.0,
        pending = resolved.pending.len(),
        "conflict resolved"
    );
    let replay =
        resolution::replay_pending(&state.pipeline, &state.queue, &resolved, deadline).await;
    Ok(Settled {
        resolved,
        created_show,
        replay,
    })
}
