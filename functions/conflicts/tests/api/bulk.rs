//! `POST /api/plex/conflicts/bulk`: accepting the top candidate above a threshold, ignoring a
//! list; each conflict resolved and replayed like a single resolve, one result each.

use lambda_http::Body;
use plexsync::{
    api::testing::{authed, json, request, API_TOKEN},
    testing::fixtures,
};
use serde_json::{json, Value};

use crate::support::*;

impl Harness {
    async fn bulk(&self, body: Value) -> Value {
        let resp = self
            .call(authed("POST", "/api/plex/conflicts/bulk", Some(body)))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status(), 200, "{j}");
        j
    }

    /// Another open conflict on the fixture server, offering `matches`.
    async fn add_conflict(&self, rating_key: &str, title: &str, matches: Value) -> i32 {
        self.db.client().await
            .query_one(
                "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                        conflict_type, potential_matches)
                 VALUES ($1, $2, $3, $4, 'multiple_matches', $5) RETURNING id",
                &[
                    &fixtures::server_uuid(),
                    &rating_key,
                    &format!("plex://show/{rating_key}"),
                    &title,
                    &matches,
                ],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn set_matches(&self, conflict: i32, matches: Value) {
        self.db
            .client()
            .await
            .execute(
                "UPDATE plex_conflicts SET potential_matches = $2 WHERE id = $1",
                &[&conflict, &matches],
            )
            .await
            .unwrap();
    }

    /// The Office's season 1 episodes marked watched, by number.
    async fn watched_office_episodes(&self) -> Vec<i64> {
        let seasons = self.seasons(self.office_show).await;
        seasons[0]["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["watched"] == true)
            .map(|e| e["episodeNumber"].as_i64().unwrap())
            .collect()
    }

    async fn replayed_events(&self) -> i64 {
        self.db
            .client()
            .await
            .query_one(
                "SELECT count(*) FROM plex_pending_events WHERE replayed_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn resolved_breaking_bad(&self) -> i32 {
        self.db
            .client()
            .await
            .query_one(
                "SELECT id FROM plex_conflicts WHERE plex_title = 'Breaking Bad'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }
}

fn tracker(id: i32, tmdb: i64, score: f64) -> Value {
    json!({"tvshowId": id, "title": "The Office", "tmdbId": tmdb, "matchScore": score, "source": "title"})
}

/// Candidates: the tracker's The Office (US) and The Office (UK), with these scores.
fn us_and_uk(h: &Harness, us: f64, uk: f64) -> Value {
    json!([
        tracker(h.office_show, 2316, us),
        tracker(h.office_uk_show, 2996, uk)
    ])
}

#[tokio::test]
async fn accept_top_resolves_clear_winners_replays_them_and_leaves_ties_and_low_scores() {
    let h = Harness::new().await;
    // The Office (two pending scrobbles): the US show now clearly ahead.
    h.set_matches(h.office, us_and_uk(&h, 0.88, 0.6)).await;
    let tie = h
        .add_conflict("50001", "The Office", us_and_uk(&h, 0.85, 0.85))
        .await;
    let low = h
        .add_conflict(
            "50002",
            "The Office (UK)",
            json!([tracker(h.office_uk_show, 2996, 0.7)]),
        )
        .await;

    let body = h
        .bulk(json!({"action": "accept_top", "minScore": 0.8}))
        .await;
    // Game of Thrones (no candidates) and the low score are not this request's business.
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{body}");
    let office = &results[0];
    assert_eq!(office["id"], h.office);
    assert_eq!(office["status"], "resolved");
    assert_eq!(office["action"], "select");
    assert_eq!(office["tvshowId"], h.office_show);
    assert_eq!(
        office["replay"],
        json!({"pending": 2, "marked": 2, "alreadyWatched": 0, "failed": 0, "stillPending": 0, "queued": 0})
    );
    assert!(office["mappingId"].as_i64().is_some());
    assert_eq!(results[1]["id"], tie);
    assert_eq!(results[1]["status"], "skipped");
    assert!(
        results[1]["message"]
            .as_str()
            .unwrap()
            .contains("share the best score"),
        "{body}"
    );
    assert_eq!(
        body["summary"],
        json!({"resolved": 1, "ignored": 0, "skipped": 1, "error": 0, "notProcessed": 0})
    );

    // The database: The Office resolved and mapped by hand, both scrobbles marked and replayed.
    h.assert_resolved(h.office, "user_selected", Some(h.office_show))
        .await;
    assert_eq!(h.watched_office_episodes().await, vec![1, 2]);
    assert_eq!(h.replayed_events().await, 2);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_show));
    assert_eq!(
        mappings[0].get::<_, Option<String>>(3).as_deref(),
        Some("manual")
    );
    for open in [tie, low, h.got] {
        assert!(
            !h.conflict_row(open).await.get::<_, bool>(0),
            "{open} still open"
        );
    }

    // Again: nothing left above the threshold; nothing is marked twice.
    let again = h
        .bulk(json!({"action": "accept_top", "minScore": 0.8}))
        .await;
    assert_eq!(again["summary"]["resolved"], 0, "{again}");
    assert_eq!(h.replayed_events().await, 2);
}

#[tokio::test]
async fn accept_top_of_a_tmdb_candidate_creates_the_show_as_create_new_would() {
    let h = Harness::new().await;
    // The only candidate is TMDB's entry for a show the tracker has already: used, not fetched.
    h.set_matches(
        h.office,
        json!([{"tvshowId": null, "title": "The Office", "tmdbId": 2316, "matchScore": 0.9, "source": "tmdb"}]),
    )
    .await;
    let body = h
        .bulk(json!({"action": "accept_top", "minScore": 0.9, "ids": [h.office]}))
        .await;
    let office = &body["results"][0];
    assert_eq!(office["status"], "resolved", "{body}");
    assert_eq!(office["action"], "create_new");
    assert_eq!(office["tvshowId"], h.office_show);
    assert_eq!(office["createdShow"]["created"], false);
    assert_eq!(office["replay"]["marked"], 2);
    let row = h.conflict_row(h.office).await;
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("user_created_new")
    );
    assert_eq!(h.watched_office_episodes().await, vec![1, 2]);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn accept_top_with_ids_reports_every_id() {
    let h = Harness::new().await;
    let bb = h.resolved_breaking_bad().await;
    // The fixture's Office conflict is a tie (US and UK at 0.85); GoT has no candidate.
    let body = h
        .bulk(
            json!({"action": "accept_top", "minScore": 0.9, "ids": [h.office, h.got, bb, 999999]}),
        )
        .await;
    let r = body["results"].as_array().unwrap();
    assert_eq!(r.len(), 4, "{body}");
    assert_eq!(r[0]["status"], "skipped");
    assert!(
        r[0]["message"].as_str().unwrap().contains("below 0.9"),
        "{body}"
    );
    assert_eq!(r[1]["status"], "skipped");
    assert_eq!(r[1]["message"], "no candidate to accept");
    assert_eq!(r[2]["status"], "error");
    assert_eq!(r[2]["error"], "conflict");
    assert_eq!(
        r[2]["message"],
        format!("conflict {bb} is already resolved")
    );
    assert_eq!(r[3]["error"], "not_found");
    assert!(!h.conflict_row(h.office).await.get::<_, bool>(0));
    assert!(h.mappings().await.is_empty());
}

#[tokio::test]
async fn ignore_resolves_each_listed_conflict_and_syncs_nothing() {
    let h = Harness::new().await;
    let bb = h.resolved_breaking_bad().await;
    let body = h
        .bulk(json!({"action": "ignore", "ids": [h.got, h.office, bb, 999999]}))
        .await;
    let r = body["results"].as_array().unwrap();
    assert_eq!(r.len(), 4, "{body}");
    for (item, id) in r[..2].iter().zip([h.got, h.office]) {
        assert_eq!(item["id"], id);
        assert_eq!(item["status"], "ignored", "{body}");
        assert_eq!(item["action"], "ignore");
        assert!(item.get("replay").is_none());
    }
    assert_eq!(r[2]["error"], "conflict");
    assert_eq!(r[3]["error"], "not_found");
    assert_eq!(
        body["summary"],
        json!({"resolved": 0, "ignored": 2, "skipped": 0, "error": 2, "notProcessed": 0})
    );
    for id in [h.got, h.office] {
        let row = h.conflict_row(id).await;
        assert!(row.get::<_, bool>(0));
        assert_eq!(row.get::<_, Option<String>>(1).as_deref(), Some("ignored"));
    }
    // Each show now has a mapping with sync off, so it raises no new conflict; nothing marked.
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 2);
    assert!(mappings.iter().all(|m| !m.get::<_, bool>(6)));
    assert!(h.watched_office_episodes().await.is_empty());
    assert_eq!(h.replayed_events().await, 0);
}

#[tokio::test]
async fn a_used_up_time_budget_leaves_the_rest_unprocessed_and_untouched() {
    let mut h = Harness::new().await;
    h.state.bulk_budget = std::time::Duration::ZERO;
    let body = h
        .bulk(json!({"action": "ignore", "ids": [h.got, h.office]}))
        .await;
    let r = body["results"].as_array().unwrap();
    assert!(r.iter().all(|i| i["status"] == "not_processed"), "{body}");
    assert!(r[0]["message"].as_str().unwrap().contains("send it again"));
    assert_eq!(body["summary"]["notProcessed"], 2);
    assert!(!h.conflict_row(h.got).await.get::<_, bool>(0));
    assert!(!h.conflict_row(h.office).await.get::<_, bool>(0));
    assert!(h.mappings().await.is_empty());
}

#[tokio::test]
async fn bad_bulk_bodies_are_rejected_and_change_nothing() {
    let h = Harness::new().await;
    let too_many: Vec<i64> = (1..=501).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"action": "ignore"}), 422, "ids is required"),
        (json!({"action": "ignore", "ids": []}), 422, "at least one"),
        (
            json!({"action": "ignore", "ids": [h.got], "minScore": 0.5}),
            400,
            "minScore",
        ),
        (
            json!({"action": "ignore", "ids": [h.got, -1]}),
            400,
            "positive",
        ),
        (
            json!({"action": "ignore", "ids": too_many}),
            400,
            "more than 500",
        ),
        (json!({"action": "ignore", "ids": "1,2"}), 400, "ids"),
        (json!({"action": "accept_top"}), 422, "minScore is required"),
        (
            json!({"action": "accept_top", "minScore": 0}),
            400,
            "minScore",
        ),
        (
            json!({"action": "accept_top", "minScore": 1.5}),
            400,
            "minScore",
        ),
        (
            json!({"action": "accept_top", "minScore": "0.8"}),
            400,
            "minScore",
        ),
        (json!({"action": "select", "ids": [h.got]}), 400, "action"),
        (
            json!({"action": "ignore", "ids": [h.got], "tvshowId": 1}),
            400,
            "tvshowId",
        ),
        (json!({"ids": [h.got]}), 400, "action"),
    ];
    for (body, status, word) in cases {
        let resp = h
            .call(authed(
                "POST",
                "/api/plex/conflicts/bulk",
                Some(body.clone()),
            ))
            .await;
        let j = json(&resp);
        assert_eq!(resp.status().as_u16(), status, "{body}: {j}");
        assert_eq!(j["status"], "error");
        assert!(j["message"].as_str().unwrap().contains(word), "{body}: {j}");
    }
    let resp = h
        .call(request(
            "POST",
            "/api/plex/conflicts/bulk",
            Some(API_TOKEN),
            Body::Empty,
        ))
        .await;
    assert_eq!(resp.status(), 400);
    assert!(!h.conflict_row(h.got).await.get::<_, bool>(0));
    assert!(h.mappings().await.is_empty());
}
