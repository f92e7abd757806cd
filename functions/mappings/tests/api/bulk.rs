//! `POST /api/plex/mappings/bulk`: sync on or off for several mappings, one result each.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request, API_TOKEN};
use serde_json::{json, Value};

use crate::support::*;

impl Harness {
    async fn bulk(&self, body: Value) -> (u16, Value) {
        let resp = self
            .call(authed("POST", "/api/plex/mappings/bulk", Some(body)))
            .await;
        (resp.status().as_u16(), json(&resp))
    }

    async fn sync_enabled(&self, id: i32) -> bool {
        self.row(id).await.get(4)
    }
}

#[tokio::test]
async fn bulk_disable_turns_sync_off_for_each_and_reports_each() {
    let h = Harness::new().await;
    let (status, body) = h
        .bulk(json!({"ids": [h.office, h.breaking_bad, 999999, h.office], "syncEnabled": false}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"],
        json!([
            {"id": h.office, "status": "updated", "syncEnabled": false},
            {"id": h.breaking_bad, "status": "unchanged", "syncEnabled": false},
            {"id": 999999, "status": "error", "error": "not_found", "message": "mapping 999999 does not exist"},
        ]),
        "one result per distinct id, in the order sent"
    );
    assert!(!h.sync_enabled(h.office).await);
    assert!(!h.sync_enabled(h.breaking_bad).await);
    assert!(h.sync_enabled(h.got).await, "not named: untouched");
    // The mapping keeps its show: only the switch moved.
    assert_eq!(
        h.row(h.office).await.get::<_, Option<i32>>(0),
        Some(h.office_show)
    );
}

#[tokio::test]
async fn bulk_enable_turns_sync_back_on_only_for_mapped_shows() {
    let h = Harness::new().await;
    h.bulk(json!({"ids": [h.office], "syncEnabled": false}))
        .await;
    assert!(!h.sync_enabled(h.office).await);
    let (status, body) = h
        .bulk(json!({"ids": [h.office, h.breaking_bad], "syncEnabled": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["results"][0],
        json!({"id": h.office, "status": "updated", "syncEnabled": true})
    );
    let bb = &body["results"][1];
    assert_eq!(bb["status"], "error");
    assert_eq!(bb["error"], "conflict");
    assert!(
        bb["message"]
            .as_str()
            .unwrap()
            .contains("not linked to a tracker show"),
        "{bb}"
    );
    assert!(h.sync_enabled(h.office).await);
    assert!(
        !h.sync_enabled(h.breaking_bad).await,
        "a Plex show with no tracker show is never switched on"
    );
}

#[tokio::test]
async fn bulk_rejects_bad_bodies_without_changing_anything() {
    let h = Harness::new().await;
    let too_many: Vec<i64> = (1..=501).collect();
    let cases: Vec<(Body, u16, &str)> = vec![
        (
            Body::from(json!({"ids": [], "syncEnabled": false}).to_string()),
            422,
            "at least one",
        ),
        (
            Body::from(json!({"ids": [h.office]}).to_string()),
            400,
            "syncEnabled",
        ),
        (
            Body::from(json!({"syncEnabled": false}).to_string()),
            400,
            "ids",
        ),
        (
            Body::from(json!({"ids": [h.office, 0], "syncEnabled": false}).to_string()),
            400,
            "positive",
        ),
        (
            Body::from(json!({"ids": [h.office, -2], "syncEnabled": false}).to_string()),
            400,
            "positive",
        ),
        (
            Body::from(json!({"ids": ["1"], "syncEnabled": false}).to_string()),
            400,
            "ids",
        ),
        (
            Body::from(json!({"ids": [h.office], "syncEnabled": "no"}).to_string()),
            400,
            "syncEnabled",
        ),
        (
            Body::from(json!({"ids": [h.office], "syncEnabled": false, "all": true}).to_string()),
            400,
            "all",
        ),
        (
            Body::from(json!({"ids": too_many, "syncEnabled": false}).to_string()),
            400,
            "more than 500",
        ),
        (Body::Empty, 400, "empty"),
    ];
    for (body, status, word) in cases {
        let resp = h
            .call(request(
                "POST",
                "/api/plex/mappings/bulk",
                Some(API_TOKEN),
                body,
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{word}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{word}: {j}");
    }
    assert!(h.sync_enabled(h.office).await, "unchanged");
    let resp = h.call(authed("GET", "/api/plex/mappings/bulk", None)).await;
    assert_eq!(resp.status(), 405);
}
