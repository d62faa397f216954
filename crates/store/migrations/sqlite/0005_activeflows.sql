-- Activeflows: one row per run of a flow on a call (VoIPBIN's activeflow). Written when the run
-- starts and when it ends; while it runs, the live state is read from the call itself.
CREATE TABLE activeflows (
    id                TEXT PRIMARY KEY NOT NULL,
    account_id        TEXT NOT NULL,
    call_id           TEXT NOT NULL,
    flow_id           TEXT,
    status            TEXT NOT NULL,     -- running, ended
    end_reason        TEXT NOT NULL,     -- completed, stopped, hangup, call_ended, execution_limit, error: ..., restart
    current_action_id TEXT NOT NULL,
    execute_count     INTEGER NOT NULL,
    executed_actions  TEXT NOT NULL,     -- JSON array of {stack, index, id, type, tm_execute}
    variables         TEXT NOT NULL,     -- JSON object
    tm_create         TEXT NOT NULL,
    tm_end            TEXT,
    tm_update         TEXT NOT NULL
);
CREATE INDEX activeflows_account ON activeflows(account_id, tm_create);
CREATE INDEX activeflows_call ON activeflows(call_id, tm_create);
CREATE INDEX activeflows_live ON activeflows(status);
