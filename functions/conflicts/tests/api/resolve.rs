//! Listing conflicts and resolving them: select, ignore, concurrent resolves, bad input.

use lambda_http::Body;
use plexsync::api::testing::{authed, json, request, API_TOKEN};
use plexsync::testing::fixtures;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn list_shows_open_conflicts_newest_first_with_matches() {
    let h = Harness::new().await;
    let resp = h.call(authed("GET", "/api/plex/conflicts", None)).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let list = body["conflicts"].as_array().unwrap();
    assert_eq!(list.len(), 2, "the resolved one is not listed");
    assert_eq!(list[0]["id"], h.office);
    assert_eq!(list[1]["id"], h.got);
    let office = &list[0];
    assert_eq!(office["plexTitle"], "The Office");
    assert_eq!(office["conflictType"], "multiple_matches");
    assert_eq!(office["pendingEvents"], 2);
    let matches = office["potentialMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 2);
    assert_eq!(matches[0]["tvshowId"], h.office_show);
    assert_eq!(matches[0]["tmdbId"], 2316);
    assert_eq!(matches[0]["matchScore"], 0.85);
    assert!(office["createdAt"].as_str().is_some());
    assert_eq!(list[1]["potentialMatches"], json!([]));
    assert_eq!(body["nextCursor"], Value::Null);

    let first = json(
        &h.call(authed("GET", "/api/plex/conflicts?limit=1", None))
            .await,
    );
    assert_eq!(first["conflicts"][0]["id"], h.office);
    let cursor = first["nextCursor"].as_str().unwrap();
    let second = json(
        &h.call(authed(
            "GET",
            &format!("/api/plex/conflicts?limit=1&cursor={cursor}"),
            None,
        ))
        .await,
    );
    assert_eq!(second["conflicts"].as_array().unwrap().len(), 1);
    assert_eq!(second["conflicts"][0]["id"], h.got);
    assert_eq!(second["nextCursor"], Value::Null);
    for bad in ["limit=x", "cursor=abc"] {
        let resp = h
            .call(authed("GET", &format!("/api/plex/conflicts?{bad}"), None))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn select_resolves_maps_and_reports_pending_events_then_409() {
    let h = Harness::new().await;
    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["conflictId"], h.office);
    assert_eq!(body["action"], "select");
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["replay"]["pending"], 2);
    assert_eq!(body["replay"]["replayed"], 2, "{body}");

    let row = h
        .assert_resolved(h.office, "user_selected", Some(h.office_show))
        .await;
    assert!(row.get::<_, bool>(3));

    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    let m = &mappings[0];
    assert_eq!(body["mappingId"], m.get::<_, i32>(0));
    assert_eq!(m.get::<_, String>(1), "48200");
    assert_eq!(m.get::<_, Option<i32>>(2), Some(h.office_show));
    assert_eq!(m.get::<_, Option<String>>(3).as_deref(), Some("manual"));
    assert_eq!(m.get::<_, Option<f64>>(4), Some(1.0));
    assert!(m.get::<_, bool>(5));
    assert!(m.get::<_, bool>(6));
    assert_eq!(m.get::<_, Option<i32>>(7), Some(2316));

    let again = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_uk_show}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(json(&again)["error"], "conflict");
    assert_eq!(
        h.mappings().await[0].get::<_, Option<i32>>(2),
        Some(h.office_show),
        "unchanged"
    );

    let listed = json(&h.call(authed("GET", "/api/plex/conflicts", None)).await);
    assert_eq!(listed["conflicts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn select_updates_an_existing_mapping_instead_of_adding_one() {
    let h = Harness::new().await;
    let existing: i32 = h
        .db.client().await
        .query_one(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title, match_method, match_confidence, sync_enabled)
             VALUES ($1, '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', 'fuzzy', 0.62, false) RETURNING id",
            &[&fixtures::server_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    let resp = h
        .resolve(
            h.office,
            json!({"action": "select", "tvshowId": h.office_uk_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["mappingId"], existing);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_uk_show));
    assert_eq!(
        mappings[0].get::<_, Option<String>>(3).as_deref(),
        Some("manual")
    );
    assert!(mappings[0].get::<_, bool>(6), "sync back on");
}

#[tokio::test]
async fn select_moves_a_mapping_found_by_guid_to_the_new_rating_key() {
    let h = Harness::new().await;
    // The show was re-added to the library: same guid, old rating key.
    let existing: i32 = h
        .db.client().await
        .query_one(
            "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title)
             VALUES ($1, '31000', 'plex://show/5d9c086c46115600200aa2fe', 'The Office') RETURNING id",
            &[&fixtures::server_uuid()],
        )
        .await
        .unwrap()
        .get(0);
    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["mappingId"], existing);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, String>(1), "48200");
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_show));
}

#[tokio::test]
async fn ignore_resolves_and_keeps_the_show_from_syncing() {
    let h = Harness::new().await;
    let resp = h.resolve(h.got, json!({"action": "ignore"})).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["action"], "ignore");
    assert_eq!(body["tvshowId"], Value::Null);
    assert_eq!(body["replay"]["pending"], 0);
    h.assert_resolved(h.got, "ignored", None).await;
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, String>(1), "1199");
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), None);
    assert!(!mappings[0].get::<_, bool>(6), "sync off");
    assert_eq!(
        h.resolve(h.got, json!({"action": "ignore"})).await.status(),
        409
    );
}

#[tokio::test]
async fn concurrent_resolves_succeed_once() {
    let h = Harness::new().await;
    let a = h.resolve(
        h.office,
        json!({"action": "select", "tvshowId": h.office_show}),
    );
    let b = h.resolve(h.office, json!({"action": "ignore"}));
    let (a, b) = tokio::join!(a, b);
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(h.mappings().await.len(), 1);
}

#[tokio::test]
async fn unknown_ids_shows_and_bad_bodies_change_nothing() {
    let h = Harness::new().await;
    let office = h.office.to_string();
    let cases: Vec<(String, Body, u16, &str)> = vec![
        (
            "999999".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            404,
            "conflict 999999",
        ),
        (
            "abc".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            400,
            "positive integer",
        ),
        (
            "-1".into(),
            Body::from(json!({"action": "ignore"}).to_string()),
            400,
            "positive integer",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": 424242}).to_string()),
            422,
            "tvshow 424242",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select"}).to_string()),
            422,
            "tvshowId is required",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": 0}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "select", "tvshowId": "7"}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(json!({"tvshowId": 7}).to_string()),
            400,
            "action",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "merge"}).to_string()),
            400,
            "action",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "ignore", "reason": "dupe", "note": 1}).to_string()),
            400,
            "note, reason",
        ),
        (
            office.clone(),
            Body::from(json!({"action": "ignore", "tvshowId": 3}).to_string()),
            400,
            "tvshowId",
        ),
        (
            office.clone(),
            Body::from(
                json!({"action": "create_new", "createNew": {"tmdbId": 2316, "x": 1}}).to_string(),
            ),
            400,
            "createNew",
        ),
        (office.clone(), Body::from("not json"), 400, "JSON"),
        (office.clone(), Body::Empty, 400, "empty"),
        (
            office.clone(),
            Body::from(format!(
                "{{\"action\":\"ignore\",\"pad\":\"{}\"}}",
                "z".repeat(70_000)
            )),
            413,
            "larger",
        ),
    ];
    for (id, body, status, word) in cases {
        let resp = h
            .call(request(
                "POST",
                &format!("/api/plex/conflicts/{id}/resolve"),
                Some(API_TOKEN),
                body,
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{id}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{word}: {j}");
    }
    assert!(
        !h.conflict_row(h.office).await.get::<_, bool>(0),
        "still open"
    );
    assert!(h.mappings().await.is_empty());
}
