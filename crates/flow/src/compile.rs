//! `compile`: static validation of a JSON action list into a [`Program`], with every problem
//! reported as a [`Diagnostic`] carrying the JSON path of the bad field.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::action::{
    ActionId, ActionType, Address, Branch, CallFlow, CallStatus, CallStep, Comparison,
    ConditionDatetime, ConditionVariable, Connect, DEFAULT_DIGITS_DURATION,
    DEFAULT_DIGITS_SEND_DURATION_MS, DEFAULT_DIGITS_SEND_INTERVAL_MS, DEFAULT_ECHO_DURATION,
    DigitsReceive, DigitsSend, ExternalMedia, HttpMethod, MuteDirection, Operand, RecordingEndKey,
    RecordingFormat, RecordingStart, Step, Subject, Talk, WebhookSend, check_dtmf_keys,
    is_unset_id,
};
use crate::program::{Action, Program};
use crate::variable::{VARIABLE_CALL_DIGITS, sole_reference};

/// One problem found by [`compile`], with the JSON path of the bad field and a plain sentence.
///
/// Paths start at the action array: `actions[3].option.target_ids["2"]`, `actions[0].type`,
/// `actions` for the array itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{severity} at {path}: {message}")]
pub struct Diagnostic {
    /// Whether this stops the flow from compiling.
    pub severity: Severity,
    /// The JSON path of the offending value, e.g. `actions[3].option.duration`.
    pub path: String,
    /// What is wrong, as a plain sentence.
    pub message: String,
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The flow is rejected.
    Error,
    /// The flow compiles, but probably does not do what its author meant.
    Warning,
}

/// Validate a JSON array of actions into a [`Program`].
///
/// Checked: that the value is an array of objects; `type` present, known and supported
/// ("unknown action type 'X'" / "action type 'X' is not supported yet"); every known option has
/// the right JSON type (unknown options and unknown top-level fields are ignored; `null` counts as
/// absent); required options are present; ids are unique; `next_id`, `target_id`, `target_ids`,
/// `default_target_id` and `false_target_id` name existing actions (an empty string or the nil
/// UUID means "unset" where the field is optional).
///
/// Warnings (returned by [`Program::warnings`], or alongside errors): actions that cannot be
/// reached from the first one, loops with no way out (they run until the execution limit), and a
/// `goto` without a positive `loop_count` (which never jumps). The graph warnings are only computed
/// when there are no errors.
///
/// On failure, `Err` holds every error and warning found, ordered by action.
pub fn compile(actions: &Value) -> Result<Program, Vec<Diagnostic>> {
    let Some(items) = actions.as_array() else {
        return Err(vec![Diagnostic::error(
            "actions".into(),
            "must be an array of actions".into(),
        )]);
    };
    let mut diags = Vec::new();

    // Pass 1: the ids, so that references can be resolved in any direction.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            continue; // reported in pass 2
        };
        match obj.get("id") {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) if is_unset_id(id) => {}
            Some(Value::String(id)) => {
                if let Some(first) = ids.get(id.as_str()) {
                    diags.push(Diagnostic::error(
                        format!("actions[{i}].id"),
                        format!("duplicate action id '{id}' (already used by actions[{first}])"),
                    ));
                } else {
                    ids.insert(id, i);
                }
            }
            Some(_) => diags.push(Diagnostic::error(
                format!("actions[{i}].id"),
                "must be a string".into(),
            )),
        }
    }

    // Pass 2: each action's type, next_id and options.
    let empty = Map::new();
    let mut compiled = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("actions[{i}]");
        let Some(obj) = item.as_object() else {
            diags.push(Diagnostic::error(path, "must be an object".into()));
            continue;
        };
        let diags_before = diags.len();

        let action_type = match obj.get("type") {
            None | Some(Value::Null) => {
                diags.push(Diagnostic::error(
                    format!("{path}.type"),
                    "missing action type".into(),
                ));
                None
            }
            Some(Value::String(name)) => match ActionType::from_name(name) {
                None => {
                    diags.push(Diagnostic::error(
                        format!("{path}.type"),
                        format!("unknown action type '{name}'"),
                    ));
                    None
                }
                Some(t) if !t.is_supported() => {
                    diags.push(Diagnostic::error(
                        format!("{path}.type"),
                        format!("action type '{name}' is not supported yet"),
                    ));
                    None
                }
                Some(t) => Some(t),
            },
            Some(_) => {
                diags.push(Diagnostic::error(
                    format!("{path}.type"),
                    "must be a string".into(),
                ));
                None
            }
        };

        let mut reader = Reader {
            ids: &ids,
            diags: &mut diags,
        };
        let next = reader.target(obj.get("next_id"), &format!("{path}.next_id"), None);

        let option = match obj.get("option") {
            None | Some(Value::Null) => Some(&empty),
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                reader.error(format!("{path}.option"), "must be an object".into());
                None
            }
        };

        let (Some(action_type), Some(option)) = (action_type, option) else {
            continue;
        };
        let step = parse_step(
            action_type,
            &mut Options {
                map: option,
                path: format!("{path}.option"),
                reader,
            },
        );
        let failed = diags
            .get(diags_before..)
            .is_some_and(|new| new.iter().any(|d| d.severity == Severity::Error));
        if failed {
            continue;
        }
        let Some(step) = step else { continue };
        let id = match obj.get("id") {
            Some(Value::String(id)) if !is_unset_id(id) => Some(ActionId::new(id)),
            _ => None,
        };
        compiled.push(Action::new(
            id,
            action_type,
            next,
            Value::Object(option.clone()),
            step,
        ));
    }

    diags.sort_by_key(Diagnostic::action_index);
    if error_count(&diags) > 0 {
        return Err(diags);
    }
    Ok(Program::new(compiled, diags))
}

/// [`compile`] for a flow that runs without a call (started by the API, or on a recording's
/// end): every action that needs one ([`ActionType::needs_call`]) is an error at its `type`.
pub fn compile_without_call(actions: &Value) -> Result<Program, Vec<Diagnostic>> {
    let call_errors: Vec<Diagnostic> = actions
        .as_array()
        .map(|items| {
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let name = item.get("type")?.as_str()?;
                    let t = ActionType::from_name(name)?;
                    (t.is_supported() && t.needs_call()).then(|| {
                        Diagnostic::error(
                            format!("actions[{i}].type"),
                            format!(
                                "'{name}' needs a call, and this flow runs without one \
                                 (only control, HTTP and `call` actions can run here)"
                            ),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    match compile(actions) {
        Ok(program) if call_errors.is_empty() => Ok(program),
        Ok(program) => {
            let mut diags = call_errors;
            diags.extend(program.warnings().iter().cloned());
            diags.sort_by_key(Diagnostic::action_index);
            Err(diags)
        }
        Err(mut diags) => {
            diags.extend(call_errors);
            diags.sort_by_key(Diagnostic::action_index);
            Err(diags)
        }
    }
}

/// Give every action object that has no `"id"` (absent, `null`, `""` or the nil UUID) a fresh id
/// from `new_id` (the API passes UUIDv4s). Non-object elements and non-string ids are left for
/// [`compile`] to report. Does nothing if `actions` is not an array.
pub fn assign_ids(actions: &mut Value, mut new_id: impl FnMut() -> String) {
    let Some(items) = actions.as_array_mut() else {
        return;
    };
    for obj in items.iter_mut().filter_map(Value::as_object_mut) {
        let needs_id = match obj.get("id") {
            None | Some(Value::Null) => true,
            Some(Value::String(id)) => is_unset_id(id),
            Some(_) => false,
        };
        if needs_id {
            obj.insert("id".into(), Value::String(new_id()));
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

impl Diagnostic {
    pub(crate) fn error(path: String, message: String) -> Self {
        Self {
            severity: Severity::Error,
            path,
            message,
        }
    }

    pub(crate) fn warning(path: String, message: String) -> Self {
        Self {
            severity: Severity::Warning,
            path,
            message,
        }
    }

    /// The action index in the path (`actions[3]…` → 3); `None` for the whole array, which sorts
    /// first.
    pub(crate) fn action_index(&self) -> Option<usize> {
        let rest = self.path.strip_prefix("actions[")?;
        rest.get(..rest.find(']')?)?.parse().ok()
    }
}

/// `host:port` with a non-empty host and a port number.
fn looks_like_host_port(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    })
}

fn error_count(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// Resolves ids and records diagnostics.
struct Reader<'a, 'c> {
    ids: &'c HashMap<&'a str, usize>,
    diags: &'c mut Vec<Diagnostic>,
}

impl Reader<'_, '_> {
    fn error(&mut self, path: String, message: String) {
        self.diags.push(Diagnostic::error(path, message));
    }

    /// An action reference. Absent, `null`, `""` or the nil UUID is "unset": `None`, and an error
    /// with `required` as its message if the field is required.
    fn target(
        &mut self,
        value: Option<&Value>,
        path: &str,
        required: Option<&str>,
    ) -> Option<usize> {
        match value {
            Some(Value::String(id)) if !is_unset_id(id) => match self.ids.get(id.as_str()) {
                Some(index) => Some(*index),
                None => {
                    self.error(path.into(), format!("no action has the id '{id}'"));
                    None
                }
            },
            None | Some(Value::Null) | Some(Value::String(_)) => {
                if let Some(message) = required {
                    self.error(path.into(), message.into());
                }
                None
            }
            Some(_) => {
                self.error(path.into(), "must be a string (an action id)".into());
                None
            }
        }
    }
}

/// Typed access to one action's `option` object.
struct Options<'a, 'c> {
    map: &'a Map<String, Value>,
    path: String,
    reader: Reader<'a, 'c>,
}

impl<'a> Options<'a, '_> {
    fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let path = self.path(key);
        self.reader.error(path, message.into());
    }

    /// The value of `key`; `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.error(key, "must be a string");
                None
            }
        }
    }

    /// A string that must be present and non-empty; `missing` is the message otherwise.
    fn required_string(&mut self, key: &str, missing: &str) -> Option<String> {
        match self.get(key) {
            None => {
                self.error(key, missing);
                None
            }
            Some(_) => {
                let s = self.string(key)?;
                if s.is_empty() {
                    self.error(key, missing);
                    return None;
                }
                Some(s)
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let value = self.get(key)?;
        match value.as_bool() {
            Some(b) => Some(b),
            None => {
                self.error(key, "must be a boolean");
                None
            }
        }
    }

    fn unsigned(&mut self, key: &str, what: &str) -> Option<u64> {
        let value = self.get(key)?;
        match value.as_u64() {
            Some(n) => Some(n),
            None => {
                self.error(key, format!("must be a non-negative integer{what}"));
                None
            }
        }
    }

    fn integer(&mut self, key: &str) -> Option<i64> {
        let value = self.get(key)?;
        match value.as_i64() {
            Some(n) => Some(n),
            None => {
                self.error(key, "must be an integer");
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Option<f64> {
        let value = self.get(key)?;
        match value.as_f64() {
            Some(n) => Some(n),
            None => {
                self.error(key, "must be a number");
                None
            }
        }
    }

    fn millis(&mut self, key: &str) -> Option<Duration> {
        self.unsigned(key, " (milliseconds)")
            .map(Duration::from_millis)
    }

    /// Whole seconds, where `0` (or absent) means "no limit": `None`.
    fn limit_seconds(&mut self, key: &str) -> Option<Duration> {
        self.unsigned(key, " (seconds)")
            .filter(|&n| n > 0)
            .map(Duration::from_secs)
    }

    /// Milliseconds for which `valid` holds; absent gives `None`, and so does an invalid value
    /// (with the error `invalid`).
    fn millis_where(
        &mut self,
        key: &str,
        valid: impl Fn(u32) -> bool,
        invalid: &str,
    ) -> Option<u32> {
        let n = self.unsigned(key, " (milliseconds)")?;
        match u32::try_from(n) {
            Ok(n) if valid(n) => Some(n),
            _ => {
                self.error(key, invalid);
                None
            }
        }
    }

    fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        let Value::Array(items) = self.get(key)? else {
            self.error(key, "must be an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(s) => out.push(s.clone()),
                _ => {
                    self.error(&format!("{key}[{i}]"), "must be a string");
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// An integer in `min..=max`; absent gives `None`.
    fn ranged(&mut self, key: &str, min: i64, max: i64, what: &str) -> Option<i64> {
        let n = self.integer(key)?;
        if (min..=max).contains(&n) {
            Some(n)
        } else {
            self.error(key, format!("must be {what}"));
            None
        }
    }

    /// `weekdays`: an array of 0 (Sunday) to 6 (Saturday).
    fn weekdays(&mut self, key: &str) -> Vec<u8> {
        let Some(value) = self.get(key) else {
            return Vec::new();
        };
        let Value::Array(items) = value else {
            self.error(
                key,
                "must be an array of weekday numbers, 0 (Sunday) to 6 (Saturday)",
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item
                .as_u64()
                .and_then(|n| u8::try_from(n).ok())
                .filter(|n| *n <= 6)
            {
                Some(n) => out.push(n),
                None => self.error(
                    &format!("{key}[{i}]"),
                    "must be a weekday number, 0 (Sunday) to 6 (Saturday)",
                ),
            }
        }
        out
    }

    /// `condition`: one of the six comparisons, required.
    fn comparison(&mut self, action: &str) -> Option<Comparison> {
        match self.string("condition").as_deref() {
            Some(name) => Comparison::from_name(name).or_else(|| {
                self.error("condition", format!("must be one of {}", Comparison::NAMES));
                None
            }),
            None if self.get("condition").is_none() => {
                self.error(
                    "condition",
                    format!("{action} needs a condition: one of {}", Comparison::NAMES),
                );
                None
            }
            None => None,
        }
    }

    /// An HTTP method (case-insensitive; absent or `""` is POST).
    fn method(&mut self, key: &str) -> Option<HttpMethod> {
        match self.string(key) {
            None => Some(HttpMethod::Post),
            Some(name) => HttpMethod::from_name(&name).or_else(|| {
                self.error(key, format!("must be one of {}", HttpMethod::NAMES));
                None
            }),
        }
    }

    /// A URL option without `${}` must be an absolute http(s) URL.
    fn check_url(&mut self, key: &str, url: &str) {
        if url.contains("${") {
            return;
        }
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {}
            _ => self.error(key, "must be an http:// or https:// URL"),
        }
    }

    /// An address object `{"type", "target", "target_name"?}`. `Some(None)` when absent and not
    /// required; `None` after an error.
    fn address(&mut self, key: &str, required: bool) -> Option<Option<Address>> {
        let Some(value) = self.get(key) else {
            if required {
                self.error(key, "needs an address: {\"type\", \"target\"}");
                return None;
            }
            return Some(None);
        };
        self.address_at(key, value).map(Some)
    }

    fn address_at(&mut self, key: &str, value: &Value) -> Option<Address> {
        let Value::Object(map) = value else {
            self.error(key, "must be an address object: {\"type\", \"target\"}");
            return None;
        };
        let text = |field: &str| map.get(field).filter(|v| !v.is_null());
        let mut ok = true;
        let mut field = |this: &mut Self, name: &str, required: bool| -> String {
            match text(name) {
                Some(Value::String(s)) if !(required && s.is_empty()) => s.clone(),
                Some(Value::String(_)) | None if required => {
                    this.error(&format!("{key}.{name}"), format!("address needs a {name}"));
                    ok = false;
                    String::new()
                }
                None => String::new(),
                Some(_) => {
                    this.error(&format!("{key}.{name}"), "must be a string");
                    ok = false;
                    String::new()
                }
            }
        };
        let kind = field(self, "type", true);
        let target = field(self, "target", true);
        let target_name = field(self, "target_name", false);
        ok.then_some(Address {
            kind,
            target,
            target_name,
        })
    }

    /// `destinations`: a non-empty array of addresses.
    fn addresses(&mut self, key: &str) -> Option<Vec<Address>> {
        let Some(value) = self.get(key) else {
            self.error(key, "needs at least one destination address");
            return None;
        };
        let Value::Array(items) = value else {
            self.error(key, "must be an array of address objects");
            return None;
        };
        if items.is_empty() {
            self.error(key, "needs at least one destination address");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(self.address_at(&format!("{key}[{i}]"), item));
        }
        out.into_iter().collect()
    }

    /// Inline actions (of `call`): compiled on their own, errors reported under this option's
    /// path.
    fn nested_actions(&mut self, key: &str, actions: &'a Value) -> Option<Value> {
        match compile(actions) {
            Ok(_) => Some(actions.clone()),
            Err(diags) => {
                let prefix = self.path(key);
                for d in diags.into_iter().filter(|d| d.severity == Severity::Error) {
                    let rest = d.path.strip_prefix("actions").unwrap_or(&d.path);
                    self.reader.error(format!("{prefix}{rest}"), d.message);
                }
                None
            }
        }
    }

    fn target(&mut self, key: &str, required: Option<&str>) -> Option<usize> {
        let path = self.path(key);
        self.reader.target(self.map.get(key), &path, required)
    }

    /// A `{value: action_id}` object.
    fn target_map(&mut self, key: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        let Some(value) = self.get(key) else {
            return out;
        };
        let Value::Object(map) = value else {
            self.error(key, "must be an object mapping values to action ids");
            return out;
        };
        // Sorted explicitly, so diagnostics do not depend on serde_json's map order feature.
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (k, v) in entries {
            let quoted = serde_json::to_string(k).unwrap_or_else(|_| format!("{k:?}"));
            let path = format!("{}.{key}[{quoted}]", self.path);
            let required = "must be the id of an action, not empty";
            if let Some(index) = self.reader.target(Some(v), &path, Some(required)) {
                out.insert(k.clone(), index);
            }
        }
        out
    }
}

/// Parse the options of a supported type. Returns `None` (with diagnostics recorded) when the
/// options are unusable; the caller also discards the step if any error was recorded.
fn parse_step(action_type: ActionType, o: &mut Options<'_, '_>) -> Option<Step> {
    use ActionType as T;
    Some(match action_type {
        T::Answer => Step::Answer,
        T::Beep => Step::Beep,
        T::Stop => Step::Stop,
        T::Talk => {
            let text = o.required_string("text", "talk needs a non-empty text");
            let language = o.string("language").unwrap_or_default();
            let gender = o.string("gender").unwrap_or_default();
            if o.boolean("async") == Some(true) {
                o.error("async", "talk with async: true is not supported yet");
            }
            let next_on_digit = match o.string("digits_handle").as_deref() {
                None | Some("") => false,
                Some("next") => true,
                Some(_) => {
                    o.error("digits_handle", r#"must be "" or "next""#);
                    false
                }
            };
            Step::Talk(Talk {
                text: text?,
                language,
                gender,
                next_on_digit,
            })
        }
        T::Play => {
            let urls = o.strings("stream_urls");
            match urls {
                Some(urls) if !urls.is_empty() => Step::Play { urls },
                Some(_) => {
                    o.error("stream_urls", "play needs at least one URL in stream_urls");
                    return None;
                }
                None if o.get("stream_urls").is_none() => {
                    o.error("stream_urls", "play needs at least one URL in stream_urls");
                    return None;
                }
                None => return None,
            }
        }
        T::Sleep => Step::Sleep {
            duration: o.millis("duration").unwrap_or_default(),
        },
        T::DigitsReceive => {
            let duration = o
                .millis("duration")
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_DIGITS_DURATION);
            let length = o
                .unsigned("length", "")
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .unwrap_or(0);
            let keys = o.string("key").unwrap_or_default();
            Step::DigitsReceive(DigitsReceive {
                duration,
                length,
                keys,
            })
        }
        T::DigitsSend => {
            let digits = o.required_string("digits", "digits_send needs digits to send");
            if let Some(digits) = digits.as_deref().filter(|d| !d.contains("${"))
                && let Err(message) = check_dtmf_keys(digits)
            {
                o.error("digits", message);
            }
            let duration_ms = o
                .millis_where(
                    "duration",
                    |n| n == 0 || (100..=1000).contains(&n),
                    "must be between 100 and 1000 milliseconds (or 0 for the default 250)",
                )
                .filter(|&n| n != 0)
                .unwrap_or(DEFAULT_DIGITS_SEND_DURATION_MS);
            let interval_ms = o
                .millis_where(
                    "interval",
                    |n| n <= 5000,
                    "must be between 0 and 5000 milliseconds",
                )
                .unwrap_or(DEFAULT_DIGITS_SEND_INTERVAL_MS);
            Step::DigitsSend(DigitsSend {
                digits: digits?,
                duration_ms,
                interval_ms,
            })
        }
        T::Echo | T::StreamEcho => Step::Echo {
            duration: o
                .millis("duration")
                .filter(|d| !d.is_zero())
                .unwrap_or(DEFAULT_ECHO_DURATION),
            dtmf: action_type == T::StreamEcho,
        },
        T::RecordingStart => {
            let format = match o.string("format") {
                None => Some(RecordingFormat::Wav),
                Some(name) => {
                    let format = RecordingFormat::from_name(&name);
                    if format.is_none() {
                        o.error(
                            "format",
                            format!("must be one of {}", RecordingFormat::NAMES),
                        );
                    }
                    format
                }
            };
            let end_of_silence = o.limit_seconds("end_of_silence");
            let end_of_key = match o.string("end_of_key") {
                None => None,
                Some(name) => RecordingEndKey::from_name(&name).unwrap_or_else(|()| {
                    o.error(
                        "end_of_key",
                        format!("must be one of {}", RecordingEndKey::NAMES),
                    );
                    None
                }),
            };
            let max_duration = o.limit_seconds("duration");
            let beep_start = o.boolean("beep_start").unwrap_or(false);
            let channels = o.ranged(
                "channels",
                1,
                2,
                "1 (mixed) or 2 (caller left, callee right)",
            );
            let on_end_flow_id = o.string("on_end_flow_id").unwrap_or_default();
            Step::RecordingStart(RecordingStart {
                format: format?,
                end_of_silence,
                end_of_key,
                max_duration,
                beep_start,
                channels: channels.map_or(2, |n| if n == 1 { 1 } else { 2 }),
                on_end_flow_id,
            })
        }
        T::RecordingStop => Step::RecordingStop,
        T::Branch => {
            let variable = o.string("variable").unwrap_or_default();
            let variable = match sole_reference(&variable) {
                Some(name) => name.to_owned(),
                None if variable.is_empty() => VARIABLE_CALL_DIGITS.to_owned(),
                None => variable,
            };
            let targets = o.target_map("target_ids");
            let default_target = o.target("default_target_id", None);
            Step::Branch(Branch {
                variable,
                targets,
                default_target,
            })
        }
        T::Goto => {
            let target = o.target("target_id", Some("goto needs a target_id"));
            let loop_count = o.integer("loop_count");
            if o.get("loop_count").is_none() || loop_count.is_some_and(|n| n <= 0) {
                let path = o.path("loop_count");
                o.reader.diags.push(Diagnostic::warning(
                    path,
                    "goto without a positive loop_count never jumps; it falls through to the \
                     next action"
                        .into(),
                ));
            }
            Step::Goto {
                target: target?,
                loop_count: loop_count.unwrap_or(0),
            }
        }
        T::VariableSet => {
            let key = o.required_string("key", "variable_set needs a key");
            let value = o.string("value").unwrap_or_default();
            Step::VariableSet { key: key?, value }
        }
        T::ConditionVariable => {
            let condition = o.string("condition");
            let condition = match condition.as_deref() {
                Some(name) => match Comparison::from_name(name) {
                    Some(c) => Some(c),
                    None => {
                        o.error("condition", format!("must be one of {}", Comparison::NAMES));
                        None
                    }
                },
                None if o.get("condition").is_none() => {
                    o.error(
                        "condition",
                        format!(
                            "condition_variable needs a condition: one of {}",
                            Comparison::NAMES
                        ),
                    );
                    None
                }
                None => None,
            };
            let variable =
                o.required_string("variable", "condition_variable needs a variable to test");
            let subject = variable.map(|v| match sole_reference(&v) {
                Some(name) => Subject::Variable(name.to_owned()),
                None if v.contains("${") => Subject::Template(v),
                None => Subject::Variable(v),
            });
            let value_string = o.string("value_string").unwrap_or_default();
            let value_number = o.number("value_number").unwrap_or(0.0);
            let value_length = o
                .unsigned("value_length", "")
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .unwrap_or(0);
            const VALUE_TYPES: &str = r#""string", "number" or "length""#;
            let operand = match o.string("value_type").as_deref() {
                Some("string") => Some(Operand::String(value_string)),
                Some("number") => Some(Operand::Number(value_number)),
                Some("length") => Some(Operand::Length(value_length)),
                Some(_) => {
                    o.error("value_type", format!("must be one of {VALUE_TYPES}"));
                    None
                }
                None if o.get("value_type").is_none() => {
                    o.error(
                        "value_type",
                        format!("condition_variable needs a value_type: one of {VALUE_TYPES}"),
                    );
                    None
                }
                None => None,
            };
            let false_target = o.target("false_target_id", None);
            Step::ConditionVariable(ConditionVariable {
                condition: condition?,
                subject: subject?,
                operand: operand?,
                false_target,
            })
        }
        T::Hangup => Step::Hangup {
            reason: o.string("reason").unwrap_or_default(),
            reference_id: o.string("reference_id").unwrap_or_default(),
        },
        T::HangupRelay => {
            let reference_id = o.required_string(
                "reference_id",
                "hangup_relay needs the reference_id of a call",
            );
            Step::Hangup {
                reason: String::new(),
                reference_id: reference_id?,
            }
        }
        T::Empty => Step::Empty,
        T::Block => Step::Block,
        T::Mute => {
            let direction = match o.string("direction") {
                None => Some(MuteDirection::Both),
                Some(name) => MuteDirection::from_name(&name).or_else(|| {
                    o.error(
                        "direction",
                        format!("must be one of {}", MuteDirection::NAMES),
                    );
                    None
                }),
            };
            Step::Mute {
                direction: direction?,
            }
        }
        T::ConditionCallDigits => {
            let length = o
                .unsigned("length", "")
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .unwrap_or(0);
            let key = o.string("key").unwrap_or_default();
            let false_target = o.target("false_target_id", None);
            Step::ConditionCallDigits {
                length,
                key,
                false_target,
            }
        }
        T::ConditionCallStatus => {
            let status = o.required_string(
                "status",
                &format!(
                    "condition_call_status needs a status: one of {}",
                    CallStatus::NAMES
                ),
            );
            let status = status.and_then(|name| {
                CallStatus::from_name(&name).or_else(|| {
                    o.error("status", format!("must be one of {}", CallStatus::NAMES));
                    None
                })
            });
            let false_target = o.target("false_target_id", None);
            Step::ConditionCallStatus {
                status: status?,
                false_target,
            }
        }
        T::ConditionDatetime => {
            let condition = o.comparison("condition_datetime");
            let minute = o
                .ranged("minute", -1, 59, "-1 (any minute) or 0-59")
                .unwrap_or(-1);
            let hour = o
                .ranged("hour", -1, 23, "-1 (any hour) or 0-23")
                .unwrap_or(-1);
            let day = o
                .ranged("day", -1, 31, "-1 (any day) or 1-31")
                .unwrap_or(-1);
            if day == 0 {
                o.error("day", "must be -1 (any day) or 1-31");
            }
            let month = o
                .ranged("month", 0, 12, "0 (any month) or 1-12")
                .unwrap_or(0);
            let weekdays = o.weekdays("weekdays");
            let false_target = o.target("false_target_id", None);
            Step::ConditionDatetime(ConditionDatetime {
                condition: condition?,
                minute,
                hour,
                day,
                month,
                weekdays,
                false_target,
            })
        }
        T::WebhookSend => {
            let uri = o.required_string("uri", "webhook_send needs a uri");
            if let Some(uri) = uri.as_deref() {
                o.check_url("uri", uri);
            }
            let method = o.method("method");
            let content_type = o
                .string("data_type")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "application/json".to_owned());
            let data = o.string("data").unwrap_or_default();
            let synchronous = o.boolean("sync").unwrap_or(false);
            Step::WebhookSend(WebhookSend {
                synchronous,
                uri: uri?,
                method: method?,
                content_type,
                data,
            })
        }
        T::Fetch => {
            let url = o.required_string("event_url", "fetch needs an event_url");
            if let Some(url) = url.as_deref() {
                o.check_url("event_url", url);
            }
            let method = o.method("event_method");
            Step::Fetch {
                url: url?,
                method: method?,
            }
        }
        T::FetchFlow => {
            let flow_id = o.required_string("flow_id", "fetch_flow needs a flow_id");
            if flow_id.as_deref().is_some_and(is_unset_id) {
                o.error("flow_id", "fetch_flow needs a flow_id, not the nil UUID");
            }
            Step::FetchFlow { flow_id: flow_id? }
        }
        T::Call => {
            let source = o.address("source", false);
            let destinations = o.addresses("destinations");
            let flow_id = o.string("flow_id").filter(|id| !is_unset_id(id));
            let flow = match (flow_id, o.get("actions")) {
                (Some(id), None) => Some(CallFlow::FlowId(id)),
                (Some(_), Some(_)) => {
                    o.error("actions", "give either flow_id or actions, not both");
                    None
                }
                (None, Some(actions)) => {
                    o.nested_actions("actions", actions).map(CallFlow::Actions)
                }
                (None, None) => {
                    o.error(
                        "flow_id",
                        "call needs a flow_id or inline actions for the new calls",
                    );
                    None
                }
            };
            let chained = o.boolean("chained").unwrap_or(false);
            let early_execution = o.boolean("early_execution").unwrap_or(false);
            Step::Call(CallStep {
                source: source?,
                destinations: destinations?,
                flow: flow?,
                chained,
                early_execution,
            })
        }
        T::Connect | T::AgentCall => {
            let source = o.address("source", false);
            // `agent_call {agent_id}` (VoIPBIN's retired form): the agent as the destination.
            let agent = match o.string("agent_id") {
                Some(id) if action_type == T::AgentCall && o.get("destinations").is_none() => {
                    Some(id).filter(|id| !is_unset_id(id))
                }
                _ => None,
            };
            let destinations = match agent {
                Some(target) => Some(vec![Address {
                    kind: "agent".into(),
                    target,
                    target_name: String::new(),
                }]),
                None => o.addresses("destinations"),
            };
            let early_media = o.boolean("early_media").unwrap_or(false);
            let relay_reason = o.boolean("relay_reason").unwrap_or(false);
            Step::Connect(Connect {
                source: source?,
                destinations: destinations?,
                early_media,
                relay_reason,
            })
        }
        T::Amd => {
            let hangup_on_machine = match o.string("machine_handle").as_deref() {
                None | Some("") | Some("continue") => false,
                Some("hangup") => true,
                Some(_) => {
                    o.error("machine_handle", r#"must be "hangup" or "continue""#);
                    false
                }
            };
            // The reference's example writes `sync`; its parameter list says `async`.
            let asynchronous = match (o.boolean("async"), o.boolean("sync")) {
                (Some(a), _) => a,
                (None, Some(sync)) => !sync,
                (None, None) => false,
            };
            Step::Amd {
                hangup_on_machine,
                asynchronous,
            }
        }
        T::ExternalMediaStart => {
            let host = o.required_string(
                "external_host",
                "external_media_start needs an external_host (host:port)",
            );
            if let Some(host) = host.as_deref().filter(|h| !h.contains("${"))
                && !looks_like_host_port(host)
            {
                o.error("external_host", "must be host:port, e.g. 127.0.0.1:40000");
            }
            let mut choice = |key: &str, allowed: &[&str], default: &str| -> Option<String> {
                let value = o.string(key).filter(|v| !v.is_empty());
                match value {
                    None => Some(default.to_owned()),
                    Some(v) if allowed.contains(&v.as_str()) => Some(v),
                    Some(_) => {
                        let names: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
                        o.error(key, format!("must be {}", names.join(" or ")));
                        None
                    }
                }
            };
            let encapsulation = choice("encapsulation", &["rtp"], "rtp");
            let transport = choice("transport", &["udp"], "udp");
            let connection_type = choice("connection_type", &["client"], "client");
            let format = choice("format", &["ulaw", "alaw"], "ulaw");
            let direction = choice("direction", &["both", "in", "out"], "both");
            Step::ExternalMediaStart(ExternalMedia {
                host: host?,
                encapsulation: encapsulation?,
                transport: transport?,
                connection_type: connection_type?,
                format: format?,
                direction: direction?,
            })
        }
        T::ExternalMediaStop => Step::ExternalMediaStop,
        // Recognised but not supported: refused before options are parsed.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors(actions: Value) -> Vec<(String, String)> {
        match compile(&actions) {
            Ok(p) => panic!("expected errors, compiled with warnings {:?}", p.warnings()),
            Err(diags) => diags
                .into_iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| (d.path, d.message))
                .collect(),
        }
    }

    fn one_error(actions: Value) -> (String, String) {
        let errs = errors(actions);
        assert_eq!(errs.len(), 1, "{errs:?}");
        errs.into_iter().next().unwrap()
    }

    fn warnings(actions: Value) -> Vec<(String, String)> {
        compile(&actions)
            .unwrap()
            .warnings()
            .iter()
            .map(|d| {
                assert_eq!(d.severity, Severity::Warning);
                (d.path.clone(), d.message.clone())
            })
            .collect()
    }

    fn p(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn actions_that_need_a_call_are_refused_without_one() {
        let actions = json!([
            {"type": "variable_set", "option": {"key": "k", "value": "v"}},
            {"type": "talk", "option": {"text": "hi"}},
            {"type": "webhook_send", "option": {"uri": "http://127.0.0.1:9/"}},
            {"type": "call", "option": {"destinations": [{"type": "tel", "target": "+1"}], "flow_id": "f"}},
            {"type": "hangup"},
        ]);
        assert!(compile(&actions).is_ok());
        let diags = compile_without_call(&actions).unwrap_err();
        let errors: Vec<(&str, &str)> = diags
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| (d.path.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(errors[0].0, "actions[1].type");
        assert!(errors[0].1.starts_with("'talk' needs a call"));
        assert_eq!(errors[1].0, "actions[4].type");
        assert!(
            compile_without_call(
                &json!([{"type": "webhook_send", "option": {"uri": "http://127.0.0.1:9/"}}])
            )
            .is_ok()
        );
    }

    #[test]
    fn not_an_array() {
        assert_eq!(
            one_error(json!({"actions": []})),
            (p("actions"), p("must be an array of actions"))
        );
    }

    #[test]
    fn element_not_an_object() {
        assert_eq!(
            one_error(json!([{"type": "answer"}, "hangup"])),
            (p("actions[1]"), p("must be an object"))
        );
    }

    #[test]
    fn unknown_unsupported_missing_and_mistyped_type() {
        assert_eq!(
            errors(json!([
                {"type": "answer"},
                {"type": "dance"},
                {"type": "queue_join", "option": {"queue_id": "x"}},
                {"option": {}},
                {"type": 7},
                {"type": "Talk"},
                {"type": "conference_join"},
            ])),
            vec![
                (p("actions[1].type"), p("unknown action type 'dance'")),
                (
                    p("actions[2].type"),
                    p("action type 'queue_join' is not supported yet")
                ),
                (p("actions[3].type"), p("missing action type")),
                (p("actions[4].type"), p("must be a string")),
                (p("actions[5].type"), p("unknown action type 'Talk'")),
                (
                    p("actions[6].type"),
                    p("action type 'conference_join' is not supported yet")
                ),
            ]
        );
    }

    #[test]
    fn every_unsupported_type_is_refused_by_name() {
        for t in ActionType::ALL.iter().filter(|t| !t.is_supported()) {
            let (path, message) = one_error(json!([{"type": t.as_str()}]));
            assert_eq!(path, "actions[0].type");
            assert_eq!(message, format!("action type '{t}' is not supported yet"));
        }
    }

    #[test]
    fn duplicate_and_mistyped_ids() {
        assert_eq!(
            errors(json!([
                {"id": "a", "type": "answer"},
                {"id": "b", "type": "answer"},
                {"id": "a", "type": "hangup"},
                {"id": 5, "type": "hangup"},
            ])),
            vec![
                (
                    p("actions[2].id"),
                    p("duplicate action id 'a' (already used by actions[0])")
                ),
                (p("actions[3].id"), p("must be a string")),
            ]
        );
    }

    #[test]
    fn empty_and_nil_ids_are_not_duplicates() {
        let program = compile(&json!([
            {"id": "", "type": "answer"},
            {"id": "", "type": "answer"},
            {"id": "00000000-0000-0000-0000-000000000000", "type": "hangup"},
        ]))
        .unwrap();
        assert_eq!(program.len(), 3);
        assert!(program.actions().iter().all(|a| a.id().is_none()));
    }

    #[test]
    fn dangling_next_id() {
        assert_eq!(
            one_error(json!([{"id": "a", "type": "answer", "next_id": "zz"}, {"type": "hangup"}])),
            (p("actions[0].next_id"), p("no action has the id 'zz'"))
        );
        assert_eq!(
            one_error(json!([{"type": "answer", "next_id": 3}])),
            (
                p("actions[0].next_id"),
                p("must be a string (an action id)")
            )
        );
    }

    #[test]
    fn unset_next_ids_mean_next_in_array() {
        let program = compile(&json!([
            {"type": "answer", "next_id": ""},
            {"type": "answer", "next_id": "00000000-0000-0000-0000-000000000000"},
            {"type": "answer", "next_id": null},
            {"type": "hangup"},
        ]))
        .unwrap();
        assert_eq!(
            (0..4).map(|i| program.next_index(i)).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3), None]
        );
    }

    #[test]
    fn dangling_goto_branch_and_condition_targets() {
        assert_eq!(
            errors(json!([
                {"id": "start", "type": "answer"},
                {"type": "goto", "option": {"target_id": "nowhere", "loop_count": 1}},
                {"type": "goto", "option": {"loop_count": 1}},
                {"type": "goto", "option": {"target_id": "", "loop_count": 1}},
                {"type": "branch", "option": {
                    "target_ids": {"1": "start", "2": "gone", "#": ""},
                    "default_target_id": "missing"
                }},
                {"type": "branch", "option": {"target_ids": ["start"]}},
                {"type": "condition_variable", "option": {
                    "condition": "==", "variable": "x", "value_type": "string",
                    "false_target_id": "nope"
                }},
                {"type": "hangup"},
            ])),
            vec![
                (
                    p("actions[1].option.target_id"),
                    p("no action has the id 'nowhere'")
                ),
                (
                    p("actions[2].option.target_id"),
                    p("goto needs a target_id")
                ),
                (
                    p("actions[3].option.target_id"),
                    p("goto needs a target_id")
                ),
                (
                    p(r##"actions[4].option.target_ids["#"]"##),
                    p("must be the id of an action, not empty")
                ),
                (
                    p(r#"actions[4].option.target_ids["2"]"#),
                    p("no action has the id 'gone'")
                ),
                (
                    p("actions[4].option.default_target_id"),
                    p("no action has the id 'missing'")
                ),
                (
                    p("actions[5].option.target_ids"),
                    p("must be an object mapping values to action ids")
                ),
                (
                    p("actions[6].option.false_target_id"),
                    p("no action has the id 'nope'")
                ),
            ]
        );
    }

    #[test]
    fn wrong_option_types_report_the_option_path() {
        assert_eq!(
            errors(json!([
                {"type": "answer", "option": []},
                {"type": "talk", "option": {"text": 5, "language": ["en"], "digits_handle": "skip"}},
                {"type": "play", "option": {"stream_urls": ["http://a", 3]}},
                {"type": "play", "option": {"stream_urls": "http://a"}},
                {"type": "sleep", "option": {"duration": "1000"}},
                {"type": "sleep", "option": {"duration": -5}},
                {"type": "digits_receive", "option": {"duration": 1.5, "length": "3", "key": 35}},
                {"id": "g", "type": "goto", "option": {"target_id": "g", "loop_count": "2"}},
                {"type": "variable_set", "option": {"key": "k", "value": 1}},
                {"type": "condition_variable", "option": {
                    "condition": "=~", "variable": "v", "value_type": "number", "value_number": "3"
                }},
                {"type": "hangup", "option": {"reason": false}},
            ])),
            vec![
                (p("actions[0].option"), p("must be an object")),
                (p("actions[1].option.text"), p("must be a string")),
                (p("actions[1].option.language"), p("must be a string")),
                (
                    p("actions[1].option.digits_handle"),
                    p(r#"must be "" or "next""#)
                ),
                (p("actions[2].option.stream_urls[1]"), p("must be a string")),
                (
                    p("actions[3].option.stream_urls"),
                    p("must be an array of strings")
                ),
                (
                    p("actions[4].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
                (
                    p("actions[5].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
                (
                    p("actions[6].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
                (
                    p("actions[6].option.length"),
                    p("must be a non-negative integer")
                ),
                (p("actions[6].option.key"), p("must be a string")),
                (p("actions[7].option.loop_count"), p("must be an integer")),
                (p("actions[8].option.value"), p("must be a string")),
                (
                    p("actions[9].option.condition"),
                    p(r#"must be one of "==", "!=", ">", ">=", "<" or "<=""#)
                ),
                (p("actions[9].option.value_number"), p("must be a number")),
                (p("actions[10].option.reason"), p("must be a string")),
            ]
        );
    }

    #[test]
    fn missing_required_options() {
        assert_eq!(
            errors(json!([
                {"type": "talk"},
                {"type": "talk", "option": {"text": ""}},
                {"type": "play", "option": {}},
                {"type": "play", "option": {"stream_urls": []}},
                {"type": "variable_set", "option": {"value": "x"}},
                {"type": "condition_variable", "option": {}},
                {"type": "condition_variable", "option": {
                    "condition": "==", "variable": "v", "value_type": "float"
                }},
            ])),
            vec![
                (
                    p("actions[0].option.text"),
                    p("talk needs a non-empty text")
                ),
                (
                    p("actions[1].option.text"),
                    p("talk needs a non-empty text")
                ),
                (
                    p("actions[2].option.stream_urls"),
                    p("play needs at least one URL in stream_urls")
                ),
                (
                    p("actions[3].option.stream_urls"),
                    p("play needs at least one URL in stream_urls")
                ),
                (p("actions[4].option.key"), p("variable_set needs a key")),
                (
                    p("actions[5].option.condition"),
                    p(
                        r#"condition_variable needs a condition: one of "==", "!=", ">", ">=", "<" or "<=""#
                    )
                ),
                (
                    p("actions[5].option.variable"),
                    p("condition_variable needs a variable to test")
                ),
                (
                    p("actions[5].option.value_type"),
                    p(
                        r#"condition_variable needs a value_type: one of "string", "number" or "length""#
                    )
                ),
                (
                    p("actions[6].option.value_type"),
                    p(r#"must be one of "string", "number" or "length""#)
                ),
            ]
        );
    }

    #[test]
    fn known_options_this_version_cannot_honour_are_refused() {
        assert_eq!(
            errors(json!([
                {"type": "talk", "option": {"text": "hi", "async": true}},
                {"type": "talk", "option": {"text": "hi", "async": "yes"}},
            ])),
            vec![
                (
                    p("actions[0].option.async"),
                    p("talk with async: true is not supported yet")
                ),
                (p("actions[1].option.async"), p("must be a boolean")),
            ]
        );
        compile(&json!([
            {"type": "talk", "option": {"text": "hi", "async": false}},
            {"type": "hangup", "option": {"reference_id": "00000000-0000-0000-0000-000000000000"}},
        ]))
        .unwrap();
    }

    #[test]
    fn unknown_options_and_fields_are_ignored_and_nulls_are_absent() {
        let program = compile(&json!([
            {"type": "answer", "tm_execute": "2024-01-01", "extra": {"x": 1}},
            {"type": "talk", "option": {"text": "hi", "provider": "gcp", "voice_id": 3,
                                        "language": null, "async": false}},
            {"type": "sleep", "option": {"duration": null}},
            {"type": "hangup", "option": null},
        ]))
        .unwrap();
        assert_eq!(program.len(), 4);
        assert!(program.warnings().is_empty(), "{:?}", program.warnings());
    }

    #[test]
    fn goto_without_positive_loop_count_warns() {
        assert_eq!(
            warnings(json!([
                {"id": "top", "type": "answer"},
                {"type": "goto", "option": {"target_id": "top"}},
                {"type": "goto", "option": {"target_id": "top", "loop_count": 0}},
                {"type": "goto", "option": {"target_id": "top", "loop_count": 3}},
                {"type": "hangup"},
            ])),
            vec![
                (
                    p("actions[1].option.loop_count"),
                    p(
                        "goto without a positive loop_count never jumps; it falls through to the next action"
                    )
                ),
                (
                    p("actions[2].option.loop_count"),
                    p(
                        "goto without a positive loop_count never jumps; it falls through to the next action"
                    )
                ),
            ]
        );
    }

    #[test]
    fn warnings_travel_with_errors() {
        let diags = compile(&json!([
            {"type": "goto", "option": {"target_id": "x"}},
        ]))
        .unwrap_err();
        assert_eq!(
            diags
                .iter()
                .map(|d| (d.severity, d.path.as_str()))
                .collect::<Vec<_>>(),
            [
                (Severity::Error, "actions[0].option.target_id"),
                (Severity::Warning, "actions[0].option.loop_count"),
            ]
        );
    }

    #[test]
    fn unreachable_actions_warn() {
        assert_eq!(
            warnings(json!([
                {"type": "answer"},
                {"type": "hangup"},
                {"id": "orphan", "type": "talk", "option": {"text": "never"}},
                {"type": "stop"},
            ])),
            vec![
                (
                    p("actions[2]"),
                    p("unreachable: no path from the first action leads here")
                ),
                (
                    p("actions[3]"),
                    p("unreachable: no path from the first action leads here")
                ),
            ]
        );
    }

    #[test]
    fn branch_targets_make_actions_reachable() {
        let w = warnings(json!([
            {"type": "digits_receive", "option": {"length": 1}},
            {"type": "branch", "option": {"target_ids": {"1": "one"}, "default_target_id": "other"}},
            {"id": "never", "type": "talk", "option": {"text": "skipped by the default"}},
            {"id": "one", "type": "hangup"},
            {"id": "other", "type": "stop"},
        ]));
        assert_eq!(
            w,
            vec![(
                p("actions[2]"),
                p("unreachable: no path from the first action leads here")
            )]
        );
    }

    #[test]
    fn endless_loops_warn_once() {
        let message = p(
            "enters a loop with no way out (no hangup, stop or end of the flow is reachable \
             from here); it repeats until the execution limit ends the flow",
        );
        assert_eq!(
            warnings(json!([
                {"id": "a", "type": "answer"},
                {"id": "b", "type": "talk", "option": {"text": "again"}, "next_id": "c"},
                {"id": "c", "type": "sleep", "option": {"duration": 10}, "next_id": "b"},
            ])),
            vec![(p("actions[0]"), message.clone())]
        );
        // A goto with a loop_count falls through eventually: no warning.
        assert!(
            warnings(json!([
                {"id": "a", "type": "talk", "option": {"text": "again"}},
                {"type": "goto", "option": {"target_id": "a", "loop_count": 5}},
            ]))
            .is_empty()
        );
        // A menu whose every branch returns to the menu.
        assert_eq!(
            warnings(json!([
                {"id": "menu", "type": "digits_receive", "option": {"length": 1}},
                {"type": "branch", "option": {"target_ids": {"1": "menu"}, "default_target_id": "menu"}},
            ])),
            vec![(p("actions[0]"), message)]
        );
    }

    #[test]
    fn condition_false_target_counts_as_edge() {
        assert!(
            warnings(json!([
                {"type": "condition_variable", "option": {
                    "condition": ">=", "variable": "n", "value_type": "number",
                    "value_number": 3, "false_target_id": "low"}},
                {"type": "hangup"},
                {"id": "low", "type": "stop"},
            ]))
            .is_empty()
        );
    }

    #[test]
    fn empty_flow_compiles_with_a_warning() {
        assert_eq!(
            warnings(json!([])),
            vec![(p("actions"), p("the flow has no actions"))]
        );
    }

    #[test]
    fn lookup_by_id_and_raw_option() {
        let program = compile(&json!([
            {"id": "x", "type": "talk", "option": {"text": "hi ${n}"}},
            {"type": "hangup"},
        ]))
        .unwrap();
        let action = program.action("x").unwrap();
        assert_eq!(action.action_type(), ActionType::Talk);
        assert_eq!(action.option(), &json!({"text": "hi ${n}"}));
        assert_eq!(program.index_of("x"), Some(0));
        assert!(program.action("y").is_none());
        assert_eq!(program.actions()[1].option(), &json!({}));
    }

    #[test]
    fn options_parse_into_steps() {
        let program = compile(&json!([
            {"type": "digits_receive"},
            {"type": "digits_receive", "option": {"duration": 0, "length": 4, "key": "#*"}},
            {"type": "branch", "option": {"variable": "${menu.choice}"}},
            {"type": "branch", "option": {"variable": ""}},
            {"type": "condition_variable", "option": {
                "condition": "!=", "variable": "${a}-${b}", "value_type": "length", "value_length": 2}},
            {"type": "condition_variable", "option": {
                "condition": "<", "variable": "${a}", "value_type": "string"}},
        ]))
        .unwrap();
        let steps: Vec<&Step> = program.actions().iter().map(|a| &a.step).collect();
        assert_eq!(
            steps[0],
            &Step::DigitsReceive(DigitsReceive {
                duration: Duration::from_millis(5000),
                length: 0,
                keys: String::new()
            })
        );
        assert_eq!(
            steps[1],
            &Step::DigitsReceive(DigitsReceive {
                duration: Duration::from_millis(5000),
                length: 4,
                keys: "#*".into()
            })
        );
        let Step::Branch(b) = steps[2] else { panic!() };
        assert_eq!(b.variable, "menu.choice");
        let Step::Branch(b) = steps[3] else { panic!() };
        assert_eq!(b.variable, "voipbin.call.digits");
        let Step::ConditionVariable(c) = steps[4] else {
            panic!()
        };
        assert_eq!(c.subject, Subject::Template("${a}-${b}".into()));
        assert_eq!(c.operand, Operand::Length(2));
        let Step::ConditionVariable(c) = steps[5] else {
            panic!()
        };
        assert_eq!(c.subject, Subject::Variable("a".into()));
        assert_eq!(c.operand, Operand::String(String::new()));
    }

    #[test]
    fn digits_send_option_errors() {
        let range = "must be between 100 and 1000 milliseconds (or 0 for the default 250)";
        assert_eq!(
            errors(json!([
                {"type": "digits_send"},
                {"type": "digits_send", "option": {"digits": ""}},
                {"type": "digits_send", "option": {"digits": 123}},
                {"type": "digits_send", "option": {"digits": "12x4"}},
                {"type": "digits_send", "option": {"digits": "1".repeat(101)}},
                {"type": "digits_send", "option": {"digits": "1", "duration": 99}},
                {"type": "digits_send", "option": {"digits": "1", "duration": 1001}},
                {"type": "digits_send", "option": {"digits": "1", "duration": u64::MAX}},
                {"type": "digits_send", "option": {"digits": "1", "duration": "250"}},
                {"type": "digits_send", "option": {"digits": "1", "interval": 5001}},
                {"type": "digits_send", "option": {"digits": "1", "interval": -1}},
            ])),
            vec![
                (
                    p("actions[0].option.digits"),
                    p("digits_send needs digits to send")
                ),
                (
                    p("actions[1].option.digits"),
                    p("digits_send needs digits to send")
                ),
                (p("actions[2].option.digits"), p("must be a string")),
                (
                    p("actions[3].option.digits"),
                    p("invalid DTMF key 'x' at position 3; allowed: 0-9, A-D, # and *")
                ),
                (
                    p("actions[4].option.digits"),
                    p("101 keys; at most 100 can be sent")
                ),
                (p("actions[5].option.duration"), p(range)),
                (p("actions[6].option.duration"), p(range)),
                (p("actions[7].option.duration"), p(range)),
                (
                    p("actions[8].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
                (
                    p("actions[9].option.interval"),
                    p("must be between 0 and 5000 milliseconds")
                ),
                (
                    p("actions[10].option.interval"),
                    p("must be a non-negative integer (milliseconds)")
                ),
            ]
        );
    }

    #[test]
    fn digits_send_defaults_bounds_and_templates() {
        let program = compile(&json!([
            {"type": "digits_send", "option": {"digits": "0123456789ABCD#*"}},
            {"type": "digits_send", "option": {"digits": "1", "duration": 0, "interval": 0}},
            {"type": "digits_send", "option": {"digits": "1", "duration": 100, "interval": 5000}},
            {"type": "digits_send", "option": {"digits": "1", "duration": 1000, "interval": null}},
            // Templated digits are checked when the action runs, not here.
            {"type": "digits_send", "option": {"digits": "${pin}x"}},
        ]))
        .unwrap();
        let sends: Vec<(&str, u32, u32)> = program
            .actions()
            .iter()
            .map(|a| match &a.step {
                Step::DigitsSend(d) => (d.digits.as_str(), d.duration_ms, d.interval_ms),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            sends,
            [
                ("0123456789ABCD#*", 250, 100),
                ("1", 250, 0),
                ("1", 100, 5000),
                ("1", 1000, 100),
                ("${pin}x", 250, 100),
            ]
        );
    }

    #[test]
    fn echo_and_stream_echo_options() {
        let program = compile(&json!([
            {"type": "echo"},
            {"type": "echo", "option": {"duration": 0}},
            {"type": "echo", "option": {"duration": 30000}},
            {"type": "stream_echo", "option": {"duration": 10000}},
            {"type": "stream_echo"},
        ]))
        .unwrap();
        let steps: Vec<&Step> = program.actions().iter().map(|a| &a.step).collect();
        let echo = |ms, dtmf| Step::Echo {
            duration: Duration::from_millis(ms),
            dtmf,
        };
        assert_eq!(
            steps,
            [
                &echo(180_000, false),
                &echo(180_000, false),
                &echo(30_000, false),
                &echo(10_000, true),
                &echo(180_000, true),
            ]
        );
        assert_eq!(
            errors(json!([
                {"type": "echo", "option": {"duration": "30s"}},
                {"type": "stream_echo", "option": {"duration": -1}},
            ])),
            vec![
                (
                    p("actions[0].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
                (
                    p("actions[1].option.duration"),
                    p("must be a non-negative integer (milliseconds)")
                ),
            ]
        );
    }

    #[test]
    fn recording_start_option_errors() {
        assert_eq!(
            errors(json!([
                {"type": "recording_start", "option": {"format": "flac"}},
                {"type": "recording_start", "option": {"format": "WAV"}},
                {"type": "recording_start", "option": {"format": 1}},
                {"type": "recording_start", "option": {"end_of_key": "1"}},
                {"type": "recording_start", "option": {"end_of_key": "#*"}},
                {"type": "recording_start", "option": {"end_of_key": true}},
                {"type": "recording_start", "option": {"end_of_silence": -3, "duration": 1.5}},
                {"type": "recording_start", "option": {"beep_start": "yes"}},
                {"type": "recording_start", "option": {"on_end_flow_id": 7}},
                {"type": "recording_start", "option": {"channels": 3}},
                {"type": "recording_stop", "option": []},
            ])),
            vec![
                (
                    p("actions[0].option.format"),
                    p(r#"must be one of "wav", "mp3" or "ogg""#)
                ),
                (
                    p("actions[1].option.format"),
                    p(r#"must be one of "wav", "mp3" or "ogg""#)
                ),
                (p("actions[2].option.format"), p("must be a string")),
                (
                    p("actions[3].option.end_of_key"),
                    p(r##"must be one of "none", "any", "*" or "#""##)
                ),
                (
                    p("actions[4].option.end_of_key"),
                    p(r##"must be one of "none", "any", "*" or "#""##)
                ),
                (p("actions[5].option.end_of_key"), p("must be a string")),
                (
                    p("actions[6].option.end_of_silence"),
                    p("must be a non-negative integer (seconds)")
                ),
                (
                    p("actions[6].option.duration"),
                    p("must be a non-negative integer (seconds)")
                ),
                (p("actions[7].option.beep_start"), p("must be a boolean")),
                (p("actions[8].option.on_end_flow_id"), p("must be a string")),
                (
                    p("actions[9].option.channels"),
                    p("must be 1 (mixed) or 2 (caller left, callee right)")
                ),
                (p("actions[10].option"), p("must be an object")),
            ]
        );
    }

    #[test]
    fn recording_start_defaults_and_values() {
        let program = compile(&json!([
            {"type": "recording_start"},
            {"type": "recording_start", "option": {
                "format": "mp3", "end_of_silence": 5, "end_of_key": "#", "duration": 120,
                "beep_start": true, "channels": 1, "on_end_flow_id": "${flow}"}},
            {"type": "recording_start", "option": {
                "format": "", "end_of_silence": 0, "end_of_key": "none", "duration": 0}},
            {"type": "recording_start", "option": {"format": "ogg", "end_of_key": "any"}},
            {"type": "recording_start", "option": {"end_of_key": "*"}},
            {"type": "recording_stop", "option": {"ignored": 1}},
        ]))
        .unwrap();
        let steps: Vec<&Step> = program.actions().iter().map(|a| &a.step).collect();
        let plain = RecordingStart {
            format: RecordingFormat::Wav,
            end_of_silence: None,
            end_of_key: None,
            max_duration: None,
            beep_start: false,
            channels: 2,
            on_end_flow_id: String::new(),
        };
        assert_eq!(steps[0], &Step::RecordingStart(plain.clone()));
        assert_eq!(
            steps[1],
            &Step::RecordingStart(RecordingStart {
                format: RecordingFormat::Mp3,
                end_of_silence: Some(Duration::from_secs(5)),
                end_of_key: Some(RecordingEndKey::Hash),
                max_duration: Some(Duration::from_secs(120)),
                beep_start: true,
                channels: 1,
                on_end_flow_id: "${flow}".into(),
            })
        );
        assert_eq!(steps[2], &Step::RecordingStart(plain.clone()));
        assert_eq!(
            steps[3],
            &Step::RecordingStart(RecordingStart {
                format: RecordingFormat::Ogg,
                end_of_key: Some(RecordingEndKey::Any),
                ..plain.clone()
            })
        );
        assert_eq!(
            steps[4],
            &Step::RecordingStart(RecordingStart {
                end_of_key: Some(RecordingEndKey::Star),
                ..plain
            })
        );
        assert_eq!(steps[5], &Step::RecordingStop);
    }

    #[test]
    fn new_media_actions_are_linear_in_the_graph() {
        // Each simply moves on: none of them is an exit, none jumps.
        let message = p(
            "enters a loop with no way out (no hangup, stop or end of the flow is reachable \
             from here); it repeats until the execution limit ends the flow",
        );
        assert_eq!(
            warnings(json!([
                {"id": "a", "type": "recording_start"},
                {"type": "echo"},
                {"type": "stream_echo"},
                {"type": "digits_send", "option": {"digits": "1"}},
                {"type": "recording_stop", "next_id": "a"},
                {"type": "hangup"},
            ])),
            vec![
                (p("actions[0]"), message),
                (
                    p("actions[5]"),
                    p("unreachable: no path from the first action leads here")
                ),
            ]
        );
        assert!(
            warnings(json!([
                {"type": "recording_start", "option": {"beep_start": true}},
                {"type": "echo", "option": {"duration": 1000}},
                {"type": "stream_echo", "option": {"duration": 1000}},
                {"type": "digits_send", "option": {"digits": "#"}},
                {"type": "recording_stop"},
            ]))
            .is_empty()
        );
    }

    #[test]
    fn assign_ids_fills_missing_empty_and_nil_ids() {
        let mut actions = json!([
            {"type": "answer"},
            {"id": "keep", "type": "answer"},
            {"id": "", "type": "answer"},
            {"id": null, "type": "answer"},
            {"id": "00000000-0000-0000-0000-000000000000", "type": "answer"},
            {"id": 5, "type": "answer"},
            "not an object",
        ]);
        let mut n = 0;
        assign_ids(&mut actions, || {
            n += 1;
            format!("id-{n}")
        });
        let ids: Vec<Value> = actions
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.get("id").cloned().unwrap_or(Value::Null))
            .collect();
        assert_eq!(
            ids,
            [
                json!("id-1"),
                json!("keep"),
                json!("id-2"),
                json!("id-3"),
                json!("id-4"),
                json!(5),
                Value::Null
            ]
        );
        let mut not_array = json!({"type": "answer"});
        assign_ids(&mut not_array, || unreachable!());
        assert_eq!(not_array, json!({"type": "answer"}));
    }

    #[test]
    fn diagnostic_display_and_json() {
        let d = Diagnostic::error("actions[1].type".into(), "unknown action type 'x'".into());
        assert_eq!(
            d.to_string(),
            "error at actions[1].type: unknown action type 'x'"
        );
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            json!({"severity": "error", "path": "actions[1].type", "message": "unknown action type 'x'"})
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        for v in [
            json!(null),
            json!(1),
            json!([null, 1, [], {}]),
            json!([{"type": "branch", "option": {"target_ids": {"": 1, "\"": null}}}]),
            json!([{"type": "digits_receive", "option": {"length": u64::MAX, "duration": u64::MAX}}]),
            json!([{"type": "goto", "option": {"target_id": "x", "loop_count": i64::MIN}, "id": "x"}]),
            json!([{"type": "digits_send", "option": {"digits": "${", "duration": -1, "interval": 1e300}}]),
            json!([{"type": "digits_send", "option": {"digits": "\u{0}\u{10FFFF}"}}]),
            json!([{"type": "recording_start", "option": {"duration": u64::MAX, "end_of_silence": u64::MAX,
                                                           "end_of_key": "", "format": null}}]),
            json!([{"type": "echo", "option": {"duration": u64::MAX}}]),
            json!([{"type": "condition_variable", "option": {"condition": "==", "variable": "${",
                                                              "value_type": "number", "value_number": 1e308}}]),
        ] {
            let _ = compile(&v);
        }
    }
}
