//! The bearer-token check, in constant time.

use lambda_http::Request;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// Checks `Authorization: Bearer <token>` against the API token in constant time.
pub(super) fn check_bearer(req: &Request, expected: &SecretString) -> Result<(), ApiError> {
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
    // Trimmed like the webhook secret: a token pasted into Secrets Manager often ends in a newline.
    if constant_time_eq(presented, expected.expose_secret().trim()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Constant-time string comparison (length still leaks, which is fine for random tokens).
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    !b.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::{http, Body};

    fn request_with_auth(value: Option<&str>) -> Request {
        let mut builder = http::Request::builder().uri("/api/plex/config");
        if let Some(v) = value {
            builder = builder.header("authorization", v);
        }
        builder.body(Body::Empty).unwrap()
    }

    #[test]
    fn a_stored_token_with_surrounding_whitespace_still_matches() {
        let token = SecretString::from(" s3cr3t-token-value\n".to_string());
        let req = request_with_auth(Some("Bearer s3cr3t-token-value"));
        assert!(check_bearer(&req, &token).is_ok());
        let blank = SecretString::from(" \n".to_string());
        assert!(check_bearer(&request_with_auth(Some("Bearer ")), &blank).is_err());
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
}
