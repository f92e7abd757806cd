//! Every sender's settings and webhook URL, and the Jellyfin / Emby edges' settings:
//!
//! - `GET /api/senders`: Plex, Jellyfin and Emby: configured or not, enabled, whose plays
//!   count, and the webhook URL to paste into each server (once it is configured).
//! - `PUT /api/senders/{sender}` (`jellyfin`, `emby`): enable the edge and name your account on
//!   that server; creates the webhook secret if there is none yet. Plex is set up through
//!   `POST /api/plex/config` (it needs a plex.tv token).

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    api::{self, json, ApiError, StrictBody},
    crypto::random_token,
    senders::Sender,
    store::{
        senders::{self as store, SaveSender, SenderSettings},
        settings,
    },
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::{sender_webhook_url, stored_webhook_secret, State, WEBHOOK_SECRET_BYTES};

/// One sender as `GET /api/senders` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderView {
    sender: Sender,
    configured: bool,
    enabled: bool,
    /// Plex: the plex.tv account; Jellyfin / Emby: the account configured as yours.
    account: Option<String>,
    allowed_accounts: serde_json::Value,
    auto_add_shows: bool,
    auto_mark_watched: bool,
    last_webhook_received: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the server posts (with the secret); `null` until the sender is configured.
    webhook_url: Option<String>,
}

impl SenderView {
    fn unconfigured(sender: Sender) -> Self {
        Self {
            sender,
            configured: false,
            enabled: false,
            account: None,
            allowed_accounts: serde_json::json!([]),
            auto_add_shows: true,
            auto_mark_watched: true,
            last_webhook_received: None,
            webhook_url: None,
        }
    }

    fn from_settings(s: SenderSettings, url: Option<String>) -> Self {
        Self {
            sender: s.sender,
            configured: true,
            enabled: s.enabled,
            account: Some(s.account),
            allowed_accounts: s.allowed_accounts,
            auto_add_shows: s.auto_add_shows,
            auto_mark_watched: s.auto_mark_watched,
            last_webhook_received: s.last_webhook_received,
            webhook_url: url,
        }
    }
}

#[derive(Serialize)]
struct SendersResponse {
    senders: Vec<SenderView>,
}

pub async fn list(state: &State) -> Result<Response<Body>, ApiError> {
    let secret = stored_webhook_secret(state).await?;
    let url = |sender| {
        secret
            .as_ref()
            .map(|s| sender_webhook_url(&state.public_base_url, sender, s))
    };
    let client = state.api.pool.get().await?;
    let stored = settings::load(&client).await?;
    drop(client);
    let plex = match stored {
        None => SenderView::unconfigured(Sender::Plex),
        Some(cfg) => SenderView {
            sender: Sender::Plex,
            configured: true,
            enabled: cfg.enabled,
            account: cfg.account_name,
            allowed_accounts: cfg.allowed_accounts.to_json(),
            auto_add_shows: cfg.auto_add_shows,
            auto_mark_watched: cfg.auto_mark_watched,
            last_webhook_received: cfg.last_webhook_received,
            webhook_url: url(Sender::Plex),
        },
    };
    let mut stored = store::list(&state.api.pool).await?;
    let mut senders = vec![plex];
    for sender in [Sender::Jellyfin, Sender::Emby] {
        senders.push(match stored.iter().position(|s| s.sender == sender) {
            Some(i) => SenderView::from_settings(stored.swap_remove(i), url(sender)),
            None => SenderView::unconfigured(sender),
        });
    }
    Ok(json(StatusCode::OK, &SendersResponse { senders }))
}

/// `PUT /api/senders/{sender}` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SaveBody {
    /// Your user name or user id on that server: your plays count.
    account: String,
    enabled: Option<bool>,
    /// Other users (names or ids) whose plays also count. Omitted: the stored list is kept.
    allowed_accounts: Option<Vec<String>>,
    auto_add_shows: Option<bool>,
    auto_mark_watched: Option<bool>,
}

impl StrictBody for SaveBody {
    const FIELDS: &'static [&'static str] = &[
        "account",
        "enabled",
        "allowedAccounts",
        "autoAddShows",
        "autoMarkWatched",
    ];
}

const MAX_ALLOWED_ACCOUNTS: usize = 50;

/// A user name or id: 1-100 characters, no control characters.
fn valid_account(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.len() <= 100 && !s.chars().any(char::is_control)
}

/// The sender named in the path, if it is one configured here.
fn edge_sender(name: &str) -> Result<Sender, ApiError> {
    match Sender::parse(name) {
        Some(Sender::Plex) => Err(ApiError::BadRequest(
            "Plex is set up with POST /api/plex/config (it needs a plex.tv token)".into(),
        )),
        Some(sender) => Ok(sender),
        None => Err(ApiError::NotFound(format!(
            "no sender {name:?}; the senders are plex, jellyfin and emby"
        ))),
    }
}

pub async fn save(state: &State, req: &Request, name: &str) -> Result<Response<Body>, ApiError> {
    let sender = edge_sender(name)?;
    let body: SaveBody = api::parse_body(req)?;
    if !valid_account(&body.account) {
        return Err(ApiError::BadRequest(
            "account is your user name or user id on that server (1-100 characters)".into(),
        ));
    }
    let allowed = match &body.allowed_accounts {
        Some(list) if list.len() > MAX_ALLOWED_ACCOUNTS => {
            return Err(ApiError::BadRequest(format!(
                "allowedAccounts takes at most {MAX_ALLOWED_ACCOUNTS} entries"
            )))
        }
        Some(list) if !list.iter().all(|a| valid_account(a)) => {
            return Err(ApiError::BadRequest(
                "allowedAccounts entries are user names or user ids (1-100 characters)".into(),
            ))
        }
        Some(list) => Some(serde_json::json!(list
            .iter()
            .map(|a| a.trim())
            .collect::<Vec<_>>())),
        None => None,
    };
    // The secret first: a Secrets Manager failure stores nothing.
    let secret = ensure_webhook_secret(state).await?;
    let saved = store::save(
        &state.api.pool,
        &SaveSender {
            sender,
            account: body.account.trim(),
            enabled: body.enabled,
            allowed_accounts: allowed.as_ref(),
            auto_add_shows: body.auto_add_shows,
            auto_mark_watched: body.auto_mark_watched,
        },
    )
    .await?;
    tracing::info!(%sender, enabled = saved.enabled, "sender settings saved");
    let url = sender_webhook_url(&state.public_base_url, sender, &secret);
    Ok(json(
        StatusCode::OK,
        &SenderView::from_settings(saved, Some(url)),
    ))
}

/// The webhook secret every sender's URL carries; generated (and stored) when there is none.
async fn ensure_webhook_secret(state: &State) -> Result<SecretString, ApiError> {
    if let Some(secret) = stored_webhook_secret(state).await? {
        return Ok(secret);
    }
    let secret = SecretString::from(random_token(WEBHOOK_SECRET_BYTES));
    state
        .api
        .secrets
        .put(&state.webhook_secret_id, &secret)
        .await?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jellyfin_and_emby_are_configured_here() {
        assert_eq!(edge_sender("jellyfin").unwrap(), Sender::Jellyfin);
        assert_eq!(edge_sender("Emby").unwrap(), Sender::Emby);
        assert!(matches!(edge_sender("plex"), Err(ApiError::BadRequest(_))));
        assert!(matches!(edge_sender("kodi"), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn accounts_are_short_printable_names_or_ids() {
        assert!(valid_account("alice"));
        assert!(valid_account("5f0c7a1e-3b2d-4c9a-8e7f-6d5c4b3a2910"));
        assert!(!valid_account("  "));
        assert!(!valid_account("a\nb"));
        assert!(!valid_account(&"x".repeat(101)));
    }
}
