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
    /// Outbound safety limits.
    pub limits: AccountLimits,
    /// Creation time, UTC ISO-8601.
    pub tm_create: String,
    /// Last update, UTC ISO-8601.
    pub tm_update: String,
}

/// Per-account outbound safety: how many calls at once, how fast, and where to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountLimits {
    /// Most calls (inbound and outbound) live at once; `None` for no limit.
    pub max_concurrent_calls: Option<u32>,
    /// Most outbound calls started per second; `None` for no limit.
    pub max_calls_per_second: Option<u32>,
    /// When not empty, outbound destinations must start with one of these prefixes (compared
    /// on the number or SIP user part without a leading `+`): a toll-fraud guard.
    pub destination_prefixes: Vec<String>,
}

/// An API token as stored: only its SHA-256 is kept (see [`crate::hash_token`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token id (what list and revoke use; never the secret).
    pub id: Uuid,
    /// The account it acts as.
    pub account_id: Uuid,
    /// Display name.
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub token_hash: String,
    /// The first characters of the secret, shown in lists so a user can tell tokens apart.
    pub prefix: String,
    /// Administrators may create and list accounts and change their limits.
    pub admin: bool,
    /// Creation time.
    pub tm_create: String,
}

/// An account-level webhook target: events of the listed types are POSTed to `uri`, signed
/// with `secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Webhook id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// Display name.
    pub name: String,
    /// Target URL (http or https).
    pub uri: String,
    /// HTTP method: `POST` or `PUT`.
    pub method: String,
    /// HMAC-SHA256 key of the `X-Voxflow-Signature` header.
    pub secret: String,
    /// Event types delivered (`call_created`, `call_hangup`, ...); `*` for every type.
    pub event_types: Vec<String>,
    /// `active`, or `paused` while the circuit breaker holds deliveries back.
    pub status: String,
    /// Failed attempts in a row (reset by a success).
    pub consecutive_failures: u32,
    /// While paused: when the breaker lets the next attempt through, UTC ISO-8601.
    pub paused_until: Option<String>,
    /// The last failure, for the user to read ("" when none).
    pub last_error: String,
    /// Creation time.
    pub tm_create: String,
    /// Last update.
    pub tm_update: String,
}

impl WebhookRecord {
    /// Status of a webhook whose deliveries go out.
    pub const ACTIVE: &str = "active";
    /// Status of a webhook held back by the circuit breaker (deliveries wait, none are lost).
    pub const PAUSED: &str = "paused";
}

/// One event to deliver to one webhook: the outbox row and its delivery log.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Delivery id.
    pub id: Uuid,
    /// Owning account.
    pub account_id: Uuid,
    /// The webhook it goes to.
    pub webhook_id: Uuid,
    /// The event's id (the same for every webhook the event goes to).
    pub event_id: Uuid,
    /// The event's type.
    pub event_type: String,
    /// The exact JSON body sent (and signed).
    pub payload: String,
    /// `pending` (waiting for its next attempt), `delivered`, or `failed` (gave up).
    pub status: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, unix milliseconds.
    pub next_attempt_at: i64,
    /// HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed ("" when it did not).
    pub last_error: String,
    /// `[{attempt, tm, status, error, duration_ms}]`: every attempt, in order.
    pub attempt_log: serde_json::Value,
    /// Creation (enqueue) time; the list order.
    pub tm_create: String,
    /// Last change.
    pub tm_update: String,
    /// When it was delivered.
    pub tm_delivered: Option<String>,
}

impl DeliveryRecord {
    /// Waiting for its next attempt.
    pub const PENDING: &str = "pending";
    /// The target answered 2xx.
    pub const DELIVERED: &str = "delivered";
    /// Given up after the last retry (or refused with a 4xx that retrying cannot fix).
    pub const FAILED: &str = "failed";
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
    /// Last update, UTC ISO-8601.
    pub tm_update: String,
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
