#![recursion_limit = "256"]
//! `processor` function entry point: builds the state once, then hands each SQS batch to
//! [`processor::handle_batch`].

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use plexsync::config::{or_exit, Env};
use plexsync::processor::ProcessorState;

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    let aws = plexsync::aws::sdk_config().await;
    let state = or_exit(ProcessorState::from_env(&Env::from_process(), &aws));
    let state = &state;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(processor::handle_batch(state, event.payload).await)
    }))
    .await
}
