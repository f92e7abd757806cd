#![warn(unreachable_pub)]
//! plexsync's shared library (crate `plexsync`, folder `shared/`).
//!
//! **Where code lives: code used by one function lives in that function's crate
//! (`functions/<name>/src/`); `shared` holds the domain and the adapters used by two or more
//! functions, and all SQL sits behind [`store`].** So the webhook handler is in
//! `functions/webhook`, the CloudFormation migration resource in `functions/migrate`, and the
//! per-message [`pipeline`] is here because both `processor` and `conflicts` (replaying a
//! conflict's pending events) run it.
//!
//! Each function's `main.rs` is a few lines: [`lambda::serve_http`] (or
//! [`lambda::serve_events`]) builds the function's state once from the environment and hands it
//! every event.

pub mod accounts;
pub mod api;
pub mod crypto;
pub mod db;
pub mod env;
pub mod episodes;
pub mod ids;
pub mod lambda;
pub mod matching;
pub mod metrics;
pub mod paging;
pub mod payload;
pub mod pipeline;
pub mod plex;
pub mod queue;
pub mod secrets;
pub mod senders;
pub mod store;
pub mod tls;
pub mod tmdb;

#[cfg(feature = "testing")]
pub mod testing;
