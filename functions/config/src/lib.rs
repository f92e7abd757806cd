#![warn(unreachable_pub)]
//! `config` handler: the Plex connection settings.
//!
//! - `GET /api/plex/config`: the settings, never the token.
//! - `POST /api/plex/config`: validate the token with plex.tv, discover the server, encrypt the
//!   token, keep (or create, or rotate) the webhook secret, store; nothing is stored on failure.
//!   Without `plexToken` the stored token is checked and kept as it is (settings-only save).
//! - `DELETE /api/plex/config`: soft disable; mappings and history stay.
//! - `GET /api/senders`, `PUT /api/senders/{sender}`: every sender's webhook URL, and the
//!   Jellyfin / Emby settings (see [`senders`]).

use lambda_http::{http::StatusCode, Body, Request, Response};
use plexsync::{
    accounts::{AllowedAccount, AllowedAccounts},
    api::{self, json, route_not_found, routes, ApiContext, ApiError, StrictBody},
    crypto::random_token,
    env::{Env, EnvError},
    plex::open_stored_token,
    senders::Sender,
    store::settings::{self as store, SaveSettings},
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

pub mod plex_tv;
pub mod senders;

use plex_tv::{PlexServer, PlexTvClient, PlexTvError};

/// Bytes of randomness in a generated webhook secret.
pub const WEBHOOK_SECRET_BYTES: usize = 32;

pub struct State {
    pub api: ApiContext,
    pub plex_tv: PlexTvClient,
    /// Base of the webhook URL shown to the user (`PUBLIC_BASE_URL`).
    pub public_base_url: Url,
    pub encryption_key_id: String,
    pub webhook_secret_id: String,
}

impl State {
    pub fn from_env(env: &Env, sdk: &aws_config::SdkConfig) -> Result<Self, EnvError> {
        Ok(Self {
            api: ApiContext::from_env(env, sdk)?,
            plex_tv: PlexTvClient::new(plex_tv::base_url(env)?),
            public_base_url: env.url("PUBLIC_BASE_URL")?,
            encryption_key_id: env.required("ENCRYPTION_KEY_SECRET_ID")?,
            webhook_secret_id: env.required("WEBHOOK_SECRET_ID")?,
        })
    }
}

/// Serves one request: auth and routing, then the route's handler; always a JSON response.
pub async fn handle(state: &State, req: Request) -> Response<Body> {
    let req = &req;
    let serve = state.api.serve(req, routes::CONFIG, |route| async move {
        match route.key() {
            ("GET", "/api/plex/config") => get_config(state).await,
            ("POST", "/api/plex/config") => save_config(state, req).await,
            ("DELETE", "/api/plex/config") => disable_config(state).await,
            ("GET", "/api/senders") => senders::list(state).await,
            ("PUT", "/api/senders/{sender}") => {
                senders::save(state, req, route.param("sender").unwrap_or_default()).await
            }
            _ => Err(route_not_found(req)),
        }
    });
    serve.await
}

/// The `GET /api/plex/config` body (docs/openapi.yaml): settings, server and account, never the
/// token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigView {
    configured: bool,
    enabled: bool,
    auto_add_shows: bool,
    auto_mark_watched: bool,
    server_name: Option<String>,
    server_url: Option<String>,
    allow_insecure_http: bool,
    /// Whether a Plex token is stored (the token itself is never returned): a save without
    /// `plexToken` keeps it.
    plex_token_set: bool,
    plex_account_name: Option<String>,
    allowed_accounts: AllowedAccounts,
    last_webhook_received: Option<chrono::DateTime<chrono::Utc>>,
    webhook_url: Option<String>,
}

async fn get_config(state: &State) -> Result<Response<Body>, ApiError> {
    let client = state.api.pool.get().await?;
    let stored = store::load(&client).await?;
    drop(client);
    let view = match stored {
        None => ConfigView {
            configured: false,
            enabled: false,
            auto_add_shows: true,
            auto_mark_watched: true,
            server_name: None,
            server_url: None,
            allow_insecure_http: false,
            plex_token_set: false,
            plex_account_name: None,
            allowed_accounts: AllowedAccounts::default(),
            last_webhook_received: None,
            webhook_url: None,
        },
        Some(cfg) => {
            let secret = stored_webhook_secret(state).await?;
            ConfigView {
                configured: true,
                enabled: cfg.enabled,
                auto_add_shows: cfg.auto_add_shows,
                auto_mark_watched: cfg.auto_mark_watched,
                server_name: cfg.server_name,
                server_url: cfg.server_url,
                allow_insecure_http: cfg.allow_insecure_http,
                plex_token_set: !cfg.encrypted_token.0.is_empty(),
                plex_account_name: cfg.account_name,
                allowed_accounts: cfg.allowed_accounts,
                last_webhook_received: cfg.last_webhook_received,
                webhook_url: secret.map(|s| webhook_url(&state.public_base_url, &s)),
            }
        }
    };
    Ok(json(StatusCode::OK, &view))
}

/// `POST /api/plex/config` body (docs/openapi.yaml).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SaveBody {
    /// A new token; absent (or null) keeps the stored one.
    plex_token: Option<SecretString>,
    plex_server_url: Option<String>,
    /// Allows a plain `http://` server (one on the user's own network): the token then travels
    /// unencrypted to it. Given per save, with the URL it is for; absent means https only.
    #[serde(default)]
    allow_insecure_http: bool,
    auto_add_shows: Option<bool>,
    auto_mark_watched: Option<bool>,
    enabled: Option<bool>,
    /// Household members whose plays also count: usernames (`Account.title`) or server account
    /// ids (`Account.id`). The webhook owner's own plays always count.
    allowed_accounts: Option<Vec<AllowedAccount>>,
    #[serde(default)]
    rotate_webhook_secret: bool,
}

impl StrictBody for SaveBody {
    const FIELDS: &'static [&'static str] = &[
        "plexToken",
        "plexServerUrl",
        "allowInsecureHttp",
        "autoAddShows",
        "autoMarkWatched",
        "enabled",
        "allowedAccounts",
        "rotateWebhookSecret",
    ];
}

const TOKEN_MIN: usize = 20;
const TOKEN_MAX: usize = 200;

/// The token goes into an HTTP header: printable ASCII, no spaces. Its value is never echoed.
fn validate_token(token: &SecretString) -> Result<(), ApiError> {
    let t = token.expose_secret();
    if !(TOKEN_MIN..=TOKEN_MAX).contains(&t.len()) || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadRequest(format!(
            "plexToken must be {TOKEN_MIN} to {TOKEN_MAX} printable characters without spaces"
        )));
    }
    Ok(())
}

/// A well-formed https URL (http only with `allowInsecureHttp`) with a host and nothing after
/// the path; stored without the trailing slash. Checked before plex.tv is asked.
fn validate_server_url(raw: &str, allow_insecure_http: bool) -> Result<String, ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "plexServerUrl must be an http(s) URL such as https://plex.example.com:32400".into(),
        )
    };
    if raw.len() > 2048 {
        return Err(bad());
    }
    let url = Url::parse(raw.trim()).map_err(|_| bad())?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if !ok {
        return Err(bad());
    }
    if url.scheme() == "http" && !allow_insecure_http {
        return Err(ApiError::BadRequest(
            "plexServerUrl is plain http, so the Plex token would travel unencrypted: use the \
             server's https address, or set allowInsecureHttp: true for a server on your own \
             network"
                .into(),
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SaveResponse {
    success: bool,
    webhook_url: String,
    server_name: Option<String>,
}

/// The server to store: the one at the given URL (named from plex.tv when it lists it), else the
/// first owned server with a usable connection. A discovered plain http URL needs
/// `allowInsecureHttp`, as a given one does ([`validate_server_url`]).
fn pick_server(
    servers: &[PlexServer],
    given_url: Option<String>,
    allow_insecure_http: bool,
) -> Result<(String, Option<&PlexServer>), ApiError> {
    if let Some(url) = given_url {
        let server = server_for_url(servers, &url);
        return Ok((url, server));
    }
    let server = servers.iter().find(|s| s.url.is_some()).ok_or_else(|| {
        ApiError::Unprocessable(
            "plex.tv lists no Plex Media Server owned by this account with a usable \
             connection; pass plexServerUrl"
                .into(),
        )
    })?;
    let url = server.url.as_ref().map_or_else(String::new, |u| {
        u.as_str().trim_end_matches('/').to_string()
    });
    if url.starts_with("http:") && !allow_insecure_http {
        // plex.tv lists https connections for every server with secure connections on.
        return Err(ApiError::Unprocessable(
            "plex.tv lists only plain http connections for your server; turn on secure \
             connections in Plex, pass its https plexServerUrl, or set allowInsecureHttp: true \
             for a server on your own network"
                .into(),
        ));
    }
    Ok((url, Some(server)))
}

/// The Plex token encrypted with the key from Secrets Manager.
async fn encrypt_token(state: &State, token: &SecretString) -> Result<String, ApiError> {
    let keyring = state.api.keyring(&state.encryption_key_id).await?;
    Ok(keyring.encrypt(token))
}

/// The webhook secret to use and whether it must be written: the stored one, unless it is
/// missing, unusable or a rotation was asked for.
async fn webhook_secret(state: &State, rotate: bool) -> Result<(SecretString, bool), ApiError> {
    Ok(match stored_webhook_secret(state).await? {
        Some(s) if !rotate => (s, false),
        _ => (SecretString::from(random_token(WEBHOOK_SECRET_BYTES)), true),
    })
}

/// The token a save works with: the one in the body, or else the stored one, opened to check it
/// with plex.tv again (server and account may have changed) but stored as it is.
enum SaveToken {
    New(SecretString),
    Stored(SecretString),
}

impl SaveToken {
    fn secret(&self) -> &SecretString {
        match self {
            Self::New(t) | Self::Stored(t) => t,
        }
    }

    /// plex.tv's answer for this token; a stored token that plex.tv no longer accepts needs the
    /// user to paste a new one, which the message says.
    fn explain(&self, err: PlexTvError) -> ApiError {
        match (self, err) {
            (Self::Stored(_), PlexTvError::Rejected) => ApiError::Unprocessable(
                "the stored Plex token was rejected by plex.tv (signed out or changed): enter \
                 your current Plex token"
                    .into(),
            ),
            (_, err) => err.into(),
        }
    }
}

/// The given token (already validated), or the stored one; none stored yet is a 400.
async fn save_token(state: &State, given: Option<SecretString>) -> Result<SaveToken, ApiError> {
    if let Some(token) = given {
        return Ok(SaveToken::New(token));
    }
    let client = state.api.pool.get().await?;
    let stored = store::load(&client).await?;
    drop(client);
    let Some(stored) = stored else {
        return Err(ApiError::BadRequest(
            "plexToken is required: no Plex token is stored yet".into(),
        ));
    };
    let keyring = state.api.keyring(&state.encryption_key_id).await?;
    let token = open_stored_token(&state.api.pool, &keyring, &stored.encrypted_token)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "stored Plex token cannot be opened");
            ApiError::Unprocessable(
                "the stored Plex token cannot be read with the current encryption key: enter \
                 your Plex token again"
                    .into(),
            )
        })?;
    Ok(SaveToken::Stored(token))
}

async fn save_config(state: &State, req: &Request) -> Result<Response<Body>, ApiError> {
    let body: SaveBody = api::parse_body(req)?;
    if let Some(token) = &body.plex_token {
        // Before any other check, as before: a malformed token never reaches the database.
        validate_token(token)?;
    }
    let given_url = body
        .plex_server_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(|url| validate_server_url(url, body.allow_insecure_http))
        .transpose()?;
    let allowed_accounts = body
        .allowed_accounts
        .as_deref()
        .map(|list| AllowedAccounts::new(list.to_vec()))
        .transpose()?;

    let token = save_token(state, body.plex_token).await?;
    // plex.tv first: a rejected token or an outage stores nothing.
    let account = (state.plex_tv.account(token.secret()).await).map_err(|e| token.explain(e))?;
    let servers =
        (state.plex_tv.owned_servers(token.secret()).await).map_err(|e| token.explain(e))?;
    let (server_url, server) = pick_server(&servers, given_url, body.allow_insecure_http)?;
    let encrypted_token = match &token {
        SaveToken::New(t) => Some(encrypt_token(state, t).await?),
        SaveToken::Stored(_) => None,
    };
    let (webhook_secret, write_secret) = webhook_secret(state, body.rotate_webhook_secret).await?;

    // One transaction; the secret is written before the commit, so a Secrets Manager failure
    // rolls the row back.
    let mut client = state.api.pool.get().await?;
    let tx = client.transaction().await?;
    store::save(
        &tx,
        &SaveSettings {
            encrypted_token: encrypted_token.as_deref(),
            server_url: Some(&server_url)
                .filter(|u| !u.is_empty())
                .map(|u| u.as_str()),
            allow_insecure_http: body.allow_insecure_http,
            server_name: server.map(|s| s.name.as_str()),
            server_uuid: server.map(|s| s.uuid.as_str()),
            account_id: account.id,
            account_name: &account.username,
            enabled: body.enabled,
            auto_add_shows: body.auto_add_shows,
            auto_mark_watched: body.auto_mark_watched,
            allowed_accounts: allowed_accounts.as_ref(),
        },
    )
    .await?;
    if write_secret {
        state
            .api
            .secrets
            .put(&state.webhook_secret_id, &webhook_secret)
            .await?;
    }
    tx.commit().await?;
    tracing::info!(
        plex_account = %account.username,
        server = server.map(|s| s.name.as_str()).unwrap_or("unknown"),
        webhook_secret_rotated = write_secret,
        "plex configuration saved"
    );
    Ok(json(
        StatusCode::OK,
        &SaveResponse {
            success: true,
            webhook_url: webhook_url(&state.public_base_url, &webhook_secret),
            server_name: server.map(|s| s.name.clone()),
        },
    ))
}

/// The owned server a user-given URL points at (same host as one of its connections), or the
/// only owned server.
fn server_for_url<'a>(servers: &'a [PlexServer], url: &str) -> Option<&'a PlexServer> {
    let host = Url::parse(url).ok()?.host_str()?.to_ascii_lowercase();
    servers
        .iter()
        .find(|s| {
            s.url
                .as_ref()
                .and_then(|u| u.host_str())
                .is_some_and(|h| h.eq_ignore_ascii_case(&host))
        })
        .or(match servers {
            [only] => Some(only),
            _ => None,
        })
}

#[derive(Serialize)]
struct DisableResponse {
    success: bool,
    enabled: bool,
}

async fn disable_config(state: &State) -> Result<Response<Body>, ApiError> {
    if !store::disable(&state.api.pool).await? {
        return Err(ApiError::NotFound("Plex is not configured".into()));
    }
    tracing::info!("plex integration disabled");
    Ok(json(
        StatusCode::OK,
        &DisableResponse {
            success: true,
            enabled: false,
        },
    ))
}

/// The stored webhook secret every sender's URL carries. A placeholder or empty one (e.g.
/// created empty by a template) counts as none.
pub(crate) async fn stored_webhook_secret(state: &State) -> Result<Option<SecretString>, ApiError> {
    let secret = state.api.secrets.get(&state.webhook_secret_id).await?;
    Ok(secret.filter(|s| s.expose_secret().trim().len() >= 16))
}

/// `PUBLIC_BASE_URL` + `/api/plex/webhook?secret=...`.
pub fn webhook_url(base: &Url, secret: &SecretString) -> String {
    sender_webhook_url(base, Sender::Plex, secret)
}

/// `PUBLIC_BASE_URL` + the sender's route (`/api/jellyfin/webhook`, ...) + `?secret=...`.
pub fn sender_webhook_url(base: &Url, sender: Sender, secret: &SecretString) -> String {
    let mut url = base.clone();
    let path = format!(
        "{}{}",
        base.path().trim_end_matches('/'),
        sender.webhook_path()
    );
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url.query_pairs_mut()
        .append_pair("secret", secret.expose_secret());
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_url_joins_base_and_encodes_the_secret() {
        let s = SecretString::from("a+b/c".to_string());
        assert_eq!(
            webhook_url(&"https://api.example.com".parse().unwrap(), &s),
            "https://api.example.com/api/plex/webhook?secret=a%2Bb%2Fc"
        );
        assert_eq!(
            webhook_url(&"https://x.example.com/prod/".parse().unwrap(), &s),
            "https://x.example.com/prod/api/plex/webhook?secret=a%2Bb%2Fc"
        );
        assert_eq!(
            sender_webhook_url(
                &"https://x.example.com/prod/".parse().unwrap(),
                Sender::Emby,
                &s
            ),
            "https://x.example.com/prod/api/emby/webhook?secret=a%2Bb%2Fc"
        );
    }

    #[test]
    fn server_urls_are_validated() {
        assert_eq!(
            validate_server_url("https://plex.example.com:32400/", false).unwrap(),
            "https://plex.example.com:32400"
        );
        let err = validate_server_url("http://192.168.1.20:32400", false).unwrap_err();
        assert!(err.to_string().contains("allowInsecureHttp"), "{err}");
        assert_eq!(
            validate_server_url("http://192.168.1.20:32400/", true).unwrap(),
            "http://192.168.1.20:32400"
        );
        for bad in [
            "plex.example.com",
            "ftp://plex.example.com",
            "https://",
            "https://user:pw@plex.example.com",
            "https://plex.example.com/?x=1",
            "not a url",
        ] {
            assert!(validate_server_url(bad, true).is_err(), "{bad}");
        }
    }
}
