//! SQL for the management API, one module per resource. Each function here is one query or one
//! transaction; the HTTP handlers never write SQL.

pub mod conflicts;
pub mod logs;
pub mod mappings;
pub mod roles;
pub mod senders;
pub mod settings;
pub mod shows;
