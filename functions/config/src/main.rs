//! `config` function: `GET/POST/DELETE /api/plex/config`, `GET /api/senders`, `PUT /api/senders/{sender}` (see the library, [`config::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(config::State::from_env, config::handle).await
}
