//! Redaction of personal data in log lines: phone numbers and the user part of SIP URIs.
//!
//! [`RedactingMakeWriter`] wraps the writer of the `tracing_subscriber::fmt` subscriber, so every
//! formatted line passes through [`scrub`] before it reaches standard error:
//!
//! - `sip:` and `sips:` URIs keep their host, port and parameters but not their user part:
//!   `sip:alice@pbx.example:5060;transport=udp` becomes `sip:***@pbx.example:5060;transport=udp`;
//!   a quoted display name before `<sip:…>` becomes `"***"`;
//! - `tel:` URIs and bare phone numbers (an optional `+`, then 7 to 15 digits, maybe grouped with
//!   `-`, `.`, spaces or parentheses) become `+***` and their last two digits: `+***67`;
//! - the values of fields named like an address or a number (`from`, `to`, `caller`, `callee`,
//!   `source`, `destination`, `number`, `contact`, `uri`, `target`, `request_uri`, …, as
//!   `key=value` or JSON `"key": value`) are hidden whole except a host: a user before `@`
//!   becomes `***`, IP addresses and host names stay, a number of any length is masked, an
//!   `http(s)` URL keeps only its scheme and host, anything else becomes `***`.
//!
//! What only looks like a number stays: UUIDs and hex ids (digits next to letters), IP addresses
//! and ports, dates and times, decimal numbers, ranges (`20000-29999`), Call-IDs and other
//! `*id` fields, and plain numbers in fields of other names (`bytes=1234567`, `seq=…`).
//!
//! The scan is one pass over the bytes with bounded look-around (no regular expressions, no
//! backtracking); a line with nothing to hide is written as it is, without a copy. Bytes that
//! are not UTF-8 pass through untouched, and ANSI colour codes are seen through.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// The mask for a user part or a value with nothing worth keeping.
const MASK: &[u8] = b"***";
/// Longest field name looked at.
const MAX_KEY: usize = 64;
/// Longest SIP user part searched for its `@`.
const MAX_USER: usize = 256;
/// Longest phone number, separators included.
const MAX_PHONE: usize = 40;
/// Most digit groups in a phone number.
const MAX_GROUPS: usize = 8;
/// Fewest digits of a bare phone number.
const MIN_DIGITS: usize = 7;
/// Most digits of a phone number (E.164).
const MAX_DIGITS: usize = 15;
/// Bytes kept from writes without a line end before they are scrubbed anyway.
const MAX_PENDING: usize = 64 * 1024;

/// Field names whose values are hidden whole, except a host (compared without ASCII case, on
/// the part after the last `.`).
const PII_KEYS: &[&str] = &[
    "from",
    "to",
    "caller",
    "callee",
    "source",
    "destination",
    "number",
    "contact",
    "uri",
    "target",
    "source_target",
    "destination_target",
    "request_uri",
    "caller_id",
    "callerid",
    "phone",
    "phone_number",
    "msisdn",
    "did",
];

/// Field names (besides those ending in `id`) whose values are opaque tokens, never scanned.
const OPAQUE_KEYS: &[&str] = &["tag", "branch", "ssrc", "nonce", "cnonce"];

/// Words that make a bare digit run a quantity, not a number to call: `12345678 bytes`.
const UNITS: &[&str] = &[
    "b", "bytes", "kib", "mib", "ms", "us", "ns", "s", "secs", "seconds", "samples", "packets",
    "frames", "times",
];

/// Returns `line` with phone numbers and SIP user parts masked (see the module docs); borrowed
/// when there was nothing to mask.
pub(crate) fn scrub(line: &[u8]) -> Cow<'_, [u8]> {
    let mut scrubber = Scrubber {
        src: line,
        out: None,
        copied: 0,
        no_at_until: 0,
    };
    scrubber.run();
    scrubber.finish()
}

/// A [`MakeWriter`] whose writers scrub every line (see [`scrub`]) before passing it on, unless
/// personal data may be logged (`--log-pii`).
#[derive(Clone, Debug)]
pub(crate) struct RedactingMakeWriter<M> {
    inner: M,
    redact: bool,
}

impl<M> RedactingMakeWriter<M> {
    /// Wraps `inner`; with `log_pii` lines pass unchanged.
    pub(crate) fn new(inner: M, log_pii: bool) -> Self {
        Self {
            inner,
            redact: !log_pii,
        }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), self.redact)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer_for(meta), self.redact)
    }
}

/// A writer that scrubs whole lines before writing them to the inner writer. A line written in
/// pieces is held until its end (or until the writer is flushed or dropped).
#[derive(Debug)]
pub(crate) struct RedactingWriter<W: Write> {
    inner: W,
    redact: bool,
    pending: Vec<u8>,
}

impl<W: Write> RedactingWriter<W> {
    fn new(inner: W, redact: bool) -> Self {
        Self {
            inner,
            redact,
            pending: Vec::new(),
        }
    }

    /// Scrubs and writes what is pending.
    fn write_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.inner.write_all(&scrub(&pending))
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.redact {
            return self.inner.write(buf);
        }
        if self.pending.is_empty() && buf.ends_with(b"\n") {
            // The usual case: the subscriber writes each event as one whole line.
            self.inner.write_all(&scrub(buf))?;
            return Ok(buf.len());
        }
        self.pending.extend_from_slice(buf);
        if let Some(last) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(last + 1);
            let lines = std::mem::replace(&mut self.pending, rest);
            self.inner.write_all(&scrub(&lines))?;
        }
        if self.pending.len() > MAX_PENDING {
            self.write_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_pending()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Nobody to report to: a log line that cannot be written is lost either way.
        let _ = self.write_pending();
    }
}

/// The output under construction: a copy is made at the first replacement only.
struct Scrubber<'a> {
    src: &'a [u8],
    out: Option<Vec<u8>>,
    /// `src[..copied]` is in `out` (or unchanged, while `out` is `None`).
    copied: usize,
    /// A SIP URI starting before this position has no `@` before its end.
    no_at_until: usize,
}

impl<'a> Scrubber<'a> {
    fn finish(self) -> Cow<'a, [u8]> {
        match self.out {
            None => Cow::Borrowed(self.src),
            Some(mut out) => {
                out.extend_from_slice(self.src.get(self.copied..).unwrap_or_default());
                Cow::Owned(out)
            }
        }
    }

    /// Writes `with` in place of `src[start..end]`; ignored for ranges already written.
    fn replace(&mut self, start: usize, end: usize, with: &[u8]) {
        if start < self.copied || end < start || end > self.src.len() {
            return;
        }
        let src = self.src;
        let out = self
            .out
            .get_or_insert_with(|| Vec::with_capacity(src.len() + 16));
        out.extend_from_slice(src.get(self.copied..start).unwrap_or_default());
        out.extend_from_slice(with);
        self.copied = end;
    }

    fn run(&mut self) {
        let src = self.src;
        let mut i = 0;
        while i < src.len() {
            let next = match src[i] {
                b'=' => self.field(i, key_before_eq(src, i), i + 1),
                b':' => match json_key_before(src, i) {
                    Some(key) => self.field(i, Some(key), skip_spaces(src, i + 1)),
                    None => i + 1,
                },
                b's' | b'S' | b't' | b'T' if word_start(src, i) => self.uri(i),
                b'+' | b'(' | b'%' | b'0'..=b'9' => self.number(i),
                _ => i + 1,
            };
            // Every handler moves on; this keeps the loop bounded whatever they return.
            i = next.max(i + 1);
        }
    }

    /// A field value after `key=` or `"key":`, starting at `value` (maybe behind ANSI codes).
    fn field(&mut self, at: usize, key: Option<&[u8]>, value: usize) -> usize {
        let Some(key) = key else {
            return at + 1;
        };
        let src = self.src;
        let start = skip_ansi(src, value);
        match classify(key) {
            KeyClass::Pii => {
                let span = value_span(src, start, true);
                let v = src.get(span.inner.0..span.inner.1).unwrap_or_default();
                match judge_pii(v) {
                    Judgement::Keep => span.end,
                    Judgement::Scan => start,
                    Judgement::Replace(with) => {
                        self.replace(span.inner.0, span.inner.1, &with);
                        span.end
                    }
                }
            }
            KeyClass::Opaque => value_span(src, start, false).end,
            KeyClass::Other => {
                let span = value_span(src, start, false);
                let v = src.get(span.inner.0..span.inner.1).unwrap_or_default();
                if is_quantity(v) { span.end } else { start }
            }
        }
    }

    /// A possible `sip:`, `sips:` or `tel:` URI at `i`.
    fn uri(&mut self, i: usize) -> usize {
        let src = self.src;
        let Some((len, tel)) = scheme_at(src, i) else {
            return i + 1;
        };
        let user = i + len;
        if tel {
            return self.tel_number(user);
        }
        if user < self.no_at_until {
            return user;
        }
        match find_at(src, user) {
            Ok(at) => {
                self.display_name(i);
                if at > user && src.get(user..at) != Some(MASK) {
                    self.replace(user, at, MASK);
                }
                at + 1
            }
            Err(stop) => {
                self.no_at_until = stop;
                // No user part: the host stays; a number right after the scheme is still
                // found by the scan.
                user
            }
        }
    }

    /// The number of a `tel:` URI starting at `start`: masked whatever its length.
    fn tel_number(&mut self, start: usize) -> usize {
        let src = self.src;
        let run = phone_run(src, start);
        let followed_by_word = src
            .get(run.end)
            .is_some_and(|&b| b.is_ascii_alphanumeric() || b == b'_');
        if run.digits == 0 || followed_by_word {
            return start;
        }
        let (mask, n) = mask_number(&run);
        self.replace(start, run.end, &mask[..n]);
        run.end
    }

    /// Masks the quoted display name before a `<` right before the URI at `uri`, if any:
    /// `"Alice" <sip:…>`, also with the quotes escaped (`\"Alice\" <sip:…>`).
    fn display_name(&mut self, uri: usize) {
        let src = self.src;
        if uri == 0 || src.get(uri - 1) != Some(&b'<') {
            return;
        }
        let mut j = uri - 1;
        while j > 0 && src[j - 1] == b' ' && uri - j < 8 {
            j -= 1;
        }
        // `src[j - 1]` should be the closing quote.
        if j == 0 || src[j - 1] != b'"' {
            return;
        }
        let close = j - 1;
        let escaped = close > 0 && src[close - 1] == b'\\';
        let content_end = if escaped { close - 1 } else { close };
        let lowest = content_end.saturating_sub(128);
        let mut k = content_end;
        while k > lowest {
            k -= 1;
            match src[k] {
                b'\n' | b'\r' => return,
                b'"' => {
                    let open_ok = !escaped || (k > 0 && src[k - 1] == b'\\');
                    let content = k + 1;
                    if open_ok
                        && content < content_end
                        && src.get(content..content_end) != Some(MASK)
                    {
                        self.replace(content, content_end, MASK);
                    }
                    return;
                }
                _ => {}
            }
        }
    }

    /// A possible phone number starting at `i` (a digit, `+`, `(` or `%2B`).
    fn number(&mut self, i: usize) -> usize {
        let src = self.src;
        if !number_may_start(src, i) {
            return i + 1;
        }
        let (start_run, plus) = if src[i] == b'%' {
            match src.get(i..i + 3) {
                Some(p) if p.eq_ignore_ascii_case(b"%2b") => (i + 3, true),
                _ => return i + 1,
            }
        } else {
            (i, src[i] == b'+')
        };
        let run = phone_run(src, start_run);
        if run.digits == 0 {
            return i + 1;
        }
        if plausible(&run, plus) && number_may_end(src, &run, plus) {
            let (mask, n) = mask_number(&run);
            self.replace(i, run.end, &mask[..n]);
        }
        run.end
    }
}

/// How a field's value is treated, by the field's name.
#[derive(Debug, PartialEq, Eq)]
enum KeyClass {
    /// An address or number: hidden whole except a host.
    Pii,
    /// An identifier: left alone.
    Opaque,
    /// Anything else: a plain number stays, other values are scanned.
    Other,
}

fn classify(key: &[u8]) -> KeyClass {
    let name = match key.iter().rposition(|&b| b == b'.') {
        Some(dot) => key.get(dot + 1..).unwrap_or_default(),
        None => key,
    };
    let is = |list: &[&str]| list.iter().any(|k| k.as_bytes().eq_ignore_ascii_case(name));
    if is(PII_KEYS) {
        KeyClass::Pii
    } else if is(OPAQUE_KEYS)
        || name.len() >= 2 && name[name.len() - 2..].eq_ignore_ascii_case(b"id")
    {
        KeyClass::Opaque
    } else {
        KeyClass::Other
    }
}

/// What to do with the value of a [`KeyClass::Pii`] field.
#[derive(Debug)]
enum Judgement {
    /// Nothing to hide (empty, a host, already masked).
    Keep,
    /// It holds a SIP or tel URI: scan it like free text.
    Scan,
    /// Write this instead.
    Replace(Vec<u8>),
}

fn judge_pii(v: &[u8]) -> Judgement {
    if v.is_empty() || is_mask(v) {
        return Judgement::Keep;
    }
    if (0..v.len()).any(|i| word_start(v, i) && scheme_at(v, i).is_some()) {
        return Judgement::Scan;
    }
    if let Some(p) = v.windows(3).position(|w| w == b"://") {
        return judge_url(v, p);
    }
    if let Some(at) = v.iter().rposition(|&b| b == b'@') {
        let lead = usize::from(v.first() == Some(&b'<'));
        let user = v.get(lead..at).unwrap_or_default();
        if user.is_empty() || user == MASK {
            return Judgement::Keep;
        }
        let mut out = Vec::with_capacity(v.len());
        out.extend_from_slice(&v[..lead]);
        out.extend_from_slice(MASK);
        out.extend_from_slice(&v[at..]);
        return Judgement::Replace(out);
    }
    if is_host(v) {
        return Judgement::Keep;
    }
    let debug_wrapper = v.last() == Some(&b'(')
        && v[..v.len() - 1]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_');
    if matches!(v.first(), Some(b'{' | b'[')) || debug_wrapper {
        // A JSON object or array, or `Some(` of a Debug value: what it holds is found by the
        // scan.
        return Judgement::Scan;
    }
    let phone_text = v
        .iter()
        .all(|&b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'(' | b')' | b' '));
    if phone_text {
        let run = Run::of_text(v);
        let (mask, n) = mask_number(&run);
        return Judgement::Replace(mask[..n].to_vec());
    }
    Judgement::Replace(MASK.to_vec())
}

/// An `http://…`-like URL with `://` at `p`: only the scheme and host (and port) stay.
fn judge_url(v: &[u8], p: usize) -> Judgement {
    let authority_start = p + 3;
    let rest = v.get(authority_start..).unwrap_or_default();
    let authority_len = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let path = &rest[authority_len..];
    let mut out = Vec::with_capacity(v.len());
    out.extend_from_slice(&v[..authority_start]);
    match authority.iter().rposition(|&b| b == b'@') {
        Some(at) if &authority[..at] != MASK => {
            out.extend_from_slice(MASK);
            out.extend_from_slice(&authority[at..]);
        }
        _ => out.extend_from_slice(authority),
    }
    if !path.is_empty() && path != b"/" && path != b"/***" {
        out.extend_from_slice(b"/***");
    } else {
        out.extend_from_slice(path);
    }
    if out == v {
        Judgement::Keep
    } else {
        Judgement::Replace(out)
    }
}

/// Already masked: `***` or `+***` and digits.
fn is_mask(v: &[u8]) -> bool {
    let rest = v.strip_prefix(b"+").unwrap_or(v);
    rest.strip_prefix(MASK)
        .is_some_and(|tail| tail.len() <= 2 && tail.iter().all(u8::is_ascii_digit))
}

/// An IP address or host name, maybe with a port.
fn is_host(v: &[u8]) -> bool {
    if let Some(inner) = v.strip_prefix(b"[") {
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return false;
        };
        let after = &inner[close + 1..];
        return is_ipv6ish(&inner[..close])
            && (after.is_empty() || after.strip_prefix(b":").is_some_and(is_port));
    }
    if is_ipv6ish(v) {
        return true;
    }
    let name = match v.iter().rposition(|&b| b == b':') {
        Some(c) if is_port(&v[c + 1..]) => &v[..c],
        _ => v,
    };
    is_ipv4(name) || is_domain(name)
}

fn is_port(v: &[u8]) -> bool {
    (1..=5).contains(&v.len()) && v.iter().all(u8::is_ascii_digit)
}

fn is_ipv6ish(v: &[u8]) -> bool {
    v.iter().filter(|&&b| b == b':').count() >= 2
        && v.iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

fn is_ipv4(v: &[u8]) -> bool {
    let mut groups = 0;
    for part in v.split(|&b| b == b'.') {
        groups += 1;
        if !(1..=3).contains(&part.len()) || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
    }
    groups == 4
}

fn is_domain(v: &[u8]) -> bool {
    if v.eq_ignore_ascii_case(b"localhost") {
        return true;
    }
    let mut labels = 0;
    let mut last_has_letter = false;
    for label in v.split(|&b| b == b'.') {
        labels += 1;
        if label.is_empty()
            || !label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return false;
        }
        last_has_letter = label.iter().any(u8::is_ascii_alphabetic);
    }
    labels >= 2 && last_has_letter
}

/// A plain number (`1234567`, `-3`, `12.5`): a quantity in a field not named like a number.
fn is_quantity(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty()
        && digits.iter().any(u8::is_ascii_digit)
        && digits.iter().all(|&b| b.is_ascii_digit() || b == b'.')
        && digits.iter().filter(|&&b| b == b'.').count() <= 1
}

/// Where a field value lies: `inner` (the value without quotes) and where scanning resumes.
struct Span {
    inner: (usize, usize),
    end: usize,
}

/// The value starting at `start`: a `"quoted"` (Debug) string, an `\"escaped\"` one (JSON
/// inside a Debug string), or unquoted up to a space or delimiter. With `phone_first` an
/// unquoted value that is a phone number may contain spaces (`+44 20 7946 0958`).
fn value_span(src: &[u8], start: usize, phone_first: bool) -> Span {
    let len = src.len();
    match src.get(start..) {
        Some([b'"', ..]) => {
            let from = start + 1;
            let mut j = from;
            let mut escape = false;
            while j < len {
                match src[j] {
                    b'\n' | b'\r' => break,
                    _ if escape => escape = false,
                    b'\\' => escape = true,
                    b'"' => {
                        return Span {
                            inner: (from, j),
                            end: j + 1,
                        };
                    }
                    _ => {}
                }
                j += 1;
            }
            Span {
                inner: (from, j),
                end: j,
            }
        }
        Some([b'\\', b'"', ..]) => {
            let from = start + 2;
            let mut j = from;
            while j < len && !matches!(src[j], b'\\' | b'"' | b'\n' | b'\r') {
                j += 1;
            }
            let end = if src.get(j..j + 2) == Some(b"\\\"") {
                j + 2
            } else {
                j
            };
            Span {
                inner: (from, j),
                end,
            }
        }
        _ => {
            if phone_first {
                let run = phone_run(src, start);
                if run.digits > 0 && ends_value(src, run.end) {
                    return Span {
                        inner: (start, run.end),
                        end: run.end,
                    };
                }
            }
            let mut j = start;
            while j < len && !is_value_end(src[j]) {
                j += 1;
            }
            Span {
                inner: (start, j),
                end: j,
            }
        }
    }
}

/// A byte that ends an unquoted value.
fn is_value_end(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b',' | b'}' | b'"' | b'\\' | b'&' | 0x1b)
}

/// `end` is the end of the line or of an unquoted value.
fn ends_value(src: &[u8], end: usize) -> bool {
    src.get(end).is_none_or(|&b| is_value_end(b))
}

/// A phone-number-shaped run of digits and separators.
#[derive(Debug, Default)]
struct Run {
    /// Just after the last digit.
    end: usize,
    digits: usize,
    last2: [u8; 2],
    /// Digits in each group (up to [`MAX_GROUPS`]).
    groups: [u8; MAX_GROUPS],
    ngroups: usize,
    /// More groups or bytes than a phone number has.
    overflow: bool,
    dash: bool,
    dot: bool,
    space: bool,
    paren: bool,
}

impl Run {
    /// The digits of a whole value (a number in a field named like one).
    fn of_text(v: &[u8]) -> Run {
        let mut run = Run::default();
        for &b in v.iter().filter(|b| b.is_ascii_digit()) {
            run.digits += 1;
            run.last2 = [run.last2[1], b];
        }
        run
    }
}

/// The phone-number-shaped run starting at `start` (after an optional `+`): digits, single
/// separators (`-`, `.`, space) between digits, and parenthesized groups.
fn phone_run(src: &[u8], start: usize) -> Run {
    let mut run = Run::default();
    let mut j = start;
    if src.get(j) == Some(&b'+') {
        j += 1;
    }
    run.end = j;
    let limit = start.saturating_add(MAX_PHONE).min(src.len());
    let mut in_paren = false;
    // A new group starts at the next digit.
    let mut group_open = false;
    while j < limit {
        let b = src[j];
        let next = src.get(j + 1).copied();
        let digit_next = next.is_some_and(|n| n.is_ascii_digit());
        match b {
            b'0'..=b'9' => {
                if !group_open {
                    run.ngroups += 1;
                    group_open = true;
                }
                run.digits += 1;
                run.last2 = [run.last2[1], b];
                match run.groups.get_mut(run.ngroups.saturating_sub(1)) {
                    Some(g) => *g = g.saturating_add(1),
                    None => run.overflow = true,
                }
                run.end = j + 1;
            }
            b'(' if !in_paren && !group_open && digit_next => {
                in_paren = true;
                run.paren = true;
            }
            b')' if in_paren && group_open => {
                in_paren = false;
                group_open = false;
                if !(digit_next || matches!(next, Some(b' ' | b'-' | b'.'))) {
                    break;
                }
            }
            b'-' | b'.' | b' '
                if (group_open || src.get(j.wrapping_sub(1)) == Some(&b')'))
                    && (digit_next || next == Some(b'(')) =>
            {
                group_open = false;
                match b {
                    b'-' => run.dash = true,
                    b'.' => run.dot = true,
                    _ => run.space = true,
                }
            }
            _ => break,
        }
        j += 1;
    }
    if j >= limit && j < src.len() && src[j].is_ascii_digit() {
        run.overflow = true;
    }
    run
}

/// Whether a run found in free text is a phone number rather than a date, an address, a range
/// or a decimal number.
fn plausible(run: &Run, plus: bool) -> bool {
    if run.overflow || !(MIN_DIGITS..=MAX_DIGITS).contains(&run.digits) {
        return false;
    }
    let groups = &run.groups[..run.ngroups.min(MAX_GROUPS)];
    let only_dots = run.dot && !run.dash && !run.space && !run.paren;
    if only_dots && (groups.len() == 2 || groups.len() == 4 && groups.iter().all(|&g| g <= 3)) {
        // 1234567.89 or 192.168.100.200
        return false;
    }
    if plus {
        return true;
    }
    let only_dash = run.dash && !run.dot && !run.space && !run.paren;
    if only_dash && groups.len() == 2 {
        // 20000-29999
        return false;
    }
    // 2026-11-22, 22.11.2026
    !(groups == [4, 2, 2] || groups == [2, 2, 4])
}

/// What comes after a run found in free text allows it to be a number: not a letter, not more
/// of an address or time (`.5`, `:30`, `-ab`), not a unit (`12345678 bytes`).
fn number_may_end(src: &[u8], run: &Run, plus: bool) -> bool {
    let end = run.end;
    let Some(&b) = src.get(end) else {
        return true;
    };
    if b.is_ascii_alphanumeric() || b == b'_' {
        return false;
    }
    let after = src.get(end + 1).copied();
    if matches!(b, b'.' | b':' | b'-') && after.is_some_and(|a| a.is_ascii_alphanumeric()) {
        return false;
    }
    if b == b' ' && !plus && run.ngroups == 1 {
        let word_start = end + 1;
        let word_len = src
            .get(word_start..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let word = src
            .get(word_start..word_start + word_len)
            .unwrap_or_default();
        if UNITS
            .iter()
            .any(|u| u.as_bytes().eq_ignore_ascii_case(word))
        {
            return false;
        }
    }
    true
}

/// What comes before `i` allows a number to start there: not a letter or digit (a hex id), not
/// `.` or `-` (an address, a UUID, a date), not `:` after a hex digit (a time, IPv6).
fn number_may_start(src: &[u8], i: usize) -> bool {
    let first = src[i];
    let second = src.get(i + 1).copied();
    let starts = match first {
        b'0'..=b'9' => true,
        b'+' | b'(' => second.is_some_and(|b| b.is_ascii_digit() || b == b'('),
        b'%' => true,
        _ => false,
    };
    if !starts || i == 0 || ansi_ends_at(src, i) {
        return starts;
    }
    match src[i - 1] {
        b if b.is_ascii_alphanumeric() => false,
        b'_' | b'.' | b'-' | b'+' | b'%' => false,
        b':' => i < 2 || !(src[i - 2].is_ascii_hexdigit() || src[i - 2] == b':'),
        _ => true,
    }
}

/// `+***` and the last two digits, or `***` for fewer than [`MIN_DIGITS`] digits.
fn mask_number(run: &Run) -> ([u8; 6], usize) {
    if run.digits >= MIN_DIGITS {
        let [a, b] = run.last2;
        ([b'+', b'*', b'*', b'*', a, b], 6)
    } else {
        ([b'*', b'*', b'*', 0, 0, 0], 3)
    }
}

/// `sip:`, `sips:` or `tel:` (any case) at `i`: its length and whether it is `tel:`.
fn scheme_at(src: &[u8], i: usize) -> Option<(usize, bool)> {
    let starts = |s: &[u8]| {
        src.get(i..i + s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    };
    if starts(b"sip:") {
        Some((4, false))
    } else if starts(b"sips:") {
        Some((5, false))
    } else if starts(b"tel:") {
        Some((4, true))
    } else {
        None
    }
}

/// The `@` ending a SIP user part starting at `user`, or where the search stopped.
fn find_at(src: &[u8], user: usize) -> Result<usize, usize> {
    let limit = user.saturating_add(MAX_USER).min(src.len());
    let mut j = user;
    while j < limit {
        match src[j] {
            b'@' => return Ok(j),
            b if b.is_ascii_whitespace() => return Err(j),
            b'<' | b'>' | b'"' | b'\'' | b'\\' | b',' | b'/' | 0x1b => return Err(j),
            _ => j += 1,
        }
    }
    Err(j)
}

/// Position `i` starts a word: the byte before is not part of one.
fn word_start(src: &[u8], i: usize) -> bool {
    i == 0
        || ansi_ends_at(src, i)
        || !matches!(src[i - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'+')
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.'
}

/// The field name before the `=` at `eq` (`key=`, also coloured: `ESC[3mkey ESC[0m ESC[2m=`).
fn key_before_eq(src: &[u8], eq: usize) -> Option<&[u8]> {
    let end = skip_ansi_back(src, eq);
    let mut start = end;
    while start > 0 && end - start < MAX_KEY && is_key_byte(src[start - 1]) {
        start -= 1;
    }
    let mut key = src.get(start..end)?;
    if start >= 2 && src[start - 1] == b'[' && src[start - 2] == 0x1b {
        // The scan took the digits and `m` of a colour code.
        let m = key.iter().position(|&b| b == b'm')?;
        key = key.get(m + 1..)?;
    }
    (!key.is_empty()).then_some(key)
}

/// The JSON key before the `:` at `colon`: `"key":`, or `\"key\":` inside a Debug string.
fn json_key_before(src: &[u8], colon: usize) -> Option<&[u8]> {
    if colon == 0 || src[colon - 1] != b'"' {
        return None;
    }
    let escaped = colon >= 2 && src[colon - 2] == b'\\';
    let end = if escaped { colon - 2 } else { colon - 1 };
    let mut start = end;
    while start > 0
        && end - start < MAX_KEY
        && (is_key_byte(src[start - 1]) || src[start - 1] == b'-')
    {
        start -= 1;
    }
    if start == end || start == 0 || src[start - 1] != b'"' {
        return None;
    }
    if escaped && (start < 2 || src[start - 2] != b'\\') {
        return None;
    }
    src.get(start..end)
}

fn skip_spaces(src: &[u8], mut i: usize) -> usize {
    let limit = i.saturating_add(16);
    while i < limit && src.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// An ANSI SGR code (`ESC [ digits ; m`) ends just before `end`: its start.
fn ansi_before(src: &[u8], end: usize) -> Option<usize> {
    if end == 0 || src.get(end - 1) != Some(&b'm') {
        return None;
    }
    let lowest = end.saturating_sub(16);
    let mut j = end - 1;
    while j > lowest {
        j -= 1;
        match src[j] {
            b'0'..=b'9' | b';' => {}
            b'[' => return (j >= 1 && src[j - 1] == 0x1b).then(|| j - 1),
            _ => return None,
        }
    }
    None
}

fn ansi_ends_at(src: &[u8], i: usize) -> bool {
    ansi_before(src, i).is_some()
}

/// Moves `end` back over ANSI codes.
fn skip_ansi_back(src: &[u8], mut end: usize) -> usize {
    while let Some(start) = ansi_before(src, end) {
        end = start;
    }
    end
}

/// Moves `i` forward over ANSI codes.
fn skip_ansi(src: &[u8], mut i: usize) -> usize {
    while src.get(i) == Some(&0x1b) && src.get(i + 1) == Some(&b'[') {
        let mut j = i + 2;
        while j < src.len() && j < i + 16 && matches!(src[j], b'0'..=b'9' | b';') {
            j += 1;
        }
        if src.get(j) != Some(&b'm') {
            break;
        }
        i = j + 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn s(line: &str) -> String {
        String::from_utf8(scrub(line.as_bytes()).into_owned()).unwrap()
    }

    /// Lines as the subscriber writes them, and what must come out.
    const CASES: &[(&str, &str)] = &[
        // SIP URIs: the user goes, host, port and parameters stay.
        (
            "INFO call: placing call destination=sip:alice@pbx.example:5060;transport=udp",
            "INFO call: placing call destination=sip:***@pbx.example:5060;transport=udp",
        ),
        (
            "Contact: <sip:+15551234567@10.0.0.1>;expires=3600",
            "Contact: <sip:***@10.0.0.1>;expires=3600",
        ),
        (
            "From: \"Alice Smith\" <sips:alice:secret@atlanta.example.com>;tag=1928301774",
            "From: \"***\" <sips:***@atlanta.example.com>;tag=1928301774",
        ),
        (
            "routing via SIP:Bob@[2001:db8::1]:5061 and sip:carol@192.0.2.7",
            "routing via SIP:***@[2001:db8::1]:5061 and sip:***@192.0.2.7",
        ),
        (
            "proxy sip:sbc.example.net:5060;lr ready",
            "proxy sip:sbc.example.net:5060;lr ready",
        ),
        ("no user: sip:10.0.0.1:5060", "no user: sip:10.0.0.1:5060"),
        ("sip:+15551234567 unreachable", "sip:+***67 unreachable"),
        (
            "tel:+1-555-123-4567;ext=22 dialled",
            "tel:+***67;ext=22 dialled",
        ),
        ("short tel:911 dialled", "short tel:*** dialled"),
        (
            "P-Asserted-Identity: <tel:+15551234567>, <TEL:5551234567;phone-context=+1>",
            "P-Asserted-Identity: <tel:+***67>, <TEL:+***67;phone-context=+1>",
        ),
        (
            "gossip:alice@host is not a URI",
            "gossip:alice@host is not a URI",
        ),
        // Bare numbers in common formats.
        ("calling +15551234567 now", "calling +***67 now"),
        ("calling +1 555 123 4567 now", "calling +***67 now"),
        ("calling +1-555-123-4567.", "calling +***67."),
        ("calling (555) 123-4567 now", "calling +***67 now"),
        ("calling 555.123.4567 now", "calling +***67 now"),
        ("calling +44 (0)20 7946 0958 now", "calling +***58 now"),
        ("calling 0044 20 7946 0958 now", "calling +***58 now"),
        ("calling 01.23.45.67.89 now", "calling +***89 now"),
        ("calling 5551234567", "calling +***67"),
        ("Some(5551234567)", "Some(+***67)"),
        ("url /hook?n=%2B15551234567&x=1", "url /hook?n=+***67&x=1"),
        // Not numbers.
        (
            "2026-11-22T10:00:00.123456Z  INFO voxflow_runtime::call: started",
            "2026-11-22T10:00:00.123456Z  INFO voxflow_runtime::call: started",
        ),
        ("at 2026-11-22 10:00:00 UTC", "at 2026-11-22 10:00:00 UTC"),
        (
            "on 2026-11-22 and 22.11.2026",
            "on 2026-11-22 and 22.11.2026",
        ),
        (
            "id 550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-5678-1234-567812345678",
            "id 550e8400-e29b-41d4-a716-446655440000 and 12345678-1234-5678-1234-567812345678",
        ),
        (
            "hex deadbeef12345678 0x1234567890",
            "hex deadbeef12345678 0x1234567890",
        ),
        (
            "listening on 127.0.0.1:5060 and 192.168.100.200:5060",
            "listening on 127.0.0.1:5060 and 192.168.100.200:5060",
        ),
        (
            "peer [::ffff:192.168.100.200]:5060",
            "peer [::ffff:192.168.100.200]:5060",
        ),
        ("rtp ports 20000-29999", "rtp ports 20000-29999"),
        (
            "took 1.234567891s or 1234567ms or 1234567.891 s",
            "took 1.234567891s or 1234567ms or 1234567.891 s",
        ),
        (
            "wrote 12345678 bytes in 2500000 samples",
            "wrote 12345678 bytes in 2500000 samples",
        ),
        (
            "cseq 314159 INVITE, 1,234,567 packets",
            "cseq 314159 INVITE, 1,234,567 packets",
        ),
        // Fields: quantities and ids stay, numbers in number fields go.
        (
            "recording ended duration_ms=1234567 bytes=98765432 seq=4294967 ssrc=3735928559",
            "recording ended duration_ms=1234567 bytes=98765432 seq=4294967 ssrc=3735928559",
        ),
        (
            "call{sip_call_id=a84b4c76e66710@pc33.atlanta.com direction=\"outgoing\"}: ringing",
            "call{sip_call_id=a84b4c76e66710@pc33.atlanta.com direction=\"outgoing\"}: ringing",
        ),
        (
            "call{sip_call_id=1234567890@10.0.0.1}: ringing",
            "call{sip_call_id=1234567890@10.0.0.1}: ringing",
        ),
        (
            "placing call destination=+15551234567",
            "placing call destination=+***67",
        ),
        (
            "placing call destination=1000",
            "placing call destination=***",
        ),
        (
            "placing call target=\"+44 20 7946 0958\" x=1",
            "placing call target=\"+***58\" x=1",
        ),
        (
            "placing call target=+44 20 7946 0958 x=1",
            "placing call target=+***58 x=1",
        ),
        (
            "registered contact=alice@10.0.0.9:5062 expires=60",
            "registered contact=***@10.0.0.9:5062 expires=60",
        ),
        (
            "registered contact=<alice@10.0.0.9>",
            "registered contact=<***@10.0.0.9>",
        ),
        ("auth from=alice", "auth from=***"),
        (
            "to=Some(\"+15551234567\") from=None",
            "to=Some(\"+***67\") from=***",
        ),
        (
            "inbound call from an untrusted source; 403 source=203.0.113.5:5060",
            "inbound call from an untrusted source; 403 source=203.0.113.5:5060",
        ),
        (
            "udp send failed to=[2001:db8::5]:5060",
            "udp send failed to=[2001:db8::5]:5060",
        ),
        (
            "trunk to=sip.carrier.example:5060",
            "trunk to=sip.carrier.example:5060",
        ),
        (
            "following a redirect status=302 to=sip:bob@biloxi.example.com;user=phone",
            "following a redirect status=302 to=sip:***@biloxi.example.com;user=phone",
        ),
        (
            "webhook_send failed uri=https://user:pw@hooks.example.com:8443/calls/15551234567?k=v",
            "webhook_send failed uri=https://***@hooks.example.com:8443/***",
        ),
        (
            "webhook_send delivered uri=https://hooks.example.com/",
            "webhook_send delivered uri=https://hooks.example.com/",
        ),
        (
            "error=\"no route to +15551234567 via 10.0.0.1\" status=404",
            "error=\"no route to +***67 via 10.0.0.1\" status=404",
        ),
        (
            "from=\"Alice\" <sip:alice@atlanta.com>;tag=1",
            "from=\"***\" <sip:***@atlanta.com>;tag=1",
        ),
        // JSON bodies, plain and inside a Debug string.
        (
            r#"body={"from":"+15551234567","to":"sip:bob@b.example","caller_id":"Alice","duration_ms":1234567,"id":"1234567"}"#,
            r#"body={"from":"+***67","to":"sip:***@b.example","caller_id":"***","duration_ms":1234567,"id":"1234567"}"#,
        ),
        (
            r#"{"destination": {"type": "tel", "target": "+1 (555) 123-4567"}, "number": 15551234567}"#,
            r#"{"destination": {"type": "tel", "target": "+***67"}, "number": +***67}"#,
        ),
        (
            r#"request failed body="{\"to\":\"+15551234567\",\"uri\":\"sip:a@h\"}""#,
            r#"request failed body="{\"to\":\"+***67\",\"uri\":\"sip:***@h\"}""#,
        ),
        // Colours (an interactive terminal).
        (
            "\x1b[3mto\x1b[0m\x1b[2m=\x1b[0m+15551234567 \x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0m1024",
            "\x1b[3mto\x1b[0m\x1b[2m=\x1b[0m+***67 \x1b[3mfrom\x1b[0m\x1b[2m=\x1b[0m***",
        ),
        // Nothing to hide.
        ("", ""),
        ("plain text without numbers", "plain text without numbers"),
        (
            "already sip:***@host and +***67",
            "already sip:***@host and +***67",
        ),
    ];

    #[test]
    fn redact_table() {
        let mut failures = Vec::new();
        for (input, expected) in CASES {
            let got = s(input);
            if got != *expected {
                failures.push(format!(
                    "  in:   {input:?}\n  want: {expected:?}\n  got:  {got:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} cases failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn redact_is_idempotent_and_borrows_clean_lines() {
        for (input, expected) in CASES {
            assert_eq!(s(expected), *expected, "scrubbing {expected:?} again");
            if input == expected {
                assert!(
                    matches!(scrub(input.as_bytes()), Cow::Borrowed(_)),
                    "{input:?} was copied"
                );
            }
        }
    }

    #[test]
    fn redact_passes_non_utf8_bytes() {
        let line = b"caller \xff\xfe +15551234567 \xc3\x28 end\n";
        assert_eq!(&*scrub(line), b"caller \xff\xfe +***67 \xc3\x28 end\n");
    }

    #[test]
    fn redact_never_panics_on_arbitrary_bytes() {
        // A fixed pseudo-random sequence over an alphabet rich in the bytes the scanner reacts to.
        const ALPHABET: &[u8] = b"sipSIPtel:@<>\"\\=+-.() 0123456789abfxm[;\x1b\n,}{%2B&\xff/";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 96) as usize;
            let mut line = Vec::with_capacity(len);
            let mut x = state;
            for _ in 0..len {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                line.push(ALPHABET[(x >> 33) as usize % ALPHABET.len()]);
            }
            let once = scrub(&line).into_owned();
            assert!(once.len() <= line.len() + 8 * (line.len() / 3 + 1));
        }
    }

    #[test]
    fn redact_long_lines_in_linear_time() {
        let mut line = Vec::new();
        for _ in 0..20_000 {
            line.extend_from_slice(b"sip:sip:to=to=\"1234567-");
        }
        let start = std::time::Instant::now();
        let _ = scrub(&line);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    fn log_through_subscriber(log_pii: bool, ansi: bool) -> String {
        let capture = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(RedactingMakeWriter::new(capture.clone(), log_pii))
            .with_ansi(ansi)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("call", sip_call_id = "a84b4c76e66710@pc33.atlanta.com");
            let _entered = span.enter();
            tracing::info!(
                destination = %"sip:+15551234567@10.0.0.1:5060",
                caller = "+44 20 7946 0958",
                source = %"127.0.0.1:5060",
                bytes = 12345678,
                "placing call to +1-555-987-6543"
            );
        });
        let out = capture.0.lock().unwrap().clone();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn redact_through_a_fmt_subscriber() {
        for ansi in [false, true] {
            let out = log_through_subscriber(false, ansi);
            for secret in ["15551234567", "7946", "987-6543"] {
                assert!(!out.contains(secret), "{secret} in {out:?}");
            }
            for kept in [
                "sip:***@10.0.0.1:5060",
                "+***58",
                "+***43",
                "127.0.0.1:5060",
                "12345678",
                "a84b4c76e66710@pc33.atlanta.com",
            ] {
                assert!(out.contains(kept), "{kept} not in {out:?}");
            }
            assert_eq!(out.lines().count(), 1, "{out:?}");
        }
    }

    #[test]
    fn redact_off_with_log_pii() {
        let out = log_through_subscriber(true, false);
        assert!(
            out.contains("destination=sip:+15551234567@10.0.0.1:5060"),
            "{out:?}"
        );
        assert!(out.contains(r#"caller="+44 20 7946 0958""#), "{out:?}");
        assert!(out.contains("placing call to +1-555-987-6543"), "{out:?}");

        let mut writer = RedactingMakeWriter::new(Capture::default(), true).make_writer();
        writer.write_all(b"sip:alice@host +15551234567\n").unwrap();
        assert_eq!(
            *writer.inner.0.lock().unwrap(),
            b"sip:alice@host +15551234567\n"
        );
    }

    #[test]
    fn redact_holds_partial_lines_until_their_end() {
        let capture = Capture::default();
        {
            let mut writer = RedactingMakeWriter::new(capture.clone(), false).make_writer();
            writer.write_all(b"calling +1555").unwrap();
            writer.write_all(b"1234567 now\nnext sip:bob").unwrap();
            assert_eq!(*capture.0.lock().unwrap(), b"calling +***67 now\n");
            writer.write_all(b"@host").unwrap();
        }
        assert_eq!(
            *capture.0.lock().unwrap(),
            b"calling +***67 now\nnext sip:***@host"
        );
    }

    #[test]
    fn redact_flag_parses() {
        use clap::Parser as _;
        let serve = |extra: &[&str]| {
            let cli = crate::Cli::try_parse_from(["voxflow", "serve"].iter().chain(extra)).unwrap();
            match cli.command {
                crate::Cmd::Serve(args) => args.log_pii,
                crate::Cmd::Flow(_) => unreachable!(),
            }
        };
        assert!(!serve(&[]));
        assert!(serve(&["--log-pii"]));
    }
}
