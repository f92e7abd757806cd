//! `media_senders`: the settings of the Jellyfin and Emby senders (Plex's are in
//! [`super::settings`]).

use deadpool_postgres::GenericClient;

use crate::{accounts::AllowedAccounts, db::DbError, senders::Sender, store::settings::USER_ID};

/// One sender's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderSettings {
    pub enabled: bool,
    pub auto_add_shows: bool,
    pub auto_mark_watched: bool,
    /// Other accounts whose plays count (names or ids).
    pub allowed_accounts: AllowedAccounts,
    /// The user's own account on that server (name or id).
    pub account: String,
}

/// The settings of `sender`, `None` when it is not set up.
pub async fn load(
    client: &impl GenericClient,
    sender: Sender,
) -> Result<Option<SenderSettings>, DbError> {
    let row = client
        .query_opt(
            "SELECT enabled, auto_add_shows, auto_mark_watched, allowed_accounts, account
               FROM media_senders WHERE user_id = $1 AND sender = $2",
            &[&USER_ID, &sender.as_str()],
        )
        .await?;
    Ok(row.map(|r| SenderSettings {
        enabled: r.get(0),
        auto_add_shows: r.get(1),
        auto_mark_watched: r.get(2),
        allowed_accounts: AllowedAccounts::from_json(&r.get(3)),
        account: r.get(4),
    }))
}
