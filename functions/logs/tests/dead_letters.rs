//! `GET /api/plex/dead-letters` and `POST /api/plex/dead-letters/redrive` against moto: messages
//! reach the DLQ the way SQS moves them there (received maxReceiveCount times, never deleted),
//! and the processor's `failed` log row for them is in real Postgres.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName as Attr;
use lambda_http::{Body, Response};
use logs::handle;
use plexsync::{
    api::testing::{authed, json, request},
    queue::QueueMessage,
    testing::fixtures,
};
use serde_json::{json, Value};

mod support;

use support::Harness;

impl Harness {
    async fn call(&self, method: &str, uri: &str) -> Response<Body> {
        handle(&self.state, authed(method, uri, None)).await
    }

    /// Sends `body` to the queue and receives it without deleting it until SQS moves it to
    /// the DLQ (the redrive policy's maxReceiveCount is 5); returns its message id.
    async fn dead_letter(&self, body: &str, group: &str) -> String {
        let sqs = &self.state.sqs;
        let before = self.dlq_count().await;
        let id = sqs
            .send_message()
            .queue_url(&self.state.queue_url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(plexsync::testing::unique_suffix())
            .send()
            .await
            .unwrap()
            .message_id
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.dlq_count().await == before {
            assert!(Instant::now() < deadline, "{id} never reached the DLQ");
            sqs.receive_message()
                .queue_url(&self.state.queue_url)
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        id
    }

    async fn dlq_count(&self) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .state
            .sqs
            .get_queue_attributes()
            .queue_url(&self.state.dlq_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| attrs.get(a).map_or(0, |v| v.parse::<usize>().unwrap()))
        .sum()
    }

    /// The `failed` row the processor writes on a message's last receive.
    async fn failed_log(&self, message_id: &str, error: &str) -> i64 {
        self.db.client().await
            .query_one(
                "INSERT INTO plex_webhook_logs (message_id, event_type, payload, status, error_message,
                        receive_count)
                 VALUES ($1, 'media.scrobble', $2, 'failed', $3, 5) RETURNING id",
                &[&message_id, &fixtures::plex_episode_scrobble(), &error],
            )
            .await
            .unwrap()
            .get(0)
    }
}

fn scrobble() -> QueueMessage {
    plexsync::testing::plex_message(fixtures::plex_episode_scrobble(), chrono::Utc::now())
}

fn letters(body: &Value) -> Vec<Value> {
    body["deadLetters"].as_array().unwrap().clone()
}

#[tokio::test]
async fn dead_letters_are_listed_decoded_and_stay_until_redriven() {
    let h = Harness::new().await;
    let message = scrobble();
    let good = h.dead_letter(&message.to_body(), &message.group_id()).await;
    let bad = h.dead_letter(r#"{"version":1,"event":42}"#, "poison").await;
    let log_id = h
        .failed_log(
            &good,
            "gave up after 5 receives, moved to the dead-letter queue: TMDB 503",
        )
        .await;

    let resp = h.call("GET", "/api/plex/dead-letters").await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["approximateTotal"], 2);
    let listed = letters(&body);
    assert_eq!(listed.len(), 2, "{body}");
    let find = |id: &str| {
        listed
            .iter()
            .find(|l| l["messageId"] == id)
            .unwrap()
            .clone()
    };
    let g = find(&good);
    assert_eq!(g["groupId"], message.group_id().as_str());
    assert_eq!(g["event"]["eventType"], "media.scrobble");
    assert_eq!(g["event"]["plexTitle"], "The Office");
    assert_eq!(g["event"]["season"], 1);
    assert_eq!(g["event"]["episode"], 1);
    assert_eq!(g["unreadable"], Value::Null);
    assert_eq!(g["log"]["logId"], log_id);
    assert!(g["log"]["errorMessage"]
        .as_str()
        .unwrap()
        .contains("TMDB 503"));
    assert!(g["receiveCount"].as_u64().unwrap() >= 1);
    assert!(g["sentAt"].is_string());
    let b = find(&bad);
    assert_eq!(b["event"], Value::Null);
    assert_eq!(b["log"], Value::Null);
    assert_eq!(b["unreadable"]["body"], r#"{"version":1,"event":42}"#);
    assert!(b["unreadable"]["error"]
        .as_str()
        .unwrap()
        .contains("not valid"));

    // Listing is a peek: both are still there, at once listable again.
    assert_eq!(
        letters(&json(&h.call("GET", "/api/plex/dead-letters").await)).len(),
        2
    );
    assert_eq!(h.dlq_count().await, 2);

    let resp = h.call("POST", "/api/plex/dead-letters/redrive").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp), json!({"success": true, "moved": 2}));
    assert_eq!(h.dlq_count().await, 0);
    let empty = json(&h.call("GET", "/api/plex/dead-letters").await);
    assert_eq!(letters(&empty), Vec::<Value>::new());

    // Back on the queue: same bodies, same groups, fresh receive counts.
    let mut back = Vec::new();
    for _ in 0..5 {
        let out = h
            .state
            .sqs
            .receive_message()
            .queue_url(&h.state.queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(Attr::All)
            .send()
            .await
            .unwrap();
        back.extend(out.messages.unwrap_or_default());
        if back.len() == 2 {
            break;
        }
    }
    let mut got: Vec<(String, String, String)> = back
        .iter()
        .map(|m| {
            let a = m.attributes.as_ref().unwrap();
            (
                m.body.clone().unwrap(),
                a[&Attr::MessageGroupId].clone(),
                a[&Attr::ApproximateReceiveCount].clone(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (message.to_body(), message.group_id(), "1".to_string()),
        (
            r#"{"version":1,"event":42}"#.to_string(),
            "poison".to_string(),
            "1".to_string(),
        ),
    ];
    want.sort();
    assert_eq!(got, want);
    let decoded =
        QueueMessage::from_body(&got.iter().find(|g| g.1 != "poison").unwrap().0).unwrap();
    assert_eq!(decoded, message);
}

#[tokio::test]
async fn limits_are_validated_and_respected() {
    let h = Harness::new().await;
    for i in 0..3 {
        h.dead_letter(&format!(r#"{{"n":{i}}}"#), &format!("g{i}"))
            .await;
    }
    for bad in ["limit=0", "limit=101", "limit=x"] {
        for method in ["GET", "POST"] {
            let uri = if method == "GET" {
                format!("/api/plex/dead-letters?{bad}")
            } else {
                format!("/api/plex/dead-letters/redrive?{bad}")
            };
            let resp = h.call(method, &uri).await;
            assert_eq!(resp.status(), 400, "{method} {bad}");
            assert_eq!(json(&resp)["status"], "error");
        }
    }
    assert_eq!(h.dlq_count().await, 3, "a rejected request moves nothing");
    let resp = h
        .call("POST", "/api/plex/dead-letters/redrive?limit=1")
        .await;
    assert_eq!(json(&resp)["moved"], 1);
    assert_eq!(h.dlq_count().await, 2);
    let body = json(&h.call("GET", "/api/plex/dead-letters?limit=1").await);
    assert_eq!(letters(&body).len(), 1);
    assert_eq!(body["approximateTotal"], 2);
}

#[tokio::test]
async fn the_token_is_required_and_an_unreachable_queue_is_503() {
    let mut h = Harness::new().await;
    for (method, uri) in [
        ("GET", "/api/plex/dead-letters"),
        ("POST", "/api/plex/dead-letters/redrive"),
    ] {
        let resp = handle(&h.state, request(method, uri, None, Body::Empty)).await;
        assert_eq!(resp.status(), 401, "{method} {uri}");
    }
    h.state.dlq_url = format!("{}-gone", h.state.dlq_url.trim_end_matches(".fifo"));
    for (method, uri) in [
        ("GET", "/api/plex/dead-letters"),
        ("POST", "/api/plex/dead-letters/redrive"),
    ] {
        let resp = h.call(method, uri).await;
        assert_eq!(resp.status(), 503, "{method} {uri}");
        let body = json(&resp);
        assert_eq!(body["status"], "error");
        assert!(
            !body["message"].as_str().unwrap().contains("gone"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn an_imported_show_in_the_dead_letter_queue_is_listed_as_that_show() {
    let h = Harness::new().await;
    let show = plexsync::payload::ShowRef {
        rating_key: "48200".into(),
        guid: Some("plex://show/5d9c086c46115600200aa2fe".into()),
        title: "The Office".into(),
        year: Some(2005),
        ids: Default::default(),
    };
    let message = plexsync::queue::ImportShowMessage::new(
        3,
        fixtures::server_uuid().into(),
        Some("basement-nas".into()),
        show,
        None,
    );
    let id = h.dead_letter(&message.to_body(), &message.group_id()).await;
    let resp = h.call("GET", "/api/plex/dead-letters").await;
    let body = json(&resp);
    let listed = letters(&body);
    let letter = listed
        .iter()
        .find(|l| l["messageId"] == id.as_str())
        .unwrap();
    assert_eq!(letter["unreadable"], Value::Null, "{letter}");
    assert_eq!(letter["event"]["eventType"], "import.show");
    assert_eq!(letter["event"]["plexTitle"], "The Office");
    assert_eq!(letter["event"]["plexRatingKey"], "48200");
    assert_eq!(letter["groupId"], message.group_id());
}
