//! `plex_config`: the single user's Plex settings. The encrypted token is read back only by
//! the functions that call the Plex server (processor, history sync); it never leaves them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use crate::accounts::AllowedAccounts;
use crate::db::{DbError, DbPool};

/// The single-user deployment keeps its settings in row `user_id = 1`.
pub const USER_ID: i32 = 1;

/// The stored Plex token, still encrypted (`crypto::Keyring::decrypt` opens it). Its `Debug`
/// does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken(pub String);

impl std::fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptedToken(..)")
    }
}

/// The stored settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PlexSettings {
    pub enabled: bool,
    pub auto_add_shows: bool,
    pub auto_mark_watched: bool,
    pub server_url: Option<String>,
    /// The user allowed a plain `http://` server URL (a server on their own network): the token
    /// may then travel unencrypted. Without it only https is used.
    pub allow_insecure_http: bool,
    pub server_name: Option<String>,
    pub server_uuid: Option<String>,
    pub account_id: Option<i64>,
    pub account_name: Option<String>,
    /// Other accounts whose plays count (usernames as strings, server account ids as numbers).
    pub allowed_accounts: AllowedAccounts,
    /// The newest arrival among the logged Plex messages (or the one stored before those
    /// were logged with it).
    pub last_webhook_received: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub encrypted_token: EncryptedToken,
}

#[tracing::instrument(skip(client))]
pub async fn load(client: &impl GenericClient) -> Result<Option<PlexSettings>, DbError> {
    let row = client
        .query_opt(
            &client.prepare_cached("SELECT enabled, auto_add_shows, auto_mark_watched, plex_server_url, plex_server_name,
                    plex_server_uuid, plex_account_id, plex_account_name,
                    GREATEST(last_webhook_received,
                             (SELECT max(received_at) FROM plex_webhook_logs
                               WHERE sender = 'plex' AND received_at IS NOT NULL)),
                    updated_at, allowed_accounts, plex_token, allow_insecure_http
               FROM plex_config WHERE user_id = $1").await?,
            &[&USER_ID],
        )
        .await?;
    Ok(row.map(|r| PlexSettings {
        enabled: r.get(0),
        auto_add_shows: r.get(1),
        auto_mark_watched: r.get(2),
        server_url: r.get(3),
        server_name: r.get(4),
        server_uuid: r.get(5),
        account_id: r.get(6),
        account_name: r.get(7),
        last_webhook_received: r.get(8),
        updated_at: r.get(9),
        allowed_accounts: AllowedAccounts::from_json(&r.get(10)),
        encrypted_token: EncryptedToken(r.get(11)),
        allow_insecure_http: r.get(12),
    }))
}

/// A validated save. `None` flags keep the stored value (or the column default on first save).
#[derive(Debug)]
pub struct SaveSettings<'a> {
    /// Already encrypted (`crypto::Keyring::encrypt`). `None` keeps the stored ciphertext as it
    /// is (a settings-only save); the first save must give one.
    pub encrypted_token: Option<&'a str>,
    pub server_url: Option<&'a str>,
    /// Given on every save: the opt-in goes with the URL it was given for.
    pub allow_insecure_http: bool,
    pub server_name: Option<&'a str>,
    pub server_uuid: Option<&'a str>,
    pub account_id: i64,
    pub account_name: &'a str,
    pub enabled: Option<bool>,
    pub auto_add_shows: Option<bool>,
    pub auto_mark_watched: Option<bool>,
    /// `None` keeps the stored list (empty on first save).
    pub allowed_accounts: Option<&'a AllowedAccounts>,
}

/// Inserts or updates the configuration row; runs on the caller's transaction so the
/// webhook-secret write can share its fate. Without a token the stored one stays (Postgres
/// checks NOT NULL on the proposed row before `ON CONFLICT`, hence the lookup in `VALUES`; with
/// no row yet it fails).
#[tracing::instrument(skip_all)]
pub async fn save(client: &impl GenericClient, cfg: &SaveSettings<'_>) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO plex_config
                    (user_id, plex_token, plex_server_url, plex_server_name, plex_server_uuid,
                     plex_account_id, plex_account_name, enabled, auto_add_shows, auto_mark_watched,
                     allowed_accounts, allow_insecure_http)
             VALUES ($1, COALESCE($2, (SELECT plex_token FROM plex_config WHERE user_id = $1)),
                     $3, $4, $5, $6, $7, COALESCE($8, true), COALESCE($9, true),
                     COALESCE($10, true), COALESCE($11, '[]'::jsonb), $12)
             ON CONFLICT (user_id) DO UPDATE SET
                    plex_token        = COALESCE($2, plex_config.plex_token),
                    plex_server_url   = EXCLUDED.plex_server_url,
                    plex_server_name  = EXCLUDED.plex_server_name,
                    plex_server_uuid  = EXCLUDED.plex_server_uuid,
                    plex_account_id   = EXCLUDED.plex_account_id,
                    plex_account_name = EXCLUDED.plex_account_name,
                    enabled           = COALESCE($8, plex_config.enabled),
                    auto_add_shows    = COALESCE($9, plex_config.auto_add_shows),
                    auto_mark_watched = COALESCE($10, plex_config.auto_mark_watched),
                    allowed_accounts  = COALESCE($11, plex_config.allowed_accounts),
                    allow_insecure_http = EXCLUDED.allow_insecure_http,
                    updated_at        = now()",
            &[
                &USER_ID,
                &cfg.encrypted_token,
                &cfg.server_url,
                &cfg.server_name,
                &cfg.server_uuid,
                &cfg.account_id,
                &cfg.account_name,
                &cfg.enabled,
                &cfg.auto_add_shows,
                &cfg.auto_mark_watched,
                &cfg.allowed_accounts.map(AllowedAccounts::to_json),
                &cfg.allow_insecure_http,
            ],
        )
        .await?;
    Ok(())
}

/// Replaces the stored token's ciphertext with `new` (the same token sealed with the current
/// key), only while it is still `old`: a token saved meanwhile is newer and stays. Whether the
/// row changed.
#[tracing::instrument(skip_all)]
pub async fn replace_encrypted_token(
    client: &impl GenericClient,
    old: &EncryptedToken,
    new: &str,
) -> Result<bool, DbError> {
    let n = client
        .execute(
            "UPDATE plex_config SET plex_token = $3
              WHERE user_id = $1 AND plex_token = $2",
            &[&USER_ID, &old.0, &new],
        )
        .await?;
    Ok(n > 0)
}

/// Soft disable: the row, the mappings and the history stay. `false` when nothing is configured.
#[tracing::instrument(skip(pool))]
pub async fn disable(pool: &DbPool) -> Result<bool, DbError> {
    let client = pool.get().await?;
    let n = client
        .execute(
            "UPDATE plex_config SET enabled = false, updated_at = now() WHERE user_id = $1",
            &[&USER_ID],
        )
        .await?;
    Ok(n > 0)
}
