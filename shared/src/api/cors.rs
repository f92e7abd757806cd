//! CORS for the management API: the allowed origins, preflight answers and response headers.

use lambda_http::{
    http::{header, HeaderValue, StatusCode},
    Body, Request, Response,
};

use super::error::ApiError;
use crate::env::{Env, EnvError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
