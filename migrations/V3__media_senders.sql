-- Jellyfin and Emby beside Plex. The sender kind becomes part of a show's server identity, so a
-- Plex show and a Jellyfin show with the same server id and item key never share a mapping or a
-- conflict. Existing rows came from Plex.
ALTER TABLE plex_show_mappings
    ADD COLUMN IF NOT EXISTS sender TEXT NOT NULL DEFAULT 'plex'
        CHECK (sender IN ('plex', 'jellyfin', 'emby'));
ALTER TABLE plex_conflicts
    ADD COLUMN IF NOT EXISTS sender TEXT NOT NULL DEFAULT 'plex'
        CHECK (sender IN ('plex', 'jellyfin', 'emby'));
-- The log keeps the sender so a replay parses the stored payload with the right edge.
ALTER TABLE plex_webhook_logs
    ADD COLUMN IF NOT EXISTS sender TEXT NOT NULL DEFAULT 'plex'
        CHECK (sender IN ('plex', 'jellyfin', 'emby'));

ALTER TABLE plex_show_mappings
    DROP CONSTRAINT IF EXISTS plex_show_mappings_plex_server_uuid_plex_rating_key_key,
    DROP CONSTRAINT IF EXISTS plex_show_mappings_plex_server_uuid_plex_guid_key;
ALTER TABLE plex_show_mappings
    ADD CONSTRAINT plex_show_mappings_show_identity UNIQUE (sender, plex_server_uuid, plex_rating_key),
    ADD CONSTRAINT plex_show_mappings_guid_identity UNIQUE (sender, plex_server_uuid, plex_guid);

DROP INDEX IF EXISTS plex_conflicts_one_open_per_show;
CREATE UNIQUE INDEX IF NOT EXISTS plex_conflicts_one_open_per_show
    ON plex_conflicts (sender, plex_server_uuid, plex_rating_key) WHERE NOT resolved;

-- Settings of the Jellyfin and Emby edges (Plex keeps plex_config, which also holds its token).
CREATE TABLE IF NOT EXISTS media_senders (
    user_id               INTEGER NOT NULL DEFAULT 1,
    sender                TEXT NOT NULL CHECK (sender IN ('jellyfin', 'emby')),
    enabled               BOOLEAN NOT NULL DEFAULT true,
    -- The user's own account on that server (user name or user id): its plays count.
    account               TEXT NOT NULL CHECK (btrim(account) <> ''),
    -- Further accounts (user names or ids, as JSON strings) whose plays also count.
    allowed_accounts      JSONB NOT NULL DEFAULT '[]'::jsonb CHECK (jsonb_typeof(allowed_accounts) = 'array'),
    auto_add_shows        BOOLEAN NOT NULL DEFAULT true,
    auto_mark_watched     BOOLEAN NOT NULL DEFAULT true,
    last_webhook_received TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, sender)
);
