//! Starting an import: check the settings, list the TV shows of the server's library (one call
//! per section), record the import and its shows, and queue one message per show in that
//! show's message group. Nothing here waits on a show's episodes: the processor reads those,
//! one show per message, so no invocation runs long whatever the library's size.

use std::collections::HashSet;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::{NaiveDate, Utc};
use futures_util::{stream, TryStreamExt};
use secrecy::SecretString;

use plexsync::{
    api::ApiError,
    crypto::CryptoError,
    db::DbError,
    payload::{ExternalIds, PlexGuid, ShowRef},
    plex::{open_stored_token, PlexError, PlexSection, PlexSectionShow, ServerUrl},
    queue::ImportShowMessage,
    store::{
        imports::{self, Import, ImportShow, StartError},
        settings::{self, PlexSettings},
    },
};

use crate::{StartBody, State};

/// A running import with no show finished for this long is failed, so it cannot block every
/// later import (its messages were lost; SQS gives up on a message well within this).
pub const STALLED_AFTER_SECS: f64 = 30.0 * 60.0;
/// SQS's batch size limit.
const BATCH: usize = 10;
/// Batches in flight at once.
const CONCURRENT_BATCHES: usize = 4;
const MAX_SECTIONS: usize = 50;

/// A validated start request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// Section keys; empty: every TV section.
    pub sections: Vec<String>,
    pub watched_since: Option<NaiveDate>,
}

impl ImportRequest {
    pub fn parse(body: StartBody) -> Result<Self, ApiError> {
        let mut sections: Vec<String> = Vec::new();
        if let Some(list) = body.sections {
            if list.is_empty() {
                return Err(ApiError::BadRequest(
                    "sections must name at least one section (leave it out for every TV section)"
                        .into(),
                ));
            }
            if list.len() > MAX_SECTIONS {
                return Err(ApiError::BadRequest(format!(
                    "sections names more than {MAX_SECTIONS} sections"
                )));
            }
            for key in list {
                let key = key.trim().to_string();
                if key.is_empty() || !key.bytes().all(|b| b.is_ascii_digit()) || key.len() > 9 {
                    return Err(ApiError::BadRequest(
                        "sections must be library section keys such as \"1\"".into(),
                    ));
                }
                if !sections.contains(&key) {
                    sections.push(key);
                }
            }
        }
        if body
            .watched_since
            .is_some_and(|d| d > Utc::now().date_naive())
        {
            return Err(ApiError::BadRequest("watchedSince is in the future".into()));
        }
        Ok(Self {
            sections,
            watched_since: body.watched_since,
        })
    }
}

/// Why an import could not start.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("an import is already running (import {0}); wait for it to finish")]
    AlreadyRunning(i32),
    #[error("Plex is not configured: save a Plex token first (POST /api/plex/config)")]
    NotConfigured,
    #[error("the Plex integration is disabled")]
    Disabled,
    #[error("auto-mark watched is off, so an import would mark nothing; turn it on first")]
    AutoMarkOff,
    #[error("no Plex server is configured: an import reads the server's library")]
    NoServer,
    #[error("the configured Plex server URL is not a valid URL")]
    BadServerUrl,
    #[error("library section {0} does not exist on the Plex server")]
    UnknownSection(String),
    #[error("library section {0} is not a TV section")]
    NotTvSection(String),
    #[error("the stored Plex token cannot be decrypted: {0}")]
    Token(#[from] CryptoError),
    #[error(transparent)]
    Plex(#[from] PlexError),
    #[error("the import could not be queued: {0}")]
    Queue(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// The encryption key secret could not be read.
    #[error(transparent)]
    Key(#[from] ApiError),
}

impl From<ImportError> for ApiError {
    fn from(err: ImportError) -> Self {
        match err {
            ImportError::AlreadyRunning(_) => ApiError::Conflict(err.to_string()),
            ImportError::NotConfigured
            | ImportError::Disabled
            | ImportError::AutoMarkOff
            | ImportError::NoServer
            | ImportError::BadServerUrl => ApiError::Unprocessable(err.to_string()),
            ImportError::UnknownSection(_) | ImportError::NotTvSection(_) => {
                ApiError::BadRequest(err.to_string())
            }
            ImportError::Token(_) => ApiError::Internal(err.to_string()),
            ImportError::Plex(e) => e.into(),
            ImportError::Queue(_) => ApiError::BadGateway(err.to_string()),
            ImportError::Db(e) => e.into(),
            ImportError::Key(e) => e,
        }
    }
}

impl From<StartError> for ImportError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::AlreadyRunning(id) => Self::AlreadyRunning(id),
            StartError::Db(db) => Self::Db(db),
        }
    }
}

/// The server the import reads, with the token decrypted in memory only.
struct Server {
    url: ServerUrl,
    uuid: String,
    name: Option<String>,
    token: SecretString,
}

/// Starts an import: see the module docs.
#[tracing::instrument(skip(state))]
pub async fn start(state: &State, req: &ImportRequest) -> Result<Import, ImportError> {
    let client = state.api.pool.get().await.map_err(DbError::from)?;
    if let Some(id) = imports::fail_stalled(&client, STALLED_AFTER_SECS).await? {
        tracing::warn!(import = id, "a stalled import was marked failed");
    }
    if let Some(running) = imports::latest(&client)
        .await?
        .filter(|i| i.status == "running")
    {
        return Err(ImportError::AlreadyRunning(running.id));
    }
    let config = settings::load(&client)
        .await?
        .ok_or(ImportError::NotConfigured)?;
    drop(client);
    let server = server(state, config).await?;
    let shows = list_shows(state, &server, req).await?;
    let listed: Vec<ImportShow> = shows
        .iter()
        .map(|s| ImportShow {
            rating_key: s.rating_key.clone(),
            title: s.title.clone(),
        })
        .collect();
    let import = imports::start(&state.api.pool, &req.sections, req.watched_since, &listed).await?;
    let messages: Vec<ImportShowMessage> = shows
        .into_iter()
        .map(|s| {
            ImportShowMessage::new(
                import.id,
                server.uuid.clone(),
                server.name.clone(),
                s,
                req.watched_since,
            )
        })
        .collect();
    if let Err(e) = enqueue(state, &messages).await {
        let client = state.api.pool.get().await.map_err(DbError::from)?;
        imports::fail(&client, import.id, &e.to_string()).await?;
        return Err(e);
    }
    tracing::info!(import = import.id, shows = messages.len(), "import started");
    Ok(import)
}

async fn server(state: &State, config: PlexSettings) -> Result<Server, ImportError> {
    if !config.enabled {
        return Err(ImportError::Disabled);
    }
    if !config.auto_mark_watched {
        return Err(ImportError::AutoMarkOff);
    }
    let url = config
        .server_url
        .filter(|u| !u.trim().is_empty())
        .ok_or(ImportError::NoServer)?;
    // https, or plain http the user allowed: the token goes with every call.
    let url = match ServerUrl::parse(&url, config.allow_insecure_http) {
        Ok(url) => url,
        Err(PlexError::PlainHttp) => return Err(PlexError::PlainHttp.into()),
        Err(_) => return Err(ImportError::BadServerUrl),
    };
    let uuid = config
        .server_uuid
        .filter(|u| !u.is_empty())
        .ok_or(ImportError::NoServer)?;
    let keyring = state.api.keyring(&state.encryption_key_id).await?;
    let token = open_stored_token(&state.api.pool, &keyring, &config.encrypted_token).await?;
    Ok(Server {
        url,
        uuid,
        name: config.server_name,
        token,
    })
}

/// The watched shows of the chosen TV sections (each once), as the queue carries them.
async fn list_shows(
    state: &State,
    server: &Server,
    req: &ImportRequest,
) -> Result<Vec<ShowRef>, ImportError> {
    let sections = state.plex.sections(&server.url, &server.token).await?;
    let chosen = chosen_sections(&sections, &req.sections)?;
    let since = req
        .watched_since
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp());
    let mut seen = HashSet::new();
    let mut shows = Vec::new();
    for section in chosen {
        let listed = state
            .plex
            .section_shows(&server.url, &section.key, &server.token)
            .await?;
        for show in listed {
            if watched(&show, since) && seen.insert(show.rating_key.clone()) {
                shows.push(show_ref(show));
            }
        }
    }
    Ok(shows)
}

/// Every TV section, or the requested ones (each must exist and be a TV section).
fn chosen_sections<'a>(
    sections: &'a [PlexSection],
    requested: &[String],
) -> Result<Vec<&'a PlexSection>, ImportError> {
    if requested.is_empty() {
        return Ok(sections.iter().filter(|s| s.kind == "show").collect());
    }
    requested
        .iter()
        .map(|key| {
            let section = sections
                .iter()
                .find(|s| &s.key == key)
                .ok_or_else(|| ImportError::UnknownSection(key.clone()))?;
            if section.kind != "show" {
                return Err(ImportError::NotTvSection(key.clone()));
            }
            Ok(section)
        })
        .collect()
}

/// Whether the show has anything to import: a watched episode (last watched since the date,
/// when the list says; the processor filters the episodes themselves).
fn watched(show: &PlexSectionShow, since: Option<i64>) -> bool {
    if show.viewed_leaf_count.unwrap_or(0) <= 0 {
        return false;
    }
    match (since, show.last_viewed_at) {
        (Some(since), Some(last)) => last >= since,
        _ => true,
    }
}

/// The show's identity as a scrobble of it carries it: its ids from its own `Guid` array, or
/// from a legacy agent's guid.
fn show_ref(show: PlexSectionShow) -> ShowRef {
    let mut ids = ExternalIds::from_guid_array(&show.guids);
    if let Some(legacy) = show
        .guid
        .as_deref()
        .map(PlexGuid::parse)
        .as_ref()
        .and_then(PlexGuid::legacy_show_ids)
    {
        ids.tmdb = ids.tmdb.or(legacy.tmdb);
        ids.tvdb = ids.tvdb.or(legacy.tvdb);
        ids.imdb = ids.imdb.clone().or(legacy.imdb.clone());
    }
    ShowRef {
        rating_key: show.rating_key,
        guid: show.guid,
        title: show.title,
        year: show.year,
        ids,
    }
}

/// Sends the messages in batches of ten, a few batches at a time; entries SQS refuses are
/// retried once.
async fn enqueue(state: &State, messages: &[ImportShowMessage]) -> Result<(), ImportError> {
    stream::iter(messages.chunks(BATCH).map(Ok))
        .try_for_each_concurrent(CONCURRENT_BATCHES, |chunk| async move {
            let refused = send_batch(state, chunk).await?;
            if refused.is_empty() {
                return Ok(());
            }
            let retry: Vec<ImportShowMessage> = refused.iter().map(|&i| chunk[i].clone()).collect();
            let still = send_batch(state, &retry).await?;
            if still.is_empty() {
                Ok(())
            } else {
                Err(ImportError::Queue(format!(
                    "SQS refused {} message(s) twice",
                    still.len()
                )))
            }
        })
        .await
}

/// One SendMessageBatch; returns the positions of the entries SQS refused.
async fn send_batch(state: &State, chunk: &[ImportShowMessage]) -> Result<Vec<usize>, ImportError> {
    let entries = chunk
        .iter()
        .enumerate()
        .map(|(i, m)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(m.to_body())
                .message_group_id(m.group_id())
                .message_deduplication_id(m.deduplication_id())
                .build()
                .map_err(|e| ImportError::Queue(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = state
        .sqs
        .send_message_batch()
        .queue_url(&state.queue_url)
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|e| ImportError::Queue(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    Ok(out
        .failed()
        .iter()
        .filter_map(|f| f.id().parse().ok())
        .collect())
}
