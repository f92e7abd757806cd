//! Hands the pending events a resolution had no time to replay to the processor's queue, each in
//! its show's message group, so the processor marks them shortly instead of them waiting, un-
//! replayed, on a conflict that is already resolved.

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use plexsync::{
    ids::{ConflictId, PendingEventId},
    queue::QueueMessage,
    store::conflicts::PendingEvent,
};

/// The processor's queue.
pub struct EventQueue {
    pub sqs: aws_sdk_sqs::Client,
    pub url: String,
}

/// How long sending may take in all: the answer must still reach API Gateway.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

impl EventQueue {
    /// Sends the events, oldest first, ten per request; the ids of those the queue took. It
    /// stops at the first request not taken whole, so the events after an unsent one stay
    /// pending too (their order is kept).
    pub async fn send(
        &self,
        conflict: ConflictId,
        events: &[PendingEvent],
    ) -> (Vec<PendingEventId>, Option<String>) {
        let mut sent = Vec::with_capacity(events.len());
        for chunk in events.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, e)| entry(conflict, i, e))
                .collect::<Result<Vec<_>, _>>();
            let entries = match entries {
                Ok(entries) => entries,
                Err(e) => return (sent, Some(format!("cannot build the queue message: {e}"))),
            };
            let request = self
                .sqs
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send();
            match tokio::time::timeout(SEND_TIMEOUT, request).await {
                Ok(Ok(out)) if out.failed().is_empty() => {
                    sent.extend(chunk.iter().map(|e| e.id));
                }
                Ok(Ok(out)) => {
                    // Partly taken: the taken ones will be processed; count them as sent.
                    let failed: Vec<&str> = out.failed().iter().map(|f| f.id()).collect();
                    for (i, e) in chunk.iter().enumerate() {
                        if !failed.contains(&i.to_string().as_str()) {
                            sent.push(e.id);
                        }
                    }
                    return (sent, Some("the queue refused some events".into()));
                }
                Ok(Err(e)) => {
                    use aws_sdk_sqs::error::ProvideErrorMetadata;
                    let code = e.code().map(str::to_owned).unwrap_or_else(|| e.to_string());
                    return (sent, Some(format!("the queue is unavailable: {code}")));
                }
                Err(_) => return (sent, Some("the queue did not answer in time".into())),
            }
        }
        (sent, None)
    }
}

/// One event as the webhook would have queued it. The deduplication id names the pending
/// event, so handing it over twice (a retried request) queues it once.
fn entry(
    conflict: ConflictId,
    index: usize,
    event: &PendingEvent,
) -> Result<SendMessageBatchRequestEntry, String> {
    let body = event.message.to_string();
    let group = QueueMessage::from_body(&body)
        .map(|m| m.group_id())
        .unwrap_or_else(|_| format!("conflict-{conflict}"));
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(format!("conflict-{conflict}-event-{}", event.id))
        .build()
        .map_err(|e| e.to_string())
}
