//! `POST /api/plex/import` and `GET /api/plex/import`: what starts an import, what is queued,
//! and every way a start is refused.

use plexsync::{
    api::testing::{json, request, API_TOKEN},
    queue::QueueBody,
    testing::fixtures,
};
use serde_json::{json, Value};
use wiremock::{matchers::method, Mock, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn start_queues_one_message_per_watched_show_in_its_scrobbles_group() {
    let h = Harness::new().await;
    assert_eq!(h.latest().await, Value::Null);
    let (status, body) = h.start(None).await;
    assert_eq!(status, 202, "{body}");
    let import = &body["import"];
    assert_eq!(import["status"], "running");
    assert_eq!(import["sections"], json!([]));
    assert_eq!(import["watchedSince"], Value::Null);
    assert_eq!(import["finishedAt"], Value::Null);
    assert_eq!(import["error"], Value::Null);
    assert_eq!(
        import["counts"],
        json!({"showsTotal": 4, "showsDone": 0, "mapped": 0, "autoAdded": 0, "conflicts": 0,
               "failed": 0, "episodesMarked": 0, "alreadyWatched": 0})
    );
    assert_eq!(h.latest().await, *import);

    // Each batch is deleted once read, as the event source does after the processor: a
    // message left in flight is visible again after the queue's 2 s visibility timeout, and a
    // slow (loaded) run read it twice.
    let sqs = aws_sdk_sqs::Client::new(&h.sdk);
    let mut received = Vec::new();
    loop {
        let batch = h.receive().await;
        if batch.is_empty() {
            break;
        }
        for (_, receipt) in &batch {
            sqs.delete_message()
                .queue_url(&h.queue_url)
                .receipt_handle(receipt)
                .send()
                .await
                .unwrap();
        }
        received.extend(batch);
    }
    let mut shows: Vec<(String, String)> = received
        .iter()
        .map(|(r, _)| {
            let QueueBody::ImportShow(m) = QueueBody::parse(r.body.as_deref().unwrap()).unwrap()
            else {
                panic!("not an import message")
            };
            assert_eq!(m.import_id, import["id"].as_i64().unwrap() as i32);
            assert_eq!(r.attributes["MessageGroupId"], m.group_id());
            (
                m.show.rating_key.clone(),
                r.attributes["MessageGroupId"].clone(),
            )
        })
        .collect();
    shows.sort();
    // The unwatched show and the movie section are not queued; each show in its own group.
    let uuid = fixtures::server_uuid();
    assert_eq!(
        shows,
        [GOT, OFFICE, OFFICE_UK, UNMATCHED]
            .iter()
            .map(|k| (k.to_string(), format!("{uuid}:{k}")))
            .collect::<Vec<_>>()
    );
    // The same group as a scrobble of that show.
    let msg =
        plexsync::testing::plex_message(fixtures::plex_episode_scrobble(), chrono::Utc::now());
    assert_eq!(msg.group_id(), format!("{uuid}:{OFFICE}"));
}

#[tokio::test]
async fn sections_and_date_narrow_the_import() {
    let h = Harness::new().await;
    let (status, body) = h
        .start(Some(
            json!({"sections": ["5"], "watchedSince": "2017-01-01"}),
        ))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["import"]["sections"], json!(["5"]));
    assert_eq!(body["import"]["watchedSince"], "2017-01-01");
    // Game of Thrones (section 5) was last watched in 2023: one show.
    assert_eq!(body["import"]["counts"]["showsTotal"], 1);
    assert_eq!(h.receive().await.len(), 1);
}

#[tokio::test]
async fn a_second_start_while_one_runs_is_409() {
    let h = Harness::new().await;
    assert_eq!(h.start(None).await.0, 202);
    let (status, body) = h.start(None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "conflict");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("already running"));
}

#[tokio::test]
async fn of_two_starts_at_once_one_runs_and_the_other_is_409() {
    let h = Harness::new().await;
    let (a, b) = tokio::join!(h.start(None), h.start(None));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let imports = h.query("SELECT count(*) FROM plex_imports").await;
    assert_eq!(imports[0].get::<_, i64>(0), 1);
    let mut queued = 0;
    loop {
        let batch = h.receive().await.len();
        if batch == 0 {
            break;
        }
        queued += batch;
    }
    assert_eq!(queued, 4, "only the running import queued its shows");
}

#[tokio::test]
async fn bad_input_is_400_and_queues_nothing() {
    let h = Harness::new().await;
    for (body, needle) in [
        (json!({"sections": []}), "at least one"),
        (json!({"sections": ["../1"]}), "section keys"),
        (json!({"sections": [2]}), "sections"),
        (json!({"watchedSince": "yesterday"}), "watchedSince"),
        (json!({"watchedSince": "2999-01-01"}), "future"),
        (json!({"since": "2020-01-01"}), "unknown field"),
        (json!({"sections": ["1"]}), "not a TV section"),
        (json!({"sections": ["9"]}), "does not exist"),
    ] {
        let (status, resp) = h.start(Some(body.clone())).await;
        assert_eq!(status, 400, "{body}: {resp}");
        assert!(
            resp["message"].as_str().unwrap().contains(needle),
            "{body}: {resp}"
        );
    }
    assert!(h.receive().await.is_empty());
    assert_eq!(h.latest().await, Value::Null);
}

#[tokio::test]
async fn settings_that_forbid_an_import_are_422_and_an_unreachable_server_502() {
    let h = Harness::new().await;
    let c = h.db.client().await;
    c.execute("UPDATE plex_config SET auto_mark_watched = false", &[])
        .await
        .unwrap();
    let (status, body) = h.start(None).await;
    assert_eq!(
        (
            status,
            body["message"].as_str().unwrap().contains("auto-mark")
        ),
        (422, true)
    );
    c.execute(
        "UPDATE plex_config SET auto_mark_watched = true, plex_server_url = NULL",
        &[],
    )
    .await
    .unwrap();
    let (status, body) = h.start(None).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("no Plex server"));
    c.execute(
        "UPDATE plex_config SET plex_server_url = 'http://127.0.0.1:1'",
        &[],
    )
    .await
    .unwrap();
    let (status, body) = h.start(None).await;
    assert_eq!(status, 502, "{body}");
    assert!(body["message"].as_str().unwrap().contains("unreachable"));
    assert!(!body.to_string().contains(PLEX_TOKEN));
    c.execute("DELETE FROM plex_config", &[]).await.unwrap();
    let (status, body) = h.start(None).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not configured"));
    assert_eq!(h.latest().await, Value::Null);
}

#[tokio::test]
async fn a_rejected_token_is_422_and_the_api_needs_the_api_token() {
    let h = Harness::new().await;
    h.plex.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&h.plex)
        .await;
    let (status, body) = h.start(None).await;
    assert_eq!(status, 422, "{body}");
    for (m, auth) in [("GET", None), ("POST", Some("wrong"))] {
        let resp = h
            .call(request(
                m,
                "/api/plex/import",
                auth,
                lambda_http::Body::Empty,
            ))
            .await;
        assert_eq!(resp.status(), 401, "{m}");
    }
    let resp = h
        .call(request(
            "PUT",
            "/api/plex/import",
            Some(API_TOKEN),
            lambda_http::Body::Empty,
        ))
        .await;
    assert_eq!(resp.status(), 405);
    assert_eq!(json(&resp)["error"], "method_not_allowed");
}
