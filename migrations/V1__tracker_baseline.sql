-- Baseline tracker schema. The original design assumed an existing `tvshows` table without
-- defining it (docs/architecture.md, "Flaws of the original design, fixed"); this is the
-- smallest shape a real tracker can map onto.
CREATE TABLE IF NOT EXISTS tvshows (
    id               SERIAL PRIMARY KEY,
    tmdb_id          INTEGER UNIQUE,
    title            TEXT NOT NULL,
    show_start_date  DATE,
    status           TEXT NOT NULL DEFAULT 'Watching',
    -- [{seasonNumber, episodes: [{episodeNumber, title, airDate, watched, dateWatched}]}]
    seasons          JSONB NOT NULL DEFAULT '[]'::jsonb,
    watched_episodes INTEGER NOT NULL DEFAULT 0 CHECK (watched_episodes >= 0),
    total_episodes   INTEGER NOT NULL DEFAULT 0 CHECK (total_episodes >= 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT tvshows_seasons_is_array CHECK (jsonb_typeof(seasons) = 'array')
);
