//! A show Plex could not match (`local://` guids, no `Guid` array), from the processor to the
//! marked episode: the processor never maps it by itself but opens one conflict offering every
//! tracker show of that title and holds the scrobble; resolving the conflict through the API
//! marks it, and once mapped, later scrobbles of that Plex show mark directly.

use plexsync::{
    api::testing::{authed, json},
    ids::ShowId,
    pipeline::{process_message, Outcome},
    queue::QueueMessage,
    store::logs::LogStatus,
    testing::fixtures,
};
use serde_json::{json, Value};

use crate::support::*;

fn unmatched_episode(number: i64, viewed_at: i64) -> Value {
    let mut p = fixtures::plex_unmatched_episode_scrobble();
    let key = format!("6100{number}");
    p["Metadata"]["ratingKey"] = json!(key);
    p["Metadata"]["key"] = json!(format!("/library/metadata/{key}"));
    p["Metadata"]["guid"] = json!(format!("local://{key}"));
    p["Metadata"]["index"] = json!(number);
    p["Metadata"]["title"] = json!(format!("Episode {number}"));
    p["Metadata"]["lastViewedAt"] = json!(viewed_at);
    p
}

impl Harness {
    async fn process(&self, payload: Value, message_id: &str) -> Outcome {
        let msg = QueueMessage::from_body(&queued(payload).to_string()).unwrap();
        process_message(&self.state.pipeline, &msg, message_id, Some(1))
            .await
            .expect("no transient failure")
    }

    async fn watched(&self, show: i32, number: i64) -> Value {
        let seasons = self.seasons(show).await;
        seasons[0]["episodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["episodeNumber"] == number)
            .unwrap()["watched"]
            .clone()
    }
}

#[tokio::test]
async fn an_unmatched_show_is_a_conflict_offering_both_same_titled_shows_until_resolved() {
    let h = Harness::new().await;
    h.stub_search().await;

    let first = h
        .process(fixtures::plex_unmatched_episode_scrobble(), "m-unmatched-2")
        .await;
    assert_eq!(first.status, LogStatus::NeedsResolution, "{first:?}");
    let conflict = first.conflict_id.expect("a conflict").0;
    assert!(
        h.mappings().await.is_empty(),
        "never mapped without an external id"
    );
    assert_eq!(h.watched(h.office_show, 2).await, false);

    let listed = json(&h.call(authed("GET", "/api/plex/conflicts", None)).await);
    let c = listed["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == conflict)
        .expect("listed")
        .clone();
    assert_eq!(c["plexRatingKey"], "61000");
    assert_eq!(c["plexTitle"], "The Office");
    assert_eq!(c["conflictType"], "multiple_matches");
    assert_eq!(c["pendingEvents"], 1);
    let offered: Vec<Value> = c["potentialMatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["tvshowId"].clone())
        .collect();
    assert!(
        offered.contains(&json!(h.office_show)) && offered.contains(&json!(h.office_uk_show)),
        "both tracker shows titled The Office are offered: {c}"
    );
    // TMDB's third "The Office" (AU, not in the tracker) is offered to add.
    assert!(c["potentialMatches"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["tmdbId"] == 127635 && m["tvshowId"].is_null()));

    let resp = h
        .resolve(
            conflict,
            json!({"action": "select", "tvshowId": h.office_show}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["replay"]["marked"], 1, "{body}");
    assert_eq!(body["replay"]["markedEpisodes"], json!(["S01E02"]));
    assert_eq!(h.watched(h.office_show, 2).await, true);
    let mappings = h.mappings().await;
    assert_eq!(mappings.len(), 1);
    assert_eq!(mappings[0].get::<_, String>(1), "61000");
    assert_eq!(mappings[0].get::<_, Option<i32>>(2), Some(h.office_show));

    // Mapped now: the next episode marks at once, without asking TMDB again.
    let asked = h.tmdb.received_requests().await.unwrap().len();
    let later = h
        .process(unmatched_episode(3, 1764512000), "m-unmatched-3")
        .await;
    assert_eq!(later.status, LogStatus::Success, "{later:?}");
    assert_eq!(later.action.as_deref(), Some("marked_watched"));
    assert_eq!(later.tvshow_id, Some(ShowId(h.office_show)));
    assert_eq!(h.watched(h.office_show, 3).await, true);
    assert_eq!(h.tmdb.received_requests().await.unwrap().len(), asked);
    let open = json(&h.call(authed("GET", "/api/plex/conflicts", None)).await);
    assert!(open["conflicts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["plexRatingKey"] != "61000"));
}

/// With one tracker show of that title, a perfect title match, and auto-add on, the show is
/// still not mapped by itself: nothing confirms it is that show.
#[tokio::test]
async fn a_single_exact_title_match_is_still_asked() {
    let h = Harness::new().await;
    h.stub_search().await;
    h.db.client()
        .await
        .execute("DELETE FROM tvshows WHERE id = $1", &[&h.office_uk_show])
        .await
        .unwrap();
    let outcome = h
        .process(fixtures::plex_unmatched_episode_scrobble(), "m-one")
        .await;
    assert_eq!(outcome.status, LogStatus::NeedsResolution, "{outcome:?}");
    assert!(h.mappings().await.is_empty());
    assert_eq!(h.watched(h.office_show, 2).await, false);
    let shows: i64 =
        h.db.client()
            .await
            .query_one("SELECT count(*) FROM tvshows", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(shows, 1, "nothing auto-added");
}
