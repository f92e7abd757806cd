//! `conflicts` handler against real Postgres and moto Secrets Manager.

mod bulk;
mod flow;
mod race;
mod replay;
mod resolve;
mod routes;
mod support;
mod unmatched;
