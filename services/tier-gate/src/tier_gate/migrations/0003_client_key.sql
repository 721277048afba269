-- A client-supplied public key stays owned by its first user (never pruned, never
-- re-assigned); generated keys are random and pruned after they expire.
ALTER TABLE tg_credentials ADD COLUMN IF NOT EXISTS client_key boolean NOT NULL DEFAULT false;
