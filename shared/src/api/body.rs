//! Request bodies: the raw bytes whatever API Gateway's encoding, and strict JSON objects.

use lambda_http::{Body, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Largest JSON body the management API accepts.
const MAX_JSON_BODY: usize = 64 * 1024;

/// The raw body bytes, whatever encoding API Gateway used.
pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http;
    use serde::Deserialize;

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
}
