-- Platform API: account limits, named API tokens with ids and an admin role, number updates,
-- account-level webhooks and their delivery outbox.

ALTER TABLE accounts ADD COLUMN max_concurrent_calls INTEGER;
ALTER TABLE accounts ADD COLUMN max_calls_per_second INTEGER;
ALTER TABLE accounts ADD COLUMN destination_prefixes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE accounts ADD COLUMN tm_update TEXT NOT NULL DEFAULT '';
UPDATE accounts SET tm_update = tm_create;

-- Tokens gain an id (what users list and revoke by), a name, a display prefix and a role. The
-- tokens that existed were made by bootstrap: they belong to the first account's administrator.
CREATE TABLE api_tokens_new (
    id          TEXT PRIMARY KEY NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    admin       INTEGER NOT NULL,
    tm_create   TEXT NOT NULL
);
INSERT INTO api_tokens_new (id, token_hash, account_id, name, prefix, admin, tm_create)
    SELECT lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||
           substr(lower(hex(randomblob(2))), 2) || '-a' || substr(lower(hex(randomblob(2))), 2) ||
           '-' || lower(hex(randomblob(6))),
           token_hash, account_id, 'bootstrap', '', 1, tm_create
    FROM api_tokens;
DROP TABLE api_tokens;
ALTER TABLE api_tokens_new RENAME TO api_tokens;
CREATE INDEX api_tokens_account ON api_tokens(account_id, tm_create);

ALTER TABLE numbers ADD COLUMN tm_update TEXT NOT NULL DEFAULT '';
UPDATE numbers SET tm_update = tm_create;
CREATE INDEX numbers_account ON numbers(account_id, tm_create);

CREATE TABLE webhooks (
    id                   TEXT PRIMARY KEY NOT NULL,
    account_id           TEXT NOT NULL REFERENCES accounts(id),
    name                 TEXT NOT NULL,
    uri                  TEXT NOT NULL,
    method               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    event_types          TEXT NOT NULL,     -- JSON array of event types, or ["*"]
    status               TEXT NOT NULL,     -- active, paused
    consecutive_failures INTEGER NOT NULL,
    paused_until         TEXT,
    last_error           TEXT NOT NULL,
    tm_create            TEXT NOT NULL,
    tm_update            TEXT NOT NULL
);
CREATE INDEX webhooks_account ON webhooks(account_id, tm_create);

-- The outbox: one row per (event, webhook), kept after delivery as the delivery log.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    account_id      TEXT NOT NULL,
    webhook_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,         -- pending, delivered, failed
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,      -- unix milliseconds
    last_status     INTEGER,
    last_error      TEXT NOT NULL,
    attempt_log     TEXT NOT NULL,         -- JSON array
    tm_create       TEXT NOT NULL,
    tm_update       TEXT NOT NULL,
    tm_delivered    TEXT
);
CREATE INDEX webhook_deliveries_account ON webhook_deliveries(account_id, tm_create);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, tm_create);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
