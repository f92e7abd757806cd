//! Small HTTP helpers shared by every `lambda_http` function: JSON responses, body parsing,
//! the bearer-token check, and pagination parameters.

use lambda_http::{http::StatusCode, Body, Request, RequestExt, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{de::DeserializeOwned, Serialize};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// A JSON response with the given status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response<Body> {
    // Serialising our own response types cannot fail (no maps with non-string keys).
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .unwrap_or_default()
}

/// Turns a handler result into the response the runtime sends.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

/// The raw body bytes, whatever encoding API Gateway used.
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

/// Largest JSON body the management API accepts.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// Parses a JSON body into `T`, reporting the failing field by path.
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    if bytes.len() > MAX_JSON_BODY {
        return Err(ApiError::PayloadTooLarge(format!(
            "request body is larger than {MAX_JSON_BODY} bytes"
        )));
    }
    if bytes.is_empty() {
        return Err(ApiError::BadRequest(
            "request body is empty; expected JSON".into(),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// Checks `Authorization: Bearer <token>` against the API token in constant time.
pub fn check_bearer(req: &Request, expected: &SecretString) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get(lambda_http::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    if constant_time_eq(presented, expected.expose_secret()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Constant-time string comparison (length still leaks, which is fine for random tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    !b.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A query-string parameter, if present and non-empty.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name).map(str::to_owned))
        .filter(|v| !v.is_empty())
}

/// The answer for a route a function does not serve yet, or does not serve at all.
pub fn route_not_found(req: &Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;

    fn request_with_auth(value: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri("/api/plex/config");
        if let Some(v) = value {
            builder = builder.header("authorization", v);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn bearer_check_accepts_only_the_exact_token() {
        let token = SecretString::from("s3cr3t-token-value".to_string());
        assert!(check_bearer(
            &request_with_auth(Some("Bearer s3cr3t-token-value")),
            &token
        )
        .is_ok());
        for bad in [
            None,
            Some("Bearer wrong"),
            Some("s3cr3t-token-value"),
            Some("Bearer "),
            Some("Basic s3cr3t-token-value"),
        ] {
            let err = check_bearer(&request_with_auth(bad), &token).unwrap_err();
            assert!(matches!(err, ApiError::Unauthorized), "{bad:?}");
        }
    }

    #[test]
    fn empty_expected_token_never_matches() {
        assert!(!constant_time_eq("", ""));
    }

    #[test]
    fn parse_json_reports_bad_and_oversized_bodies() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body1 {
            a: u32,
        }
        let req = |b: Body| http::Request::builder().body(b).unwrap();
        assert_eq!(
            parse_json::<Body1>(&req(Body::from("{\"a\":1}")))
                .unwrap()
                .a,
            1
        );
        let err = parse_json::<Body1>(&req(Body::from("{\"a\":\"x\"}"))).unwrap_err();
        assert!(
            matches!(err, ApiError::BadRequest(ref m) if m.contains("invalid type")),
            "{err}"
        );
        let err = parse_json::<Body1>(&req(Body::Empty)).unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)));
        let err = parse_json::<Body1>(&req(Body::from(vec![b' '; MAX_JSON_BODY + 1]))).unwrap_err();
        assert!(matches!(err, ApiError::PayloadTooLarge(_)));
    }
}
