//! `mappings` handler against real Postgres and moto Secrets Manager.

mod bulk;
mod conflicted;
mod manage;
mod routes;
mod support;
mod sync;
