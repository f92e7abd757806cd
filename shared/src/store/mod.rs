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

use crate::{
    db::DbError,
    ids::{ConflictId, MappingId, ShowId},
};

/// Why the user's decision about a show (confirming a mapping, resolving a conflict) was not
/// applied.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError {
    #[error("mapping {0} does not exist")]
    MappingNotFound(MappingId),
    #[error("conflict {0} does not exist")]
    ConflictNotFound(ConflictId),
    #[error("conflict {0} is already resolved")]
    AlreadyResolved(ConflictId),
    #[error("tvshow {0} does not exist")]
    UnknownShow(ShowId),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for DecisionError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}
