//! Jellyfin and Emby messages through the same pipeline as Plex: their own settings and
//! account filter, resolution through the episode ids, and a server identity that includes the
//! sender kind.

use plexsync::{
    ids::ShowId,
    payload::Decision,
    pipeline::{process_message, Outcome},
    queue::QueueMessage,
    senders::Sender,
    store::{
        conflicts::{self, Resolution},
        logs::LogStatus,
    },
    testing::{self, fixtures},
};
use serde_json::{json, Value};

use crate::support::*;

/// Settings of a Jellyfin or Emby edge (what `PUT /api/senders/{sender}` stores).
async fn configure_sender(h: &Harness, sender: Sender, account: &str, settings: Value) {
    let client = h.db.client().await;
    let flag = |k: &str| settings.get(k).and_then(Value::as_bool).unwrap_or(true);
    client
        .execute(
            "INSERT INTO media_senders (sender, account, enabled, auto_add_shows, allowed_accounts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id, sender) DO UPDATE
                SET account = $2, enabled = $3, auto_add_shows = $4, allowed_accounts = $5",
            &[
                &sender.as_str(),
                &account,
                &flag("enabled"),
                &flag("auto_add_shows"),
                &settings
                    .get("allowed_accounts")
                    .cloned()
                    .unwrap_or(json!([])),
            ],
        )
        .await
        .unwrap();
}

fn sender_message(sender: Sender, payload: &Value) -> QueueMessage {
    let (decision, raw) = sender.decide(payload.to_string().as_bytes()).unwrap();
    let Decision::Process(event) = decision else {
        panic!("the {sender} edge ignores this fixture")
    };
    QueueMessage::new(*event, raw, received_at(), None, Some("req-1".into()))
}

async fn process_as(h: &Harness, msg: &QueueMessage) -> Outcome {
    process_message(
        &h.state,
        msg,
        &format!("msg-{}", testing::unique_suffix()),
        Some(1),
    )
    .await
    .expect("no transient failure")
}

/// `GET /3/find/{id}` for The Office S01E`number` (by its episode id).
fn find_office_episode(number: usize) -> Value {
    let mut ep = fixtures::tmdb_the_office_season_1()["episodes"][number - 1].take();
    ep["media_type"] = json!("tv_episode");
    json!({"movie_results": [], "person_results": [], "tv_results": [], "tv_season_results": [],
           "tv_episode_results": [ep]})
}

async fn mapping_rows(h: &Harness) -> Vec<(String, String, String, Option<i32>)> {
    h.query(
        "SELECT sender, plex_server_uuid, plex_rating_key, tmdb_id FROM plex_show_mappings
          ORDER BY id",
    )
    .await
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test]
async fn jellyfin_new_show_is_added_through_the_episode_tvdb_id_and_marked() {
    let h = harness().await;
    configure_sender(&h, Sender::Jellyfin, "alice", json!({})).await;
    h.stub_find("110414", "tvdb_id", find_office_episode(2))
        .await;
    h.stub_get("/3/tv/2316", fixtures::tmdb_the_office()).await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;

    let msg = sender_message(Sender::Jellyfin, &fixtures::jellyfin_playback_stop());
    let outcome = process_as(&h, &msg).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        outcome.action.as_deref(),
        Some("auto_added_show_and_marked_watched")
    );
    let show = outcome.tvshow_id.unwrap().0;
    let seasons = h.seasons(show).await;
    assert_eq!(episode(&seasons, 1, 2)["watched"], true);
    assert_eq!(episode(&seasons, 1, 1)["watched"], false);
    assert_eq!(
        mapping_rows(&h).await,
        [(
            "jellyfin".to_string(),
            "f3a9c1d2e4b5467890abcdef12345678".to_string(),
            "a4d5b6c7-d8e9-4f01-9234-56789abcdef0".to_string(),
            Some(2316)
        )]
    );
    // The episode's ids were only ever looked up as an episode's.
    assert_eq!(h.tmdb_requests("/3/find/110414").await, 1);
    let log = h
        .query("SELECT sender, status FROM plex_webhook_logs")
        .await;
    assert_eq!(
        (log[0].get::<_, String>(0), log[0].get::<_, String>(1)),
        ("jellyfin".into(), "success".into())
    );
    // The receipt is known from the log; the settings row is not written per message.
    let client = h.db.client().await;
    let jellyfin = plexsync::store::senders::find(&client, Sender::Jellyfin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jellyfin.last_webhook_received, Some(msg.received_at));
}

#[tokio::test]
async fn emby_play_of_a_tracked_show_maps_and_marks_and_repeats_change_nothing() {
    let h = harness().await;
    configure_sender(&h, Sender::Emby, "alice", json!({})).await;
    h.stub_find("110415", "tvdb_id", find_office_episode(3))
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let msg = sender_message(Sender::Emby, &fixtures::emby_playback_stop());
    let outcome = process_as(&h, &msg).await;
    assert_eq!(
        (outcome.status, outcome.action.as_deref(), outcome.tvshow_id),
        (
            LogStatus::Success,
            Some("marked_watched"),
            Some(ShowId(office))
        )
    );
    let marked = h.seasons(office).await;
    assert_eq!(episode(&marked, 1, 3)["watched"], true);
    assert_eq!(
        episode(&marked, 1, 3)["dateWatched"],
        "2025-11-28T14:12:00.000Z"
    );
    let (tvshow, method, confidence, _) = mapping(&h).await;
    assert_eq!(
        (tvshow, method.as_str(), confidence),
        (Some(office), "tvdb_id", 0.95)
    );

    // The same message delivered again: a duplicate, nothing changes.
    let again = process_as(&h, &msg).await;
    assert_eq!(again.status, LogStatus::Duplicate, "{again:?}");
    // The later "mark played" of the same episode: the show is mapped now (no TMDB call) and
    // the date of the first play is kept.
    let marked_later = process_as(
        &h,
        &sender_message(Sender::Emby, &fixtures::emby_mark_played()),
    )
    .await;
    assert_eq!(marked_later.action.as_deref(), Some("already_watched"));
    assert_eq!(h.seasons(office).await, marked);
    assert_eq!(h.tmdb_requests("/3/find/110415").await, 1);
}

#[tokio::test]
async fn other_users_plays_are_ignored_unless_allowed() {
    let h = harness().await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    h.stub_find("110414", "tvdb_id", find_office_episode(2))
        .await;
    h.stub_find("110415", "tvdb_id", find_office_episode(3))
        .await;
    // alice named by user name on Jellyfin, by user id on Emby.
    configure_sender(&h, Sender::Jellyfin, "Alice", json!({})).await;
    configure_sender(
        &h,
        Sender::Emby,
        "d1e2f3a4b5c64d7e8f9a0b1c2d3e4f5a",
        json!({}),
    )
    .await;

    for (sender, payload) in [
        (
            Sender::Jellyfin,
            fixtures::jellyfin_other_user_playback_stop(),
        ),
        (Sender::Emby, fixtures::emby_other_user_playback_stop()),
    ] {
        let o = process_as(&h, &sender_message(sender, &payload)).await;
        assert_eq!(o.status, LogStatus::Ignored, "{sender}: {o:?}");
        assert!(o.reason.as_deref().unwrap().contains("bob"), "{o:?}");
    }
    assert_eq!(h.seasons(office).await, office_seasons());
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);

    // Bob allowed on Jellyfin (by name) counts there, not on Emby.
    configure_sender(
        &h,
        Sender::Jellyfin,
        "Alice",
        json!({"allowed_accounts": ["BOB"]}),
    )
    .await;
    let o = process_as(
        &h,
        &sender_message(
            Sender::Jellyfin,
            &fixtures::jellyfin_other_user_playback_stop(),
        ),
    )
    .await;
    assert_eq!(o.status, LogStatus::Success, "{o:?}");
    let o = process_as(
        &h,
        &sender_message(Sender::Emby, &fixtures::emby_other_user_playback_stop()),
    )
    .await;
    assert_eq!(o.status, LogStatus::Ignored);
    // alice's own Emby play, matched by her user id.
    let o = process_as(
        &h,
        &sender_message(Sender::Emby, &fixtures::emby_playback_stop()),
    )
    .await;
    assert_eq!(o.status, LogStatus::Success, "{o:?}");
    let seasons = h.seasons(office).await;
    assert_eq!(episode(&seasons, 1, 2)["watched"], true);
    assert_eq!(episode(&seasons, 1, 3)["watched"], true);
}

#[tokio::test]
async fn senders_without_settings_or_disabled_are_ignored_with_a_reason() {
    let h = harness().await;
    let jf = sender_message(Sender::Jellyfin, &fixtures::jellyfin_playback_stop());
    let o = process_as(&h, &jf).await;
    assert_eq!(
        (o.status, o.reason.as_deref()),
        (
            LogStatus::Ignored,
            Some("Jellyfin integration is not configured")
        )
    );
    configure_sender(&h, Sender::Emby, "alice", json!({"enabled": false})).await;
    let o = process_as(
        &h,
        &sender_message(Sender::Emby, &fixtures::emby_playback_stop()),
    )
    .await;
    assert_eq!(o.reason.as_deref(), Some("Emby integration is disabled"));
    // Plex's own settings say nothing about the other senders.
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_plex_show_and_a_jellyfin_show_with_the_same_ids_never_collide() {
    let h = harness().await;
    configure_sender(&h, Sender::Jellyfin, "alice", json!({})).await;
    h.stub_find("110414", "tvdb_id", find_office_episode(2))
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    // A Plex show whose server id and key happen to equal the Jellyfin ones, sync turned off.
    let mut payload = fixtures::jellyfin_playback_stop();
    payload["ServerId"] = fixtures::server_uuid().into();
    payload["SeriesId"] = "48200".into();
    h.query(&format!(
        "INSERT INTO plex_show_mappings (plex_server_uuid, plex_rating_key, plex_guid, plex_title,
                                         tvshow_id, sync_enabled)
         VALUES ('{}', '48200', 'plex://show/5d9c086c46115600200aa2fe', 'The Office', {office}, false)",
        fixtures::server_uuid()
    ))
    .await;

    let o = process_as(&h, &sender_message(Sender::Jellyfin, &payload)).await;
    assert_eq!(
        o.status,
        LogStatus::Success,
        "the Plex mapping must not apply: {o:?}"
    );
    let rows = mapping_rows(&h).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].0, "plex");
    assert_eq!(rows[1].0, "jellyfin");
    assert_eq!((&rows[0].1, &rows[0].2), (&rows[1].1, &rows[1].2));
}

#[tokio::test]
async fn a_jellyfin_conflict_resolves_into_a_jellyfin_mapping_and_replays() {
    let h = harness().await;
    configure_sender(
        &h,
        Sender::Jellyfin,
        "alice",
        json!({"auto_add_shows": false}),
    )
    .await;
    // Nothing resolves: no episode ids known to TMDB, no search results.
    let mut payload = fixtures::jellyfin_playback_stop();
    for key in ["Provider_tvdb", "Provider_imdb", "Provider_tmdb"] {
        payload.as_object_mut().unwrap().remove(key);
    }
    stub_search(
        &h,
        json!({"page": 1, "results": [], "total_pages": 0, "total_results": 0}),
    )
    .await;
    let o = process_as(&h, &sender_message(Sender::Jellyfin, &payload)).await;
    assert_eq!(o.status, LogStatus::NeedsResolution, "{o:?}");
    let conflict_id = o.conflict_id.unwrap();
    let sender: String = h.query("SELECT sender FROM plex_conflicts").await[0].get(0);
    assert_eq!(sender, "jellyfin");

    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let resolved = conflicts::resolve(
        &h.db.pool,
        conflict_id,
        Resolution::Select {
            tvshow_id: ShowId(office),
        },
    )
    .await
    .unwrap();
    assert_eq!(resolved.pending.len(), 1);
    assert_eq!(
        mapping_rows(&h).await[0].0,
        "jellyfin",
        "the mapping belongs to the Jellyfin show"
    );
    // The pending event replays through the new mapping.
    let pending: QueueMessage =
        serde_json::from_value(resolved.pending[0].message.clone()).unwrap();
    assert_eq!(pending.event.sender, Sender::Jellyfin);
    let o = process_as(&h, &pending).await;
    assert_eq!(o.action.as_deref(), Some("marked_watched"), "{o:?}");
    assert_eq!(episode(&h.seasons(office).await, 1, 2)["watched"], true);
}
