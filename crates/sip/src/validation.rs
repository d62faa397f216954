//! What a UAS checks beyond syntax before it accepts a request (RFC 3261 §8.2, §16.3), and the
//! 400 it sends back when a message cannot be used.

use crate::grammar::trim_lws;
use crate::headers::same_name;
use crate::message::{MAX_HEADER_LINE, MAX_HEADERS, MAX_MESSAGE_SIZE, head_lines, split_head};
use crate::status::reason_phrase;
use crate::{CSeq, Headers, Method, NameAddr, ParseError, Request, Response, Via};

/// Checks a parsed request for what the transaction layer and a UAS rely on: at least one Via
/// and every Via well-formed; From, To, Call-ID and CSeq present once and well-formed; the CSeq
/// method equal to the request method; Max-Forwards and Contact well-formed when present.
pub fn validate_request(req: &Request) -> Result<(), ParseError> {
    let h = &req.headers;
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if h.get_all(name).count() > 1 {
            return Err(ParseError::DuplicateHeader(name));
        }
    }
    let mut vias = 0;
    for value in h.values("Via") {
        Via::parse(value).map_err(|_| ParseError::InvalidHeader("Via"))?;
        vias += 1;
    }
    if vias == 0 {
        return Err(ParseError::MissingHeader("Via"));
    }
    for name in ["From", "To"] {
        let value = h.get(name).ok_or(ParseError::MissingHeader(name))?;
        NameAddr::parse(value).map_err(|_| ParseError::InvalidHeader(name))?;
    }
    let call_id = h
        .get("Call-ID")
        .ok_or(ParseError::MissingHeader("Call-ID"))?;
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(ParseError::InvalidHeader("Call-ID"));
    }
    let cseq = h.get("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?;
    let cseq = CSeq::parse(cseq).map_err(|_| ParseError::InvalidHeader("CSeq"))?;
    if cseq.method != req.method {
        return Err(ParseError::CSeqMismatch);
    }
    if h.contains("Max-Forwards") && h.max_forwards().is_none() {
        return Err(ParseError::InvalidHeader("Max-Forwards"));
    }
    for value in h.values("Contact") {
        if value != "*" && NameAddr::parse(value).is_err() {
            return Err(ParseError::InvalidHeader("Contact"));
        }
    }
    Ok(())
}

/// For a message that failed to parse (`err` from [`crate::Message::parse`]) or to validate:
/// if it was a request other than ACK and its Via, From, To, Call-ID and CSeq can be salvaged,
/// the response to send back: 505 for an unsupported version, 513 for an oversized message,
/// else 400 with a reason phrase naming the problem. Otherwise `None`: drop the message.
pub fn bad_request_response(buf: &[u8], err: &ParseError) -> Option<Response> {
    let buf = buf.get(..buf.len().min(MAX_MESSAGE_SIZE))?;
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let buf = buf.get(start..)?;
    let head = split_head(buf).map_or(buf, |(head, _)| head);
    let head = String::from_utf8_lossy(head);
    let mut lines = head_lines(&head);
    let request_line = lines.next()?;
    let method = Method::parse(request_line.split(' ').next()?).ok()?;
    let headers = salvage_headers(lines);
    error_response(&method, &headers, err)
}

/// The error response for a request whose start line and headers are known: see
/// [`bad_request_response`].
pub(crate) fn error_response(
    method: &Method,
    headers: &Headers,
    err: &ParseError,
) -> Option<Response> {
    if *method == Method::Ack {
        return None;
    }
    headers.top_via()?;
    let call_id = headers.call_id()?;
    let from = headers.get("From")?;
    headers.get("To")?;
    let cseq = headers.get("CSeq")?;
    if CSeq::parse(cseq).is_ok_and(|c| c.method == Method::Ack) {
        return None;
    }
    let status = match err {
        ParseError::UnsupportedVersion => 505,
        ParseError::TooLarge => 513,
        _ => 400,
    };
    // The reason phrase stays the standard one: some peers (SIPp) find headers by searching the
    // message text, so a phrase naming a header ("malformed CSeq") would confuse them. The
    // detail goes in a Warning header (RFC 3261 §20.43) after the copied headers.
    let mut response = Response::new(status, reason_phrase(status));
    for (name, value) in headers.iter() {
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .any(|h| same_name(name, h))
        {
            response.headers.push(name, value);
        }
    }
    if status == 400 {
        let text = err.to_string().replace(['"', '\\'], "'");
        response
            .headers
            .push("Warning", format!("399 voxflow \"{text}\""));
    }
    response.set_to_tag(&stateless_tag(call_id, from));
    Some(response)
}

/// Header lines that still look like `name: value`, unfolded; anything else skipped.
fn salvage_headers<'a>(lines: impl Iterator<Item = &'a str>) -> Headers {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut()
                && value.len() + line.len() <= MAX_HEADER_LINE
            {
                value.push(' ');
                value.push_str(trim_lws(line));
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = trim_lws(name);
        if crate::grammar::is_token(name) && line.len() <= MAX_HEADER_LINE {
            fields.push((name.to_owned(), trim_lws(value).to_owned()));
        }
        if fields.len() == MAX_HEADERS {
            break;
        }
    }
    let mut headers = Headers::new();
    for (name, value) in fields {
        headers.push(name, value);
    }
    headers
}

/// A To tag for a stateless response: the same for retransmissions of the same request.
pub(crate) fn stateless_tag(call_id: &str, from: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.bytes().chain([0]).chain(from.bytes()) {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn request(s: &str) -> Request {
        match Message::parse(&crlf(s)) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    const GOOD: &str = "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2
To: <sip:user@example.com>
From: <sip:caller@example.net>;tag=1
Call-ID: x@192.0.2.1
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

";

    fn with(replace: &str, by: &str) -> Request {
        assert!(GOOD.contains(replace), "{replace}");
        request(&GOOD.replacen(replace, by, 1))
    }

    #[test]
    fn good_request_passes() {
        assert_eq!(validate_request(&request(GOOD)), Ok(()));
    }

    #[test]
    fn missing_and_malformed_headers() {
        for (replace, by, err) in [
            (
                "Call-ID: x@192.0.2.1\n",
                "",
                ParseError::MissingHeader("Call-ID"),
            ),
            (
                "To: <sip:user@example.com>\n",
                "",
                ParseError::MissingHeader("To"),
            ),
            ("CSeq: 1 OPTIONS\n", "", ParseError::MissingHeader("CSeq")),
            (
                "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1, SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2\n",
                "",
                ParseError::MissingHeader("Via"),
            ),
            (
                "SIP/2.0/TCP 192.0.2.2;branch=z9hG4bK2",
                "SIP/2.0/TCP ;;",
                ParseError::InvalidHeader("Via"),
            ),
            (
                "CSeq: 1 OPTIONS",
                "CSeq: 36893488147419103232 OPTIONS",
                ParseError::InvalidHeader("CSeq"),
            ),
            (
                "CSeq: 1 OPTIONS",
                "CSeq: 1 INVITE",
                ParseError::CSeqMismatch,
            ),
            (
                "From: <sip:caller@example.net>;tag=1",
                "From: Bell, Alexander <sip:a@b>;tag=43",
                ParseError::InvalidHeader("From"),
            ),
            (
                "To: <sip:user@example.com>",
                "To: \"Mr. J. User <sip:j.user@example.com>",
                ParseError::InvalidHeader("To"),
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: many",
                ParseError::InvalidHeader("Max-Forwards"),
            ),
            (
                "Call-ID: x@192.0.2.1",
                "Call-ID: x y",
                ParseError::InvalidHeader("Call-ID"),
            ),
            (
                "Call-ID: x@192.0.2.1",
                "Call-ID: a\nCall-ID: b",
                ParseError::DuplicateHeader("Call-ID"),
            ),
            (
                "Max-Forwards: 70",
                "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E",
                ParseError::InvalidHeader("Contact"),
            ),
        ] {
            assert_eq!(
                validate_request(&with(replace, by)),
                Err(err.clone()),
                "{err}"
            );
        }
        // an unknown method with a CSeq naming another method is a mismatch too
        let req = request(&GOOD.replace("OPTIONS sip:", "NEWMETHOD sip:"));
        assert_eq!(validate_request(&req), Err(ParseError::CSeqMismatch));
        // Contact: * is well-formed (REGISTER wildcard)
        assert_eq!(
            validate_request(&with("Max-Forwards: 70", "Contact: *")),
            Ok(())
        );
    }

    #[test]
    fn bad_request_for_unparseable_message() {
        let text = GOOD.replace("Content-Length: 0", "Content-Length: 50");
        let buf = crlf(&text);
        let err = Message::parse(&buf).unwrap_err();
        assert_eq!(err, ParseError::BodyTruncated);
        let r = bad_request_response(&buf, &err).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.reason, "Bad Request");
        assert_eq!(
            r.headers.get("Warning"),
            Some("399 voxflow \"body shorter than Content-Length\"")
        );
        assert_eq!(r.vias().len(), 2);
        assert_eq!(r.call_id(), Some("x@192.0.2.1"));
        assert_eq!(r.cseq().unwrap().method, Method::Options);
        let tag = r.to().unwrap().tag().unwrap().to_owned();
        // same tag for a retransmission
        let again = bad_request_response(&buf, &err).unwrap();
        assert_eq!(again.to().unwrap().tag(), Some(tag.as_str()));
        assert!(matches!(
            Message::parse(&r.to_bytes()),
            Ok(Message::Response(_))
        ));
    }

    #[test]
    fn version_not_supported() {
        let buf = crlf(&GOOD.replace("SIP/2.0\n", "SIP/7.0\n"));
        let err = Message::parse(&buf).unwrap_err();
        assert_eq!(err, ParseError::UnsupportedVersion);
        assert_eq!(bad_request_response(&buf, &err).unwrap().status, 505);
    }

    #[test]
    fn no_response_when_unsalvageable() {
        let err = ParseError::HeaderSyntax;
        // an ACK is never answered
        let ack = crlf(
            &GOOD
                .replace("OPTIONS sip:", "ACK sip:")
                .replace("1 OPTIONS", "1 ACK"),
        );
        assert_eq!(bad_request_response(&ack, &err), None);
        // a response is never answered
        assert_eq!(bad_request_response(b"SIP/2.0 200 OK\r\n\r\n", &err), None);
        // no usable Via, no Call-ID, empty or binary input
        let no_via = crlf(&GOOD.replace("Via: SIP/2.0/UDP 192.0.2.1;", "Via: SIP/2.0/UDP ;"));
        assert_eq!(bad_request_response(&no_via, &err), None);
        let no_call_id = crlf(&GOOD.replace("Call-ID: x@192.0.2.1\n", ""));
        assert_eq!(bad_request_response(&no_call_id, &err), None);
        assert_eq!(bad_request_response(b"", &err), None);
        assert_eq!(bad_request_response(b"\xff\xfe\x00", &err), None);
    }

    #[test]
    fn salvages_from_a_broken_header_section() {
        // a garbage line and binary bytes do not stop the salvage
        let mut buf = crlf(&GOOD.replace("Max-Forwards: 70\n", "this line is garbage\nX-Bin: "));
        let at = buf.windows(7).position(|w| w == b"X-Bin: ").unwrap() + 7;
        buf.insert(at, 0xff);
        let err = Message::parse(&buf).unwrap_err();
        let r = bad_request_response(&buf, &err).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.from().unwrap().tag(), Some("1"));
    }

    #[test]
    fn error_response_for_invalid_parsed_request() {
        let req = with("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
        let err = validate_request(&req).unwrap_err();
        let r = error_response(&req.method, &req.headers, &err).unwrap();
        assert_eq!(r.reason, "Bad Request");
        assert_eq!(
            r.headers.get("Warning"),
            Some("399 voxflow \"CSeq method does not match the request method\"")
        );
    }
}
