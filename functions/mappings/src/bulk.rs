//! `POST /api/plex/mappings/bulk`: sync on or off for many mappings in one request, with one
//! result per mapping (a mapping that cannot be switched does not fail the others).

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{self, json, ApiError, StrictBody},
    store::mappings::{self, SyncSwitch},
};
use serde::{Deserialize, Serialize};

use crate::State;

/// Most mappings one request may name (one statement; the page selects at most a page).
pub(crate) const MAX_IDS: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BulkBody {
    ids: Vec<i64>,
    sync_enabled: bool,
}

impl StrictBody for BulkBody {
    const FIELDS: &'static [&'static str] = &["ids", "syncEnabled"];
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemResult {
    id: i64,
    /// `updated`, `unchanged` (already so) or `error`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync_enabled: Option<bool>,
    /// For `error`: the API's error code and message, as a single request would answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

#[derive(Serialize)]
struct BulkResponse {
    results: Vec<ItemResult>,
}

/// Checks the id list: 1..=[`MAX_IDS`] positive ids.
pub(crate) fn check_ids(ids: &[i64]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::Unprocessable(
            "ids must name at least one id".into(),
        ));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "ids names more than {MAX_IDS} ids; send them in several requests"
        )));
    }
    if ids.iter().any(|id| *id <= 0) {
        return Err(ApiError::BadRequest("ids must be positive integers".into()));
    }
    Ok(())
}

pub(crate) async fn switch_sync(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let body: BulkBody = api::parse_body(req)?;
    check_ids(&body.ids)?;
    let on = body.sync_enabled;
    let outcomes = mappings::set_sync_enabled(&state.api.pool, &body.ids, on).await?;
    let results: Vec<ItemResult> = outcomes
        .into_iter()
        .map(|(id, outcome)| item(id, outcome, on))
        .collect();
    tracing::info!(
        ids = results.len(),
        updated = results.iter().filter(|r| r.status == "updated").count(),
        sync_enabled = on,
        "bulk sync switch"
    );
    Ok(json(StatusCode::OK, &BulkResponse { results }))
}

fn item(id: i64, outcome: SyncSwitch, on: bool) -> ItemResult {
    let done = |status| ItemResult {
        id,
        status,
        sync_enabled: Some(on),
        error: None,
        message: None,
    };
    let failed = |err: ApiError| ItemResult {
        id,
        status: "error",
        sync_enabled: None,
        error: Some(err.code()),
        message: Some(err.to_string()),
    };
    match outcome {
        SyncSwitch::Updated => done("updated"),
        SyncSwitch::Unchanged => done("unchanged"),
        SyncSwitch::NotFound => failed(ApiError::NotFound(format!("mapping {id} does not exist"))),
        SyncSwitch::NotMapped => failed(ApiError::Conflict(format!(
            "mapping {id} is not linked to a tracker show; map it first"
        ))),
    }
}
