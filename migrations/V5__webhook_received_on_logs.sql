-- When a webhook arrived is kept on its log row, and "last webhook received" is the newest of
-- them. Before, every log write also updated the sender's settings row (plex_config's single
-- row for Plex), so all message processing queued on that one row lock. The settings columns
-- stay: they hold what was recorded before this migration, and are read as a floor.
ALTER TABLE plex_webhook_logs ADD COLUMN IF NOT EXISTS received_at TIMESTAMPTZ;
CREATE INDEX IF NOT EXISTS idx_webhook_logs_sender_received
    ON plex_webhook_logs (sender, received_at DESC) WHERE received_at IS NOT NULL;

-- The newest arrival logged for a sender: one probe of the index above.
CREATE OR REPLACE FUNCTION plex_last_webhook_received(p_sender TEXT) RETURNS TIMESTAMPTZ
    LANGUAGE sql STABLE AS $$
    SELECT max(received_at) FROM plex_webhook_logs
     WHERE sender = p_sender AND received_at IS NOT NULL
$$;
