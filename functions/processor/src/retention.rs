//! Retention: activity-log rows and processed idempotency keys older than `RETENTION_DAYS`
//! (default 90) are deleted once a day. An EventBridge schedule invokes this function with
//! `{"task":"retention"}` (template.yaml), so nothing runs when there is nothing to do and no
//! server is needed. Deletes go in bounded batches, and the run stops while time is left.

use std::time::Duration;

use chrono::{DateTime, Utc};
use plexsync::db::{DbError, DbPool};
use plexsync::env::{Env, EnvError};
use plexsync::store::{logs, processed};
use serde::Serialize;
use tokio::time::Instant;

/// Days kept when `RETENTION_DAYS` is not set.
pub const DEFAULT_DAYS: u32 = 90;

/// Processed keys are kept at least this long: see [`processed::MIN_KEEP_DAYS`].
pub const MIN_PROCESSED_KEY_DAYS: u32 = processed::MIN_KEEP_DAYS;

/// Rows per DELETE: a few milliseconds each, far inside the statement timeout.
const BATCH: i64 = 5_000;

/// Kept before the deadline: one more batch must be able to finish.
const MARGIN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self { days: DEFAULT_DAYS }
    }
}

impl Retention {
    /// `RETENTION_DAYS`: 1 to 3650, default 90.
    pub fn from_env(env: &Env) -> Result<Self, EnvError> {
        let Some(raw) = env.optional("RETENTION_DAYS") else {
            return Ok(Self::default());
        };
        match raw.trim().parse::<u32>() {
            Ok(days) if (1..=3650).contains(&days) => Ok(Self { days }),
            _ => Err(EnvError::Invalid {
                name: "RETENTION_DAYS",
                reason: format!("{raw:?} is not a number of days from 1 to 3650"),
            }),
        }
    }

    /// Log rows written before this go.
    pub fn log_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.days))
    }

    /// Processed keys recorded before this go: never later than [`MIN_PROCESSED_KEY_DAYS`] ago.
    pub fn processed_key_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::days(i64::from(self.days.max(MIN_PROCESSED_KEY_DAYS)))
    }
}

/// What a run deleted; the function's answer to the schedule (and its log line).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    pub logs_deleted: u64,
    pub processed_keys_deleted: u64,
    /// False when the run stopped for time (or an error) with old rows left: tomorrow's run
    /// continues.
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Deletes what is past retention, in batches, until done or `deadline` is near.
pub async fn run(
    pool: &DbPool,
    retention: Retention,
    now: DateTime<Utc>,
    deadline: Instant,
) -> RetentionReport {
    let mut report = RetentionReport::default();
    match delete_all(pool, retention, now, deadline, &mut report).await {
        Ok(complete) => report.complete = complete,
        Err(e) => {
            tracing::error!(error = %e, "retention run failed; the next run continues");
            report.error = Some(e.to_string());
        }
    }
    tracing::info!(
        days = retention.days,
        logs_deleted = report.logs_deleted,
        processed_keys_deleted = report.processed_keys_deleted,
        complete = report.complete,
        "retention run"
    );
    report
}

async fn delete_all(
    pool: &DbPool,
    retention: Retention,
    now: DateTime<Utc>,
    deadline: Instant,
    report: &mut RetentionReport,
) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let time_left = || deadline.saturating_duration_since(Instant::now()) > MARGIN;
    let log_cutoff = retention.log_cutoff(now);
    loop {
        if !time_left() {
            return Ok(false);
        }
        let n = logs::delete_older_than(&client, log_cutoff, BATCH).await?;
        report.logs_deleted += n;
        if n < BATCH as u64 {
            break;
        }
    }
    let key_cutoff = retention.processed_key_cutoff(now);
    loop {
        if !time_left() {
            return Ok(false);
        }
        let n = processed::delete_older_than(&client, key_cutoff, BATCH).await?;
        report.processed_keys_deleted += n;
        if n < BATCH as u64 {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_come_from_the_environment_within_bounds() {
        assert_eq!(
            Retention::from_env(&Env::from_map([("X", "y")])).unwrap(),
            Retention { days: 90 }
        );
        assert_eq!(
            Retention::from_env(&Env::from_map([("RETENTION_DAYS", "30")])).unwrap(),
            Retention { days: 30 }
        );
        for bad in ["0", "-1", "ninety", "5000"] {
            let err = Retention::from_env(&Env::from_map([("RETENTION_DAYS", bad)])).unwrap_err();
            assert!(err.to_string().contains("RETENTION_DAYS"), "{err}");
        }
    }

    #[test]
    fn processed_keys_are_kept_at_least_the_sqs_windows() {
        let now = Utc::now();
        let short = Retention { days: 7 };
        assert_eq!(short.log_cutoff(now), now - chrono::Duration::days(7));
        assert_eq!(
            short.processed_key_cutoff(now),
            now - chrono::Duration::days(28)
        );
        let long = Retention { days: 90 };
        assert_eq!(
            long.processed_key_cutoff(now),
            now - chrono::Duration::days(90)
        );
    }
}
