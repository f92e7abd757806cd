// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
#![warn(unreachable_pub)]
//! `processor` function: consumes SQS batches of webhook events. Each record is processed on its
//! own, in order, inside a span carrying its message id; records that failed transiently are
//! reported back as batch item failures so SQS retries them (then moves them to the DLQ).

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use plexsync::env::{Env, EnvError};
use plexsync::pipeline::{log_final_failure, process_body, Pipeline, StartupError};
use tracing::Instrument;

/// The processor's state: the message pipeline and the queue's redrive limit.
pub struct Processor {
    pub pipeline: Pipeline,
    /// The queue's `maxReceiveCount`: a record failing on this receive goes to the DLQ next.
    pub max_receive_count: i64,
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
        })
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
/// A record failed on its last receive (the DLQ is next) is logged `failed` with the error
/// first, so it shows in the activity log and can be replayed from there.
pub async fn handle_batch(state: &Processor, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    // Group -> the error that stopped it. Records without a group id (a standard queue) share "".
    let mut stopped: HashMap<String, String> = HashMap::new();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_default();
        let error = match stopped.get(&group) {
            None => {
                let span = tracing::info_span!("record", message_id = %message_id);
                match handle_record(&state.pipeline, &record, &message_id)
                    .instrument(span)
                    .await
                {
                    Ok(()) => continue,
                    Err(e) => {
                        tracing::warn!(message_id = %message_id, error = %e, "record will be retried");
                        stopped.insert(group, e.0.clone());
                        e.0
                    }
                }
            }
            Some(first) => {
                format!("not processed: an earlier message of its show failed ({first})")
            }
        };
        if receive_count(&record).is_some_and(|n| n >= state.max_receive_count) {
            give_up(state, &record, &message_id, &error).await;
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    // The unresolved-conflicts alarm reads this metric. Skipped after a transient failure: the
    // database may be the thing that is down, and the batch should not wait on it twice.
    if stopped.is_empty() {
        if let Err(e) = plexsync::metrics::report_open_conflicts(&state.pipeline.pool).await {
            tracing::warn!(error = %e, "could not report the open-conflicts metric");
        }
    }
    response
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
) -> Result<(), plexsync::pipeline::TransientError> {
    let body = record.body.as_deref().unwrap_or_default();
    process_body(state, body, message_id, receive_count(record))
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
