//! Small query helpers the schema tests share.

use tokio_postgres::{error::SqlState, Client, Error};

/// The first (text) column of every row `sql` returns.
pub async fn texts(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Asserts that a statement failed with `state`.
pub fn assert_rejected<T: std::fmt::Debug>(result: Result<T, Error>, state: SqlState) {
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(&state), "{err}");
}
