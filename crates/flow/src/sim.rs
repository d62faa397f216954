//! The offline dry-run simulator: run a flow on the real [`Interpreter`] against a scripted
//! caller and scripted outside world, in simulated time, and report what happened.
//!
//! Nothing here does IO or reads the clock, except one [`Instant::now`] for the base of the
//! virtual clock: every later instant is that base plus a simulated offset, so a run is instant
//! and the same [`Script`] always gives the same [`Report`].
//!
//! The simulator is the shell of [`Interpreter`]: it performs each [`Command`] by scheduling the
//! reply the [`Script`] describes, and feeds replies, scripted DTMF and the caller's hangup back
//! in time order (events due at the same millisecond before the interpreter's own timer, in the
//! order they were scheduled).
//!
//! | command | simulated as |
//! | --- | --- |
//! | `Answer` | answered after 0 ms |
//! | `Talk` | finished after `speech_ms_per_char` × characters + 300 ms |
//! | `Play` | finished after `play_ms` per URL |
//! | `Beep` | finished after 500 ms |
//! | `SendDigits` | finished after keys × (duration + interval) |
//! | `Echo` | finished after its duration (none: runs until the call ends) |
//! | `RecordingStart` | started after 0 ms (500 ms with `beep_start`) with id `rec-1`, `rec-2`, …; refused while one runs |
//! | `WebhookSend` | the scripted reply of `http[uri]` after its `delay_ms`; unknown URL: a failed attempt, the flow goes on |
//! | `Fetch` | `http[url]`: status 200 with a JSON array of actions (or a string holding one) runs them; anything else fails the fetch |
//! | `FetchFlow` | `flows[flow_id]`, else "flow not found" |
//! | `Connect` | each destination as `calls[target]` says; the first to answer is bridged for `talk_ms`, then the callee hangs up |
//! | `Call` | recorded; each answering destination runs the call's actions as a child simulation (one level deep) |
//! | `Amd` | `amd` after its `after_ms` |
//! | `ExternalMediaStart` | started after 0 ms |
//!
//! A `block` is released `continue_block_after_ms` after it starts, with its own action id.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::action::{Address, RecordingEndKey};
use crate::compile::{Diagnostic, compile};
use crate::interpreter::{Command, Input, Interpreter, Limits};
use crate::program::Program;
use crate::variable::Variables;

// ---------------------------------------------------------------------------------------------
// Script

/// What the caller and the outside world do during a simulated run. Every field is optional;
/// unknown fields are refused so that typos are reported (see [`Script::from_json`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Script {
    /// DTMF the caller presses.
    pub dtmf: Vec<DtmfPress>,
    /// The wall clock (UTC) at the start of the run, for `condition_datetime`; RFC 3339, default
    /// `2026-01-01T00:00:00Z`.
    pub start_time: StartTime,
    /// The run's initial variables (strings; numbers and booleans are taken as their text).
    #[serde(deserialize_with = "text_map")]
    pub variables: BTreeMap<String, String>,
    /// Replies for `fetch` and `webhook_send`, by URL (after `${}` substitution).
    pub http: BTreeMap<String, HttpReply>,
    /// The actions of stored flows, by id, for `fetch_flow`.
    pub flows: BTreeMap<String, Vec<Value>>,
    /// How each destination of `connect` and `call` behaves, by target; absent targets answer
    /// after 3000 ms and stay for 10000 ms.
    pub calls: BTreeMap<String, CallScript>,
    /// What `amd` decides.
    pub amd: AmdScript,
    /// When the caller hangs up, in ms from the start; `None`: never.
    pub hangup_at_ms: Option<u64>,
    /// Whether the call is already answered when the flow starts (an outbound call); default
    /// `false`.
    pub answered: bool,
    /// How long a `block` waits before it is continued. Default 1000.
    pub continue_block_after_ms: u64,
    /// The end of simulated time: a run still going then ends with `simulation_time_limit`.
    /// Default 3,600,000 (one hour), at most 604,800,000 (a week).
    #[serde(deserialize_with = "max_ms")]
    pub max_ms: u64,
    /// Speaking time per character of a `talk` (plus 300 ms). Default 60.
    pub speech_ms_per_char: u64,
    /// Playing time per URL of a `play`. Default 5000.
    pub play_ms: u64,
    /// The run's [`Limits`].
    pub limits: ScriptLimits,
}

/// Keys the caller presses, one after the other from `at_ms`, `gap_ms` apart.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtmfPress {
    /// The keys: `0`-`9`, `*`, `#`, `A`-`D` (lowercase taken as uppercase).
    #[serde(deserialize_with = "dtmf_keys")]
    pub digits: String,
    /// When the first key is pressed, in ms from the start.
    pub at_ms: u64,
    /// Between two keys; default 100.
    #[serde(default = "default_gap_ms")]
    pub gap_ms: u64,
}

/// A scripted HTTP reply.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpReply {
    /// The status code; default 200.
    pub status: u16,
    /// The body: JSON, or a string holding the body text.
    pub body: Value,
    /// How long the request takes; default 0.
    pub delay_ms: u64,
}

/// How one called destination behaves.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallScript {
    /// What happens; default `answer`.
    pub result: CallResult,
    /// After how long; default 3000 ms to answer, 1000 to be busy, 30000 to give up ringing,
    /// 500 to fail.
    pub after_ms: Option<u64>,
    /// How long the callee stays on the line once answered, then hangs up; default 10000.
    pub talk_ms: Option<u64>,
}

/// The outcome of calling one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallResult {
    /// It answers.
    #[default]
    Answer,
    /// It is busy.
    Busy,
    /// Nobody answers.
    NoAnswer,
    /// The call fails.
    Fail,
}

impl CallResult {
    /// The script and report name: `answer`, `busy`, `no_answer` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answer => "answer",
            Self::Busy => "busy",
            Self::NoAnswer => "no_answer",
            Self::Fail => "fail",
        }
    }
}

/// What `amd` decides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmdScript {
    /// `HUMAN` (default), `MACHINE` or `NOTSURE`.
    pub result: AmdVerdict,
    /// The cause stored in `voipbin.amd.cause`; default `""`.
    pub cause: String,
    /// How long detection takes; default 2000.
    pub after_ms: u64,
}

/// An answering-machine detection result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AmdVerdict {
    /// `HUMAN`
    #[default]
    Human,
    /// `MACHINE`
    Machine,
    /// `NOTSURE`
    Notsure,
}

/// Overrides of the run's [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptLimits {
    /// [`Limits::max_executions`].
    pub max_executions: Option<u32>,
    /// [`Limits::max_variables`].
    pub max_variables: Option<usize>,
    /// [`Limits::max_value_len`].
    pub max_value_len: Option<usize>,
}

/// A UTC wall-clock moment in Unix milliseconds, written as RFC 3339
/// (`2026-11-23T09:00:00Z`, any offset accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTime(pub i64);

/// Why a [`Script`] was refused: the JSON path of the bad field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ScriptError {
    /// The path, e.g. `dtmf[0].digits` or `http["http://127.0.0.1/x"].status`; `$` for the
    /// whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// 2026-01-01T00:00:00Z.
const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// The longest simulated run.
const MAX_SIM_MS: u64 = 7 * 24 * 3_600_000;

impl Default for Script {
    fn default() -> Self {
        Self {
            dtmf: Vec::new(),
            start_time: StartTime::default(),
            variables: BTreeMap::new(),
            http: BTreeMap::new(),
            flows: BTreeMap::new(),
            calls: BTreeMap::new(),
            amd: AmdScript::default(),
            hangup_at_ms: None,
            answered: false,
            continue_block_after_ms: 1000,
            max_ms: 3_600_000,
            speech_ms_per_char: 60,
            play_ms: 5000,
            limits: ScriptLimits::default(),
        }
    }
}

impl Default for HttpReply {
    fn default() -> Self {
        Self {
            status: 200,
            body: Value::Null,
            delay_ms: 0,
        }
    }
}

impl Default for AmdScript {
    fn default() -> Self {
        Self {
            result: AmdVerdict::Human,
            cause: String::new(),
            after_ms: 2000,
        }
    }
}

impl Default for CallScript {
    fn default() -> Self {
        Self {
            result: CallResult::Answer,
            after_ms: None,
            talk_ms: None,
        }
    }
}

impl Default for StartTime {
    fn default() -> Self {
        Self(DEFAULT_START_MS)
    }
}

impl Script {
    /// Parse a script from JSON text; errors name the path of the bad field.
    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ScriptError {
            path: "$".into(),
            message: format!("the script is not valid JSON ({e})"),
        })?;
        Self::from_value(&value)
    }

    /// Parse a script from JSON bytes (see [`Script::from_json`]).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ScriptError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ScriptError {
            path: "$".into(),
            message: "the script is not UTF-8 text".into(),
        })?;
        Self::from_json(text)
    }

    /// Parse a script from a JSON value (see [`Script::from_json`]).
    pub fn from_value(value: &Value) -> Result<Self, ScriptError> {
        if !value.is_object() {
            return Err(ScriptError {
                path: "$".into(),
                message: "the script must be a JSON object".into(),
            });
        }
        serde_path_to_error::deserialize(value).map_err(path_error)
    }

    /// Add `digits` pressed from `at_ms` with the default gap; an invalid key is refused.
    pub fn press(&mut self, digits: &str, at_ms: u64) -> Result<(), String> {
        let digits = normalize_keys(digits)?;
        self.dtmf.push(DtmfPress {
            digits,
            at_ms,
            gap_ms: default_gap_ms(),
        });
        Ok(())
    }

    /// How destination `target` behaves: `(result, after_ms, talk_ms)`.
    fn call_outcome(&self, target: &str) -> (CallResult, u64, u64) {
        let scripted = self.calls.get(target).cloned().unwrap_or_default();
        let after = scripted.after_ms.unwrap_or(match scripted.result {
            CallResult::Answer => 3000,
            CallResult::Busy => 1000,
            CallResult::NoAnswer => 30_000,
            CallResult::Fail => 500,
        });
        (scripted.result, after, scripted.talk_ms.unwrap_or(10_000))
    }

    fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            max_executions: self.limits.max_executions.unwrap_or(d.max_executions),
            max_variables: self.limits.max_variables.unwrap_or(d.max_variables),
            max_value_len: self.limits.max_value_len.unwrap_or(d.max_value_len),
        }
    }
}

impl StartTime {
    /// Unix milliseconds.
    pub fn unix_millis(self) -> i64 {
        self.0
    }
}

impl FromStr for StartTime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map_err(|e| {
                format!("{s:?} is not an RFC 3339 time like \"2026-11-23T09:00:00Z\" ({e})")
            })?;
        let millis = t.unix_timestamp_nanos().div_euclid(1_000_000);
        i64::try_from(millis)
            .map(Self)
            .map_err(|_| format!("{s:?} is out of range"))
    }
}

impl fmt::Display for StartTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = i128::from(self.0) * 1_000_000;
        let text = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match text {
            Some(text) => f.write_str(&text),
            None => write!(f, "{} ms after the Unix epoch", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn default_gap_ms() -> u64 {
    100
}

fn dtmf_keys<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    normalize_keys(&text).map_err(serde::de::Error::custom)
}

/// Uppercase `a`-`d`; refuse anything that is not a DTMF key.
fn normalize_keys(text: &str) -> Result<String, String> {
    let keys = text.to_ascii_uppercase();
    match keys
        .chars()
        .find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D'))
    {
        Some(bad) => Err(format!("{bad:?} is not a DTMF key (0-9, *, #, A-D)")),
        None if keys.is_empty() => Err("needs at least one key".into()),
        None => Ok(keys),
    }
}

fn max_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let ms = u64::deserialize(deserializer)?;
    if ms > MAX_SIM_MS {
        return Err(serde::de::Error::custom(format!(
            "must be at most {MAX_SIM_MS} (a week)"
        )));
    }
    Ok(ms)
}

fn text_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    /// A variable value: text, or a number or boolean taken as its text.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        String(String),
        Number(serde_json::Number),
        Bool(bool),
    }
    let map = BTreeMap::<String, Option<Text>>::deserialize(deserializer).map_err(|_| {
        serde::de::Error::custom("variables must be an object of strings, numbers or booleans")
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                None => String::new(),
                Some(Text::String(s)) => s,
                Some(Text::Number(n)) => n.to_string(),
                Some(Text::Bool(b)) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn path_error(err: serde_path_to_error::Error<serde_json::Error>) -> ScriptError {
    let mut path = String::new();
    for segment in err.path() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                let plain = key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !key.is_empty();
                if plain {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                } else {
                    path.push_str(&format!("[{}]", Value::String(key.clone())));
                }
            }
            serde_path_to_error::Segment::Unknown => path.push('?'),
        }
    }
    if path.is_empty() {
        path.push('$');
    }
    let message = err.into_inner().to_string();
    // serde_json appends " at line L column C"; the path says where already.
    let message = match message.rfind(" at line ") {
        Some(i) if i > 0 => message[..i].to_owned(),
        _ => message,
    };
    ScriptError { path, message }
}

// ---------------------------------------------------------------------------------------------
// Report

/// What a simulated run did, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Every action start.
    pub executed: Vec<Executed>,
    /// The texts of `talk`, in order.
    pub spoken: Vec<String>,
    /// The URLs of `play`, in order.
    pub played: Vec<String>,
    /// The keys of each `digits_send`.
    pub digits_sent: Vec<String>,
    /// Every `webhook_send`.
    pub webhooks: Vec<WebhookRecord>,
    /// Every `fetch` and `fetch_flow`.
    pub fetches: Vec<FetchRecord>,
    /// Every `call` (new independent calls).
    pub calls: Vec<CallRecord>,
    /// Every `connect` with its outcome.
    pub connects: Vec<ConnectRecord>,
    /// Every `amd` decision delivered.
    pub amd: Vec<AmdRecord>,
    /// Every recording started.
    pub recordings: Vec<RecordingRecord>,
    /// The flow's `hangup`, if it hung up.
    pub hangup: Option<HangupRecord>,
    /// The variables at the end.
    pub variables: BTreeMap<String, String>,
    /// Why the run ended: the [`EndReason`](crate::EndReason) text (`completed`, `stopped`,
    /// `hangup`, `call_ended`, `execution_limit`, `error: …`), or `simulation_time_limit` or
    /// `simulation_event_limit`.
    pub end_reason: String,
    /// Simulated time at the end.
    pub duration_ms: u64,
    /// One line per event, with its time (`mm:ss.mmm`).
    pub log: Vec<String>,
}

/// One action start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executed {
    /// When.
    pub at_ms: u64,
    /// 0 for the flow's own actions, 1 for fetched ones, …
    pub stack: usize,
    /// Index in its stack's actions.
    pub index: usize,
    /// Its id, if any.
    pub id: Option<String>,
    /// Its type.
    #[serde(rename = "type")]
    pub action_type: String,
}

/// One `webhook_send`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookRecord {
    /// When it was sent.
    pub at_ms: u64,
    /// `GET`, `POST`, …
    pub method: String,
    /// The URL.
    pub uri: String,
    /// The `Content-Type`.
    pub content_type: String,
    /// The request body.
    pub body: String,
    /// Whether the flow waited for it.
    pub wait: bool,
    /// The scripted status, if there was a scripted reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, if there was no scripted reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One `fetch` or `fetch_flow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchRecord {
    /// When it was requested.
    pub at_ms: u64,
    /// `fetch` or `fetch_flow`.
    pub action: String,
    /// The method (`fetch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The URL (`fetch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The flow id (`fetch_flow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_id: Option<String>,
    /// The scripted HTTP status (`fetch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How many actions came back.
    pub actions: usize,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One `call`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    /// When it was placed.
    pub at_ms: u64,
    /// The caller id.
    pub source: Option<Address>,
    /// The flow the new calls run, by id.
    pub flow_id: Option<String>,
    /// Or their inline actions.
    pub actions: Option<Value>,
    /// Hung up with this call.
    pub chained: bool,
    /// Flow started while ringing.
    pub early_execution: bool,
    /// One leg per destination.
    pub legs: Vec<CallLeg>,
}

/// One destination of a `call`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallLeg {
    /// Who.
    pub destination: Address,
    /// What happened.
    pub result: CallResult,
    /// When (answer, busy, …), in ms of the parent run.
    pub at_ms: u64,
    /// The new call's own run (its times count from the answer; the callee hangs up after
    /// `talk_ms`), when it answered and its actions are known (inline, or in the script's
    /// `flows`). Not simulated for calls placed by a child run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<Box<Report>>,
    /// Why it was not simulated, when its actions are unknown or invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One `connect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectRecord {
    /// When it started.
    pub at_ms: u64,
    /// The caller id.
    pub source: Option<Address>,
    /// Who was called.
    pub destinations: Vec<Address>,
    /// Whether a destination answered.
    pub answered: bool,
    /// The target that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<String>,
    /// The other side's hangup reason (`normal`, `busy`, `noanswer`, `failed`).
    pub reason: String,
    /// When it ended (the callee hung up, or nobody answered).
    pub ended_at_ms: u64,
    /// Whether the caller hung up before that.
    pub caller_hung_up: bool,
}

/// One `amd` decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AmdRecord {
    /// When it was decided.
    pub at_ms: u64,
    /// `HUMAN`, `MACHINE` or `NOTSURE`.
    pub result: String,
    /// Why.
    pub cause: String,
}

/// One recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordingRecord {
    /// `rec-1`, `rec-2`, …
    pub id: String,
    /// When recording began.
    pub started_at_ms: u64,
    /// `wav`, `mp3` or `ogg`.
    pub format: String,
    /// When it stopped, if it did.
    pub stopped_at_ms: Option<u64>,
    /// `recording_stop`, `end_of_key`, `duration` or `end_of_call`.
    pub stop_reason: Option<String>,
}

/// The flow's hangup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HangupRecord {
    /// When.
    pub at_ms: u64,
    /// The hangup reason.
    pub reason: String,
    /// The call whose reason it relays, if any.
    pub reference_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Running

/// Compile `actions` and simulate them (see [`simulate`]); the compile errors otherwise.
pub fn simulate_value(actions: &Value, script: &Script) -> Result<Report, Vec<Diagnostic>> {
    let program = compile(actions)?;
    Ok(simulate(Arc::new(program), script))
}

/// Run `program` on the real interpreter against `script`, in simulated time, and report.
pub fn simulate(program: Arc<Program>, script: &Script) -> Report {
    // The one clock read: the base of simulated time (child runs share it).
    Sim::new(program, script, 0, Instant::now()).run()
}

/// Loop turns allowed in one run (each delivers one event or fires one timer).
const MAX_EVENTS: usize = 200_000;
/// Commands taken from the interpreter after one input (it emits far fewer: at most one per
/// action start, and starts are capped at 1000 per input).
const MAX_COMMANDS_PER_INPUT: usize = 100_000;
/// Child runs (`call` destinations) simulated in one run.
const MAX_CHILD_RUNS: usize = 10;
/// Beep length.
const BEEP_MS: u64 = 500;
/// Fixed part of a `talk` estimate.
const TALK_BASE_MS: u64 = 300;

/// Something scheduled to happen.
#[derive(Debug, Clone)]
enum Event {
    Answered,
    Digit(char),
    CallerHangup,
    MediaDone(u64),
    MediaFailed(u64, String),
    RecordingStarted(u64),
    RecordingLimit(usize),
    WebhookDone(u64),
    Fetched(u64, Value),
    FetchFailed(u64, String),
    ConnectEnded {
        media_id: u64,
        answered: bool,
        reason: String,
    },
    Amd(u64),
    ReleaseBlock(String),
}

impl Event {
    /// The media id a `StopMedia` cancels.
    fn media_id(&self) -> Option<u64> {
        match self {
            Self::MediaDone(id) | Self::MediaFailed(id, _) | Self::Amd(id) => Some(*id),
            Self::RecordingStarted(id) => Some(*id),
            _ => None,
        }
    }
}

/// A `recording_start` waiting for its recording to begin.
#[derive(Debug)]
struct PendingRecording {
    media_id: u64,
    format: String,
    max_duration: Option<Duration>,
    end_of_key: Option<RecordingEndKey>,
}

struct Sim<'a> {
    script: &'a Script,
    interp: Interpreter,
    base: Instant,
    now_ms: u64,
    /// `(at_ms, sequence)` → event: time order, then scheduling order.
    queue: BTreeMap<(u64, u64), Event>,
    seq: u64,
    report: Report,
    end: Option<String>,
    logged_executed: usize,
    block_release_pending: bool,
    /// The running recording (index into `report.recordings`) and its stop key.
    recording: Option<(usize, Option<RecordingEndKey>)>,
    /// A recording start waiting for its reply.
    recording_starting: Option<PendingRecording>,
    /// The connect in progress (index into `report.connects`).
    connecting: Option<usize>,
    depth: usize,
    child_runs: usize,
}

impl<'a> Sim<'a> {
    fn new(program: Arc<Program>, script: &'a Script, depth: usize, base: Instant) -> Self {
        let variables: Variables = script.variables.clone();
        let interp = Interpreter::new(program, variables, script.limits());
        Self {
            script,
            interp,
            base,
            now_ms: 0,
            queue: BTreeMap::new(),
            seq: 0,
            report: Report {
                executed: Vec::new(),
                spoken: Vec::new(),
                played: Vec::new(),
                digits_sent: Vec::new(),
                webhooks: Vec::new(),
                fetches: Vec::new(),
                calls: Vec::new(),
                connects: Vec::new(),
                amd: Vec::new(),
                recordings: Vec::new(),
                hangup: None,
                variables: BTreeMap::new(),
                end_reason: String::new(),
                duration_ms: 0,
                log: Vec::new(),
            },
            end: None,
            logged_executed: 0,
            block_release_pending: false,
            recording: None,
            recording_starting: None,
            connecting: None,
            depth,
            child_runs: 0,
        }
    }

    fn run(mut self) -> Report {
        self.start();
        let mut turns = 0;
        while self.end.is_none() {
            if turns >= MAX_EVENTS {
                self.log(format!("simulation stopped after {MAX_EVENTS} events"));
                self.end = Some("simulation_event_limit".into());
                break;
            }
            turns += 1;
            self.step();
        }
        self.finish()
    }

    fn start(&mut self) {
        let now = self.instant(0);
        self.interp
            .set_wall_clock(now, self.script.start_time.unix_millis());
        self.log(format!(
            "call starts at {}{}",
            self.script.start_time,
            if self.script.answered {
                ", already answered"
            } else {
                ""
            }
        ));
        for press in &self.script.dtmf {
            let mut at = press.at_ms;
            for key in press.digits.chars() {
                self.schedule(at, Event::Digit(key));
                at = at.saturating_add(press.gap_ms);
            }
        }
        if let Some(at) = self.script.hangup_at_ms {
            self.schedule(at, Event::CallerHangup);
        }
        if self.script.answered {
            self.interp.handle_input(now, Input::Answered);
        }
        self.interp.handle_input(now, Input::Start);
        self.drain();
    }

    /// Deliver the next event or fire the timer, whichever is first; or end at the time limit.
    fn step(&mut self) {
        let next_event = self.queue.keys().next().map(|(at, _)| *at);
        let timer = self.interp.poll_timeout().map(|t| self.ms_of(t));
        let next = match (next_event, timer) {
            (Some(e), Some(t)) => Some((e.min(t), e <= t)),
            (Some(e), None) => Some((e, true)),
            (None, Some(t)) => Some((t, false)),
            (None, None) => None,
        };
        let max_ms = self.script.max_ms;
        let Some((at, is_event)) = next.filter(|(at, _)| *at <= max_ms) else {
            self.now_ms = self.now_ms.max(max_ms);
            self.log(format!("simulation time limit ({max_ms} ms) reached"));
            self.end = Some("simulation_time_limit".into());
            return;
        };
        self.now_ms = self.now_ms.max(at);
        if is_event {
            if let Some((_, event)) = self.queue.pop_first() {
                self.deliver(event);
            }
        } else {
            self.log("timer fires".into());
            let now = self.instant(self.now_ms);
            self.interp.handle_timeout(now);
        }
        self.drain();
    }

    fn deliver(&mut self, event: Event) {
        let now = self.instant(self.now_ms);
        let input = match event {
            Event::Answered => {
                self.log("call answered".into());
                Input::Answered
            }
            Event::Digit(key) => {
                self.log(format!("caller presses {key}"));
                self.recording_key(key);
                Input::Digit(key)
            }
            Event::CallerHangup => {
                self.log("caller hangs up".into());
                if let Some(c) = self.connecting.take() {
                    self.report.connects[c].caller_hung_up = true;
                }
                Input::CallEnded
            }
            Event::MediaDone(media_id) => Input::MediaFinished { media_id },
            Event::MediaFailed(media_id, reason) => {
                self.log(format!("media {media_id} failed: {reason}"));
                Input::MediaFailed { media_id, reason }
            }
            Event::RecordingStarted(media_id) => self.recording_started(media_id),
            Event::RecordingLimit(index) => {
                self.stop_recording(index, "duration");
                return;
            }
            Event::WebhookDone(request_id) => Input::WebhookDone { request_id },
            Event::Fetched(request_id, actions) => Input::Fetched {
                request_id,
                actions,
            },
            Event::FetchFailed(request_id, reason) => {
                self.log(format!("fetch failed: {reason}"));
                Input::FetchFailed { request_id, reason }
            }
            Event::ConnectEnded {
                media_id,
                answered,
                reason,
            } => {
                self.connecting = None;
                self.log(format!(
                    "connect over: {} ({reason})",
                    if answered { "answered" } else { "unanswered" }
                ));
                Input::ConnectEnded {
                    media_id,
                    answered,
                    reason,
                }
            }
            Event::Amd(media_id) => {
                let amd = &self.script.amd;
                let result = match amd.result {
                    AmdVerdict::Human => "HUMAN",
                    AmdVerdict::Machine => "MACHINE",
                    AmdVerdict::Notsure => "NOTSURE",
                };
                self.report.amd.push(AmdRecord {
                    at_ms: self.now_ms,
                    result: result.into(),
                    cause: amd.cause.clone(),
                });
                self.log(format!("amd decides {result} {}", amd.cause));
                Input::AmdResult {
                    media_id,
                    result: result.into(),
                    cause: amd.cause.clone(),
                }
            }
            Event::ReleaseBlock(action_id) => {
                self.block_release_pending = false;
                self.log(format!("block {action_id:?} continued"));
                if let Err(e) = self.interp.continue_block(now, &action_id) {
                    self.log(format!("continue refused: {e}"));
                }
                return;
            }
        };
        self.interp.handle_input(now, input);
    }

    /// Take every command the interpreter has, perform it, and note new action starts.
    fn drain(&mut self) {
        let commands: Vec<Command> = std::iter::from_fn(|| self.interp.poll_command())
            .take(MAX_COMMANDS_PER_INPUT)
            .collect();
        // A `StopMedia` is the input's doing, before the interpreter moved on: log it before
        // the actions that started after it.
        let (stops, rest): (Vec<Command>, Vec<Command>) = commands
            .into_iter()
            .partition(|c| matches!(c, Command::StopMedia { .. }));
        for command in stops {
            self.perform(command);
        }
        self.log_executed();
        for command in rest {
            self.perform(command);
        }
        if self.interp.is_blocked() && !self.block_release_pending && self.end.is_none() {
            let id = self
                .interp
                .current_action_id()
                .unwrap_or_default()
                .to_owned();
            self.block_release_pending = true;
            let at = self
                .now_ms
                .saturating_add(self.script.continue_block_after_ms);
            self.log(format!("blocked; continue scheduled at {}", clock(at)));
            self.schedule(at, Event::ReleaseBlock(id));
        }
    }

    fn log_executed(&mut self) {
        let executed = self.interp.executed_actions();
        let new: Vec<String> = executed[self.logged_executed..]
            .iter()
            .map(|e| {
                let stack = if e.stack > 0 {
                    format!("stack {} ", e.stack)
                } else {
                    String::new()
                };
                let id = e
                    .action_id
                    .as_ref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default();
                format!("run {stack}actions[{}] {}{id}", e.index, e.action_type)
            })
            .collect();
        self.logged_executed = executed.len();
        for line in new {
            self.log(line);
        }
    }

    fn perform(&mut self, command: Command) {
        let now = self.now_ms;
        match command {
            Command::Answer => {
                self.log("answer".into());
                self.schedule(now, Event::Answered);
            }
            Command::Talk { media_id, text, .. } => {
                let chars = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
                let ms = chars
                    .saturating_mul(self.script.speech_ms_per_char)
                    .saturating_add(TALK_BASE_MS);
                self.log(format!("say {text:?} ({ms} ms)"));
                self.report.spoken.push(text);
                self.schedule(now.saturating_add(ms), Event::MediaDone(media_id));
            }
            Command::Play { media_id, urls } => {
                let count = u64::try_from(urls.len()).unwrap_or(u64::MAX);
                let ms = count.saturating_mul(self.script.play_ms);
                self.log(format!("play {} ({ms} ms)", urls.join(", ")));
                self.report.played.extend(urls);
                self.schedule(now.saturating_add(ms), Event::MediaDone(media_id));
            }
            Command::Beep { media_id } => {
                self.log("beep".into());
                self.schedule(now.saturating_add(BEEP_MS), Event::MediaDone(media_id));
            }
            Command::SendDigits {
                media_id,
                digits,
                duration_ms,
                interval_ms,
            } => {
                let keys = u64::try_from(digits.chars().count()).unwrap_or(u64::MAX);
                let ms = keys.saturating_mul(u64::from(duration_ms) + u64::from(interval_ms));
                self.log(format!("send digits {digits} ({ms} ms)"));
                self.report.digits_sent.push(digits);
                self.schedule(now.saturating_add(ms), Event::MediaDone(media_id));
            }
            Command::Echo {
                media_id,
                duration,
                dtmf,
            } => {
                let what = if dtmf { "stream_echo" } else { "echo" };
                match duration {
                    Some(d) => {
                        let ms = duration_ms(d);
                        self.log(format!("{what} ({ms} ms)"));
                        self.schedule(now.saturating_add(ms), Event::MediaDone(media_id));
                    }
                    None => self.log(format!("{what} until the call ends")),
                }
            }
            Command::RecordingStart {
                media_id,
                format,
                end_of_key,
                max_duration,
                beep_start,
                ..
            } => {
                if self.recording.is_some() || self.recording_starting.is_some() {
                    self.log("recording refused: one is already running".into());
                    self.schedule(
                        now,
                        Event::MediaFailed(media_id, "a recording is already running".into()),
                    );
                    return;
                }
                let delay = if beep_start { BEEP_MS } else { 0 };
                self.log(format!("start recording ({format})"));
                self.recording_starting = Some(PendingRecording {
                    media_id,
                    format: format.to_string(),
                    max_duration,
                    end_of_key,
                });
                self.schedule(now.saturating_add(delay), Event::RecordingStarted(media_id));
            }
            Command::RecordingStop => match self.recording {
                Some((index, _)) => self.stop_recording(index, "recording_stop"),
                None => self.log("recording_stop: nothing is recording".into()),
            },
            Command::StopMedia { media_id } => {
                self.log(format!("stop media {media_id}"));
                self.queue.retain(|_, e| e.media_id() != Some(media_id));
            }
            Command::Hangup {
                reason,
                reference_id,
            } => {
                self.log(format!("hang up ({reason})"));
                self.report.hangup = Some(HangupRecord {
                    at_ms: now,
                    reason,
                    reference_id,
                });
            }
            Command::Mute { direction } => {
                self.log(format!("mute {}", direction.as_str()));
            }
            Command::WebhookSend {
                request_id,
                method,
                uri,
                content_type,
                body,
                wait,
            } => self.webhook(request_id, method.as_str(), uri, content_type, body, wait),
            Command::Fetch {
                request_id,
                method,
                url,
            } => self.fetch(request_id, method.as_str(), url),
            Command::FetchFlow {
                request_id,
                flow_id,
            } => self.fetch_flow(request_id, flow_id),
            Command::Call {
                source,
                destinations,
                flow_id,
                actions,
                chained,
                early_execution,
            } => self.call(
                CallRecord {
                    at_ms: now,
                    source,
                    flow_id,
                    actions,
                    chained,
                    early_execution,
                    legs: Vec::new(),
                },
                destinations,
            ),
            Command::Connect {
                media_id,
                source,
                destinations,
                ..
            } => self.connect(media_id, source, destinations),
            Command::Amd { media_id } => {
                self.log("amd: listening".into());
                let at = now.saturating_add(self.script.amd.after_ms);
                self.schedule(at, Event::Amd(media_id));
            }
            Command::ExternalMediaStart { media_id, host, .. } => {
                self.log(format!("external media to {host}"));
                self.schedule(now, Event::MediaDone(media_id));
            }
            Command::ExternalMediaStop => self.log("external media stopped".into()),
            Command::Finished { reason } => {
                let reason = reason.to_string();
                self.log(format!("flow ends: {reason}"));
                self.end = Some(reason);
            }
        }
    }

    fn webhook(
        &mut self,
        request_id: u64,
        method: &str,
        uri: String,
        content_type: String,
        body: String,
        wait: bool,
    ) {
        let reply = self.script.http.get(&uri);
        let (status, error, delay) = match reply {
            Some(r) => (Some(r.status), None, r.delay_ms),
            None => (None, Some("no scripted reply for URL".to_owned()), 0),
        };
        self.log(format!(
            "webhook {method} {uri}: {}",
            status.map_or_else(|| "no scripted reply".to_owned(), |s| format!("HTTP {s}"))
        ));
        self.report.webhooks.push(WebhookRecord {
            at_ms: self.now_ms,
            method: method.to_owned(),
            uri,
            content_type,
            body,
            wait,
            status,
            error,
        });
        if wait {
            self.schedule(
                self.now_ms.saturating_add(delay),
                Event::WebhookDone(request_id),
            );
        }
    }

    fn fetch(&mut self, request_id: u64, method: &str, url: String) {
        let reply = self.script.http.get(&url).cloned();
        let mut record = FetchRecord {
            at_ms: self.now_ms,
            action: "fetch".into(),
            method: Some(method.to_owned()),
            url: Some(url.clone()),
            flow_id: None,
            status: reply.as_ref().map(|r| r.status),
            actions: 0,
            error: None,
        };
        let (at, event) = match reply {
            None => (self.now_ms, Err("no scripted reply for URL".to_owned())),
            Some(r) => (self.now_ms.saturating_add(r.delay_ms), fetched_actions(&r)),
        };
        self.log(format!("fetch {method} {url}"));
        let event = match event {
            Ok(actions) => {
                record.actions = actions.as_array().map_or(0, Vec::len);
                Event::Fetched(request_id, actions)
            }
            Err(reason) => {
                record.error = Some(reason.clone());
                Event::FetchFailed(request_id, reason)
            }
        };
        self.report.fetches.push(record);
        self.schedule(at, event);
    }

    fn fetch_flow(&mut self, request_id: u64, flow_id: String) {
        let actions = self.script.flows.get(&flow_id).cloned();
        self.log(format!("fetch flow {flow_id}"));
        let mut record = FetchRecord {
            at_ms: self.now_ms,
            action: "fetch_flow".into(),
            method: None,
            url: None,
            flow_id: Some(flow_id.clone()),
            status: None,
            actions: 0,
            error: None,
        };
        let event = match actions {
            Some(actions) => {
                record.actions = actions.len();
                Event::Fetched(request_id, Value::Array(actions))
            }
            None => {
                let reason = format!("flow {flow_id} not found");
                record.error = Some(reason.clone());
                Event::FetchFailed(request_id, reason)
            }
        };
        self.report.fetches.push(record);
        self.schedule(self.now_ms, event);
    }

    fn connect(&mut self, media_id: u64, source: Option<Address>, destinations: Vec<Address>) {
        let now = self.now_ms;
        let outcomes: Vec<_> = destinations
            .iter()
            .map(|d| (d.target.clone(), self.script.call_outcome(&d.target)))
            .collect();
        // The first to answer wins; ties go to the earlier destination.
        let winner = outcomes
            .iter()
            .filter(|(_, (result, _, _))| *result == CallResult::Answer)
            .min_by_key(|(_, (_, after, _))| *after);
        let (answered, answered_by, reason, ended) = match winner {
            Some((target, (_, after, talk))) => (
                true,
                Some(target.clone()),
                "normal".to_owned(),
                now.saturating_add(*after).saturating_add(*talk),
            ),
            None => {
                let reason = outcomes
                    .first()
                    .map_or("failed", |(_, (result, _, _))| hangup_reason(*result));
                let last = outcomes
                    .iter()
                    .map(|(_, (_, after, _))| *after)
                    .max()
                    .unwrap_or(0);
                (false, None, reason.to_owned(), now.saturating_add(last))
            }
        };
        let targets: Vec<&str> = destinations.iter().map(|d| d.target.as_str()).collect();
        self.log(format!(
            "connect to {}: {}",
            targets.join(", "),
            match &answered_by {
                Some(who) => format!("{who} answers, bridged until {}", clock(ended)),
                None => format!("{reason} at {}", clock(ended)),
            }
        ));
        self.connecting = Some(self.report.connects.len());
        self.report.connects.push(ConnectRecord {
            at_ms: now,
            source,
            destinations,
            answered,
            answered_by,
            reason: reason.clone(),
            ended_at_ms: ended,
            caller_hung_up: false,
        });
        self.schedule(
            ended,
            Event::ConnectEnded {
                media_id,
                answered,
                reason,
            },
        );
    }

    fn call(&mut self, mut record: CallRecord, destinations: Vec<Address>) {
        let targets: Vec<&str> = destinations.iter().map(|d| d.target.as_str()).collect();
        self.log(format!("place call to {}", targets.join(", ")));
        for destination in destinations {
            let (result, after, talk) = self.script.call_outcome(&destination.target);
            let at_ms = record.at_ms.saturating_add(after);
            let (run, note) = if result == CallResult::Answer {
                self.child_run(&record, at_ms, talk)
            } else {
                (None, None)
            };
            self.log(format!(
                "  {}: {} at {}",
                destination.target,
                result.as_str(),
                clock(at_ms)
            ));
            record.legs.push(CallLeg {
                destination,
                result,
                at_ms,
                run,
                note,
            });
        }
        self.report.calls.push(record);
    }

    /// Simulate the flow of one answered `call` leg.
    fn child_run(
        &mut self,
        record: &CallRecord,
        answered_at: u64,
        talk_ms: u64,
    ) -> (Option<Box<Report>>, Option<String>) {
        if self.depth > 0 {
            return (
                None,
                Some("calls placed by a placed call are not simulated".into()),
            );
        }
        if self.child_runs >= MAX_CHILD_RUNS {
            return (
                None,
                Some(format!(
                    "only {MAX_CHILD_RUNS} placed calls are simulated per run"
                )),
            );
        }
        let actions = match (&record.actions, &record.flow_id) {
            (Some(actions), _) => actions.clone(),
            (None, Some(id)) => match self.script.flows.get(id) {
                Some(actions) => Value::Array(actions.clone()),
                None => {
                    return (
                        None,
                        Some(format!("flow {id} is not in the script's flows")),
                    );
                }
            },
            (None, None) => return (None, None),
        };
        let program = match compile(&actions) {
            Ok(program) => program,
            Err(diags) => {
                let first = diags
                    .first()
                    .map_or_else(|| "invalid actions".to_owned(), ToString::to_string);
                return (None, Some(format!("its actions do not compile: {first}")));
            }
        };
        self.child_runs += 1;
        let offset = i64::try_from(answered_at).unwrap_or(i64::MAX);
        let child = Script {
            dtmf: Vec::new(),
            start_time: StartTime(self.script.start_time.0.saturating_add(offset)),
            variables: BTreeMap::new(),
            hangup_at_ms: Some(talk_ms),
            answered: true,
            ..self.script.clone()
        };
        let report = Sim::new(Arc::new(program), &child, self.depth + 1, self.base).run();
        (Some(Box::new(report)), None)
    }

    fn recording_started(&mut self, media_id: u64) -> Input {
        let pending = match self.recording_starting.take() {
            Some(p) if p.media_id == media_id => p,
            other => {
                self.recording_starting = other;
                PendingRecording {
                    media_id,
                    format: String::new(),
                    max_duration: None,
                    end_of_key: None,
                }
            }
        };
        let id = format!("rec-{}", self.report.recordings.len() + 1);
        let index = self.report.recordings.len();
        self.report.recordings.push(RecordingRecord {
            id: id.clone(),
            started_at_ms: self.now_ms,
            format: pending.format,
            stopped_at_ms: None,
            stop_reason: None,
        });
        self.recording = Some((index, pending.end_of_key));
        if let Some(max) = pending.max_duration {
            let at = self.now_ms.saturating_add(duration_ms(max));
            self.schedule(at, Event::RecordingLimit(index));
        }
        self.log(format!("recording {id} started"));
        Input::RecordingStarted {
            media_id,
            recording_id: id,
        }
    }

    fn recording_key(&mut self, key: char) {
        let Some((index, Some(end_key))) = self.recording else {
            return;
        };
        let hit = match end_key {
            RecordingEndKey::Any => true,
            RecordingEndKey::Star => key == '*',
            RecordingEndKey::Hash => key == '#',
        };
        if hit {
            self.stop_recording(index, "end_of_key");
        }
    }

    fn stop_recording(&mut self, index: usize, reason: &str) {
        let Some(record) = self.report.recordings.get_mut(index) else {
            return;
        };
        if record.stopped_at_ms.is_some() {
            return;
        }
        record.stopped_at_ms = Some(self.now_ms);
        record.stop_reason = Some(reason.to_owned());
        let id = record.id.clone();
        if self.recording.is_some_and(|(i, _)| i == index) {
            self.recording = None;
        }
        self.log(format!("recording {id} stopped ({reason})"));
    }

    fn finish(mut self) -> Report {
        self.log_executed();
        let open: Vec<usize> = self
            .report
            .recordings
            .iter()
            .enumerate()
            .filter(|(_, r)| r.stopped_at_ms.is_none())
            .map(|(i, _)| i)
            .collect();
        for index in open {
            self.stop_recording(index, "end_of_call");
        }
        let base = self.base;
        self.report.executed = self
            .interp
            .executed_actions()
            .iter()
            .map(|e| Executed {
                at_ms: duration_ms(e.at.saturating_duration_since(base)),
                stack: e.stack,
                index: e.index,
                id: e.action_id.as_ref().map(|id| id.as_str().to_owned()),
                action_type: e.action_type.as_str().to_owned(),
            })
            .collect();
        self.report.variables = self.interp.variables().clone();
        self.report.end_reason = self.end.take().unwrap_or_default();
        self.report.duration_ms = self.now_ms;
        self.report
    }

    fn schedule(&mut self, at_ms: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at_ms.max(self.now_ms), self.seq), event);
    }

    fn log(&mut self, line: String) {
        self.report
            .log
            .push(format!("{} {line}", clock(self.now_ms)));
    }

    /// The simulated instant `ms` after the start (times are capped at a week, so this never
    /// overflows in practice; if it did, the base is returned).
    fn instant(&self, ms: u64) -> Instant {
        self.base
            .checked_add(Duration::from_millis(ms))
            .unwrap_or(self.base)
    }

    /// Milliseconds after the start, rounded up so a timer is never fired early.
    fn ms_of(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

/// The actions of a scripted `fetch` reply: status 200 and a JSON array (or a string holding
/// one).
fn fetched_actions(reply: &HttpReply) -> Result<Value, String> {
    if reply.status != 200 {
        return Err(format!("HTTP {}", reply.status));
    }
    let body = match &reply.body {
        Value::String(text) => {
            serde_json::from_str(text).map_err(|e| format!("the reply is not JSON ({e})"))?
        }
        other => other.clone(),
    };
    match body {
        Value::Array(_) => Ok(body),
        _ => Err("the reply is not a JSON array of actions".into()),
    }
}

/// The hangup reason a destination that did not answer gives.
fn hangup_reason(result: CallResult) -> &'static str {
    match result {
        CallResult::Answer => "normal",
        CallResult::Busy => "busy",
        CallResult::NoAnswer => "noanswer",
        CallResult::Fail => "failed",
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `mm:ss.mmm`.
fn clock(ms: u64) -> String {
    format!(
        "{:02}:{:02}.{:03}",
        ms / 60_000,
        (ms / 1000) % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn script(value: Value) -> Script {
        Script::from_value(&value).unwrap()
    }

    fn run(actions: Value, script: &Script) -> Report {
        simulate_value(&actions, script).unwrap_or_else(|d| panic!("does not compile: {d:?}"))
    }

    /// `(at_ms, id or type)` of every action start.
    fn path(report: &Report) -> Vec<(u64, String)> {
        report
            .executed
            .iter()
            .map(|e| {
                (
                    e.at_ms,
                    e.id.clone().unwrap_or_else(|| e.action_type.clone()),
                )
            })
            .collect()
    }

    fn ivr() -> Value {
        json!([
            {"id": "answer", "type": "answer"},
            {"id": "menu", "type": "talk", "option": {"text": "Press 1 for sales", "digits_handle": "next"}},
            {"id": "collect", "type": "digits_receive", "option": {"duration": 5000, "length": 1}},
            {"id": "route", "type": "branch", "option": {"target_ids": {"1": "sales"}, "default_target_id": "retry"}},
            {"id": "retry", "type": "goto", "option": {"target_id": "menu", "loop_count": 1}},
            {"id": "bye", "type": "hangup", "option": {"reason": "no_input"}},
            {"id": "sales", "type": "talk", "option": {"text": "Sales"}},
            {"id": "hook", "type": "webhook_send", "option": {
                "uri": "http://127.0.0.1:9/hook", "data": "{\"picked\": \"sales\"}", "sync": true}},
        ])
    }

    #[test]
    fn same_script_twice_gives_the_same_report() {
        let s = script(json!({
            "dtmf": [{"digits": "1", "at_ms": 7000}],
            "http": {"http://127.0.0.1:9/hook": {"status": 204, "delay_ms": 250}},
        }));
        let a = run(ivr(), &s);
        let b = run(ivr(), &s);
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        assert_eq!(a.end_reason, "completed");
    }

    #[test]
    fn talk_timing_and_a_key_interrupting_a_talk() {
        // "Press 1 for sales" is 17 characters: 17 * 60 + 300 = 1320 ms.
        let report = run(ivr(), &Script::default());
        assert_eq!(
            path(&report),
            [
                (0, "answer".into()),
                (0, "menu".into()),
                (1320, "collect".into()),
                (6320, "route".into()),
                (6320, "retry".into()),
                (6320, "menu".into()),
                (7640, "collect".into()),
                (12_640, "route".into()),
                (12_640, "retry".into()),
                (12_640, "bye".into()),
            ]
        );
        assert_eq!(report.spoken, ["Press 1 for sales", "Press 1 for sales"]);
        assert_eq!(report.end_reason, "hangup");
        assert_eq!(report.duration_ms, 12_640);
        let hangup = report.hangup.as_ref().unwrap();
        assert_eq!((hangup.at_ms, hangup.reason.as_str()), (12_640, "no_input"));

        // A key during the menu stops it and is the answer (type-ahead).
        let s = script(json!({"dtmf": [{"digits": "1", "at_ms": 500}]}));
        let report = run(ivr(), &s);
        assert_eq!(
            path(&report)[..5],
            [
                (0, "answer".into()),
                (0, "menu".into()),
                (500, "collect".into()),
                (500, "route".into()),
                (500, "sales".into()),
            ]
        );
        assert!(
            report.log.iter().any(|l| l == "00:00.500 stop media 1"),
            "{:#?}",
            report.log
        );
        // Sales is 5 characters: 600 ms; the sync webhook has no reply scripted: done at once.
        assert_eq!(path(&report)[5], (1100, "hook".into()));
        assert_eq!(
            report.webhooks[0].error.as_deref(),
            Some("no scripted reply for URL")
        );
        assert_eq!(report.end_reason, "completed");
    }

    #[test]
    fn dtmf_keys_arrive_gap_ms_apart() {
        let actions = json!([
            {"id": "pin", "type": "digits_receive", "option": {"duration": 10000, "key": "#"}},
            {"id": "say", "type": "talk", "option": {"text": "${voipbin.call.digits}"}},
        ]);
        let s = script(
            json!({"answered": true, "dtmf": [{"digits": "12#", "at_ms": 2000, "gap_ms": 300}]}),
        );
        let report = run(actions.clone(), &s);
        assert_eq!(path(&report), [(0, "pin".into()), (2600, "say".into())]);
        assert_eq!(report.spoken, ["12#"]);
        // Default gap: 100 ms.
        let s = script(json!({"dtmf": [{"digits": "9#", "at_ms": 1000}]}));
        assert_eq!(path(&run(actions.clone(), &s))[1], (1100, "say".into()));
        // Keys after the timer: the flow has moved on.
        let s = script(json!({"dtmf": [{"digits": "9#", "at_ms": 20000}]}));
        let report = run(actions, &s);
        assert_eq!(path(&report)[1], (10_000, "say".into()));
        assert!(report.spoken.is_empty(), "an empty talk says nothing");
    }

    #[test]
    fn fetch_runs_the_reply_as_a_stack_and_failures_end_the_run() {
        let actions = json!([
            {"id": "f", "type": "fetch", "option": {"event_url": "http://127.0.0.1:9/next", "event_method": "GET"}},
            {"id": "after", "type": "talk", "option": {"text": "back"}},
        ]);
        let fetched = json!([
            {"type": "variable_set", "option": {"key": "from", "value": "server"}},
            {"type": "talk", "option": {"text": "fetched from ${from}"}},
        ]);
        let s =
            script(json!({"http": {"http://127.0.0.1:9/next": {"body": fetched, "delay_ms": 40}}}));
        let report = run(actions.clone(), &s);
        let stacks: Vec<(u64, usize, usize)> = report
            .executed
            .iter()
            .map(|e| (e.at_ms, e.stack, e.index))
            .collect();
        // "fetched from server" is 19 characters: 1440 ms.
        assert_eq!(stacks, [(0, 0, 0), (40, 1, 0), (40, 1, 1), (1480, 0, 1)]);
        assert_eq!(report.spoken, ["fetched from server", "back"]);
        assert_eq!(report.fetches[0].actions, 2);
        assert_eq!(report.fetches[0].method.as_deref(), Some("GET"));
        assert_eq!(report.end_reason, "completed");

        // The body may be text holding the JSON.
        let s = script(json!({"http": {"http://127.0.0.1:9/next": {"body": fetched.to_string()}}}));
        assert_eq!(run(actions.clone(), &s).spoken.len(), 2);

        let s = script(json!({"http": {"http://127.0.0.1:9/next": {"status": 500}}}));
        let report = run(actions.clone(), &s);
        assert_eq!(report.end_reason, "error: fetch failed: HTTP 500");
        assert_eq!(report.fetches[0].status, Some(500));

        let report = run(actions, &Script::default());
        assert_eq!(
            report.end_reason,
            "error: fetch failed: no scripted reply for URL"
        );
        assert_eq!(
            report.fetches[0].error.as_deref(),
            Some("no scripted reply for URL")
        );
    }

    #[test]
    fn fetch_flow_uses_the_scripted_flows() {
        let actions = json!([
            {"type": "fetch_flow", "option": {"flow_id": "${next}"}},
            {"type": "talk", "option": {"text": "main again"}},
        ]);
        let s = script(json!({
            "variables": {"next": "f-1"},
            "flows": {"f-1": [{"type": "talk", "option": {"text": "in f-1"}}]},
        }));
        let report = run(actions.clone(), &s);
        assert_eq!(report.spoken, ["in f-1", "main again"]);
        assert_eq!(report.fetches[0].flow_id.as_deref(), Some("f-1"));
        let s = script(json!({"variables": {"next": "f-2"}}));
        assert_eq!(
            run(actions, &s).end_reason,
            "error: fetch_flow failed: flow f-2 not found"
        );
    }

    #[test]
    fn webhooks_are_recorded_and_sync_ones_take_their_delay() {
        let actions = json!([
            {"type": "webhook_send", "option": {
                "uri": "http://127.0.0.1:9/a", "method": "PUT", "sync": true,
                "data": "{\"n\": \"${n}\"}"}},
            {"id": "second", "type": "webhook_send", "option": {
                "uri": "http://127.0.0.1:9/unknown", "data_type": "text/plain", "data": "x"}},
            {"id": "end", "type": "stop"},
        ]);
        let s = script(json!({
            "variables": {"n": 7},
            "http": {"http://127.0.0.1:9/a": {"status": 201, "delay_ms": 800}},
        }));
        let report = run(actions, &s);
        assert_eq!(
            path(&report),
            [
                (0, "webhook_send".into()),
                (800, "second".into()),
                (800, "end".into())
            ]
        );
        let [a, b] = report.webhooks.as_slice() else {
            panic!("{:?}", report.webhooks)
        };
        assert_eq!(
            (a.method.as_str(), a.status, a.body.as_str(), a.wait),
            ("PUT", Some(201), "{\"n\": \"7\"}", true)
        );
        assert_eq!(
            (b.status, b.error.as_deref()),
            (None, Some("no scripted reply for URL"))
        );
        assert_eq!(b.content_type, "text/plain");
        assert_eq!(report.end_reason, "stopped");
    }

    #[test]
    fn connect_answered_busy_and_no_answer() {
        let actions = json!([
            {"type": "connect", "option": {"destinations": [
                {"type": "tel", "target": "+100"}, {"type": "tel", "target": "+200"}]}},
            {"id": "after", "type": "talk", "option": {"text": "${voipbin.connect.result} ${voipbin.connect.reason}"}},
        ]);
        // Defaults: both answer after 3000 ms; the first wins and stays 10000 ms.
        let report = run(actions.clone(), &Script::default());
        assert_eq!(path(&report)[1], (13_000, "after".into()));
        assert_eq!(report.spoken, ["answered normal"]);
        let c = &report.connects[0];
        assert_eq!(
            (c.answered, c.answered_by.as_deref(), c.ended_at_ms),
            (true, Some("+100"), 13_000)
        );

        // The second answers sooner.
        let s = script(
            json!({"calls": {"+100": {"result": "no_answer"}, "+200": {"after_ms": 5000, "talk_ms": 1000}}}),
        );
        let report = run(actions.clone(), &s);
        assert_eq!(report.connects[0].answered_by.as_deref(), Some("+200"));
        assert_eq!(path(&report)[1], (6000, "after".into()));

        // Busy and no answer: the first destination's reason, when the last gives up.
        let s = script(
            json!({"calls": {"+100": {"result": "busy"}, "+200": {"result": "no_answer", "after_ms": 20000}}}),
        );
        let report = run(actions.clone(), &s);
        assert_eq!(report.spoken, ["unanswered busy"]);
        assert_eq!(path(&report)[1], (20_000, "after".into()));
        assert_eq!(report.variables["voipbin.connect.result"], "unanswered");

        let s =
            script(json!({"calls": {"+100": {"result": "no_answer"}, "+200": {"result": "fail"}}}));
        let report = run(actions.clone(), &s);
        assert_eq!(report.spoken, ["unanswered noanswer"]);
        assert_eq!(path(&report)[1], (30_000, "after".into()));

        // The caller hangs up during the bridge.
        let s = script(json!({"hangup_at_ms": 4000}));
        let report = run(actions, &s);
        assert_eq!(report.end_reason, "call_ended");
        assert!(report.connects[0].caller_hung_up);
        assert_eq!(report.duration_ms, 4000);
    }

    #[test]
    fn time_and_event_limits() {
        let actions = json!([{"type": "sleep", "option": {"duration": 7_200_000}}]);
        let report = run(actions.clone(), &Script::default());
        assert_eq!(report.end_reason, "simulation_time_limit");
        assert_eq!(report.duration_ms, 3_600_000);
        let s = script(json!({"max_ms": 10_000_000}));
        let report = run(actions, &s);
        assert_eq!(
            (report.end_reason.as_str(), report.duration_ms),
            ("completed", 7_200_000)
        );

        // An echo without end is stopped by the cap too.
        let s = script(json!({"max_ms": 1000}));
        let report = run(json!([{"type": "echo", "option": {"duration": 5000}}]), &s);
        assert_eq!(
            (report.end_reason.as_str(), report.duration_ms),
            ("simulation_time_limit", 1000)
        );

        // A loop of zero-time actions is caught by the interpreter's execution limit.
        let s = script(json!({"limits": {"max_executions": 50}}));
        let report = run(
            json!([
                {"id": "a", "type": "external_media_start", "option": {"external_host": "127.0.0.1:4000"}},
                {"type": "goto", "option": {"target_id": "a", "loop_count": 1000}},
            ]),
            &s,
        );
        assert_eq!(report.end_reason, "execution_limit");
        assert_eq!(report.executed.len(), 50);
    }

    #[test]
    fn caller_hangup_answer_block_and_recordings() {
        let actions = json!([
            {"type": "answer"},
            {"id": "wait", "type": "block"},
            {"type": "recording_start", "option": {"format": "mp3", "end_of_key": "#", "beep_start": true}},
            {"type": "recording_start"},
        ]);
        let s = script(json!({"continue_block_after_ms": 2500}));
        let report = run(actions.clone(), &s);
        assert_eq!(
            path(&report),
            [
                (0, "answer".into()),
                (0, "wait".into()),
                (2500, "recording_start".into()),
                (3000, "recording_start".into())
            ]
        );
        assert_eq!(
            report.end_reason,
            "error: recording_start failed: a recording is already running"
        );
        assert_eq!(report.recordings[0].id, "rec-1");
        assert_eq!(report.recordings[0].format, "mp3");
        assert_eq!(report.variables["voipbin.recording.id"], "rec-1");

        // The caller presses # to stop the recording, then hangs up.
        let actions = json!([
            {"type": "recording_start", "option": {"end_of_key": "#"}},
            {"type": "sleep", "option": {"duration": 60000}},
        ]);
        let s = script(json!({"dtmf": [{"digits": "5#", "at_ms": 1000}], "hangup_at_ms": 5000}));
        let report = run(actions, &s);
        let r = &report.recordings[0];
        assert_eq!(
            (r.stopped_at_ms, r.stop_reason.as_deref()),
            (Some(1100), Some("end_of_key"))
        );
        assert_eq!(report.end_reason, "call_ended");
        assert_eq!(report.duration_ms, 5000);
    }

    #[test]
    fn amd_and_placed_calls() {
        let actions = json!([
            {"type": "amd", "option": {"machine_handle": "hangup"}},
            {"type": "talk", "option": {"text": "hello human"}},
        ]);
        let report = run(actions.clone(), &Script::default());
        assert_eq!(report.amd[0].at_ms, 2000);
        assert_eq!(report.spoken, ["hello human"]);
        let s = script(
            json!({"amd": {"result": "MACHINE", "cause": "long_greeting", "after_ms": 3500}}),
        );
        let report = run(actions, &s);
        assert_eq!(report.end_reason, "hangup");
        assert_eq!(report.hangup.as_ref().unwrap().reason, "amd_machine");
        assert_eq!(report.variables["voipbin.amd.cause"], "long_greeting");
        assert_eq!(report.duration_ms, 3500);

        let actions = json!([
            {"type": "call", "option": {
                "destinations": [{"type": "tel", "target": "+300"}, {"type": "tel", "target": "+400"}],
                "actions": [{"type": "talk", "option": {"text": "Alert for ${who}"}}]}},
            {"type": "hangup"},
        ]);
        let s = script(json!({"variables": {"who": "ops"}, "calls": {"+400": {"result": "busy"}}}));
        let report = run(actions, &s);
        let legs = &report.calls[0].legs;
        assert_eq!(legs[0].result, CallResult::Answer);
        let child = legs[0].run.as_ref().unwrap();
        assert_eq!(child.spoken, ["Alert for ops"]);
        assert_eq!(child.end_reason, "completed");
        assert_eq!((legs[1].result, legs[1].at_ms), (CallResult::Busy, 1000));
        assert!(legs[1].run.is_none());
        assert_eq!(
            serde_json::to_value(legs[1].result).unwrap(),
            legs[1].result.as_str()
        );
        assert_eq!(
            serde_json::to_value(CallResult::NoAnswer).unwrap(),
            "no_answer"
        );
        assert_eq!(report.end_reason, "hangup");
    }

    #[test]
    fn start_time_drives_condition_datetime() {
        let actions = json!([
            {"type": "condition_datetime", "option": {
                "condition": ">=", "hour": 9, "minute": 0, "weekdays": [1, 2, 3, 4, 5],
                "false_target_id": "closed"}},
            {"type": "talk", "option": {"text": "open"}},
            {"type": "stop"},
            {"id": "closed", "type": "talk", "option": {"text": "closed"}},
        ]);
        // Monday 2026-11-23.
        let s = script(json!({"start_time": "2026-11-23T09:00:00Z"}));
        assert_eq!(run(actions.clone(), &s).spoken, ["open"]);
        let s = script(json!({"start_time": "2026-11-23T10:00:00+02:00"}));
        assert_eq!(run(actions.clone(), &s).spoken, ["closed"]);
        // The default start, 2026-01-01 00:00 UTC, is a Thursday night.
        assert_eq!(run(actions, &Script::default()).spoken, ["closed"]);
        assert_eq!(StartTime::default().to_string(), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn digits_send_takes_keys_times_duration_plus_interval() {
        let actions = json!([
            {"type": "digits_send", "option": {"digits": "123", "duration": 200, "interval": 50}},
            {"id": "end", "type": "stop"},
        ]);
        let report = run(actions, &Script::default());
        assert_eq!(path(&report)[1], (750, "end".into()));
        assert_eq!(report.digits_sent, ["123"]);
    }

    #[test]
    fn script_errors_name_the_bad_field() {
        let err = |text: &str| Script::from_json(text).unwrap_err();
        let e = err(r#"{"dtfm": []}"#);
        assert_eq!(e.path, "dtfm");
        assert!(e.message.starts_with("unknown field `dtfm`"), "{e}");
        let e = err(r#"{"dtmf": [{"digits": "1x", "at_ms": 0}]}"#);
        assert_eq!(e.path, "dtmf[0].digits");
        assert!(e.message.contains("'X' is not a DTMF key"), "{e}");
        let e = err(r#"{"http": {"http://127.0.0.1/x": {"status": "ok"}}}"#);
        assert_eq!(e.path, r#"http["http://127.0.0.1/x"].status"#);
        let e = err(r#"{"calls": {"+1": {"result": "maybe"}}}"#);
        assert_eq!(e.path, r#"calls["+1"].result"#);
        let e = err(r#"{"start_time": "yesterday"}"#);
        assert_eq!(e.path, "start_time");
        assert!(e.message.contains("RFC 3339"), "{e}");
        let e = err(r#"{"max_ms": 1000000000000}"#);
        assert_eq!(e.path, "max_ms");
        let e = err(r#"{"variables": {"a": [1]}}"#);
        assert_eq!(e.path, "variables.a");
        assert!(e.message.contains("strings, numbers or booleans"), "{e}");
        let e = err("[1]");
        assert_eq!(e.path, "$");
        let e = err("{} x");
        assert_eq!(e.path, "$");
        assert_eq!(Script::from_json("{}").unwrap(), Script::default());
        let mut s = Script::default();
        assert!(s.press("12a", 0).is_ok());
        assert_eq!(s.dtmf[0].digits, "12A");
        assert!(s.press("1-", 0).is_err());
    }
}
