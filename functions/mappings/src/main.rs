//! `mappings` function: Plex shows and the tracker shows they sync into. Builds its state once,
//! then hands every request to [`mappings_fn::handle`].

use lambda_http::{run, service_fn, Error, Request};
use plexsync::config::{or_exit, Env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    plexsync::telemetry::init();
    let sdk = plexsync::aws::sdk_config().await;
    let state = or_exit(mappings_fn::State::from_env(&Env::from_process(), &sdk));
    let state = &state;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(mappings_fn::handle(state, req).await)
    }))
    .await
}
