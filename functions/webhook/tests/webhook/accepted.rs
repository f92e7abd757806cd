//! Realistic Plex payloads: what reaches the queue (body, group id, dedup id), or that nothing does.

use plexsync::{
    payload::{EventKind, ItemKind},
    testing::fixtures,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::*;

/// The FIFO dedup id as docs/architecture.md ("Exactly once") defines it, computed independently of
/// `QueueMessage`: hash of (server, account, event, item ratingKey).
fn expected_dedup(server: &str, account: i64, event: &str, rating_key: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{server}\0{account}\0{event}\0{rating_key}").as_bytes(),
    ))
}

fn assert_accepted(resp: &lambda_http::Response<lambda_http::Body>) {
    assert_eq!(resp.status().as_u16(), 202, "{}", body_json(resp));
    assert_eq!(body_json(resp), json!({"status": "accepted"}));
}

fn assert_ignored(resp: &lambda_http::Response<lambda_http::Body>, reason_contains: &str) {
    let json = body_json(resp);
    assert_eq!(resp.status().as_u16(), 200, "{json}");
    assert_eq!(json["status"], "ignored", "{json}");
    let reason = json["reason"].as_str().expect("reason");
    assert!(reason.contains(reason_contains), "{reason}");
}

#[tokio::test]
async fn new_agent_episode_scrobble_with_thumb_is_queued_under_the_show() {
    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    let resp = h.call(Event::plex(h.query(), &payload).request()).await;
    assert_accepted(&resp);

    let got = h.received().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(r.group_id, format!("{}:48200", fixtures::server_uuid()));
    assert_eq!(
        r.dedup_id,
        expected_dedup(fixtures::server_uuid(), 1, "media.scrobble", "48213")
    );
    let m = &r.message;
    assert_eq!(m.version, 1);
    assert_eq!(m.raw, payload, "the raw payload is kept for the log");
    assert!(!m.raw_truncated);
    assert_eq!(m.source_ip.as_deref(), Some(PLEX_IP));
    assert!(m
        .request_id
        .as_deref()
        .is_some_and(|id| id.starts_with('Q')));
    let e = &m.event;
    assert_eq!((e.kind, e.item), (EventKind::Scrobble, ItemKind::Episode));
    assert_eq!(e.show.rating_key, "48200");
    assert_eq!(e.show.title, "The Office");
    assert_eq!(
        e.show.guid.as_deref(),
        Some("plex://show/5d9c086c46115600200aa2fe")
    );
    // The episode's Guid array must not leak into the show's identity.
    assert!(e.show.ids.is_empty(), "{:?}", e.show.ids);
    let ep = e.episode.as_ref().expect("episode");
    assert_eq!((ep.season, ep.number), (1, 1));
    assert_eq!(
        (ep.ids.tmdb, ep.ids.tvdb, ep.ids.imdb.as_deref()),
        (Some(397627), Some(110413), Some("tt0664521"))
    );
    assert_eq!(e.account.id, Some(1));
    assert!(e.account.is_webhook_user);
    assert_eq!(e.viewed_at.map(|t| t.timestamp()), Some(1764339000));
}

#[tokio::test]
async fn legacy_tvdb_episode_as_plain_json_carries_the_show_id() {
    let h = harness().await;
    let payload = fixtures::plex_legacy_episode_scrobble();
    assert_accepted(&h.call(Event::json(h.query(), &payload).request()).await);

    let got = h.received().await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    let server = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d";
    assert_eq!(r.group_id, format!("{server}:1199"));
    assert_eq!(
        r.dedup_id,
        expected_dedup(server, 1, "media.scrobble", "1201")
    );
    let e = &r.message.event;
    assert_eq!(e.show.title, "Game of Thrones");
    assert_eq!(e.show.ids.tvdb, Some(121361));
    assert_eq!(
        e.episode.as_ref().map(|ep| (ep.season, ep.number)),
        Some((1, 1))
    );
    assert_eq!(r.message.raw, payload);
}

#[tokio::test]
async fn library_new_show_is_queued_with_the_show_ids() {
    let h = harness().await;
    let payload = fixtures::plex_library_new_show();
    assert_accepted(&h.call(Event::plex(h.query(), &payload).request()).await);

    let got = h.received().await;
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.group_id, format!("{}:51000", fixtures::server_uuid()));
    assert_eq!(
        r.dedup_id,
        expected_dedup(fixtures::server_uuid(), 1, "library.new", "51000")
    );
    let e = &r.message.event;
    assert_eq!((e.kind, e.item), (EventKind::LibraryNew, ItemKind::Show));
    assert_eq!(e.show.ids.tmdb, Some(2316));
    assert_eq!(e.show.year, Some(2005));
    assert!(e.episode.is_none());
}

#[tokio::test]
async fn movie_scrobble_is_ignored_and_nothing_is_queued() {
    let h = harness().await;
    let resp = h
        .call(Event::plex(h.query(), &fixtures::plex_movie_scrobble()).request())
        .await;
    assert_ignored(&resp, "movie");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn playback_events_are_ignored_and_nothing_is_queued() {
    let h = harness().await;
    for event in ["media.play", "media.pause", "media.resume", "media.stop"] {
        let payload = fixtures::with_event(fixtures::plex_episode_scrobble(), event);
        let resp = h.call(Event::plex(h.query(), &payload).request()).await;
        assert_ignored(&resp, event);
    }
    h.assert_queue_empty().await;
}

/// A show Plex could not match (`local://` guids, no `Guid` array) is queued like any other:
/// the processor matches it by title and asks the user.
#[tokio::test]
async fn unmatched_local_show_scrobble_is_queued() {
    let h = harness().await;
    let payload = fixtures::plex_unmatched_episode_scrobble();
    assert_accepted(&h.call(Event::plex(h.query(), &payload).request()).await);
    let got = h.received().await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].group_id,
        format!("{}:61000", fixtures::server_uuid())
    );
    let e = &got[0].message.event;
    assert_eq!(e.kind, EventKind::Scrobble);
    assert_eq!(e.show.title, "The Office");
    assert_eq!(e.show.guid.as_deref(), Some("local://61000"));
    assert!(e.show.ids.is_empty());
    assert_eq!(
        e.episode.as_ref().map(|ep| (ep.season, ep.number)),
        Some((1, 2))
    );
    assert_eq!(got[0].message.raw, payload);
}

#[tokio::test]
async fn non_owner_play_is_ignored_and_their_scrobble_is_queued_flagged_for_the_processor() {
    let h = harness().await;
    let play = fixtures::with_event(fixtures::plex_other_account_scrobble(), "media.play");
    assert_ignored(
        &h.call(Event::plex(h.query(), &play).request()).await,
        "media.play",
    );
    h.assert_queue_empty().await;

    // A household member's scrobble is valid: ingest queues it with the `user` flag, and the
    // processor's account gate decides (docs/architecture.md, "Whose play is it").
    let scrobble = fixtures::plex_other_account_scrobble();
    assert_accepted(&h.call(Event::plex(h.query(), &scrobble).request()).await);
    let got = h.received().await;
    assert_eq!(got.len(), 1);
    let e = &got[0].message.event;
    assert!(!e.account.is_webhook_user);
    assert_eq!(e.account.id, Some(2));
    assert_eq!(e.account.title.as_deref(), Some("bob"));
    assert_eq!(
        got[0].dedup_id,
        expected_dedup(fixtures::server_uuid(), 2, "media.scrobble", "48213")
    );
}

#[tokio::test]
async fn two_identical_scrobbles_make_one_message() {
    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble();
    for _ in 0..2 {
        assert_accepted(&h.call(Event::plex(h.query(), &payload).request()).await);
    }
    let got = h.received().await;
    assert_eq!(got.len(), 1, "FIFO dedup keeps one: {got:#?}");
    assert_eq!(got[0].message.event.item_rating_key, "48213");
}

#[tokio::test]
async fn next_episode_is_a_second_message_in_the_same_group_in_order() {
    let h = harness().await;
    let first = fixtures::plex_episode_scrobble();
    let mut second = fixtures::plex_episode_scrobble();
    second["Metadata"]["ratingKey"] = "48214".into();
    second["Metadata"]["index"] = 2.into();
    second["Metadata"]["title"] = "Diversity Day".into();
    for p in [&first, &second] {
        assert_accepted(&h.call(Event::plex(h.query(), p).request()).await);
    }
    let got = h.received().await;
    let keys: Vec<_> = got
        .iter()
        .map(|r| r.message.event.item_rating_key.as_str())
        .collect();
    assert_eq!(keys, ["48213", "48214"]);
    assert_eq!(got[0].group_id, got[1].group_id);
    assert_ne!(got[0].dedup_id, got[1].dedup_id);
}

#[tokio::test]
async fn thumb_before_payload_and_no_thumb_both_parse() {
    let h = harness().await;
    let payload = fixtures::plex_episode_scrobble().to_string();
    let (ct, body) = multipart_parts(&[
        ("thumb", Some("image/jpeg"), JPEG),
        ("payload", None, payload.as_bytes()),
    ]);
    assert_accepted(
        &h.call(Event::new(h.query(), Some(&ct), body).request())
            .await,
    );
    let legacy = fixtures::plex_legacy_episode_scrobble().to_string();
    let (ct, body) = multipart(&legacy, false);
    assert_accepted(
        &h.call(Event::new(h.query(), Some(&ct), body).request())
            .await,
    );
    let got = h.received().await;
    assert_eq!(got.len(), 2);
}

#[tokio::test]
async fn local_cargo_lambda_watch_request_is_accepted() {
    // Under `cargo lambda watch` the source is 127.0.0.1 and a JSON body arrives as text.
    let h = harness_with(Options {
        allowed_cidrs: "127.0.0.1/32, ::1/128",
        ..Options::default()
    })
    .await;
    let payload = fixtures::plex_episode_scrobble();
    let resp = h
        .call(Event::json(h.query(), &payload).from("127.0.0.1").request())
        .await;
    assert_accepted(&resp);
    let got = h.received().await;
    assert_eq!(got[0].message.source_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn huge_payload_keeps_the_event_and_truncates_the_raw_copy() {
    let h = harness().await;
    let mut payload: Value = fixtures::plex_episode_scrobble();
    // 300 KiB of summary: over the SQS limit as a raw copy, still under our 1 MiB body bound.
    payload["Metadata"]["summary"] = "x".repeat(300 * 1024).into();
    assert_accepted(&h.call(Event::plex(h.query(), &payload).request()).await);
    let got = h.received().await;
    assert_eq!(got.len(), 1);
    assert!(got[0].message.raw_truncated);
    assert_eq!(got[0].message.event.show.title, "The Office");
}
