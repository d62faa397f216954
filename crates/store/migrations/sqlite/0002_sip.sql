-- SIP devices (registrar users). Passwords are kept only as digest HA1 values for the realm.
CREATE TABLE devices (
    id             TEXT PRIMARY KEY NOT NULL,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    username       TEXT NOT NULL UNIQUE,
    realm          TEXT NOT NULL,
    ha1_md5        TEXT NOT NULL,
    ha1_sha256     TEXT NOT NULL,
    name           TEXT NOT NULL,
    tm_create      TEXT NOT NULL,
    tm_update      TEXT NOT NULL
);
CREATE INDEX devices_account ON devices(account_id, tm_create);

-- Where a device can be reached: one row per registered Contact.
CREATE TABLE registrations (
    device_id   TEXT NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    contact     TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,   -- unix seconds
    call_id     TEXT NOT NULL,
    cseq        INTEGER NOT NULL,
    q           REAL,
    instance    TEXT,
    source      TEXT NOT NULL,      -- transport:addr the REGISTER came from (NAT traversal)
    tm_update   TEXT NOT NULL,
    PRIMARY KEY (device_id, contact)
);
CREATE INDEX registrations_expiry ON registrations(expires_at);

-- SIP trunks to and from carriers / PBXs.
CREATE TABLE trunks (
    id               TEXT PRIMARY KEY NOT NULL,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    name             TEXT NOT NULL,
    host             TEXT NOT NULL,
    port             INTEGER,
    transport        TEXT NOT NULL,
    username         TEXT NOT NULL,
    password         TEXT NOT NULL,
    register         INTEGER NOT NULL,
    register_expires INTEGER NOT NULL,
    caller_id        TEXT NOT NULL,
    allowed_ips      TEXT NOT NULL,     -- JSON array of IPs/CIDRs allowed to send us calls
    tm_create        TEXT NOT NULL,
    tm_update        TEXT NOT NULL
);
CREATE INDEX trunks_account ON trunks(account_id, tm_create);
