//! Benchmarks of the webhook's per-request CPU work (`make bench`; results and the command in
//! BENCHMARKS.md). SQS is not included: it dominates wall time and is measured by the service,
//! not here.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use plexsync::{
    payload::{Decision, WebhookPayload},
    queue::QueueMessage,
    testing::fixtures,
};
use webhook::{extract_payload, RateLimiter};

mod support;

use support::multipart;

fn ingest(c: &mut Criterion) {
    let json = fixtures::plex_episode_scrobble().to_string();
    let (content_type, body) = multipart(&json);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("multipart_extract_40KiB_thumb", |b| {
        b.iter(|| {
            rt.block_on(extract_payload(Some(&content_type), &body, "payload"))
                .unwrap()
        })
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_decide_enqueue_body", |b| {
        b.iter(|| {
            let (payload, raw) = WebhookPayload::from_json(json.as_bytes()).unwrap();
            let Decision::Process(event) = payload.decide().unwrap() else {
                unreachable!()
            };
            let msg = QueueMessage::new(*event, raw, chrono::Utc::now(), None, None);
            (msg.to_body(), msg.group_id(), msg.deduplication_id())
        })
    });
    let limiter = RateLimiter::new(100, std::time::Duration::from_secs(60));
    let mut n: u32 = 0;
    group.bench_function("rate_limiter_check_1k_ips", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            let _ = limiter.check(std::net::IpAddr::from([
                198,
                51,
                (n >> 8) as u8 % 4,
                n as u8,
            ]));
        })
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
