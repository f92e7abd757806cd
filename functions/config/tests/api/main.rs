//! `config` handler against real Postgres, moto Secrets Manager and a wiremock plex.tv.

mod keep_token;
mod routes;
mod save;
mod senders;
mod support;
mod view;
