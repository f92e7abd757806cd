//! Which tracker show a Plex show is: resolve the show's TMDB id (cheapest first, every
//! conversion cached 24 h in `tmdb_id_cache`), then the matching ladder (tracker show by TMDB id
//! 1.0, via TVDB 0.95, via IMDb 0.95, fuzzy title similarity × 0.85; one match ≥ 0.90 maps
//! automatically), else one open conflict per Plex show.
//!
//! An episode's `Guid` ids are the *episode's*: they are only ever turned into a show id through
//! TMDB's `tv_episode_results[].show_id` (docs/architecture.md, "Show identity").

use secrecy::SecretString;
use serde::Serialize;

use crate::db::{DbError, DbPool};
use crate::ids::ShowId;
use crate::payload::{ExternalIds, PlexEvent};
use crate::plex::{PlexError, PlexServerClient, ServerUrl};
use crate::store::{mappings::PlexShowKey, shows, tmdb_cache};
use crate::tmdb::{ExternalSource, TmdbClient, TmdbError};

/// A single match at or above this confidence is mapped without asking.
pub const AUTO_MAP_THRESHOLD: f64 = 0.90;
/// Fuzzy title matches are scaled down by this. Since it is below [`AUTO_MAP_THRESHOLD`], a fuzzy
/// match never maps on its own: it always goes to the user.
const FUZZY_FACTOR: f64 = 0.85;
const _: () = assert!(FUZZY_FACTOR < AUTO_MAP_THRESHOLD);
/// pg_trgm similarity below which a tracker title is not a candidate at all.
pub const FUZZY_MIN_SIMILARITY: f64 = 0.5;
/// Plex server timeouts are retried (via SQS) on the first deliveries only; later deliveries
/// skip the step, so an unreachable home server cannot push every new show into the DLQ.
const PLEX_TIMEOUT_RETRIES: i64 = 2;
/// How many TMDB search results are checked for the episode's TMDB id.
const SEARCH_CONFIRM_LIMIT: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tmdb(#[from] TmdbError),
    #[error("Plex server timed out while resolving the show")]
    PlexTimeout,
}

impl MatchError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => e.is_transient(),
            Self::Tmdb(e) => e.is_transient(),
            Self::PlexTimeout => true,
        }
    }
}

impl From<tokio_postgres::Error> for MatchError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(DbError::Query(e))
    }
}

/// How the show's TMDB id was learnt: decides the ladder score and the recorded method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSource {
    Tmdb,
    Tvdb,
    Imdb,
    /// TMDB title search, confirmed by the episode's TMDB id being in that show's season.
    SearchConfirmed,
}

impl IdSource {
    pub fn score(self) -> f64 {
        match self {
            Self::Tmdb => 1.0,
            // The episode's TMDB id belongs to exactly one show: as strong as a /find lookup.
            Self::Tvdb | Self::Imdb | Self::SearchConfirmed => 0.95,
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Self::Tmdb => "tmdb_id",
            Self::Tvdb => "tvdb_id",
            Self::Imdb => "imdb_id",
            Self::SearchConfirmed => "tmdb_search",
        }
    }
}

/// The show's TMDB id and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedShow {
    pub tmdb_id: i64,
    pub source: IdSource,
    /// Which rung found it, for logs: "legacy guid", "episode tvdb id", "plex server", ...
    pub via: &'static str,
}

/// What resolution learnt about the Plex show: its TMDB id (if found) and the ids and TMDB
/// candidates found on the way.
#[derive(Debug, Clone, Default)]
pub struct ShowIdentity {
    pub show: Option<ResolvedShow>,
    /// Show-level ids learnt on the way (never episode ids), stored on the mapping.
    pub show_ids: ExternalIds,
    /// TMDB search results, offered in a conflict when nothing resolved.
    pub tmdb_candidates: Vec<Candidate>,
}

/// One entry of `plex_conflicts.potential_matches`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub tvshow_id: Option<ShowId>,
    pub title: String,
    pub tmdb_id: Option<i64>,
    pub match_score: f64,
    /// "tracker" (an existing show) or "tmdb" (a show that could be added).
    pub source: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    NoMatch,
    Ambiguous,
    MultipleMatches,
}

impl ConflictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoMatch => "no_match",
            Self::Ambiguous => "ambiguous",
            Self::MultipleMatches => "multiple_matches",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MatchDecision {
    Map {
        tvshow_id: ShowId,
        confidence: f64,
        method: String,
    },
    /// No tracker show has it; auto-add is on and the TMDB id is known.
    AutoAdd { tmdb_id: i64, method: String },
    Conflict {
        kind: ConflictKind,
        candidates: Vec<Candidate>,
    },
}

/// Where the Plex server step can reach the server (token already decrypted, in memory only).
pub struct PlexTarget<'a> {
    pub client: &'a PlexServerClient,
    pub server: ServerUrl,
    pub token: SecretString,
}

pub struct Resolver<'a> {
    pub pool: &'a DbPool,
    pub tmdb: &'a TmdbClient,
    pub plex: Option<PlexTarget<'a>>,
}

impl Resolver<'_> {
    /// Finds the show's TMDB id, cheapest rung first.
    #[tracing::instrument(skip(self, event), fields(show = %event.show.title, key = %event.show_key()))]
    pub async fn resolve(
        &self,
        event: &PlexEvent,
        receive_count: Option<i64>,
    ) -> Result<ShowIdentity, MatchError> {
        let mut res = ShowIdentity {
            show_ids: event.show.ids.clone(),
            ..Default::default()
        };
        // 1. Legacy agent guids (or a show item's own Guid array) carry the show's ids.
        if let Some(show) = self.by_show_ids(&event.show.ids, "show guid").await? {
            res.show = Some(show);
            return Ok(res);
        }
        // 2. The episode's own tvdb / imdb id → TMDB find → the episode's show_id.
        if let Some(ep) = &event.episode {
            if let Some(tvdb) = ep.ids.tvdb {
                let key = tvdb.to_string();
                if let Some(id) = self
                    .find_cached("tvdb_episode", &key, ExternalSource::Tvdb, true)
                    .await?
                {
                    res.show = Some(resolved(id, IdSource::Tvdb, "episode tvdb id"));
                    return Ok(res);
                }
            }
            if let Some(imdb) = &ep.ids.imdb {
                if let Some(id) = self
                    .find_cached("imdb_episode", imdb, ExternalSource::Imdb, true)
                    .await?
                {
                    res.show = Some(resolved(id, IdSource::Imdb, "episode imdb id"));
                    return Ok(res);
                }
            }
        }
        // 3. The Plex server's metadata for the show, when it is reachable.
        if let Some(ids) = self.plex_show_ids(event, receive_count).await? {
            merge_ids(&mut res.show_ids, &ids);
            if let Some(show) = self.by_show_ids(&ids, "plex server").await? {
                res.show = Some(show);
                return Ok(res);
            }
        }
        // 4. TMDB title search, confirmed by the episode's TMDB id in season `parentIndex`.
        let (confirmed, candidates) = self.search(event).await?;
        res.tmdb_candidates = candidates;
        if let Some(id) = confirmed {
            res.show = Some(resolved(
                id,
                IdSource::SearchConfirmed,
                "title search + episode tmdb id",
            ));
        }
        Ok(res)
    }

    async fn by_show_ids(
        &self,
        ids: &ExternalIds,
        via: &'static str,
    ) -> Result<Option<ResolvedShow>, MatchError> {
        if let Some(tmdb) = ids.tmdb {
            return Ok(Some(resolved(tmdb, IdSource::Tmdb, via)));
        }
        if let Some(tvdb) = ids.tvdb {
            if let Some(id) = self
                .find_cached("tvdb_show", &tvdb.to_string(), ExternalSource::Tvdb, false)
                .await?
            {
                return Ok(Some(resolved(id, IdSource::Tvdb, via)));
            }
        }
        if let Some(imdb) = &ids.imdb {
            if let Some(id) = self
                .find_cached("imdb_show", imdb, ExternalSource::Imdb, false)
                .await?
            {
                return Ok(Some(resolved(id, IdSource::Imdb, via)));
            }
        }
        Ok(None)
    }

    /// `/3/find` through the cache. `episode` says whether `id` is an episode's id (read
    /// `tv_episode_results[0].show_id`) or a show's (read `tv_results[0].id`).
    async fn find_cached(
        &self,
        cache_source: &str,
        id: &str,
        source: ExternalSource,
        episode: bool,
    ) -> Result<Option<i64>, MatchError> {
        if let Some(hit) = self.cached(cache_source, id).await? {
            return Ok(hit);
        }
        let show_id = match self.tmdb.find(id, source).await {
            Ok(found) if episode => found.tv_episode_results.first().map(|e| e.show_id),
            Ok(found) => found.tv_results.first().map(|t| t.id),
            Err(TmdbError::NotFound(_)) => None,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "TMDB find failed; trying the next rung");
                return Ok(None);
            }
        };
        self.cache(cache_source, id, show_id).await?;
        Ok(show_id)
    }

    /// The show's ids from the Plex server. Unreachable servers (the normal case behind NAT)
    /// skip the step; a timeout is retried on the first deliveries.
    async fn plex_show_ids(
        &self,
        event: &PlexEvent,
        receive_count: Option<i64>,
    ) -> Result<Option<ExternalIds>, MatchError> {
        let Some(target) = &self.plex else {
            return Ok(None);
        };
        match target
            .client
            .show(&target.server, &event.show.rating_key, &target.token)
            .await
        {
            Ok(show) => Ok(Some(show.ids)),
            Err(PlexError::Timeout) if receive_count.unwrap_or(1) <= PLEX_TIMEOUT_RETRIES => {
                Err(MatchError::PlexTimeout)
            }
            Err(e) => {
                tracing::info!(error = %e, "Plex server step skipped");
                Ok(None)
            }
        }
    }

    /// TMDB search by title: (a show id confirmed by the episode's TMDB id, candidates).
    async fn search(&self, event: &PlexEvent) -> Result<(Option<i64>, Vec<Candidate>), MatchError> {
        let episode_tmdb = event
            .episode
            .as_ref()
            .and_then(|e| e.ids.tmdb.map(|id| (id, e.season)));
        if let Some((ep_id, _)) = episode_tmdb {
            if let Some(Some(show)) = self.cached("tmdb_episode", &ep_id.to_string()).await? {
                return Ok((Some(show), Vec::new()));
            }
        }
        let results = match self.tmdb.search_tv(&event.show.title).await {
            Ok(r) => r,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "TMDB search failed");
                Vec::new()
            }
        };
        let titles: Vec<String> = results
            .iter()
            .map(|r| r.name.clone().unwrap_or_default())
            .collect();
        let sims = if titles.is_empty() {
            Vec::new()
        } else {
            let client = self.pool.get().await.map_err(DbError::from)?;
            shows::similarities(&client, &event.show.title, &titles).await?
        };
        let candidates: Vec<Candidate> = results
            .iter()
            .zip(sims)
            .take(5)
            .map(|(r, sim)| Candidate {
                tvshow_id: None,
                title: r.name.clone().unwrap_or_default(),
                tmdb_id: Some(r.id),
                match_score: round2(sim * FUZZY_FACTOR),
                source: "tmdb",
            })
            .collect();
        let Some((ep_id, season)) = episode_tmdb else {
            return Ok((None, candidates));
        };
        let mut confirmed = Vec::new();
        for r in results.iter().take(SEARCH_CONFIRM_LIMIT) {
            match self.tmdb.season(r.id, season).await {
                Ok(s) if s.episodes.iter().any(|e| e.id == ep_id) => confirmed.push(r.id),
                Ok(_) | Err(TmdbError::NotFound(_)) => {}
                Err(e) if e.is_transient() => return Err(e.into()),
                Err(e) => tracing::warn!(error = %e, "TMDB season check failed"),
            }
        }
        let show = match confirmed.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        if show.is_some() {
            self.cache("tmdb_episode", &ep_id.to_string(), show).await?;
        }
        Ok((show, candidates))
    }

    /// A fresh cached conversion to a TMDB id: `Some(None)` is a cached miss.
    async fn cached(
        &self,
        source: &str,
        external_id: &str,
    ) -> Result<Option<Option<i64>>, MatchError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        let hit = tmdb_cache::get(&client, source, external_id).await?;
        Ok(hit.map(|id| id.map(i64::from)))
    }

    async fn cache(
        &self,
        source: &str,
        external_id: &str,
        tmdb_id: Option<i64>,
    ) -> Result<(), MatchError> {
        let client = self.pool.get().await.map_err(DbError::from)?;
        tmdb_cache::put(&client, source, external_id, tmdb_id.and_then(tmdb_id_i32)).await?;
        Ok(())
    }
}

fn resolved(tmdb_id: i64, source: IdSource, via: &'static str) -> ResolvedShow {
    ResolvedShow {
        tmdb_id,
        source,
        via,
    }
}

fn merge_ids(into: &mut ExternalIds, from: &ExternalIds) {
    into.tmdb = into.tmdb.or(from.tmdb);
    into.tvdb = into.tvdb.or(from.tvdb);
    if into.imdb.is_none() {
        into.imdb = from.imdb.clone();
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The matching ladder over the tracker, given what resolution found.
#[tracing::instrument(skip(pool, event, resolution), fields(show = %event.show.title))]
pub async fn decide(
    pool: &DbPool,
    event: &PlexEvent,
    resolution: &ShowIdentity,
    auto_add: bool,
) -> Result<MatchDecision, MatchError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let known = resolution.show.as_ref();
    if let Some(show) = known {
        if let Some(id) = tmdb_id_i32(show.tmdb_id) {
            if let Some((tvshow_id, _)) = shows::find_by_tmdb_id(&client, id).await? {
                return Ok(MatchDecision::Map {
                    tvshow_id,
                    confidence: show.source.score(),
                    method: show.source.method().to_string(),
                });
            }
        }
    }
    let candidates = title_candidates(&mut client, event, resolution).await?;
    // Fuzzy scores are at most FUZZY_FACTOR, below the auto-map threshold: a title match is
    // never mapped without the user, it becomes a conflict.
    if let Some(show) = known {
        if candidates.is_empty() && auto_add {
            return Ok(MatchDecision::AutoAdd {
                tmdb_id: show.tmdb_id,
                method: show.source.method().to_string(),
            });
        }
    }
    let kind = match candidates.len() {
        0 => ConflictKind::NoMatch,
        1 => ConflictKind::Ambiguous,
        _ => ConflictKind::MultipleMatches,
    };
    Ok(MatchDecision::Conflict {
        kind,
        candidates: with_tmdb_side(candidates, event, resolution),
    })
}

/// Tracker shows with a similar title. With a known TMDB id, a tracker show holding a
/// *different* TMDB id is another show; only shows without a TMDB id can still be this one.
async fn title_candidates(
    client: &mut deadpool_postgres::Client,
    event: &PlexEvent,
    resolution: &ShowIdentity,
) -> Result<Vec<Candidate>, MatchError> {
    let year = event.show.year.and_then(|y| i32::try_from(y).ok());
    let tmdb_id_known = resolution.show.is_some();
    let matches = shows::similar_titles(
        client,
        &event.show.title,
        FUZZY_MIN_SIMILARITY,
        tmdb_id_known,
        year,
    )
    .await?;
    Ok(matches
        .into_iter()
        .map(|m| Candidate {
            tvshow_id: Some(m.id),
            title: m.title,
            tmdb_id: m.tmdb_id.map(i64::from),
            match_score: round2(m.similarity * FUZZY_FACTOR),
            source: "tracker",
        })
        .collect())
}

/// Adds the TMDB side of a conflict: the resolved show (the obvious "add it" choice), else the
/// search results. A TMDB show the tracker already has is offered once, as the tracker show.
fn with_tmdb_side(
    mut candidates: Vec<Candidate>,
    event: &PlexEvent,
    resolution: &ShowIdentity,
) -> Vec<Candidate> {
    let tmdb_side: Vec<Candidate> = match &resolution.show {
        Some(show) => vec![Candidate {
            tvshow_id: None,
            title: event.show.title.clone(),
            tmdb_id: Some(show.tmdb_id),
            match_score: show.source.score(),
            source: "tmdb",
        }],
        None => resolution.tmdb_candidates.clone(),
    };
    for candidate in tmdb_side {
        if !candidates
            .iter()
            .any(|c| c.tmdb_id.is_some() && c.tmdb_id == candidate.tmdb_id)
        {
            candidates.push(candidate);
        }
    }
    candidates
}

/// A TMDB id as the tracker schema stores it (`int4`); TMDB ids are far below 2^31, so `None`
/// means an id no stored show can have.
pub fn tmdb_id_i32(id: i64) -> Option<i32> {
    i32::try_from(id).ok()
}

/// The stored guid for a show without one (the column is unique per server, so it cannot be
/// empty for every such show).
pub fn show_guid(event: &PlexEvent) -> String {
    event
        .show
        .guid
        .clone()
        .filter(|g| !g.trim().is_empty())
        .unwrap_or_else(|| format!("unknown://{}", event.show.rating_key))
}

/// The event's Plex show as the store identifies it; `guid` is [`show_guid`].
pub fn show_key<'a>(event: &'a PlexEvent, guid: &'a str) -> PlexShowKey<'a> {
    PlexShowKey {
        sender: event.sender.as_str(),
        server_uuid: &event.server_uuid,
        rating_key: &event.show.rating_key,
        guid,
    }
}
