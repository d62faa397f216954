//! The action model: VoIPBIN action types, action ids, and the typed, compiled form of each
//! supported action ("step") that the interpreter runs.
//!
//! Supporting one more type later means: move its line from `unsupported` to `supported` in the
//! `action_types!` table, add a [`Step`] variant with its typed options, parse it in
//! `compile::parse_step`, and add its arm to `Interpreter::start_step` (and
//! `Program::successors` for control flow).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

macro_rules! action_types {
    (
        supported { $($sv:ident => $sn:literal,)* }
        unsupported { $($uv:ident => $un:literal,)* }
    ) => {
        /// Every action type name of the native (VoIPBIN) flow language, including deprecated
        /// aliases. Only the types with [`ActionType::is_supported`] can be compiled and run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ActionType {
            $(
                #[doc = concat!("`", $sn, "`")]
                $sv,
            )*
            $(
                #[doc = concat!("`", $un, "` (recognised; not supported yet)")]
                $uv,
            )*
        }

        impl ActionType {
            /// All known types, supported ones first.
            pub const ALL: &'static [ActionType] = &[$(ActionType::$sv,)* $(ActionType::$uv,)*];

            /// The type with this exact (case-sensitive) JSON name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($sn => Some(Self::$sv),)*
                    $($un => Some(Self::$uv),)*
                    _ => None,
                }
            }

            /// The JSON name, e.g. `"digits_receive"`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$sv => $sn,)*
                    $(Self::$uv => $un,)*
                }
            }

            /// Whether this version can compile and run actions of this type.
            pub fn is_supported(self) -> bool {
                matches!(self, $(Self::$sv)|*)
            }
        }
    };
}

action_types! {
    supported {
        AgentCall => "agent_call",
        Amd => "amd",
        Answer => "answer",
        Beep => "beep",
        Block => "block",
        Branch => "branch",
        Call => "call",
        ConditionCallDigits => "condition_call_digits",
        ConditionCallStatus => "condition_call_status",
        ConditionDatetime => "condition_datetime",
        ConditionVariable => "condition_variable",
        Connect => "connect",
        DigitsReceive => "digits_receive",
        DigitsSend => "digits_send",
        Echo => "echo",
        Empty => "empty",
        ExternalMediaStart => "external_media_start",
        ExternalMediaStop => "external_media_stop",
        Fetch => "fetch",
        FetchFlow => "fetch_flow",
        Goto => "goto",
        Hangup => "hangup",
        HangupRelay => "hangup_relay",
        Mute => "mute",
        Play => "play",
        RecordingStart => "recording_start",
        RecordingStop => "recording_stop",
        Sleep => "sleep",
        Stop => "stop",
        StreamEcho => "stream_echo",
        Talk => "talk",
        VariableSet => "variable_set",
        WebhookSend => "webhook_send",
    }
    unsupported {
        AiSummary => "ai_summary",
        AiTalk => "ai_talk",
        AiTask => "ai_task",
        CaseCreate => "case_create",
        ChatbotTalk => "chatbot_talk",
        ConfbridgeJoin => "confbridge_join",
        ConferenceJoin => "conference_join",
        ConversationSend => "conversation_send",
        EmailSend => "email_send",
        MessageSend => "message_send",
        QueueJoin => "queue_join",
        TranscribeRecording => "transcribe_recording",
        TranscribeStart => "transcribe_start",
        TranscribeStop => "transcribe_stop",
    }
}

impl ActionType {
    /// Whether the action works on a call's media or signalling, so that it cannot run in a flow
    /// that has no call (VoIPBIN's "rtc" media kind): `answer`, `talk`, `connect`, …; `false`
    /// for control (`branch`, `goto`, `condition_*`, `variable_set`, `stop`, `empty`, `block`)
    /// and HTTP (`webhook_send`, `fetch`, `fetch_flow`) and `call`, which places new calls.
    pub fn needs_call(self) -> bool {
        !matches!(
            self,
            Self::Block
                | Self::Branch
                | Self::Call
                | Self::ConditionDatetime
                | Self::ConditionVariable
                | Self::Empty
                | Self::Fetch
                | Self::FetchFlow
                | Self::Goto
                | Self::Stop
                | Self::VariableSet
                | Self::WebhookSend
                | Self::AiSummary
                | Self::AiTask
                | Self::CaseCreate
                | Self::ConversationSend
                | Self::EmailSend
                | Self::MessageSend
                | Self::TranscribeRecording
        )
    }
}

impl fmt::Display for ActionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of an action inside a flow (a UUID in VoIPBIN, but any non-empty string is accepted).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(String);

impl ActionId {
    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn new(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for ActionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ActionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The audio format of a `recording_start` (its `format` option; absent or `""` means `wav`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingFormat {
    /// `wav` (the default).
    Wav,
    /// `mp3`.
    Mp3,
    /// `ogg`.
    Ogg,
}

impl RecordingFormat {
    /// The option value, e.g. `"wav"`; also the usual file extension.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wav => "wav",
            Self::Mp3 => "mp3",
            Self::Ogg => "ogg",
        }
    }

    pub(crate) const NAMES: &'static str = r#""wav", "mp3" or "ogg""#;

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "" | "wav" => Self::Wav,
            "mp3" => Self::Mp3,
            "ogg" => Self::Ogg,
            _ => return None,
        })
    }
}

impl fmt::Display for RecordingFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The DTMF key that ends a `recording_start` (its `end_of_key` option; `""` or `"none"` means
/// no key ends it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordingEndKey {
    /// `any`: every DTMF key ends the recording.
    Any,
    /// `*`.
    Star,
    /// `#`.
    Hash,
}

impl RecordingEndKey {
    /// Whether `key` (a DTMF key as given to [`Input::Digit`](crate::Input::Digit)) ends the
    /// recording.
    pub fn matches(self, key: char) -> bool {
        match self {
            Self::Any => true,
            Self::Star => key == '*',
            Self::Hash => key == '#',
        }
    }

    /// The option value: `"any"`, `"*"` or `"#"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::Star => "*",
            Self::Hash => "#",
        }
    }

    pub(crate) const NAMES: &'static str = r##""none", "any", "*" or "#""##;

    /// `Ok(None)` for `""`/`"none"`, `Err(())` for anything unknown.
    pub(crate) fn from_name(name: &str) -> Result<Option<Self>, ()> {
        Ok(Some(match name {
            "" | "none" => return Ok(None),
            "any" => Self::Any,
            "*" => Self::Star,
            "#" => Self::Hash,
            _ => return Err(()),
        }))
    }
}

impl fmt::Display for RecordingEndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// VoIPBIN's nil UUID, which in an id field means "unset".
pub(crate) const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Whether an id field value means "unset" (empty or the nil UUID).
pub(crate) fn is_unset_id(id: &str) -> bool {
    id.is_empty() || id == NIL_UUID
}

/// Default `digits_receive` duration when the option is absent or `0`.
pub(crate) const DEFAULT_DIGITS_DURATION: Duration = Duration::from_millis(5_000);

/// `digits_send`: at most this many keys per action.
pub(crate) const MAX_DIGITS_SEND_KEYS: usize = 100;

/// `digits_send` tone length per key when `duration` is absent or `0` (VoIPBIN leaves it to
/// Asterisk; the documented range is 100-1000 ms).
pub(crate) const DEFAULT_DIGITS_SEND_DURATION_MS: u32 = 250;

/// `digits_send` pause between keys when `interval` is absent (documented range 0-5000 ms).
pub(crate) const DEFAULT_DIGITS_SEND_INTERVAL_MS: u32 = 100;

/// `echo`/`stream_echo` length when `duration` is absent or `0`: VoIPBIN's call-manager uses
/// 180 s (code reading).
pub(crate) const DEFAULT_ECHO_DURATION: Duration = Duration::from_secs(180);

/// Check a `digits_send` key string: only `0`-`9`, `A`-`D`, `#` and `*`, at most
/// [`MAX_DIGITS_SEND_KEYS`] keys. The error is a sentence naming the first bad key.
pub(crate) fn check_dtmf_keys(digits: &str) -> Result<(), String> {
    if let Some((position, key)) = digits
        .chars()
        .enumerate()
        .find(|(_, c)| !matches!(c, '0'..='9' | 'A'..='D' | '#' | '*'))
    {
        return Err(format!(
            "invalid DTMF key {key:?} at position {}; allowed: 0-9, A-D, # and *",
            position + 1
        ));
    }
    let count = digits.chars().count();
    if count > MAX_DIGITS_SEND_KEYS {
        return Err(format!(
            "{count} keys; at most {MAX_DIGITS_SEND_KEYS} can be sent"
        ));
    }
    Ok(())
}

/// A compiled, supported action with typed options. Targets are indices into the program.
/// Strings marked "template" get `${}` substitution right before the step runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    Answer,
    Talk(Talk),
    Play {
        /// templates
        urls: Vec<String>,
    },
    Beep,
    Sleep {
        duration: Duration,
    },
    DigitsReceive(DigitsReceive),
    DigitsSend(DigitsSend),
    /// `echo` (`dtmf: false`) and `stream_echo` (`dtmf: true`).
    Echo {
        duration: Duration,
        dtmf: bool,
    },
    RecordingStart(RecordingStart),
    RecordingStop,
    Branch(Branch),
    Goto {
        target: usize,
        /// Initial count; the per-run remaining count lives in the interpreter.
        loop_count: i64,
    },
    VariableSet {
        /// template
        key: String,
        /// template
        value: String,
    },
    ConditionVariable(ConditionVariable),
    Hangup {
        /// template; empty after substitution means "normal"
        reason: String,
        /// template; unset (`""`/nil UUID after rendering) means none. `hangup_relay` and
        /// `hangup` with a `reference_id`: hang up with that call's hangup reason.
        reference_id: String,
    },
    Stop,
    /// `empty`: does nothing and moves on.
    Empty,
    /// `block`: parks the run until [`Interpreter::continue_block`](crate::Interpreter::continue_block).
    Block,
    /// `mute`.
    Mute {
        direction: MuteDirection,
    },
    ConditionCallDigits {
        /// 0: no length condition
        length: usize,
        /// template; `""`: no key condition
        key: String,
        false_target: Option<usize>,
    },
    ConditionCallStatus {
        status: CallStatus,
        false_target: Option<usize>,
    },
    ConditionDatetime(ConditionDatetime),
    WebhookSend(WebhookSend),
    Fetch {
        /// template
        url: String,
        method: HttpMethod,
    },
    FetchFlow {
        /// template
        flow_id: String,
    },
    Call(CallStep),
    /// `connect` and its alias `agent_call`.
    Connect(Connect),
    Amd {
        hangup_on_machine: bool,
        asynchronous: bool,
    },
    ExternalMediaStart(ExternalMedia),
    ExternalMediaStop,
}

/// A party of a `call` or `connect`: VoIPBIN's address object (`{"type", "target",
/// "target_name", "name"}`). `kind` is `tel`, `sip`, `extension`, `endpoint`, `agent`, …; which
/// kinds can be dialled is the shell's business. `target` is rendered (`${}`) when the action
/// runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Address {
    /// The address type, e.g. `"tel"` or `"sip"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The number, SIP URI, extension or id.
    pub target: String,
    /// The display name (`target_name`), if any.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub target_name: String,
}

/// The call status `condition_call_status` compares with (VoIPBIN's call status names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// `dialing`: an outgoing call not yet ringing.
    Dialing,
    /// `ringing`: an incoming call not yet answered (or an outgoing one ringing).
    Ringing,
    /// `progressing`: answered, media flowing.
    Progressing,
    /// `terminating`: being hung up.
    Terminating,
    /// `canceling`: an unanswered call being cancelled.
    Canceling,
    /// `hangup`: ended.
    Hangup,
}

impl CallStatus {
    pub(crate) const NAMES: &'static str =
        r#""dialing", "ringing", "progressing", "terminating", "canceling" or "hangup""#;

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "dialing" => Self::Dialing,
            "ringing" => Self::Ringing,
            "progressing" => Self::Progressing,
            "terminating" => Self::Terminating,
            "canceling" => Self::Canceling,
            "hangup" => Self::Hangup,
            _ => return None,
        })
    }

    /// The status name, e.g. `"progressing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dialing => "dialing",
            Self::Ringing => "ringing",
            Self::Progressing => "progressing",
            Self::Terminating => "terminating",
            Self::Canceling => "canceling",
            Self::Hangup => "hangup",
        }
    }
}

/// Which way `mute` silences the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MuteDirection {
    /// `none`: unmute both ways.
    None,
    /// `in`: what the caller says is dropped (not recorded, not bridged).
    In,
    /// `out`: the caller hears silence.
    Out,
    /// `both` (the default).
    Both,
}

impl MuteDirection {
    pub(crate) const NAMES: &'static str = r#""both", "in", "out" or "none""#;

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "" | "both" => Self::Both,
            "in" => Self::In,
            "out" => Self::Out,
            "none" => Self::None,
            _ => return None,
        })
    }

    /// The option value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::In => "in",
            Self::Out => "out",
            Self::Both => "both",
        }
    }
}

/// An HTTP method of `webhook_send` and `fetch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HttpMethod {
    /// `GET`
    Get,
    /// `POST` (the default)
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
}

impl HttpMethod {
    pub(crate) const NAMES: &'static str = r#""GET", "POST", "PUT", "PATCH" or "DELETE""#;

    /// Case-insensitive; `""` is `POST`.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_uppercase().as_str() {
            "" | "POST" => Self::Post,
            "GET" => Self::Get,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    /// The method name, e.g. `"POST"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConditionDatetime {
    pub(crate) condition: Comparison,
    /// -1: any
    pub(crate) minute: i64,
    /// -1: any
    pub(crate) hour: i64,
    /// -1: any
    pub(crate) day: i64,
    /// 0: any
    pub(crate) month: i64,
    /// 0 = Sunday; empty: any day of the week
    pub(crate) weekdays: Vec<u8>,
    pub(crate) false_target: Option<usize>,
}

impl ConditionDatetime {
    /// Evaluate at `unix_seconds` (UTC). `weekdays` is a filter (today must be one of them);
    /// the set fields of (month, day, hour, minute) are compared with `condition` as one
    /// tuple, most significant first, so `>= 08:00` and `< 17:30` mean times of day.
    pub(crate) fn evaluate(&self, unix_seconds: i64) -> bool {
        let t = UtcTime::from_unix(unix_seconds);
        if !self.weekdays.is_empty() && !self.weekdays.contains(&t.weekday) {
            return false;
        }
        let now: Vec<i64> = [
            (self.month != 0, i64::from(t.month)),
            (self.day != -1, i64::from(t.day)),
            (self.hour != -1, i64::from(t.hour)),
            (self.minute != -1, i64::from(t.minute)),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, v)| *v)
        .collect();
        let wanted: Vec<i64> = [self.month, self.day, self.hour, self.minute]
            .iter()
            .zip([0, -1, -1, -1])
            .filter(|(v, unset)| **v != *unset)
            .map(|(v, _)| *v)
            .collect();
        if now.is_empty() {
            // Only weekdays (or nothing) given: the filter above decided.
            return match self.condition {
                Comparison::Eq | Comparison::Ge | Comparison::Le => true,
                Comparison::Ne | Comparison::Gt | Comparison::Lt => false,
            };
        }
        self.condition.holds(&now, &wanted)
    }
}

/// A UTC calendar time, from Unix seconds (proleptic Gregorian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UtcTime {
    pub(crate) year: i64,
    pub(crate) month: u8,
    pub(crate) day: u8,
    pub(crate) hour: u8,
    pub(crate) minute: u8,
    pub(crate) second: u8,
    /// 0 = Sunday
    pub(crate) weekday: u8,
}

impl UtcTime {
    pub(crate) fn from_unix(seconds: i64) -> Self {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        // 1970-01-01 was a Thursday (4).
        let weekday = (days + 4).rem_euclid(7) as u8;
        // Days since 0000-03-01, split into 400-year eras of 146,097 days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
        let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u8;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        } as u8;
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (secs / 3600) as u8,
            minute: (secs % 3600 / 60) as u8,
            second: (secs % 60) as u8,
            weekday,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WebhookSend {
    pub(crate) synchronous: bool,
    /// template
    pub(crate) uri: String,
    pub(crate) method: HttpMethod,
    /// `data_type`; default `application/json`
    pub(crate) content_type: String,
    /// template
    pub(crate) data: String,
}

/// Where a `call` action's new calls get their flow.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CallFlow {
    /// `flow_id` (template).
    FlowId(String),
    /// Inline `actions`, already validated (as written; `${}` is left for the new call's run).
    Actions(serde_json::Value),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallStep {
    pub(crate) source: Option<Address>,
    pub(crate) destinations: Vec<Address>,
    pub(crate) flow: CallFlow,
    pub(crate) chained: bool,
    pub(crate) early_execution: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Connect {
    pub(crate) source: Option<Address>,
    pub(crate) destinations: Vec<Address>,
    pub(crate) early_media: bool,
    pub(crate) relay_reason: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExternalMedia {
    /// template; `host:port`
    pub(crate) host: String,
    pub(crate) encapsulation: String,
    pub(crate) transport: String,
    pub(crate) connection_type: String,
    pub(crate) format: String,
    pub(crate) direction: String,
}

/// The limit on how many stacks (the flow's own plus one per `fetch`/`fetch_flow`) one run may
/// hold, after VoIPBIN.
pub(crate) const MAX_STACKS: usize = 100;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Talk {
    /// template
    pub(crate) text: String,
    /// template
    pub(crate) language: String,
    /// template
    pub(crate) gender: String,
    /// `digits_handle: "next"`: a key stops the talk and moves on.
    pub(crate) next_on_digit: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DigitsReceive {
    pub(crate) duration: Duration,
    /// 0 means "no length condition".
    pub(crate) length: usize,
    /// template; a set of terminator keys
    pub(crate) keys: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DigitsSend {
    /// template; checked by `compile` when it has no `${}`, else after rendering
    pub(crate) digits: String,
    pub(crate) duration_ms: u32,
    pub(crate) interval_ms: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RecordingStart {
    pub(crate) format: RecordingFormat,
    pub(crate) end_of_silence: Option<Duration>,
    pub(crate) end_of_key: Option<RecordingEndKey>,
    pub(crate) max_duration: Option<Duration>,
    pub(crate) beep_start: bool,
    /// 1: both directions mixed; 2: the caller left, what the caller hears right (our
    /// extension, `channels`; default 2).
    pub(crate) channels: u16,
    /// template; unset (`""` or the nil UUID after rendering) means none
    pub(crate) on_end_flow_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Branch {
    /// Variable name (not templated; `${name}` is accepted as `name`).
    pub(crate) variable: String,
    pub(crate) targets: BTreeMap<String, usize>,
    pub(crate) default_target: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConditionVariable {
    pub(crate) condition: Comparison,
    pub(crate) subject: Subject,
    pub(crate) operand: Operand,
    pub(crate) false_target: Option<usize>,
}

/// What `condition_variable` compares.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Subject {
    /// The value of this variable (`"variable": "name"` or `"variable": "${name}"`).
    Variable(String),
    /// A template such as `"${a}-${b}"`, rendered when the action runs (VoIPBIN substitutes the
    /// whole option before comparing, so this form works there too).
    Template(String),
}

/// The right-hand side of `condition_variable`, by `value_type`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    /// `value_type: "string"`: `value_string` (template), compared as text.
    String(String),
    /// `value_type: "number"`: the variable parsed as f64 (not a number → false).
    Number(f64),
    /// `value_type: "length"`: the variable's length in characters.
    Length(usize),
}

/// `==`, `!=`, `>`, `>=`, `<`, `<=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Comparison {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Comparison {
    pub(crate) const NAMES: &'static str = r#""==", "!=", ">", ">=", "<" or "<=""#;

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "==" => Self::Eq,
            "!=" => Self::Ne,
            ">" => Self::Gt,
            ">=" => Self::Ge,
            "<" => Self::Lt,
            "<=" => Self::Le,
            _ => return None,
        })
    }

    /// `left <op> right`. With a NaN operand only `!=` holds.
    pub(crate) fn holds<T: PartialOrd + ?Sized>(self, left: &T, right: &T) -> bool {
        match self {
            Self::Eq => left == right,
            Self::Ne => left != right,
            Self::Gt => left > right,
            Self::Ge => left >= right,
            Self::Lt => left < right,
            Self::Le => left <= right,
        }
    }
}

impl ConditionVariable {
    /// Evaluate against the subject's current text.
    pub(crate) fn evaluate(&self, subject: &str, value_string: &str) -> bool {
        match &self.operand {
            Operand::String(_) => self.condition.holds(subject, value_string),
            Operand::Number(n) => match subject.parse::<f64>() {
                Ok(v) => self.condition.holds(&v, n),
                Err(_) => false,
            },
            Operand::Length(len) => self.condition.holds(&subject.chars().count(), len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_type_names_round_trip() {
        for t in ActionType::ALL {
            assert_eq!(ActionType::from_name(t.as_str()), Some(*t));
        }
        assert_eq!(ActionType::ALL.len(), 47);
        assert_eq!(
            ActionType::ALL.iter().filter(|t| t.is_supported()).count(),
            33
        );
        assert_eq!(ActionType::from_name("Talk"), None);
        assert_eq!(
            ActionType::from_name("hangup_relay"),
            Some(ActionType::HangupRelay)
        );
        assert!(ActionType::HangupRelay.is_supported());
        assert!(!ActionType::QueueJoin.is_supported());
        assert!(ActionType::DigitsReceive.is_supported());
        assert_eq!(ActionType::DigitsReceive.to_string(), "digits_receive");
    }

    #[test]
    fn dtmf_keys_to_send() {
        assert_eq!(check_dtmf_keys("0123456789ABCD#*"), Ok(()));
        assert_eq!(check_dtmf_keys(""), Ok(()));
        assert_eq!(
            check_dtmf_keys("12a4"),
            Err("invalid DTMF key 'a' at position 3; allowed: 0-9, A-D, # and *".into())
        );
        assert_eq!(
            check_dtmf_keys("1 2"),
            Err("invalid DTMF key ' ' at position 2; allowed: 0-9, A-D, # and *".into())
        );
        assert_eq!(
            check_dtmf_keys("é\n"),
            Err("invalid DTMF key 'é' at position 1; allowed: 0-9, A-D, # and *".into())
        );
        assert_eq!(check_dtmf_keys(&"1".repeat(100)), Ok(()));
        assert_eq!(
            check_dtmf_keys(&"#".repeat(101)),
            Err("101 keys; at most 100 can be sent".into())
        );
    }

    #[test]
    fn recording_option_names() {
        assert_eq!(RecordingFormat::from_name(""), Some(RecordingFormat::Wav));
        assert_eq!(
            RecordingFormat::from_name("ogg"),
            Some(RecordingFormat::Ogg)
        );
        assert_eq!(RecordingFormat::from_name("WAV"), None);
        assert_eq!(RecordingFormat::Mp3.to_string(), "mp3");
        assert_eq!(RecordingEndKey::from_name("none"), Ok(None));
        assert_eq!(RecordingEndKey::from_name(""), Ok(None));
        assert_eq!(
            RecordingEndKey::from_name("#"),
            Ok(Some(RecordingEndKey::Hash))
        );
        assert_eq!(RecordingEndKey::from_name("1"), Err(()));
        assert!(RecordingEndKey::Any.matches('7'));
        assert!(RecordingEndKey::Star.matches('*'));
        assert!(!RecordingEndKey::Star.matches('#'));
        assert_eq!(RecordingEndKey::Hash.to_string(), "#");
    }

    #[test]
    fn unset_ids() {
        assert!(is_unset_id(""));
        assert!(is_unset_id(NIL_UUID));
        assert!(!is_unset_id("00000000-0000-0000-0000-000000000001"));
    }

    fn cond(condition: Comparison, operand: Operand) -> ConditionVariable {
        ConditionVariable {
            condition,
            subject: Subject::Variable("v".into()),
            operand,
            false_target: None,
        }
    }

    #[test]
    fn comparisons_on_each_value_type() {
        use Comparison::*;
        let s = |c| cond(c, Operand::String(String::new()));
        assert!(s(Eq).evaluate("abc", "abc"));
        assert!(s(Ne).evaluate("abc", "abd"));
        assert!(s(Lt).evaluate("abc", "abd"));
        assert!(s(Gt).evaluate("b", "abc"));
        assert!(s(Ge).evaluate("b", "b"));
        assert!(s(Le).evaluate("", "a"));

        let n = |c, x| cond(c, Operand::Number(x));
        assert!(n(Eq, 10.0).evaluate("10", ""));
        assert!(n(Eq, 10.0).evaluate("1e1", ""));
        assert!(n(Gt, 9.5).evaluate("10", ""));
        assert!(n(Le, -1.0).evaluate("-1.0", ""));
        assert!(
            !n(Ne, 3.0).evaluate("three", ""),
            "not a number is false for every op"
        );
        assert!(!n(Eq, 0.0).evaluate("", ""));
        assert!(!n(Ge, 0.0).evaluate(" 1", ""));

        let l = |c, x| cond(c, Operand::Length(x));
        assert!(l(Eq, 3).evaluate("héé", ""), "length counts characters");
        assert!(l(Lt, 4).evaluate("123", ""));
        assert!(l(Ge, 0).evaluate("", ""));
        assert!(!l(Gt, 3).evaluate("123", ""));
    }

    #[test]
    fn utc_calendar_from_unix_seconds() {
        let t = |s| {
            let u = UtcTime::from_unix(s);
            (
                u.year, u.month, u.day, u.hour, u.minute, u.second, u.weekday,
            )
        };
        assert_eq!(t(0), (1970, 1, 1, 0, 0, 0, 4));
        assert_eq!(t(951_782_400), (2000, 2, 29, 0, 0, 0, 2));
        assert_eq!(t(1_767_225_600), (2026, 1, 1, 0, 0, 0, 4));
        assert_eq!(t(1_795_352_820), (2026, 11, 22, 13, 7, 0, 0));
        assert_eq!(t(-86_400), (1969, 12, 31, 0, 0, 0, 3));
        assert_eq!(t(4_102_444_800 + 59), (2100, 1, 1, 0, 0, 59, 5));
    }

    fn datetime(
        condition: Comparison,
        hour: i64,
        minute: i64,
        weekdays: &[u8],
    ) -> ConditionDatetime {
        ConditionDatetime {
            condition,
            minute,
            hour,
            day: -1,
            month: 0,
            weekdays: weekdays.to_vec(),
            false_target: None,
        }
    }

    #[test]
    fn datetime_conditions_compare_times_of_day() {
        // Sunday 2026-11-22 13:07 UTC.
        let sunday_1307 = 1_795_352_820;
        use Comparison::*;
        assert!(datetime(Ge, 8, 0, &[]).evaluate(sunday_1307));
        assert!(datetime(Lt, 17, 30, &[]).evaluate(sunday_1307));
        // Field by field, 13:07 < 17:00 would fail on the minutes (7 < 0); as a time it holds.
        assert!(datetime(Lt, 17, 0, &[]).evaluate(sunday_1307));
        assert!(!datetime(Lt, 13, 7, &[]).evaluate(sunday_1307));
        assert!(datetime(Eq, 13, -1, &[]).evaluate(sunday_1307));
        assert!(datetime(Ne, 14, -1, &[]).evaluate(sunday_1307));
        // Weekdays filter: Monday to Friday excludes Sunday.
        assert!(!datetime(Ge, 8, 0, &[1, 2, 3, 4, 5]).evaluate(sunday_1307));
        assert!(datetime(Ge, 8, 0, &[0, 6]).evaluate(sunday_1307));
        // Only weekdays given.
        assert!(datetime(Eq, -1, -1, &[0]).evaluate(sunday_1307));
        assert!(!datetime(Eq, -1, -1, &[1]).evaluate(sunday_1307));
        // Month and day.
        let mut c = datetime(Eq, -1, -1, &[]);
        c.month = 11;
        c.day = 22;
        assert!(c.evaluate(sunday_1307));
        c.condition = Gt;
        c.day = 21;
        assert!(c.evaluate(sunday_1307));
    }
}
