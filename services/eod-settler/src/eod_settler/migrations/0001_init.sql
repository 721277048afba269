-- Settles: every revision of every (date, symbol); the latest revision is the current settle.
CREATE TABLE settles (
    date          date        NOT NULL,
    symbol        text        NOT NULL,
    revision      integer     NOT NULL CHECK (revision >= 1),
    asset_class   text        NOT NULL,
    price         numeric     NOT NULL CHECK (price > 0),
    source        text        NOT NULL,
    stale         boolean     NOT NULL,
    session_close timestamptz NOT NULL,
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (date, symbol, revision)
);
CREATE INDEX settles_symbol_date ON settles (symbol, date DESC, revision DESC);

-- Transactional outbox: written in the same transaction as the settles; the relay publishes
-- unpublished rows in id order and marks them.
CREATE TABLE settle_outbox (
    id           bigserial   PRIMARY KEY,
    date         date        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('settle', 'done')),
    source       text,
    subject      text        NOT NULL,
    msg_id       text        NOT NULL UNIQUE,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX settle_outbox_unpublished ON settle_outbox (id) WHERE published_at IS NULL;

-- Symbols to settle per date: interest seen on md.ctl.interest, configured symbols, held options.
CREATE TABLE settle_universe (
    date        date        NOT NULL,
    symbol      text        NOT NULL,
    asset_class text        NOT NULL,
    origin      text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (date, symbol)
);

-- One row per date whose complete set (settles + done marker) is in the outbox.
CREATE TABLE settle_runs (
    date          date        PRIMARY KEY,
    session_close timestamptz NOT NULL,
    count         integer     NOT NULL,
    stale         integer     NOT NULL,
    done_msg_id   text        NOT NULL,
    completed_at  timestamptz NOT NULL
);
