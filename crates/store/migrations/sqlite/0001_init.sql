CREATE TABLE accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    tm_create   TEXT NOT NULL
);

CREATE TABLE api_tokens (
    token_hash  TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    tm_create   TEXT NOT NULL
);

CREATE TABLE flows (
    id          TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    actions     TEXT NOT NULL,
    tm_create   TEXT NOT NULL,
    tm_update   TEXT NOT NULL
);
CREATE INDEX flows_account ON flows(account_id, tm_create);

CREATE TABLE numbers (
    id           TEXT PRIMARY KEY NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    number       TEXT NOT NULL UNIQUE,   -- digits without '+', the routing key
    display_number TEXT NOT NULL,        -- as the user gave it
    call_flow_id TEXT NOT NULL,
    name         TEXT NOT NULL,
    tm_create    TEXT NOT NULL
);

CREATE TABLE calls (
    id                 TEXT PRIMARY KEY NOT NULL,
    account_id         TEXT NOT NULL,
    flow_id            TEXT,
    direction          TEXT NOT NULL,
    status             TEXT NOT NULL,
    source_type        TEXT NOT NULL,
    source_target      TEXT NOT NULL,
    destination_type   TEXT NOT NULL,
    destination_target TEXT NOT NULL,
    hangup_reason      TEXT NOT NULL,
    hangup_by          TEXT NOT NULL,
    sip_call_id        TEXT NOT NULL,
    tm_create          TEXT NOT NULL,
    tm_ringing         TEXT,
    tm_progressing     TEXT,
    tm_hangup          TEXT,
    tm_update          TEXT NOT NULL
);
CREATE INDEX calls_account ON calls(account_id, tm_create);
CREATE INDEX calls_live ON calls(status);
