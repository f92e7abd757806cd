//! The HTTP edge: everything between an API Gateway request and the domain. The management
//! functions (`config`, `mappings`, `conflicts`, `logs`) share one context (auth, CORS, the
//! pool), one router over route tables kept as data, strict JSON bodies, one pagination query
//! and one error type; the webhook uses the body, query and error parts.
//!
//! Imports go edge -> domain -> store, never back: nothing outside `api` imports from it
//! except the functions.

mod auth;
mod body;
mod context;
mod cors;
mod error;
mod query;
mod response;
mod router;
pub mod routes;
#[cfg(feature = "testing")]
pub mod testing;

pub use auth::constant_time_eq;
pub use body::{body_bytes, parse_body, StrictBody};
pub use context::ApiContext;
pub use cors::Cors;
pub use error::{respond, ApiError};
pub use query::{page_request, query_bool, query_param};
pub use response::json;
pub use router::{
    match_route, method_not_allowed, route_not_found, row_not_found, RouteError, RouteMatch,
};
