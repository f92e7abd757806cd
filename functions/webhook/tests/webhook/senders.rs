//! Jellyfin and Emby through their own routes: the same guards as Plex, their own payload
//! shapes, and the one queue message.

use plexsync::{
    payload::{EventKind, ItemKind},
    senders::Sender,
    testing::fixtures,
};
use serde_json::{json, Value};

use crate::support::*;

fn jellyfin(h: &Harness, payload: &Value) -> Event {
    Event::json(h.query(), payload).to(Sender::Jellyfin)
}

fn emby(h: &Harness, payload: &Value) -> Event {
    Event::json(h.query(), payload).to(Sender::Emby)
}

fn assert_status(resp: &lambda_http::Response<lambda_http::Body>, status: u16) -> Value {
    let json = body_json(resp);
    assert_eq!(resp.status().as_u16(), status, "{json}");
    json
}

#[tokio::test]
async fn jellyfin_playback_stop_is_queued_under_its_series_with_episode_ids_only() {
    let h = harness().await;
    let payload = fixtures::jellyfin_playback_stop();
    let resp = h.send(jellyfin(&h, &payload)).await;
    assert_eq!(assert_status(&resp, 202), json!({"status": "accepted"}));

    let got = h.received().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let r = &got[0];
    assert_eq!(
        r.group_id,
        "jellyfin:f3a9c1d2e4b5467890abcdef12345678:a4d5b6c7-d8e9-4f01-9234-56789abcdef0"
    );
    let m = &r.message;
    assert_eq!(
        m.raw, payload,
        "the raw payload is kept for the log and replays"
    );
    let e = &m.event;
    assert_eq!(e.sender, Sender::Jellyfin);
    assert_eq!((e.kind, e.item), (EventKind::Scrobble, ItemKind::Episode));
    assert_eq!(e.show.title, "The Office");
    assert!(
        e.show.ids.is_empty(),
        "episode ids leaked: {:?}",
        e.show.ids
    );
    let ep = e.episode.as_ref().unwrap();
    assert_eq!((ep.season, ep.number), (1, 2));
    assert_eq!(
        (ep.ids.tmdb, ep.ids.tvdb, ep.ids.imdb.as_deref()),
        (Some(397628), Some(110414), Some("tt0664514"))
    );
    assert_eq!(e.account.title.as_deref(), Some("alice"));
    assert_eq!(
        e.account.uuid.as_deref(),
        Some("5f0c7a1e-3b2d-4c9a-8e7f-6d5c4b3a2910")
    );
}

#[tokio::test]
async fn jellyfin_stop_and_its_played_save_are_one_delivery() {
    let h = harness().await;
    h.accept(jellyfin(&h, &fixtures::jellyfin_playback_stop()))
        .await;
    h.accept(jellyfin(&h, &fixtures::jellyfin_user_data_saved()))
        .await;
    h.accept(jellyfin(&h, &fixtures::jellyfin_playback_stop()))
        .await;
    let got = h.received().await;
    assert_eq!(
        got.len(),
        1,
        "the queue's dedup window drops repeats: {got:#?}"
    );
}

#[tokio::test]
async fn emby_json_and_multipart_bodies_both_queue_and_repeats_are_dropped() {
    let h = harness().await;
    let payload = fixtures::emby_playback_stop();
    h.accept(Event::emby_multipart(h.query(), &payload)).await;
    h.accept(emby(&h, &payload)).await;
    h.accept(emby(&h, &fixtures::emby_mark_played())).await;

    let got = h.received().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let m = &got[0].message;
    assert_eq!(
        got[0].group_id,
        "emby:8c1e5b7a2d3f4e6a9b0c1d2e3f4a5b6c:2090"
    );
    assert_eq!(m.raw, payload);
    let e = &m.event;
    assert_eq!(e.sender, Sender::Emby);
    assert!(e.show.ids.is_empty());
    let ep = e.episode.as_ref().unwrap();
    assert_eq!((ep.season, ep.number, ep.ids.tvdb), (1, 3, Some(110415)));
}

#[tokio::test]
async fn movies_unfinished_plays_and_other_events_are_ignored() {
    let h = harness().await;
    let mut early = fixtures::jellyfin_playback_stop();
    early["PlayedToCompletion"] = false.into();
    let mut pause = fixtures::emby_playback_stop();
    pause["Event"] = "playback.pause".into();
    for (event, reason) in [
        (
            jellyfin(&h, &fixtures::jellyfin_movie_playback_stop()),
            "Movie",
        ),
        (jellyfin(&h, &early), "completion"),
        (emby(&h, &fixtures::emby_movie_playback_stop()), "Movie"),
        (emby(&h, &pause), "playback.pause"),
    ] {
        let json = assert_status(&h.send(event).await, 200);
        assert_eq!(json["status"], "ignored", "{json}");
        assert!(json["reason"].as_str().unwrap().contains(reason), "{json}");
    }
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn other_users_plays_are_queued_for_the_processors_account_filter() {
    // As for Plex, the filter needs the user's settings, which live in Postgres: the webhook
    // (which never touches the database) queues the play with who made it.
    let h = harness().await;
    h.accept(jellyfin(&h, &fixtures::jellyfin_other_user_playback_stop()))
        .await;
    h.accept(emby(&h, &fixtures::emby_other_user_playback_stop()))
        .await;
    let mut accounts: Vec<_> = h
        .received()
        .await
        .into_iter()
        .map(|r| {
            let a = r.message.event.account;
            (a.title.unwrap_or_default(), a.is_webhook_user)
        })
        .collect();
    accounts.sort();
    assert_eq!(
        accounts,
        [("bob".to_string(), false), ("bob".to_string(), false)]
    );
}

#[tokio::test]
async fn bad_or_missing_secret_is_401_on_every_sender_route() {
    let h = harness().await;
    for sender in [Sender::Jellyfin, Sender::Emby] {
        let payload = match sender {
            Sender::Jellyfin => fixtures::jellyfin_playback_stop(),
            _ => fixtures::emby_playback_stop(),
        };
        for query in [
            String::new(),
            "secret=wrong".to_string(),
            format!("secret={}x", h.secret),
        ] {
            let resp = h.send(Event::json(query, &payload).to(sender)).await;
            assert_error(&resp, 401, "unauthorized");
        }
    }
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_problem() {
    let h = harness().await;
    let mut no_series = fixtures::jellyfin_playback_stop();
    no_series.as_object_mut().unwrap().remove("SeriesName");
    let mut bad_number = fixtures::emby_playback_stop();
    bad_number["Item"]["IndexNumber"] = "three".into();
    let cases = [
        (jellyfin(&h, &no_series), "SeriesName"),
        (
            jellyfin(&h, &json!({"NotificationType": 3})),
            "NotificationType",
        ),
        // A Plex payload posted to the Jellyfin route is not a Jellyfin payload.
        (
            jellyfin(&h, &fixtures::plex_episode_scrobble()),
            "NotificationType",
        ),
        (emby(&h, &bad_number), "Item.IndexNumber"),
        (
            Event::new(
                h.query(),
                Some("application/json"),
                b"{\"Event\": ".to_vec(),
            )
            .to(Sender::Emby),
            "not valid JSON",
        ),
    ];
    for (event, mention) in cases {
        let msg = assert_error(&h.send(event).await, 400, "bad_request");
        assert!(msg.contains(mention), "{mention}: {msg}");
    }
    // Emby multipart without its `data` field.
    let (ct, body) = multipart_parts(&[("payload", None, b"{}")]);
    let resp = h
        .send(Event::new(h.query(), Some(&ct), body).to(Sender::Emby))
        .await;
    let msg = assert_error(&resp, 400, "bad_request");
    assert!(msg.contains("data"), "{msg}");
    h.assert_queue_empty().await;
}

#[tokio::test]
async fn allowlist_and_rate_limit_are_shared_by_every_sender() {
    let h = harness_with(Options {
        allowed_cidrs: "203.0.113.0/24",
        rate_limit: 2,
        ..Options::default()
    })
    .await;
    let resp = h
        .send(jellyfin(&h, &fixtures::jellyfin_playback_stop()))
        .await;
    assert_error(&resp, 403, "forbidden");

    let inside = "203.0.113.9";
    h.accept(Event::plex(h.query(), &fixtures::plex_episode_scrobble()).from(inside))
        .await;
    h.accept(jellyfin(&h, &fixtures::jellyfin_playback_stop()).from(inside))
        .await;
    // The third request from that address in the minute, on a third route, is refused.
    let resp = h
        .send(emby(&h, &fixtures::emby_playback_stop()).from(inside))
        .await;
    assert_error(&resp, 429, "rate_limited");
    let senders: Vec<_> = h
        .received()
        .await
        .into_iter()
        .map(|r| r.message.event.sender)
        .collect();
    assert_eq!(senders.len(), 2);
    assert!(senders.contains(&Sender::Plex) && senders.contains(&Sender::Jellyfin));
}

#[tokio::test]
async fn an_overlong_string_field_is_400_naming_it_for_every_sender() {
    let h = harness().await;
    let long = "x".repeat(plexsync::payload::MAX_FIELD_CHARS + 1);
    let mut plex_title = fixtures::plex_episode_scrobble();
    plex_title["Metadata"]["grandparentTitle"] = long.clone().into();
    let mut plex_guid = fixtures::plex_episode_scrobble();
    plex_guid["Metadata"]["Guid"][0]["id"] = format!("tvdb://{long}").into();
    let mut plex_account = fixtures::plex_episode_scrobble();
    plex_account["Account"]["title"] = long.clone().into();
    let mut jellyfin_series = fixtures::jellyfin_playback_stop();
    jellyfin_series["SeriesName"] = long.clone().into();
    let mut jellyfin_user = fixtures::jellyfin_playback_stop();
    jellyfin_user["NotificationUsername"] = long.clone().into();
    let mut emby_key = fixtures::emby_playback_stop();
    emby_key["Item"]["SeriesId"] = long.clone().into();
    let mut emby_provider = fixtures::emby_playback_stop();
    emby_provider["Item"]["ProviderIds"]["Tvdb"] = long.clone().into();
    let cases = [
        (
            Event::plex(h.query(), &plex_title),
            "Metadata.grandparentTitle",
        ),
        (Event::plex(h.query(), &plex_guid), "Metadata.Guid[0].id"),
        (Event::json(h.query(), &plex_account), "Account.title"),
        (jellyfin(&h, &jellyfin_series), "SeriesName"),
        (jellyfin(&h, &jellyfin_user), "NotificationUsername"),
        (emby(&h, &emby_key), "Item.SeriesId"),
        (emby(&h, &emby_provider), "Item.ProviderIds"),
    ];
    for (event, field) in cases {
        let msg = assert_error(&h.send(event).await, 400, "bad_request");
        assert!(
            msg.contains(&format!("{field} is longer than 512 characters")),
            "{field}: {msg}"
        );
        assert!(!msg.contains(&long), "the value is not echoed: {msg}");
    }
    // At the cap exactly (in characters, not bytes) the event is accepted.
    let mut at_cap = fixtures::plex_episode_scrobble();
    at_cap["Metadata"]["grandparentTitle"] = "é".repeat(512).into();
    h.accept(Event::plex(h.query(), &at_cap)).await;
    let got = h.received().await;
    assert_eq!(got.len(), 1, "only the event at the cap was queued");
    assert_eq!(got[0].message.event.show.title.chars().count(), 512);
}
