//! Whose plays count: the user's own (Plex marks them with the `user` flag; Jellyfin and Emby
//! name the configured account) and those of the household members the user allows.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payload::AccountRef;
use crate::senders::same_user_id;

/// At most this many allowed accounts.
pub const MAX_ALLOWED_ACCOUNTS: usize = 50;

/// One allowed account: a server account id, or a user name (or a Jellyfin / Emby user id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AllowedAccount {
    Id(u32),
    Name(String),
}

/// The household members whose plays also count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AllowedAccounts(Vec<AllowedAccount>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowedAccountsError {
    #[error("allowedAccounts takes at most {MAX_ALLOWED_ACCOUNTS} entries")]
    TooMany,
    #[error("allowedAccounts entries are Plex usernames (1-100 characters) or account ids")]
    BadName,
}

impl AllowedAccounts {
    /// A list the user submitted: at most [`MAX_ALLOWED_ACCOUNTS`], names of 1 to 100
    /// characters without control characters.
    pub fn new(list: Vec<AllowedAccount>) -> Result<Self, AllowedAccountsError> {
        if list.len() > MAX_ALLOWED_ACCOUNTS {
            return Err(AllowedAccountsError::TooMany);
        }
        for entry in &list {
            if let AllowedAccount::Name(name) = entry {
                let name = name.trim();
                if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                    return Err(AllowedAccountsError::BadName);
                }
            }
        }
        Ok(Self(list))
    }

    /// The stored list; entries that are neither an id nor a name are left out.
    pub fn from_json(value: &Value) -> Self {
        let entries = value.as_array().into_iter().flatten();
        Self(
            entries
                .filter_map(|v| match v {
                    Value::Number(n) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .map(AllowedAccount::Id),
                    Value::String(s) => Some(AllowedAccount::Name(s.clone())),
                    _ => None,
                })
                .collect(),
        )
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Array(Vec::new()))
    }

    /// Whether a play by `account` counts because the user allowed it.
    pub fn permits(&self, account: &AccountRef) -> bool {
        self.0.iter().any(|entry| match entry {
            AllowedAccount::Id(id) => account.id == Some(i64::from(*id)),
            AllowedAccount::Name(name) => names_account(name, account),
        })
    }
}

/// Whether `entry` (a user name, a numeric Plex id or a Jellyfin / Emby user id) names `account`.
pub fn names_account(entry: &str, account: &AccountRef) -> bool {
    let entry = entry.trim();
    let title = account.title.as_deref().unwrap_or_default();
    (!title.is_empty() && entry.eq_ignore_ascii_case(title))
        || (entry.parse::<i64>().ok().is_some() && entry.parse::<i64>().ok() == account.id)
        || account
            .uuid
            .as_deref()
            .is_some_and(|uuid| same_user_id(entry, uuid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bob() -> AccountRef {
        AccountRef {
            id: Some(2),
            title: Some("bob".into()),
            is_webhook_user: false,
            owns_server: false,
            uuid: None,
        }
    }

    #[test]
    fn ids_names_and_numeric_names_permit_and_others_do_not() {
        for allowed in [json!(["Bob"]), json!([2]), json!(["2"]), json!([" bob "])] {
            assert!(
                AllowedAccounts::from_json(&allowed).permits(&bob()),
                "{allowed}"
            );
        }
        for allowed in [
            json!([]),
            json!(["carol", 3]),
            json!([""]),
            json!([{"id": 2}]),
        ] {
            assert!(
                !AllowedAccounts::from_json(&allowed).permits(&bob()),
                "{allowed}"
            );
        }
    }

    #[test]
    fn submitted_lists_are_bounded_and_round_trip() {
        let names = vec![AllowedAccount::Name("x".into()); MAX_ALLOWED_ACCOUNTS + 1];
        assert_eq!(
            AllowedAccounts::new(names),
            Err(AllowedAccountsError::TooMany)
        );
        for bad in ["", "   ", "a\u{7}b", &"n".repeat(101)] {
            let list = vec![AllowedAccount::Name(bad.to_string())];
            assert_eq!(
                AllowedAccounts::new(list),
                Err(AllowedAccountsError::BadName),
                "{bad:?}"
            );
        }
        let ok = AllowedAccounts::new(vec![
            AllowedAccount::Name("bob".into()),
            AllowedAccount::Id(7),
        ])
        .unwrap();
        assert_eq!(ok.to_json(), json!(["bob", 7]));
        assert_eq!(AllowedAccounts::from_json(&ok.to_json()), ok);
    }
}
