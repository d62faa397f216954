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
        Answer => "answer",
        Beep => "beep",
        Branch => "branch",
        ConditionVariable => "condition_variable",
        DigitsReceive => "digits_receive",
        DigitsSend => "digits_send",
        Echo => "echo",
        Goto => "goto",
        Hangup => "hangup",
        Play => "play",
        RecordingStart => "recording_start",
        RecordingStop => "recording_stop",
        Sleep => "sleep",
        Stop => "stop",
        StreamEcho => "stream_echo",
        Talk => "talk",
        VariableSet => "variable_set",
    }
    unsupported {
        AgentCall => "agent_call",
        AiSummary => "ai_summary",
        AiTalk => "ai_talk",
        AiTask => "ai_task",
        Amd => "amd",
        Block => "block",
        Call => "call",
        CaseCreate => "case_create",
        ChatbotTalk => "chatbot_talk",
        ConditionCallDigits => "condition_call_digits",
        ConditionCallStatus => "condition_call_status",
        ConditionDatetime => "condition_datetime",
        ConfbridgeJoin => "confbridge_join",
        ConferenceJoin => "conference_join",
        Connect => "connect",
        ConversationSend => "conversation_send",
        EmailSend => "email_send",
        Empty => "empty",
        ExternalMediaStart => "external_media_start",
        ExternalMediaStop => "external_media_stop",
        Fetch => "fetch",
        FetchFlow => "fetch_flow",
        HangupRelay => "hangup_relay",
        MessageSend => "message_send",
        Mute => "mute",
        QueueJoin => "queue_join",
        TranscribeRecording => "transcribe_recording",
        TranscribeStart => "transcribe_start",
        TranscribeStop => "transcribe_stop",
        WebhookSend => "webhook_send",
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
    },
    Stop,
}

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
            17
        );
        assert_eq!(ActionType::from_name("Talk"), None);
        assert_eq!(
            ActionType::from_name("hangup_relay"),
            Some(ActionType::HangupRelay)
        );
        assert!(!ActionType::HangupRelay.is_supported());
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
}
