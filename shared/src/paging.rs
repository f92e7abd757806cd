//! Cursor pagination, one scheme for every list: a page request (`limit`, the cursor after
//! which to continue), the page, and the opaque cursor clients send back.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PagingError {
    #[error("limit must be an integer from 1 to {MAX_LIMIT}")]
    Limit,
    #[error("cursor is invalid; use nextCursor from a previous page")]
    Cursor,
}

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;

/// Position after the last row of a page: `(created_at, id)` for time-ordered lists, `id` alone
/// for id-ordered ones. Sent to clients as opaque base64url JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(rename = "i")]
    pub id: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<Self, PagingError> {
        if text.len() > 200 {
            return Err(PagingError::Cursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| PagingError::Cursor)?;
        serde_json::from_slice(&bytes).map_err(|_| PagingError::Cursor)
    }
}

/// `?limit=` (default 50, values above 200 are capped) and `?cursor=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// From the `limit` and `cursor` parameters as sent (absent: the defaults).
    pub fn parse(limit: Option<&str>, cursor: Option<&str>) -> Result<Self, PagingError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| n.min(MAX_LIMIT))
                .ok_or(PagingError::Limit)?,
        };
        let after = cursor.map(Cursor::decode).transpose()?;
        Ok(Self { limit, after })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        self.limit + 1
    }

    /// Cuts the fetched rows to a page and computes the next cursor from its last row.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> Cursor) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| key(r).encode())
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: Some(Utc::now()),
            id: 17,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        let c = Cursor {
            created_at: None,
            id: 3,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "!!!", "eyJ4IjoxfQ", &"A".repeat(300)] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_default_cap_and_validate_and_pages_carry_the_next_cursor() {
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 50);
        assert_eq!(PageRequest::parse(Some("500"), None).unwrap().limit, 200);
        assert_eq!(PageRequest::parse(Some("5"), None).unwrap().limit, 5);
        for bad in ["0", "-3", "ten", "1.5"] {
            assert_eq!(
                PageRequest::parse(Some(bad), None),
                Err(PagingError::Limit),
                "{bad}"
            );
        }
        assert_eq!(
            PageRequest::parse(None, Some("!!!")),
            Err(PagingError::Cursor)
        );
        let page = PageRequest {
            limit: 2,
            after: None,
        }
        .page(vec![1, 2, 3], |n| Cursor {
            created_at: None,
            id: *n,
        });
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            Cursor::decode(page.next_cursor.as_deref().unwrap())
                .unwrap()
                .id,
            2
        );
        let page = PageRequest {
            limit: 3,
            after: None,
        }
        .page(vec![1, 2, 3], |n| Cursor {
            created_at: None,
            id: *n,
        });
        assert_eq!(page.next_cursor, None);
    }
}
