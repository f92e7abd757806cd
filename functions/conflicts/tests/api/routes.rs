//! Auth on every route, JSON errors for unknown routes and methods.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    for (m, p) in plexsync::api::routes::CONFLICTS {
        let uri = p.replace("{id}", &h.office.to_string());
        let body = if *m == "POST" {
            Body::from(json!({"action": "select", "tvshowId": h.office_show}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token")] {
            let resp = h.call(request(m, &uri, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {uri} {auth:?}");
            assert_eq!(json(&resp)["error"], "unauthorized");
        }
    }
    assert!(!h.conflict_row(h.office).await.get::<_, bool>(0));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("DELETE", "/api/plex/conflicts", None)).await;
    assert_eq!(resp.status(), 405);
    let resp = h.call(authed("GET", "/api/plex/conflicts/1", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["status"], "error");
}
