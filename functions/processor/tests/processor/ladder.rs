//! The identity ladder, one scenario per rung: Plex guids, TMDB /find, the Plex server's
//! metadata, title search, auto-add.

use std::sync::Arc;

use plexsync::queue::QueueMessage;
use plexsync::testing::{self, fixtures};
use plexsync::{
    ids::{ConflictId, ShowId},
    pipeline::KeySource,
    store::logs::LogStatus,
};
use serde_json::{json, Value};
use wiremock::{
    matchers::{header, method, path},
    Mock, MockServer, ResponseTemplate,
};

use crate::support::*;

#[tokio::test]
async fn legacy_tvdb_guid_maps_via_tvdb_and_marks_with_receipt_time() {
    let h = harness().await;
    h.stub_find(
        "121361",
        "tvdb_id",
        json!({"tv_results": [{"id": 1399, "name": "Game of Thrones", "first_air_date": "2011-04-17"}],
               "tv_episode_results": [], "movie_results": [], "person_results": [], "tv_season_results": []}),
    )
    .await;
    let got = h
        .add_show(
            Some(1399),
            "Game of Thrones",
            json!([{"seasonNumber": 1, "episodes": [
                {"episodeNumber": 1, "title": "Winter Is Coming", "airDate": "2011-04-17", "watched": false, "dateWatched": null},
                {"episodeNumber": 2, "title": "The Kingsroad", "airDate": "2011-04-24", "watched": false, "dateWatched": null}
            ]}]),
        )
        .await;

    let outcome = h.process(fixtures::plex_legacy_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");

    assert_eq!(mapping(&h).await, (Some(got), "tvdb_id".into(), 0.95, true));
    let seasons = h.seasons(got).await;
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    // No lastViewedAt in a legacy payload: the receipt time is the watch date.
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2025-11-28T15:00:00.000Z"
    );
    assert_eq!(episode(&seasons, 1, 2)["watched"], false);
    let row = &h
        .query(&format!(
            "SELECT watched_episodes, total_episodes, plex_last_sync IS NOT NULL FROM tvshows WHERE id = {got}"
        ))
        .await[0];
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, i32>(1),
            row.get::<_, bool>(2)
        ),
        (1, 2, true)
    );
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].status, "success");
    assert_eq!(logs[0].action.as_deref(), Some("marked_watched"));
    assert_eq!(logs[0].tvshow_id, Some(got));
    assert_eq!((logs[0].season, logs[0].episode), (Some(1), Some(1)));
    assert_eq!(
        logs[0].payload["Metadata"]["grandparentTitle"],
        "Game of Thrones"
    );
    assert_eq!(
        h.count("SELECT count(*) FROM tmdb_id_cache WHERE source = 'tvdb_show' AND external_id = '121361' AND tmdb_id = 1399")
            .await,
        1
    );
}

/// New agent: the episode's tvdb id → /3/find → tv_episode_results[0].show_id. The tracker also
/// holds an unrelated show whose TMDB id equals the *episode's* TMDB id (397627): it must stay
/// untouched while The Office (2316) is marked.
#[tokio::test]
async fn new_agent_episode_tvdb_id_marks_the_right_show_not_the_episode_id_show() {
    let h = harness().await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let decoy = h
        .add_show(Some(397627), "Tiny Decoy Show", office_seasons())
        .await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(outcome.tvshow_id, Some(ShowId(office)));

    let seasons = h.seasons(office).await;
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    // lastViewedAt 1764339000 is the watch date.
    assert_eq!(
        episode(&seasons, 1, 1)["dateWatched"],
        "2025-11-28T14:10:00.000Z"
    );
    assert_eq!(h.seasons(decoy).await, office_seasons(), "decoy untouched");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tvdb_id".into(), 0.95, true)
    );
    let ids = &h
        .query("SELECT tmdb_id, tvdb_id, imdb_id FROM plex_show_mappings")
        .await[0];
    // Only show ids are stored on the mapping, never the episode's.
    assert_eq!(ids.get::<_, Option<i32>>(0), Some(2316));
    assert_eq!(ids.get::<_, Option<i32>>(1), None);
    assert_eq!(ids.get::<_, Option<String>>(2), None);
}

#[tokio::test]
async fn new_agent_episode_imdb_id_maps_via_imdb() {
    let h = harness().await;
    h.stub_find("tt0664521", "imdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h
        .process(office_scrobble_with_guids(&[
            "imdb://tt0664521",
            "tmdb://397627",
        ]))
        .await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "imdb_id".into(), 0.95, true)
    );
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
}

/// No usable episode ids: the Plex server's show metadata (token decrypted in memory with the key
/// from Secrets Manager) gives the show's TMDB id.
#[tokio::test]
async fn plex_server_metadata_gives_the_show_ids() {
    let h = harness_with_key_in_secrets_manager().await;
    let plex = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/library/metadata/48200"))
        .and(header("x-plex-token", PLEX_TOKEN))
        .and(header("accept", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixtures::plex_server_show_the_office()),
        )
        .expect(1)
        .mount(&plex)
        .await;
    h.configure(json!({"plex_server_url": plex.uri()})).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(office_scrobble_with_guids(&[])).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_id".into(), 1.0, true)
    );
    let ids = &h
        .query("SELECT tvdb_id, imdb_id FROM plex_show_mappings")
        .await[0];
    assert_eq!(ids.get::<_, Option<i32>>(0), Some(73244));
    assert_eq!(
        ids.get::<_, Option<String>>(1).as_deref(),
        Some("tt0386676")
    );
    assert_eq!(episode(&h.seasons(office).await, 1, 1)["watched"], true);
    assert!(h.tmdb.received_requests().await.unwrap().is_empty());
}

/// A plain http server URL the user did not allow: the token is not sent, the step is skipped.
#[tokio::test]
async fn a_plain_http_server_without_the_opt_in_gets_no_token() {
    let h = harness_with_key_in_secrets_manager().await;
    let plex = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixtures::plex_server_show_the_office()),
        )
        .expect(0)
        .mount(&plex)
        .await;
    h.configure(json!({"plex_server_url": plex.uri(), "allow_insecure_http": false}))
        .await;
    h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(office_scrobble_with_guids(&[])).await;
    assert_ne!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert!(
        plex.received_requests().await.unwrap().is_empty(),
        "nothing, token included, went to the http server"
    );
}

/// A harness whose pipeline reads its encryption key from Secrets Manager (moto), as deployed;
/// configure it after this so the Plex token is encrypted with that key.
async fn harness_with_key_in_secrets_manager() -> Harness {
    let mut h = harness().await;
    let aws = testing::moto_config().await;
    let (secret_id, keyring) = testing::key_secret(&aws).await;
    h.keyring = Arc::new(keyring);
    h.state.keys = KeySource::Secrets {
        cache: plexsync::secrets::SecretsCache::new(aws_sdk_secretsmanager_client(&aws)),
        secret_id,
    };
    h
}

fn aws_sdk_secretsmanager_client(aws: &aws_config::SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(aws)
}

#[tokio::test]
async fn single_fuzzy_match_is_an_ambiguous_conflict_with_pending_event() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    let us = h.add_show(None, "The Office (US)", office_seasons()).await;
    h.add_show(Some(1396), "Breaking Bad", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");

    let rows = h
        .query("SELECT id, conflict_type, potential_matches, plex_rating_key, plex_title FROM plex_conflicts")
        .await;
    assert_eq!(rows.len(), 1);
    let conflict_id: i32 = rows[0].get(0);
    assert_eq!(rows[0].get::<_, String>(1), "ambiguous");
    assert_eq!(
        rows[0].get::<_, String>(3),
        "48200",
        "keyed on the show, not the episode"
    );
    let matches: Value = rows[0].get(2);
    let first = &matches[0];
    assert_eq!(first["tvshowId"], us);
    assert_eq!(first["source"], "tracker");
    let score = first["matchScore"].as_f64().unwrap();
    assert!(
        score > 0.5 && score < 0.9,
        "sim × 0.85, below auto-map: {score}"
    );
    // TMDB search candidates are offered too.
    assert!(matches
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["tmdbId"] == 2316 && m["source"] == "tmdb" && m["tvshowId"].is_null()));
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);
    assert_eq!(episode(&h.seasons(us).await, 1, 1)["watched"], false);

    // A repeat event for the show adds to the pending events, not a second conflict.
    let again = h.process(office_episode(2)).await;
    assert_eq!(again.status, LogStatus::NeedsResolution);
    assert_eq!(again.conflict_id, Some(ConflictId(conflict_id)));
    assert_eq!(h.count("SELECT count(*) FROM plex_conflicts").await, 1);
    let pending = h
        .query("SELECT conflict_id, message FROM plex_pending_events ORDER BY id")
        .await;
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].get::<_, i32>(0), conflict_id);
    // The stored message is a whole queue message, ready to replay.
    let stored: Value = pending[1].get(1);
    let replay = QueueMessage::from_body(&stored.to_string()).unwrap();
    assert_eq!(replay.event.episode.unwrap().number, 2);
    let logs = h.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(
        logs.iter()
            .all(|l| l.status == "needs_resolution"
                && l.action.as_deref() == Some("needs_user_input"))
    );
}

/// A TMDB search hit the tracker already has is offered once (as the tracker show), not twice.
#[tokio::test]
async fn tmdb_candidate_already_in_the_tracker_is_offered_once() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");
    let matches: Value = h
        .query("SELECT potential_matches FROM plex_conflicts")
        .await[0]
        .get(0);
    let with_2316: Vec<&Value> = matches
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["tmdbId"] == 2316)
        .collect();
    assert_eq!(with_2316.len(), 1, "{matches}");
    assert_eq!(with_2316[0]["tvshowId"], office);
    assert_eq!(with_2316[0]["source"], "tracker");
}

#[tokio::test]
async fn two_fuzzy_candidates_are_a_multiple_matches_conflict() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": []})).await;
    h.add_show(None, "The Office (US)", office_seasons()).await;
    h.add_show(None, "The Office (UK)", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, jsonb_array_length(potential_matches) FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "multiple_matches");
    assert_eq!(rows[0].get::<_, i32>(1), 2);
}

#[tokio::test]
async fn nothing_found_is_a_no_match_conflict() {
    let h = harness().await;
    stub_search(&h, json!({"page": 1, "results": [], "total_results": 0})).await;
    h.add_show(Some(1396), "Breaking Bad", json!([])).await;

    let outcome = h.process(office_episode(1)).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, potential_matches FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "no_match");
    assert_eq!(rows[0].get::<_, Value>(1), json!([]));
    assert_eq!(
        h.count("SELECT count(*) FROM tvshows").await,
        1,
        "nothing auto-added without a TMDB id"
    );
}

/// Title search confirmed by the episode's TMDB id appearing in the candidate's season.
#[tokio::test]
async fn title_search_confirmed_by_episode_tmdb_id_resolves_the_show() {
    let h = harness().await;
    stub_search(&h, fixtures::tmdb_search_the_office()).await;
    h.stub_get("/3/tv/2316/season/1", fixtures::tmdb_the_office_season_1())
        .await;
    h.stub_get(
        "/3/tv/2996/season/1",
        json!({"id": 3630, "season_number": 1, "episodes": [{"id": 60001, "episode_number": 1, "name": "Downsize"}]}),
    )
    .await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;

    let outcome = h
        .process(office_scrobble_with_guids(&["tmdb://397627"]))
        .await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_search".into(), 0.95, true)
    );
}

#[tokio::test]
async fn unknown_show_with_tmdb_id_is_auto_added_mapped_and_marked() {
    let h = harness().await;
    stub_office_for_auto_add(&h).await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(
        outcome.action.as_deref(),
        Some("auto_added_show_and_marked_watched")
    );
    let rows = h
        .query(
            "SELECT id, tmdb_id, title, status, source, plex_synced, total_episodes, watched_episodes,
                    show_start_date::text, seasons
               FROM tvshows",
        )
        .await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let id: i32 = r.get(0);
    assert_eq!(r.get::<_, Option<i32>>(1), Some(2316));
    assert_eq!(r.get::<_, String>(2), "The Office");
    assert_eq!(r.get::<_, String>(3), "Watching");
    assert_eq!(r.get::<_, String>(4), "plex");
    assert!(r.get::<_, bool>(5));
    assert_eq!((r.get::<_, i32>(6), r.get::<_, i32>(7)), (7, 1));
    assert_eq!(r.get::<_, Option<String>>(8).as_deref(), Some("2005-03-24"));
    let seasons: Value = r.get(9);
    assert_eq!(seasons[0]["seasonNumber"], 0, "specials kept, in order");
    assert_eq!(seasons[1]["seasonNumber"], 1);
    assert_eq!(
        episode(&seasons, 1, 2),
        &json!({"episodeNumber": 2, "title": "Diversity Day", "airDate": "2005-03-29", "watched": false, "dateWatched": null})
    );
    assert_eq!(episode(&seasons, 1, 1)["watched"], true);
    assert_eq!(
        mapping(&h).await,
        (Some(id), "auto_added:tvdb_id".into(), 0.95, true)
    );
}

#[tokio::test]
async fn auto_add_off_gives_a_no_match_conflict_offering_the_tmdb_show() {
    let h = harness().await;
    h.configure(json!({"auto_add_shows": false})).await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;

    let outcome = h.process(fixtures::plex_episode_scrobble()).await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution);
    let rows = h
        .query("SELECT conflict_type, potential_matches FROM plex_conflicts")
        .await;
    assert_eq!(rows[0].get::<_, String>(0), "no_match");
    let matches: Value = rows[0].get(1);
    assert_eq!(matches[0]["tmdbId"], 2316);
    assert_eq!(matches[0]["source"], "tmdb");
    assert_eq!(h.count("SELECT count(*) FROM tvshows").await, 0);
}

/// A library import must not open a conflict per new show: with auto-add off, `library.new`
/// for a show the tracker lacks is logged ignored; the show's first scrobble still asks.
#[tokio::test]
async fn library_new_of_an_untracked_show_with_auto_add_off_is_ignored_until_scrobbled() {
    let h = harness().await;
    h.configure(json!({"auto_add_shows": false})).await;
    h.stub_find("110413", "tvdb_id", fixtures::tmdb_find_office_pilot())
        .await;
    let added = message(fixtures::plex_library_new_show()).to_body();
    let response = h.handle(sqs_event(&[("m-new", added, 1)])).await;
    assert!(response.batch_item_failures.is_empty());
    let logs = h.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(
        (logs[0].event_type.as_str(), logs[0].status.as_str()),
        ("library.new", "ignored")
    );
    assert_eq!(
        logs[0].error.as_deref(),
        Some(plexsync::pipeline::NEW_SHOW_NOT_TRACKED)
    );
    assert_eq!(h.count("SELECT count(*) FROM plex_conflicts").await, 0);
    assert_eq!(h.count("SELECT count(*) FROM plex_show_mappings").await, 0);

    // The same Plex show (rating key 51000) is watched: now the user is asked.
    let mut scrobble = fixtures::plex_episode_scrobble();
    scrobble["Metadata"]["grandparentRatingKey"] = "51000".into();
    let body = message(scrobble).to_body();
    let response = h.handle(sqs_event(&[("m-watch", body, 1)])).await;
    assert!(response.batch_item_failures.is_empty());
    let rows = h
        .query("SELECT conflict_type, plex_rating_key FROM plex_conflicts")
        .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "no_match");
    assert_eq!(rows[0].get::<_, String>(1), "51000");
    assert_eq!(h.logs().await[1].status, "needs_resolution");
    assert_eq!(h.count("SELECT count(*) FROM plex_pending_events").await, 1);
}

#[tokio::test]
async fn library_new_show_creates_the_mapping_and_marks_nothing() {
    let h = harness().await;
    let office = h.add_show(Some(2316), "The Office", office_seasons()).await;
    let outcome = h.process(fixtures::plex_library_new_show()).await;
    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(outcome.action.as_deref(), Some("show_mapped"));
    assert_eq!(
        mapping(&h).await,
        (Some(office), "tmdb_id".into(), 1.0, true)
    );
    assert_eq!(h.seasons(office).await, office_seasons());
    assert_eq!(h.logs().await[0].event_type, "library.new");
}
