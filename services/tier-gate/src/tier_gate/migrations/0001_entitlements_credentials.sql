-- Entitlements (tier per user) and issued credentials (for revocation).
CREATE TABLE IF NOT EXISTS tg_entitlements (
    user_id    text PRIMARY KEY,
    tier       text NOT NULL,
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tg_credentials (
    user_pub   text PRIMARY KEY,
    user_id    text NOT NULL,
    tier       text NOT NULL,
    issued_at  bigint NOT NULL,
    expires_at bigint NOT NULL,
    revoked_ts bigint
);
CREATE INDEX IF NOT EXISTS tg_credentials_user ON tg_credentials (user_id, expires_at);
CREATE INDEX IF NOT EXISTS tg_credentials_revoked ON tg_credentials (expires_at)
    WHERE revoked_ts IS NOT NULL;
