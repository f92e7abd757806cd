//! Auth on every route, JSON errors for unknown routes and methods.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    for (m, p) in plexsync::api::routes::MAPPINGS {
        let uri = p.replace("{id}", &h.got.to_string());
        let body = if *m == "POST" {
            Body::from(json!({"tvshowId": h.got_show}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token")] {
            let resp = h.call(request(m, &uri, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {uri} {auth:?}");
            assert_eq!(json(&resp)["error"], "unauthorized");
        }
    }
    let row = h.row(h.got).await;
    assert_eq!(row.get::<_, Option<i32>>(0), None, "nothing changed");
    assert!(row.get::<_, bool>(4));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("PATCH", "/api/plex/mappings/1", None)).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "DELETE");
    let resp = h
        .call(authed("GET", "/api/plex/mappings/1/other", None))
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["status"], "error");
}
