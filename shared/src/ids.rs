//! Typed row ids. A mapping id, a conflict id and a tracker show id are all small integers, and
//! before these types a function taking `(id, tvshow_id)` would have taken them in either
//! order. Each type has its column's width (`SERIAL` is an int4, `BIGSERIAL` an int8), so the
//! store binds it without a cast, and serialises as the bare number (the JSON API is unchanged).
//!
//! The HTTP edge reads path ids as positive `i64`s; [`RowId::from_request`] turns one into a
//! row id, `None` when no row can have it (an int4 table and a larger number): the caller then
//! answers 404 as for any other id that does not exist.

use std::fmt;

use postgres_types::{FromSql, ToSql};
use serde::{Deserialize, Serialize};

/// A table's primary key type.
pub trait RowId: Copy + fmt::Display {
    /// What a row is called in messages: "mapping 7 does not exist".
    const NAME: &'static str;

    /// The row id for a number from a request; `None` when it is out of the column's range.
    fn from_request(id: i64) -> Option<Self>;
}

macro_rules! row_id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $what:literal) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            Serialize, Deserialize, ToSql, FromSql,
        )]
        #[serde(transparent)]
        #[postgres(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0.into()
            }
        }

        impl RowId for $name {
            const NAME: &'static str = $what;

            fn from_request(id: i64) -> Option<Self> {
                <$inner>::try_from(id).ok().map(Self)
            }
        }
    };
}

row_id!(
    /// `tvshows.id`: a show in the tracker.
    ShowId(i32),
    "tvshow"
);
row_id!(
    /// `plex_show_mappings.id`: which tracker show a media server's show syncs into.
    MappingId(i32),
    "mapping"
);
row_id!(
    /// `plex_conflicts.id`: a show the processor could not map on its own.
    ConflictId(i32),
    "conflict"
);
row_id!(
    /// `plex_pending_events.id`: an event held back until its conflict is resolved.
    PendingEventId(i64),
    "pending event"
);
row_id!(
    /// `plex_webhook_logs.id`: an activity log entry.
    LogId(i64),
    "log entry"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_the_bare_number() {
        assert_eq!(serde_json::to_string(&MappingId(7)).unwrap(), "7");
        assert_eq!(serde_json::from_str::<ShowId>("42").unwrap(), ShowId(42));
        assert_eq!(ConflictId(3).to_string(), "3");
    }

    #[test]
    fn a_request_id_beyond_an_int4_column_names_no_row() {
        assert_eq!(MappingId::from_request(5), Some(MappingId(5)));
        assert_eq!(MappingId::from_request(i64::from(i32::MAX) + 1), None);
        assert_eq!(
            LogId::from_request(i64::from(i32::MAX) + 1),
            Some(LogId(i64::from(i32::MAX) + 1))
        );
    }
}
