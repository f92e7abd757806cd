//! Which tracker show a Plex show is: resolve the show's TMDB id (cheapest first, every
//! conversion cached 24 h in `tmdb_id_cache`), then the matching ladder (tracker show by TMDB id
//! 1.0, via TVDB 0.95, via IMDb 0.95, fuzzy title similarity × 0.85; one match ≥ 0.90 maps
//! automatically), else one open conflict per Plex show.
//!
//! An episode's `Guid` ids are the *episode's*: they are only ever turned into a show id through
//! TMDB's `tv_episode_results[].show_id` (docs/architecture.md, "Show identity").

use deadpool_postgres::{GenericClient, Transaction};
use secrecy::SecretString;
use serde::Serialize;
use url::Url;

use crate::db::{DbError, DbPool};
use crate::payload::{ExternalIds, PlexEvent};
use crate::plex::{PlexError, PlexServerClient};
use crate::store::shows;
use crate::tmdb::{ExternalSource, TmdbClient, TmdbError};

/// A single match at or above this confidence is mapped without asking.
pub const AUTO_MAP_THRESHOLD: f64 = 0.90;
/// Fuzzy title matches are scaled down by this: they never map on their own.
pub const FUZZY_FACTOR: f64 = 0.85;
/// pg_trgm similarity below which a tracker title is not a candidate at all.
pub const FUZZY_MIN_SIMILARITY: f64 = 0.5;
/// Plex server timeouts are retried (via SQS) on the first deliveries only; later deliveries
/// skip the step, so an unreachable home server cannot push every new show into the DLQ.
pub const PLEX_TIMEOUT_RETRIES: i64 = 2;
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

#[derive(Debug, Clone, Default)]
pub struct Resolution {
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
    pub tvshow_id: Option<i32>,
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
        tvshow_id: i32,
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
    pub server: Url,
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
    ) -> Result<Resolution, MatchError> {
        let mut res = Resolution {
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
        if let Some(hit) = cache_get(self.pool, cache_source, id).await? {
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
        cache_put(self.pool, cache_source, id, show_id).await?;
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
            if let Some(Some(show)) =
                cache_get(self.pool, "tmdb_episode", &ep_id.to_string()).await?
            {
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
        let sims = similarities(self.pool, &event.show.title, &titles).await?;
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
            cache_put(self.pool, "tmdb_episode", &ep_id.to_string(), show).await?;
        }
        Ok((show, candidates))
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
    resolution: &Resolution,
    auto_add: bool,
) -> Result<MatchDecision, MatchError> {
    let mut client = pool.get().await.map_err(DbError::from)?;
    let mut candidates = Vec::new();
    if let Some(show) = &resolution.show {
        let row = client
            .query_opt(
                "SELECT id, title FROM tvshows WHERE tmdb_id = $1",
                &[&to_i32(show.tmdb_id)],
            )
            .await?;
        if let Some(row) = row {
            return Ok(MatchDecision::Map {
                tvshow_id: row.get(0),
                confidence: show.source.score(),
                method: show.source.method().to_string(),
            });
        }
    }
    // Fuzzy title. With a known TMDB id, a tracker show holding a *different* TMDB id is
    // another show; only shows without a TMDB id can still be this one.
    let year = event.show.year.and_then(|y| i32::try_from(y).ok());
    let matches = shows::similar_titles(
        &mut client,
        &event.show.title,
        FUZZY_MIN_SIMILARITY,
        resolution.show.is_some(),
        year,
    )
    .await?;
    for m in matches {
        candidates.push(Candidate {
            tvshow_id: Some(m.id),
            title: m.title,
            tmdb_id: m.tmdb_id.map(i64::from),
            match_score: round2(m.similarity * FUZZY_FACTOR),
            source: "tracker",
        });
    }
    if let [only] = candidates.as_slice() {
        if only.match_score >= AUTO_MAP_THRESHOLD {
            return Ok(MatchDecision::Map {
                tvshow_id: only.tvshow_id.expect("tracker candidate"),
                confidence: only.match_score,
                method: "title".into(),
            });
        }
    }
    if let Some(show) = &resolution.show {
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
    let tmdb_side: Vec<Candidate> = match &resolution.show {
        // The resolved TMDB show is the obvious "add it" choice for the user.
        Some(show) => vec![Candidate {
            tvshow_id: None,
            title: event.show.title.clone(),
            tmdb_id: Some(show.tmdb_id),
            match_score: show.source.score(),
            source: "tmdb",
        }],
        None => resolution.tmdb_candidates.clone(),
    };
    // A TMDB show the tracker already has is offered once, as the tracker show.
    for candidate in tmdb_side {
        if !candidates
            .iter()
            .any(|c| c.tmdb_id.is_some() && c.tmdb_id == candidate.tmdb_id)
        {
            candidates.push(candidate);
        }
    }
    Ok(MatchDecision::Conflict { kind, candidates })
}

fn to_i32(id: i64) -> i32 {
    // TMDB ids are far below 2^31; an impossible one matches nothing.
    i32::try_from(id).unwrap_or(-1)
}

/// pg_trgm similarity of `title` with each of `others` (same measure as the tracker search).
async fn similarities(
    pool: &DbPool,
    title: &str,
    others: &[String],
) -> Result<Vec<f64>, MatchError> {
    if others.is_empty() {
        return Ok(Vec::new());
    }
    let client = pool.get().await.map_err(DbError::from)?;
    let rows = client
        .query(
            "SELECT similarity($1, t)::float8 FROM unnest($2::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n",
            &[&title, &others],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// A fresh (< 24 h) cached conversion: `Some(None)` is a cached miss.
pub async fn cache_get(
    pool: &DbPool,
    source: &str,
    external_id: &str,
) -> Result<Option<Option<i64>>, MatchError> {
    let client = pool.get().await.map_err(DbError::from)?;
    let row = client
        .query_opt(
            "SELECT tmdb_id FROM tmdb_id_cache
              WHERE source = $1 AND external_id = $2 AND fetched_at > now() - interval '24 hours'",
            &[&source, &external_id],
        )
        .await?;
    Ok(row.map(|r| r.get::<_, Option<i32>>(0).map(i64::from)))
}

pub async fn cache_put(
    pool: &DbPool,
    source: &str,
    external_id: &str,
    tmdb_id: Option<i64>,
) -> Result<(), MatchError> {
    let client = pool.get().await.map_err(DbError::from)?;
    client
        .execute(
            "INSERT INTO tmdb_id_cache (source, external_id, tmdb_id, fetched_at)
             VALUES ($1, $2, $3, now())
             ON CONFLICT (source, external_id)
             DO UPDATE SET tmdb_id = EXCLUDED.tmdb_id, fetched_at = now()",
            &[&source, &external_id, &tmdb_id.map(to_i32)],
        )
        .await?;
    Ok(())
}

/// A row of `plex_show_mappings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub id: i32,
    pub tvshow_id: Option<i32>,
    pub sync_enabled: bool,
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

/// The mapping for this Plex show: by rating key, else by guid (the same show re-added to the
/// library gets a new rating key but keeps its guid).
pub async fn find_mapping<C: GenericClient>(
    client: &C,
    event: &PlexEvent,
) -> Result<Option<Mapping>, DbError> {
    let row = client
        .query_opt(
            &client
                .prepare_cached(
                    "SELECT id, tvshow_id, sync_enabled FROM plex_show_mappings
              WHERE sender = $4 AND plex_server_uuid = $1
                AND (plex_rating_key = $2 OR plex_guid = $3)
              ORDER BY (plex_rating_key = $2) DESC
              LIMIT 1",
                )
                .await?,
            &[
                &event.server_uuid,
                &event.show.rating_key,
                &show_guid(event),
                &event.sender.as_str(),
            ],
        )
        .await?;
    Ok(row.map(|r| Mapping {
        id: r.get(0),
        tvshow_id: r.get(1),
        sync_enabled: r.get(2),
    }))
}

pub async fn open_conflict<C: GenericClient>(
    client: &C,
    event: &PlexEvent,
) -> Result<Option<i32>, DbError> {
    let row = client
        .query_opt(
            "SELECT id FROM plex_conflicts
              WHERE sender = $3 AND plex_server_uuid = $1 AND plex_rating_key = $2
                AND NOT resolved",
            &[
                &event.server_uuid,
                &event.show.rating_key,
                &event.sender.as_str(),
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Serialises decisions about one Plex show for the rest of the transaction: concurrent
/// messages for a new show then see the first one's mapping or conflict.
pub async fn lock_show_identity(tx: &Transaction<'_>, event: &PlexEvent) -> Result<(), DbError> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))",
        &[&format!("plex-show:{}", event.show_key())],
    )
    .await?;
    Ok(())
}

/// Creates the mapping (or returns the one a concurrent message created).
pub async fn create_mapping(
    tx: &Transaction<'_>,
    event: &PlexEvent,
    show_ids: &ExternalIds,
    tmdb_id: Option<i64>,
    tvshow_id: i32,
    confidence: f64,
    method: &str,
) -> Result<Mapping, DbError> {
    let tvdb = show_ids.tvdb.and_then(|v| i32::try_from(v).ok());
    let year = event.show.year.and_then(|y| i32::try_from(y).ok());
    tx.execute(
        "INSERT INTO plex_show_mappings
            (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
             tvdb_id, imdb_id, tmdb_id, tvshow_id, match_confidence, match_method,
             manually_confirmed, sync_enabled, sender)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, round($10::float8::numeric, 2), $11,
                 $10::float8 >= $12::float8, true, $13)
         ON CONFLICT DO NOTHING",
        &[
            &event.server_uuid,
            &event.show.rating_key,
            &show_guid(event),
            &event.show.title,
            &year,
            &tvdb,
            &show_ids.imdb,
            &tmdb_id.map(to_i32),
            &tvshow_id,
            &confidence,
            &method,
            &AUTO_MAP_THRESHOLD,
            &event.sender.as_str(),
        ],
    )
    .await?;
    find_mapping(tx, event)
        .await?
        .ok_or_else(|| DbError::Config("mapping vanished after insert".into()))
}

/// Opens the show's conflict, or refreshes the candidates of the one already open.
pub async fn upsert_conflict(
    tx: &Transaction<'_>,
    event: &PlexEvent,
    kind: ConflictKind,
    candidates: &[Candidate],
) -> Result<i32, DbError> {
    let year = event.show.year.and_then(|y| i32::try_from(y).ok());
    let matches = serde_json::to_value(candidates).unwrap_or_else(|_| serde_json::json!([]));
    let row = tx
        .query_one(
            "INSERT INTO plex_conflicts
                (plex_server_uuid, plex_rating_key, plex_guid, plex_title, plex_year,
                 conflict_type, potential_matches, sender)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (sender, plex_server_uuid, plex_rating_key) WHERE NOT resolved
             DO UPDATE SET potential_matches = EXCLUDED.potential_matches,
                           conflict_type = EXCLUDED.conflict_type,
                           updated_at = now()
             RETURNING id",
            &[
                &event.server_uuid,
                &event.show.rating_key,
                &show_guid(event),
                &event.show.title,
                &year,
                &kind.as_str(),
                &matches,
                &event.sender.as_str(),
            ],
        )
        .await?;
    Ok(row.get(0))
}

/// Keeps an event for replay when the conflict is resolved (once per idempotency key).
pub async fn add_pending_event<C: GenericClient>(
    client: &C,
    conflict_id: i32,
    idempotency_key: &str,
    message: &serde_json::Value,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO plex_pending_events (conflict_id, idempotency_key, message)
             VALUES ($1, $2, $3)
             ON CONFLICT (conflict_id, idempotency_key) DO NOTHING",
            &[&conflict_id, &idempotency_key, message],
        )
        .await?;
    Ok(())
}
