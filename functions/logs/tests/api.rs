//! `logs` handler against real Postgres and moto (Secrets Manager, SQS FIFO).

use chrono::{DateTime, Duration, Utc};
use lambda_http::{Body, Request, Response};
use logs::handle;
use plexsync::{
    api::testing::{authed, json, request, text},
    queue::QueueMessage,
    testing::fixtures,
};
use serde_json::{json, Value};

mod support;

use support::Harness;

impl Harness {
    async fn call(&self, req: Request) -> Response<Body> {
        handle(&self.state, req).await
    }

    async fn get(&self, uri: &str) -> Response<Body> {
        self.call(authed("GET", uri, None)).await
    }

    /// A log row as the processor writes it.
    async fn log(
        &self,
        status: &str,
        payload: Value,
        created_at: DateTime<Utc>,
        duration: i32,
    ) -> i64 {
        let title = payload["Metadata"]["grandparentTitle"]
            .as_str()
            .or(payload["Metadata"]["title"].as_str())
            .map(str::to_owned);
        let event = payload["event"].as_str().unwrap_or("unknown").to_string();
        let (error, action) = match status {
            "failed" => (Some("TMDB unavailable after 3 attempts"), None),
            "success" => (None, Some("marked S01E01 watched")),
            _ => (None, None),
        };
        self.db.client().await
            .query_one(
                "INSERT INTO plex_webhook_logs
                        (message_id, event_type, plex_rating_key, plex_title, plex_season, plex_episode,
                         payload, status, error_message, processing_duration_ms, action_taken, created_at)
                 VALUES ('b1e2c3d4-0000-4000-8000-000000000001', $1, '48213', $2, 1, 1, $3, $4, $5, $6, $7, $8)
                 RETURNING id",
                &[&event, &title, &payload, &status, &error, &duration, &action, &created_at],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn conflict(&self, rating_key: &str, resolved: bool) {
        self.db.client().await
            .execute(
                "INSERT INTO plex_conflicts (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                        conflict_type, resolved, resolved_at, resolution_action)
                 VALUES ($3, $1, 'plex://show/x', 'The Office',
                         'multiple_matches', $2, CASE WHEN $2 THEN now() END,
                         CASE WHEN $2 THEN 'ignored' END)",
                &[&rating_key, &resolved, &fixtures::server_uuid()],
            )
            .await
            .unwrap();
    }

    async fn received(&self) -> Vec<QueueMessage> {
        let out = self
            .state
            .sqs
            .receive_message()
            .queue_url(&self.state.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        out.messages()
            .iter()
            .map(|m| QueueMessage::from_body(m.body().unwrap()).unwrap())
            .collect()
    }
}

#[tokio::test]
async fn logs_are_listed_newest_first_in_the_documented_shape() {
    let h = Harness::new().await;
    let now = Utc::now();
    let old = h
        .log(
            "success",
            fixtures::plex_episode_scrobble(),
            now - Duration::minutes(5),
            120,
        )
        .await;
    let new = h
        .log("failed", fixtures::plex_episode_scrobble(), now, 900)
        .await;
    let resp = h.get("/api/plex/logs").await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0]["id"], new);
    assert_eq!(logs[1]["id"], old);
    let first = &logs[0];
    assert_eq!(first["eventType"], "media.scrobble");
    assert_eq!(first["plexTitle"], "The Office");
    assert_eq!(first["status"], "failed");
    assert_eq!(first["errorMessage"], "TMDB unavailable after 3 attempts");
    assert_eq!(first["processingDurationMs"], 900);
    assert_eq!(logs[1]["actionTaken"], "marked S01E01 watched");
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        first.get("payload").is_none(),
        "payloads stay out of the list"
    );
    assert_eq!(body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn status_filter_is_applied_and_validated() {
    let h = Harness::new().await;
    let now = Utc::now();
    for (i, status) in ["success", "failed", "ignored", "failed", "needs_resolution"]
        .iter()
        .enumerate()
    {
        h.log(
            status,
            fixtures::plex_episode_scrobble(),
            now - Duration::seconds(i as i64),
            10,
        )
        .await;
    }
    let body = json(&h.get("/api/plex/logs?status=failed").await);
    let logs = body["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l["status"] == "failed"));
    let body = json(&h.get("/api/plex/logs?status=needs_resolution").await);
    assert_eq!(body["logs"].as_array().unwrap().len(), 1);
    for bad in ["bogus", "SUCCESS", "success'--"] {
        let resp = h.get(&format!("/api/plex/logs?status={bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert!(json(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("duplicate"));
    }
}

#[tokio::test]
async fn cursor_pagination_walks_every_row_once() {
    let h = Harness::new().await;
    let t = Utc::now();
    let mut ids = Vec::new();
    // Two rows share a timestamp: the id breaks the tie.
    for offset in [0, 0, 1, 2, 3] {
        ids.push(
            h.log(
                "success",
                fixtures::plex_episode_scrobble(),
                t - Duration::seconds(offset),
                5,
            )
            .await,
        );
    }
    let mut seen = Vec::new();
    let mut uri = "/api/plex/logs?limit=2".to_string();
    let mut pages = 0;
    loop {
        let body = json(&h.get(&uri).await);
        let logs = body["logs"].as_array().unwrap();
        assert!(logs.len() <= 2);
        seen.extend(logs.iter().map(|l| l["id"].as_i64().unwrap()));
        pages += 1;
        match body["nextCursor"].as_str() {
            Some(c) => uri = format!("/api/plex/logs?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected = vec![ids[1], ids[0], ids[2], ids[3], ids[4]];
    assert_eq!(
        seen, expected,
        "newest first, ties by id (desc), no row twice"
    );

    // Filter and cursor together.
    h.log(
        "failed",
        fixtures::plex_episode_scrobble(),
        t - Duration::seconds(10),
        5,
    )
    .await;
    let body = json(&h.get("/api/plex/logs?status=success&limit=4").await);
    assert_eq!(body["logs"].as_array().unwrap().len(), 4);
    let cursor = body["nextCursor"].as_str().unwrap();
    let body = json(
        &h.get(&format!(
            "/api/plex/logs?status=success&limit=4&cursor={cursor}"
        ))
        .await,
    );
    assert_eq!(body["logs"].as_array().unwrap().len(), 1);
    assert_eq!(body["nextCursor"], Value::Null);
}

#[tokio::test]
async fn bad_limits_and_cursors_are_400_and_large_limits_are_capped() {
    let h = Harness::new().await;
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "cursor=not-a-cursor",
        "cursor=eyJ4Ijp0cnVlfQ",
    ] {
        let resp = h.get(&format!("/api/plex/logs?{bad}")).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(json(&resp)["status"], "error");
    }
    let t = Utc::now();
    for i in 0..3 {
        h.log(
            "success",
            fixtures::plex_episode_scrobble(),
            t - Duration::seconds(i),
            5,
        )
        .await;
    }
    let body = json(&h.get("/api/plex/logs?limit=100000").await);
    assert_eq!(body["logs"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn stats_are_per_day_for_seven_days_with_open_conflicts() {
    let h = Harness::new().await;
    let now = Utc::now();
    let today = now.date_naive();
    // Midday today/yesterday in UTC, so the test does not depend on the time of day.
    let noon = |days_ago: i64| {
        (today - Duration::days(days_ago))
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .min(now)
    };
    h.log("success", fixtures::plex_episode_scrobble(), noon(0), 100)
        .await;
    h.log("success", fixtures::plex_episode_scrobble(), noon(0), 300)
        .await;
    h.log("failed", fixtures::plex_episode_scrobble(), noon(0), 200)
        .await;
    h.log("ignored", fixtures::plex_movie_scrobble(), noon(0), 2)
        .await;
    h.log("success", fixtures::plex_episode_scrobble(), noon(1), 50)
        .await;
    h.log("success", fixtures::plex_episode_scrobble(), noon(10), 50)
        .await;
    h.conflict("48200", false).await;
    h.conflict("1199", false).await;
    h.conflict("777", true).await;

    let resp = h.get("/api/plex/stats").await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["openConflicts"], 2);
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[0]["date"], today.to_string());
    assert_eq!(days[0]["totalWebhooks"], 4);
    assert_eq!(days[0]["successful"], 2);
    assert_eq!(days[0]["failed"], 1);
    assert_eq!(days[0]["avgDuration"].as_f64().unwrap(), 150.5);
    assert_eq!(days[1]["date"], (today - Duration::days(1)).to_string());
    assert_eq!(days[1]["totalWebhooks"], 1);
    assert_eq!(days[6]["totalWebhooks"], 0);
    assert_eq!(days[6]["avgDuration"], Value::Null);
    let total: i64 = days
        .iter()
        .map(|d| d["totalWebhooks"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 5, "the 10-day-old entry is outside the window");
}

#[tokio::test]
async fn replay_re_enqueues_the_stored_payload() {
    let h = Harness::new().await;
    let id = h
        .log("failed", fixtures::plex_episode_scrobble(), Utc::now(), 40)
        .await;
    let resp = h
        .call(authed("POST", &format!("/api/plex/logs/{id}/replay"), None))
        .await;
    assert_eq!(resp.status(), 202, "{}", text(&resp));
    let body = json(&resp);
    assert_eq!(body["success"], true);
    assert_eq!(body["logId"], id);
    assert_eq!(body["eventType"], "media.scrobble");
    assert_eq!(body["plexTitle"], "The Office");
    assert!(body["messageId"].as_str().is_some());
    let received = h.received().await;
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert_eq!(
        m.request_id.as_deref(),
        Some(format!("replay:{id}").as_str())
    );
    assert_eq!(m.event.show.rating_key, "48200");
    assert_eq!(m.event.episode.as_ref().unwrap().number, 1);
    assert_eq!(m.raw, fixtures::plex_episode_scrobble());
}

#[tokio::test]
async fn replay_rejects_bad_unknown_and_unprocessable_entries() {
    let h = Harness::new().await;
    let movie = h
        .log("ignored", fixtures::plex_movie_scrobble(), Utc::now(), 1)
        .await;
    let truncated = h
        .log(
            "failed",
            json!({"truncated": true, "bytes": 400000}),
            Utc::now(),
            1,
        )
        .await;
    let pause = h
        .log(
            "ignored",
            fixtures::with_event(fixtures::plex_episode_scrobble(), "media.pause"),
            Utc::now(),
            1,
        )
        .await;
    for id in [movie, truncated, pause] {
        let resp = h
            .call(authed("POST", &format!("/api/plex/logs/{id}/replay"), None))
            .await;
        assert_eq!(resp.status(), 422, "{id}");
        assert!(json(&resp)["message"]
            .as_str()
            .unwrap()
            .contains("not a processable event"));
    }
    let resp = h
        .call(authed("POST", "/api/plex/logs/999999/replay", None))
        .await;
    assert_eq!(resp.status(), 404);
    for bad in ["abc", "0", "-5", "1.5"] {
        let resp = h
            .call(authed(
                "POST",
                &format!("/api/plex/logs/{bad}/replay"),
                None,
            ))
            .await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(json(&resp)["status"], "error");
    }
    assert!(h.received().await.is_empty(), "nothing enqueued");
}

#[tokio::test]
async fn every_route_needs_the_api_token() {
    let h = Harness::new().await;
    let id = h
        .log("failed", fixtures::plex_episode_scrobble(), Utc::now(), 40)
        .await;
    for (m, p) in plexsync::api::routes::LOGS {
        let uri = p.replace("{id}", &id.to_string());
        for auth in [None, Some("wrong-token")] {
            let resp = h.call(request(m, &uri, auth, Body::Empty)).await;
            assert_eq!(resp.status(), 401, "{m} {uri} {auth:?}");
            assert_eq!(json(&resp)["error"], "unauthorized");
        }
    }
    assert!(
        h.received().await.is_empty(),
        "an unauthorised replay enqueued nothing"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let h = Harness::new().await;
    let resp = h.call(authed("DELETE", "/api/plex/logs", None)).await;
    assert_eq!(resp.status(), 405);
    let resp = h.call(authed("GET", "/api/plex/logs/1/replay", None)).await;
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let resp = h.get("/api/plex/logs/1").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(&resp)["status"], "error");
}
