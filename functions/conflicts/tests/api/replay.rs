//! What a resolution does with the conflict's pending scrobbles: select replays and marks them,
//! create_new adds the show from TMDB first; failures keep the events pending.

use lambda_http::{Body, Response};
use plexsync::{api::testing::json, testing::fixtures};
use serde_json::{json, Value};
use wiremock::{
    matchers::{method, path},
    Mock, ResponseTemplate,
};

use crate::support::*;

impl Harness {
    /// (replayed_at set) per pending event of the conflict, in id order.
    async fn pending_replayed(&self, conflict: i32) -> Vec<bool> {
        self.db.client().await
            .query(
                "SELECT replayed_at IS NOT NULL FROM plex_pending_events WHERE conflict_id = $1 ORDER BY id",
                &[&conflict],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn logs(&self) -> Vec<(String, Option<String>, Option<i32>)> {
        self.db
            .client()
            .await
            .query(
                "SELECT status, action_taken, tvshow_id FROM plex_webhook_logs ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }

    async fn stub_tmdb(&self, at: &str, status: u16, body: Value) {
        Mock::given(method("GET"))
            .and(path(at))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .mount(&self.tmdb)
            .await;
    }

    /// Resolves `conflict` with create_new from TMDB show `tmdb_id`.
    async fn create_new(&self, conflict: impl std::fmt::Display, tmdb_id: i64) -> Response<Body> {
        self.resolve(
            conflict,
            json!({"action": "create_new", "createNew": {"tmdbId": tmdb_id}}),
        )
        .await
    }

    /// Empties The Office's seasons, so marking an episode needs TMDB's season.
    async fn empty_office_seasons(&self) {
        self.db
            .client()
            .await
            .execute(
                "UPDATE tvshows SET seasons = '[]' WHERE id = $1",
                &[&self.office_show],
            )
            .await
            .unwrap();
    }

    async fn show_count(&self) -> i64 {
        self.db
            .client()
            .await
            .query_one("SELECT count(*) FROM tvshows", &[])
            .await
            .unwrap()
            .get(0)
    }
}

fn episode(seasons: &Value, season: i64, number: i64) -> Value {
    seasons
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seasonNumber"] == season)
        .unwrap()["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["episodeNumber"] == number)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn select_replays_pending_scrobbles_and_marks_the_episodes() {
    let h = Harness::new().await;
    // S01E02 was already watched by hand: its date must survive the replay.
    let mut seasons = office_seasons();
    seasons[0]["episodes"][1]["watched"] = json!(true);
    seasons[0]["episodes"][1]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    h.db.client()
        .await
        .execute(
            "UPDATE tvshows SET seasons = $2, watched_episodes = 1 WHERE id = $1",
            &[&h.office_show, &seasons],
        )
        .await
        .unwrap();

    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["pending"], 2, "{body}");
    assert_eq!(replay["replayed"], 2);
    assert_eq!(replay["marked"], 1);
    assert_eq!(replay["alreadyWatched"], 1);
    assert_eq!(replay["failed"], 0);
    assert_eq!(replay["stillPending"], 0);
    assert_eq!(replay["markedEpisodes"], json!(["S01E01"]));
    let events = replay["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["status"], "success");
    assert_eq!(events[0]["action"], "marked_watched");
    assert_eq!(
        (events[0]["season"].clone(), events[0]["episode"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(events[1]["action"], "already_watched");
    assert_eq!(replay["note"], Value::Null);

    let seasons = h.seasons(h.office_show).await;
    let pilot = episode(&seasons, 1, 1);
    assert_eq!(pilot["watched"], true);
    assert_eq!(pilot["dateWatched"], fixture_viewed_at().as_str());
    let diversity = episode(&seasons, 1, 2);
    assert_eq!(diversity["dateWatched"], "2019-05-01T20:00:00.000Z");
    assert_eq!(episode(&seasons, 1, 3)["watched"], false);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
    // The processor logged each replay, against the selected show.
    let logs = h.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(logs
        .iter()
        .all(|(status, _, show)| status == "success" && *show == Some(h.office_show)));
    assert_eq!(logs[0].1.as_deref(), Some("marked_watched"));
    // Nothing calls TMDB when the show's seasons already hold the episodes.
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_transient_failure_hands_the_events_to_the_queue() {
    let h = Harness::new().await;
    // The show's seasons are empty, so marking needs TMDB's season 1, and TMDB is down.
    h.empty_office_seasons().await;
    h.stub_tmdb(
        "/3/tv/2316/season/1",
        503,
        json!({"status_code": 11, "status_message": "Internal error."}),
    )
    .await;
    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200, "the resolution itself stands");
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["replayed"], 0, "{body}");
    assert_eq!(replay["queued"], 2);
    assert_eq!(replay["stillPending"], 0);
    assert_eq!(replay["marked"], 0);
    let events = replay["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["status"] == "queued"));
    let note = replay["note"].as_str().unwrap();
    assert!(
        note.contains("2 event(s)") && note.contains("TMDB") && note.contains("queue"),
        "{note}"
    );
    // Handed to the processor, in order and in the show's group; the failed attempt wrote
    // nothing.
    let queued = h.drain_queue().await;
    assert_eq!(queued.len(), 2);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
    assert!(h.logs().await.is_empty());
    assert_eq!(h.seasons(h.office_show).await, json!([]));
    assert!(h.conflict_row(h.office).await.get::<_, bool>(0));
}

#[tokio::test]
async fn create_new_creates_the_show_from_tmdb_maps_it_and_replays() {
    let h = Harness::new().await;
    // The tracker does not have The Office (US) yet.
    h.db.client()
        .await
        .execute("DELETE FROM tvshows WHERE id = $1", &[&h.office_show])
        .await
        .unwrap();
    h.stub_tmdb("/3/tv/2316", 200, fixtures::tmdb_the_office())
        .await;
    h.stub_tmdb(
        "/3/tv/2316/season/1",
        200,
        fixtures::tmdb_the_office_season_1(),
    )
    .await;
    let mut season_2 = fixtures::tmdb_the_office_season_1();
    season_2["season_number"] = json!(2);
    season_2["id"] = json!(3628);
    season_2["episodes"] = json!([
        {"id": 397633, "episode_number": 1, "season_number": 2, "name": "The Dundies", "air_date": "2005-09-20"},
        {"id": 397634, "episode_number": 2, "season_number": 2, "name": "Sexual Harassment", "air_date": "2005-09-27"}
    ]);
    h.stub_tmdb("/3/tv/2316/season/2", 200, season_2).await;
    // Specials listed but not served: skipped, not fatal.
    h.stub_tmdb("/3/tv/2316/season/0", 404, json!({"status_code": 34, "status_message": "The resource you requested could not be found."}))
        .await;

    let resp = h.create_new(h.office, 2316).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["action"], "create_new");
    let created = &body["createdShow"];
    assert_eq!(created["created"], true, "{body}");
    assert_eq!(created["tmdbId"], 2316);
    assert_eq!(created["title"], "The Office");
    let new_id = created["tvshowId"].as_i64().unwrap() as i32;
    assert_ne!(new_id, h.office_show);
    assert_eq!(body["tvshowId"], new_id);

    let row = h
        .db
        .client()
        .await
        .query_one(
            "SELECT tmdb_id, title, show_start_date::text, source, total_episodes, watched_episodes
               FROM tvshows WHERE id = $1",
            &[&new_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<i32>>(0), Some(2316));
    assert_eq!(row.get::<_, String>(1), "The Office");
    assert_eq!(
        row.get::<_, Option<String>>(2).as_deref(),
        Some("2005-03-24")
    );
    assert_eq!(row.get::<_, String>(3), "plex");
    assert_eq!(row.get::<_, i32>(4), 8);
    assert_eq!(row.get::<_, i32>(5), 2, "both pending scrobbles marked");

    h.assert_resolved(h.office, "user_created_new", Some(new_id))
        .await;
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(body["mappingId"], mappings[0].get::<_, i32>(0));
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(new_id));
    assert_eq!(
        mappings[0].get::<_, Option<String>>(3).as_deref(),
        Some("user_created_new")
    );
    assert_eq!(mappings[0].get::<_, Option<i32>>(7), Some(2316));

    assert_eq!(body["replay"]["marked"], 2, "{body}");
    assert_eq!(
        body["replay"]["markedEpisodes"],
        json!(["S01E01", "S01E02"])
    );
    let seasons = h.seasons(new_id).await;
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        fixture_viewed_at().as_str()
    );
    assert_eq!(episode(&seasons, 1, 2)["watched"], true);
    assert_eq!(episode(&seasons, 2, 1)["watched"], false);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
}

#[tokio::test]
async fn create_new_uses_the_tracker_show_that_has_the_tmdb_id() {
    let h = Harness::new().await;
    let resp = h.create_new(h.office, 2316).await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["createdShow"]["created"], false);
    assert_eq!(body["createdShow"]["tvshowId"], h.office_show);
    assert_eq!(body["tvshowId"], h.office_show);
    assert_eq!(body["replay"]["marked"], 2);
    assert_eq!(h.show_count().await, 2, "no show added");
    assert!(
        h.tmdb.received_requests().await.unwrap().is_empty(),
        "TMDB not needed"
    );
    assert_eq!(
        h.conflict_row(h.office)
            .await
            .get::<_, Option<String>>(1)
            .as_deref(),
        Some("user_created_new")
    );
}

#[tokio::test]
async fn create_new_errors_leave_the_conflict_open() {
    let h = Harness::new().await;
    h.stub_tmdb("/3/tv/99999999", 404, json!({"status_code": 34, "status_message": "The resource you requested could not be found."}))
        .await;
    h.stub_tmdb(
        "/3/tv/1399",
        500,
        json!({"status_code": 11, "status_message": "Internal error."}),
    )
    .await;
    let before = h.show_count().await;

    let resp = h.create_new(h.office, 99999999).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(json(&resp)["message"], "TMDB has no show 99999999");

    let resp = h.create_new(h.office, 1399).await;
    assert_eq!(resp.status(), 502);
    let j = json(&resp);
    assert_eq!(j["error"], "bad_gateway");
    assert!(j["message"].as_str().unwrap().contains("TMDB"), "{j}");

    // An id the tracker's int4 column cannot hold is no show either (and costs no call).
    let resp = h.create_new(h.office, 9_999_999_999i64).await;
    assert_eq!(resp.status(), 422);

    assert_eq!(
        h.resolve(h.office, json!({"action": "create_new"}))
            .await
            .status(),
        422
    );
    assert_eq!(h.create_new(999999, 2316).await.status(), 404);
    h.resolve(h.got, json!({"action": "ignore"})).await;
    let requests = h.tmdb.received_requests().await.unwrap().len();
    assert_eq!(h.create_new(h.got, 1399).await.status(), 409);
    assert_eq!(
        h.tmdb.received_requests().await.unwrap().len(),
        requests,
        "a resolved conflict costs no TMDB call"
    );
    assert!(
        !h.conflict_row(h.office).await.get::<_, bool>(0),
        "still open"
    );
    assert_eq!(h.show_count().await, before);
    assert!(h
        .mappings()
        .await
        .iter()
        .all(|m| m.get::<_, String>(1) != "48200"));
    assert_eq!(h.pending_replayed(h.office).await, vec![false, false]);
}

/// The function's real start-up path (`State::from_env`, as `main` runs it) with only secret
/// ids in its environment, against moto and Postgres: the pool reaches the database the secret
/// names, the API token comes from Secrets Manager, and the TMDB token read from its secret is
/// what TMDB receives when the replay refreshes a season.
#[tokio::test]
async fn the_function_starts_from_its_environment_and_replays() {
    let mut h = Harness::new().await;
    h.empty_office_seasons().await;
    let tmdb_token = "eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiJmcm9tLXNlY3JldHMifQ.c2ln";
    Mock::given(method("GET"))
        .and(path("/3/tv/2316/season/1"))
        .and(wiremock::matchers::header(
            "authorization",
            format!("Bearer {tmdb_token}").as_str(),
        ))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixtures::tmdb_the_office_season_1()),
        )
        .mount(&h.tmdb)
        .await;
    let sdk = plexsync::testing::moto_config().await;
    let secret = |value: String| {
        let sdk = &sdk;
        async move { plexsync::testing::secret(sdk, &value).await }
    };
    let url_id = secret(secrecy::ExposeSecret::expose_secret(&h.db.url).to_string()).await;
    let api_token_id = secret(plexsync::api::testing::API_TOKEN.to_string()).await;
    let tmdb_token_id = secret(tmdb_token.to_string()).await;
    let key_id = secret(plexsync::crypto::generate_key_hex()).await;
    let tmdb_url = h.tmdb.uri();
    let queue_url = h.state.queue.url.clone();
    let env = plexsync::env::Env::from_map([
        ("DATABASE_URL_SECRET_ID", url_id.as_str()),
        ("API_TOKEN_SECRET_ID", api_token_id.as_str()),
        ("TMDB_API_TOKEN_SECRET_ID", tmdb_token_id.as_str()),
        ("TMDB_BASE_URL", tmdb_url.as_str()),
        ("ENCRYPTION_KEY_SECRET_ID", key_id.as_str()),
        ("QUEUE_URL", queue_url.as_str()),
    ])
    .with_secrets(&plexsync::api::testing::secrets_cache(&sdk))
    .await
    .unwrap();
    h.state = conflicts::State::from_env(&env, &sdk).expect("the conflicts state builds");

    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(
        body["replay"]["markedEpisodes"],
        json!(["S01E01", "S01E02"]),
        "{body}"
    );
    let seasons = h.seasons(h.office_show).await;
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        fixture_viewed_at().as_str()
    );
    assert_eq!(h.tmdb.received_requests().await.unwrap().len(), 1);
}

impl Harness {
    /// Takes every message off the resolution's queue: (group id, body).
    async fn drain_queue(&self) -> Vec<(String, String)> {
        let queue = &self.state.queue;
        let mut taken = Vec::new();
        loop {
            let out = queue
                .sqs
                .receive_message()
                .queue_url(&queue.url)
                .max_number_of_messages(10)
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await
                .unwrap();
            if out.messages().is_empty() {
                return taken;
            }
            for m in out.messages() {
                let group = m
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_default();
                taken.push((group, m.body().unwrap_or_default().to_string()));
                queue
                    .sqs
                    .delete_message()
                    .queue_url(&queue.url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn events_the_replay_has_no_time_for_go_to_the_queue_and_are_marked_from_there() {
    let mut h = Harness::new().await;
    h.state.replay_budget = std::time::Duration::ZERO;

    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200, "the resolution stands");
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["replayed"], 0, "{body}");
    assert_eq!(replay["queued"], 2);
    assert_eq!(replay["stillPending"], 0);
    let events = replay["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["status"] == "queued"), "{body}");
    assert_eq!(
        (events[1]["season"].clone(), events[1]["episode"].clone()),
        (json!(1), json!(2))
    );
    assert!(replay["note"].as_str().unwrap().contains("queue"), "{body}");
    // Handed over, so never replayed twice from here; nothing marked yet.
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
    assert!(h.logs().await.is_empty());

    // On the queue in the show's group, as the webhook would have queued them; the processor
    // marks them with their own view dates.
    let queued = h.drain_queue().await;
    assert_eq!(queued.len(), 2, "{queued:?}");
    for (i, (group, message)) in queued.iter().enumerate() {
        assert_eq!(group, &format!("{}:48200", fixtures::server_uuid()));
        let outcome = plexsync::pipeline::process_body(
            &h.state.pipeline,
            message,
            &format!("queued-{i}"),
            Some(1),
        )
        .await
        .expect("processed");
        assert_eq!(
            outcome.action.as_deref(),
            Some("marked_watched"),
            "{outcome:?}"
        );
    }
    let seasons = h.seasons(h.office_show).await;
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        fixture_viewed_at().as_str()
    );
    assert_eq!(episode(&seasons, 1, 2)["watched"], true);
}

#[tokio::test]
async fn an_event_still_replaying_at_the_deadline_goes_to_the_queue_with_the_rest() {
    let mut h = Harness::new().await;
    // Marking needs TMDB's season 1 (the show's seasons are empty), and TMDB hangs.
    h.empty_office_seasons().await;
    Mock::given(method("GET"))
        .and(path("/3/tv/2316/season/1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_delay(std::time::Duration::from_secs(30))
                .set_body_json(fixtures::tmdb_the_office_season_1()),
        )
        .mount(&h.tmdb)
        .await;
    h.state.replay_budget = std::time::Duration::from_secs(1);

    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["replay"]["queued"], 2, "{body}");
    assert_eq!(body["replay"]["replayed"], 0);
    assert_eq!(h.drain_queue().await.len(), 2);
    assert_eq!(h.pending_replayed(h.office).await, vec![true, true]);
    // The cut replay wrote nothing: the queued copy is the one that will mark.
    assert!(h.logs().await.is_empty());
    assert_eq!(h.seasons(h.office_show).await, json!([]));
}

#[tokio::test]
async fn events_the_queue_does_not_take_stay_pending() {
    let mut h = Harness::new().await;
    h.state.replay_budget = std::time::Duration::ZERO;
    h.state.queue.url = format!("{}-gone", h.state.queue.url);

    let resp = h.select_office().await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    let replay = &body["replay"];
    assert_eq!(replay["queued"], 0, "{body}");
    assert_eq!(replay["stillPending"], 2);
    assert!(replay["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "pending"));
    assert!(
        replay["note"]
            .as_str()
            .unwrap()
            .contains("could not be queued"),
        "{body}"
    );
    // Not lost: still waiting, un-replayed, for a replay of their log entries.
    assert_eq!(h.pending_replayed(h.office).await, vec![false, false]);
}
