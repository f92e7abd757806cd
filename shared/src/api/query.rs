//! Query-string parameters: plain, boolean, and the page (`limit`, `cursor`).

use lambda_http::{Request, RequestExt};

use super::error::ApiError;
use crate::paging::PageRequest;

/// A query-string parameter, if present and non-empty.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    req.query_string_parameters_ref()
        .and_then(|q| q.first(name).map(str::to_owned))
        .filter(|v| !v.is_empty())
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

/// `?limit=` and `?cursor=` as a [`PageRequest`], else 400.
pub fn page_request(req: &Request) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::parse(
        query_param(req, "limit").as_deref(),
        query_param(req, "cursor").as_deref(),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::{http, Body};

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
        assert_eq!(page_request(&with_query(&[])).unwrap().limit, 50);
        assert_eq!(
            page_request(&with_query(&[("limit", "500")]))
                .unwrap()
                .limit,
            200
        );
        assert_eq!(
            page_request(&with_query(&[("limit", "5")])).unwrap().limit,
            5
        );
        for bad in ["0", "-3", "ten", "1.5"] {
            assert!(
                page_request(&with_query(&[("limit", bad)])).is_err(),
                "{bad}"
            );
        }
    }
}
