//! Flow variables and `${name}` templating.

use std::collections::BTreeMap;

use serde_json::Value;

/// The variables of one flow run, by name. Values are plain strings.
pub type Variables = BTreeMap<String, String>;

/// The reserved variable namespace: the platform sets these (`voipbin.call.digits`,
/// `voipbin.call.source.target`, …); keys with this prefix supplied from outside are dropped.
pub const RESERVED_PREFIX: &str = "voipbin.";

/// The variable that collects DTMF digits, and the default variable of `branch`.
pub const VARIABLE_CALL_DIGITS: &str = "voipbin.call.digits";

/// The id of the recording the last `recording_start` began (set on
/// [`Input::RecordingStarted`](crate::Input::RecordingStarted); kept after `recording_stop`).
pub const VARIABLE_RECORDING_ID: &str = "voipbin.recording.id";

/// The result of the last `amd`: `HUMAN`, `MACHINE` or `NOTSURE`.
pub const VARIABLE_AMD_RESULT: &str = "voipbin.amd.result";

/// Why the last `amd` decided as it did (e.g. `long_greeting`, `silence_after_greeting`).
pub const VARIABLE_AMD_CAUSE: &str = "voipbin.amd.cause";

/// How the last `connect` ended: `answered` (a destination answered and the bridge is over) or
/// `unanswered`.
pub const VARIABLE_CONNECT_RESULT: &str = "voipbin.connect.result";

/// The other side's hangup reason in the last `connect` (`normal`, `busy`, `noanswer`, …).
pub const VARIABLE_CONNECT_REASON: &str = "voipbin.connect.reason";

/// Whether `name` is in the reserved `voipbin.*` namespace (the API drops such keys when a client
/// supplies them).
pub fn is_reserved_variable(name: &str) -> bool {
    name.starts_with(RESERVED_PREFIX)
}

/// Replace every `${name}` in `template` with the value of variable `name`; unknown names become
/// `""`.
///
/// This follows VoIPBIN's `\$\{(.*?)\}`: the name is the shortest text up to the next `}` and may
/// not span a line break; an unterminated `${` is left as it is. Substitution is a single pass:
/// a value that itself contains `${…}` is not expanded again.
///
/// ```
/// # use voxflow_flow as flow;
/// let mut vars = flow::Variables::new();
/// vars.insert("voipbin.call.digits".into(), "42".into());
/// assert_eq!(flow::substitute("you typed ${voipbin.call.digits}${nope}!", &vars), "you typed 42!");
/// ```
pub fn substitute(template: &str, vars: &Variables) -> String {
    substitute_bounded(template, vars, usize::MAX)
}

/// Apply [`substitute`] to every string in a JSON tree: object values and array elements at any
/// depth (object keys are left unchanged). Numbers, booleans and nulls are copied.
///
/// ```
/// # use voxflow_flow as flow;
/// let mut vars = flow::Variables::new();
/// vars.insert("n".into(), "7".into());
/// let option = serde_json::json!({"data": {"list": ["${n}", 1]}, "${n}": "k"});
/// assert_eq!(
///     flow::substitute_value(&option, &vars),
///     serde_json::json!({"data": {"list": ["7", 1]}, "${n}": "k"})
/// );
/// ```
pub fn substitute_value(value: &Value, vars: &Variables) -> Value {
    match value {
        Value::String(s) => Value::String(substitute(s, vars)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| substitute_value(v, vars)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute_value(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// [`substitute`], but the result is cut (at a character boundary) to at most `max_len` bytes, so
/// that a hostile template cannot multiply a large value into an unbounded string.
pub(crate) fn substitute_bounded(template: &str, vars: &Variables, max_len: usize) -> String {
    let mut out = String::with_capacity(template.len().min(max_len));
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        push_bounded(&mut out, rest.get(..start).unwrap_or_default(), max_len);
        let after = rest.get(start + 2..).unwrap_or_default();
        match after.find('}') {
            Some(end) => {
                let name = after.get(..end).unwrap_or_default();
                if name.contains('\n') {
                    // Not a reference: keep the `$` and look for the next `${` after it.
                    push_bounded(&mut out, "$", max_len);
                    rest = rest.get(start + 1..).unwrap_or_default();
                } else {
                    let value = vars.get(name).map(String::as_str).unwrap_or_default();
                    push_bounded(&mut out, value, max_len);
                    rest = after.get(end + 1..).unwrap_or_default();
                }
            }
            None => {
                push_bounded(&mut out, rest.get(start..).unwrap_or_default(), max_len);
                rest = "";
            }
        }
        if out.len() >= max_len {
            return out;
        }
    }
    push_bounded(&mut out, rest, max_len);
    out
}

/// If `template` is exactly one reference `${name}`, the name.
pub(crate) fn sole_reference(template: &str) -> Option<&str> {
    let name = template.strip_prefix("${")?.strip_suffix('}')?;
    (!name.contains('}') && !name.contains('\n')).then_some(name)
}

fn push_bounded(out: &mut String, s: &str, max_len: usize) {
    let room = max_len.saturating_sub(out.len());
    if s.len() <= room {
        out.push_str(s);
    } else {
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(s.get(..cut).unwrap_or_default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Variables {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitute_known_unknown_and_adjacent() {
        let v = vars(&[("a", "1"), ("b.c", "two")]);
        assert_eq!(substitute("${a}${b.c}-${zz}.", &v), "1two-.");
        assert_eq!(substitute("no refs", &v), "no refs");
        assert_eq!(substitute("", &v), "");
        assert_eq!(substitute("${}", &v), "");
    }

    #[test]
    fn substitute_is_non_greedy_and_single_pass() {
        let v = vars(&[("a", "${b}"), ("b", "B")]);
        assert_eq!(substitute("${a}}", &v), "${b}}");
        assert_eq!(substitute("${a} and ${b}", &v), "${b} and B");
    }

    #[test]
    fn substitute_leaves_unterminated_and_multiline_refs() {
        let v = vars(&[("a", "1"), ("b", "2")]);
        assert_eq!(substitute("x ${a", &v), "x ${a");
        assert_eq!(substitute("$a {a} $", &v), "$a {a} $");
        assert_eq!(substitute("${a\n${b}", &v), "${a\n2");
        assert_eq!(substitute("$${a}", &v), "$1");
    }

    #[test]
    fn substitute_handles_multibyte_text() {
        let v = vars(&[("name", "Zoë")]);
        assert_eq!(substitute("héllo ${name} ✓", &v), "héllo Zoë ✓");
    }

    #[test]
    fn substitute_bounded_cuts_at_char_boundary() {
        let v = vars(&[("x", "ééééé")]);
        // Each é is two bytes; 5 bytes leaves room for two of them.
        assert_eq!(substitute_bounded("${x}${x}", &v, 5), "éé");
        assert_eq!(substitute_bounded("abcdef", &v, 3), "abc");
        let big = "${x}".repeat(10_000);
        assert_eq!(substitute_bounded(&big, &v, 100).len(), 100);
    }

    #[test]
    fn substitute_value_walks_nested_maps_and_arrays() {
        let v = vars(&[("id", "42"), ("who", "Ann")]);
        let option = serde_json::json!({
            "text": "Hi ${who}",
            "n": 5,
            "flag": true,
            "none": null,
            "nested": {"deep": [{"x": "${id}"}, "lit", ["${who}${id}"]]},
        });
        assert_eq!(
            substitute_value(&option, &v),
            serde_json::json!({
                "text": "Hi Ann",
                "n": 5,
                "flag": true,
                "none": null,
                "nested": {"deep": [{"x": "42"}, "lit", ["Ann42"]]},
            })
        );
    }

    #[test]
    fn sole_reference_recognises_only_one_whole_reference() {
        assert_eq!(
            sole_reference("${voipbin.call.digits}"),
            Some("voipbin.call.digits")
        );
        assert_eq!(sole_reference("${a}${b}"), None);
        assert_eq!(sole_reference("x${a}"), None);
        assert_eq!(sole_reference("plain"), None);
    }

    #[test]
    fn reserved_prefix() {
        assert!(is_reserved_variable("voipbin.call.digits"));
        assert!(!is_reserved_variable("voipbinx"));
        assert!(!is_reserved_variable("customer.name"));
    }
}
