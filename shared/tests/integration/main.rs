//! Integration tests against real Postgres and moto_server (started by `make test`).

mod metrics;
mod migrations;
mod openapi;
mod secrets;
