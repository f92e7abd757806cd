//! History sync for one mapped show: read every episode's watch
//! state from the Plex server (`allLeaves`) and mark each watched one in the tracker with its
//! `lastViewedAt`, through the processor's marking code (never overwriting an episode already
//! watched, so a date entered by hand survives).

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde::Serialize;

use plexsync::{
    api::ApiError,
    crypto::{CryptoError, Keyring},
    db::{DbError, DbPool},
    episodes::{self, MarkOutcome, Watch},
    ids::{MappingId, ShowId},
    plex::{open_stored_token, PlexError, PlexLeaf, PlexServerClient, ServerUrl},
    store::{mappings, settings},
};

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub mapping_id: MappingId,
    pub tvshow_id: ShowId,
    /// Episodes the Plex server reports as watched.
    pub watched_in_plex: usize,
    /// Newly marked watched in the tracker.
    pub marked: usize,
    /// Already watched in the tracker: their dates are kept.
    pub already_watched: usize,
    /// Watched in Plex but not among the tracker show's episodes.
    pub not_in_tracker: usize,
    /// `S01E01`-style labels of the episodes marked.
    pub marked_episodes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("mapping {0} does not exist")]
    NotFound(MappingId),
    #[error("mapping is not linked to a tracker show")]
    NotLinked,
    #[error("sync is disabled for mapping {0}; confirm the mapping to turn it back on")]
    SyncDisabled(MappingId),
    #[error("the tracker show of this mapping no longer exists")]
    ShowMissing,
    #[error("Plex is not configured")]
    NotConfigured,
    #[error("history sync reads a Plex server; this show is on a {0} server")]
    NotPlex(String),
    #[error("the Plex integration is disabled")]
    IntegrationDisabled,
    #[error("no Plex server URL is configured")]
    NoServerUrl,
    #[error("the configured Plex server URL is not a valid URL")]
    BadServerUrl,
    /// The stored token cannot be decrypted with the configured key (an operator problem).
    #[error("the stored Plex token cannot be decrypted: {0}")]
    Token(#[from] CryptoError),
    #[error(transparent)]
    Plex(#[from] PlexError),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<SyncError> for ApiError {
    fn from(err: SyncError) -> Self {
        match err {
            SyncError::NotFound(_) => ApiError::NotFound(err.to_string()),
            SyncError::NotLinked | SyncError::SyncDisabled(_) | SyncError::ShowMissing => {
                ApiError::Conflict(err.to_string())
            }
            SyncError::NotConfigured
            | SyncError::NotPlex(_)
            | SyncError::IntegrationDisabled
            | SyncError::NoServerUrl
            | SyncError::BadServerUrl => ApiError::Unprocessable(err.to_string()),
            SyncError::Plex(e) => e.into(),
            SyncError::Token(_) => ApiError::Internal(err.to_string()),
            SyncError::Db(db) => db.into(),
        }
    }
}

impl From<tokio_postgres::Error> for SyncError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e.into())
    }
}

impl From<deadpool_postgres::PoolError> for SyncError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        Self::Db(e.into())
    }
}

/// Marks every episode Plex has watched, with its `lastViewedAt`, in one rewrite of the show's
/// seasons, and counts what happened.
async fn mark_leaves(
    tx: &deadpool_postgres::Transaction<'_>,
    tvshow_id: ShowId,
    leaves: &[&PlexLeaf],
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    report.watched_in_plex += leaves.len();
    let mut watches = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let (Some(season), Some(episode)) = (leaf.parent_index, leaf.index) else {
            report.not_in_tracker += 1;
            continue;
        };
        watches.push(Watch {
            season,
            episode,
            watched_at: leaf
                .last_viewed_at
                .and_then(|t| Utc.timestamp_opt(t, 0).single())
                .unwrap_or_else(Utc::now),
        });
    }
    if watches.is_empty() {
        return Ok(());
    }
    let outcomes = episodes::mark_episodes_in(tx, tvshow_id, &watches)
        .await?
        .ok_or(SyncError::ShowMissing)?;
    for (watch, outcome) in watches.iter().zip(outcomes) {
        match outcome {
            MarkOutcome::Marked { .. } => {
                report.marked += 1;
                report
                    .marked_episodes
                    .push(format!("S{:02}E{:02}", watch.season, watch.episode));
            }
            MarkOutcome::AlreadyWatched { .. } | MarkOutcome::Duplicate => {
                report.already_watched += 1
            }
            MarkOutcome::EpisodeMissing { .. } => report.not_in_tracker += 1,
            MarkOutcome::ShowMissing => return Err(SyncError::ShowMissing),
        }
    }
    Ok(())
}

/// Syncs one mapping's watch history from the Plex server. The token is decrypted in memory
/// only and never leaves this function. No connection is held across the Plex call; all marks
/// are written in one transaction, as one rewrite of the show's seasons.
#[tracing::instrument(skip(pool, plex, keyring))]
pub async fn sync_show_progress(
    pool: &DbPool,
    plex: &PlexServerClient,
    keyring: &Keyring,
    mapping_id: MappingId,
) -> Result<SyncReport, SyncError> {
    let client = pool.get().await?;
    let mapping = mappings::find_state(&client, mapping_id)
        .await?
        .ok_or(SyncError::NotFound(mapping_id))?;
    if mapping.sender != "plex" {
        // Jellyfin and Emby shows sync by webhook only: we hold no token for those servers.
        return Err(SyncError::NotPlex(mapping.sender));
    }
    let tvshow_id = mapping.tvshow_id.ok_or(SyncError::NotLinked)?;
    if !mapping.sync_enabled {
        return Err(SyncError::SyncDisabled(mapping_id));
    }
    let config = settings::load(&client)
        .await?
        .ok_or(SyncError::NotConfigured)?;
    drop(client);
    if !config.enabled {
        return Err(SyncError::IntegrationDisabled);
    }
    let raw_url = config
        .server_url
        .filter(|u| !u.trim().is_empty())
        .ok_or(SyncError::NoServerUrl)?;
    let server = match ServerUrl::parse(&raw_url, config.allow_insecure_http) {
        Ok(server) => server,
        Err(PlexError::PlainHttp) => return Err(PlexError::PlainHttp.into()),
        Err(_) => return Err(SyncError::BadServerUrl),
    };
    let token: SecretString = open_stored_token(pool, keyring, &config.encrypted_token).await?;

    let leaves = plex
        .all_leaves(&server, &mapping.plex_rating_key, &token)
        .await?;
    drop(token);

    let mut report = SyncReport {
        mapping_id,
        tvshow_id,
        watched_in_plex: 0,
        marked: 0,
        already_watched: 0,
        not_in_tracker: 0,
        marked_episodes: Vec::new(),
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let watched: Vec<&PlexLeaf> = leaves
        .iter()
        .filter(|l| l.view_count.unwrap_or(0) > 0)
        .collect();
    mark_leaves(&tx, tvshow_id, &watched, &mut report).await?;
    tx.commit().await?;
    tracing::info!(
        tvshow_id = tvshow_id.0,
        watched_in_plex = report.watched_in_plex,
        marked = report.marked,
        already_watched = report.already_watched,
        not_in_tracker = report.not_in_tracker,
        "show progress synced from Plex"
    );
    Ok(report)
}
