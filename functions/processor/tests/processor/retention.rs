//! The daily retention run: the schedule's `{"task":"retention"}` invocation deletes activity-log
//! rows and processed idempotency keys past retention, in batches, and never a key SQS could
//! still need.

use processor::{retention::Retention, Answer, Invocation, Processor};
use serde_json::json;

use crate::support::*;

impl Harness {
    /// Log rows `count` times at `days_ago`, and one processed key per entry of `key_ages`.
    async fn aged_rows(&self, logs: &[(i64, i64)], key_ages: &[i64]) {
        let client = self.db.pool.get().await.unwrap();
        for (days_ago, count) in logs {
            client
                .execute(
                    "INSERT INTO plex_webhook_logs (event_type, payload, status, created_at)
                     SELECT 'media.scrobble', '{}'::jsonb, 'success',
                            now() - make_interval(days => $1::int) - make_interval(secs => i)
                       FROM generate_series(1, $2::int) i",
                    &[&(*days_ago as i32), &(*count as i32)],
                )
                .await
                .unwrap();
        }
        for days_ago in key_ages {
            client
                .execute(
                    "INSERT INTO plex_processed_messages (idempotency_key, processed_at)
                     VALUES ($1, now() - make_interval(days => $2::int))",
                    &[&format!("key-{days_ago}"), &(*days_ago as i32)],
                )
                .await
                .unwrap();
        }
    }

    async fn log_ages(&self) -> Vec<i32> {
        self.query(
            "SELECT DISTINCT extract(day FROM now() - created_at)::int FROM plex_webhook_logs ORDER BY 1",
        )
        .await
        .iter()
        .map(|r| r.get(0))
        .collect()
    }

    async fn keys(&self) -> Vec<String> {
        self.query("SELECT idempotency_key FROM plex_processed_messages ORDER BY processed_at DESC")
            .await
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    async fn retention_run(&self, days: u32) -> serde_json::Value {
        let processor = Processor {
            retention: Retention { days },
            ..self.processor()
        };
        let invocation: Invocation = serde_json::from_value(json!({"task": "retention"})).unwrap();
        let answer = processor::handle(&processor, invocation, ample_time()).await;
        assert!(matches!(answer, Answer::Retention(_)), "{answer:?}");
        serde_json::to_value(answer).unwrap()
    }
}

#[tokio::test]
async fn the_schedule_deletes_logs_and_keys_past_retention_in_batches() {
    let h = harness().await;
    // 12 000 rows past 90 days: more than two delete batches.
    h.aged_rows(
        &[(120, 12_000), (100, 5), (30, 3), (1, 2)],
        &[120, 100, 45, 20, 1],
    )
    .await;

    let report = h.retention_run(90).await;
    assert_eq!(
        report,
        json!({"logsDeleted": 12_005, "processedKeysDeleted": 2, "complete": true})
    );
    assert_eq!(h.log_ages().await, vec![1, 30]);
    assert_eq!(h.keys().await, vec!["key-1", "key-20", "key-45"]);

    // A short retention for logs does not reach keys SQS could still redeliver (28 days).
    let report = h.retention_run(7).await;
    assert_eq!(
        report,
        json!({"logsDeleted": 3, "processedKeysDeleted": 1, "complete": true})
    );
    assert_eq!(h.log_ages().await, vec![1]);
    assert_eq!(
        h.keys().await,
        vec!["key-1", "key-20"],
        "key-20 is younger than 28 days"
    );

    // Nothing left to do: nothing deleted.
    let report = h.retention_run(7).await;
    assert_eq!(
        report,
        json!({"logsDeleted": 0, "processedKeysDeleted": 0, "complete": true})
    );
}

#[test]
fn a_queue_batch_is_never_taken_for_the_retention_task() {
    let batch: Invocation = serde_json::from_value(
        serde_json::to_value(sqs_event(&[("m-1", "{}".into(), 1)])).unwrap(),
    )
    .unwrap();
    assert!(matches!(batch, Invocation::Batch(_)), "{batch:?}");
    let task: Invocation = serde_json::from_value(json!({"task": "retention"})).unwrap();
    assert!(matches!(task, Invocation::Retention(_)), "{task:?}");
    assert!(serde_json::from_value::<Invocation>(json!({"task": "vacuum"})).is_err());
}
