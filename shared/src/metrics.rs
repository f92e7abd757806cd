//! Custom CloudWatch metrics in the Embedded Metric Format: one JSON line on stdout, which
//! CloudWatch Logs turns into a metric. No SDK call and no PutMetricData permission, and
//! locally the line is just a log line.
//!
//! The template's `OpenConflictsAlarm` watches [`OPEN_CONFLICTS`] in namespace [`NAMESPACE`].

use serde_json::{json, Value};

use crate::db::{DbError, DbPool};

pub const NAMESPACE: &str = "plexsync";
pub const OPEN_CONFLICTS: &str = "OpenConflicts";

/// The EMF document for one dimensionless metric value.
pub fn emf(metric: &str, value: f64, unit: &str, timestamp_ms: i64) -> Value {
    json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": metric, "Unit": unit}]
            }]
        },
        metric: value
    })
}

/// Prints the metric as one line. `println!` holds the stdout lock for the whole line, so it is
/// never interleaved with a concurrent log line.
pub fn emit(metric: &str, value: f64, unit: &str) {
    let line = emf(metric, value, unit, chrono::Utc::now().timestamp_millis());
    println!("{line}");
}

/// Counts the unresolved conflicts and emits [`OPEN_CONFLICTS`]; returns the count.
#[tracing::instrument(skip(pool))]
pub async fn report_open_conflicts(pool: &DbPool) -> Result<i64, DbError> {
    let open = crate::store::conflicts::count_open(pool).await?;
    emit(OPEN_CONFLICTS, open as f64, "Count");
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_document_names_the_metric_and_its_value() {
        let doc = emf(OPEN_CONFLICTS, 51.0, "Count", 1_764_352_800_000);
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
}
