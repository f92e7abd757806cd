//! `POST /api/plex/conflicts/bulk`: one resolution for many conflicts.
//!
//! - `{"action":"accept_top","minScore":0.8,"ids"?:[..]}`: for every open conflict (or those
//!   named) whose best candidate scores at least `minScore`, that candidate: `select` for a
//!   tracker show, `create_new` for a TMDB show. A best score shared by two different shows is
//!   the user's call: skipped.
//! - `{"action":"ignore","ids":[..]}`: `ignore` each.
//!
//! Each conflict goes through the single resolve's path ([`crate::settle`]): its own
//! transaction, then its pending-event replay. One result per conflict; a failure does not stop
//! the others. No conflict is started after the time budget, so the answer reaches API Gateway
//! before its 30 s limit; those left are reported `not_processed` and a second request finishes
//! them.

use std::time::{Duration, Instant};

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{self, json, row_not_found, ApiError, StrictBody},
    ids::{ConflictId, MappingId, RowId, ShowId},
    store::{
        conflicts::{self, CandidateSet},
        DecisionError,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    resolution::{CreatedShow, ReplayReport},
    settle, ResolveRequest, Settled, State,
};

/// No conflict is started after this long: the function's timeout is 28 s and API Gateway's
/// 30 s, and one conflict's resolution and replay must still fit.
pub(crate) const BUDGET: Duration = Duration::from_secs(15);

/// Most conflicts one request may name.
const MAX_IDS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BulkAction {
    AcceptTop,
    Ignore,
}

impl BulkAction {
    fn as_str(self) -> &'static str {
        match self {
            Self::AcceptTop => "accept_top",
            Self::Ignore => "ignore",
        }
    }
}

/// The bulk body: `{action, minScore?, ids?}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct BulkBody {
    action: BulkAction,
    min_score: Option<f64>,
    ids: Option<Vec<i64>>,
}

impl StrictBody for BulkBody {
    const FIELDS: &'static [&'static str] = &["action", "minScore", "ids"];
}

/// A bulk body checked against its action.
#[derive(Debug, Clone, PartialEq)]
enum BulkRequest {
    AcceptTop {
        min_score: f64,
        /// `None`: every open conflict.
        ids: Option<Vec<i64>>,
    },
    Ignore {
        ids: Vec<i64>,
    },
}

impl BulkBody {
    /// A field the action does not take is 400; a missing one it needs is 422.
    fn check(self) -> Result<BulkRequest, ApiError> {
        let ids = self.ids.map(checked_ids).transpose()?;
        match self.action {
            BulkAction::AcceptTop => {
                let min_score = self.min_score.ok_or_else(|| {
                    ApiError::Unprocessable("minScore is required for action accept_top".into())
                })?;
                if !(min_score > 0.0 && min_score <= 1.0) {
                    return Err(ApiError::BadRequest(
                        "minScore must be a number above 0 and at most 1".into(),
                    ));
                }
                Ok(BulkRequest::AcceptTop { min_score, ids })
            }
            BulkAction::Ignore if self.min_score.is_some() => Err(ApiError::BadRequest(format!(
                "minScore does not apply to action {}",
                self.action.as_str()
            ))),
            BulkAction::Ignore => Ok(BulkRequest::Ignore {
                ids: ids.ok_or_else(|| {
                    ApiError::Unprocessable("ids is required for action ignore".into())
                })?,
            }),
        }
    }
}

/// 1..=[`MAX_IDS`] positive ids, repeats dropped (first kept).
fn checked_ids(ids: Vec<i64>) -> Result<Vec<i64>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::Unprocessable(
            "ids must name at least one conflict".into(),
        ));
    }
    if ids.len() > MAX_IDS {
        return Err(ApiError::BadRequest(format!(
            "ids names more than {MAX_IDS} conflicts; send them in several requests"
        )));
    }
    if ids.iter().any(|id| *id <= 0) {
        return Err(ApiError::BadRequest("ids must be positive integers".into()));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(ids.into_iter().filter(|id| seen.insert(*id)).collect())
}

/// What the request will do with one conflict.
#[derive(Debug)]
enum Plan {
    Resolve(ResolveRequest),
    Skip(String),
    Fail(ApiError),
}

/// One candidate of `potential_matches`, as much as choosing needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCandidate {
    tvshow_id: Option<ShowId>,
    tmdb_id: Option<i64>,
    match_score: f64,
}

impl StoredCandidate {
    /// Whether two candidates are the same show (a tracker show and its TMDB entry).
    fn same_show(&self, other: &Self) -> bool {
        (self.tvshow_id.is_some() && self.tvshow_id == other.tvshow_id)
            || (self.tmdb_id.is_some() && self.tmdb_id == other.tmdb_id)
    }

    fn request(&self) -> Option<ResolveRequest> {
        match (self.tvshow_id, self.tmdb_id) {
            (Some(tvshow_id), _) => Some(ResolveRequest::Select { tvshow_id }),
            (None, Some(tmdb_id)) => Some(ResolveRequest::CreateNew { tmdb_id }),
            (None, None) => None,
        }
    }
}

/// What `accept_top` does with a conflict's candidates.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Choice {
    Take(ResolveRequest),
    /// The best score is below the threshold (or there is no usable candidate: `None`).
    Below(Option<f64>),
    /// Two different shows share the best score.
    Tie(f64),
}

/// The best-scoring candidate, a tracker show before a TMDB one of the same score.
fn choose(matches: &Value, min_score: f64) -> Choice {
    let candidates: Vec<StoredCandidate> = matches
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| serde_json::from_value(c.clone()).ok())
                .filter(|c: &StoredCandidate| c.request().is_some())
                .collect()
        })
        .unwrap_or_default();
    let Some(best) = candidates.iter().max_by(|a, b| {
        a.match_score
            .total_cmp(&b.match_score)
            .then(a.tvshow_id.is_some().cmp(&b.tvshow_id.is_some()))
    }) else {
        return Choice::Below(None);
    };
    if best.match_score < min_score {
        return Choice::Below(Some(best.match_score));
    }
    let rival = candidates
        .iter()
        .any(|c| c.match_score == best.match_score && !c.same_show(best));
    match best.request() {
        Some(_) if rival => Choice::Tie(best.match_score),
        Some(request) => Choice::Take(request),
        None => Choice::Below(None),
    }
}

/// `accept_top`'s plan: with `ids`, one entry per id; without, the open conflicts whose best
/// score reaches the threshold (ties included, as skipped, so the user sees them).
fn plan_accept_top(
    sets: Vec<CandidateSet>,
    min_score: f64,
    ids: Option<&[i64]>,
) -> Vec<(i64, Plan)> {
    let plan = |set: &CandidateSet| match choose(&set.potential_matches, min_score) {
        Choice::Take(request) => Some(Plan::Resolve(request)),
        Choice::Tie(score) => Some(Plan::Skip(format!(
            "two candidates share the best score {score}; choose one yourself"
        ))),
        Choice::Below(score) if ids.is_some() => Some(Plan::Skip(match score {
            Some(score) => format!("the best score {score} is below {min_score}"),
            None => "no candidate to accept".into(),
        })),
        Choice::Below(_) => None,
    };
    let Some(ids) = ids else {
        return sets
            .iter()
            .filter_map(|set| plan(set).map(|p| (set.id.into(), p)))
            .collect();
    };
    ids.iter()
        .map(|&id| match sets.iter().find(|s| i64::from(s.id) == id) {
            None => (id, Plan::Fail(row_not_found::<ConflictId>(id))),
            Some(set) if set.resolved => (
                id,
                Plan::Fail(DecisionError::AlreadyResolved(set.id).into()),
            ),
            Some(set) => (id, plan(set).unwrap_or(Plan::Skip("no candidate".into()))),
        })
        .collect()
}

/// What the replay of one conflict did, without the per-event detail of a single resolve.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplaySummary {
    pending: usize,
    marked: usize,
    already_watched: usize,
    failed: usize,
    still_pending: usize,
    queued: usize,
}

impl From<&ReplayReport> for ReplaySummary {
    fn from(r: &ReplayReport) -> Self {
        Self {
            pending: r.pending,
            marked: r.marked,
            already_watched: r.already_watched,
            failed: r.failed,
            still_pending: r.still_pending,
            queued: r.queued,
        }
    }
}

/// One conflict's result.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct ItemResult {
    id: i64,
    /// `resolved`, `ignored`, `skipped`, `error` or `not_processed`.
    status: &'static str,
    /// The single resolve's action: `select`, `create_new` or `ignore`.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tvshow_id: Option<ShowId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mapping_id: Option<MappingId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_show: Option<CreatedShow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    replay: Option<ReplaySummary>,
    /// For `error`: the code a single resolve would have answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    /// Why, for `error`, `skipped` and `not_processed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

impl ItemResult {
    fn settled(id: i64, request: ResolveRequest, s: Settled) -> Self {
        let (status, action) = match request {
            ResolveRequest::Select { .. } => ("resolved", "select"),
            ResolveRequest::CreateNew { .. } => ("resolved", "create_new"),
            ResolveRequest::Ignore => ("ignored", "ignore"),
        };
        Self {
            id,
            status,
            action: Some(action),
            tvshow_id: s.resolved.resolution.tvshow_id(),
            mapping_id: Some(s.resolved.mapping_id),
            created_show: s.created_show,
            replay: (request != ResolveRequest::Ignore).then(|| (&s.replay).into()),
            ..Self::default()
        }
    }

    fn noted(id: i64, status: &'static str, message: String) -> Self {
        Self {
            id,
            status,
            message: Some(message),
            ..Self::default()
        }
    }

    fn failed(id: i64, err: ApiError) -> Self {
        let message = match &err {
            // Logged here, answered without the detail, as a single request would be.
            ApiError::Internal(detail) => {
                tracing::error!(conflict = id, error = %detail, "bulk resolution failed");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        Self {
            error: Some(err.code()),
            ..Self::noted(id, "error", message)
        }
    }
}

/// How many conflicts ended each way.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    resolved: usize,
    ignored: usize,
    skipped: usize,
    error: usize,
    not_processed: usize,
}

impl Summary {
    fn of(results: &[ItemResult]) -> Self {
        let mut s = Self::default();
        for r in results {
            match r.status {
                "resolved" => s.resolved += 1,
                "ignored" => s.ignored += 1,
                "skipped" => s.skipped += 1,
                "not_processed" => s.not_processed += 1,
                _ => s.error += 1,
            }
        }
        s
    }
}

#[derive(Serialize)]
struct BulkResponse {
    results: Vec<ItemResult>,
    summary: Summary,
}

pub(crate) async fn resolve_many(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + state.replay_budget;
    let body: BulkBody = api::parse_body(req)?;
    let plan = match body.check()? {
        BulkRequest::Ignore { ids } => ids
            .into_iter()
            .map(|id| (id, Plan::Resolve(ResolveRequest::Ignore)))
            .collect(),
        BulkRequest::AcceptTop { min_score, ids } => {
            let sets = conflicts::candidate_sets(&state.api.pool, ids.as_deref()).await?;
            plan_accept_top(sets, min_score, ids.as_deref())
        }
    };
    let mut results = Vec::with_capacity(plan.len());
    for (id, step) in plan {
        results.push(match step {
            Plan::Skip(why) => ItemResult::noted(id, "skipped", why),
            Plan::Fail(err) => ItemResult::failed(id, err),
            Plan::Resolve(_) if started.elapsed() >= state.bulk_budget => ItemResult::noted(
                id,
                "not_processed",
                "not started: the request's time budget is used up; send it again".into(),
            ),
            Plan::Resolve(request) => match ConflictId::from_request(id) {
                None => ItemResult::failed(id, row_not_found::<ConflictId>(id)),
                Some(conflict) => match settle(state, conflict, request, deadline).await {
                    Ok(settled) => ItemResult::settled(id, request, settled),
                    Err(err) => ItemResult::failed(id, err),
                },
            },
        });
    }
    let summary = Summary::of(&results);
    tracing::info!(?summary, "bulk resolution");
    Ok(json(StatusCode::OK, &BulkResponse { results, summary }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn candidate(tvshow: Option<i64>, tmdb: Option<i64>, score: f64) -> Value {
        json!({"tvshowId": tvshow, "title": "x", "tmdbId": tmdb, "matchScore": score,
               "source": if tvshow.is_some() { "tracker" } else { "tmdb" }})
    }

    #[test]
    fn the_best_candidate_is_taken_at_or_above_the_threshold() {
        let m = json!([
            candidate(Some(7), Some(2316), 0.62),
            candidate(Some(9), Some(2996), 0.9)
        ]);
        assert_eq!(
            choose(&m, 0.9),
            Choice::Take(ResolveRequest::Select {
                tvshow_id: ShowId(9)
            })
        );
        assert_eq!(choose(&m, 0.91), Choice::Below(Some(0.9)));
        let tmdb_only = json!([candidate(None, Some(1399), 0.8)]);
        assert_eq!(
            choose(&tmdb_only, 0.5),
            Choice::Take(ResolveRequest::CreateNew { tmdb_id: 1399 })
        );
    }

    #[test]
    fn a_shared_best_score_is_left_to_the_user_unless_it_is_the_same_show() {
        let tie = json!([
            candidate(Some(7), Some(2316), 0.85),
            candidate(Some(9), Some(2996), 0.85)
        ]);
        assert_eq!(choose(&tie, 0.5), Choice::Tie(0.85));
        // The tracker show and its own TMDB entry: one show, the tracker one is taken.
        let same = json!([
            candidate(None, Some(2316), 0.85),
            candidate(Some(7), Some(2316), 0.85)
        ]);
        assert_eq!(
            choose(&same, 0.5),
            Choice::Take(ResolveRequest::Select {
                tvshow_id: ShowId(7)
            })
        );
    }

    #[test]
    fn no_usable_candidate_is_never_taken() {
        for m in [
            json!([]),
            json!({}),
            json!([{"title": "x", "matchScore": 0.99}]),
            json!([{"tvshowId": "7", "matchScore": 0.99}]),
        ] {
            assert_eq!(choose(&m, 0.1), Choice::Below(None), "{m}");
        }
    }

    #[test]
    fn bodies_are_checked_against_their_action() {
        let body = |v: Value| -> BulkBody { serde_json::from_value(v).unwrap() };
        assert_eq!(
            body(json!({"action": "ignore", "ids": [3, 1, 3]}))
                .check()
                .unwrap(),
            BulkRequest::Ignore { ids: vec![3, 1] }
        );
        assert_eq!(
            body(json!({"action": "accept_top", "minScore": 1}))
                .check()
                .unwrap(),
            BulkRequest::AcceptTop {
                min_score: 1.0,
                ids: None
            }
        );
        for (v, status) in [
            (json!({"action": "ignore"}), 422),
            (json!({"action": "ignore", "ids": []}), 422),
            (
                json!({"action": "ignore", "ids": [1], "minScore": 0.5}),
                400,
            ),
            (json!({"action": "ignore", "ids": [0]}), 400),
            (json!({"action": "accept_top"}), 422),
            (json!({"action": "accept_top", "minScore": 0}), 400),
            (json!({"action": "accept_top", "minScore": 1.01}), 400),
            (json!({"action": "accept_top", "minScore": -0.5}), 400),
        ] {
            let err = body(v.clone()).check().unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{v}: {err}");
        }
    }
}
