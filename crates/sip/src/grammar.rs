//! The basic rules of RFC 3261 §25.1 shared by the header parsers: tokens, linear white space,
//! quoted strings and comma-separated header value lists.

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '-' | '.' | '!' | '%' | '*' | '_' | '+' | '`' | '\'' | '~'
        )
}

/// A non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.chars().all(is_token_char)
}

/// Linear white space inside an (already unfolded) header value.
pub(crate) fn is_lws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Trims linear white space on both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    s.trim_matches(is_lws)
}

/// Byte length of the quoted string at the start of `s` (which must start with `"`), including
/// both quotes; `None` if it is not terminated.
pub(crate) fn quoted_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices();
    if chars.next()?.1 != '"' {
        return None;
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some(i + 1),
            '\\' => {
                // quoted-pair: any character but CR and LF may follow
                let (_, escaped) = chars.next()?;
                if escaped == '\r' || escaped == '\n' {
                    return None;
                }
            }
            '\r' | '\n' => return None,
            _ => {}
        }
    }
    None
}

/// Unescapes the quoted string at the start of `s`; returns its content and the rest of `s`.
pub(crate) fn unquote(s: &str) -> Option<(String, &str)> {
    let len = quoted_len(s)?;
    let raw = s.get(1..len - 1)?;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some((out, s.get(len..)?))
}

/// Writes `s` as a quoted string, escaping `"` and `\`.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a header value at the commas that separate list elements: commas inside quoted
/// strings and inside `<...>` do not count. Elements are trimmed of LWS. Returns `None` if a
/// quoted string is unterminated.
pub(crate) fn split_list(value: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let mut rest = value;
    loop {
        match list_separator(rest)? {
            Some(i) => {
                parts.push(trim_lws(rest.get(..i)?));
                rest = rest.get(i + 1..)?;
            }
            None => {
                parts.push(trim_lws(rest));
                return Some(parts);
            }
        }
    }
}

/// Byte index of the first list-separating comma in `value` (see [`split_list`]); `Ok(None)` when
/// there is none, `None` when a quoted string is unterminated.
pub(crate) fn list_separator(value: &str) -> Option<Option<usize>> {
    let mut in_angle = false;
    let mut i = 0;
    while let Some(c) = value.get(i..).and_then(|r| r.chars().next()) {
        match c {
            '"' => {
                i += quoted_len(value.get(i..)?)?;
                continue;
            }
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => return Some(Some(i)),
            _ => {}
        }
        i += c.len_utf8();
    }
    Some(None)
}

/// Replaces control characters (CR, LF, NUL, ...) but HTAB by a space, so that a value set by
/// the application can never break the framing of a printed message.
pub(crate) fn sanitize(s: &str) -> std::borrow::Cow<'_, str> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        s.chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect::<String>()
            .into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_strings_unescape_and_requote() {
        let (s, rest) = unquote(r#""J Rosenberg \\\"" <sip:x>"#).unwrap();
        assert_eq!(s, r#"J Rosenberg \""#);
        assert_eq!(rest, " <sip:x>");
        assert_eq!(quote(&s), r#""J Rosenberg \\\"""#);
        assert_eq!(quoted_len(r#""unterminated"#), None);
        assert_eq!(quoted_len(r#""ends in backslash\"#), None);
    }

    #[test]
    fn lists_split_outside_quotes_and_angles() {
        let v = r#""A, B" <sip:a@b;x=1,2>;q=1 , <sip:c@d>,sip:e@f"#;
        assert_eq!(
            split_list(v).unwrap(),
            [r#""A, B" <sip:a@b;x=1,2>;q=1"#, "<sip:c@d>", "sip:e@f"]
        );
        assert_eq!(split_list(r#""open, "#), None);
        assert_eq!(list_separator("a, b"), Some(Some(1)));
    }

    #[test]
    fn sanitize_removes_line_breaks() {
        assert_eq!(sanitize("a\r\nb\tc"), "a  b\tc");
        assert!(matches!(sanitize("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
