//! A scrobble that arrives while the user resolves its show's conflict: the processor has seen
//! the conflict open, and the resolve commits before the scrobble is kept for replay. The event
//! must end up marked (or replayed), never waiting on a conflict that is already resolved.

use plexsync::{
    ids::{ConflictId, ShowId},
    pipeline::process_message,
    queue::QueueMessage,
    store::{
        conflicts::{self, Resolution},
        logs::LogStatus,
    },
    testing::fixtures,
};
use serde_json::{json, Value};

use crate::support::*;

fn third_episode() -> Value {
    let mut p = fixtures::plex_episode_scrobble();
    p["Metadata"]["ratingKey"] = json!("48215");
    p["Metadata"]["index"] = json!(3);
    p["Metadata"]["title"] = json!("Health Care");
    p["Metadata"]["Guid"] = json!([{"id": "imdb://tt0664521"}, {"id": "tvdb://110415"}]);
    p
}

impl Harness {
    /// Backends of this test's database waiting for a lock.
    async fn lock_waiters(&self) -> i64 {
        let c = self.db.client().await;
        c.query_one(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }
}

#[tokio::test]
async fn a_scrobble_kept_while_the_conflict_is_being_resolved_is_marked_not_stranded() {
    let h = Harness::new().await;
    let msg = QueueMessage::from_body(&queued(third_episode()).to_string()).unwrap();

    // The user's resolve, in flight: the conflict is resolved and mapped, not yet committed.
    let mut resolver = h.db.client().await;
    let tx = resolver.transaction().await.unwrap();
    let resolved = conflicts::resolve_in(
        &tx,
        ConflictId(h.office),
        Resolution::Select {
            tvshow_id: ShowId(h.office_show),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        resolved.pending.len(),
        2,
        "the harness's two waiting events"
    );

    // The scrobble sees the conflict open (the resolve is not committed) and waits on its lock.
    let pipeline = &h.state.pipeline;
    let processing = process_message(pipeline, &msg, "m-during-resolve", Some(1));
    let commit_when_waiting = async {
        while h.lock_waiters().await == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tx.commit().await.unwrap();
    };
    let (outcome, ()) = tokio::join!(processing, commit_when_waiting);
    let outcome = outcome.expect("no transient failure");

    assert_eq!(outcome.status, LogStatus::Success, "{outcome:?}");
    assert_eq!(outcome.action.as_deref(), Some("marked_watched"));
    assert_eq!(outcome.tvshow_id, Some(ShowId(h.office_show)));
    let c = h.db.client().await;
    let stranded: i64 = c
        .query_one(
            "SELECT count(*) FROM plex_pending_events p JOIN plex_conflicts c ON c.id = p.conflict_id
              WHERE c.resolved AND p.replayed_at IS NULL AND p.idempotency_key = $1",
            &[&msg.idempotency_key()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stranded, 0, "the scrobble waits on a resolved conflict");
    let seasons: Value = c
        .query_one(
            "SELECT seasons FROM tvshows WHERE id = $1",
            &[&h.office_show],
        )
        .await
        .unwrap()
        .get(0);
    let episode = seasons[0]["episodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["episodeNumber"] == 3)
        .unwrap()
        .clone();
    assert_eq!(episode["watched"], true, "{episode}");
}
