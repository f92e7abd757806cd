//! `config` function: `GET/POST/DELETE /api/plex/config` (see the library, [`config::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(config::State::from_env, config::handle).await
}
