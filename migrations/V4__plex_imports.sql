-- History imports (POST /api/plex/import). The start enumerates the Plex server's TV shows and
-- enqueues one message per show; the processor records each show's result here in the same
-- transaction as the episodes it marks, so a redelivered message counts once and a crash
-- halfway resumes where it stopped. Progress is the sum over the shows (no hot counter row).
CREATE TABLE IF NOT EXISTS plex_imports (
    id            SERIAL PRIMARY KEY,
    status        TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'failed')),
    -- Library section keys imported; empty: every TV section.
    sections      TEXT[] NOT NULL DEFAULT '{}',
    watched_since DATE,
    error         TEXT,
    started_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at   TIMESTAMPTZ,
    CONSTRAINT plex_imports_finished CHECK ((status = 'running') = (finished_at IS NULL))
);
-- At most one import runs at a time.
CREATE UNIQUE INDEX IF NOT EXISTS plex_imports_one_running ON plex_imports ((true))
    WHERE status = 'running';

-- One row per show an import fans out; `outcome` is NULL until the processor has handled it.
CREATE TABLE IF NOT EXISTS plex_import_shows (
    import_id       INTEGER NOT NULL REFERENCES plex_imports (id) ON DELETE CASCADE,
    plex_rating_key TEXT NOT NULL,
    plex_title      TEXT NOT NULL,
    outcome         TEXT
        CHECK (outcome IN ('mapped', 'auto_added', 'conflict', 'failed', 'skipped')),
    episodes_marked INTEGER NOT NULL DEFAULT 0,
    already_watched INTEGER NOT NULL DEFAULT 0,
    detail          TEXT,
    finished_at     TIMESTAMPTZ,
    PRIMARY KEY (import_id, plex_rating_key),
    CONSTRAINT plex_import_shows_finished CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE INDEX IF NOT EXISTS idx_plex_import_shows_pending ON plex_import_shows (import_id)
    WHERE outcome IS NULL;

-- Token buckets shared by every function instance (TMDB's rate limit holds for the whole
-- fan-out of an import, not per Lambda instance).
CREATE TABLE IF NOT EXISTS rate_limit_buckets (
    name       TEXT PRIMARY KEY,
    tokens     DOUBLE PRECISION NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
