//! The CSeq header value (RFC 3261 §20.16).

use std::fmt;
use std::str::FromStr;

use crate::grammar::{is_lws, trim_lws};
use crate::{Method, ParseError};

/// `CSeq: 4711 INVITE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// The sequence number (RFC 3261 requires it below 2**31; any `u32` is accepted).
    pub seq: u32,
    /// The method, which must match the request's.
    pub method: Method,
}

impl CSeq {
    /// Parses `number LWS method`.
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let err = ParseError::InvalidCSeq;
        let s = trim_lws(s);
        let split = s.find(is_lws).ok_or(err.clone())?;
        let (digits, method) = s.split_at(split);
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(err);
        }
        let seq = digits.parse::<u32>().map_err(|_| err.clone())?;
        let method = Method::parse(trim_lws(method)).map_err(|_| err)?;
        Ok(CSeq { seq, method })
    }
}

impl FromStr for CSeq {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<CSeq, ParseError> {
        CSeq::parse(s)
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = CSeq::parse("4711 INVITE").unwrap();
        assert_eq!(
            c,
            CSeq {
                seq: 4711,
                method: Method::Invite
            }
        );
        assert_eq!(c.to_string(), "4711 INVITE");
        assert_eq!(CSeq::parse(&c.to_string()).unwrap(), c);
        // folded value after unfolding, leading zeros
        assert_eq!(CSeq::parse("0009   INVITE").unwrap().seq, 9);
        assert_eq!(
            CSeq::parse("1 NEWMETHOD").unwrap().method,
            Method::Extension("NEWMETHOD".into())
        );
    }

    #[test]
    fn malformed_rejected() {
        for bad in [
            "",
            "INVITE",
            "1",
            "1INVITE",
            "-1 INVITE",
            "36893488147419103232 REGISTER",
            "4294967296 INVITE",
            "1 INVITE extra",
            "x1 INVITE",
        ] {
            assert_eq!(CSeq::parse(bad), Err(ParseError::InvalidCSeq), "{bad:?}");
        }
        assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
    }
}
