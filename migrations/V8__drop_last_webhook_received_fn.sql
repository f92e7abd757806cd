-- V5's plex_last_webhook_received() is read inline instead: a SQL function with an aggregate is
-- not inlined and its body is planned again on every call (about 4x the cost of the same
-- subquery in a prepared statement), and the processor reads the settings on every message.
DROP FUNCTION IF EXISTS plex_last_webhook_received(TEXT);
