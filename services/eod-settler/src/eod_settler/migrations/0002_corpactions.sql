-- Corporate actions: every revision of every (date, symbol, action id) published.
CREATE TABLE corporate_actions (
    date         date        NOT NULL,
    symbol       text        NOT NULL,
    action_id    text        NOT NULL,
    revision     integer     NOT NULL CHECK (revision >= 1),
    type         text        NOT NULL,
    content_hash text        NOT NULL,
    computed_at  timestamptz NOT NULL,
    PRIMARY KEY (date, symbol, action_id, revision)
);

ALTER TABLE settle_outbox DROP CONSTRAINT settle_outbox_kind_check;
ALTER TABLE settle_outbox ADD CONSTRAINT settle_outbox_kind_check
    CHECK (kind IN ('settle', 'done', 'corpaction'));

-- One row per date whose corporate actions run completed (the scheduler runs a day once).
CREATE TABLE corpaction_runs (
    date         date        PRIMARY KEY,
    actions      integer     NOT NULL,
    completed_at timestamptz NOT NULL
);
