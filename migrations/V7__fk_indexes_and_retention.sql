-- Indexes on the foreign-key columns that had none. Deleting (or re-keying) a tracker show
-- sets these columns to NULL (ON DELETE SET NULL), which without an index scans the whole
-- activity log and conflict table, under lock, once per deleted show. Partial: most log rows
-- and every open conflict have no show.
CREATE INDEX IF NOT EXISTS idx_webhook_logs_tvshow
    ON plex_webhook_logs (tvshow_id) WHERE tvshow_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS idx_plex_conflicts_resolved_tvshow
    ON plex_conflicts (resolved_tvshow_id) WHERE resolved_tvshow_id IS NOT NULL;

-- Retention deletes processed idempotency keys by age (the processor's daily run).
CREATE INDEX IF NOT EXISTS idx_processed_messages_processed_at
    ON plex_processed_messages (processed_at);
