//! Domain records as the store keeps them.

use serde::Serialize;
use uuid::Uuid;

/// A tenant. Every other record belongs to exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    /// Account id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time, UTC ISO-8601.
    pub tm_create: String,
}

/// A stored flow: the action list as submitted (with ids assigned), already validated.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    /// Flow id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// Name.
    pub name: String,
    /// Free-text description.
    pub detail: String,
    /// The JSON array of actions.
    pub actions: serde_json::Value,
    /// The flow that runs next on the same call when this one completes (runs past its last
    /// action), if any.
    pub on_complete_flow_id: Option<Uuid>,
    /// Creation time, UTC ISO-8601.
    pub tm_create: String,
    /// Last update time, UTC ISO-8601.
    pub tm_update: String,
}

/// A phone number routed to a flow for inbound calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    /// Number id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// The number as given, e.g. `+15550100`.
    pub number: String,
    /// Flow run for inbound calls.
    pub call_flow_id: Uuid,
    /// Display name.
    pub name: String,
    /// Creation time, UTC ISO-8601.
    pub tm_create: String,
}

/// A call detail record, updated as the call progresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Call id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// Flow the call runs, if any.
    pub flow_id: Option<Uuid>,
    /// `incoming` or `outgoing`.
    pub direction: String,
    /// `dialing`, `ringing`, `progressing`, `terminating`, `canceling` or `hangup`.
    pub status: String,
    /// Address type of the caller (`tel` or `sip`).
    pub source_type: String,
    /// The caller.
    pub source_target: String,
    /// Address type of the callee.
    pub destination_type: String,
    /// The callee.
    pub destination_target: String,
    /// Why the call ended (`normal`, `cancel`, `failed`, `timeout`, `restart`, ...); empty while live.
    pub hangup_reason: String,
    /// Who ended it: `local`, `remote`; empty while live.
    pub hangup_by: String,
    /// The SIP Call-ID.
    pub sip_call_id: String,
    /// Creation time.
    pub tm_create: String,
    /// When it started ringing.
    pub tm_ringing: Option<String>,
    /// When it was answered.
    pub tm_progressing: Option<String>,
    /// When it ended.
    pub tm_hangup: Option<String>,
    /// Last change.
    pub tm_update: String,
}

/// A call recording: one WAV file the runtime writes, created when recording starts and
/// updated when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    /// Recording id (also the file's name: `<id>.wav`).
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// The call it belongs to.
    pub call_id: Uuid,
    /// `recording` while the file is being written, then `ended` or `failed`.
    pub status: String,
    /// File format: `wav`.
    pub format: String,
    /// 1: both directions mixed; 2: the caller on the left, the callee on the right.
    pub channels: u16,
    /// Absolute path of the file on this node.
    pub path: String,
    /// Length of the audio, milliseconds (0 while recording).
    pub duration_ms: u64,
    /// Why it ended: `stop`, `duration`, `silence`, `key`, `hangup` or `error: ...`; empty while
    /// recording.
    pub end_reason: String,
    /// When recording started; the list order.
    pub tm_start: String,
    /// When it ended.
    pub tm_end: Option<String>,
    /// Last change.
    pub tm_update: String,
}

impl RecordingRecord {
    /// Status of a recording whose file is still being written.
    pub const RECORDING: &str = "recording";
    /// Status of a recording that finished and whose file is complete.
    pub const ENDED: &str = "ended";
    /// Status of a recording cut short by a write error or a restart.
    pub const FAILED: &str = "failed";

    /// True while the file is still being written.
    #[must_use]
    pub fn is_recording(&self) -> bool {
        self.status == Self::RECORDING
    }
}

/// Keyset pagination over lists ordered newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// At most this many records.
    pub size: u32,
    /// Only records after this one in list order: the previous page's last `(tm_create, id)`
    /// (`(tm_start, id)` for recordings).
    pub after: Option<(String, String)>,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            size: 100,
            after: None,
        }
    }
}

/// A SIP device (a registrar user): a phone or softphone that registers and places calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Device id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// SIP username (digest user and AOR user part); unique across the platform.
    pub username: String,
    /// Digest realm the HA1 values were computed for.
    pub realm: String,
    /// Hex MD5(username:realm:password).
    pub ha1_md5: String,
    /// Hex SHA-256(username:realm:password).
    pub ha1_sha256: String,
    /// Display name.
    pub name: String,
    /// Source IPs or CIDRs trusted as this device without digest (PBXs, IP phones on a LAN).
    pub allowed_ips: Vec<String>,
    /// Creation time.
    pub tm_create: String,
    /// Last update.
    pub tm_update: String,
}

/// One registered Contact of a device.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationRecord {
    /// The device.
    pub device_id: Uuid,
    /// The Contact URI as registered.
    pub contact: String,
    /// When it expires, unix seconds.
    pub expires_at: i64,
    /// Call-ID of the REGISTER that set it.
    pub call_id: String,
    /// CSeq of that REGISTER.
    pub cseq: u32,
    /// `q` preference.
    pub q: Option<f32>,
    /// `+sip.instance`, if any.
    pub instance: Option<String>,
    /// `udp:IP:PORT` or `tcp:IP:PORT`: where the REGISTER came from.
    pub source: String,
    /// Last update.
    pub tm_update: String,
}

/// A SIP trunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkRecord {
    /// Trunk id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// Name.
    pub name: String,
    /// Host name or IP of the carrier/PBX (or its proxy).
    pub host: String,
    /// Port; `None` means resolve (RFC 3263) or 5060.
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: String,
    /// Digest username for outbound calls and registration ("" for none).
    pub username: String,
    /// Digest password ("" for none). Kept in clear: the client side of digest needs it.
    pub password: String,
    /// Register to the trunk.
    pub register: bool,
    /// Registration interval asked for, seconds.
    pub register_expires: u32,
    /// Caller id put in From for calls through this trunk ("" to keep the call's).
    pub caller_id: String,
    /// Source IPs or CIDRs allowed to send calls from this trunk.
    pub allowed_ips: Vec<String>,
    /// Creation time.
    pub tm_create: String,
    /// Last update.
    pub tm_update: String,
}

/// One run of a flow on a call (VoIPBIN's "activeflow"), as stored when it starts and ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveflowRecord {
    /// Activeflow id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// The call it runs on.
    pub call_id: Uuid,
    /// The stored flow it runs, if it came from one.
    pub flow_id: Option<Uuid>,
    /// `running` or `ended`.
    pub status: String,
    /// Why it ended (`completed`, `stopped`, `hangup`, `call_ended`, `execution_limit`,
    /// `error: …`, `restart`); empty while running.
    pub end_reason: String,
    /// The id of the action running now (or the last one).
    pub current_action_id: String,
    /// Action starts so far.
    pub execute_count: u32,
    /// `[{stack, index, id, type, tm_execute}]`, in order.
    pub executed_actions: serde_json::Value,
    /// The run's variables.
    pub variables: serde_json::Value,
    /// When it started; the list order.
    pub tm_create: String,
    /// When it ended.
    pub tm_end: Option<String>,
    /// Last change.
    pub tm_update: String,
}

impl ActiveflowRecord {
    /// Status of a run in progress.
    pub const RUNNING: &str = "running";
    /// Status of a finished run.
    pub const ENDED: &str = "ended";
}
