//! The webhook's body path as a request takes it: the body extracted (multipart or JSON), parsed
//! and filtered by its sender, and an accepted event turned into the queue message and back.
//! Input: one byte choosing the sender, the Content-Type up to the first newline, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use plexsync::payload::Decision;
use plexsync::queue::QueueMessage;
use plexsync::senders::Sender;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let sender = Sender::ALL[usize::from(pick) % Sender::ALL.len()];
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let content_type = std::str::from_utf8(&rest[..split]).ok();
    let body = rest.get(split + 1..).unwrap_or_default();
    let extracted = futures_executor::block_on(webhook::extract_payload(
        content_type,
        body,
        sender.multipart_field(),
    ));
    let Ok(json) = extracted else { return };
    let Ok((Decision::Process(event), raw)) = sender.decide(&json) else {
        return;
    };
    let message = QueueMessage::new(*event, raw, chrono::Utc::now(), None, None);
    let _ = (message.group_id(), message.deduplication_id(), message.idempotency_key());
    // What the webhook queues, the processor must be able to read.
    let back = QueueMessage::from_body(&message.to_body()).expect("a queued message reads back");
    assert_eq!(back.event, message.event);
});
