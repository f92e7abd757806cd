//! Marking rules, config gates and idempotency.

use std::time::Duration;

use chrono::{DateTime, Utc};
use plexsync::db::PoolSettings;
use plexsync::pipeline::process_message;
use plexsync::store::logs::LogStatus;
use plexsync::testing::fixtures;
use serde_json::{json, Value};

use crate::support::*;

#[tokio::test]
async fn already_watched_episode_keeps_its_manual_date() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let mut seasons = office_seasons();
    seasons[0]["episodes"][0]["watched"] = json!(true);
    seasons[0]["episodes"][0]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    let office = h.add_show(Some(2316), "The Office", seasons.clone()).await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success);
    assert_eq!(outcome.action.as_deref(), Some("already_watched"));
    assert_eq!(h.seasons(office).await, seasons);
}

#[tokio::test]
async fn another_accounts_play_is_ignored_unless_allowed() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(fixtures::plex_other_account_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Ignored);
    let logs = h.logs().await;
    assert_eq!(logs[0].status, "ignored");
    assert!(
        logs[0].error.as_deref().unwrap().contains("bob"),
        "{logs:?}"
    );
    assert_eq!(h.seasons(office).await, office_seasons());
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());

    // A household member on the allowlist counts.
    h.configure(json!({"allowed_accounts": ["Bob"]})).await;
    let outcome = h.process(fixtures::plex_other_account_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
}

#[tokio::test]
async fn config_gates_ignore_with_a_reason() {
    let h = harness().await;
    h.query("DELETE FROM plex_config").await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(
        (o.status, o.reason.as_deref()),
        (
            LogStatus::Ignored,
            Some("Plex integration is not configured")
        )
    );
    h.configure(json!({"enabled": false})).await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(o.reason.as_deref(), Some("Plex integration is disabled"));
    h.configure(json!({"auto_mark_watched": false})).await;
    let o = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(o.reason.as_deref(), Some("auto-mark watched is off"));
    assert_eq!(
        h.count("SELECT count(*) FROM plex_webhook_logs WHERE status = 'ignored'")
            .await,
        3
    );
    assert_eq!(last_webhook_received(&h).await, Some(received_at()));
}

async fn last_webhook_received(h: &Harness) -> Option<DateTime<Utc>> {
    let client = h.db.client().await;
    plexsync::store::settings::load(&client)
        .await
        .unwrap()
        .unwrap()
        .last_webhook_received
}

/// Issue 12: every log write used to update the single `plex_config` row, so all processing
/// queued on its lock. The settings row must not be written per message, and "last webhook
/// received" must still move forward (and never back, for a late older message).
#[tokio::test]
async fn processing_does_not_write_the_settings_row() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    let version = "SELECT xmin::text FROM plex_config";
    let before: String = h.query(version).await[0].get(0);

    let mut msg = message(fixtures::plex_episode_scrobble());
    let outcome = process_message(&h.state, &msg, "m-hot-1", Some(1))
        .await
        .unwrap();
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    msg.received_at = received_at() - chrono::Duration::hours(1);
    process_message(&h.state, &msg, "m-hot-2", Some(1))
        .await
        .unwrap();

    let after: String = h.query(version).await[0].get(0);
    assert_eq!(before, after, "plex_config was written while processing");
    assert_eq!(h.count("SELECT count(*) FROM plex_webhook_logs").await, 2);
    assert_eq!(last_webhook_received(&h).await, Some(received_at()));
}

#[tokio::test]
async fn redelivered_message_is_a_duplicate_and_changes_nothing() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();

    let first = h.handle(sqs_event(&[("m-1", body.clone(), 1)])).await;
    assert!(first.batch_item_failures.is_empty());
    let after_first = h
        .query(&format!(
            "SELECT seasons, updated_at, watched_episodes FROM tvshows WHERE id = {office}"
        ))
        .await;
    // Redelivery (SQS at-least-once), then the same payload replayed as a new message.
    let second = h
        .handle(sqs_event(&[("m-1", body.clone(), 2), ("m-2", body, 1)]))
        .await;
    assert!(second.batch_item_failures.is_empty());
    let after_second = h
        .query(&format!(
            "SELECT seasons, updated_at, watched_episodes FROM tvshows WHERE id = {office}"
        ))
        .await;
    assert_eq!(
        after_first[0].get::<_, Value>(0),
        after_second[0].get::<_, Value>(0)
    );
    assert_eq!(
        after_first[0].get::<_, DateTime<Utc>>(1),
        after_second[0].get::<_, DateTime<Utc>>(1)
    );
    assert_eq!(after_second[0].get::<_, i32>(2), 1);
    let logs = h.logs().await;
    let statuses: Vec<&str> = logs.iter().map(|l| l.status.as_str()).collect();
    assert_eq!(statuses, ["success", "duplicate", "duplicate"]);
    assert_eq!(logs[1].receive_count, Some(2));
    assert_eq!(logs[1].message_id.as_deref(), Some("m-1"));
    assert_eq!(
        h.count("SELECT count(*) FROM plex_processed_messages")
            .await,
        1
    );
}

#[tokio::test]
async fn missing_episode_refreshes_its_season_once_else_fails_clearly() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;
    let mut stale = office_seasons();
    // Stored data stops at episode 4.
    stale[0]["episodes"].as_array_mut().unwrap().truncate(4);
    stale[0]["episodes"][0]["watched"] = json!(true);
    stale[0]["episodes"][0]["dateWatched"] = json!("2019-05-01T20:00:00.000Z");
    let office = h.add_show(Some(2316), "The Office", stale).await;
    let mut e6 = fixtures::plex_episode_scrobble();
    e6["Metadata"]["index"] = 6.into();
    e6["Metadata"]["ratingKey"] = "48218".into();

    let outcome = h.process(e6).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    let seasons = h.seasons(office).await;
    assert_eq!(episode(&seasons, 1, 6)["watched"], true);
    assert_eq!(episode(&seasons, 1, 5)["watched"], false);
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2019-05-01T20:00:00.000Z"
    );
    let counts = &h
        .query(&format!(
            "SELECT watched_episodes, total_episodes FROM tvshows WHERE id = {office}"
        ))
        .await[0];
    assert_eq!((counts.get::<_, i32>(0), counts.get::<_, i32>(1)), (2, 6));

    let mut e99 = fixtures::plex_episode_scrobble();
    e99["Metadata"]["index"] = 99.into();
    e99["Metadata"]["ratingKey"] = "48299".into();
    let outcome = h.process(e99).await;
    assert_eq!(outcome.status, LogStatus::Failed);
    let reason = outcome.reason.unwrap();
    assert!(
        reason.contains("S01E99") && reason.contains("TMDB"),
        "{reason}"
    );
    assert_eq!(h.logs().await.last().unwrap().status, "failed");
    assert_eq!(
        h.tmdb_requests("/3/tv/2316/season/1").await,
        2,
        "one refresh per message"
    );
}

#[tokio::test]
async fn specials_season_zero_is_marked_like_any_season() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let mut seasons = office_seasons();
    seasons.as_array_mut().unwrap().insert(
        0,
        json!({"seasonNumber": 0, "episodes": [{"episodeNumber": 1, "title": "The Accountants", "airDate": "2006-07-13", "watched": false, "dateWatched": null}]}),
    );
    let office = h.add_show(Some(2316), "The Office", seasons).await;
    // Map the show with S01E01 first, then the special (no Guid ids needed once mapped).
    h.process(fixtures::plex_episode_scrobble()).await;
    let mut special = office_episode(1);
    special["Metadata"]["parentIndex"] = 0.into();
    special["Metadata"]["ratingKey"] = "49001".into();
    let outcome = h.process(special).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(episode(&h.seasons(office).await, 0, 1)["watched"], true);
}

#[tokio::test]
async fn deleted_tracker_show_disables_sync_and_is_never_auto_added_again() {
    let h = harness().await;
    stub_office_for_auto_add(&h).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    assert_eq!(
        h.process(fixtures::plex_episode_scrobble()).await.status,
        LogStatus::Success
    );
    h.query(&format!("DELETE FROM tvshows WHERE id = {office}"))
        .await;

    let outcome = h.process(office_episode(2)).await;
    assert_eq!(outcome.status, LogStatus::Ignored);
    assert!(outcome.reason.unwrap().contains("sync disabled"));
    assert_eq!(h.count("SELECT count(*) FROM tvshows").await, 0);
    assert_eq!(mapping(&h).await, (None, "tvdb_id".into(), 0.95, false));
}

/// The Office is in the tracker and mapped (through S01E03's scrobble, marked): the next
/// scrobbles go straight to marking.
async fn mapped_office(h: &Harness) -> i32 {
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let mut e3 = fixtures::plex_episode_scrobble();
    e3["Metadata"]["index"] = 3.into();
    e3["Metadata"]["ratingKey"] = "48215".into();
    let outcome = h.process(e3).await;
    assert_eq!(outcome.action.as_deref(), Some("marked_watched"));
    office
}

/// The fixture scrobble's `lastViewedAt` as the tracker stores `dateWatched`.
fn fixture_viewed_at() -> String {
    let at = fixtures::plex_episode_scrobble()["Metadata"]["lastViewedAt"]
        .as_i64()
        .unwrap();
    DateTime::from_timestamp(at, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// (status, action) of the log rows of `message_id`, in order.
async fn rows_of(h: &Harness, message_id: &str) -> Vec<(String, Option<String>)> {
    h.logs()
        .await
        .into_iter()
        .filter(|l| l.message_id.as_deref() == Some(message_id))
        .map(|l| (l.status, l.action))
        .collect()
}

/// The same message delivered twice at once (SQS is at-least-once; two instances may hold it).
/// The show's row is held until both deliveries wait behind it, so both have passed the
/// processor's pre-check before either commits: only the check inside marking's transaction
/// can stop the second. One mark, one success row, the payload's view time.
#[tokio::test]
async fn the_same_message_delivered_twice_at_once_marks_once() {
    let h = harness().await;
    let office = mapped_office(&h).await;
    let msg = message(fixtures::plex_episode_scrobble());
    let state = h.concurrent_state(2);

    let mut holder = h.db.client().await;
    let hold = holder.transaction().await.unwrap();
    hold.execute("SELECT 1 FROM tvshows WHERE id = $1 FOR UPDATE", &[&office])
        .await
        .unwrap();
    let release = async {
        h.wait_for_lock_waiters(2).await;
        hold.commit().await.unwrap();
    };
    let ((first, second), ()) = tokio::join!(
        futures_util::future::join(
            process_message(&state, &msg, "m-twice", Some(1)),
            process_message(&state, &msg, "m-twice", Some(2)),
        ),
        release
    );

    let mut statuses = [first.unwrap().status, second.unwrap().status];
    statuses.sort_by_key(|s| s.as_str());
    assert_eq!(statuses, [LogStatus::Duplicate, LogStatus::Success]);
    assert_eq!(
        rows_of(&h, "m-twice").await,
        [
            ("success".to_string(), Some("marked_watched".to_string())),
            ("duplicate".to_string(), None)
        ]
    );
    let seasons = h.seasons(office).await;
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        fixture_viewed_at().as_str()
    );
    assert_eq!(
        h.count(&format!(
            "SELECT watched_episodes::bigint FROM tvshows WHERE id = {office}"
        ))
        .await,
        2
    );
    assert_eq!(
        h.count("SELECT count(*) FROM plex_processed_messages")
            .await,
        2
    );
}

/// A processed message redelivered after the user un-marked its episode in the tracker: the
/// episode no longer says "watched", so only the idempotency key stops the redelivery from
/// marking it again.
#[tokio::test]
async fn a_redelivery_after_the_user_unmarked_the_episode_changes_nothing() {
    let h = harness().await;
    let office = mapped_office(&h).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    let first = h.handle(sqs_event(&[("m-1", body.clone(), 1)])).await;
    assert!(first.batch_item_failures.is_empty());
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);

    // The user un-marks S01E01 (the tracker writes the seasons JSON and the count).
    h.query(&format!(
        "UPDATE tvshows
            SET seasons = jsonb_set(jsonb_set(seasons, '{{0,episodes,0,watched}}', 'false'),
                                    '{{0,episodes,0,dateWatched}}', 'null'),
                watched_episodes = 1
          WHERE id = {office}"
    ))
    .await;
    let unmarked = h.seasons(office).await;
    assert_eq!(episode(&unmarked, 1, 1)["watched"], false);

    let again = h.handle(sqs_event(&[("m-1", body, 2)])).await;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(h.seasons(office).await, unmarked, "still un-marked");
    assert_eq!(
        h.count(&format!(
            "SELECT watched_episodes::bigint FROM tvshows WHERE id = {office}"
        ))
        .await,
        1
    );
    assert_eq!(
        rows_of(&h, "m-1").await,
        [
            ("success".to_string(), Some("marked_watched".to_string())),
            ("duplicate".to_string(), None)
        ]
    );
}

/// A redelivery is logged `duplicate` whatever happened to its show since (here the user turned
/// its sync off): the activity log says it was a repeat, not that the show is not synced. Only
/// the processor's pre-check sees this; marking is never reached.
#[tokio::test]
async fn a_redelivery_is_a_duplicate_even_after_sync_was_turned_off() {
    let h = harness().await;
    mapped_office(&h).await;
    let body = message(fixtures::plex_episode_scrobble()).to_body();
    h.handle(sqs_event(&[("m-1", body.clone(), 1)])).await;
    h.query("UPDATE plex_show_mappings SET sync_enabled = false")
        .await;

    h.handle(sqs_event(&[("m-1", body, 2)])).await;
    assert_eq!(
        rows_of(&h, "m-1").await,
        [
            ("success".to_string(), Some("marked_watched".to_string())),
            ("duplicate".to_string(), None)
        ]
    );
}

/// Issue 13: the statements of the common message, a scrobble of a mapped show, counted on the
/// wire once every statement is prepared on the connection: settings, idempotency pre-check and
/// mapping pipelined in one round trip, then `BEGIN`, lock-find-and-claim, the in-place mark,
/// the log row, `COMMIT`; no liveness check on a connection used moments ago. Before: 9
/// statements in 9 round trips (the liveness check on every checkout, the three reads one
/// after the other), and before that 12 in 13.
#[tokio::test]
async fn a_mapped_scrobble_takes_eight_statements_in_six_round_trips() {
    let counts = mapped_scrobble_on_the_wire(PoolSettings::RUNTIME).await;
    assert_eq!(
        (counts.statements, counts.round_trips, counts.parses),
        (8, 6, 0),
        "{counts:?}"
    );
}

/// A connection idle for `verify_after_idle` (here: any) answers the liveness query first: one
/// statement and one round trip more.
#[tokio::test]
async fn an_idle_connection_is_checked_before_it_is_reused() {
    let settings = PoolSettings {
        verify_after_idle: Duration::ZERO,
        ..PoolSettings::RUNTIME
    };
    let counts = mapped_scrobble_on_the_wire(settings).await;
    assert_eq!(
        (counts.statements, counts.round_trips, counts.parses),
        (9, 7, 0),
        "{counts:?}"
    );
}

/// What the second scrobble of a mapped show sends on a pool with `settings` (the first maps
/// the show, another prepares the statements on the connection).
async fn mapped_scrobble_on_the_wire(settings: PoolSettings) -> plexsync::testing::WireCounts {
    let h = harness().await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let first = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(first.action.as_deref(), Some("marked_watched"), "{first:?}");

    let counter = plexsync::testing::WireCounter::start(&h.db).await;
    let pool = plexsync::db::pool_with(&counter.url, settings).unwrap();
    let state = h.pipeline_with(pool);
    process_message(&state, &message(office_episode(2)), "m-2", Some(1))
        .await
        .unwrap();
    counter.reset();
    let outcome = process_message(&state, &message(office_episode(3)), "m-3", Some(1))
        .await
        .unwrap();
    assert_eq!(
        outcome.action.as_deref(),
        Some("marked_watched"),
        "{outcome:?}"
    );
    assert_eq!(
        episode(&h.seasons(first.tvshow_id.unwrap().0).await, 1, 3)["watched"],
        true
    );
    counter.counts()
}
