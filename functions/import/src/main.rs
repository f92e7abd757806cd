//! `import` function: imports the user's Plex watch history (see [`import::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(import::State::from_env, import::handle).await
}
