//! How records look on the outside: the JSON views of calls, activeflows and recordings shared by
//! the API and the event stream (webhooks, WebSocket), so both always say the same thing.
//!
//! The fields are the JSON fields the API documents (docs/api.md), named as VoIPBIN names them.
#![allow(missing_docs)]

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// An address as VoIPBIN shows it.
#[derive(Serialize)]
pub struct Address {
    pub r#type: String,
    pub target: String,
}

/// A call as the API shows it.
#[derive(Serialize)]
pub struct CallView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub flow_id: Option<Uuid>,
    pub direction: String,
    pub status: String,
    pub source: Address,
    pub destination: Address,
    pub hangup_reason: String,
    pub hangup_by: String,
    /// Creation to hangup, once ended.
    pub duration_ms: Option<u64>,
    /// Answer to hangup, once ended (None when never answered).
    pub talk_duration_ms: Option<u64>,
    pub tm_create: String,
    pub tm_ringing: Option<String>,
    pub tm_progressing: Option<String>,
    pub tm_hangup: Option<String>,
    pub tm_update: String,
    /// Recordings of the call, oldest first (on `GET /v1.0/calls/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_ids: Option<Vec<Uuid>>,
}

impl From<store::CallRecord> for CallView {
    fn from(c: store::CallRecord) -> Self {
        CallView {
            id: c.id,
            customer_id: c.account_id,
            flow_id: c.flow_id,
            direction: c.direction,
            status: c.status,
            source: Address {
                r#type: c.source_type,
                target: c.source_target,
            },
            destination: Address {
                r#type: c.destination_type,
                target: c.destination_target,
            },
            hangup_reason: c.hangup_reason,
            hangup_by: c.hangup_by,
            duration_ms: between(Some(&c.tm_create), c.tm_hangup.as_deref()),
            talk_duration_ms: between(c.tm_progressing.as_deref(), c.tm_hangup.as_deref()),
            tm_create: c.tm_create,
            tm_ringing: c.tm_ringing,
            tm_progressing: c.tm_progressing,
            tm_hangup: c.tm_hangup,
            tm_update: c.tm_update,
            recording_ids: None,
        }
    }
}

/// Milliseconds from `from` to `to` (UTC ISO-8601), when both are known.
fn between(from: Option<&str>, to: Option<&str>) -> Option<u64> {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let span = parse(to?)? - parse(from?)?;
    u64::try_from(span.whole_milliseconds()).ok()
}

/// An activeflow as the API shows it.
#[derive(Serialize)]
pub struct ActiveflowView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub flow_id: Option<Uuid>,
    pub reference_type: &'static str,
    pub reference_id: Uuid,
    /// `running` or `ended`.
    pub status: String,
    pub end_reason: String,
    pub current_action_id: String,
    pub execute_count: u32,
    pub executed_actions: Value,
    pub variables: Value,
    pub tm_create: String,
    pub tm_end: Option<String>,
    pub tm_update: String,
}

impl From<store::ActiveflowRecord> for ActiveflowView {
    fn from(a: store::ActiveflowRecord) -> Self {
        ActiveflowView {
            id: a.id,
            customer_id: a.account_id,
            flow_id: a.flow_id,
            reference_type: "call",
            reference_id: a.call_id,
            status: a.status,
            end_reason: a.end_reason,
            current_action_id: a.current_action_id,
            execute_count: a.execute_count,
            executed_actions: a.executed_actions,
            variables: a.variables,
            tm_create: a.tm_create,
            tm_end: a.tm_end,
            tm_update: a.tm_update,
        }
    }
}

/// A recording as the API shows it (not where its file lives).
#[derive(Serialize)]
pub struct RecordingView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub call_id: Uuid,
    /// `recording`, `ended` or `failed`.
    pub status: String,
    pub format: String,
    pub channels: u16,
    pub duration_ms: u64,
    pub end_reason: String,
    pub tm_start: String,
    pub tm_end: Option<String>,
    pub tm_update: String,
}

impl From<store::RecordingRecord> for RecordingView {
    fn from(r: store::RecordingRecord) -> Self {
        RecordingView {
            id: r.id,
            customer_id: r.account_id,
            call_id: r.call_id,
            status: r.status,
            format: r.format,
            channels: r.channels,
            duration_ms: r.duration_ms,
            end_reason: r.end_reason,
            tm_start: r.tm_start,
            tm_end: r.tm_end,
            tm_update: r.tm_update,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_call_durations_come_from_its_times() {
        assert_eq!(
            between(
                Some("2026-11-22T10:00:00.000000Z"),
                Some("2026-11-22T10:00:11.500000Z")
            ),
            Some(11_500)
        );
        assert_eq!(between(Some("2026-11-22T10:00:00.000000Z"), None), None);
        assert_eq!(between(None, Some("2026-11-22T10:00:00.000000Z")), None);
        assert_eq!(between(Some("garbage"), Some("2026-11-22T10:00:00Z")), None);
        // A clock step backwards never gives a huge unsigned number.
        assert_eq!(
            between(
                Some("2026-11-22T10:00:01.000000Z"),
                Some("2026-11-22T10:00:00.000000Z")
            ),
            None
        );
    }
}
