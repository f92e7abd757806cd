//! The import: its routes, and imports end to end through the queue and the processor.
// The pipeline's futures (driven through the processor here) nest deeper than the default limit.
#![recursion_limit = "256"]

mod flow;
mod routes;
mod support;
