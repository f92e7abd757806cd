//! `media_senders`: the settings of the Jellyfin and Emby edges (Plex's live in `plex_config`).

use chrono::{DateTime, Utc};

use crate::{
    db::{DbError, DbPool},
    senders::Sender,
    store::settings::USER_ID,
};

/// One sender's settings as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SenderSettings {
    pub sender: Sender,
    pub enabled: bool,
    /// The user's own account on that server (user name or user id).
    pub account: String,
    /// Further accounts (names or ids, JSON strings) whose plays also count.
    pub allowed_accounts: serde_json::Value,
    pub auto_add_shows: bool,
    pub auto_mark_watched: bool,
    /// The newest arrival among the sender's logged messages (or the one stored before those
    /// were logged with it).
    pub last_webhook_received: Option<DateTime<Utc>>,
}

/// The settings' columns. `last_webhook_received` is the newest arrival on the sender's log
/// rows (one probe of `idx_webhook_logs_sender_received`), never older than the column, which
/// holds what was recorded before arrivals were logged.
macro_rules! columns {
    () => {
        "sender, enabled, account, allowed_accounts, auto_add_shows, auto_mark_watched,
         GREATEST(last_webhook_received,
                  (SELECT max(l.received_at) FROM plex_webhook_logs l
                    WHERE l.sender = media_senders.sender AND l.received_at IS NOT NULL))"
    };
}

const SELECT: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM media_senders WHERE user_id = $1"
);

fn from_row(r: &tokio_postgres::Row) -> SenderSettings {
    let sender: String = r.get(0);
    SenderSettings {
        // The column's CHECK admits only jellyfin and emby.
        sender: Sender::parse(&sender).unwrap_or_default(),
        enabled: r.get(1),
        account: r.get(2),
        allowed_accounts: r.get(3),
        auto_add_shows: r.get(4),
        auto_mark_watched: r.get(5),
        last_webhook_received: r.get(6),
    }
}

/// The settings of `sender`, `None` when it is not set up (read on every message of that sender).
pub async fn find(
    client: &impl deadpool_postgres::GenericClient,
    sender: Sender,
) -> Result<Option<SenderSettings>, DbError> {
    let sql = format!("{SELECT} AND sender = $2");
    let row = client
        .query_opt(
            &client.prepare_cached(&sql).await?,
            &[&USER_ID, &sender.as_str()],
        )
        .await?;
    Ok(row.as_ref().map(from_row))
}

/// Every configured Jellyfin / Emby edge.
#[tracing::instrument(skip(pool))]
pub async fn list(pool: &DbPool) -> Result<Vec<SenderSettings>, DbError> {
    let client = pool.get().await?;
    let rows = client
        .query(&format!("{SELECT} ORDER BY sender"), &[&USER_ID])
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// A validated save. `None` keeps the stored value (or the column default on first save).
#[derive(Debug)]
pub struct SaveSender<'a> {
    pub sender: Sender,
    pub account: &'a str,
    pub enabled: Option<bool>,
    pub allowed_accounts: Option<&'a serde_json::Value>,
    pub auto_add_shows: Option<bool>,
    pub auto_mark_watched: Option<bool>,
}

/// Creates or updates one sender's settings; returns them as stored.
#[tracing::instrument(skip(pool))]
pub async fn save(pool: &DbPool, save: &SaveSender<'_>) -> Result<SenderSettings, DbError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            concat!(
                "INSERT INTO media_senders (user_id, sender, account, enabled, allowed_accounts,
                                        auto_add_shows, auto_mark_watched)
             VALUES ($1, $2, $3, COALESCE($4, true), COALESCE($5, '[]'::jsonb),
                     COALESCE($6, true), COALESCE($7, true))
             ON CONFLICT (user_id, sender) DO UPDATE SET
                 account = EXCLUDED.account,
                 enabled = COALESCE($4, media_senders.enabled),
                 allowed_accounts = COALESCE($5, media_senders.allowed_accounts),
                 auto_add_shows = COALESCE($6, media_senders.auto_add_shows),
                 auto_mark_watched = COALESCE($7, media_senders.auto_mark_watched),
                 updated_at = now()
             RETURNING ",
                columns!()
            ),
            &[
                &USER_ID,
                &save.sender.as_str(),
                &save.account,
                &save.enabled,
                &save.allowed_accounts,
                &save.auto_add_shows,
                &save.auto_mark_watched,
            ],
        )
        .await?;
    Ok(from_row(&row))
}
