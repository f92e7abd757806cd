//! Listing (filters, paging), confirming and deleting mappings.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request};
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn list_has_the_documented_fields_and_the_show_title() {
    let h = Harness::new().await;
    let body = h.get("/api/plex/mappings").await;
    assert_eq!(
        ids(&body),
        vec![h.office as i64, h.got as i64, h.breaking_bad as i64]
    );
    let office = &body["mappings"][0];
    assert_eq!(office["plexTitle"], "The Office");
    assert_eq!(office["plexYear"], 2005);
    assert_eq!(office["tvshowId"], h.office_show);
    assert_eq!(office["tvshowTitle"], "The Office");
    assert_eq!(office["matchConfidence"], 0.95);
    assert_eq!(office["matchMethod"], "tvdb");
    assert_eq!(office["syncEnabled"], true);
    assert_eq!(office["conflictId"], Value::Null);
    let got = &body["mappings"][1];
    assert_eq!(got["tvshowId"], Value::Null);
    assert_eq!(got["tvshowTitle"], Value::Null);
    assert!(got["conflictId"].as_i64().is_some());
    assert_eq!(body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn unmapped_and_conflicts_filters() {
    let h = Harness::new().await;
    let body = h.get("/api/plex/mappings?unmapped=true").await;
    assert_eq!(ids(&body), vec![h.got as i64, h.breaking_bad as i64]);
    let body = h.get("/api/plex/mappings?conflicts=true").await;
    assert_eq!(ids(&body), vec![h.got as i64]);
    let body = h.get("/api/plex/mappings?conflicts=1&unmapped=1").await;
    assert_eq!(ids(&body), vec![h.got as i64]);
    let body = h.get("/api/plex/mappings?unmapped=false").await;
    assert_eq!(ids(&body).len(), 3);
    for bad in ["unmapped=maybe", "conflicts=yes", "limit=0", "cursor=%%%"] {
        let resp = h
            .call(authed("GET", &format!("/api/plex/mappings?{bad}"), None))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn pagination_by_id() {
    let h = Harness::new().await;
    let first = h.get("/api/plex/mappings?limit=2").await;
    assert_eq!(ids(&first), vec![h.office as i64, h.got as i64]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = h
        .get(&format!("/api/plex/mappings?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), vec![h.breaking_bad as i64]);
    assert_eq!(second["nextCursor"], Value::Null);
    let filtered = h.get("/api/plex/mappings?unmapped=true&limit=1").await;
    let cursor = filtered["nextCursor"].as_str().unwrap();
    let rest = h
        .get(&format!(
            "/api/plex/mappings?unmapped=true&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), vec![h.breaking_bad as i64]);
}

#[tokio::test]
async fn confirm_maps_manually_with_full_confidence_and_re_enables_sync() {
    let h = Harness::new().await;
    let resp = h
        .call(authed(
            "POST",
            &format!("/api/plex/mappings/{}/confirm", h.breaking_bad),
            Some(json!({"tvshowId": h.got_show})),
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["success"], true);
    let m = &body["mapping"];
    assert_eq!(m["id"], h.breaking_bad);
    assert_eq!(m["tvshowId"], h.got_show);
    assert_eq!(m["tvshowTitle"], "Game of Thrones");
    assert_eq!(m["manuallyConfirmed"], true);
    assert_eq!(m["matchMethod"], "manual");
    assert_eq!(m["matchConfidence"], 1.0);
    assert_eq!(m["syncEnabled"], true);
    let row = h.row(h.breaking_bad).await;
    assert_eq!(row.get::<_, Option<i32>>(0), Some(h.got_show));
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, Option<String>>(2).as_deref(), Some("manual"));
    assert_eq!(row.get::<_, Option<f64>>(3), Some(1.0));
    assert!(row.get::<_, bool>(4));
    assert_eq!(
        row.get::<_, Option<i32>>(5),
        Some(1399),
        "the show's TMDB id is recorded"
    );
}

#[tokio::test]
async fn confirm_rejects_unknown_ids_and_bad_bodies_without_changing_anything() {
    let h = Harness::new().await;
    let uri = format!("/api/plex/mappings/{}/confirm", h.got);
    let cases: Vec<(String, Body, u16, &str)> = vec![
        (
            "/api/plex/mappings/999999/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            404,
            "mapping 999999",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": 424242}).to_string()),
            422,
            "tvshow 424242",
        ),
        (
            "/api/plex/mappings/abc/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            400,
            "positive integer",
        ),
        (
            "/api/plex/mappings/0/confirm".into(),
            Body::from(json!({"tvshowId": h.got_show}).to_string()),
            400,
            "positive integer",
        ),
        (uri.clone(), Body::from("{}"), 400, "tvshowId"),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": h.got_show, "force": true}).to_string()),
            400,
            "force",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": "12"}).to_string()),
            400,
            "tvshowId",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": 1.5}).to_string()),
            400,
            "tvshowId",
        ),
        (
            uri.clone(),
            Body::from(json!({"tvshowId": -3}).to_string()),
            400,
            "tvshowId",
        ),
        (uri.clone(), Body::from("tvshowId=3"), 400, "JSON"),
        (uri.clone(), Body::Empty, 400, "empty"),
        (
            uri.clone(),
            Body::from(format!(
                "{{\"tvshowId\": 1, \"x\": \"{}\"}}",
                "y".repeat(70_000)
            )),
            413,
            "larger",
        ),
    ];
    for (uri, body, status, word) in cases {
        let resp = h
            .call(request(
                "POST",
                &uri,
                Some(plexsync::api::testing::API_TOKEN),
                body,
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{uri}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{word}: {j}");
    }
    let row = h.row(h.got).await;
    assert_eq!(row.get::<_, Option<i32>>(0), None, "unchanged");
    assert!(!row.get::<_, bool>(1));
}

#[tokio::test]
async fn delete_turns_sync_off_and_keeps_the_mapping() {
    let h = Harness::new().await;
    let resp = h
        .call(authed(
            "DELETE",
            &format!("/api/plex/mappings/{}", h.office),
            None,
        ))
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["mapping"]["syncEnabled"], false);
    assert_eq!(body["mapping"]["tvshowId"], h.office_show, "mapping kept");
    assert!(!h.row(h.office).await.get::<_, bool>(4));
    assert_eq!(ids(&h.get("/api/plex/mappings").await).len(), 3);
    let resp = h
        .call(authed("DELETE", "/api/plex/mappings/999999", None))
        .await;
    assert_eq!(resp.status(), 404);
    let resp = h
        .call(authed("DELETE", "/api/plex/mappings/the-office", None))
        .await;
    assert_eq!(resp.status(), 400);
}
