//! TMDB API client: the calls the processor needs (find by external id, show, season, search),
//! with timeouts, retries (exponential backoff with jitter, `Retry-After` honoured on 429) and
//! client-side rate limits: the one every instance shares (a token bucket in Postgres) and,
//! under it, each instance's own cap at TMDB's per-second ceiling.
//!
//! A caller with a time budget (one queue message, one HTTP request) works through
//! [`TmdbClient::until`]: every request, retry and wait (`Retry-After` included) of that view
//! ends by its deadline, so a slow TMDB costs the caller a transient failure, not its invocation.
//!
//! Errors say whether retrying later may help: the processor turns transient ones into SQS
//! retries and permanent ones into a `failed` log row.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use rand::Rng;
use reqwest::{header::RETRY_AFTER, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Deserialize};
use tokio::{sync::Mutex, time::Instant};
use url::Url;

use crate::{
    db::DbPool,
    env::TmdbConfig,
    metrics,
    store::rate_limit::{self, Bucket, Slot},
};

#[derive(Debug, thiserror::Error)]
pub enum TmdbError {
    /// Rate limited, server error, timeout or connection trouble that outlasted the retries.
    #[error("TMDB is unavailable: {0}")]
    Transient(String),
    /// The resource does not exist.
    #[error("TMDB has no {0}")]
    NotFound(String),
    /// A request TMDB will never accept, or a response we cannot read.
    #[error("TMDB request failed: {0}")]
    Permanent(String),
}

impl TmdbError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// How requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts per call, including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the call fails as transient and the
    /// queue retries the message later instead of the Lambda sleeping.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(15),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: a random delay in [base·2ⁿ/2, base·2ⁿ].
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_delay);
        let half = exp / 2;
        half + exp.mul_f64(rand::thread_rng().gen_range(0.0..=0.5))
    }
}

/// Sliding-window limiter: at most `max` requests in any `window`.
#[derive(Debug)]
struct RateLimiter {
    max: usize,
    window: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    fn new(max: usize, window: Duration) -> Self {
        Self {
            max: max.max(1),
            window,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < self.max {
                    sent.push_back(now);
                    return;
                }
                // Full: wait until the oldest request leaves the window.
                self.window - now.duration_since(sent[0])
            };
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "TMDB client-side rate limit"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

enum Auth {
    /// v4 read access token (a JWT), sent as a bearer token.
    Bearer(SecretString),
    /// v3 API key, sent as the `api_key` query parameter.
    ApiKey(SecretString),
}

/// A TMDB client; clones share the HTTP client and the rate limit.
#[derive(Clone)]
pub struct TmdbClient {
    inner: Arc<Inner>,
    /// The limit shared by every instance, when set ([`TmdbClient::with_shared_limit`]).
    shared: Option<Arc<SharedLimit>>,
    /// Set on a view made by [`TmdbClient::until`]: all its calls end by then.
    deadline: Option<Instant>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    auth: Auth,
    retry: RetryPolicy,
    limiter: RateLimiter,
    /// Per request; a deadline nearer than this shortens it.
    timeout: Duration,
}

/// TMDB's limit across every instance of every function: a token bucket in Postgres.
struct SharedLimit {
    pool: DbPool,
    bucket: Bucket,
}

/// The shared bucket's name in `rate_limit_buckets`.
const SHARED_BUCKET: &str = "tmdb";

/// The shared default: 30 per second and a burst of 10, so no second sees more than 40,
/// below TMDB's ~50 requests per second per address.
pub const SHARED_RATE: Bucket = Bucket {
    rate: 30.0,
    burst: 10.0,
    max_wait: Duration::from_secs(10),
};

impl std::fmt::Debug for TmdbClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TmdbClient")
            .field("base", &self.inner.base.as_str())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// Which external id `/3/find` looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalSource {
    Tvdb,
    Imdb,
}

impl ExternalSource {
    fn as_param(self) -> &'static str {
        match self {
            Self::Tvdb => "tvdb_id",
            Self::Imdb => "imdb_id",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct FindResult {
    #[serde(default)]
    pub tv_results: Vec<TvSummary>,
    #[serde(default)]
    pub tv_episode_results: Vec<EpisodeSummary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TvSummary {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub first_air_date: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EpisodeSummary {
    /// The episode's own TMDB id.
    pub id: i64,
    /// The show the episode belongs to: the only show id in an episode result.
    pub show_id: i64,
    #[serde(default)]
    pub season_number: Option<i64>,
    #[serde(default)]
    pub episode_number: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TvDetails {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub first_air_date: Option<String>,
    #[serde(default)]
    pub seasons: Vec<SeasonSummary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeasonSummary {
    pub season_number: i64,
    #[serde(default)]
    pub episode_count: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeasonDetails {
    pub season_number: i64,
    #[serde(default)]
    pub episodes: Vec<EpisodeDetails>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EpisodeDetails {
    pub id: i64,
    pub episode_number: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub air_date: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct SearchPage {
    #[serde(default)]
    results: Vec<TvSummary>,
}

/// One instance's own cap: TMDB's ceiling of about 40 requests per second. The shared bucket
/// ([`SHARED_RATE`]) is the limit that holds; this cap only matters when the bucket cannot be
/// reached (a database error lets the request go). It is never stricter than the bucket: TMDB's
/// old 40-per-10-s rule (dropped in 2019) held each instance to 4 per second, which slowed the
/// auto-adding of shows (a request per season) until import messages ran out of time.
const INSTANCE_LIMIT: (usize, Duration) = (40, Duration::from_secs(1));

impl TmdbClient {
    pub fn new(config: &TmdbConfig) -> Result<Self, TmdbError> {
        let (max_requests, window) = INSTANCE_LIMIT;
        Self::with_options(
            config,
            RetryPolicy::default(),
            max_requests,
            window,
            Duration::from_secs(8),
        )
    }

    /// Full control over retries, the rate limit and the per-request timeout (tests).
    pub fn with_options(
        config: &TmdbConfig,
        retry: RetryPolicy,
        max_requests: usize,
        window: Duration,
        timeout: Duration,
    ) -> Result<Self, TmdbError> {
        let http = crate::tls::http_client_builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .user_agent("plexsync/0.1")
            .redirect(same_origin_redirects())
            .build()
            .map_err(|e| TmdbError::Permanent(format!("HTTP client: {e}")))?;
        let token = config.token.expose_secret().trim();
        // v4 read access tokens are JWTs; anything else is taken as a v3 API key.
        let auth = if token.starts_with("eyJ") {
            Auth::Bearer(SecretString::from(token.to_string()))
        } else {
            Auth::ApiKey(SecretString::from(token.to_string()))
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base: config.base_url.clone(),
                auth,
                retry,
                limiter: RateLimiter::new(max_requests, window),
                timeout,
            }),
            shared: None,
            deadline: None,
        })
    }

    /// This client with a deadline: every call of the view, retries and waits included, ends
    /// by `deadline` (the earlier one if the client had a deadline already). A wait or a
    /// `Retry-After` that would pass it fails the call at once as transient.
    pub fn until(&self, deadline: Instant) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            deadline: Some(self.deadline.map_or(deadline, |d| d.min(deadline))),
        }
    }

    /// Time left before the deadline (`None`: no deadline).
    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Sleeps `wait` before a retry, or fails when that would pass the deadline.
    async fn pause(&self, wait: Duration, path: &str) -> Result<(), TmdbError> {
        if self.time_left().is_some_and(|left| wait >= left) {
            return Err(out_of_time(path));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The rate limiter's slot, waited for no longer than the deadline.
    async fn slot(&self, path: &str) -> Result<(), TmdbError> {
        match self.deadline {
            None => {
                self.inner.limiter.acquire().await;
                Ok(())
            }
            Some(d) => tokio::time::timeout_at(d, self.inner.limiter.acquire())
                .await
                .map_err(|_| out_of_time(path)),
        }
    }

    /// Also waits for a slot of the shared bucket ([`SHARED_BUCKET`]) before each request, so
    /// the limit holds for every instance together (an import fans out over many).
    pub fn with_shared_limit(mut self, pool: DbPool, bucket: Bucket) -> Self {
        self.shared = Some(Arc::new(SharedLimit { pool, bucket }));
        self
    }

    /// Waits for the shared bucket's slot. Every slot for the next `max_wait` taken is
    /// transient (the message is retried later); a database error lets the request go: the
    /// limiter must not turn a database hiccup into a TMDB outage.
    async fn shared_slot(&self, path: &str) -> Result<(), TmdbError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let slot = match shared.pool.get().await {
            Ok(client) => rate_limit::reserve(&client, SHARED_BUCKET, shared.bucket).await,
            Err(e) => Err(e.into()),
        };
        match slot {
            Ok(Slot::After(wait)) => {
                if !wait.is_zero() {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "TMDB shared rate limit");
                    self.pause(wait, path).await?;
                }
                Ok(())
            }
            Ok(Slot::Busy) => Err(TmdbError::Transient(
                "TMDB request budget is taken for the next seconds (shared rate limit)".into(),
            )),
            Err(e) => {
                tracing::warn!(error = %e, "shared TMDB rate limit unavailable; request sent anyway");
                Ok(())
            }
        }
    }

    /// `GET /3/find/{id}?external_source=...`.
    #[tracing::instrument(skip(self))]
    pub async fn find(&self, id: &str, source: ExternalSource) -> Result<FindResult, TmdbError> {
        self.get(
            &format!("3/find/{}", encode_segment(id)),
            &[("external_source", source.as_param())],
        )
        .await
    }

    /// `GET /3/tv/{id}`.
    #[tracing::instrument(skip(self))]
    pub async fn tv(&self, id: i64) -> Result<TvDetails, TmdbError> {
        self.get(&format!("3/tv/{id}"), &[]).await
    }

    /// `GET /3/tv/{id}/season/{n}`.
    #[tracing::instrument(skip(self))]
    pub async fn season(&self, id: i64, season: i64) -> Result<SeasonDetails, TmdbError> {
        self.get(&format!("3/tv/{id}/season/{season}"), &[]).await
    }

    /// The show and all its seasons, as a tracker show is created from (a season TMDB lists but
    /// cannot serve is skipped).
    #[tracing::instrument(skip(self))]
    pub async fn show_with_seasons(
        &self,
        id: i64,
    ) -> Result<(TvDetails, Vec<SeasonDetails>), TmdbError> {
        let show = self.tv(id).await?;
        let mut seasons = Vec::with_capacity(show.seasons.len());
        for s in &show.seasons {
            match self.season(id, s.season_number).await {
                Ok(season) => seasons.push(season),
                Err(TmdbError::NotFound(_)) => {
                    tracing::warn!(season = s.season_number, "TMDB season listed but not found")
                }
                Err(e) => return Err(e),
            }
        }
        Ok((show, seasons))
    }

    /// `GET /3/search/tv?query=...`: first page of results.
    #[tracing::instrument(skip(self))]
    pub async fn search_tv(&self, query: &str) -> Result<Vec<TvSummary>, TmdbError> {
        let page: SearchPage = self
            .get(
                "3/search/tv",
                &[("query", query), ("include_adult", "false")],
            )
            .await?;
        Ok(page.results)
    }

    /// One call, retries included, counted for the TMDB error-rate alarm: an error is a
    /// failure after the retries (unavailable, rejected token, unreadable answer); "not found"
    /// is an answer, not an error.
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, TmdbError> {
        let result = self.get_with_retries(path, query).await;
        let failed = matches!(
            result,
            Err(TmdbError::Transient(_) | TmdbError::Permanent(_))
        );
        metrics::emit(&[
            metrics::Sample {
                name: metrics::TMDB_REQUESTS,
                value: 1.0,
                unit: "Count",
            },
            metrics::Sample {
                name: metrics::TMDB_ERRORS,
                value: if failed { 1.0 } else { 0.0 },
                unit: "Count",
            },
        ]);
        result
    }

    /// One authenticated GET, its timeout cut to the caller's time left.
    fn request(
        &self,
        url: &Url,
        query: &[(&str, &str)],
        path: &str,
    ) -> Result<reqwest::RequestBuilder, TmdbError> {
        let inner = &*self.inner;
        let mut request = inner.http.get(url.clone()).query(query);
        if let Some(left) = self.time_left() {
            if left.is_zero() {
                return Err(out_of_time(path));
            }
            request = request.timeout(left.min(inner.timeout));
        }
        Ok(match &inner.auth {
            Auth::Bearer(token) => request.bearer_auth(token.expose_secret()),
            Auth::ApiKey(key) => request.query(&[("api_key", key.expose_secret())]),
        })
    }

    async fn get_with_retries<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, TmdbError> {
        let inner = &*self.inner;
        let url = inner
            .base
            .join(path)
            .map_err(|e| TmdbError::Permanent(format!("bad TMDB URL {path}: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.slot(path).await?;
            self.shared_slot(path).await?;
            let request = self.request(&url, query, path)?;
            let last = attempt >= inner.retry.max_attempts;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Timeouts and connection failures: retry, then report as transient. The
                    // error text has the URL without the query, so no key leaks into logs.
                    let detail = describe(&e.without_url(), path);
                    if last {
                        return Err(TmdbError::Transient(detail));
                    }
                    tracing::warn!(attempt, error = %detail, "TMDB request failed, retrying");
                    self.pause(inner.retry.backoff(attempt - 1), path)
                        .await
                        .map_err(|_| {
                            TmdbError::Transient(format!("{detail}; out of time to retry"))
                        })?;
                    continue;
                }
            };
            let status = response.status();
            if status.is_success() {
                return response
                    .json::<T>()
                    .await
                    .map_err(|e| TmdbError::Permanent(format!("unreadable {path} response: {e}")));
            }
            match status {
                StatusCode::NOT_FOUND => return Err(TmdbError::NotFound(path.to_string())),
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(response.headers())
                        .unwrap_or_else(|| inner.retry.backoff(attempt - 1));
                    if last || wait > inner.retry.max_retry_after {
                        return Err(TmdbError::Transient(format!(
                            "rate limited on {path} (retry after {}s)",
                            wait.as_secs()
                        )));
                    }
                    tracing::warn!(
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        "TMDB rate limited, waiting"
                    );
                    self.pause(wait, path).await?;
                }
                s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
                    if last {
                        return Err(TmdbError::Transient(format!("{path} answered {s}")));
                    }
                    tracing::warn!(attempt, status = s.as_u16(), "TMDB server error, retrying");
                    self.pause(inner.retry.backoff(attempt - 1), path).await?;
                }
                // A rejected token is a configuration problem that fixing the secret resolves:
                // transient, so messages wait in the queue (then the DLQ) instead of being lost.
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    return Err(TmdbError::Transient(format!(
                        "{path} answered {status}: check TMDB_API_TOKEN"
                    )))
                }
                s if s.is_redirection() => {
                    return Err(TmdbError::Permanent(format!(
                        "{path} answered {s}: a redirect away from TMDB, not followed"
                    )))
                }
                s => return Err(TmdbError::Permanent(format!("{path} answered {s}"))),
            }
        }
    }
}

/// Redirects are followed only within the origin (scheme, host and port) the request went to.
/// The credential rides on every request (a v4 token in a header, a v3 key in the query):
/// reqwest drops the header on a redirect to another host, but not on one to plain http of
/// the same host, and a redirect elsewhere is never TMDB's own answer.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let from = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 3 {
            attempt.error("more than 3 redirects")
        } else if from == Some(attempt.url().origin()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// The caller's time for TMDB is spent: retrying later (the queue) may help.
fn out_of_time(path: &str) -> TmdbError {
    TmdbError::Transient(format!("out of time for TMDB on {path}"))
}

fn describe(e: &reqwest::Error, path: &str) -> String {
    if e.is_timeout() {
        format!("{path} timed out")
    } else if e.is_connect() {
        format!("cannot connect for {path}")
    } else {
        format!("{path}: {e}")
    }
}

/// `Retry-After` in seconds (TMDB's form) or as an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Ids go into a path segment: keep only what an id can contain.
fn encode_segment(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixtures;
    use wiremock::{
        matchers::{header, method, path, query_param},
        Mock, MockServer, ResponseTemplate,
    };

    fn config(server: &MockServer, token: &str) -> TmdbConfig {
        TmdbConfig {
            base_url: server.uri().parse().unwrap(),
            token: SecretString::from(token.to_string()),
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        }
    }

    fn client(server: &MockServer, token: &str) -> TmdbClient {
        client_with_timeout(server, token, Duration::from_secs(30))
    }

    fn client_with_timeout(server: &MockServer, token: &str, timeout: Duration) -> TmdbClient {
        TmdbClient::with_options(
            &config(server, token),
            fast_retry(),
            40,
            Duration::from_secs(10),
            timeout,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn v4_token_is_a_bearer_and_find_reads_episode_show_id() {
        let server = MockServer::start().await;
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJ4In0.c2ln";
        Mock::given(method("GET"))
            .and(path("/3/find/110413"))
            .and(query_param("external_source", "tvdb_id"))
            .and(header("authorization", format!("Bearer {jwt}").as_str()))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(fixtures::tmdb_find_office_pilot()),
            )
            .expect(1)
            .mount(&server)
            .await;
        let found = client(&server, jwt)
            .find("110413", ExternalSource::Tvdb)
            .await
            .unwrap();
        assert_eq!(found.tv_episode_results[0].show_id, 2316);
        assert_eq!(found.tv_episode_results[0].id, 397627);
    }

    #[tokio::test]
    async fn v3_key_goes_in_the_query() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/3/tv/2316"))
            .and(query_param("api_key", "0123456789abcdef0123456789abcdef"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office()))
            .expect(1)
            .mount(&server)
            .await;
        let show = client(&server, "0123456789abcdef0123456789abcdef")
            .tv(2316)
            .await
            .unwrap();
        assert_eq!(show.name, "The Office");
        assert_eq!(show.seasons.len(), 3);
    }

    #[tokio::test]
    async fn a_redirect_to_another_host_is_not_followed_and_one_within_tmdb_is() {
        let server = MockServer::start().await;
        let elsewhere = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office()))
            .expect(0)
            .mount(&elsewhere)
            .await;
        Mock::given(method("GET"))
            .and(path("/3/tv/1"))
            .respond_with(
                ResponseTemplate::new(302)
                    .insert_header("location", format!("{}/3/tv/2316", elsewhere.uri())),
            )
            .expect(1)
            .mount(&server)
            .await;
        // Within the same origin (TMDB moving a resource): followed.
        Mock::given(method("GET"))
            .and(path("/3/tv/2"))
            .respond_with(ResponseTemplate::new(301).insert_header("location", "/3/tv/2316"))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/3/tv/2316"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office()))
            .expect(1)
            .mount(&server)
            .await;
        let tmdb = client(&server, "0123456789abcdef0123456789abcdef");

        let err = tmdb.tv(1).await.unwrap_err();
        assert!(
            matches!(&err, TmdbError::Permanent(m) if m.contains("not followed")),
            "{err}"
        );
        assert!(elsewhere.received_requests().await.unwrap().is_empty());
        assert_eq!(tmdb.tv(2).await.unwrap().name, "The Office");
        elsewhere.verify().await;
        server.verify().await;
    }

    #[tokio::test]
    async fn retry_after_is_honoured_on_429() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/3/tv/2316/season/1"))
            .respond_with(
                ResponseTemplate::new(429)
                    .insert_header("retry-after", "1")
                    .set_body_json(serde_json::json!({"status_code": 25, "status_message": "Your request count (41) is over the allowed limit of 40."})),
            )
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/3/tv/2316/season/1"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office_season_1()),
            )
            .mount(&server)
            .await;
        let tmdb = client(&server, "key");
        let started = std::time::Instant::now();
        let season = tmdb.season(2316, 1).await.unwrap();
        assert_eq!(season.episodes.len(), 6);
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
        // The second request waited for the Retry-After (not the 10 ms backoff).
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn persistent_5xx_is_transient_after_retries_and_404_is_not_found() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/3/tv/1"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let tmdb = client(&server, "key");
        let err = tmdb.tv(1).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 3);
        let err = tmdb.tv(2).await.unwrap_err();
        assert!(matches!(err, TmdbError::NotFound(_)), "{err}");
        assert!(!err.is_transient());
    }

    /// The EMF lines the TMDB error-rate alarm reads: one per call, an error only when the call
    /// failed after its retries.
    #[tokio::test]
    async fn each_call_emits_a_request_and_whether_it_failed() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/3/search/tv"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(fixtures::tmdb_search_the_office()),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/3/tv/1"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/3/tv/3"))
            .respond_with(ResponseTemplate::new(401))
            .mount(&server)
            .await;
        let tmdb = client(&server, "key");
        let ((), lines) = metrics::capture(async {
            assert!(!tmdb.search_tv("The Office").await.unwrap().is_empty());
            assert!(tmdb.tv(1).await.unwrap_err().is_transient());
            assert!(matches!(tmdb.tv(2).await, Err(TmdbError::NotFound(_))));
            assert!(tmdb.tv(3).await.is_err());
        })
        .await;
        let docs: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).expect("an EMF line is JSON"))
            .collect();
        assert_eq!(docs.len(), 4, "one line per call, not per retry: {lines:?}");
        for doc in &docs {
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "plexsync");
            assert_eq!(directive["Metrics"][0]["Name"], "TmdbRequests");
            assert_eq!(directive["Metrics"][1]["Name"], "TmdbErrors");
            assert_eq!(doc["TmdbRequests"], 1.0);
        }
        let errors: Vec<f64> = docs
            .iter()
            .map(|d| d["TmdbErrors"].as_f64().unwrap())
            .collect();
        assert_eq!(errors, [0.0, 1.0, 0.0, 1.0]);
    }

    #[tokio::test]
    async fn long_retry_after_fails_fast_as_transient() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3600"))
            .mount(&server)
            .await;
        let err = client(&server, "key").tv(2316).await.unwrap_err();
        assert!(err.is_transient());
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn timeouts_are_transient() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_delay(Duration::from_secs(30))
                    .set_body_json(fixtures::tmdb_the_office()),
            )
            .mount(&server)
            .await;
        let err = client_with_timeout(&server, "key", Duration::from_millis(500))
            .tv(2316)
            .await
            .unwrap_err();
        assert!(err.is_transient());
        assert!(err.to_string().contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn a_deadline_is_not_passed_waiting_for_retry_after() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "3"))
            .mount(&server)
            .await;
        // A 3 s Retry-After is within the policy (5 s) but not within the caller's second.
        let tmdb = client(&server, "key").until(Instant::now() + Duration::from_secs(1));
        let err = tmdb.tv(2316).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("out of time"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_deadline_cuts_a_slow_request_and_leaves_no_retry() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_delay(Duration::from_secs(30))
                    .set_body_json(fixtures::tmdb_the_office()),
            )
            .mount(&server)
            .await;
        // Requests may take 10 s each, three attempts: the deadline allows one second in all.
        let slow = TmdbClient::with_options(
            &config(&server, "key"),
            fast_retry(),
            40,
            Duration::from_secs(10),
            Duration::from_secs(10),
        )
        .unwrap();
        let err = slow
            .until(Instant::now() + Duration::from_secs(1))
            .tv(2316)
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("out of time"), "{err}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[test]
    fn an_instances_own_cap_is_never_stricter_than_the_shared_bucket() {
        let config = TmdbConfig {
            base_url: "http://127.0.0.1:9/".parse().unwrap(),
            token: SecretString::from("key".to_string()),
        };
        let limiter = &TmdbClient::new(&config).unwrap().inner.limiter;
        // The most the bucket lets one instance send in one of the limiter's windows.
        let bucket = SHARED_RATE.burst + SHARED_RATE.rate * limiter.window.as_secs_f64();
        assert!(
            limiter.max as f64 >= bucket,
            "{} per {:?} holds an instance under the bucket's {bucket}",
            limiter.max,
            limiter.window
        );
    }

    #[tokio::test]
    async fn limiter_holds_back_the_request_over_the_limit() {
        let limiter = RateLimiter::new(3, Duration::from_millis(300));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(limiter.sent.lock().await.len(), 3);
        limiter.acquire().await;
        // The fourth request had to wait for the first to leave the window.
        assert!(start.elapsed() >= Duration::from_millis(300));
    }
}
