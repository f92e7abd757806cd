//! The one error type every HTTP-facing handler returns, its single mapping to
//! `{"status":"error","message":...,"error":...}` with the right status code, and the mapping of
//! every shared domain error to it (a function's own errors are mapped in its crate).

use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Response,
};
use serde::Serialize;

use super::response::json;
use crate::{
    accounts::AllowedAccountsError, crypto::CryptoError, db::DbError, paging::PagingError,
    payload::PayloadError, plex::PlexError, secrets::SecretsError, store::DecisionError,
};

/// An error as the user of the HTTP API sees it. `message` texts must never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    /// Deliberately carries no detail: a caller must not learn which part was wrong.
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists with other methods; `allow` lists them for the `Allow` header.
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("too many requests, retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotImplemented(String),
    /// Logged in full, answered with a generic message.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    message: &'a str,
    error: &'static str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code for the `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unprocessable(_) => "unprocessable",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::BadGateway(_) => "bad_gateway",
            Self::Unavailable(_) => "unavailable",
            Self::NotImplemented(_) => "not_implemented",
            Self::Internal(_) => "internal",
        }
    }

    /// The JSON response. Internal details are logged here, once, and not sent.
    pub fn into_response(self) -> Response<Body> {
        let message = match &self {
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            status: "error",
            message: &message,
            error: self.code(),
        };
        let mut response = json(self.status(), &body);
        let headers = response.headers_mut();
        match self {
            Self::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, retry_after_secs.into());
            }
            Self::MethodNotAllowed { allow, .. } => {
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            _ => {}
        }
        response
    }
}

/// Turns a handler result into the response the runtime sends.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(ApiError::into_response)
}

impl From<DbError> for ApiError {
    fn from(err: DbError) -> Self {
        if err.is_transient() {
            tracing::warn!(error = %err, "database unavailable");
            Self::Unavailable("database unavailable, try again shortly".into())
        } else {
            Self::Internal(err.to_string())
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        DbError::from(err).into()
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(err: tokio_postgres::Error) -> Self {
        DbError::from(err).into()
    }
}

impl From<SecretsError> for ApiError {
    fn from(err: SecretsError) -> Self {
        tracing::warn!(error = %err, "secrets manager unavailable");
        Self::Unavailable("secret store unavailable, try again shortly".into())
    }
}

impl From<PagingError> for ApiError {
    fn from(err: PagingError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<AllowedAccountsError> for ApiError {
    fn from(err: AllowedAccountsError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<PayloadError> for ApiError {
    fn from(err: PayloadError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<PlexError> for ApiError {
    fn from(err: PlexError) -> Self {
        match err {
            // Configuration the user must change, like a rejected token.
            PlexError::Rejected | PlexError::PlainHttp => Self::Unprocessable(err.to_string()),
            PlexError::Timeout => Self::BadGateway("the Plex server did not answer in time".into()),
            PlexError::Unreachable(_) | PlexError::Unexpected(_) => {
                Self::BadGateway(err.to_string())
            }
        }
    }
}

impl From<DecisionError> for ApiError {
    fn from(err: DecisionError) -> Self {
        match err {
            DecisionError::MappingNotFound(_) | DecisionError::ConflictNotFound(_) => {
                Self::NotFound(err.to_string())
            }
            DecisionError::AlreadyResolved(_) => Self::Conflict(err.to_string()),
            DecisionError::UnknownShow(_) => Self::Unprocessable(err.to_string()),
            DecisionError::Db(db) => db.into(),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(err: CryptoError) -> Self {
        Self::Internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(resp: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(resp.body().as_ref()).unwrap()
    }

    #[test]
    fn every_variant_maps_to_its_status_and_json_shape() {
        let cases = [
            (ApiError::BadRequest("bad".into()), 400, "bad_request"),
            (ApiError::Unauthorized, 401, "unauthorized"),
            (ApiError::Forbidden("no".into()), 403, "forbidden"),
            (ApiError::NotFound("gone".into()), 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    message: "PUT is not allowed on /x".into(),
                    allow: "GET".into(),
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::Conflict("twice".into()), 409, "conflict"),
            (
                ApiError::PayloadTooLarge("big".into()),
                413,
                "payload_too_large",
            ),
            (ApiError::Unprocessable("odd".into()), 422, "unprocessable"),
            (
                ApiError::TooManyRequests {
                    retry_after_secs: 7,
                },
                429,
                "rate_limited",
            ),
            (ApiError::BadGateway("plex.tv".into()), 502, "bad_gateway"),
            (ApiError::Unavailable("db".into()), 503, "unavailable"),
            (
                ApiError::NotImplemented("later".into()),
                501,
                "not_implemented",
            ),
        ];
        for (err, status, code) in cases {
            let resp = err.into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let json = body_json(&resp);
            assert_eq!(json["status"], "error");
            assert_eq!(json["error"], code);
            assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn rate_limit_sets_retry_after() {
        let resp = ApiError::TooManyRequests {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(resp.headers()["retry-after"], "42");
    }

    #[test]
    fn internal_details_are_not_sent() {
        let resp = ApiError::Internal("relation plex_config does not exist".into()).into_response();
        assert_eq!(resp.status().as_u16(), 500);
        let json = body_json(&resp);
        assert_eq!(json["message"], "internal error");
        assert!(!json.to_string().contains("plex_config"));
    }
}
