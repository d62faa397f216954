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
        Goto => "goto",
        Hangup => "hangup",
        Play => "play",
        Sleep => "sleep",
        Stop => "stop",
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
        DigitsSend => "digits_send",
        Echo => "echo",
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
        RecordingStart => "recording_start",
        RecordingStop => "recording_stop",
        StreamEcho => "stream_echo",
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

/// VoIPBIN's nil UUID, which in an id field means "unset".
pub(crate) const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// Whether an id field value means "unset" (empty or the nil UUID).
pub(crate) fn is_unset_id(id: &str) -> bool {
    id.is_empty() || id == NIL_UUID
}

/// Default `digits_receive` duration when the option is absent or `0`.
pub(crate) const DEFAULT_DIGITS_DURATION: Duration = Duration::from_millis(5_000);

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
            12
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
