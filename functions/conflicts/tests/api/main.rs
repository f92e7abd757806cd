//! `conflicts` handler against real Postgres and moto Secrets Manager.

mod replay;
mod resolve;
mod routes;
mod support;
mod unmatched;
