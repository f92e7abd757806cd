//! Bad input: each a JSON error with the right status, no panic, and nothing queued.

use plexsync::testing::fixtures;

use crate::support::*;

#[tokio::test]
async fn body_that_is_neither_multipart_nor_json_is_400() {
    let h = harness().await;
    let cases = [
        (Some("text/plain"), b"hello from a script".to_vec()),
        (
            Some("application/x-www-form-urlencoded"),
            b"payload=%7B%22event%22%3A%22media.scrobble%22%7D".to_vec(),
        ),
        (None, b"event=media.scrobble".to_vec()),
    ];
    for (ct, body) in cases {
        let resp = h.call(Event::new(h.query(), ct, body).request()).await;
        let msg = assert_error(&resp, 400, "bad_request");
        assert!(msg.contains("content type"), "{msg}");
        assert!(msg.contains("multipart/form-data"), "{msg}");
    }
    let resp = h
        .call(Event::new(h.query(), Some("application/json"), vec![]).request())
        .await;
    assert!(assert_error(&resp, 400, "bad_request").contains("empty"));
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn multipart_problems_are_400() {
    let h = harness().await;
    // Only a thumb, no payload field.
    let (ct, body) = multipart_parts(&[("thumb", Some("image/jpeg"), JPEG)]);
    let resp = h
        .call(Event::new(h.query(), Some(&ct), body).request())
        .await;
    let msg = assert_error(&resp, 400, "bad_request");
    assert!(msg.contains("no payload field"), "{msg}");

    // Multipart without a boundary parameter.
    let (_, body) = multipart(&fixtures::plex_episode_scrobble().to_string(), true);
    let resp = h
        .call(Event::new(h.query(), Some("multipart/form-data"), body).request())
        .await;
    assert!(assert_error(&resp, 400, "bad_request").contains("multipart"));

    // A body that claims to be multipart but is not.
    let resp = h
        .call(
            Event::new(
                h.query(),
                Some("multipart/form-data; boundary=abc"),
                b"{\"event\":\"media.scrobble\"}".to_vec(),
            )
            .request(),
        )
        .await;
    assert!(assert_error(&resp, 400, "bad_request").contains("multipart"));
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn payload_that_is_not_json_is_400() {
    let h = harness().await;
    let (ct, body) = multipart("event=media.scrobble&user=true", true);
    let resp = h
        .call(Event::new(h.query(), Some(&ct), body).request())
        .await;
    let msg = assert_error(&resp, 400, "bad_request");
    assert!(msg.contains("not valid JSON"), "{msg}");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_400_naming_the_field() {
    let h = harness().await;
    let mut no_title = fixtures::plex_episode_scrobble();
    no_title["Metadata"]
        .as_object_mut()
        .unwrap()
        .remove("grandparentTitle");
    let mut bad_index = fixtures::plex_episode_scrobble();
    bad_index["Metadata"]["index"] = "one".into();
    let mut no_season = fixtures::plex_episode_scrobble();
    no_season["Metadata"]
        .as_object_mut()
        .unwrap()
        .remove("parentIndex");
    let mut no_metadata = fixtures::plex_episode_scrobble();
    no_metadata.as_object_mut().unwrap().remove("Metadata");
    let cases = [
        (serde_json::json!([1, 2, 3]), "JSON object"),
        (serde_json::json!({"user": true}), "event"),
        (serde_json::json!({"event": 5}), "event"),
        (no_title, "Metadata.grandparentTitle"),
        (bad_index, "Metadata.index"),
        (no_season, "Metadata.parentIndex"),
        (no_metadata, "Metadata"),
    ];
    for (payload, field) in cases {
        for event in [
            Event::plex(h.query(), &payload),
            Event::json(h.query(), &payload),
        ] {
            let resp = h.call(event.request()).await;
            let msg = assert_error(&resp, 400, "bad_request");
            assert!(msg.contains(field), "{payload}: {msg}");
        }
    }
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn two_mebibyte_body_is_413() {
    let h = harness().await;
    let mut payload = fixtures::plex_episode_scrobble();
    payload["Metadata"]["summary"] = "x".repeat(2 * 1024 * 1024).into();
    let resp = h.call(Event::plex(h.query(), &payload).request()).await;
    let msg = assert_error(&resp, 413, "payload_too_large");
    assert!(msg.contains("1048576"), "{msg}");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_stack_overflow() {
    let h = harness().await;
    let deep = format!(
        "{{\"event\":\"media.scrobble\",\"x\":{}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let resp = h
        .call(Event::new(h.query(), Some("application/json"), deep.into_bytes()).request())
        .await;
    assert!(assert_error(&resp, 400, "bad_request").contains("nested"));
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn other_routes_and_methods_are_404() {
    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    let mut get = Event::plex(h.query(), &payload);
    get.method = "GET";
    assert_error(&h.call(get.request()).await, 404, "not_found");
    let mut other = Event::plex(h.query(), &payload);
    other.path = "/api/plex/config";
    assert_error(&h.call(other.request()).await, 404, "not_found");
    h.assert_queue_empty().await;
}
