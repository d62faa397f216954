-- A flow may name the flow that runs next on the same call when it completes (VoIPBIN's
-- on_complete_flow_id).
ALTER TABLE flows ADD COLUMN on_complete_flow_id TEXT;
