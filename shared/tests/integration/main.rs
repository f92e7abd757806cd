//! Integration tests against real Postgres and moto_server (started by `make test`).

mod custom_resource;
mod dlq;
mod metrics;
mod migrations;
mod openapi;
mod secrets;
mod template;
