//! The harness both suites of the `logs` function share: a fresh database, the API context on
//! moto, and a FIFO queue with its dead-letter queue.

use logs::State;
use plexsync::testing::{fifo_queue_with_dlq, fresh_db, moto_config, TestDb};

pub struct Harness {
    pub state: State,
    pub db: TestDb,
}

impl Harness {
    pub async fn new() -> Self {
        let db = fresh_db().await;
        let sdk = moto_config().await;
        let (api, _) = plexsync::api::testing::context(db.pool.clone(), &sdk).await;
        let (queue_url, dlq_url) = fifo_queue_with_dlq(&sdk).await;
        let state = State {
            api,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            dlq_url,
        };
        Self { state, db }
    }
}
