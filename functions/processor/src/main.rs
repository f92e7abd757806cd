#![recursion_limit = "256"]
//! `processor` function entry point: builds the state once, then hands each SQS batch to
//! [`processor::handle_batch`].

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use plexsync::config::{or_exit, Env};
use plexsync::processor::{ProcessorState, StartupError};

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    let aws = plexsync::aws::sdk_config().await;
    let state = match ProcessorState::from_env(&Env::from_process(), &aws) {
        Ok(state) => state,
        Err(StartupError::Config(e)) => or_exit(Err(e)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("plexsync: {e}");
            std::process::exit(2)
        }
    };
    let state = &state;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(processor::handle_batch(state, event.payload).await)
    }))
    .await
}
