-- Call recordings: one row per WAV file the runtime writes under <data_dir>/recordings/.
-- Like calls, rows are written by the runtime and carry no foreign keys, so a record outlives
-- whatever else is purged.
CREATE TABLE recordings (
    id           TEXT PRIMARY KEY NOT NULL,
    account_id   TEXT NOT NULL,
    call_id      TEXT NOT NULL,
    status       TEXT NOT NULL,     -- recording, ended, failed
    format       TEXT NOT NULL,     -- wav
    channels     INTEGER NOT NULL,  -- 1 mixed, 2 caller left / callee right
    path         TEXT NOT NULL,     -- absolute path of the file on this node
    duration_ms  INTEGER NOT NULL,
    end_reason   TEXT NOT NULL,
    tm_start     TEXT NOT NULL,
    tm_end       TEXT,
    tm_update    TEXT NOT NULL
);
CREATE INDEX recordings_account ON recordings(account_id, tm_start);
CREATE INDEX recordings_call ON recordings(call_id, tm_start);
CREATE INDEX recordings_live ON recordings(status);
