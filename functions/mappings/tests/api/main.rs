//! `mappings` handler against real Postgres and moto Secrets Manager.

mod manage;
mod routes;
mod support;
mod sync;
