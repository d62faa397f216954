-- The PostgreSQL schema: the same tables and columns as SQLite's migrations 0001..0007 leave.
--
-- Ids and timestamps are TEXT (lower-case UUIDs, fixed-width UTC ISO-8601) with the "C"
-- collation, so that ordering and keyset pagination compare bytes exactly as SQLite does,
-- whatever the database's default locale. JSON columns are TEXT too: they round-trip the exact
-- text written (webhook payloads are signed as sent).

CREATE TABLE accounts (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    name                 TEXT NOT NULL,
    max_concurrent_calls BIGINT,
    max_calls_per_second BIGINT,
    destination_prefixes TEXT NOT NULL DEFAULT '[]',  -- JSON array of prefixes
    tm_create            TEXT COLLATE "C" NOT NULL,
    tm_update            TEXT COLLATE "C" NOT NULL
);
CREATE INDEX accounts_created ON accounts(tm_create, id);

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the secret
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    name        TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    admin       BOOLEAN NOT NULL,
    tm_create   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX api_tokens_account ON api_tokens(account_id, tm_create, id);

CREATE TABLE flows (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    account_id          TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    name                TEXT NOT NULL,
    detail              TEXT NOT NULL,
    actions             TEXT NOT NULL,     -- JSON array of actions
    on_complete_flow_id TEXT COLLATE "C",
    tm_create           TEXT COLLATE "C" NOT NULL,
    tm_update           TEXT COLLATE "C" NOT NULL
);
CREATE INDEX flows_account ON flows(account_id, tm_create, id);

CREATE TABLE numbers (
    id             TEXT COLLATE "C" PRIMARY KEY,
    account_id     TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    number         TEXT COLLATE "C" NOT NULL UNIQUE,  -- digits without '+', the routing key
    display_number TEXT NOT NULL,                     -- as the user gave it
    call_flow_id   TEXT COLLATE "C" NOT NULL,
    name           TEXT NOT NULL,
    tm_create      TEXT COLLATE "C" NOT NULL,
    tm_update      TEXT COLLATE "C" NOT NULL
);
CREATE INDEX numbers_account ON numbers(account_id, tm_create, id);

-- Calls, recordings, activeflows and deliveries are written by the runtime and carry no
-- foreign keys, so a record outlives whatever else is purged.
CREATE TABLE calls (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    account_id         TEXT COLLATE "C" NOT NULL,
    flow_id            TEXT COLLATE "C",
    direction          TEXT NOT NULL,
    status             TEXT NOT NULL,
    source_type        TEXT NOT NULL,
    source_target      TEXT NOT NULL,
    destination_type   TEXT NOT NULL,
    destination_target TEXT NOT NULL,
    hangup_reason      TEXT NOT NULL,
    hangup_by          TEXT NOT NULL,
    sip_call_id        TEXT NOT NULL,
    tm_create          TEXT COLLATE "C" NOT NULL,
    tm_ringing         TEXT,
    tm_progressing     TEXT,
    tm_hangup          TEXT,
    tm_update          TEXT NOT NULL
);
CREATE INDEX calls_account ON calls(account_id, tm_create, id);
CREATE INDEX calls_live ON calls(status);

-- SIP devices (registrar users). Passwords are kept only as digest HA1 values for the realm.
CREATE TABLE devices (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    username    TEXT COLLATE "C" NOT NULL UNIQUE,
    realm       TEXT NOT NULL,
    ha1_md5     TEXT NOT NULL,
    ha1_sha256  TEXT NOT NULL,
    name        TEXT NOT NULL,
    allowed_ips TEXT NOT NULL DEFAULT '[]',   -- JSON array of IPs/CIDRs trusted without digest
    tm_create   TEXT COLLATE "C" NOT NULL,
    tm_update   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX devices_account ON devices(account_id, tm_create, id);

-- Where a device can be reached: one row per registered Contact.
CREATE TABLE registrations (
    device_id  TEXT COLLATE "C" NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    contact    TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,          -- unix seconds
    call_id    TEXT NOT NULL,
    cseq       BIGINT NOT NULL,
    q          DOUBLE PRECISION,
    instance   TEXT,
    source     TEXT NOT NULL,            -- transport:addr the REGISTER came from
    tm_update  TEXT NOT NULL,
    PRIMARY KEY (device_id, contact)
);
CREATE INDEX registrations_expiry ON registrations(expires_at);

-- SIP trunks to and from carriers / PBXs.
CREATE TABLE trunks (
    id               TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    name             TEXT NOT NULL,
    host             TEXT NOT NULL,
    port             BIGINT,
    transport        TEXT NOT NULL,
    username         TEXT NOT NULL,
    password         TEXT NOT NULL,
    register         BOOLEAN NOT NULL,
    register_expires BIGINT NOT NULL,
    caller_id        TEXT NOT NULL,
    allowed_ips      TEXT NOT NULL,     -- JSON array of IPs/CIDRs allowed to send us calls
    tm_create        TEXT COLLATE "C" NOT NULL,
    tm_update        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX trunks_account ON trunks(account_id, tm_create, id);

-- Call recordings: one row per WAV file the runtime writes.
CREATE TABLE recordings (
    id          TEXT COLLATE "C" PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL,
    call_id     TEXT COLLATE "C" NOT NULL,
    status      TEXT NOT NULL,     -- recording, ended, failed
    format      TEXT NOT NULL,     -- wav
    channels    BIGINT NOT NULL,   -- 1 mixed, 2 caller left / callee right
    path        TEXT NOT NULL,     -- absolute path of the file on its node
    duration_ms BIGINT NOT NULL,
    end_reason  TEXT NOT NULL,
    tm_start    TEXT COLLATE "C" NOT NULL,
    tm_end      TEXT,
    tm_update   TEXT NOT NULL
);
CREATE INDEX recordings_account ON recordings(account_id, tm_start, id);
CREATE INDEX recordings_call ON recordings(call_id, tm_start, id);
CREATE INDEX recordings_live ON recordings(status);

-- Activeflows: one row per run of a flow on a call.
CREATE TABLE activeflows (
    id                TEXT COLLATE "C" PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    call_id           TEXT COLLATE "C" NOT NULL,
    flow_id           TEXT COLLATE "C",
    status            TEXT NOT NULL,     -- running, ended
    end_reason        TEXT NOT NULL,
    current_action_id TEXT NOT NULL,
    execute_count     BIGINT NOT NULL,
    executed_actions  TEXT NOT NULL,     -- JSON array of {stack, index, id, type, tm_execute}
    variables         TEXT NOT NULL,     -- JSON object
    tm_create         TEXT COLLATE "C" NOT NULL,
    tm_end            TEXT,
    tm_update         TEXT NOT NULL
);
CREATE INDEX activeflows_account ON activeflows(account_id, tm_create, id);
CREATE INDEX activeflows_call ON activeflows(call_id, tm_create);
CREATE INDEX activeflows_live ON activeflows(status);

-- Account-level webhooks and their circuit-breaker state.
CREATE TABLE webhooks (
    id                   TEXT COLLATE "C" PRIMARY KEY,
    account_id           TEXT COLLATE "C" NOT NULL REFERENCES accounts(id),
    name                 TEXT NOT NULL,
    uri                  TEXT NOT NULL,
    method               TEXT NOT NULL,
    secret               TEXT NOT NULL,
    event_types          TEXT NOT NULL,     -- JSON array of event types, or ["*"]
    status               TEXT NOT NULL,     -- active, paused
    consecutive_failures BIGINT NOT NULL,
    paused_until         TEXT,
    last_error           TEXT NOT NULL,
    tm_create            TEXT COLLATE "C" NOT NULL,
    tm_update            TEXT COLLATE "C" NOT NULL
);
CREATE INDEX webhooks_account ON webhooks(account_id, tm_create, id);

-- The outbox: one row per (event, webhook), kept after delivery as the delivery log.
CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    account_id      TEXT COLLATE "C" NOT NULL,
    webhook_id      TEXT COLLATE "C" NOT NULL,
    event_id        TEXT COLLATE "C" NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,         -- the exact JSON body sent (and signed)
    status          TEXT NOT NULL,         -- pending, delivered, failed
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,       -- unix milliseconds
    last_status     BIGINT,
    last_error      TEXT NOT NULL,
    attempt_log     TEXT NOT NULL,         -- JSON array
    tm_create       TEXT COLLATE "C" NOT NULL,
    tm_update       TEXT COLLATE "C" NOT NULL,
    tm_delivered    TEXT
);
CREATE INDEX webhook_deliveries_account ON webhook_deliveries(account_id, tm_create, id);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, tm_create, id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
