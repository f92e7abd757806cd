//! Benchmarks of the processor's per-message CPU work (`make bench`; results and the command in
//! BENCHMARKS.md; the webhook's side is `functions/webhook/benches/hot_paths.rs`). I/O (SQS,
//! Postgres) is not included: it dominates wall time and is measured by the services, not here.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use plexsync::{
    crypto::Keyring,
    payload::{Decision, WebhookPayload},
    queue::QueueMessage,
    testing::fixtures,
};
use secrecy::SecretString;

fn processor_side(c: &mut Criterion) {
    let body = {
        let (payload, raw) =
            WebhookPayload::from_json(fixtures::plex_episode_scrobble().to_string().as_bytes())
                .unwrap();
        let Decision::Process(event) = payload.decide().unwrap() else {
            unreachable!()
        };
        QueueMessage::new(*event, raw, chrono::Utc::now(), None, None).to_body()
    };
    c.bench_function("queue_message_from_body", |b| {
        b.iter(|| QueueMessage::from_body(&body).unwrap())
    });

    let ring =
        Keyring::from_secret(&SecretString::from(plexsync::crypto::generate_key_hex())).unwrap();
    let token = SecretString::from("xq9ZpL2vN8rT4wYb6KcE".to_string());
    let sealed = ring.encrypt(&token);
    c.bench_function("token_encrypt", |b| b.iter(|| ring.encrypt(&token)));
    c.bench_function("token_decrypt", |b| {
        b.iter_batched(
            || sealed.clone(),
            |s| ring.decrypt(&s).unwrap(),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, processor_side);
criterion_main!(benches);
