//! Heap allocations per webhook request (`make bench`; BENCHMARKS.md). A counting global
//! allocator wraps the system one; two figures:
//!
//! * `cpu_path`: the work of one request without I/O (multipart extraction, parse, decide,
//!   the queue message, its body and ids, the rate-limit check);
//! * `handler_warm`: the whole handler, warm (webhook secret cached), against moto's SQS, each
//!   request from its own source address: everything one invocation allocates, AWS SDK
//!   `SendMessage` included.
//!
//! Needs `AWS_ENDPOINT_URL` (moto) like the tests. Writes `target/bench/allocations.json`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use base64::Engine as _;
use lambda_http::Request;
use plexsync::{
    env::Env,
    payload::{Decision, WebhookPayload},
    queue::QueueMessage,
    secrets::SecretsCache,
    testing::{self, fixtures},
};
use serde_json::json;
use webhook::{extract_payload, RateLimiter, Settings, State};

mod support;

use support::multipart;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes per call of `f`, averaged over `n` calls.
async fn per_call<F, Fut>(n: u64, mut f: F) -> (f64, f64)
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (a0, b0) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
    for i in 0..n {
        f(i).await;
    }
    let (a1, b1) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
    ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
}

/// An API Gateway HTTP API event for the webhook route, from `source_ip`.
fn request(secret: &str, content_type: &str, body: &[u8], source_ip: &str) -> Request {
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/api/plex/webhook",
        "rawQueryString": format!("secret={secret}"),
        "headers": {
            "content-type": content_type,
            "user-agent": "PlexMediaServer/1.41.3.9314-a0bfb8370",
            "x-forwarded-for": source_ip,
        },
        "queryStringParameters": { "secret": secret },
        "requestContext": {
            "accountId": "123456789012", "apiId": "k7q2x9w4ab",
            "domainName": "k7q2x9w4ab.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "k7q2x9w4ab",
            "http": { "method": "POST", "path": "/api/plex/webhook", "protocol": "HTTP/1.1",
                      "sourceIp": source_ip, "userAgent": "PlexMediaServer" },
            "requestId": "bench=", "routeKey": "$default", "stage": "$default",
            "time": "05/Dec/2026:18:30:00 +0000", "timeEpoch": 1_796_495_400_000_i64
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true
    });
    lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let json = fixtures::plex_episode_scrobble().to_string();
    let (content_type, body) = multipart(&json);
    let limiter = RateLimiter::new(100, Duration::from_secs(60));

    let cpu = rt.block_on(per_call(1_000, |i| {
        let (ct, body, json, limiter) = (&content_type, &body, &json, &limiter);
        async move {
            let payload = extract_payload(Some(ct), body, "payload")
                .await
                .expect("multipart");
            assert_eq!(payload.len(), json.len());
            let (payload, raw) = WebhookPayload::from_json(&payload).expect("payload");
            let Decision::Process(event) = payload.decide().expect("decide") else {
                unreachable!("a scrobble is processed")
            };
            let msg = QueueMessage::new(*event, raw, chrono::Utc::now(), None, None);
            std::hint::black_box((msg.to_body(), msg.group_id(), msg.deduplication_id()));
            let ip = std::net::IpAddr::from([198, 51, (i >> 8) as u8, i as u8]);
            assert!(limiter.check(ip).is_ok());
        }
    }));

    let handler = rt.block_on(async {
        let aws = testing::moto_config().await;
        let queue_url = testing::fifo_queue(&aws).await;
        let secret: String = (0..6).map(|_| testing::unique_suffix()).collect();
        let secret_id = testing::secret(&aws, &secret).await;
        let env = Env::from_map([
            ("QUEUE_URL", queue_url),
            ("WEBHOOK_SECRET_ID", secret_id),
            ("PLEX_ALLOWED_CIDRS", String::new()),
        ]);
        let state = State::new(
            Settings::from_env(&env).expect("settings"),
            SecretsCache::new(aws_sdk_secretsmanager::Client::new(&aws)),
            aws_sdk_sqs::Client::new(&aws),
        );
        let warm = request(&secret, &content_type, &body, "10.9.0.1");
        assert_eq!(webhook::handle(&state, warm).await.status(), 202);
        // Built before counting: API Gateway's event parsing is the runtime's, not ours.
        let n = 200;
        let requests: Vec<Request> = (0..n)
            .map(|i| {
                request(
                    &secret,
                    &content_type,
                    &body,
                    &format!("10.10.{}.{}", i >> 8, i & 255),
                )
            })
            .collect();
        let (a0, b0) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        for req in requests {
            assert_eq!(webhook::handle(&state, req).await.status(), 202);
        }
        let (a1, b1) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        ((a1 - a0) as f64 / n as f64, (b1 - b0) as f64 / n as f64)
    });

    let report = json!({
        "cpu_path": { "allocations": cpu.0, "bytes": cpu.1 },
        "handler_warm": { "allocations": handler.0, "bytes": handler.1 },
    });
    println!("webhook allocations per request: {report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    std::fs::write(dir.join("allocations.json"), report.to_string()).expect("write");
}
