//! End-to-end tests of the processor: real Postgres (fresh database per test), moto for the
//! encryption key secret, TMDB and the Plex server stubbed over HTTP with realistic payloads.

// Proving the message pipeline's future `Send` nests deeper than the default limit (128).
#![recursion_limit = "256"]

mod deadline;
mod delivery;
mod ladder;
mod marking;
mod retention;
mod senders;
mod support;
