//! The management API's common edge, shared by the `config`, `mappings`, `conflicts` and `logs`
//! functions: one auth check, CORS, a small router over route tables kept as data, strict JSON
//! bodies and one cursor pagination scheme.

use std::sync::Arc;

use aws_config::SdkConfig;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use lambda_http::{
    http::{header, HeaderValue, Method, StatusCode},
    Body, Request, Response,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    db::{self, DbPool},
    env::{Env, EnvError},
    error::ApiError,
    http::{body_bytes, check_bearer, query_param, route_not_found, MAX_JSON_BODY},
    secrets::SecretsCache,
};

/// One route: HTTP method and path pattern, with `{name}` for a path parameter. The same
/// spelling as the OpenAPI document's `paths`, so a test can compare them.
pub type Route = (&'static str, &'static str);

/// Every route each function serves, as data: the functions route with these tables and the
/// OpenAPI test checks `docs/openapi.yaml` against them.
pub mod routes {
    use super::Route;

    pub const WEBHOOK: &[Route] = &[("POST", "/api/plex/webhook")];
    pub const CONFIG: &[Route] = &[
        ("GET", "/api/plex/config"),
        ("POST", "/api/plex/config"),
        ("DELETE", "/api/plex/config"),
    ];
    pub const MAPPINGS: &[Route] = &[
        ("GET", "/api/plex/mappings"),
        ("POST", "/api/plex/mappings/{id}/confirm"),
        ("POST", "/api/plex/mappings/{id}/sync"),
        ("DELETE", "/api/plex/mappings/{id}"),
    ];
    pub const CONFLICTS: &[Route] = &[
        ("GET", "/api/plex/conflicts"),
        ("POST", "/api/plex/conflicts/{id}/resolve"),
    ];
    pub const LOGS: &[Route] = &[
        ("GET", "/api/plex/logs"),
        ("GET", "/api/plex/stats"),
        ("POST", "/api/plex/logs/{id}/replay"),
    ];
    /// The admin page and its assets (no token: the page asks for it).
    pub const ADMIN: &[Route] = &[("GET", "/"), ("GET", "/admin/{asset}")];

    /// (function name, its routes).
    pub const ALL: &[(&str, &[Route])] = &[
        ("webhook", WEBHOOK),
        ("config", CONFIG),
        ("mappings", MAPPINGS),
        ("conflicts", CONFLICTS),
        ("logs", LOGS),
        ("admin", ADMIN),
    ];
}

// ---------------------------------------------------------------------------------------------
// Routing

/// A matched route and its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    pub method: &'static str,
    pub pattern: &'static str,
    params: Vec<(&'static str, String)>,
}

impl RouteMatch {
    /// The key handlers dispatch on: `(method, pattern)`, as written in the route table.
    pub fn key(&self) -> Route {
        (self.method, self.pattern)
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A numeric id path parameter: a positive integer, else 400.
    pub fn id(&self, name: &str) -> Result<i64, ApiError> {
        self.param(name)
            .filter(|v| !v.is_empty() && v.len() <= 18 && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("path parameter {name} must be a positive integer"))
            })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists with these methods.
    MethodNotAllowed(Vec<&'static str>),
}

/// Finds the route for `method` + `path` (one trailing slash tolerated).
pub fn match_route(routes: &[Route], method: &str, path: &str) -> Result<RouteMatch, RouteError> {
    let path = match path.strip_suffix('/') {
        Some(p) if !p.is_empty() => p,
        _ => path,
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut allowed = Vec::new();
    for &(route_method, pattern) in routes {
        if let Some(params) = match_pattern(pattern, &segments) {
            if route_method.eq_ignore_ascii_case(method) {
                return Ok(RouteMatch {
                    method: route_method,
                    pattern,
                    params,
                });
            }
            allowed.push(route_method);
        }
    }
    if allowed.is_empty() {
        Err(RouteError::NotFound)
    } else {
        Err(RouteError::MethodNotAllowed(allowed))
    }
}

fn match_pattern(pattern: &'static str, segments: &[&str]) -> Option<Vec<(&'static str, String)>> {
    let parts: Vec<&'static str> = pattern.split('/').collect();
    if parts.len() != segments.len() {
        return None;
    }
    let mut params = Vec::new();
    for (part, segment) in parts.into_iter().zip(segments) {
        if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            if segment.is_empty() {
                return None;
            }
            params.push((name, (*segment).to_string()));
        } else if part != *segment {
            return None;
        }
    }
    Some(params)
}

fn method_not_allowed(req: &Request, allowed: &[&str]) -> Response<Body> {
    let mut resp = crate::http::json(
        StatusCode::METHOD_NOT_ALLOWED,
        &serde_json::json!({
            "status": "error",
            "message": format!("{} is not allowed on {}", req.method(), req.uri().path()),
            "error": "method_not_allowed",
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// CORS

/// Origins allowed to call the API from a browser (`CORS_ALLOWED_ORIGINS`, comma-separated,
/// e.g. `https://tracker.example.com`). Empty: no cross-origin access.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    pub const ENV: &'static str = "CORS_ALLOWED_ORIGINS";

    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let Some(raw) = env.optional(Self::ENV) else {
            return Ok(Self::default());
        };
        let origins = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_origin(s).ok_or_else(|| EnvError::Invalid {
                    name: Self::ENV,
                    reason: format!("{s:?} is not an origin such as https://tracker.example.com"),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { origins })
    }

    /// The request's `Origin` if it is allowed.
    fn allowed_origin(&self, req: &Request) -> Option<HeaderValue> {
        let origin = req.headers().get(header::ORIGIN)?;
        let text = origin.to_str().ok()?;
        self.origins
            .iter()
            .any(|o| o == text)
            .then(|| origin.clone())
    }

    /// Answers an `OPTIONS` preflight for a path served with `methods`.
    pub fn preflight(&self, req: &Request, methods: &[&str]) -> Response<Body> {
        let Some(origin) = self.allowed_origin(req) else {
            let mut resp = ApiError::Forbidden("origin is not allowed".into()).into_response();
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Origin"));
            return resp;
        };
        let mut methods: Vec<&str> = methods.to_vec();
        methods.push("OPTIONS");
        let mut resp = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::Empty)
            .unwrap_or_default();
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        resp
    }

    /// Adds the CORS headers to an actual response when the origin is allowed.
    pub fn decorate(&self, req: &Request, resp: &mut Response<Body>) {
        if self.origins.is_empty() {
            return;
        }
        let h = resp.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = self.allowed_origin(req) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        }
    }
}

fn parse_origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty();
    plain.then(|| url.origin().ascii_serialization())
}

// ---------------------------------------------------------------------------------------------
// Context: pool, secrets, auth

/// What every management function holds: the pool, the secrets cache, the API token's secret
/// id and the CORS policy. Built once per cold start.
pub struct ApiContext {
    pub pool: DbPool,
    pub secrets: Arc<SecretsCache>,
    pub cors: Cors,
    api_token_id: String,
}

impl ApiContext {
    pub fn new(pool: DbPool, secrets: Arc<SecretsCache>, api_token_id: String, cors: Cors) -> Self {
        Self {
            pool,
            secrets,
            cors,
            api_token_id,
        }
    }

    /// From `DATABASE_URL`, `API_TOKEN_SECRET_ID` and `CORS_ALLOWED_ORIGINS`.
    pub fn from_env(env: &Env, sdk: &SdkConfig) -> Result<Self, EnvError> {
        let pool = db::pool_from_env(env)?;
        let secrets = Arc::new(SecretsCache::new(aws_sdk_secretsmanager::Client::new(sdk)));
        Ok(Self::new(
            pool,
            secrets,
            env.required("API_TOKEN_SECRET_ID")?,
            Cors::from_env(env)?,
        ))
    }

    /// `Authorization: Bearer <API token>`, compared in constant time. On a mismatch the secret
    /// is re-read once (it may have been rotated; the cache rate-limits the re-reads).
    #[tracing::instrument(skip_all)]
    pub async fn authorize(&self, req: &Request) -> Result<(), ApiError> {
        if !req.headers().contains_key(header::AUTHORIZATION) {
            return Err(ApiError::Unauthorized);
        }
        if let Some(token) = self.secrets.get(&self.api_token_id).await? {
            if check_bearer(req, &token).is_ok() {
                return Ok(());
            }
        }
        match self.secrets.refresh(&self.api_token_id).await? {
            Some(token) => check_bearer(req, &token),
            None => {
                tracing::warn!(secret_id = %self.api_token_id, "API token secret does not exist");
                Err(ApiError::Unauthorized)
            }
        }
    }

    /// Everything before the handler: CORS preflight, auth, routing. `Err` is the finished
    /// response (preflight, 401, 404, 405).
    pub async fn begin(
        &self,
        req: &Request,
        routes: &[Route],
    ) -> Result<RouteMatch, Response<Body>> {
        let path = req.uri().path();
        if req.method() == Method::OPTIONS {
            let methods: Vec<&str> = match match_route(routes, "OPTIONS", path) {
                Err(RouteError::MethodNotAllowed(m)) => m,
                _ => return Err(route_not_found(req).into_response()),
            };
            return Err(self.cors.preflight(req, &methods));
        }
        if let Err(err) = self.authorize(req).await {
            let mut resp = err.into_response();
            if resp.status() == StatusCode::UNAUTHORIZED {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return Err(self.finish(req, resp));
        }
        match match_route(routes, req.method().as_str(), path) {
            Ok(m) => Ok(m),
            Err(RouteError::NotFound) => {
                Err(self.finish(req, route_not_found(req).into_response()))
            }
            Err(RouteError::MethodNotAllowed(m)) => {
                Err(self.finish(req, method_not_allowed(req, &m)))
            }
        }
    }

    /// Adds the CORS headers to the handler's response.
    pub fn finish(&self, req: &Request, mut resp: Response<Body>) -> Response<Body> {
        self.cors.decorate(req, &mut resp);
        resp
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies and query parameters

/// A JSON request body with a fixed set of top-level fields.
pub trait StrictBody: DeserializeOwned {
    /// Every accepted top-level field (camelCase, as sent).
    const FIELDS: &'static [&'static str];
}

/// Parses a JSON object body: oversized → 413; not JSON, unknown fields (all named), missing
/// fields or wrong types (field named) → 400. Error texts never echo the submitted values.
pub fn parse_body<T: StrictBody>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body is larger than {MAX_JSON_BODY} bytes"
        )));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty; expected a JSON object".into(),
        ));
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::BadRequest(
            "request body must be a JSON object".into(),
        ));
    };
    let unknown: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|k| !T::FIELDS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "unknown field{} {}; allowed fields: {}",
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .map(|k| short(k))
                .collect::<Vec<_>>()
                .join(", "),
            T::FIELDS.join(", ")
        )));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = redact_value(&e.into_inner().to_string());
        if path == "." {
            ApiError::BadRequest(format!("invalid request body: {inner}"))
        } else {
            ApiError::BadRequest(format!("invalid field {path}: {inner}"))
        }
    })
}

/// Field names are echoed, but bounded.
fn short(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// serde says `invalid type: string "abc", expected a boolean`: keep the expectation, drop the
/// value (it may be a token sent in the wrong field).
fn redact_value(message: &str) -> String {
    for prefix in ["invalid type", "invalid value", "invalid length"] {
        if message.starts_with(prefix) {
            return match message.find(", expected") {
                Some(i) => format!("{prefix}{}", &message[i..]),
                None => prefix.to_string(),
            };
        }
    }
    message.to_string()
}

/// A boolean query parameter (`true`/`false`/`1`/`0`), else 400.
pub fn query_bool(req: &Request, name: &str) -> Result<Option<bool>, ApiError> {
    match query_param(req, name).as_deref() {
        None => Ok(None),
        Some("true" | "1") => Ok(Some(true)),
        Some("false" | "0") => Ok(Some(false)),
        Some(_) => Err(ApiError::BadRequest(format!(
            "query parameter {name} must be true or false"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Pagination

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

/// Position after the last row of a page: `(created_at, id)` for time-ordered lists, `id` alone
/// for id-ordered ones. Sent to clients as opaque base64url JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(rename = "i")]
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::BadRequest("cursor is invalid; use nextCursor from a previous page".into())
        };
        if text.len() > 200 {
            return Err(invalid());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| invalid())?;
        serde_json::from_slice(&bytes).map_err(|_| invalid())
    }
}

/// `?limit=` (default 50, values above 200 are capped) and `?cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn from_request(req: &Request) -> Result<Self, ApiError> {
        let limit = match query_param(req, "limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.min(MAX_LIMIT))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
                })?,
        };
        let after = query_param(req, "cursor")
            .map(|c| Cursor::decode(&c))
            .transpose()?;
        Ok(Self { limit, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts the fetched rows to a page and computes the next cursor from its last row.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| key(r).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Test support for the functions' handler tests

#[cfg(feature = "testing")]
pub mod testing {
    use std::{sync::Arc, time::Duration};

    use lambda_http::{http, Body, Request, RequestExt, Response};

    use super::{ApiContext, Cors};
    use crate::{db::DbPool, env::Env, secrets::SecretsCache};

    /// The API token the test contexts accept.
    pub const API_TOKEN: &str = "test-api-token-4f1c2a9e8b7d6c5e3f2a1b0c";
    /// An origin the test contexts allow.
    pub const ALLOWED_ORIGIN: &str = "https://tracker.example.com";

    /// A secrets cache on moto that re-reads on every mismatch (no rate limit), so rotation
    /// tests do not wait.
    pub fn secrets_cache(sdk: &aws_config::SdkConfig) -> Arc<SecretsCache> {
        Arc::new(SecretsCache::with_timings(
            aws_sdk_secretsmanager::Client::new(sdk),
            Duration::from_secs(300),
            Duration::ZERO,
        ))
    }

    /// A context on `pool` whose API token lives in a fresh moto secret. Returns the context
    /// and the token's secret id.
    pub async fn context(pool: DbPool, sdk: &aws_config::SdkConfig) -> (ApiContext, String) {
        let token_id = crate::testing::secret(sdk, API_TOKEN).await;
        let cors = Cors::from_env(&Env::from_map([(Cors::ENV, ALLOWED_ORIGIN)])).expect("cors");
        (
            ApiContext::new(pool, secrets_cache(sdk), token_id.clone(), cors),
            token_id,
        )
    }

    /// A request as API Gateway hands it over (query parameters parsed into the extension),
    /// authorised with `auth` (`Some(API_TOKEN)` for the happy path).
    pub fn request(method: &str, uri: &str, auth: Option<&str>, body: Body) -> Request {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(token) = auth {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if !matches!(body, Body::Empty) {
            builder = builder.header("content-type", "application/json");
        }
        let req = builder.body(body).expect("valid test request");
        let query: std::collections::HashMap<String, Vec<String>> = req
            .uri()
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes()).fold(
                    std::collections::HashMap::new(),
                    |mut m: std::collections::HashMap<String, Vec<String>>, (k, v)| {
                        m.entry(k.into_owned()).or_default().push(v.into_owned());
                        m
                    },
                )
            })
            .unwrap_or_default();
        req.with_query_string_parameters(query)
    }

    /// An authorised request with an optional JSON body.
    pub fn authed(method: &str, uri: &str, body: Option<serde_json::Value>) -> Request {
        let body = body.map_or(Body::Empty, |b| Body::from(b.to_string()));
        request(method, uri, Some(API_TOKEN), body)
    }

    /// The response body as JSON (panics with the body text when it is not JSON).
    pub fn json(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(resp.body().as_ref())
            )
        })
    }

    /// The response body as text.
    pub fn text(resp: &Response<Body>) -> String {
        String::from_utf8_lossy(resp.body().as_ref()).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::{http, RequestExt};

    #[test]
    fn router_matches_patterns_and_reports_allowed_methods() {
        let m = match_route(routes::MAPPINGS, "POST", "/api/plex/mappings/42/confirm").unwrap();
        assert_eq!(m.key(), ("POST", "/api/plex/mappings/{id}/confirm"));
        assert_eq!(m.id("id").unwrap(), 42);
        let m = match_route(routes::MAPPINGS, "delete", "/api/plex/mappings/7/").unwrap();
        assert_eq!(m.key(), ("DELETE", "/api/plex/mappings/{id}"));
        assert_eq!(
            match_route(routes::MAPPINGS, "PUT", "/api/plex/mappings/7"),
            Err(RouteError::MethodNotAllowed(vec!["DELETE"]))
        );
        assert_eq!(
            match_route(routes::MAPPINGS, "GET", "/api/plex/mappings/7/other"),
            Err(RouteError::NotFound)
        );
        assert_eq!(
            match_route(routes::MAPPINGS, "POST", "/api/plex/mappings//confirm"),
            Err(RouteError::NotFound)
        );
    }

    #[test]
    fn ids_must_be_positive_integers() {
        for bad in [
            "abc",
            "-1",
            "0",
            "1.5",
            "99999999999999999999",
            "1e3",
            "%31",
        ] {
            let path = format!("/api/plex/mappings/{bad}");
            let m = match_route(routes::MAPPINGS, "DELETE", &path).unwrap();
            assert!(matches!(m.id("id"), Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: Some(Utc::now()),
            id: 17,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let c = Cursor {
            created_at: None,
            id: 3,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!!", "eyJ4IjoxfQ", &"A".repeat(300)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    fn with_query(pairs: &[(&str, &str)]) -> Request {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        http::Request::builder()
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(map)
    }

    #[test]
    fn page_request_defaults_caps_and_validates() {
        assert_eq!(
            PageRequest::from_request(&with_query(&[])).unwrap().limit,
            50
        );
        assert_eq!(
            PageRequest::from_request(&with_query(&[("limit", "500")]))
                .unwrap()
                .limit,
            200
        );
        assert_eq!(
            PageRequest::from_request(&with_query(&[("limit", "5")]))
                .unwrap()
                .limit,
            5
        );
        for bad in ["0", "-3", "ten", "1.5"] {
            assert!(
                PageRequest::from_request(&with_query(&[("limit", bad)])).is_err(),
                "{bad}"
            );
        }
        let page = PageRequest {
            limit: 2,
            after: None,
        }
        .page(vec![1, 2, 3], |n| Cursor {
            created_at: None,
            id: *n,
        });
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            Cursor::decode(page.next_cursor.as_deref().unwrap())
                .unwrap()
                .id,
            2
        );
        let page = PageRequest {
            limit: 3,
            after: None,
        }
        .page(vec![1, 2, 3], |n| Cursor {
            created_at: None,
            id: *n,
        });
        assert_eq!(page.next_cursor, None);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Example {
        plex_token: String,
        enabled: Option<bool>,
    }
    impl StrictBody for Example {
        const FIELDS: &'static [&'static str] = &["plexToken", "enabled"];
    }

    fn body(text: &str) -> Request {
        http::Request::builder().body(Body::from(text)).unwrap()
    }

    #[test]
    fn strict_bodies_name_unknown_and_bad_fields_without_echoing_values() {
        let err = parse_body::<Example>(&body(r#"{"plexToken":"x","foo":1,"bar":2}"#)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ApiError::BadRequest(_)));
        assert!(msg.contains("foo") && msg.contains("bar"), "{msg}");
        let err = parse_body::<Example>(&body(r#"{"plexToken":"x","enabled":"yes-secret"}"#))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("enabled") && msg.contains("expected a boolean"),
            "{msg}"
        );
        assert!(!msg.contains("yes-secret"), "{msg}");
        let err = parse_body::<Example>(&body(r#"{"enabled":true}"#)).unwrap_err();
        assert!(
            err.to_string().contains("missing field `plexToken`"),
            "{err}"
        );
        assert!(matches!(
            parse_body::<Example>(&body("[1]")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_body::<Example>(&body("{")),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_body::<Example>(&body("")),
            Err(ApiError::BadRequest(_))
        ));
        let big = format!(r#"{{"plexToken":"{}"}}"#, "a".repeat(MAX_JSON_BODY));
        assert!(matches!(
            parse_body::<Example>(&body(&big)),
            Err(ApiError::PayloadTooLarge(_))
        ));
        assert_eq!(
            parse_body::<Example>(&body(r#"{"plexToken":"abc"}"#))
                .unwrap()
                .plex_token,
            "abc"
        );
    }

    #[test]
    fn cors_origins_are_validated() {
        let env = Env::from_map([(Cors::ENV, "https://a.example.com, http://localhost:3000")]);
        let cors = Cors::from_env(&env).unwrap();
        assert_eq!(
            cors.origins,
            ["https://a.example.com", "http://localhost:3000"]
        );
        for bad in [
            "*",
            "a.example.com",
            "https://a.example.com/path",
            "ftp://x",
        ] {
            assert!(
                Cors::from_env(&Env::from_map([(Cors::ENV, bad)])).is_err(),
                "{bad}"
            );
        }
    }
}
