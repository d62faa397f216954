//! `;name=value` parameter lists: URI parameters (RFC 3261 §19.1.1) and header parameters
//! (`generic-param`, §25.1), as in `;tag=abc`, `;branch=z9hG4bK..`, `;lr`.

use std::fmt;

use crate::grammar::{is_lws, is_token_char, quoted_len};

/// An ordered list of parameters. Names compare case-insensitively; values are kept as written
/// (a quoted value keeps its quotes), so printing reproduces the input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    list: Vec<(String, Option<String>)>,
}

impl Params {
    /// An empty list.
    pub fn new() -> Params {
        Params::default()
    }

    /// The value of `name`: `Some("")` for a parameter without value (`;lr`), `None` if absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// Whether `name` is present (with or without a value).
    pub fn contains(&self, name: &str) -> bool {
        self.list.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Sets `name` (replacing its first occurrence, else appending). `None` = no value.
    pub fn set(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_owned);
        match self
            .list
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(entry) => entry.1 = value,
            None => self.list.push((name.to_owned(), value)),
        }
    }

    /// Removes every occurrence of `name`.
    pub fn remove(&mut self, name: &str) {
        self.list.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The parameters in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.list.iter().map(|(n, v)| (n.as_str(), v.as_deref()))
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Parses URI parameters: `s` is empty or starts with `;`; no white space allowed.
    pub(crate) fn parse_uri(s: &str) -> Option<Params> {
        let mut params = Params::new();
        if s.is_empty() {
            return Some(params);
        }
        for item in s.strip_prefix(';')?.split(';') {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item, None),
            };
            if name.is_empty() || !name.chars().all(is_uri_param_char) {
                return None;
            }
            if let Some(v) = value
                && (v.is_empty() || !v.chars().all(is_uri_param_char))
            {
                return None;
            }
            params
                .list
                .push((name.to_owned(), value.map(str::to_owned)));
        }
        Some(params)
    }

    /// Parses header parameters: `s` is empty, white space, or `;param` repeated, with LWS allowed
    /// around `;` and `=`. Values are tokens, hosts (incl. `[v6]`) or quoted strings.
    pub(crate) fn parse_header(s: &str) -> Option<Params> {
        let mut params = Params::new();
        let mut rest = s.trim_start_matches(is_lws);
        while !rest.is_empty() {
            rest = rest.strip_prefix(';')?.trim_start_matches(is_lws);
            let name_len = rest.find(|c| !is_token_char(c)).unwrap_or(rest.len());
            if name_len == 0 {
                return None;
            }
            let (name, after) = rest.split_at(name_len);
            rest = after.trim_start_matches(is_lws);
            let mut value = None;
            if let Some(after_eq) = rest.strip_prefix('=') {
                let v = after_eq.trim_start_matches(is_lws);
                let len = if v.starts_with('"') {
                    quoted_len(v)?
                } else {
                    v.find(|c| !is_header_param_value_char(c))
                        .unwrap_or(v.len())
                };
                if len == 0 {
                    return None;
                }
                let (val, after) = v.split_at(len);
                value = Some(val.to_owned());
                rest = after.trim_start_matches(is_lws);
            }
            params.list.push((name.to_owned(), value));
        }
        Some(params)
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in &self.list {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        Ok(())
    }
}

/// `paramchar` of RFC 3261 §25.1 (unreserved, escaped, param-unreserved).
fn is_uri_param_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '_'
                | '.'
                | '!'
                | '~'
                | '*'
                | '\''
                | '('
                | ')'
                | '%'
                | '['
                | ']'
                | '/'
                | ':'
                | '&'
                | '+'
                | '$'
        )
}

/// `gen-value` characters when not quoted: token or host (IPv6 references included).
fn is_header_param_value_char(c: char) -> bool {
    is_token_char(c) || matches!(c, ':' | '[' | ']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params_tolerate_lws() {
        let p = Params::parse_header(" ;   tag    = 1918181833n ; lr ;q=\"a;b\"").unwrap();
        assert_eq!(p.get("TAG"), Some("1918181833n"));
        assert_eq!(p.get("lr"), Some(""));
        assert_eq!(p.get("q"), Some("\"a;b\""));
        assert_eq!(p.get("x"), None);
        assert_eq!(p.to_string(), ";tag=1918181833n;lr;q=\"a;b\"");
        assert_eq!(Params::parse_header(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn header_params_reject_empty_entries() {
        for bad in [";;", ";", ";tag=", "tag=1", ";a=\"open", ";=x", ";a b"] {
            assert_eq!(Params::parse_header(bad), None, "{bad}");
        }
        assert!(Params::parse_header("").unwrap().is_empty());
    }

    #[test]
    fn uri_params_round_trip() {
        let p = Params::parse_uri(";transport=tcp;lr;maddr=[::1]").unwrap();
        assert_eq!(p.get("Transport"), Some("tcp"));
        assert!(p.contains("LR"));
        assert_eq!(p.to_string(), ";transport=tcp;lr;maddr=[::1]");
        assert_eq!(Params::parse_uri(";a;;b"), None);
        assert_eq!(Params::parse_uri(";a=1 2"), None);
        assert_eq!(Params::parse_uri("a"), None);
    }

    #[test]
    fn set_and_remove() {
        let mut p = Params::new();
        p.set("rport", None);
        p.set("received", Some("192.0.2.1"));
        p.set("RPORT", Some("5060"));
        assert_eq!(p.to_string(), ";rport=5060;received=192.0.2.1");
        p.remove("Received");
        assert_eq!(p.iter().collect::<Vec<_>>(), [("rport", Some("5060"))]);
    }
}
