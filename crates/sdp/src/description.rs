//! RFC 4566 session descriptions: a tolerant parser into a small model.
//!
//! Only what offer/answer needs is modelled (origin is skipped, attributes are kept as name/value
//! pairs). The parser accepts CRLF or bare LF, ignores unknown line types and attributes, and
//! reports structural problems as [`ParseError`] instead of panicking.

use std::net::IpAddr;

/// A parsed session description (the `v=` ... block).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionDescription {
    /// Session-level `c=` address, if any.
    pub(crate) connection: Option<IpAddr>,
    /// Session-level `a=` lines.
    pub(crate) attributes: Vec<Attribute>,
    /// The `m=` sections, in order.
    pub(crate) media: Vec<MediaDescription>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaDescription {
    /// Media type (`audio`, `video`, ...), as written.
    pub(crate) media: String,
    /// Transport port (the first one if a port count is given).
    pub(crate) port: u16,
    /// Transport protocol (`RTP/AVP`, ...), as written.
    pub(crate) proto: String,
    /// Media formats, as written (payload type numbers for RTP).
    pub(crate) formats: Vec<String>,
    /// Media-level `c=` address, if any.
    pub(crate) connection: Option<IpAddr>,
    /// Media-level `a=` lines.
    pub(crate) attributes: Vec<Attribute>,
}

/// An `a=` line: `a=name` or `a=name:value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub(crate) name: String,
    pub(crate) value: Option<String>,
}

/// An `a=rtpmap:` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RtpMap<'a> {
    pub(crate) payload_type: u8,
    pub(crate) encoding: &'a str,
    pub(crate) clock_rate: u32,
    pub(crate) channels: Option<u32>,
}

/// Why a body is not a session description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("empty body")]
    Empty,
    #[error("first line is not v=0")]
    MissingVersion,
    #[error("line {line}: not of the form <type>=<value>")]
    BadLine { line: usize },
    #[error("line {line}: bad c= line")]
    BadConnection { line: usize },
    #[error("line {line}: bad m= line")]
    BadMedia { line: usize },
}

impl SessionDescription {
    /// Parses a session description. Tolerates CRLF or LF line ends, blank lines, unknown line
    /// types and attributes, and a missing `o=`/`s=`/`t=`.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ParseError> {
        let text = String::from_utf8_lossy(body);
        let mut lines = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());

        let Some((_, first)) = lines.next() else {
            return Err(ParseError::Empty);
        };
        if first.trim() != "v=0" {
            return Err(ParseError::MissingVersion);
        }

        let mut session = SessionDescription {
            connection: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        for (index, line) in lines {
            let line_no = index + 1;
            let (kind, value) = split_line(line).ok_or(ParseError::BadLine { line: line_no })?;
            match kind {
                'm' => {
                    let media = parse_media(value).ok_or(ParseError::BadMedia { line: line_no })?;
                    session.media.push(media);
                }
                'c' => {
                    let addr = parse_connection(value)
                        .ok_or(ParseError::BadConnection { line: line_no })?;
                    match session.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => session.connection = Some(addr),
                    }
                }
                'a' => {
                    let attribute = parse_attribute(value);
                    match session.media.last_mut() {
                        Some(m) => m.attributes.push(attribute),
                        None => session.attributes.push(attribute),
                    }
                }
                // o=, s=, i=, u=, e=, p=, b=, t=, r=, z=, k= and anything unknown: not needed.
                _ => {}
            }
        }
        Ok(session)
    }

    /// The value of the first session-level attribute called `name`.
    pub(crate) fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attribute(&self.attributes, name)
    }
}

impl MediaDescription {
    /// The value of the first media-level attribute called `name`.
    pub(crate) fn attribute(&self, name: &str) -> Option<&Attribute> {
        find_attribute(&self.attributes, name)
    }

    /// The `a=rtpmap` for `payload_type`, if one is present and well formed.
    pub(crate) fn rtpmap(&self, payload_type: u8) -> Option<RtpMap<'_>> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("rtpmap"))
            .filter_map(|a| a.value.as_deref().and_then(parse_rtpmap))
            .find(|m| m.payload_type == payload_type)
    }

    /// The `a=fmtp` parameters for `payload_type`, if present.
    pub(crate) fn fmtp(&self, payload_type: u8) -> Option<&str> {
        self.attributes
            .iter()
            .filter(|a| a.name.eq_ignore_ascii_case("fmtp"))
            .filter_map(|a| a.value.as_deref())
            .find_map(|v| {
                let (pt, params) = v.trim().split_once(char::is_whitespace)?;
                (pt.parse::<u8>().ok()? == payload_type).then_some(params.trim())
            })
    }

    /// The RTP payload types in the format list; formats that are not a number below 128 are
    /// skipped.
    pub(crate) fn payload_types(&self) -> impl Iterator<Item = u8> + '_ {
        self.formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
    }

    /// Whether this is an audio stream over plain RTP (`RTP/AVP` or `RTP/AVPF`).
    pub(crate) fn is_rtp_audio(&self) -> bool {
        self.media.eq_ignore_ascii_case("audio")
            && (self.proto.eq_ignore_ascii_case("RTP/AVP")
                || self.proto.eq_ignore_ascii_case("RTP/AVPF"))
    }
}

fn find_attribute<'a>(attributes: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Splits `x=value` into its type character and value.
fn split_line(line: &str) -> Option<(char, &str)> {
    let mut chars = line.chars();
    let kind = chars.next()?;
    let rest = chars.as_str();
    let value = rest.strip_prefix('=')?;
    kind.is_ascii_alphabetic().then_some((kind, value.trim()))
}

/// `m=<media> <port>[/<count>] <proto> <fmt> ...`
fn parse_media(value: &str) -> Option<MediaDescription> {
    let mut fields = value.split_ascii_whitespace();
    let media = fields.next()?.to_owned();
    let port_field = fields.next()?;
    let port = port_field
        .split_once('/')
        .map_or(port_field, |(p, _)| p)
        .parse()
        .ok()?;
    let proto = fields.next()?.to_owned();
    let formats = fields.map(str::to_owned).collect();
    Some(MediaDescription {
        media,
        port,
        proto,
        formats,
        connection: None,
        attributes: Vec::new(),
    })
}

/// `c=IN IP4 <addr>[/<ttl>[/<count>]]` or `c=IN IP6 <addr>[/<count>]`. Only numeric addresses
/// are accepted (resolving a name is not the parser's job).
fn parse_connection(value: &str) -> Option<IpAddr> {
    let mut fields = value.split_ascii_whitespace();
    if !fields.next()?.eq_ignore_ascii_case("IN") {
        return None;
    }
    let addr_type = fields.next()?;
    let addr_field = fields.next()?;
    let addr = addr_field.split_once('/').map_or(addr_field, |(a, _)| a);
    // Some UAs (SIPp among them) bracket IPv6 addresses as in a URI.
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: IpAddr = addr.parse().ok()?;
    let type_matches = match addr {
        IpAddr::V4(_) => addr_type.eq_ignore_ascii_case("IP4"),
        IpAddr::V6(_) => addr_type.eq_ignore_ascii_case("IP6"),
    };
    type_matches.then_some(addr)
}

fn parse_attribute(value: &str) -> Attribute {
    match value.split_once(':') {
        Some((name, v)) => Attribute {
            name: name.trim().to_owned(),
            value: Some(v.trim().to_owned()),
        },
        None => Attribute {
            name: value.trim().to_owned(),
            value: None,
        },
    }
}

/// `<pt> <encoding>/<clock>[/<channels>]`
fn parse_rtpmap(value: &str) -> Option<RtpMap<'_>> {
    let (pt, rest) = value.trim().split_once(char::is_whitespace)?;
    let payload_type: u8 = pt.parse().ok()?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?.trim();
    let clock_rate = parts.next()?.trim().parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.trim().parse().ok()?),
        None => None,
    };
    Some(RtpMap {
        payload_type,
        encoding,
        clock_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lf_only_and_media_level_connection() {
        let body = b"v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nt=0 0\nm=audio 4000/2 RTP/AVP 0 101\nc=IN IP4 10.0.0.2/127\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\nm=video 0 RTP/AVP 31\n";
        let sdp = SessionDescription::parse(body).unwrap();
        assert_eq!(sdp.connection, None);
        assert_eq!(sdp.media.len(), 2);
        let audio = &sdp.media[0];
        assert_eq!(audio.port, 4000);
        assert_eq!(audio.connection, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(audio.payload_types().collect::<Vec<_>>(), [0, 101]);
        let map = audio.rtpmap(101).unwrap();
        assert_eq!(
            (map.encoding, map.clock_rate, map.channels),
            ("telephone-event", 8000, None)
        );
        assert_eq!(audio.fmtp(101), Some("0-15"));
        assert_eq!(audio.rtpmap(0), None);
        assert!(audio.is_rtp_audio());
        assert!(!sdp.media[1].is_rtp_audio());
    }

    #[test]
    fn rejects_structural_garbage() {
        assert_eq!(SessionDescription::parse(b""), Err(ParseError::Empty));
        assert_eq!(
            SessionDescription::parse(b"hello"),
            Err(ParseError::MissingVersion)
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\nnonsense\r\n"),
            Err(ParseError::BadLine { line: 2 })
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n"),
            Err(ParseError::BadMedia { line: 2 })
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\nc=IN IP4 example.com\r\n"),
            Err(ParseError::BadConnection { line: 2 })
        );
        assert_eq!(
            SessionDescription::parse(b"v=0\r\nc=IN IP6 10.0.0.1\r\n"),
            Err(ParseError::BadConnection { line: 2 })
        );
    }

    #[test]
    fn bracketed_ipv6_connection_addresses_are_read() {
        let sdp = SessionDescription::parse(b"v=0\r\nc=IN IP6 [::1]\r\n").unwrap();
        assert_eq!(sdp.connection, Some("::1".parse().unwrap()));
        assert_eq!(
            SessionDescription::parse(b"v=0\r\nc=IN IP4 [127.0.0.1\r\n"),
            Err(ParseError::BadConnection { line: 2 })
        );
    }

    #[test]
    fn never_panics_on_mutated_bodies() {
        let base = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n";
        // Every truncation and every single-byte substitution with a few nasty bytes.
        for cut in 0..base.len() {
            let _ = SessionDescription::parse(&base[..cut]);
        }
        for i in 0..base.len() {
            for b in [0u8, b'\n', b'=', b':', b'/', b' ', 0xff, b'9'] {
                let mut body = base.to_vec();
                body[i] = b;
                if let Ok(sdp) = SessionDescription::parse(&body) {
                    for m in &sdp.media {
                        let _ = m.rtpmap(101);
                        let _ = m.fmtp(101);
                        let _ = m.payload_types().count();
                    }
                }
            }
        }
    }
}
