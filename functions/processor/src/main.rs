// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]
//! `processor` function: consumes the webhook queue's SQS batches (see [`processor::handle_batch`])
//! and runs the daily retention ([`processor::retention`]).

use processor::Processor;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    plexsync::lambda::serve_events(Processor::from_env, processor::handle).await
}
