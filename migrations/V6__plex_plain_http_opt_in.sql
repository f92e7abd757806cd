-- The Plex token is sent to the user's server only over https, unless the user explicitly
-- allows plain http for a server on their own network. Existing rows start without the
-- opt-in: a stored http:// server URL is no longer used until the user saves it again with
-- allowInsecureHttp (the token would otherwise keep travelling in clear).
ALTER TABLE plex_config
    ADD COLUMN IF NOT EXISTS allow_insecure_http BOOLEAN NOT NULL DEFAULT false;
