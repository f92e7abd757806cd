#![warn(unreachable_pub)]
//! `logs` handler.
//!
//! - `GET /api/plex/logs`: the activity log, newest first (`limit`, `status`, `cursor`).
//! - `GET /api/plex/stats`: per-day totals for 7 days, plus open conflicts.
//! - `POST /api/plex/logs/{id}/replay`: re-enqueue a stored payload.
//! - `GET /api/plex/dead-letters`: what sits in the dead-letter queue, decoded.
//! - `POST /api/plex/dead-letters/redrive`: move it back to the queue.

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{
        json, page_request, query_param, route_not_found, routes, ApiContext, ApiError, RouteMatch,
    },
    env::{Env, EnvError},
    ids::LogId,
    store::{
        conflicts,
        logs::{self, DayStats, LogEntry, LogStatus},
    },
};
use serde::Serialize;

pub mod dead_letters;
pub mod log_replay;

use log_replay::replay_log;

/// Days covered by `GET /api/plex/stats`.
const STATS_DAYS: i32 = 7;

pub struct State {
    pub api: ApiContext,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub dlq_url: String,
}

impl State {
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, EnvError> {
        Ok(Self {
            api: ApiContext::from_env(env, sdk)?,
            sqs: aws_sdk_sqs::Client::new(sdk),
            queue_url: env.url("QUEUE_URL")?.to_string(),
            dlq_url: env.url("DLQ_URL")?.to_string(),
        })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let req = &req;
    let serve = state.api.serve(req, routes::LOGS, |route| async move {
        match route.key() {
            ("GET", "/api/plex/logs") => list(state, req).await,
            ("GET", "/api/plex/stats") => stats(state).await,
            ("POST", "/api/plex/logs/{id}/replay") => replay(state, &route).await,
            ("GET", "/api/plex/dead-letters") => list_dead_letters(state, req).await,
            ("POST", "/api/plex/dead-letters/redrive") => redrive_dead_letters(state, req).await,
            _ => Err(route_not_found(req)),
        }
    });
    serve.await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogsResponse {
    logs: Vec<LogEntry>,
    next_cursor: Option<String>,
}

async fn list(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let page = page_request(req)?;
    let status = query_param(req, "status")
        .map(|s| {
            LogStatus::parse(&s).ok_or_else(|| {
                let all: Vec<&str> = LogStatus::ALL.iter().map(|v| v.as_str()).collect();
                ApiError::BadRequest(format!("status must be one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let page = logs::list(&state.api.pool, status, &page).await?;
    Ok(json(
        StatusCode::OK,
        &LogsResponse {
            logs: page.items,
            next_cursor: page.next_cursor,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatsResponse {
    days: Vec<DayStats>,
    open_conflicts: i64,
}

async fn stats(state: &State) -> Result<Response<Body>, ApiError> {
    let days = logs::daily_stats(&state.api.pool, STATS_DAYS).await?;
    let open_conflicts = conflicts::count_open(&state.api.pool).await?;
    Ok(json(
        StatusCode::OK,
        &StatsResponse {
            days,
            open_conflicts,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplayResponse {
    success: bool,
    log_id: LogId,
    message_id: Option<String>,
    event_type: &'static str,
    plex_title: String,
}

async fn replay(state: &State, route: &RouteMatch) -> Result<Response<Body>, ApiError> {
    let id = route.row_id("id")?;
    let done = replay_log(&state.api.pool, &state.sqs, &state.queue_url, id).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &ReplayResponse {
            success: true,
            log_id: done.log_id,
            message_id: done.message_id,
            event_type: done.message.event.kind.as_str(),
            plex_title: done.message.event.show.title.clone(),
        },
    ))
}

/// `limit` (1 to [`dead_letters::MAX_PER_REQUEST`], default that many).
fn dead_letter_limit(req: &Request) -> Result<usize, ApiError> {
    let max = dead_letters::MAX_PER_REQUEST;
    match query_param(req, "limit") {
        None => Ok(max),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to {max}"))),
    }
}

async fn list_dead_letters(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let limit = dead_letter_limit(req)?;
    let listed = dead_letters::list(&state.sqs, &state.api.pool, &state.dlq_url, limit).await?;
    Ok(json(StatusCode::OK, &listed))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RedriveResponse {
    success: bool,
    moved: usize,
}

async fn redrive_dead_letters(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let limit = dead_letter_limit(req)?;
    let moved = dead_letters::redrive(&state.sqs, &state.dlq_url, &state.queue_url, limit).await?;
    Ok(json(
        StatusCode::OK,
        &RedriveResponse {
            success: true,
            moved,
        },
    ))
}
