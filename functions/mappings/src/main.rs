//! `mappings` function: Plex shows and the tracker shows they sync into (see [`mappings::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(mappings::State::from_env, mappings::handle).await
}
