-- broker-handoff's schema as the pre-kit runner left it (it ran this whole text, idempotently,
-- on every start and recorded nothing). Every statement is idempotent, so on a database that
-- runner created this file changes nothing and is only recorded; on an empty one it creates it.
-- Never edit it: evolve a table by adding 0002_....sql.
CREATE TABLE IF NOT EXISTS bh_user_tiers (
    user_id text PRIMARY KEY,
    tier text NOT NULL,
    version bigint NOT NULL,
    changed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bh_oauth_states (
    state_key text PRIMARY KEY,
    user_id text NOT NULL,
    env text NOT NULL CHECK (env IN ('live', 'paper')),
    code_verifier text,
    redirect_uri text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS bh_connections (
    user_id text PRIMARY KEY,
    env text NOT NULL CHECK (env IN ('live', 'paper')),
    status text NOT NULL CHECK (status IN ('connected', 'disconnected', 'revoked')),
    scope text NOT NULL DEFAULT '',
    vault_key text NOT NULL,
    connected_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    reason text NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS bh_orders (
    user_id text NOT NULL,
    client_order_id text NOT NULL,
    fingerprint text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'placed')),
    provider_order jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_order_id)
);
CREATE TABLE IF NOT EXISTS bh_audit (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    user_id text,
    action text NOT NULL,
    outcome text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE OR REPLACE FUNCTION bh_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bh_audit is append-only (% refused)', TG_OP;
END $$;
CREATE OR REPLACE TRIGGER bh_audit_no_update_delete BEFORE UPDATE OR DELETE ON bh_audit
    FOR EACH ROW EXECUTE FUNCTION bh_audit_append_only();
CREATE OR REPLACE TRIGGER bh_audit_no_truncate BEFORE TRUNCATE ON bh_audit
    FOR EACH STATEMENT EXECUTE FUNCTION bh_audit_append_only();
CREATE TABLE IF NOT EXISTS bh_revoke_jobs (
    id bigserial PRIMARY KEY,
    status text NOT NULL CHECK (status IN ('running', 'done')),
    cursor text NOT NULL DEFAULT '',
    destroyed integer NOT NULL DEFAULT 0,
    failed integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS bh_revoke_jobs_one_running
    ON bh_revoke_jobs ((true)) WHERE status = 'running';
-- Browser binding and retry of the OAuth flow (issue 10.7, 14.4).
ALTER TABLE bh_oauth_states ADD COLUMN IF NOT EXISTS binding_hash text NOT NULL DEFAULT '';
ALTER TABLE bh_oauth_states ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'exchanging', 'failed'));
ALTER TABLE bh_oauth_states ADD COLUMN IF NOT EXISTS failure text NOT NULL DEFAULT '';
ALTER TABLE bh_oauth_states ADD COLUMN IF NOT EXISTS claimed_at timestamptz;
CREATE TABLE IF NOT EXISTS bh_connect_links (
    link_key text PRIMARY KEY,
    user_id text NOT NULL,
    env text NOT NULL CHECK (env IN ('live', 'paper')),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
-- One row per token ever written to Vault (`grants/<grant_id>`): written before the Vault
-- write ('writing'), then 'active' (the connection points at it), 'failed', 'retired'
-- (superseded or disconnected) or 'destroyed'. The reconciler destroys every Vault grant
-- that is not active (or still being written, within a grace period).
CREATE TABLE IF NOT EXISTS bh_grants (
    grant_id text PRIMARY KEY,
    user_id text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('writing', 'active', 'failed', 'retired', 'destroyed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE bh_connections ADD COLUMN IF NOT EXISTS grant_id text;
