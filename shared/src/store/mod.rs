//! All SQL, one module per table (or pair of tables that change together). Each function here
//! is one query or one transaction; nothing outside `store` writes SQL.

pub mod conflicts;
pub mod imports;
pub mod logs;
pub mod mappings;
pub mod migrations;
pub mod processed;
pub mod rate_limit;
pub mod roles;
pub mod senders;
pub mod settings;
pub mod shows;
pub mod tmdb_cache;
