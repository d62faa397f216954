//! Session timers (RFC 4028): the `Session-Expires` and `Min-SE` headers and the UAS side of
//! the negotiation (§9).
//!
//! On an INVITE (or UPDATE) the UAS calls [`negotiate_uas`]: `Err(min_se)` means answer with
//! [`interval_too_small`] (422); `Ok(Some(timer))` means accept, add the timer to the 2xx with
//! [`apply_to_response`], and then either refresh the session before `interval / 2`
//! (refresher [`Refresher::Uas`]) or end it with a BYE when no refresh arrived within the
//! interval (refresher [`Refresher::Uac`], §10). `Ok(None)`: no session timer.

use std::fmt;
use std::str::FromStr;

use crate::grammar::{is_lws, trim_lws};
use crate::params::Params;
use crate::{ParseError, Request, Response};

/// The smallest session interval RFC 4028 allows (§4, §5), in seconds.
pub const MIN_SESSION_INTERVAL: u32 = 90;

/// Who refreshes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refresher {
    /// The UAC (the caller) sends the refreshes.
    Uac,
    /// The UAS (the callee) sends the refreshes.
    Uas,
}

/// A `Session-Expires` value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval, in seconds.
    pub interval: u32,
    /// The `refresher` parameter, if present.
    pub refresher: Option<Refresher>,
}

/// A `Min-SE` value: the smallest session interval accepted, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MinSe(pub u32);

/// The session timer agreed for a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// The session interval, in seconds.
    pub interval: u32,
    /// Who refreshes.
    pub refresher: Refresher,
    /// Whether the UAC said `Supported: timer` (then the 2xx carries `Require: timer`).
    pub uac_supports_timer: bool,
}

/// The UAS decision of RFC 4028 §9 for a session refresh request (INVITE or UPDATE) given our
/// smallest acceptable interval `local_min_se` (raised to [`MIN_SESSION_INTERVAL`] if lower):
///
/// - no `Session-Expires` (or an unreadable one): `Ok(None)`;
/// - an interval below our minimum from a UAC that supports timers: `Err(min_se)`, to send in
///   a 422 (see [`interval_too_small`]); from a UAC that does not (a proxy added the header),
///   the interval is raised to our minimum instead, since that UAC could not act on a 422;
/// - otherwise the request's interval, with its `refresher` if it named one; if not, the UAC
///   refreshes when it supports timers and the UAS when it does not.
pub fn negotiate_uas(req: &Request, local_min_se: u32) -> Result<Option<SessionTimer>, u32> {
    let min_se = local_min_se.max(MIN_SESSION_INTERVAL);
    let Some(se) = req
        .headers
        .get("Session-Expires")
        .and_then(|v| SessionExpires::parse(v).ok())
    else {
        return Ok(None);
    };
    let uac_supports_timer = supports_timer(req);
    let interval = if se.interval >= min_se {
        se.interval
    } else if uac_supports_timer {
        return Err(min_se);
    } else {
        min_se
    };
    let refresher = match se.refresher {
        Some(r) => r,
        None if uac_supports_timer => Refresher::Uac,
        None => Refresher::Uas,
    };
    Ok(Some(SessionTimer {
        interval,
        refresher,
        uac_supports_timer,
    }))
}

/// Adds the agreed timer to a 2xx: `Session-Expires: N;refresher=..` (replacing any), and
/// `Require: timer` when the UAC supports timers (unless already required).
pub fn apply_to_response(timer: &SessionTimer, response: &mut Response) {
    let value = SessionExpires {
        interval: timer.interval,
        refresher: Some(timer.refresher),
    };
    response.headers.set("Session-Expires", value.to_string());
    let required = response
        .headers
        .values("Require")
        .any(|tag| tag.eq_ignore_ascii_case("timer"));
    if timer.uac_supports_timer && !required {
        response.headers.push("Require", "timer");
    }
}

/// The 422 (Session Interval Too Small) to `req`, with `Min-SE: min_se` (§9). Add the To tag
/// before sending it.
pub fn interval_too_small(req: &Request, min_se: u32) -> Response {
    let mut response = Response::for_request(req, 422);
    response.headers.push("Min-SE", MinSe(min_se).to_string());
    response
}

impl Refresher {
    /// `uac` or `uas`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

impl fmt::Display for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SessionExpires {
    /// Parses `delta-seconds *(;param)`; `refresher` must be `uac` or `uas` (any case), other
    /// parameters are ignored.
    pub fn parse(s: &str) -> Result<SessionExpires, ParseError> {
        let err = ParseError::InvalidHeader("Session-Expires");
        let (interval, params) = parse_delta_and_params(s).ok_or(err.clone())?;
        let refresher = match params.get("refresher") {
            None => None,
            Some(r) if r.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(r) if r.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            Some(_) => return Err(err),
        };
        Ok(SessionExpires {
            interval,
            refresher,
        })
    }
}

impl FromStr for SessionExpires {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<SessionExpires, ParseError> {
        SessionExpires::parse(s)
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        if let Some(refresher) = self.refresher {
            write!(f, ";refresher={refresher}")?;
        }
        Ok(())
    }
}

impl MinSe {
    /// Parses `delta-seconds *(;generic-param)` (parameters are ignored).
    pub fn parse(s: &str) -> Result<MinSe, ParseError> {
        parse_delta_and_params(s)
            .map(|(interval, _)| MinSe(interval))
            .ok_or(ParseError::InvalidHeader("Min-SE"))
    }
}

impl FromStr for MinSe {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<MinSe, ParseError> {
        MinSe::parse(s)
    }
}

impl fmt::Display for MinSe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether the request lists `timer` in Supported (or Require).
fn supports_timer(req: &Request) -> bool {
    req.headers
        .values("Supported")
        .chain(req.headers.values("Require"))
        .any(|tag| tag.eq_ignore_ascii_case("timer"))
}

/// `delta-seconds` (a `u32`) followed by header parameters, LWS allowed around them.
fn parse_delta_and_params(s: &str) -> Option<(u32, Params)> {
    let s = trim_lws(s);
    let digits_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, rest) = s.split_at(digits_len);
    if digits.is_empty() || !(rest.is_empty() || rest.starts_with([';', ' ', '\t'])) {
        return None;
    }
    let interval = digits.parse().ok()?;
    let params = Params::parse_header(rest.trim_start_matches(is_lws))?;
    Some((interval, params))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    fn invite(extra: &str) -> Request {
        let text = format!(
            "INVITE sip:ivr@voxflow.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:sipp@192.0.2.10>;tag=1\r\n\
             To: <sip:ivr@voxflow.example.com>\r\n\
             Call-ID: st1\r\n\
             CSeq: 1 INVITE\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn session_expires_round_trip() {
        for (text, interval, refresher) in [
            ("1800", 1800, None),
            ("1800;refresher=uac", 1800, Some(Refresher::Uac)),
            ("90 ; REFRESHER = UAS ; x=y", 90, Some(Refresher::Uas)),
            ("4294967295;other", u32::MAX, None),
        ] {
            let se = SessionExpires::parse(text).unwrap();
            assert_eq!((se.interval, se.refresher), (interval, refresher), "{text}");
            assert_eq!(SessionExpires::parse(&se.to_string()).unwrap(), se);
        }
        assert_eq!(
            SessionExpires {
                interval: 600,
                refresher: Some(Refresher::Uas)
            }
            .to_string(),
            "600;refresher=uas"
        );
        for bad in [
            "",
            "abc",
            "-5",
            "18x",
            "1800;refresher=both",
            "1800;",
            "4294967296",
            "1800;refresher",
        ] {
            assert_eq!(
                SessionExpires::parse(bad),
                Err(ParseError::InvalidHeader("Session-Expires")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn min_se_round_trip() {
        assert_eq!(MinSe::parse(" 90 ").unwrap(), MinSe(90));
        assert_eq!(MinSe::parse("120;lr").unwrap().to_string(), "120");
        assert!(MinSe::parse("ninety").is_err());
        assert!(MinSe::parse("").is_err());
    }

    /// The SIPp scenario `session_timer.xml`: Supported: timer, Session-Expires: 180,
    /// Min-SE: 90, no refresher.
    #[test]
    fn sipp_session_timer_scenario() {
        let req = invite("Supported: timer\r\nSession-Expires: 180\r\nMin-SE: 90\r\n");
        let timer = negotiate_uas(&req, 90).unwrap().unwrap();
        assert_eq!(
            timer,
            SessionTimer {
                interval: 180,
                refresher: Refresher::Uac,
                uac_supports_timer: true
            }
        );
        let mut ok = Response::for_request(&req, 200);
        apply_to_response(&timer, &mut ok);
        assert_eq!(ok.headers.get("Session-Expires"), Some("180;refresher=uac"));
        assert_eq!(ok.headers.get("Require"), Some("timer"));
        apply_to_response(&timer, &mut ok);
        assert_eq!(ok.headers.get_all("Require").count(), 1);
        assert_eq!(ok.headers.get_all("Session-Expires").count(), 1);
    }

    #[test]
    fn too_small_interval_gets_422_with_our_min_se() {
        let req = invite("Supported: timer, 100rel\r\nx: 100\r\n");
        assert_eq!(negotiate_uas(&req, 300), Err(300));
        // our minimum is never below the RFC's 90 seconds
        let req = invite("k: timer\r\nSession-Expires: 60\r\n");
        assert_eq!(negotiate_uas(&req, 30), Err(90));
        let response = interval_too_small(&req, 90);
        assert_eq!(
            (response.status, response.reason.as_str()),
            (422, "Session Interval Too Small")
        );
        assert_eq!(response.headers.get("Min-SE"), Some("90"));
        // exactly the minimum is fine
        let req = invite("Supported: timer\r\nSession-Expires: 300\r\n");
        assert_eq!(negotiate_uas(&req, 300).unwrap().unwrap().interval, 300);
    }

    #[test]
    fn uac_without_timer_support() {
        // a proxy inserted Session-Expires: the UAS refreshes, no Require in the 2xx
        let req = invite("Session-Expires: 1800\r\n");
        let timer = negotiate_uas(&req, 90).unwrap().unwrap();
        assert_eq!(
            (timer.interval, timer.refresher, timer.uac_supports_timer),
            (1800, Refresher::Uas, false)
        );
        let mut ok = Response::for_request(&req, 200);
        apply_to_response(&timer, &mut ok);
        assert_eq!(
            ok.headers.get("Session-Expires"),
            Some("1800;refresher=uas")
        );
        assert!(!ok.headers.contains("Require"));
        // too small but it cannot read a 422: raised to our minimum
        let req = invite("Session-Expires: 100\r\n");
        assert_eq!(negotiate_uas(&req, 600).unwrap().unwrap().interval, 600);
    }

    #[test]
    fn explicit_refresher_is_kept_and_absent_header_means_no_timer() {
        let req = invite("Supported: timer\r\nSession-Expires: 1800;refresher=uas\r\n");
        assert_eq!(
            negotiate_uas(&req, 90).unwrap().unwrap().refresher,
            Refresher::Uas
        );
        assert_eq!(negotiate_uas(&invite("Supported: timer\r\n"), 90), Ok(None));
        assert_eq!(
            negotiate_uas(&invite("Session-Expires: soon\r\n"), 90),
            Ok(None)
        );
        // Require: timer counts as support
        let req = invite("Require: timer\r\nSession-Expires: 1800\r\n");
        assert!(negotiate_uas(&req, 90).unwrap().unwrap().uac_supports_timer);
    }
}
