//! `conflicts` function: shows the processor could not map on its own (see [`conflicts::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(conflicts::State::from_env, conflicts::handle).await
}
