//! Harness: the webhook `State` wired to moto (a fresh FIFO queue and secret per test), and requests
//! shaped like the API Gateway HTTP API (v2) events the function receives.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use base64::Engine;
use lambda_http::{Body, Request, Response};
use plexsync::{queue::QueueMessage, secrets::SecretsCache, senders::Sender, testing};
use serde_json::{json, Value};
use webhook::{RateLimiter, Settings, State};

/// Where Plex posts from in these tests (the fixtures' `Player.publicAddress`).
pub const PLEX_IP: &str = "198.51.100.23";

pub struct Harness {
    pub state: State,
    pub aws: SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub secret_id: String,
    /// The webhook secret, 64 hex characters as the config function generates it.
    pub secret: String,
}

pub struct Options {
    pub allowed_cidrs: &'static str,
    /// Create the secret in Secrets Manager (false: "not configured yet").
    pub with_secret: bool,
    pub queue_url: Option<String>,
    pub secrets_cache: fn(aws_sdk_secretsmanager::Client) -> SecretsCache,
    /// Requests per source address per minute.
    pub rate_limit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allowed_cidrs: "",
            with_secret: true,
            queue_url: None,
            secrets_cache: SecretsCache::new,
            rate_limit: 100,
        }
    }
}

pub async fn harness() -> Harness {
    harness_with(Options::default()).await
}

pub async fn harness_with(opts: Options) -> Harness {
    let aws = testing::moto_config().await;
    let queue_url = testing::fifo_queue(&aws).await;
    let secret: String = (0..6).map(|_| testing::unique_suffix()).collect();
    let secret_id = if opts.with_secret {
        testing::secret(&aws, &secret).await
    } else {
        format!("plexsync-test/missing-{}", testing::unique_suffix())
    };
    let env = plexsync::env::Env::from_map([
        (
            "QUEUE_URL",
            opts.queue_url.clone().unwrap_or_else(|| queue_url.clone()),
        ),
        ("WEBHOOK_SECRET_ID", secret_id.clone()),
        ("PLEX_ALLOWED_CIDRS", opts.allowed_cidrs.to_string()),
    ]);
    let config = Settings::from_env(&env).expect("test configuration is valid");
    let state = State::with_limiter(
        config,
        (opts.secrets_cache)(aws_sdk_secretsmanager::Client::new(&aws)),
        aws_sdk_sqs::Client::new(&aws),
        RateLimiter::new(opts.rate_limit, Duration::from_secs(60)),
    );
    Harness {
        state,
        sqs: aws_sdk_sqs::Client::new(&aws),
        aws,
        queue_url,
        secret_id,
        secret,
    }
}

/// A received queue message with the FIFO attributes it was sent with.
#[derive(Debug)]
pub struct Received {
    pub message: QueueMessage,
    pub group_id: String,
    pub dedup_id: String,
}

impl Harness {
    /// The query string Plex is configured with.
    pub fn query(&self) -> String {
        format!("secret={}", self.secret)
    }

    pub async fn call(&self, req: Request) -> Response<Body> {
        webhook::handle(&self.state, req).await
    }

    pub async fn send(&self, event: Event) -> Response<Body> {
        self.call(event.request()).await
    }

    /// Sends `event` and asserts it was accepted for the queue.
    pub async fn accept(&self, event: Event) -> Value {
        let resp = self.send(event).await;
        let json = body_json(&resp);
        assert_eq!(resp.status().as_u16(), 202, "{json}");
        json
    }

    /// Everything on the queue right now (a single receive: moto delivers every message of a
    /// FIFO group in one call).
    pub async fn received(&self) -> Vec<Received> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from moto");
        out.messages()
            .iter()
            .map(|m| {
                let attrs = m.attributes().expect("system attributes requested");
                Received {
                    message: QueueMessage::from_body(m.body().expect("body"))
                        .expect("queue message parses"),
                    group_id: attrs
                        .get(&MessageSystemAttributeName::MessageGroupId)
                        .expect("group id")
                        .clone(),
                    dedup_id: attrs
                        .get(&MessageSystemAttributeName::MessageDeduplicationId)
                        .expect("dedup id")
                        .clone(),
                }
            })
            .collect()
    }

    pub async fn assert_queue_empty(&self) {
        let got = self.received().await;
        assert!(got.is_empty(), "expected nothing queued, got {got:#?}");
    }
}

/// A Plex-style request: how API Gateway (HTTP API, payload v2) hands it to the function.
pub struct Event {
    pub method: &'static str,
    pub path: &'static str,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// Binary bodies (multipart) arrive base64-encoded; JSON may arrive as text.
    pub base64: bool,
    pub source_ip: String,
}

impl Event {
    pub fn new(query: impl Into<String>, content_type: Option<&str>, body: Vec<u8>) -> Self {
        Self {
            method: "POST",
            path: "/api/plex/webhook",
            query: query.into(),
            content_type: content_type.map(str::to_owned),
            body,
            base64: true,
            source_ip: PLEX_IP.to_string(),
        }
    }

    /// What Plex Media Server sends: multipart with the payload and, here, a JPEG thumb.
    pub fn plex(query: impl Into<String>, payload: &Value) -> Self {
        let (content_type, body) = multipart(&payload.to_string(), true);
        Self::new(query, Some(&content_type), body)
    }

    /// A script posting the payload as JSON text (as under `cargo lambda watch`: not base64).
    pub fn json(query: impl Into<String>, payload: &Value) -> Self {
        Self {
            base64: false,
            ..Self::new(
                query,
                Some("application/json"),
                payload.to_string().into_bytes(),
            )
        }
    }

    /// What Emby sends with "Request content type: multipart/form-data": the JSON in `data`.
    pub fn emby_multipart(query: impl Into<String>, payload: &Value) -> Self {
        let json = payload.to_string();
        let (content_type, body) = multipart_parts(&[("data", None, json.as_bytes())]);
        Self::new(query, Some(&content_type), body).to(Sender::Emby)
    }

    /// The same request on `sender`'s route.
    pub fn to(mut self, sender: Sender) -> Self {
        self.path = sender.webhook_path();
        self
    }

    pub fn from(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_string();
        self
    }

    pub fn request(&self) -> Request {
        let mut headers = json!({
            "host": "k7q2x9w4ab.execute-api.us-east-1.amazonaws.com",
            "user-agent": "PlexMediaServer/1.41.3.9314-a0bfb8370",
            "accept": "*/*",
            "content-length": self.body.len().to_string(),
            "x-forwarded-for": self.source_ip,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        });
        if let Some(ct) = &self.content_type {
            headers["content-type"] = ct.clone().into();
        }
        let body = if self.base64 {
            base64::engine::general_purpose::STANDARD.encode(&self.body)
        } else {
            String::from_utf8(self.body.clone()).expect("text body")
        };
        let query_params: serde_json::Map<String, Value> = self
            .query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), Value::from(v)))
            .collect();
        let event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "queryStringParameters": query_params,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "k7q2x9w4ab",
                "domainName": "k7q2x9w4ab.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "k7q2x9w4ab",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": self.source_ip,
                    "userAgent": "PlexMediaServer/1.41.3.9314-a0bfb8370"
                },
                "requestId": format!("Q{}=", testing::unique_suffix()),
                "routeKey": "$default",
                "stage": "$default",
                "time": "28/Nov/2026:18:30:00 +0000",
                "timeEpoch": 1_795_804_200_000_i64
            },
            "body": body,
            "isBase64Encoded": self.base64
        });
        lambda_http::request::from_str(&event.to_string()).expect("valid API Gateway v2 event")
    }
}

/// The start of a real JPEG (SOI, APP0/JFIF, DQT) and its end marker: binary, not UTF-8.
pub const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x48\x00\x48\x00\x00\
\xFF\xDB\x00\x43\x00\x08\x06\x06\x07\x06\x05\x08\x07\x07\x07\x09\x09\x08\x0A\x0C\x14\x0D\x0C\
\x0B\x0B\x0C\x19\x12\x13\x0F\x14\x1D\x1A\x1F\x1E\x1D\x1A\x1C\x1C\x20\x24\x2E\x27\x20\x22\x2C\
\x23\x1C\x1C\x28\x37\x29\x2C\x30\x31\x34\x34\x34\x1F\x27\x39\x3D\x38\x32\x3C\x2E\x33\x34\x32\
\xFF\xC0\x00\x11\x08\x01\xE0\x02\x80\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01\xFF\xD9";

const BOUNDARY: &str = "------------------------2a8ae6ad8e3c1f4b";

/// A multipart/form-data body as Plex builds it: the `payload` field, then (for some events)
/// a `thumb` file part. Returns (content type, body).
pub fn multipart(payload: &str, with_thumb: bool) -> (String, Vec<u8>) {
    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("payload", None, payload.as_bytes())];
    if with_thumb {
        parts.push(("thumb", Some("image/jpeg"), JPEG));
    }
    multipart_parts(&parts)
}

/// Any list of parts: (field name, file content type, data).
pub fn multipart_parts(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, content_type, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match content_type {
            Some(ct) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"image.jpg\"\r\n\
                     Content-Type: {ct}\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

pub fn body_json(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).expect("response body is JSON")
}

/// Asserts the JSON error shape and returns the message.
pub fn assert_error(resp: &Response<Body>, status: u16, code: &str) -> String {
    let json = body_json(resp);
    assert_eq!(resp.status().as_u16(), status, "{json}");
    assert_eq!(resp.headers()["content-type"], "application/json", "{json}");
    assert_eq!(json["status"], "error", "{json}");
    assert_eq!(json["error"], code, "{json}");
    json["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .expect("error message")
        .to_string()
}
