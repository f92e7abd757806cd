//! Integration tests against real Postgres and moto_server (started by `make test`).

mod dlq;
mod env_secrets;
mod metrics;
mod migrations;
mod openapi;
mod pool;
mod rate_limit;
mod roles;
mod secrets;
mod sql;
mod template;
mod token_rotation;
mod trigram;
