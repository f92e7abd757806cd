//! `webhook` function: `POST /api/plex/webhook`. Checks the source, rate and secret, validates
//! and filters the Plex payload, and enqueues it for `processor`. Never touches Postgres.

use lambda_http::{run, service_fn, Error, Request};
use plexsync::{
    config::{or_exit, Env},
    ingest::{Ingest, IngestConfig},
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    let config = or_exit(IngestConfig::from_env(&Env::from_process()));
    let aws = plexsync::aws::sdk_config().await;
    let ingest = Ingest::from_aws(config, &aws);
    let ingest = &ingest;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(ingest.handle(req).await)
    }))
    .await
}
