//! Matching a request's method and path against a route table, with `{name}` path parameters.

use lambda_http::Request;

use super::{error::ApiError, routes::Route};
use crate::ids::RowId;

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

    /// A row id path parameter: a positive integer (else 400) that a row of `T`'s table can
    /// have (else 404, as for any other id that does not exist).
    pub fn row_id<T: RowId>(&self, name: &str) -> Result<T, ApiError> {
        let id = self.id(name)?;
        T::from_request(id).ok_or_else(|| row_not_found::<T>(id))
    }

    /// A numeric id path parameter: a positive integer, else 400.
    fn id(&self, name: &str) -> Result<i64, ApiError> {
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

/// The answer for a requested id no row of `T`'s table has.
pub fn row_not_found<T: RowId>(id: i64) -> ApiError {
    ApiError::NotFound(format!("{} {id} does not exist", T::NAME))
}

/// The answer for a path a function does not serve.
pub fn route_not_found(req: &Request) -> ApiError {
    ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// The answer for a path served with other methods (`Allow` lists them).
pub fn method_not_allowed(req: &Request, allowed: &[&str]) -> ApiError {
    ApiError::MethodNotAllowed {
        message: format!("{} is not allowed on {}", req.method(), req.uri().path()),
        allow: allowed.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::routes, ids::MappingId};

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
    fn a_row_id_no_row_can_have_is_not_found() {
        let m = match_route(routes::MAPPINGS, "DELETE", "/api/plex/mappings/2147483648").unwrap();
        match m.row_id::<MappingId>("id") {
            Err(ApiError::NotFound(message)) => {
                assert_eq!(message, "mapping 2147483648 does not exist")
            }
            other => panic!("{other:?}"),
        }
        let m = match_route(routes::MAPPINGS, "DELETE", "/api/plex/mappings/7").unwrap();
        assert_eq!(m.row_id::<MappingId>("id").unwrap(), MappingId(7));
    }
}
