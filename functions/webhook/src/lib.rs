#![warn(unreachable_pub)]
//! The `webhook` function (`POST /api/plex/webhook`, `/api/jellyfin/webhook`,
//! `/api/emby/webhook`): allowlist, rate limit, secret check, body extraction, then the sender's
//! edge (`plexsync::senders`) validates, filters and normalises, and one message goes on the
//! FIFO queue. Every sender passes the same guards.
//!
//! It never touches Postgres: media servers send each webhook once and never retry, so ingest
//! must keep working while the database is down or being migrated.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::Mutex,
    time::{Duration, Instant},
};

use bytes::Bytes;
use chrono::Utc;
use ipnet::IpNet;
use lambda_http::{
    http::{Method, StatusCode},
    request::RequestContext,
    Body, Request, RequestExt, Response,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tracing::Instrument;

use plexsync::{
    api::{body_bytes, constant_time_eq, json, query_param, route_not_found, ApiError},
    env::{Env, EnvError},
    metrics,
    payload::{Decision, PlexEvent},
    queue::QueueMessage,
    secrets::SecretsCache,
    senders::Sender,
};

/// Largest body accepted. Payloads are a few KiB; Plex's thumb part is a small JPEG.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Requests per source address per window (like express-rate-limit's 100 per minute).
const RATE_LIMIT: u32 = 100;
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// What the function reads from the environment at start.
#[derive(Debug, Clone)]
pub struct Settings {
    pub queue_url: String,
    pub webhook_secret_id: String,
    /// Empty: every source address is allowed.
    pub allowed_cidrs: Vec<IpNet>,
}

impl Settings {
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        Ok(Self {
            queue_url: env.url("QUEUE_URL")?.to_string(),
            webhook_secret_id: env.required("WEBHOOK_SECRET_ID")?,
            allowed_cidrs: env.cidrs("PLEX_ALLOWED_CIDRS")?,
        })
    }
}

/// Everything a warm instance keeps between requests.
pub struct State {
    config: Settings,
    secrets: SecretsCache,
    sqs: aws_sdk_sqs::Client,
    limiter: RateLimiter,
}

/// Handles one API Gateway (HTTP API) request. Never fails: every error is a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let origin = origin(&req);
    let span = tracing::info_span!(
        "webhook",
        request_id = origin.request_id.as_deref().unwrap_or("-"),
        source_ip = %origin.source_ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".into()),
    );
    async {
        match state.ingest(&req, &origin).await {
            Ok(resp) => resp,
            Err(err) => {
                // The message never contains the secret; the URL (which does) is not logged.
                tracing::info!(status = err.status().as_u16(), error = %err, "webhook rejected");
                err.into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// The request facts the handler logs and queues.
struct Origin {
    source_ip: Option<IpAddr>,
    request_id: Option<String>,
}

impl State {
    /// The production wiring: settings from the environment, default secrets caching and rate
    /// limit, clients from `aws`.
    pub fn from_env(env: &Env, aws: &aws_config::SdkConfig) -> Result<Self, EnvError> {
        Ok(Self::new(
            Settings::from_env(env)?,
            SecretsCache::new(aws_sdk_secretsmanager::Client::new(aws)),
            aws_sdk_sqs::Client::new(aws),
        ))
    }

    pub fn new(config: Settings, secrets: SecretsCache, sqs: aws_sdk_sqs::Client) -> Self {
        Self::with_limiter(
            config,
            secrets,
            sqs,
            RateLimiter::new(RATE_LIMIT, RATE_WINDOW),
        )
    }

    pub fn with_limiter(
        config: Settings,
        secrets: SecretsCache,
        sqs: aws_sdk_sqs::Client,
        limiter: RateLimiter,
    ) -> Self {
        Self {
            config,
            secrets,
            sqs,
            limiter,
        }
    }

    async fn ingest(&self, req: &Request, origin: &Origin) -> Result<Response<Body>, ApiError> {
        let path = match req.raw_http_path() {
            "" => req.uri().path(),
            raw => raw,
        };
        let sender = Sender::from_webhook_path(path)
            .filter(|_| req.method() == Method::POST)
            .ok_or_else(|| route_not_found(req))?;
        self.check_source(origin.source_ip)?;
        self.limiter
            .check(limiter_key(origin.source_ip))
            .map_err(|wait| ApiError::TooManyRequests {
                retry_after_secs: wait.as_secs().max(1),
            })?;
        self.authenticate(req).await?;

        let content_type = req
            .headers()
            .get(lambda_http::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let payload_json =
            extract_payload(content_type, body_bytes(req), sender.multipart_field()).await?;
        let (decision, raw) = sender.decide(&payload_json)?;
        let event = match decision {
            Decision::Process(event) => event,
            Decision::Ignore(reason) => {
                tracing::info!(%sender, %reason, "webhook ignored");
                return Ok(json(
                    StatusCode::OK,
                    &json!({"status": "ignored", "reason": reason}),
                ));
            }
        };
        let message = QueueMessage::new(
            *event,
            raw,
            Utc::now(),
            origin.source_ip.map(|ip| ip.to_string()),
            origin.request_id.clone(),
        );
        self.enqueue(&message).await.map_err(|err| {
            let e = &message.event;
            tracing::error!(
                error = %err,
                event = e.kind.as_str(),
                show = %e.show.title,
                item = %e.item_rating_key,
                "could not enqueue webhook event"
            );
            // Plex does not retry: this play is lost. The EnqueueFailed alarm reads it.
            metrics::emit_count(metrics::ENQUEUE_FAILURES, 1.0);
            ApiError::Unavailable("could not queue the event, try again shortly".into())
        })?;
        log_event("webhook accepted", &message.event);
        Ok(json(StatusCode::ACCEPTED, &json!({"status": "accepted"})))
    }

    fn check_source(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        if self.config.allowed_cidrs.is_empty() {
            return Ok(());
        }
        match ip {
            Some(ip) if is_allowed(&self.config.allowed_cidrs, ip) => Ok(()),
            Some(ip) => Err(ApiError::Forbidden(format!(
                "source address {ip} is not in PLEX_ALLOWED_CIDRS"
            ))),
            None => Err(ApiError::Forbidden(
                "source address unknown; PLEX_ALLOWED_CIDRS is set".into(),
            )),
        }
    }

    /// `?secret=` against the webhook secret, in constant time. On a mismatch the cache is
    /// refreshed (at most once per short interval, see `SecretsCache::refresh`) so a rotated
    /// secret takes effect without a cold start.
    async fn authenticate(&self, req: &Request) -> Result<(), ApiError> {
        let id = &self.config.webhook_secret_id;
        let presented = query_param(req, "secret");
        let Some(expected) = self.secrets.get(id).await? else {
            return Err(not_configured());
        };
        let Some(presented) = presented else {
            return Err(ApiError::Unauthorized);
        };
        if secret_matches(&presented, &expected) {
            return Ok(());
        }
        match self.secrets.refresh(id).await? {
            Some(expected) if secret_matches(&presented, &expected) => Ok(()),
            Some(_) => Err(ApiError::Unauthorized),
            None => Err(not_configured()),
        }
    }

    #[tracing::instrument(skip(self, message), fields(group_id = %message.group_id()))]
    async fn enqueue(&self, message: &QueueMessage) -> Result<(), EnqueueError> {
        // The SDK retries throttling and transient errors itself (standard retry mode).
        self.sqs
            .send_message()
            .queue_url(&self.config.queue_url)
            .message_body(message.to_body())
            .message_group_id(message.group_id())
            .message_deduplication_id(message.deduplication_id())
            .send()
            .await
            .map_err(|e| EnqueueError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("SQS SendMessage failed: {0}")]
pub struct EnqueueError(String);

fn not_configured() -> ApiError {
    ApiError::Unavailable(
        "the webhook secret is not configured yet: POST /api/plex/config to set up the Plex \
         integration, then use the webhook URL it returns"
            .into(),
    )
}

fn secret_matches(presented: &str, expected: &SecretString) -> bool {
    constant_time_eq(presented, expected.expose_secret().trim())
}

fn log_event(message: &'static str, e: &PlexEvent) {
    tracing::info!(
        sender = e.sender.as_str(),
        event = e.kind.as_str(),
        account_id = e.account.id,
        account_uuid = e.account.uuid.as_deref().unwrap_or("-"),
        account = e.account.title.as_deref().unwrap_or("-"),
        webhook_user = e.account.is_webhook_user,
        server = %e.server_uuid,
        show = %e.show.title,
        show_key = %e.show.rating_key,
        season = e.season,
        episode = e.episode.as_ref().map(|ep| ep.number),
        "{message}"
    );
}

/// Source address (API Gateway v2 `requestContext.http.sourceIp`) and request id.
fn origin(req: &Request) -> Origin {
    let (source_ip, api_request_id) = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            ctx.http.source_ip.as_deref().and_then(|s| s.parse().ok()),
            ctx.request_id.clone(),
        ),
        _ => (None, None),
    };
    let request_id = api_request_id.or_else(|| {
        req.lambda_context_ref()
            .map(|c| c.request_id.clone())
            .filter(|id| !id.is_empty())
    });
    Origin {
        source_ip: source_ip.map(|ip: IpAddr| ip.to_canonical()),
        request_id,
    }
}

fn is_allowed(allowed: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allowed.iter().any(|net| net.contains(&ip))
}

/// IPv6 clients usually hold a whole /64: limit the prefix, not each address in it.
fn limiter_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        Some(v4) => v4,
        None => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    }
}

/// Why a body could not be turned into payload JSON.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("request body is empty; expected application/json, or multipart/form-data with the JSON in a field")]
    Empty,
    #[error("unsupported content type {0:?}; expected application/json, or multipart/form-data with the JSON in a field")]
    UnsupportedType(String),
    #[error("multipart body is invalid: {0}")]
    Multipart(String),
    #[error("multipart body has no {0} field")]
    NoPayloadField(&'static str),
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::TooLarge => ApiError::PayloadTooLarge(err.to_string()),
            other => ApiError::BadRequest(other.to_string()),
        }
    }
}

/// The payload JSON from a multipart body (its `field`: Plex's `payload`, Emby's `data`; other
/// parts such as Plex's JPEG `thumb` are skipped unread) or from a plain JSON body.
pub async fn extract_payload(
    content_type: Option<&str>,
    body: &[u8],
    field: &'static str,
) -> Result<Bytes, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge);
    }
    if body.is_empty() {
        return Err(BodyError::Empty);
    }
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match essence.as_str() {
        "multipart/form-data" => {
            multipart_payload(content_type.unwrap_or_default(), body, field).await
        }
        "application/json" => Ok(Bytes::copy_from_slice(body)),
        // Scripts posting with `curl -d` and no type: accept what is evidently JSON.
        "" if body.trim_ascii_start().starts_with(b"{") => Ok(Bytes::copy_from_slice(body)),
        "" => Err(BodyError::UnsupportedType("none".into())),
        other => Err(BodyError::UnsupportedType(other.to_string())),
    }
}

async fn multipart_payload(
    content_type: &str,
    body: &[u8],
    wanted: &'static str,
) -> Result<Bytes, BodyError> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| BodyError::Multipart(e.to_string()))?;
    let chunk = Bytes::copy_from_slice(body);
    let stream =
        futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(chunk) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| BodyError::Multipart(e.to_string()))?;
        let Some(field) = field else {
            return Err(BodyError::NoPayloadField(wanted));
        };
        if field.name() == Some(wanted) {
            // Stop here: whatever follows (the thumb) is never parsed, so it cannot fail us.
            return field
                .bytes()
                .await
                .map_err(|e| BodyError::Multipart(e.to_string()));
        }
        // Any other part (`thumb`) is dropped; `next_field` skips its bytes.
    }
}

/// Per-instance, per-address fixed-window limiter (express-rate-limit's semantics:
/// at most `limit` requests per window, the window starting at an address's first request).
/// A guard against floods on a warm instance; API Gateway throttling is the global limit.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Default)]
struct LimiterState {
    windows: HashMap<IpAddr, (Instant, u32)>,
    last_sweep: Option<Instant>,
}

/// Addresses tracked before expired windows are swept out.
const SWEEP_ABOVE: usize = 4096;

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            state: Mutex::new(LimiterState::default()),
        }
    }

    /// `Err(wait)` when `key` has used up its window; `wait` is the time until it resets.
    pub fn check(&self, key: IpAddr) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        // A poisoned lock only means another request panicked mid-update; the counts are
        // still usable.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let window = self.window;
        if state.windows.len() > SWEEP_ABOVE
            && state
                .last_sweep
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            state
                .windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            state.last_sweep = Some(now);
        }
        let entry = state.windows.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let elapsed = now.saturating_duration_since(entry.0);
            // Round up so a client that waits Retry-After seconds is let in.
            let wait = window.saturating_sub(elapsed);
            return Err(Duration::from_secs(
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            ));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Number of addresses currently tracked (for tests of the sweep).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .windows
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limiter_allows_the_limit_then_refuses_until_the_window_resets() {
        let limiter = RateLimiter::new(100, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(
                limiter
                    .check_at(ip("198.51.100.23"), t0 + Duration::from_millis(i))
                    .is_ok(),
                "request {i}"
            );
        }
        let wait = limiter
            .check_at(ip("198.51.100.23"), t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        // Another address is counted on its own.
        assert!(limiter.check_at(ip("203.0.113.40"), t0).is_ok());
        // Still refused just before the window ends, allowed after.
        assert!(limiter
            .check_at(ip("198.51.100.23"), t0 + Duration::from_millis(59_900))
            .is_err());
        assert!(limiter
            .check_at(ip("198.51.100.23"), t0 + Duration::from_secs(60))
            .is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        limiter.check_at(ip("198.51.100.1"), t0).unwrap();
        let wait = limiter
            .check_at(ip("198.51.100.1"), t0 + Duration::from_millis(59_500))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
    }

    #[test]
    fn expired_windows_are_swept_when_many_addresses_are_tracked() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..=SWEEP_ABOVE as u32 {
            limiter
                .check_at(IpAddr::V4(std::net::Ipv4Addr::from(i)), t0)
                .unwrap();
        }
        assert_eq!(limiter.tracked(), SWEEP_ABOVE + 1);
        limiter
            .check_at(ip("198.51.100.1"), t0 + Duration::from_secs(61))
            .unwrap();
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn ipv6_is_limited_per_64_and_mapped_v4_is_v4() {
        assert_eq!(
            limiter_key(Some(ip("2001:db8:1:2:aaaa::1"))),
            limiter_key(Some(ip("2001:db8:1:2:bbbb::2")))
        );
        assert_ne!(
            limiter_key(Some(ip("2001:db8:1:2::1"))),
            limiter_key(Some(ip("2001:db8:1:3::1")))
        );
        let nets = vec!["198.51.100.0/24".parse::<IpNet>().unwrap()];
        assert!(is_allowed(&nets, ip("::ffff:198.51.100.7")));
        assert!(!is_allowed(&nets, ip("::ffff:198.51.101.7")));
    }

    #[tokio::test]
    async fn json_and_untyped_json_bodies_pass_through() {
        let body = br#"{"event":"media.play"}"#;
        for ct in [
            Some("application/json"),
            Some("Application/JSON; charset=utf-8"),
            None,
        ] {
            assert_eq!(
                &extract_payload(ct, body, "payload").await.unwrap()[..],
                body
            );
        }
        assert_eq!(
            extract_payload(Some("text/plain"), body, "payload")
                .await
                .unwrap_err(),
            BodyError::UnsupportedType("text/plain".into())
        );
        assert_eq!(
            extract_payload(None, b"event=media.play", "payload")
                .await
                .unwrap_err(),
            BodyError::UnsupportedType("none".into())
        );
        assert_eq!(
            extract_payload(Some("application/json"), b"", "payload")
                .await
                .unwrap_err(),
            BodyError::Empty
        );
        assert_eq!(
            extract_payload(
                Some("application/json"),
                &vec![b' '; MAX_BODY_BYTES + 1],
                "payload"
            )
            .await
            .unwrap_err(),
            BodyError::TooLarge
        );
    }

    fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, content_type, data) in parts {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            match content_type {
                Some(ct) => out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"image.jpg\"\r\nContent-Type: {ct}\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        out
    }

    #[tokio::test]
    async fn multipart_payload_is_found_before_or_after_a_thumb() {
        let jpeg: &[u8] = b"\xFF\xD8\xFF\xE0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xFF\xDB\x00\x43\x00--\r\n\xFF\xD9";
        let json = br#"{"event":"media.scrobble"}"#;
        let ct = "multipart/form-data; boundary=------------------------d74496d66958873e";
        let boundary = "------------------------d74496d66958873e";
        for parts in [
            vec![
                ("payload", None, &json[..]),
                ("thumb", Some("image/jpeg"), jpeg),
            ],
            vec![
                ("thumb", Some("image/jpeg"), jpeg),
                ("payload", None, &json[..]),
            ],
        ] {
            let body = multipart(boundary, &parts);
            assert_eq!(
                &extract_payload(Some(ct), &body, "payload").await.unwrap()[..],
                json
            );
        }
        // A truncated thumb after the payload is never read, so it cannot fail the parse.
        let mut body = multipart(boundary, &[("payload", None, json)]);
        body.truncate(body.len() - boundary.len() - 6);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"thumb\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(b"\xFF\xD8\xFF");
        assert_eq!(
            &extract_payload(Some(ct), &body, "payload").await.unwrap()[..],
            json
        );

        // Emby's multipart bodies carry the JSON in `data`.
        let body = multipart(boundary, &[("data", None, json)]);
        assert_eq!(
            &extract_payload(Some(ct), &body, "data").await.unwrap()[..],
            json
        );
        assert_eq!(
            extract_payload(Some(ct), &body, "payload")
                .await
                .unwrap_err(),
            BodyError::NoPayloadField("payload")
        );
        let body = multipart(boundary, &[("thumb", Some("image/jpeg"), jpeg)]);
        assert_eq!(
            extract_payload(Some(ct), &body, "payload")
                .await
                .unwrap_err(),
            BodyError::NoPayloadField("payload")
        );
        assert!(matches!(
            extract_payload(Some("multipart/form-data"), &body, "payload")
                .await
                .unwrap_err(),
            BodyError::Multipart(_)
        ));
        assert!(matches!(
            extract_payload(Some(ct), b"not multipart at all", "payload")
                .await
                .unwrap_err(),
            BodyError::Multipart(_)
        ));
    }
}
