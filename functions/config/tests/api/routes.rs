//! Auth on every route (and API token rotation), CORS, JSON errors for unknown routes and methods.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request, ALLOWED_ORIGIN, API_TOKEN};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    h.plex_tv_ok().await;
    for (m, p) in plexsync::api::routes::CONFIG {
        let body = if *m == "POST" {
            Body::from(json!({"plexToken": PLEX_TOKEN}).to_string())
        } else {
            Body::Empty
        };
        for auth in [None, Some("wrong-token"), Some("")] {
            let resp = h.call(request(m, p, auth, body.clone())).await;
            assert_eq!(resp.status(), 401, "{m} {p} {auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let j = json(&resp);
            assert_eq!(j["status"], "error");
            assert_eq!(j["error"], "unauthorized");
        }
    }
    let basic = lambda_http::http::Request::builder()
        .method("GET")
        .uri("/api/plex/config")
        .header("authorization", format!("Basic {API_TOKEN}"))
        .body(Body::Empty)
        .unwrap();
    assert_eq!(h.call(basic).await.status(), 401);
    assert!(h.plex.received_requests().await.unwrap().is_empty());
    assert!(h.config_row().await.is_none());
}

#[tokio::test]
async fn a_rotated_api_token_is_picked_up_on_mismatch() {
    let h = Harness::new().await;
    assert_eq!(
        h.call(authed("GET", "/api/plex/config", None))
            .await
            .status(),
        200
    );
    aws_sdk_secretsmanager::Client::new(&h.sdk)
        .put_secret_value()
        .secret_id(&h.api_token_id)
        .secret_string("rotated-api-token-aaaaaaaaaaaaaaaa")
        .send()
        .await
        .unwrap();
    let resp = h
        .call(request(
            "GET",
            "/api/plex/config",
            Some("rotated-api-token-aaaaaaaaaaaaaaaa"),
            Body::Empty,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        h.call(authed("GET", "/api/plex/config", None))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn cors_preflight_and_headers_follow_the_allowlist() {
    let h = Harness::new().await;
    let preflight = |origin: &str| {
        lambda_http::http::Request::builder()
            .method("OPTIONS")
            .uri("/api/plex/config")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .body(Body::Empty)
            .unwrap()
    };
    let resp = h.call(preflight(ALLOWED_ORIGIN)).await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    assert!(resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let resp = h.call(preflight("https://evil.example.net")).await;
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let mut req = authed("GET", "/api/plex/config", None);
    req.headers_mut()
        .insert("origin", ALLOWED_ORIGIN.parse().unwrap());
    let resp = h.call(req).await;
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN
    );
    let mut req = request("GET", "/api/plex/config", None, Body::Empty);
    req.headers_mut()
        .insert("origin", ALLOWED_ORIGIN.parse().unwrap());
    let resp = h.call(req).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        ALLOWED_ORIGIN,
        "a browser can read the 401"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("PUT", "/api/plex/config", None)).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET, POST, DELETE");
    assert_eq!(json(&resp)["status"], "error");
    let resp = h.call(authed("GET", "/api/plex/configuration", None)).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["error"], "not_found");
}
