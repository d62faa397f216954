//! SIP messages (RFC 3261 §7): the parser and the printer.

use std::fmt::Write as _;

use crate::grammar::{is_lws, is_token, sanitize};
use crate::headers::same_name;
use crate::status::reason_phrase;
use crate::{CSeq, Headers, Method, NameAddr, ParseError, Uri, Via};

/// Largest message accepted, in bytes (start line, headers and body).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// Most header fields accepted in one message.
pub const MAX_HEADERS: usize = 256;
/// Longest header field accepted (name and unfolded value), in bytes.
pub const MAX_HEADER_LINE: usize = 8 * 1024;

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method of the Request-Line.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The header fields.
    pub headers: Headers,
    /// The body (its length is written as Content-Length when printed).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100..=699.
    pub status: u16,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
    /// The body (its length is written as Content-Length when printed).
    pub body: Vec<u8>,
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Message {
    /// Parses one message from a datagram or from a frame cut by
    /// [`crate::StreamFramer`]. Never panics, whatever the bytes.
    ///
    /// Leading CRLFs are skipped; lines may end in CRLF or LF; folded lines are unfolded.
    /// Without Content-Length the body is the rest of the buffer (UDP); with it, octets beyond
    /// it are ignored and a shorter buffer is an error. Headers are checked only for framing
    /// here: typed values are parsed on access and by [`crate::validate_request`].
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        parse_message(buf)
    }

    /// The message as bytes on the wire (Content-Length set from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }
}

impl From<Request> for Message {
    fn from(r: Request) -> Message {
        Message::Request(r)
    }
}

impl From<Response> for Message {
    fn from(r: Response) -> Message {
        Message::Response(r)
    }
}

/// Typed accessors shared by [`Request`] and [`Response`]; see [`Headers`].
macro_rules! typed_accessors {
    () => {
        /// Call-ID (`None` if absent or empty).
        pub fn call_id(&self) -> Option<&str> {
            self.headers.call_id()
        }
        /// CSeq (`None` if absent or malformed).
        pub fn cseq(&self) -> Option<CSeq> {
            self.headers.cseq()
        }
        /// From (`None` if absent or malformed).
        pub fn from(&self) -> Option<NameAddr> {
            self.headers.from()
        }
        /// To (`None` if absent or malformed).
        pub fn to(&self) -> Option<NameAddr> {
            self.headers.to()
        }
        /// Every Via value, top first (malformed values skipped).
        pub fn vias(&self) -> Vec<Via> {
            self.headers.vias()
        }
        /// The topmost Via (`None` if absent or malformed).
        pub fn top_via(&self) -> Option<Via> {
            self.headers.top_via()
        }
        /// The first Contact (`None` if absent, `*` or malformed).
        pub fn contact(&self) -> Option<NameAddr> {
            self.headers.contact()
        }
        /// Max-Forwards (`None` if absent or malformed).
        pub fn max_forwards(&self) -> Option<u32> {
            self.headers.max_forwards()
        }
        /// Content-Type as written.
        pub fn content_type(&self) -> Option<&str> {
            self.headers.content_type()
        }
    };
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    typed_accessors!();

    /// The request as bytes on the wire. Content-Length is written from the body (at the
    /// position of the first Content-Length field, or last).
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("{} {} SIP/2.0", self.method, self.uri);
        print_message(&start, &self.headers, &self.body)
    }
}

impl Response {
    /// A response with the given status and reason and no headers.
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// A response to `req` (RFC 3261 §8.2.6): copies every Via in order, From, To, Call-ID and
    /// CSeq, uses the standard reason phrase; a 100 copies Timestamp (§8.2.6.1), and a 101..=299
    /// to a dialog-creating request (INVITE, SUBSCRIBE, REFER) copies Record-Route (§12.1.1).
    /// Add the To tag with [`Response::set_to_tag`].
    pub fn for_request(req: &Request, status: u16) -> Response {
        let mut response = Response::new(status, reason_phrase(status));
        let creates_dialog = matches!(
            req.method,
            Method::Invite | Method::Subscribe | Method::Refer
        ) && (101..300).contains(&status);
        for (name, value) in req.headers.iter() {
            let copy = ["Via", "From", "To", "Call-ID", "CSeq"]
                .iter()
                .any(|h| same_name(name, h))
                || (status == 100 && same_name(name, "Timestamp"))
                || (creates_dialog && same_name(name, "Record-Route"));
            if copy {
                response.headers.push(name, value);
            }
        }
        response
    }

    /// Adds `;tag=<tag>` to the To header if it has no tag yet.
    pub fn set_to_tag(&mut self, tag: &str) {
        if let Some(to) = self.headers.get_mut("To") {
            let has_tag = NameAddr::parse(to).is_ok_and(|na| na.tag().is_some());
            if !has_tag {
                to.push_str(";tag=");
                to.push_str(tag);
            }
        }
    }

    /// Whether the status is 1xx.
    pub fn is_provisional(&self) -> bool {
        self.status < 200
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    typed_accessors!();

    /// The response as bytes on the wire (Content-Length written from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let start = format!("SIP/2.0 {:03} {}", self.status, sanitize(&self.reason));
        print_message(&start, &self.headers, &self.body)
    }
}

fn print_message(start_line: &str, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    head.push_str(start_line);
    head.push_str("\r\n");
    let mut length_written = false;
    for (name, value) in headers.iter() {
        if same_name(name, "Content-Length") {
            if !length_written {
                let _ = write!(head, "Content-Length: {}\r\n", body.len());
                length_written = true;
            }
            continue;
        }
        let _ = write!(head, "{}: {}\r\n", sanitize(name), sanitize(value));
    }
    if !length_written {
        let _ = write!(head, "Content-Length: {}\r\n", body.len());
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The start line and header fields of a message, before the body is cut.
struct Head {
    start: StartLine,
    headers: Headers,
}

enum StartLine {
    Request(Method, Uri),
    Response(u16, String),
}

/// Splits `buf` (leading CRLFs already skipped) into the header section (without the empty
/// line) and the offset of the body.
pub(crate) fn split_head(buf: &[u8]) -> Option<(&[u8], usize)> {
    split_head_from(buf, 0)
}

/// [`split_head`], knowing that no line feed before `from` starts the empty line.
pub(crate) fn split_head_from(buf: &[u8], mut from: usize) -> Option<(&[u8], usize)> {
    while let Some(pos) = buf.get(from..)?.iter().position(|&b| b == b'\n') {
        let nl = from + pos;
        let after = buf.get(nl + 1..)?;
        if after.starts_with(b"\r\n") {
            return Some((buf.get(..nl)?, nl + 3));
        }
        if after.starts_with(b"\n") {
            return Some((buf.get(..nl)?, nl + 2));
        }
        from = nl + 1;
    }
    None
}

/// The lines of a header section: split at LF, a trailing CR removed.
pub(crate) fn head_lines(head: &str) -> impl Iterator<Item = &str> {
    head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l))
}

fn parse_message(buf: &[u8]) -> Result<Message, ParseError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::TooLarge);
    }
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .ok_or(ParseError::Empty)?;
    let buf = buf.get(start..).ok_or(ParseError::Empty)?;
    let (head, body_offset) = split_head(buf).ok_or(ParseError::Truncated)?;
    let head = std::str::from_utf8(head).map_err(|_| ParseError::InvalidUtf8)?;
    let Head { start, headers } = parse_head(head)?;
    let available = buf.get(body_offset..).unwrap_or(&[]);
    let body = match content_length(&headers)? {
        Some(len) => available
            .get(..len)
            .ok_or(ParseError::BodyTruncated)?
            .to_vec(),
        None => available.to_vec(),
    };
    Ok(match start {
        StartLine::Request(method, uri) => Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }),
        StartLine::Response(status, reason) => Message::Response(Response {
            status,
            reason,
            headers,
            body,
        }),
    })
}

fn parse_head(head: &str) -> Result<Head, ParseError> {
    let mut lines = head_lines(head);
    let start_line = lines.next().ok_or(ParseError::InvalidStartLine)?;
    let start = parse_start_line(start_line)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::HeaderSyntax);
        }
        if line.starts_with(is_lws) {
            // continuation of a folded header line
            let (name, value) = fields.last_mut().ok_or(ParseError::HeaderSyntax)?;
            let more = line.trim_matches(is_lws);
            if !more.is_empty() {
                value.truncate(value.trim_end_matches(is_lws).len());
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(more);
            }
            if name.len() + value.len() > MAX_HEADER_LINE {
                return Err(ParseError::HeaderTooLong);
            }
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(ParseError::HeaderSyntax)?;
        let name = name.trim_end_matches(is_lws);
        if !is_token(name) {
            return Err(ParseError::HeaderSyntax);
        }
        if name.len() + value.len() > MAX_HEADER_LINE {
            return Err(ParseError::HeaderTooLong);
        }
        if fields.len() == MAX_HEADERS {
            return Err(ParseError::TooManyHeaders);
        }
        fields.push((name.to_owned(), value.trim_matches(is_lws).to_owned()));
    }
    let mut headers = Headers::new();
    for (name, value) in fields {
        headers.push(name, value);
    }
    Ok(Head { start, headers })
}

fn is_sip_version(s: &str) -> bool {
    s.eq_ignore_ascii_case("SIP/2.0")
}

/// `SIP/x.y` with digits: a version we could name in a 505.
fn looks_like_version(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && s.get(4..).is_some_and(|v| {
            v.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().all(|c| c.is_ascii_digit())
                    && b.chars().all(|c| c.is_ascii_digit())
            })
        })
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if line.chars().any(|c| c.is_control()) {
        return Err(ParseError::InvalidStartLine);
    }
    if line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !is_sip_version(version) {
            return Err(if looks_like_version(version) {
                ParseError::UnsupportedVersion
            } else {
                ParseError::InvalidStartLine
            });
        }
        let code = parts.next().ok_or(ParseError::InvalidStatusCode)?;
        if code.len() != 3 || !code.chars().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::InvalidStatusCode);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::InvalidStatusCode)?;
        if !(100..700).contains(&status) {
            return Err(ParseError::InvalidStatusCode);
        }
        let reason = parts.next().unwrap_or("");
        return Ok(StartLine::Response(status, reason.to_owned()));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (single spaces, nothing else)
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, uri, version] = parts.as_slice() else {
        return Err(ParseError::InvalidStartLine);
    };
    let method = Method::parse(method)?;
    if !is_sip_version(version) {
        return Err(if looks_like_version(version) {
            ParseError::UnsupportedVersion
        } else {
            ParseError::InvalidStartLine
        });
    }
    let uri = Uri::parse(uri)?;
    Ok(StartLine::Request(method, uri))
}

/// The Content-Length of the message, if any; several fields must agree.
fn content_length(headers: &Headers) -> Result<Option<usize>, ParseError> {
    let mut length = None;
    for value in headers.get_all("Content-Length") {
        let parsed = parse_content_length(value).ok_or(ParseError::InvalidContentLength)?;
        match length {
            Some(previous) if previous != parsed => {
                return Err(ParseError::ConflictingContentLength);
            }
            _ => length = Some(parsed),
        }
    }
    Ok(length)
}

/// A Content-Length value: digits only, at most [`MAX_MESSAGE_SIZE`].
pub(crate) fn parse_content_length(value: &str) -> Option<usize> {
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits = value.trim_start_matches('0');
    if digits.len() > 6 {
        return None;
    }
    let n: usize = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    (n <= MAX_MESSAGE_SIZE).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn request(s: &str) -> Request {
        match Message::parse(&crlf(s)) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response(s: &str) -> Response {
        match Message::parse(&crlf(s)) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn parse_err(s: &str) -> ParseError {
        Message::parse(&crlf(s)).unwrap_err()
    }

    /// Headers other than Content-Length, which printing rewrites.
    fn without_length(h: &Headers) -> Vec<(&str, &str)> {
        h.iter()
            .filter(|(n, _)| !same_name(n, "Content-Length"))
            .collect()
    }

    fn assert_reparses(msg: &Message) {
        let again = Message::parse(&msg.to_bytes()).unwrap();
        match (msg, &again) {
            (Message::Request(a), Message::Request(b)) => {
                assert_eq!((&a.method, &a.uri, &a.body), (&b.method, &b.uri, &b.body));
                assert_eq!(without_length(&a.headers), without_length(&b.headers));
            }
            (Message::Response(a), Message::Response(b)) => {
                assert_eq!(
                    (a.status, &a.reason, &a.body),
                    (b.status, &b.reason, &b.body)
                );
                assert_eq!(without_length(&a.headers), without_length(&b.headers));
            }
            _ => panic!("kind changed"),
        }
    }

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Content-Type: application/sdp
Content-Length: 5

v=0
";

    #[test]
    fn parses_and_prints_a_request() {
        let req = request(INVITE);
        assert_eq!(req.method, Method::Invite);
        assert_eq!(req.uri.to_string(), "sip:bob@biloxi.example.com");
        assert_eq!(
            req.call_id(),
            Some("a84b4c76e66710@pc33.atlanta.example.com")
        );
        assert_eq!(req.cseq().unwrap().seq, 314159);
        assert_eq!(req.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(req.to().unwrap().display_name(), Some("Bob"));
        assert_eq!(req.top_via().unwrap().branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(req.contact().unwrap().uri().user(), Some("alice"));
        assert_eq!(req.max_forwards(), Some(70));
        assert_eq!(req.content_type(), Some("application/sdp"));
        assert_eq!(req.body, b"v=0\r\n");
        // printing is byte-identical for a canonical message
        assert_eq!(req.to_bytes(), crlf(INVITE));
        assert_reparses(&Message::Request(req));
    }

    #[test]
    fn content_length_is_rewritten_from_the_body() {
        let mut req = request(INVITE);
        req.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n".to_vec();
        let text = String::from_utf8(req.to_bytes()).unwrap();
        assert!(text.contains("Content-Length: 31\r\n"), "{text}");
        req.headers.remove("Content-Length");
        let text = String::from_utf8(req.to_bytes()).unwrap();
        assert!(text.contains("Content-Type: application/sdp\r\nContent-Length: 31\r\n\r\nv=0"));
    }

    #[test]
    fn printer_cannot_be_tricked_into_header_injection() {
        let mut req = request(INVITE);
        req.headers.push("Subject", "hi\r\nEvil: yes");
        let again = Message::parse(&req.to_bytes()).unwrap();
        assert_eq!(again.headers().get("Subject"), Some("hi  Evil: yes"));
        assert!(!again.headers().contains("Evil"));
    }

    #[test]
    fn parses_responses_with_odd_reasons() {
        let r =
            response("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nContent-Length: 0\n\n");
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert!(r.is_success());
        let r = response("SIP/2.0 100 \nContent-Length: 0\n\n");
        assert_eq!((r.status, r.reason.as_str()), (100, ""));
        assert!(r.is_provisional());
        let r = response(
            "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\nContent-Length: 0\n\n",
        );
        assert!(r.reason.ends_with("простое"));
        assert_reparses(&Message::Response(r));
    }

    #[test]
    fn body_without_content_length_is_the_rest_of_the_datagram() {
        let req = request("MESSAGE sip:a@b SIP/2.0\nCSeq: 1 MESSAGE\n\nhello");
        assert_eq!(req.body, b"hello");
    }

    #[test]
    fn extra_octets_after_content_length_are_ignored() {
        let req =
            request("OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\n\nOPTIONS sip:c@d SIP/2.0\n\n");
        assert!(req.body.is_empty());
    }

    #[test]
    fn leading_crlf_and_bare_lf_accepted() {
        let buf = b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nl: 0\n\n";
        assert!(matches!(Message::parse(buf), Ok(Message::Request(_))));
    }

    #[test]
    fn framing_errors() {
        assert_eq!(parse_err(""), ParseError::Empty);
        assert_eq!(parse_err("\n\n"), ParseError::Empty);
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\n"),
            ParseError::Truncated
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nContent-Length: 10\n\nshort"),
            ParseError::BodyTruncated
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nContent-Length: -999\n\n"),
            ParseError::InvalidContentLength
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nContent-Length: 99999999999999999999\n\n"),
            ParseError::InvalidContentLength
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nContent-Length: 0\nl: 3\n\nabc"),
            ParseError::ConflictingContentLength
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nNo colon here\n\n"),
            ParseError::HeaderSyntax
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\n continued: x\n\n"),
            ParseError::HeaderSyntax
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nBad Name: x\n\n"),
            ParseError::HeaderSyntax
        );
        assert_eq!(
            parse_err("OPTIONS sip:a@b SIP/2.0\nX: a\u{0}b\n\n"),
            ParseError::HeaderSyntax
        );
        let invalid_utf8 = b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n";
        assert_eq!(Message::parse(invalid_utf8), Err(ParseError::InvalidUtf8));
    }

    #[test]
    fn size_limits() {
        let mut big = crlf("MESSAGE sip:a@b SIP/2.0\n\n");
        big.resize(MAX_MESSAGE_SIZE + 1, b'x');
        assert_eq!(Message::parse(&big), Err(ParseError::TooLarge));

        let mut many = String::from("OPTIONS sip:a@b SIP/2.0\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("X-{i}: {i}\n"));
        }
        many.push('\n');
        assert_eq!(parse_err(&many), ParseError::TooManyHeaders);

        let long = format!(
            "OPTIONS sip:a@b SIP/2.0\nX: {}\n\n",
            "a".repeat(MAX_HEADER_LINE)
        );
        assert_eq!(parse_err(&long), ParseError::HeaderTooLong);
        let folded = format!(
            "OPTIONS sip:a@b SIP/2.0\nX: {}\n {}\n\n",
            "a".repeat(MAX_HEADER_LINE / 2),
            "b".repeat(MAX_HEADER_LINE / 2)
        );
        assert_eq!(parse_err(&folded), ParseError::HeaderTooLong);
    }

    #[test]
    fn start_line_errors() {
        for (text, err) in [
            ("INVITE  sip:a@b SIP/2.0", ParseError::InvalidStartLine),
            ("INVITE sip:a@b SIP/2.0 ", ParseError::InvalidStartLine),
            ("INVITE sip:a@b; lr SIP/2.0", ParseError::InvalidStartLine),
            ("INVITE <sip:a@b> SIP/2.0", ParseError::InvalidUri),
            (
                "OPTIONS sip:t.watson@example.org SIP/7.0",
                ParseError::UnsupportedVersion,
            ),
            ("OPTIONS sip:a@b HTTP/1.1", ParseError::InvalidStartLine),
            ("IN\u{1}VITE sip:a@b SIP/2.0", ParseError::InvalidStartLine),
            ("INV(ITE sip:a@b SIP/2.0", ParseError::InvalidMethod),
            (
                "SIP/2.0 4294967301 better not break the receiver",
                ParseError::InvalidStatusCode,
            ),
            ("SIP/2.0 099 Low", ParseError::InvalidStatusCode),
            ("SIP/2.0 700 High", ParseError::InvalidStatusCode),
            ("SIP/2.0", ParseError::InvalidStatusCode),
            ("SIP/3.0 200 OK", ParseError::UnsupportedVersion),
        ] {
            assert_eq!(
                parse_err(&format!("{text}\nContent-Length: 0\n\n")),
                err,
                "{text}"
            );
        }
    }

    #[test]
    fn for_request_copies_the_right_headers() {
        let mut req = request(INVITE);
        req.headers.push("Record-Route", "<sip:p1.example.com;lr>");
        req.headers.push("Timestamp", "54");
        req.headers
            .prepend("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp");
        let mut ok = Response::for_request(&req, 200);
        assert_eq!(ok.reason, "OK");
        let names: Vec<&str> = ok.headers.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "Via",
                "Via",
                "To",
                "From",
                "Call-ID",
                "CSeq",
                "Record-Route"
            ]
        );
        ok.set_to_tag("a6c85cf");
        ok.set_to_tag("ignored");
        assert_eq!(ok.to().unwrap().tag(), Some("a6c85cf"));
        assert_eq!(
            ok.headers.get("To"),
            Some("Bob <sip:bob@biloxi.example.com>;tag=a6c85cf")
        );

        let trying = Response::for_request(&req, 100);
        assert_eq!(trying.reason, "Trying");
        assert_eq!(trying.headers.get("Timestamp"), Some("54"));
        assert!(!trying.headers.contains("Record-Route"));
        let busy = Response::for_request(&req, 486);
        assert_eq!(busy.reason, "Busy Here");
        assert!(!busy.headers.contains("Record-Route"));
        assert_eq!(
            busy.to_bytes().split(|&b| b == b'\n').next().unwrap(),
            b"SIP/2.0 486 Busy Here\r"
        );
    }
}
