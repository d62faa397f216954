//! Reliable provisional responses (RFC 3262): the `100rel` option tag and the RSeq and RAck
//! header values.
//!
//! The UAS side (retransmitting a reliable 1xx until its PRACK) is done by the transaction
//! layer ([`crate::TransactionLayer::respond_reliably`]); the UAC side builds its PRACKs with
//! [`crate::Dialog::create_prack`].

use std::fmt;
use std::str::FromStr;

use crate::grammar::{is_lws, trim_lws};
use crate::{Headers, Method, ParseError, Request};

/// The option tag of reliable provisional responses (RFC 3262 §3), for `Supported`/`Require`.
pub const OPTION_TAG_100REL: &str = "100rel";

/// Largest RSeq value (RFC 3262 §3: 1 ..= 2**31 - 1).
pub(crate) const MAX_RSEQ: u32 = 0x7fff_ffff;

/// `RAck: 776656 1 INVITE` (RFC 3262 §7.2): which reliable provisional response a PRACK
/// acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RAck {
    /// The RSeq of the provisional response.
    pub rseq: u32,
    /// The CSeq number of the request it answered.
    pub cseq: u32,
    /// The CSeq method of the request it answered.
    pub method: Method,
}

impl RAck {
    /// Parses `response-num LWS CSeq-num LWS Method`.
    pub fn parse(s: &str) -> Result<RAck, ParseError> {
        let err = ParseError::InvalidHeader("RAck");
        let mut parts = trim_lws(s).split(is_lws).filter(|p| !p.is_empty());
        let (Some(rseq), Some(cseq), Some(method), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err);
        };
        Ok(RAck {
            rseq: parse_number(rseq).ok_or(err.clone())?,
            cseq: parse_number(cseq).ok_or(err.clone())?,
            method: Method::parse(method).map_err(|_| err)?,
        })
    }
}

impl FromStr for RAck {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<RAck, ParseError> {
        RAck::parse(s)
    }
}

impl fmt::Display for RAck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.rseq, self.cseq, self.method)
    }
}

/// Whether the request offers reliable provisional responses: `100rel` in its `Supported`
/// or `Require` header (RFC 3262 §3). Without it a UAS must not send any 1xx reliably.
pub fn supports_100rel(request: &Request) -> bool {
    has_option_tag(&request.headers, "Supported", OPTION_TAG_100REL) || requires_100rel(request)
}

/// Whether the request demands reliable provisional responses (`Require: 100rel`): the UAS
/// must then send every provisional response but `100` reliably, or reject the request with
/// `420 Bad Extension`.
pub fn requires_100rel(request: &Request) -> bool {
    has_option_tag(&request.headers, "Require", OPTION_TAG_100REL)
}

/// Whether the comma-separated option tags of header `name` include `tag`
/// (case-insensitively).
pub(crate) fn has_option_tag(headers: &Headers, name: &str, tag: &str) -> bool {
    headers
        .values(name)
        .any(|v| trim_lws(v).eq_ignore_ascii_case(tag))
}

/// The RSeq of a response, if present and in 1 ..= 2**31 - 1.
pub(crate) fn rseq(headers: &Headers) -> Option<u32> {
    parse_number(trim_lws(headers.get("RSeq")?)).filter(|n| (1..=MAX_RSEQ).contains(n))
}

fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Uri;

    #[test]
    fn rack_round_trip() {
        let rack = RAck::parse("776656 1 INVITE").unwrap();
        assert_eq!(
            rack,
            RAck {
                rseq: 776_656,
                cseq: 1,
                method: Method::Invite
            }
        );
        assert_eq!(rack.to_string(), "776656 1 INVITE");
        assert_eq!(rack.to_string().parse::<RAck>().unwrap(), rack);
        // extra linear white space is allowed between the parts
        assert_eq!(RAck::parse("  1 \t 2   INVITE ").unwrap().cseq, 2);
    }

    #[test]
    fn malformed_rack_rejected() {
        for bad in [
            "",
            "1",
            "1 1",
            "1 1 INVITE x",
            "x 1 INVITE",
            "1 -1 INVITE",
            "4294967296 1 INVITE",
            "1 1 IN(VITE",
        ] {
            assert_eq!(
                RAck::parse(bad),
                Err(ParseError::InvalidHeader("RAck")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn option_tags_and_rseq() {
        let mut req = Request::new(Method::Invite, Uri::parse("sip:a@b").unwrap());
        assert!(!supports_100rel(&req));
        req.headers.push("k", "timer, 100REL");
        assert!(supports_100rel(&req));
        assert!(!requires_100rel(&req));
        req.headers.remove("Supported");
        req.headers.push("Require", "100rel");
        assert!(supports_100rel(&req) && requires_100rel(&req));
        req.headers.set("Require", "100relx");
        assert!(!supports_100rel(&req));

        let mut h = Headers::new();
        assert_eq!(rseq(&h), None);
        for (value, parsed) in [
            ("1", Some(1)),
            (" 2147483647 ", Some(MAX_RSEQ)),
            ("0", None),
            ("2147483648", None),
            ("1x", None),
            ("", None),
        ] {
            h.set("RSeq", value);
            assert_eq!(rseq(&h), parsed, "{value:?}");
        }
    }
}
