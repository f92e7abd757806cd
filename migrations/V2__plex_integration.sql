-- Plex integration schema: the original design's tables with the fixes listed in
-- docs/architecture.md, "Flaws of the original design, fixed"
-- (TIMESTAMPTZ everywhere, no useless dedup constraint, one *open* conflict per show,
-- mappings survive show deletion, show identity includes the server).
CREATE EXTENSION IF NOT EXISTS pg_trgm;

ALTER TABLE tvshows
    ADD COLUMN IF NOT EXISTS plex_synced    BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS plex_last_sync TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS source         TEXT NOT NULL DEFAULT 'manual'
        CHECK (source IN ('manual', 'plex', 'import'));

CREATE INDEX IF NOT EXISTS idx_tvshows_plex_synced ON tvshows (plex_synced) WHERE plex_synced;
-- Fuzzy title matching (similarity / % operator) without a sequential scan.
CREATE INDEX IF NOT EXISTS idx_tvshows_title_trgm ON tvshows USING gin (title gin_trgm_ops);

-- The Plex token is stored encrypted (versioned AES-256-GCM, see shared/src/crypto.rs).
-- The webhook secret lives in Secrets Manager, not here.
CREATE TABLE IF NOT EXISTS plex_config (
    id                    SERIAL PRIMARY KEY,
    user_id               INTEGER NOT NULL DEFAULT 1 UNIQUE,
    plex_token            TEXT NOT NULL,
    plex_server_url       TEXT,
    plex_server_name      TEXT,
    plex_server_uuid      TEXT,
    -- plex.tv account that owns the token: the processor's account gate compares plays with it.
    plex_account_id       BIGINT,
    plex_account_name     TEXT,
    -- Extra accounts (usernames or ids, as JSON strings/numbers) whose plays also count.
    allowed_accounts      JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(allowed_accounts) = 'array'),
    enabled               BOOLEAN NOT NULL DEFAULT true,
    auto_add_shows        BOOLEAN NOT NULL DEFAULT true,
    auto_mark_watched     BOOLEAN NOT NULL DEFAULT true,
    sync_started_date     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_webhook_received TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per Plex *show* (never per episode), keyed by server + show rating key / guid.
CREATE TABLE IF NOT EXISTS plex_show_mappings (
    id                 SERIAL PRIMARY KEY,
    plex_server_uuid   TEXT NOT NULL DEFAULT '',
    plex_rating_key    TEXT NOT NULL,
    plex_guid          TEXT NOT NULL,
    plex_title         TEXT NOT NULL,
    plex_year          INTEGER,
    tvdb_id            INTEGER,
    imdb_id            TEXT,
    tmdb_id            INTEGER,
    -- SET NULL (not CASCADE): a deleted show must not come back through auto-add on the next
    -- scrobble; the trigger below also turns sync off (docs/architecture.md, "Flaws of the original design, fixed").
    tvshow_id          INTEGER REFERENCES tvshows (id) ON DELETE SET NULL,
    match_confidence   NUMERIC(3, 2) CHECK (match_confidence BETWEEN 0 AND 1),
    match_method       TEXT,
    manually_confirmed BOOLEAN NOT NULL DEFAULT false,
    sync_enabled       BOOLEAN NOT NULL DEFAULT true,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (plex_server_uuid, plex_rating_key),
    UNIQUE (plex_server_uuid, plex_guid)
);
CREATE INDEX IF NOT EXISTS idx_plex_mappings_tvshow ON plex_show_mappings (tvshow_id);
CREATE INDEX IF NOT EXISTS idx_plex_mappings_tmdb ON plex_show_mappings (tmdb_id) WHERE tmdb_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_plex_mappings_tvdb ON plex_show_mappings (tvdb_id) WHERE tvdb_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_plex_mappings_imdb ON plex_show_mappings (imdb_id) WHERE imdb_id IS NOT NULL;

CREATE OR REPLACE FUNCTION plex_disable_mappings_of_deleted_show() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE plex_show_mappings
       SET sync_enabled = false, updated_at = now()
     WHERE tvshow_id = OLD.id;
    RETURN OLD;
END
$$;
DROP TRIGGER IF EXISTS tvshows_disable_plex_mappings ON tvshows;
CREATE TRIGGER tvshows_disable_plex_mappings
    BEFORE DELETE ON tvshows
    FOR EACH ROW EXECUTE FUNCTION plex_disable_mappings_of_deleted_show();

-- Audit trail: exactly one row per processed queue message. Deduplication is done by the FIFO
-- queue and plex_processed_messages, not by a (rating_key, event, created_at) constraint.
CREATE TABLE IF NOT EXISTS plex_webhook_logs (
    id                     BIGSERIAL PRIMARY KEY,
    message_id             TEXT,
    idempotency_key        TEXT,
    event_type             TEXT NOT NULL,
    plex_rating_key        TEXT,
    plex_title             TEXT,
    plex_season            INTEGER,
    plex_episode           INTEGER,
    payload                JSONB NOT NULL,
    status                 TEXT NOT NULL
        CHECK (status IN ('success', 'failed', 'ignored', 'duplicate', 'needs_resolution')),
    error_message          TEXT,
    processing_duration_ms INTEGER,
    receive_count          INTEGER,
    action_taken           TEXT,
    tvshow_id              INTEGER REFERENCES tvshows (id) ON DELETE SET NULL,
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_webhook_logs_created ON plex_webhook_logs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_webhook_logs_status ON plex_webhook_logs (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_webhook_logs_rating_key ON plex_webhook_logs (plex_rating_key);

CREATE TABLE IF NOT EXISTS plex_conflicts (
    id                 SERIAL PRIMARY KEY,
    plex_server_uuid   TEXT NOT NULL DEFAULT '',
    plex_rating_key    TEXT NOT NULL,
    plex_guid          TEXT NOT NULL,
    plex_title         TEXT NOT NULL,
    plex_year          INTEGER,
    conflict_type      TEXT NOT NULL CHECK (conflict_type IN ('multiple_matches', 'no_match', 'ambiguous')),
    -- [{tvshowId, title, tmdbId, matchScore, source}]
    potential_matches  JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(potential_matches) = 'array'),
    resolved           BOOLEAN NOT NULL DEFAULT false,
    resolved_tvshow_id INTEGER REFERENCES tvshows (id) ON DELETE SET NULL,
    resolved_at        TIMESTAMPTZ,
    resolution_action  TEXT
        CHECK (resolution_action IN ('user_selected', 'user_created_new', 'auto_resolved', 'ignored')),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT plex_conflicts_resolution_complete CHECK (resolved = (resolved_at IS NOT NULL))
);
-- At most one open conflict per Plex show; any number of resolved ones (docs/architecture.md, "Flaws of the original design, fixed").
CREATE UNIQUE INDEX IF NOT EXISTS plex_conflicts_one_open_per_show
    ON plex_conflicts (plex_server_uuid, plex_rating_key) WHERE NOT resolved;
CREATE INDEX IF NOT EXISTS idx_plex_conflicts_unresolved
    ON plex_conflicts (created_at DESC) WHERE NOT resolved;

-- Events that arrived while their show had an open conflict; replayed on resolution.
CREATE TABLE IF NOT EXISTS plex_pending_events (
    id              BIGSERIAL PRIMARY KEY,
    conflict_id     INTEGER NOT NULL REFERENCES plex_conflicts (id) ON DELETE CASCADE,
    idempotency_key TEXT NOT NULL,
    message         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at     TIMESTAMPTZ,
    UNIQUE (conflict_id, idempotency_key)
);

-- Idempotency: a message's key is recorded in the same transaction as the change it made,
-- so a redelivered message changes nothing.
CREATE TABLE IF NOT EXISTS plex_processed_messages (
    idempotency_key TEXT PRIMARY KEY,
    message_id      TEXT,
    processed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Cache of id conversions (TVDB/IMDB/Plex/title -> TMDB show id), 24 h freshness.
-- tmdb_id NULL records a known miss so a failing lookup is not repeated on every event.
CREATE TABLE IF NOT EXISTS tmdb_id_cache (
    source      TEXT NOT NULL,
    external_id TEXT NOT NULL,
    tmdb_id     INTEGER,
    fetched_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, external_id)
);
