// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
#![warn(unreachable_pub)]
//! `processor` function: consumes SQS batches of webhook events. Each record is processed on its
//! own, in order, inside a span carrying its message id; records that failed transiently, or
//! that there was no time left to start, are reported back as batch item failures so SQS
//! retries them (then moves them to the DLQ). Once a day an EventBridge schedule invokes it for
//! the retention run instead ([`retention`]).

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use plexsync::env::{Env, EnvError};
use plexsync::pipeline::{log_final_failure, process_body_until, Pipeline, StartupError};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::Instrument;

pub mod retention;

use retention::{Retention, RetentionReport};

/// The processor's state: the message pipeline, the queue's redrive limit and the time rules.
pub struct Processor {
    pub pipeline: Pipeline,
    /// The queue's `maxReceiveCount`: a record failing on this receive goes to the DLQ next.
    pub max_receive_count: i64,
    pub timing: Timing,
    /// How long activity-log rows and processed keys are kept (`RETENTION_DAYS`).
    pub retention: Retention,
}

/// How a batch shares its invocation's time. A record starts only while its whole TMDB budget
/// and the margin still fit before the deadline, so the batch always answers in time: a Lambda
/// timed out sends no partial response, and every record of the batch, the finished ones too,
/// would come back.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// TMDB time one record may use, retries and `Retry-After` waits included.
    pub tmdb_budget: Duration,
    /// Kept after a record's TMDB budget: its database work, the last-receive logging and the
    /// batch response.
    pub margin: Duration,
    /// The end of the margin: a record still running this long before the deadline (a stalled
    /// database) is given up, its transaction rolled back, so the batch still answers. Had it
    /// committed, its idempotency key makes the redelivery a duplicate.
    pub answer: Duration,
}

impl Default for Timing {
    /// With the template's 60 s timeout, records start during the first 30 s, and one still
    /// running 3 s before the deadline is given up.
    fn default() -> Self {
        Self {
            tmdb_budget: plexsync::pipeline::TMDB_BUDGET,
            margin: Duration::from_secs(10),
            answer: Duration::from_secs(3),
        }
    }
}

impl Processor {
    /// The pipeline's variables and `MAX_RECEIVE_COUNT` (the redrive policy's value).
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, StartupError> {
        let raw = env.required("MAX_RECEIVE_COUNT")?;
        let max_receive_count =
            raw.parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| EnvError::Invalid {
                    name: "MAX_RECEIVE_COUNT",
                    reason: format!("{raw:?} is not a positive integer"),
                })?;
        Ok(Self {
            pipeline: Pipeline::from_env(env, aws)?,
            max_receive_count,
            timing: Timing::default(),
            retention: Retention::from_env(env)?,
        })
    }
}

/// What invokes the processor: the queue's batches, or the daily schedule's retention task
/// (`{"task":"retention"}`, template.yaml). The task is tried first and takes exactly that
/// shape, so a queue batch (which has `Records`) is never mistaken for it.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    Retention(RetentionTask),
    Batch(SqsEvent),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionTask {
    #[allow(dead_code)]
    task: TaskName,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum TaskName {
    Retention,
}

/// The answer: the batch's item failures, or what the retention run deleted.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    Batch(SqsBatchResponse),
    Retention(RetentionReport),
}

/// Serves one invocation.
pub async fn handle(state: &Processor, invocation: Invocation, deadline: Instant) -> Answer {
    match invocation {
        Invocation::Batch(batch) => Answer::Batch(handle_batch(state, batch, deadline).await),
        Invocation::Retention(_) => Answer::Retention(
            retention::run(
                &state.pipeline.pool,
                state.retention,
                chrono::Utc::now(),
                deadline,
            )
            .await,
        ),
    }
}

/// Handles one batch. Never fails as a whole: a record either completes (logged, acknowledged)
/// or is listed in `batch_item_failures`.
///
/// The queue is FIFO: after the first record of a message group that must be retried, the rest
/// of that group's records are returned unprocessed too (AWS's FIFO partial-batch rule, applied
/// per group, the unit SQS orders), so a later event of the same show can never overtake an
/// earlier one. Records of other groups are still processed: a message that keeps failing must
/// not drag its batch-mates to the dead-letter queue with it.
///
/// The invocation's `deadline` is watched: a record starts only while its TMDB budget and a
/// margin fit before it ([`Timing`]); the records after that are returned untried, in order.
///
/// Every return counts as a receive, so a record on its last receive is never returned untried
/// while it can still start: the groups holding one go first, and such a record starts even
/// with less than its budget left (it is given up at the answer's stop like any other).
/// Otherwise a record could reach the DLQ, and an imported show be recorded failed, without
/// ever being tried.
///
/// A record failed on its last receive (the DLQ is next) is logged `failed` with the error
/// first, so it shows in the activity log and can be replayed from there.
pub async fn handle_batch(
    state: &Processor,
    mut event: SqsEvent,
    deadline: Instant,
) -> SqsBatchResponse {
    let last_receive =
        |r: &SqsMessage| receive_count(r).is_some_and(|n| n >= state.max_receive_count);
    let urgent: HashSet<String> = event
        .records
        .iter()
        .filter(|r| last_receive(r))
        .map(group_of)
        .collect();
    // Stable: each group keeps its order (all SQS guarantees is order within a group).
    event
        .records
        .sort_by_key(|r| !urgent.contains(&group_of(r)));
    let mut response = SqsBatchResponse::default();
    // Group -> the error that stopped it.
    let mut stopped: HashMap<String, String> = HashMap::new();
    let reserve = state.timing.tmdb_budget + state.timing.margin;
    let before = |d: Duration| deadline.checked_sub(d).unwrap_or_else(Instant::now);
    let hard_stop = before(state.timing.answer);
    // The last-receive logging and the metric get half of what is kept for the answer.
    let bookkeeping_stop = before(state.timing.answer / 2);
    let mut out_of_time = false;
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = group_of(&record);
        out_of_time = out_of_time || deadline.saturating_duration_since(Instant::now()) < reserve;
        let last = last_receive(&record);
        let error = match stopped.get(&group) {
            Some(first) => {
                format!("not processed: an earlier message of its show failed ({first})")
            }
            None if out_of_time && !(last && Instant::now() < hard_stop) => {
                "not processed: too little of the invocation was left to start it".to_string()
            }
            None => {
                let tmdb_until = (Instant::now() + state.timing.tmdb_budget).min(hard_stop);
                let span = tracing::info_span!("record", message_id = %message_id);
                let work = handle_record(&state.pipeline, &record, &message_id, tmdb_until)
                    .instrument(span);
                let error = match tokio::time::timeout_at(hard_stop, work).await {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.0,
                    Err(_) => {
                        out_of_time = true;
                        "not finished before the invocation's deadline: given up, nothing kept"
                            .to_string()
                    }
                };
                tracing::warn!(message_id = %message_id, %error, "record will be retried");
                stopped.insert(group, error.clone());
                error
            }
        };
        if last {
            let logged = tokio::time::timeout_at(
                bookkeeping_stop,
                give_up(state, &record, &message_id, &error),
            );
            if logged.await.is_err() {
                tracing::error!(message_id, %error, "record goes to the dead-letter queue; no time to log its failure");
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    if out_of_time {
        tracing::warn!(
            returned = response.batch_item_failures.len(),
            "batch stopped before the invocation's deadline; the rest is returned to the queue"
        );
    }
    // The unresolved-conflicts alarm reads this metric. Skipped after a transient failure: the
    // database may be the thing that is down, and the batch should not wait on it twice; and
    // when time ran short.
    if stopped.is_empty() && !out_of_time {
        if let Err(e) = plexsync::metrics::report_open_conflicts(&state.pipeline.pool).await {
            tracing::warn!(error = %e, "could not report the open-conflicts metric");
        }
    }
    response
}

/// The record's message group. Records without one (a standard queue) share "".
fn group_of(record: &SqsMessage) -> String {
    record
        .attributes
        .get("MessageGroupId")
        .cloned()
        .unwrap_or_default()
}

fn receive_count(record: &SqsMessage) -> Option<i64> {
    record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse::<i64>().ok())
}

async fn handle_record(
    state: &Pipeline,
    record: &SqsMessage,
    message_id: &str,
    tmdb_until: Instant,
) -> Result<(), plexsync::pipeline::TransientError> {
    let body = record.body.as_deref().unwrap_or_default();
    process_body_until(state, body, message_id, receive_count(record), tmdb_until)
        .await
        .map(|_| ())
}

/// Logs the record `failed` before SQS moves it to the DLQ. When even that fails (the database
/// is what is down), the DLQ listing of the management API still shows it.
async fn give_up(state: &Processor, record: &SqsMessage, message_id: &str, error: &str) {
    let count = receive_count(record);
    let reason = format!(
        "gave up after {} receives, moved to the dead-letter queue: {error}",
        count.unwrap_or(state.max_receive_count)
    );
    let body = record.body.as_deref().unwrap_or_default();
    match log_final_failure(&state.pipeline, body, message_id, count, &reason).await {
        Ok(()) => tracing::error!(message_id, %reason, "record goes to the dead-letter queue"),
        Err(e) => tracing::error!(
            message_id,
            %reason,
            log_error = %e,
            "record goes to the dead-letter queue; its failure could not be logged"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(value: Option<&str>) -> Result<Processor, StartupError> {
        let env = Env::from_map(value.map(|v| ("MAX_RECEIVE_COUNT", v)));
        Processor::from_env(&env, &SdkConfig::builder().build())
    }

    #[test]
    fn max_receive_count_is_required_and_positive() {
        let missing = start(None).err().unwrap().to_string();
        assert!(missing.contains("MAX_RECEIVE_COUNT"), "{missing}");
        for bad in ["0", "-1", "five"] {
            let err = start(Some(bad)).err().unwrap().to_string();
            assert!(
                err.contains("MAX_RECEIVE_COUNT") && err.contains("invalid"),
                "{err}"
            );
        }
        // A valid count gets past it, to the next missing variable.
        let next = start(Some("5")).err().unwrap().to_string();
        assert!(!next.contains("MAX_RECEIVE_COUNT"), "{next}");
    }
}
