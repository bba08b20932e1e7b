-- Access tokens carry the user's token version; logout, a password change and a role change
-- raise it, which ends every access token issued before at once (they are otherwise valid
-- until they expire).
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
