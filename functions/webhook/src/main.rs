//! `webhook` function: `POST /api/plex/webhook`, `/api/jellyfin/webhook`, `/api/emby/webhook`: checks the source, rate and secret, validates and filters the sender's payload, and enqueues it for `processor`. Never touches Postgres (see [`webhook::handle`]).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    plexsync::lambda::serve_http(webhook::State::from_env, webhook::handle).await
}
