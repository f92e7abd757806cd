#![recursion_limit = "256"]
//! plexsync's shared library: everything the Lambda functions have in common.
//!
//! Each function's `main.rs` builds its state once (configuration, clients, pool) and hands
//! events to the modules here.

pub mod api;
pub mod aws;
pub mod config;
pub mod crypto;
pub mod custom_resource;
pub mod db;
pub mod episodes;
pub mod error;
pub mod http;
pub mod ingest;
pub mod matching;
pub mod metrics;
pub mod payload;
pub mod plex;
pub mod plex_tv;
pub mod processor;
pub mod queue;
pub mod replay;
pub mod resolution;
pub mod secrets;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tls;
pub mod tmdb;

#[cfg(feature = "testing")]
pub mod testing;

pub use error::ApiError;
