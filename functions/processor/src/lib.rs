// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
//! `processor` function: consumes SQS batches of webhook events. Each record is processed on its
//! own, in order, inside a span carrying its message id; records that failed transiently are
//! reported back as batch item failures so SQS retries them (then moves them to the DLQ).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use plexsync::pipeline::{process_body, Pipeline};
use tracing::Instrument;

/// Handles one batch. Never fails as a whole: a record either completes (logged, acknowledged)
/// or is listed in `batch_item_failures`.
///
/// The queue is FIFO: after the first record that must be retried, the rest of the batch is
/// returned unprocessed too (as AWS prescribes for FIFO partial batch responses), so a later
/// event of the same show can never overtake an earlier one.
pub async fn handle_batch(state: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut stopped = false;
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        if !stopped {
            let span = tracing::info_span!("record", message_id = %message_id);
            match handle_record(state, &record, &message_id)
                .instrument(span)
                .await
            {
                Ok(()) => continue,
                Err(e) => {
                    tracing::warn!(message_id = %message_id, error = %e, "record will be retried");
                    stopped = true;
                }
            }
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = message_id;
        response.batch_item_failures.push(failure);
    }
    // The unresolved-conflicts alarm reads this metric. Skipped after a transient failure: the
    // database may be the thing that is down, and the batch should not wait on it twice.
    if !stopped {
        if let Err(e) = plexsync::metrics::report_open_conflicts(&state.pool).await {
            tracing::warn!(error = %e, "could not report the open-conflicts metric");
        }
    }
    response
}

async fn handle_record(
    state: &Pipeline,
    record: &SqsMessage,
    message_id: &str,
) -> Result<(), plexsync::pipeline::TransientError> {
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|v| v.parse::<i64>().ok());
    let body = record.body.as_deref().unwrap_or_default();
    process_body(state, body, message_id, receive_count)
        .await
        .map(|_| ())
}
