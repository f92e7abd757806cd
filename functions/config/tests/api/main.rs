//! `config` handler against real Postgres, moto Secrets Manager and a wiremock plex.tv.

mod routes;
mod save;
mod senders;
mod support;
mod view;
