//! Custom CloudWatch metrics in the Embedded Metric Format: one JSON line on stdout, which
//! CloudWatch Logs turns into a metric. No SDK call and no PutMetricData permission, and
//! locally the line is just a log line.
//!
//! The template's alarms read these names in namespace [`NAMESPACE`]: `OpenConflictsAlarm`
//! [`OPEN_CONFLICTS`], `TmdbErrorRateAlarm` [`TMDB_ERRORS`] / [`TMDB_REQUESTS`],
//! `EnqueueFailedAlarm` [`ENQUEUE_FAILURES`].

use std::{cell::RefCell, future::Future};

use serde_json::{json, Map, Value};

use crate::db::{DbError, DbPool};

pub const NAMESPACE: &str = "plexsync";
pub const OPEN_CONFLICTS: &str = "OpenConflicts";
/// One per TMDB call (after its retries), and whether it failed.
pub const TMDB_REQUESTS: &str = "TmdbRequests";
pub const TMDB_ERRORS: &str = "TmdbErrors";
/// A webhook event that could not be put on the queue (the play is lost: Plex never retries).
pub const ENQUEUE_FAILURES: &str = "EnqueueFailures";

/// One metric value of an EMF document.
#[derive(Debug, Clone, Copy)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub value: f64,
    pub unit: &'a str,
}

/// The EMF document for dimensionless metric values.
pub fn emf(samples: &[Sample<'_>], timestamp_ms: i64) -> Value {
    let definitions: Vec<Value> = samples
        .iter()
        .map(|s| json!({"Name": s.name, "Unit": s.unit}))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": definitions
            }]
        }),
    );
    for s in samples {
        doc.insert(s.name.into(), json!(s.value));
    }
    Value::Object(doc)
}

tokio::task_local! {
    /// Lines emitted inside [`capture`], for tests.
    static CAPTURED: RefCell<Vec<String>>;
}

/// Prints the metrics as one line. `println!` holds the stdout lock for the whole line, so it
/// is never interleaved with a concurrent log line.
pub fn emit(samples: &[Sample<'_>]) {
    let line = emf(samples, chrono::Utc::now().timestamp_millis()).to_string();
    println!("{line}");
    // Inside `capture` (tests) the same line is also kept.
    let _ = CAPTURED.try_with(|lines| lines.borrow_mut().push(line));
}

/// One count.
pub fn emit_count(name: &str, value: f64) {
    emit(&[Sample {
        name,
        value,
        unit: "Count",
    }]);
}

/// Runs `f` and returns the EMF lines it emitted (on its own task), as printed.
pub async fn capture<F: Future>(f: F) -> (F::Output, Vec<String>) {
    CAPTURED
        .scope(RefCell::new(Vec::new()), async {
            let out = f.await;
            (out, CAPTURED.with(|lines| lines.take()))
        })
        .await
}

/// Counts the unresolved conflicts and emits [`OPEN_CONFLICTS`]; returns the count.
#[tracing::instrument(skip(pool))]
pub async fn report_open_conflicts(pool: &DbPool) -> Result<i64, DbError> {
    let open = crate::store::conflicts::count_open(pool).await?;
    emit_count(OPEN_CONFLICTS, open as f64);
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_names_the_metric_and_its_value() {
        let doc = emf(
            &[Sample {
                name: OPEN_CONFLICTS,
                value: 51.0,
                unit: "Count",
            }],
            1_764_352_800_000,
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_764_352_800_000_i64);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "plexsync");
        assert_eq!(directive["Metrics"][0]["Name"], "OpenConflicts");
        assert_eq!(directive["Metrics"][0]["Unit"], "Count");
        assert_eq!(directive["Dimensions"], json!([[]]));
        // The member named in Metrics must hold the value at the top level.
        assert_eq!(doc["OpenConflicts"], 51.0);
        // One line, as CloudWatch Logs needs it.
        assert!(!doc.to_string().contains('\n'));
    }

    #[tokio::test]
    async fn capture_keeps_exactly_the_printed_lines_of_its_task() {
        let ((), lines) = capture(async {
            emit(&[
                Sample {
                    name: TMDB_REQUESTS,
                    value: 1.0,
                    unit: "Count",
                },
                Sample {
                    name: TMDB_ERRORS,
                    value: 0.0,
                    unit: "Count",
                },
            ]);
        })
        .await;
        assert_eq!(lines.len(), 1);
        let doc: Value = serde_json::from_str(&lines[0]).unwrap();
        let names: Vec<_> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["TmdbRequests", "TmdbErrors"]);
        assert_eq!(
            (doc["TmdbRequests"].clone(), doc["TmdbErrors"].clone()),
            (json!(1.0), json!(0.0))
        );
        // Outside capture nothing is kept (and nothing fails).
        emit_count(OPEN_CONFLICTS, 1.0);
    }
}
