//! End-to-end tests of the processor: real Postgres (fresh database per test), moto for the
//! encryption key secret, TMDB and the Plex server stubbed over HTTP with realistic payloads.

#![recursion_limit = "256"]

mod delivery;
mod ladder;
mod marking;
mod senders;
mod support;
