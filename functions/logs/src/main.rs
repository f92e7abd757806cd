//! `logs` function: the activity log, statistics and webhook replay (see [`logs::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(logs::State::from_env, logs::handle).await
}
