//! Processing one queue message: gates, show resolution, auto-add, marking, and exactly one
//! `plex_webhook_logs` row per processed message.
//!
//! `process_message` is the single entry point: the `processor` function calls it per SQS
//! record, and the management API can call it to replay a conflict's pending events. Its TMDB
//! calls, retries and waits included, end by a deadline: [`TMDB_BUDGET`] from the start, or the
//! caller's own (`process_message_until`), so a slow TMDB makes one message transient instead of
//! eating the caller's time.
//! A transient failure (database down, TMDB unavailable after retries, Plex timeout) returns
//! `Err` and writes nothing, so the queue retries the message; everything else is logged and
//! returned as an [`Outcome`].

use std::{sync::Arc, time::Duration};

use aws_config::SdkConfig;
use deadpool_postgres::GenericClient;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::accounts::{names_account, AllowedAccounts};
use crate::crypto::Keyring;
use crate::db::{self, DbError, DbPool};
use crate::env::{Env, EnvError, TmdbConfig};
use crate::episodes::{self, MarkOutcome, MarkRequest};
use crate::ids::{ConflictId, MappingId, ShowId};
use crate::matching::{self, MatchDecision, MatchError, PlexTarget, Resolver, ShowIdentity};
use crate::payload::{AccountRef, EventKind, PlexEvent};
use crate::plex::{open_stored_token, PlexError, PlexServerClient, ServerUrl};
use crate::queue::{QueueBody, QueueMessage};
use crate::secrets::SecretsCache;
use crate::senders::Sender;
use crate::store::{
    conflicts::{self, NewConflict},
    logs::{self, LogStatus, NewLogEntry},
    mappings::{self, Lock, MappingState, NewMapping, PlexShowKey},
    processed, senders as sender_settings,
    settings::{self, EncryptedToken},
};
use crate::tmdb::{SeasonDetails, TmdbClient, TmdbError, TvDetails};

mod import;

pub use import::IMPORT_EVENT_TYPE;

/// Where the encryption key (for the stored Plex token) comes from.
pub enum KeySource {
    /// Secrets Manager, read through the TTL cache (production).
    Secrets {
        cache: SecretsCache,
        secret_id: String,
    },
    Fixed(Arc<Keyring>),
    None,
}

impl KeySource {
    /// The keyring, or `None` (logged) when it cannot be had: only the optional Plex server
    /// rung needs it, so its absence must not fail the message.
    async fn keyring(&self) -> Option<Arc<Keyring>> {
        match self {
            Self::Fixed(k) => Some(k.clone()),
            Self::None => None,
            Self::Secrets { cache, secret_id } => match cache.get(secret_id).await {
                Ok(Some(secret)) => match Keyring::from_secret(&secret) {
                    Ok(k) => Some(Arc::new(k)),
                    Err(e) => {
                        tracing::warn!(error = %e, "encryption key unusable; Plex server step skipped");
                        None
                    }
                },
                Ok(None) => {
                    tracing::warn!("encryption key secret missing; Plex server step skipped");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "encryption key unavailable; Plex server step skipped");
                    None
                }
            },
        }
    }
}

/// Everything processing needs, built once per Lambda instance.
pub struct Pipeline {
    pub pool: DbPool,
    pub tmdb: TmdbClient,
    pub plex: PlexServerClient,
    pub keys: KeySource,
}

/// Why the function cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] EnvError),
    #[error("cannot build an HTTP client: {0}")]
    Http(String),
}

impl From<PlexError> for StartupError {
    fn from(err: PlexError) -> Self {
        Self::Http(err.to_string())
    }
}

impl Pipeline {
    /// From `DATABASE_URL`, `ENCRYPTION_KEY_SECRET_ID`, `TMDB_BASE_URL`, `TMDB_API_TOKEN`.
    pub fn from_env(env: &Env, aws: &SdkConfig) -> Result<Self, StartupError> {
        let pool = db::pool_from_env(env)?;
        Self::with_pool(pool, env, aws)
    }

    /// With a pool the caller already has (a management function shares its own); the rest
    /// from `ENCRYPTION_KEY_SECRET_ID`, `TMDB_BASE_URL`, `TMDB_API_TOKEN`.
    pub fn with_pool(pool: DbPool, env: &Env, aws: &SdkConfig) -> Result<Self, StartupError> {
        let tmdb = TmdbClient::new(&TmdbConfig::from_env(env)?)
            .map_err(|e| StartupError::Http(e.to_string()))?
            .with_shared_limit(pool.clone(), crate::tmdb::SHARED_RATE);
        let plex = PlexServerClient::new().map_err(|e| StartupError::Http(e.to_string()))?;
        let keys = KeySource::Secrets {
            cache: SecretsCache::new(aws_sdk_secretsmanager::Client::new(aws)),
            secret_id: env.required("ENCRYPTION_KEY_SECRET_ID")?,
        };
        Ok(Self {
            pool,
            tmdb,
            plex,
            keys,
        })
    }
}

/// What happened to a message (also what its log row says).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub status: LogStatus,
    pub action: Option<String>,
    /// Why it was ignored or failed, or what needs resolving.
    pub reason: Option<String>,
    pub tvshow_id: Option<ShowId>,
    pub conflict_id: Option<ConflictId>,
}

impl Outcome {
    fn new(status: LogStatus, action: Option<&str>, reason: Option<String>) -> Self {
        Self {
            status,
            action: action.map(str::to_owned),
            reason,
            tvshow_id: None,
            conflict_id: None,
        }
    }

    fn ignored(reason: impl Into<String>) -> Self {
        Self::new(LogStatus::Ignored, Some("ignored"), Some(reason.into()))
    }

    fn failed(reason: impl Into<String>) -> Self {
        Self::new(LogStatus::Failed, None, Some(reason.into()))
    }

    fn with_show(mut self, tvshow_id: ShowId) -> Self {
        self.tvshow_id = Some(tvshow_id);
        self
    }
}

/// The message could not be processed now; nothing was written. SQS should retry it.
#[derive(Debug, thiserror::Error)]
#[error("transient failure: {0}")]
pub struct TransientError(pub String);

/// Internal: how a processing step failed.
enum Failure {
    Transient(String),
    Permanent(String),
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Self {
        let detail = db_detail(&e);
        if e.is_transient() {
            Self::Transient(detail)
        } else {
            Self::Permanent(detail)
        }
    }
}

/// tokio-postgres prints server errors as just "db error": add the server's message.
fn db_detail(e: &DbError) -> String {
    match e {
        DbError::Query(q) => match q.as_db_error() {
            Some(db) => format!("database error: {} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        },
        _ => e.to_string(),
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        DbError::from(e).into()
    }
}

impl From<TmdbError> for Failure {
    fn from(e: TmdbError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

impl From<MatchError> for Failure {
    fn from(e: MatchError) -> Self {
        if let MatchError::Db(db) = e {
            return db.into();
        }
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}

/// The settings of the sender a message came from: Plex's, or Jellyfin's / Emby's.
struct SenderConfig {
    enabled: bool,
    auto_add_shows: bool,
    auto_mark_watched: bool,
    allowed_accounts: AllowedAccounts,
    /// Jellyfin / Emby: the user's own account there (name or id). Plex marks the webhook
    /// owner's plays itself (`user` flag).
    own_account: Option<String>,
    /// Plex only: where the optional Plex server rung can ask about the show.
    plex_server: Option<PlexServerConfig>,
}

struct PlexServerConfig {
    server_url: Option<String>,
    allow_insecure_http: bool,
    token: EncryptedToken,
}

async fn load_config(
    client: &impl GenericClient,
    sender: Sender,
) -> Result<Option<SenderConfig>, DbError> {
    if sender == Sender::Plex {
        return Ok(settings::load(client).await?.map(|c| SenderConfig {
            enabled: c.enabled,
            auto_add_shows: c.auto_add_shows,
            auto_mark_watched: c.auto_mark_watched,
            allowed_accounts: c.allowed_accounts,
            own_account: None,
            plex_server: Some(PlexServerConfig {
                server_url: c.server_url,
                allow_insecure_http: c.allow_insecure_http,
                token: c.encrypted_token,
            }),
        }));
    }
    Ok(sender_settings::find(client, sender)
        .await?
        .map(|c| SenderConfig {
            enabled: c.enabled,
            auto_add_shows: c.auto_add_shows,
            auto_mark_watched: c.auto_mark_watched,
            allowed_accounts: AllowedAccounts::from_json(&c.allowed_accounts),
            own_account: Some(c.account),
            plex_server: None,
        }))
}

/// TMDB time one message may use, retries and `Retry-After` waits included, unless the caller
/// gives a deadline of its own.
pub const TMDB_BUDGET: Duration = Duration::from_secs(20);

/// What the log row needs besides the outcome, and the message's TMDB view (its deadline).
struct LogCtx<'a> {
    msg: &'a QueueMessage,
    message_id: &'a str,
    key: String,
    receive_count: Option<i64>,
    started: Instant,
    tmdb: TmdbClient,
}

/// Processes a queue body: a body that is not a valid message is logged `failed` (payload
/// kept as `{"body": ...}`) and acknowledged, since retrying cannot fix it.
pub async fn process_body(
    state: &Pipeline,
    body: &str,
    message_id: &str,
    receive_count: Option<i64>,
) -> Result<Outcome, TransientError> {
    let tmdb_until = Instant::now() + TMDB_BUDGET;
    process_body_until(state, body, message_id, receive_count, tmdb_until).await
}

/// [`process_body`] with the TMDB calls ending by `tmdb_until`.
pub async fn process_body_until(
    state: &Pipeline,
    body: &str,
    message_id: &str,
    receive_count: Option<i64>,
    tmdb_until: Instant,
) -> Result<Outcome, TransientError> {
    match QueueBody::parse(body) {
        Ok(QueueBody::Event(msg)) => {
            process_message_until(state, &msg, message_id, receive_count, tmdb_until).await
        }
        Ok(QueueBody::ImportShow(msg)) => {
            import::process_show(state, &msg, message_id, receive_count, tmdb_until).await
        }
        Err(e) => {
            tracing::warn!(error = %e, "unreadable queue message");
            let outcome = Outcome::failed(e.to_string());
            log_unreadable(state, body, message_id, receive_count, &e.to_string()).await?;
            Ok(outcome)
        }
    }
}

/// Logs a message `failed` with `reason` without processing it: the queue will not deliver it
/// again (its last receive failed transiently), so the activity log is where the user sees it
/// and can replay it from.
pub async fn log_final_failure(
    state: &Pipeline,
    body: &str,
    message_id: &str,
    receive_count: Option<i64>,
    reason: &str,
) -> Result<(), TransientError> {
    let msg = match QueueBody::parse(body) {
        Ok(QueueBody::Event(msg)) => msg,
        Ok(QueueBody::ImportShow(msg)) => {
            return import::give_up(state, &msg, message_id, receive_count, reason).await;
        }
        Err(_) => return log_unreadable(state, body, message_id, receive_count, reason).await,
    };
    let ctx = LogCtx {
        msg: &msg,
        message_id,
        key: msg.idempotency_key(),
        receive_count,
        started: Instant::now(),
        tmdb: state.tmdb.clone(),
    };
    let client = state.pool.get().await.map_err(|e| transient(e.into()))?;
    write_log(&client, &ctx, &Outcome::failed(reason))
        .await
        .map_err(transient)
}

/// The log row of a body that is not a queue message (payload kept as `{"body": ...}`).
async fn log_unreadable(
    state: &Pipeline,
    body: &str,
    message_id: &str,
    receive_count: Option<i64>,
    reason: &str,
) -> Result<(), TransientError> {
    let client = state.pool.get().await.map_err(|e| transient(e.into()))?;
    logs::record_unreadable(
        &client,
        message_id,
        body,
        reason,
        receive_count.and_then(|n| i32::try_from(n).ok()),
    )
    .await
    .map_err(transient)
}

fn transient(e: DbError) -> TransientError {
    TransientError(e.to_string())
}

/// Processes one message; see the module docs. Exactly one log row is written unless the
/// result is `Err` (nothing written).
pub async fn process_message(
    state: &Pipeline,
    msg: &QueueMessage,
    message_id: &str,
    receive_count: Option<i64>,
) -> Result<Outcome, TransientError> {
    let tmdb_until = Instant::now() + TMDB_BUDGET;
    process_message_until(state, msg, message_id, receive_count, tmdb_until).await
}

/// [`process_message`] with the TMDB calls ending by `tmdb_until`.
#[tracing::instrument(skip(state, msg, tmdb_until), fields(show = %msg.event.show.title, event = msg.event.kind.as_str()))]
pub async fn process_message_until(
    state: &Pipeline,
    msg: &QueueMessage,
    message_id: &str,
    receive_count: Option<i64>,
    tmdb_until: Instant,
) -> Result<Outcome, TransientError> {
    let ctx = LogCtx {
        msg,
        message_id,
        key: msg.idempotency_key(),
        receive_count,
        started: Instant::now(),
        tmdb: state.tmdb.until(tmdb_until),
    };
    let result = run(state, &ctx).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(Failure::Transient(reason)) => {
            tracing::warn!(%reason, "transient failure; the message will be retried");
            return Err(TransientError(reason));
        }
        Err(Failure::Permanent(reason)) => {
            tracing::warn!(%reason, "message failed");
            let outcome = Outcome::failed(reason);
            let client = state.pool.get().await.map_err(|e| transient(e.into()))?;
            write_log(&client, &ctx, &outcome)
                .await
                .map_err(transient)?;
            outcome
        }
    };
    tracing::info!(
        status = outcome.status.as_str(),
        action = outcome.action.as_deref(),
        reason = outcome.reason.as_deref(),
        tvshow_id = outcome.tvshow_id.map(|id| id.0),
        "message processed"
    );
    Ok(outcome)
}

async fn run(state: &Pipeline, ctx: &LogCtx<'_>) -> Result<Outcome, Failure> {
    let client = state.pool.get().await?;
    let ev = &ctx.msg.event;
    let guid = matching::show_guid(ev);
    let show = matching::show_key(ev, &guid);
    let first = first_reads(&client, ctx, show).await?;
    let config = match admit(ctx, first.config, first.seen) {
        Ok(config) => config,
        Err(ignored) => return finish(&client, ctx, ignored).await,
    };
    // A mapped show (the usual case) hands its connection on to the mark: one checkout per
    // message.
    let (tvshow_id, how, client) = match find_show_from(
        state,
        Subject::Event(ctx),
        client,
        &config,
        show,
        first.mapping,
    )
    .await?
    {
        (Decided::Show(id, how), client) => (id, how, client),
        (Decided::Done(outcome), _) => return Ok(outcome),
    };
    if ev.kind != EventKind::Scrobble {
        // library.new: the mapping exists now; nothing is marked.
        let action = match how {
            Mapped::Existing => "show_already_mapped",
            Mapped::Matched => "show_mapped",
            Mapped::Added => "auto_added_show",
        };
        let client = match client {
            Some(client) => client,
            None => state.pool.get().await?,
        };
        let outcome = Outcome::new(LogStatus::Success, Some(action), None).with_show(tvshow_id);
        return finish(&client, ctx, outcome).await;
    }
    mark(state, ctx, tvshow_id, how, client).await
}

/// What every message is decided on before its transaction: the sender's settings, whether
/// this message was applied already (plays only), and the show's mapping.
struct FirstReads {
    config: Option<SenderConfig>,
    seen: bool,
    mapping: Option<MappingState>,
}

/// [`FirstReads`] as three statements pipelined on one connection (tokio-postgres sends
/// concurrent queries back to back): one round trip instead of three.
async fn first_reads(
    client: &deadpool_postgres::Client,
    ctx: &LogCtx<'_>,
    show: PlexShowKey<'_>,
) -> Result<FirstReads, DbError> {
    // Only a play has an idempotency key worth checking before its transaction.
    let seen = async {
        if ctx.msg.event.kind == EventKind::Scrobble {
            processed::contains(client, &ctx.key).await
        } else {
            Ok(false)
        }
    };
    let (config, seen, mapping) = tokio::try_join!(
        load_config(client, ctx.msg.event.sender),
        seen,
        mappings::find_for_show(client, show, Lock::No),
    )?;
    Ok(FirstReads {
        config,
        seen,
        mapping,
    })
}

/// The sender's settings, or the outcome of a message that is not processed: the sender is not
/// set up or disabled, or (for a play) auto-mark is off, it is another account's, or the same
/// message was processed already (`seen`).
fn admit(
    ctx: &LogCtx<'_>,
    config: Option<SenderConfig>,
    seen: bool,
) -> Result<SenderConfig, Outcome> {
    let ev = &ctx.msg.event;
    let label = ev.sender.label();
    let Some(config) = config else {
        return Err(Outcome::ignored(format!(
            "{label} integration is not configured"
        )));
    };
    if !config.enabled {
        return Err(Outcome::ignored(format!("{label} integration is disabled")));
    }
    if ev.kind != EventKind::Scrobble {
        return Ok(config);
    }
    if !config.auto_mark_watched {
        return Err(Outcome::ignored("auto-mark watched is off"));
    }
    account_gate(&config, &ev.account).map_err(Outcome::ignored)?;
    if seen {
        return Err(Outcome::new(
            LogStatus::Duplicate,
            None,
            Some("message already processed".into()),
        ));
    }
    Ok(config)
}

/// The tracker show the message's show maps to: its mapping, else (no open conflict holding
/// it) resolution and the ladder. `Done` when the message was logged on the way. With an
/// existing mapping, `client` comes back for the rest of the message.
async fn find_show(
    state: &Pipeline,
    ctx: Subject<'_>,
    client: deadpool_postgres::Client,
    config: &SenderConfig,
) -> Result<(Decided, Option<deadpool_postgres::Client>), Failure> {
    let ev = ctx.event();
    let guid = matching::show_guid(ev);
    let show = matching::show_key(ev, &guid);
    let mapping = mappings::find_for_show(&client, show, Lock::No).await?;
    find_show_from(state, ctx, client, config, show, mapping).await
}

/// [`find_show`] with the show's `mapping` read already.
async fn find_show_from(
    state: &Pipeline,
    ctx: Subject<'_>,
    client: deadpool_postgres::Client,
    config: &SenderConfig,
    show: PlexShowKey<'_>,
    mapping: Option<MappingState>,
) -> Result<(Decided, Option<deadpool_postgres::Client>), Failure> {
    match mapping {
        Some(m) if !m.sync_enabled => {
            let outcome = ctx.conclude(&client, sync_disabled(m.id)).await?;
            return Ok((Decided::Done(outcome), None));
        }
        Some(MappingState {
            tvshow_id: Some(id),
            ..
        }) => return Ok((Decided::Show(id, Mapped::Existing), Some(client))),
        _ => {}
    }
    let open_conflict = conflicts::find_open_for_show(&client, show)
        .await?
        .is_some();
    // No connection is held across the HTTP calls of resolution.
    drop(client);
    if open_conflict {
        // Read without a lock: the user may be resolving it right now. Decide again under the
        // show's lock, where the event is attached only to a conflict still open.
        if let Some(decided) = decide_under_lock(state, ctx, show).await? {
            return Ok((decided, None));
        }
    }
    Ok((resolve_and_map(state, ctx, config).await?, None))
}

/// [`decided_meanwhile`] in its own transaction, under the show's lock.
async fn decide_under_lock(
    state: &Pipeline,
    ctx: Subject<'_>,
    show: PlexShowKey<'_>,
) -> Result<Option<Decided>, Failure> {
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    mappings::lock_show_identity(&tx, &ctx.event().show_key()).await?;
    let decided = decided_meanwhile(&tx, ctx, show).await?;
    tx.commit().await?;
    Ok(decided)
}

#[derive(Debug, Clone, Copy)]
enum Mapped {
    Existing,
    Matched,
    Added,
}

enum Decided {
    Show(ShowId, Mapped),
    /// Logged already (conflict, sync disabled).
    Done(Outcome),
}

/// Why `library.new` for a show the tracker does not have is ignored when auto-add is off.
pub const NEW_SHOW_NOT_TRACKED: &str =
    "new in the library but not in the tracker, and auto-add is off: its first scrobble will ask";

fn sync_disabled(mapping_id: MappingId) -> Outcome {
    Outcome::ignored(format!(
        "sync disabled for this show (mapping {mapping_id})"
    ))
}

/// The play counts when it is the user's own (Plex: the `user` flag; Jellyfin / Emby: the
/// configured account) or an allowed account's.
fn account_gate(config: &SenderConfig, account: &AccountRef) -> Result<(), String> {
    if account.is_webhook_user {
        return Ok(());
    }
    if let Some(own) = &config.own_account {
        if names_account(own, account) {
            return Ok(());
        }
    }
    if config.allowed_accounts.permits(account) {
        return Ok(());
    }
    let title = account.title.as_deref().unwrap_or_default();
    Err(format!(
        "play by another account ({}{}) is not synced",
        if title.is_empty() { "unnamed" } else { title },
        account.id.map(|i| format!(", id {i}")).unwrap_or_default()
    ))
}

/// Writes the message's log row (and notes the receipt on the settings).
async fn write_log(
    client: &impl GenericClient,
    ctx: &LogCtx<'_>,
    outcome: &Outcome,
) -> Result<(), DbError> {
    let ev = &ctx.msg.event;
    let to_i32 = |n: Option<i64>| n.and_then(|n| i32::try_from(n).ok());
    let entry = NewLogEntry {
        message_id: ctx.message_id,
        idempotency_key: &ctx.key,
        event_type: ev.kind.as_str(),
        plex_rating_key: &ev.item_rating_key,
        plex_title: &ev.show.title,
        plex_season: to_i32(ev.season),
        plex_episode: to_i32(ev.episode.as_ref().map(|e| e.number)),
        payload: &ctx.msg.raw,
        status: outcome.status,
        error_message: outcome.reason.as_deref(),
        processing_duration_ms: i32::try_from(ctx.started.elapsed().as_millis())
            .unwrap_or(i32::MAX),
        receive_count: to_i32(ctx.receive_count),
        action_taken: outcome.action.as_deref(),
        tvshow_id: outcome.tvshow_id,
        sender: ev.sender,
        received_at: ctx.msg.received_at,
    };
    logs::record(client, &entry).await
}

async fn finish<C: GenericClient>(
    client: &C,
    ctx: &LogCtx<'_>,
    outcome: Outcome,
) -> Result<Outcome, Failure> {
    write_log(client, ctx, &outcome).await?;
    Ok(outcome)
}

fn needs_resolution(conflict_id: ConflictId, detail: &str) -> Outcome {
    let mut o = Outcome::new(
        LogStatus::NeedsResolution,
        Some("needs_user_input"),
        Some(format!(
            "show needs resolution (conflict {conflict_id}): {detail}"
        )),
    );
    o.conflict_id = Some(conflict_id);
    o
}

/// Keeps the event for replay on the show's open conflict and logs it; `None` (nothing
/// written) when the conflict was resolved meanwhile: the caller follows the new mapping.
async fn pend_in<C: GenericClient>(
    client: &C,
    ctx: Subject<'_>,
    conflict_id: ConflictId,
    detail: &str,
) -> Result<Option<Outcome>, Failure> {
    for play in ctx.plays() {
        if play.event.kind == EventKind::Scrobble {
            let message = serde_json::to_value(play).unwrap_or(Value::Null);
            let key = play.idempotency_key();
            if !conflicts::attach_pending_event(client, conflict_id, &key, &message).await? {
                return Ok(None);
            }
        }
    }
    Ok(Some(
        ctx.conclude(client, needs_resolution(conflict_id, detail))
            .await?,
    ))
}

/// Whom the show-finding steps act for: one queue message (a scrobble or `library.new`), or
/// one show of a history import (all its watched episodes at once).
#[derive(Clone, Copy)]
enum Subject<'a> {
    Event(&'a LogCtx<'a>),
    Show(&'a import::ShowCtx<'a>),
}

impl<'a> Subject<'a> {
    /// The event resolution reads (for an imported show: its first watched episode's).
    fn event(&self) -> &'a PlexEvent {
        match self {
            Self::Event(ctx) => &ctx.msg.event,
            Self::Show(ctx) => &ctx.plays[0].event,
        }
    }

    fn receive_count(&self) -> Option<i64> {
        match self {
            Self::Event(ctx) => ctx.receive_count,
            Self::Show(ctx) => ctx.receive_count,
        }
    }

    /// TMDB as the message may use it (until its deadline).
    fn tmdb(&self) -> &'a TmdbClient {
        match self {
            Self::Event(ctx) => &ctx.tmdb,
            Self::Show(ctx) => &ctx.tmdb,
        }
    }

    /// The plays a conflict keeps for its replay.
    fn plays(&self) -> &'a [QueueMessage] {
        match self {
            Self::Event(ctx) => std::slice::from_ref(ctx.msg),
            Self::Show(ctx) => &ctx.plays,
        }
    }

    /// Records an outcome decided on the way: the message's log row, or the imported show's
    /// summary row and result.
    async fn conclude(
        &self,
        client: &impl GenericClient,
        outcome: Outcome,
    ) -> Result<Outcome, Failure> {
        match self {
            Self::Event(ctx) => finish(client, ctx, outcome).await,
            Self::Show(ctx) => ctx.conclude(client, outcome).await,
        }
    }
}

/// Resolution and the ladder, then the mapping (auto-adding the show) or the conflict, written
/// under a per-show lock that re-checks what concurrent messages already decided.
async fn resolve_and_map(
    state: &Pipeline,
    ctx: Subject<'_>,
    config: &SenderConfig,
) -> Result<Decided, Failure> {
    let ev = ctx.event();
    let resolver = Resolver {
        pool: &state.pool,
        tmdb: ctx.tmdb(),
        plex: plex_target(state, config).await,
    };
    let identity = resolver.resolve(ev, ctx.receive_count()).await?;
    let decision = matching::decide(&state.pool, ev, &identity, config.auto_add_shows).await?;
    tracing::info!(
        ?decision,
        via = identity.show.as_ref().map(|s| s.via),
        "show resolved"
    );
    let added = match &decision {
        MatchDecision::AutoAdd { tmdb_id, .. } => Some(fetch_show(ctx.tmdb(), *tmdb_id).await?),
        _ => None,
    };

    let guid = matching::show_guid(ev);
    let show = matching::show_key(ev, &guid);
    let mut client = state.pool.get().await?;
    let tx = client.transaction().await?;
    mappings::lock_show_identity(&tx, &ev.show_key()).await?;
    let decided = match decided_meanwhile(&tx, ctx, show).await? {
        Some(decided) => decided,
        None => {
            let decision = Decision {
                show,
                identity: &identity,
                decision,
                added,
            };
            apply(&tx, ctx, config, decision).await?
        }
    };
    tx.commit().await?;
    Ok(decided)
}

/// Under the show's lock: what a concurrent message (or the user) decided while this one was
/// resolving: a mapping, or an open conflict that now holds this event too.
async fn decided_meanwhile(
    tx: &impl GenericClient,
    ctx: Subject<'_>,
    show: PlexShowKey<'_>,
) -> Result<Option<Decided>, Failure> {
    // Twice at most: a conflict resolved while the event was being attached has committed its
    // mapping, which the second look finds.
    for _ in 0..2 {
        match mappings::find_for_show(tx, show, Lock::No).await? {
            Some(m) if !m.sync_enabled => {
                return Ok(Some(Decided::Done(
                    ctx.conclude(tx, sync_disabled(m.id)).await?,
                )));
            }
            Some(MappingState {
                tvshow_id: Some(id),
                ..
            }) => return Ok(Some(Decided::Show(id, Mapped::Existing))),
            _ => {}
        }
        let Some(conflict_id) = conflicts::find_open_for_show(tx, show).await? else {
            return Ok(None);
        };
        let detail = "an open conflict awaits the user";
        if let Some(outcome) = pend_in(tx, ctx, conflict_id, detail).await? {
            return Ok(Some(Decided::Done(outcome)));
        }
    }
    Err(Failure::Transient(
        "the show's conflict was resolved and reopened while this event was kept".into(),
    ))
}

/// What the ladder decided, with what it needs to be written.
struct Decision<'a> {
    show: PlexShowKey<'a>,
    identity: &'a ShowIdentity,
    decision: MatchDecision,
    /// For `AutoAdd`: the show and its seasons, fetched from TMDB before the transaction.
    added: Option<(TvDetails, Vec<SeasonDetails>)>,
}

/// Writes the decision: the mapping (adding the show first for auto-add) or the conflict.
async fn apply(
    tx: &impl GenericClient,
    ctx: Subject<'_>,
    config: &SenderConfig,
    d: Decision<'_>,
) -> Result<Decided, Failure> {
    let ev = ctx.event();
    match d.decision {
        MatchDecision::Map {
            tvshow_id,
            confidence,
            method,
        } => {
            let mapping =
                create_mapping(tx, ev, d.show, d.identity, tvshow_id, confidence, &method).await?;
            // A concurrent insert under the same guid may have won: follow the stored row.
            Ok(Decided::Show(
                mapping.tvshow_id.unwrap_or(tvshow_id),
                Mapped::Matched,
            ))
        }
        MatchDecision::AutoAdd { method, .. } => {
            let Some((details, seasons)) = d.added else {
                return Err(Failure::Permanent("auto-add without the TMDB show".into()));
            };
            let (tvshow_id, created) =
                episodes::insert_show_from_tmdb(tx, &details, &seasons).await?;
            let confidence = d.identity.show.as_ref().map_or(1.0, |s| s.source.score());
            let method = format!("auto_added:{method}");
            create_mapping(tx, ev, d.show, d.identity, tvshow_id, confidence, &method).await?;
            let how = if created {
                Mapped::Added
            } else {
                Mapped::Matched
            };
            Ok(Decided::Show(tvshow_id, how))
        }
        // A show added to the library is not being watched yet: asking about every show of a
        // library import would bury the user in conflicts. Its first scrobble asks.
        MatchDecision::Conflict {
            kind: matching::ConflictKind::NoMatch,
            ..
        } if ev.kind == EventKind::LibraryNew && !config.auto_add_shows => Ok(Decided::Done(
            ctx.conclude(tx, Outcome::ignored(NEW_SHOW_NOT_TRACKED))
                .await?,
        )),
        MatchDecision::Conflict { kind, candidates } => {
            let conflict_id = open_conflict(tx, ev, d.show, kind, &candidates).await?;
            let detail = match kind {
                matching::ConflictKind::NoMatch => "no tracker show matches",
                matching::ConflictKind::Ambiguous => "one low-confidence match",
                matching::ConflictKind::MultipleMatches => "several possible matches",
            };
            // Resolved between the upsert and here is impossible (the upsert holds its row),
            // but a retry is the safe answer if it ever happens.
            match pend_in(tx, ctx, conflict_id, detail).await? {
                Some(outcome) => Ok(Decided::Done(outcome)),
                None => Err(Failure::Transient(format!(
                    "conflict {conflict_id} was resolved while it was being opened"
                ))),
            }
        }
    }
}

/// Opens the show's conflict offering `candidates` (or refreshes the open one's).
async fn open_conflict(
    tx: &impl GenericClient,
    ev: &PlexEvent,
    show: PlexShowKey<'_>,
    kind: matching::ConflictKind,
    candidates: &[matching::Candidate],
) -> Result<ConflictId, DbError> {
    let matches = serde_json::to_value(candidates).unwrap_or_else(|_| json!([]));
    let conflict = NewConflict {
        show,
        title: &ev.show.title,
        year: ev.show.year.and_then(|y| i32::try_from(y).ok()),
        conflict_type: kind.as_str(),
        potential_matches: &matches,
    };
    conflicts::upsert_open(tx, &conflict).await
}

/// Creates the show's mapping as the ladder decided (or follows the one a concurrent message
/// created). A confidence at or above the auto-map threshold counts as confirmed.
async fn create_mapping(
    tx: &impl GenericClient,
    ev: &PlexEvent,
    show: PlexShowKey<'_>,
    resolution: &ShowIdentity,
    tvshow_id: ShowId,
    confidence: f64,
    method: &str,
) -> Result<MappingState, DbError> {
    let ids = &resolution.show_ids;
    let new = NewMapping {
        show,
        title: &ev.show.title,
        year: ev.show.year.and_then(|y| i32::try_from(y).ok()),
        tvdb_id: ids.tvdb.and_then(|v| i32::try_from(v).ok()),
        imdb_id: ids.imdb.as_deref(),
        tmdb_id: resolution
            .show
            .as_ref()
            .and_then(|s| matching::tmdb_id_i32(s.tmdb_id)),
        tvshow_id: Some(tvshow_id),
        confidence: Some(confidence),
        method,
        manually_confirmed: confidence >= matching::AUTO_MAP_THRESHOLD,
        sync_enabled: true,
    };
    mappings::insert(tx, &new).await?;
    mappings::find_for_show(tx, show, Lock::No)
        .await?
        .ok_or_else(|| DbError::Config("mapping vanished after insert".into()))
}

/// The Plex server rung's target, when a server URL and a decryptable token are configured
/// (Plex messages only: a Jellyfin or Emby series id means nothing to a Plex server).
async fn plex_target<'a>(state: &'a Pipeline, config: &SenderConfig) -> Option<PlexTarget<'a>> {
    let config = config.plex_server.as_ref()?;
    let server = match ServerUrl::parse(config.server_url.as_deref()?, config.allow_insecure_http) {
        Ok(server) => server,
        Err(e) => {
            tracing::warn!(error = %e, "Plex server step skipped");
            return None;
        }
    };
    let keyring = state.keys.keyring().await?;
    let token: SecretString = match open_stored_token(&state.pool, &keyring, &config.token).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "stored Plex token cannot be decrypted; Plex server step skipped");
            return None;
        }
    };
    Some(PlexTarget {
        client: &state.plex,
        server,
        token,
    })
}

/// The show and all its seasons from TMDB.
async fn fetch_show(
    tmdb: &TmdbClient,
    tmdb_id: i64,
) -> Result<(TvDetails, Vec<SeasonDetails>), Failure> {
    match tmdb.show_with_seasons(tmdb_id).await {
        Ok(show) => Ok(show),
        Err(TmdbError::NotFound(_)) => Err(Failure::Permanent(format!(
            "cannot auto-add: TMDB has no show {tmdb_id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Marks the scrobbled episode (on `client` when the caller has one); refreshes its season from
/// TMDB once when it is missing.
async fn mark(
    state: &Pipeline,
    ctx: &LogCtx<'_>,
    tvshow_id: ShowId,
    how: Mapped,
    client: Option<deadpool_postgres::Client>,
) -> Result<Outcome, Failure> {
    let ev: &PlexEvent = &ctx.msg.event;
    let Some(ep) = ev.episode.as_ref() else {
        return Err(Failure::Permanent("scrobble without an episode".into()));
    };
    let req = MarkRequest {
        tvshow_id,
        season: ep.season,
        episode: ep.number,
        watched_at: ev.viewed_at.unwrap_or(ctx.msg.received_at),
        idempotency_key: Some(&ctx.key),
        message_id: Some(ctx.message_id),
    };
    let label = format!("S{:02}E{:02}", ep.season, ep.number);
    let show_tmdb_id = match mark_and_log(state, ctx, &req, how, &label, None, client).await? {
        Ok(outcome) => return Ok(outcome),
        Err(show_tmdb_id) => show_tmdb_id,
    };
    let fresh = refreshed_season(&ctx.tmdb, &label, ep.season, show_tmdb_id).await?;
    match mark_and_log(state, ctx, &req, how, &label, Some(fresh), None).await? {
        Ok(outcome) => Ok(outcome),
        Err(_) => Err(Failure::Permanent(format!(
            "{label} is not in the tracker's seasons, even after refreshing season {} from TMDB",
            ep.season
        ))),
    }
}

/// One marking attempt in its own transaction, with its log row: the outcome, or (the episode
/// is not in the stored seasons, nothing was written) the show's TMDB id to refresh from.
async fn mark_and_log(
    state: &Pipeline,
    ctx: &LogCtx<'_>,
    req: &MarkRequest<'_>,
    how: Mapped,
    label: &str,
    fresh_season: Option<Value>,
    client: Option<deadpool_postgres::Client>,
) -> Result<Result<Outcome, Option<i32>>, Failure> {
    let mut client = match client {
        Some(client) => client,
        None => state.pool.get().await?,
    };
    let tx = client.transaction().await?;
    let (status, action, reason) = match episodes::mark_episode_in(&tx, req, fresh_season).await? {
        MarkOutcome::EpisodeMissing { show_tmdb_id } => return Ok(Err(show_tmdb_id)),
        MarkOutcome::ShowMissing => {
            return Err(Failure::Permanent(format!(
                "tracker show {} no longer exists",
                req.tvshow_id
            )))
        }
        MarkOutcome::Marked { .. } => (
            LogStatus::Success,
            Some(match how {
                Mapped::Added => "auto_added_show_and_marked_watched",
                _ => "marked_watched",
            }),
            None,
        ),
        MarkOutcome::AlreadyWatched { .. } => (
            LogStatus::Success,
            Some("already_watched"),
            Some(format!("{label} was already watched; its date is kept")),
        ),
        MarkOutcome::Duplicate => (
            LogStatus::Duplicate,
            None,
            Some("message already processed".into()),
        ),
    };
    let outcome = Outcome::new(status, action, reason).with_show(req.tvshow_id);
    write_log(&tx, ctx, &outcome).await?;
    tx.commit().await?;
    Ok(Ok(outcome))
}

/// The season from TMDB, as stored seasons hold it, to retry an episode the tracker lacks.
async fn refreshed_season(
    tmdb: &TmdbClient,
    label: &str,
    season: i64,
    show_tmdb_id: Option<i32>,
) -> Result<Value, Failure> {
    let Some(show_tmdb_id) = show_tmdb_id else {
        return Err(Failure::Permanent(format!(
            "{label} is not in the tracker's seasons and the show has no TMDB id to refresh from"
        )));
    };
    match tmdb.season(i64::from(show_tmdb_id), season).await {
        Ok(details) => Ok(episodes::season_from_tmdb(&details)),
        Err(TmdbError::NotFound(_)) => Err(Failure::Permanent(format!(
            "{label} is not in the tracker's seasons and TMDB has no season {season} for show {show_tmdb_id}"
        ))),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: Option<i64>, title: &str, user: bool) -> AccountRef {
        AccountRef {
            id,
            title: Some(title.into()),
            is_webhook_user: user,
            owns_server: true,
            uuid: None,
        }
    }

    fn config(allowed: Value, own: Option<&str>) -> SenderConfig {
        SenderConfig {
            enabled: true,
            auto_add_shows: true,
            auto_mark_watched: true,
            allowed_accounts: AllowedAccounts::from_json(&allowed),
            own_account: own.map(str::to_owned),
            plex_server: None,
        }
    }

    #[test]
    fn account_gate_uses_user_flag_then_allowlist() {
        let none = config(json!([]), None);
        assert!(account_gate(&none, &account(Some(1), "alice", true)).is_ok());
        let err = account_gate(&none, &account(Some(2), "bob", false)).unwrap_err();
        assert!(err.contains("bob") && err.contains("id 2"), "{err}");
        let gate = |allowed: Value, a: &AccountRef| account_gate(&config(allowed, None), a);
        assert!(gate(json!(["Bob"]), &account(Some(2), "bob", false)).is_ok());
        assert!(gate(json!([2]), &account(Some(2), "bob", false)).is_ok());
        assert!(gate(json!(["2"]), &account(Some(2), "bob", false)).is_ok());
        assert!(gate(json!(["carol", 3]), &account(Some(2), "bob", false)).is_err());
        assert!(gate(json!([""]), &account(None, "", false)).is_err());
    }

    #[test]
    fn account_gate_for_jellyfin_and_emby_uses_the_configured_account() {
        let alice = AccountRef {
            id: None,
            title: Some("alice".into()),
            is_webhook_user: false,
            owns_server: false,
            uuid: Some("5f0c7a1e-3b2d-4c9a-8e7f-6d5c4b3a2910".into()),
        };
        let bob = AccountRef {
            title: Some("bob".into()),
            uuid: Some("8e2d4f6a-0b1c-4d3e-9f5a-7b6c5d4e3f21".into()),
            ..alice.clone()
        };
        let by_name = config(json!([]), Some("Alice"));
        assert!(account_gate(&by_name, &alice).is_ok());
        assert!(account_gate(&by_name, &bob).is_err());
        let by_id = config(json!([]), Some("5f0c7a1e3b2d4c9a8e7f6d5c4b3a2910"));
        assert!(account_gate(&by_id, &alice).is_ok());
        let with_bob = config(
            json!(["8E2D4F6A-0B1C-4D3E-9F5A-7B6C5D4E3F21"]),
            Some("alice"),
        );
        assert!(account_gate(&with_bob, &bob).is_ok());
    }
}
