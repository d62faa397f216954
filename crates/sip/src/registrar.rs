//! REGISTER processing (RFC 3261 §10.3), without storage.
//!
//! The caller owns the location store. For each REGISTER (already authenticated and
//! authorised, and with the address-of-record taken from its To header) it loads the
//! bindings of that AOR, calls [`process_register`] with the time, and on
//! [`RegisterOutcome::Accepted`] replaces the stored set with the returned one before sending
//! the response. Nothing is changed on [`RegisterOutcome::Rejected`].
//!
//! Contacts are matched with stored bindings by `+sip.instance` when both carry one
//! (RFC 5627), else by URI comparison (RFC 3261 §19.1.4, without URI headers).

use std::fmt::Write as _;

use crate::grammar::unquote;
use crate::uri::Scheme;
use crate::validation::stateless_tag;
use crate::{NameAddr, Request, Response, Uri};

/// One registered contact of an address-of-record.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The Contact URI as sent (without `<>` and header parameters).
    pub contact: String,
    /// When the binding expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The Call-ID of the REGISTER that last refreshed it.
    pub call_id: String,
    /// The CSeq number of the REGISTER that last refreshed it.
    pub cseq: u32,
    /// The `q` preference, 0.0 to 1.0, if given.
    pub q: Option<f32>,
    /// The `+sip.instance` value (unquoted, e.g. `<urn:uuid:...>`), if given.
    pub instance: Option<String>,
}

/// The registrar's limits on registration intervals and bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrarPolicy {
    /// Interval used when the request names none, in seconds.
    pub default_expires: u32,
    /// Shortest interval accepted; a shorter non-zero one gets 423 with `Min-Expires`.
    pub min_expires: u32,
    /// Longest interval granted; longer requests are shortened to it.
    pub max_expires: u32,
    /// Most bindings per address-of-record; a request that would exceed it gets 403.
    pub max_contacts: usize,
}

/// What to do with a REGISTER.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterOutcome {
    /// Store `bindings` (the complete new set for the AOR), then send `response` (200 listing
    /// every binding with its remaining `expires`).
    Accepted {
        /// The bindings of the AOR after this request.
        bindings: Vec<Binding>,
        /// The 200 to send.
        response: Response,
    },
    /// Send `response` (400, 403, 423 or 500); the stored bindings stay as they were.
    Rejected {
        /// The error response to send.
        response: Response,
    },
}

/// Processes a REGISTER against the `current` bindings of its AOR at `now_unix`
/// (RFC 3261 §10.3 steps 6–8):
///
/// - no Contact: a query; the current bindings are listed;
/// - `Contact: *` with `Expires: 0` and no other Contact removes every binding; `*` in any
///   other form is a 400;
/// - each Contact's interval is its `expires` parameter, else the `Expires` header, else the
///   policy default; 0 removes the binding; a non-zero interval below `min_expires` is a 423,
///   above `max_expires` is shortened;
/// - a binding last refreshed by the same Call-ID with a CSeq not lower than the request's
///   makes the whole request fail with 500 (out of order); another Call-ID replaces it;
/// - expired bindings are dropped first (see [`expire`]).
///
/// The request is processed all or nothing.
pub fn process_register(
    req: &Request,
    current: &[Binding],
    now_unix: u64,
    policy: &RegistrarPolicy,
) -> RegisterOutcome {
    match update_bindings(req, current, now_unix, policy) {
        Ok(bindings) => {
            let mut response = reply(req, 200, None);
            for binding in &bindings {
                response
                    .headers
                    .push("Contact", binding.to_contact_value(now_unix));
            }
            response.headers.push("Date", http_date(now_unix));
            RegisterOutcome::Accepted { bindings, response }
        }
        Err(reject) => RegisterOutcome::Rejected {
            response: reject.response(req, policy),
        },
    }
}

/// Drops the bindings that have expired at `now_unix` (`expires_at <= now_unix`).
pub fn expire(bindings: &mut Vec<Binding>, now_unix: u64) {
    bindings.retain(|b| !b.is_expired(now_unix));
}

impl Binding {
    /// Whether the binding has expired at `now_unix`.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.expires_at <= now_unix
    }

    /// Seconds left at `now_unix` (0 once expired).
    pub fn remaining(&self, now_unix: u64) -> u64 {
        self.expires_at.saturating_sub(now_unix)
    }

    /// The Contact value listing this binding in a 200:
    /// `<uri>;expires=N[;q=..][;+sip.instance=".."]`.
    pub fn to_contact_value(&self, now_unix: u64) -> String {
        let mut value = format!("<{}>;expires={}", self.contact, self.remaining(now_unix));
        if let Some(q) = self.q.filter(|q| q.is_finite()) {
            let _ = write!(value, ";q={}", format_qvalue(q));
        }
        if let Some(instance) = &self.instance {
            let _ = write!(value, ";+sip.instance={}", crate::grammar::quote(instance));
        }
        value
    }
}

impl Default for RegistrarPolicy {
    /// 3600 s by default, between 60 s and 7200 s, at most 10 contacts.
    fn default() -> RegistrarPolicy {
        RegistrarPolicy {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_contacts: 10,
        }
    }
}

impl RegisterOutcome {
    /// The response to send, whatever the outcome.
    pub fn response(&self) -> &Response {
        match self {
            RegisterOutcome::Accepted { response, .. } | RegisterOutcome::Rejected { response } => {
                response
            }
        }
    }
}

/// Why a REGISTER is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reject {
    BadRequest(&'static str),
    IntervalTooBrief,
    OutOfOrder,
    TooManyContacts,
}

impl Reject {
    fn response(self, req: &Request, policy: &RegistrarPolicy) -> Response {
        match self {
            Reject::BadRequest(why) => reply(req, 400, Some(why)),
            Reject::IntervalTooBrief => {
                let mut response = reply(req, 423, None);
                response
                    .headers
                    .push("Min-Expires", policy.min_expires.to_string());
                response
            }
            Reject::OutOfOrder => reply(req, 500, Some("CSeq out of order")),
            Reject::TooManyContacts => reply(req, 403, Some("too many contacts")),
        }
    }
}

/// A Contact of the request, checked.
struct RequestContact {
    uri: Uri,
    expires: u32,
    q: Option<f32>,
    instance: Option<String>,
}

fn update_bindings(
    req: &Request,
    current: &[Binding],
    now: u64,
    policy: &RegistrarPolicy,
) -> Result<Vec<Binding>, Reject> {
    if req.method != crate::Method::Register {
        return Err(Reject::BadRequest("not a REGISTER"));
    }
    let call_id = req.call_id().ok_or(Reject::BadRequest("missing Call-ID"))?;
    let cseq = req.cseq().ok_or(Reject::BadRequest("missing CSeq"))?.seq;
    let header_expires = req.headers.get("Expires").map(parse_delta);
    let values: Vec<&str> = req.headers.values("Contact").collect();

    let mut set: Vec<Binding> = current.to_vec();
    expire(&mut set, now);
    let before = set.len();

    if values.contains(&"*") {
        if values.len() != 1 {
            return Err(Reject::BadRequest("wildcard Contact with other Contacts"));
        }
        if header_expires != Some(Some(0)) {
            return Err(Reject::BadRequest("wildcard Contact needs Expires 0"));
        }
        for binding in &set {
            if binding.call_id == call_id && cseq <= binding.cseq {
                return Err(Reject::OutOfOrder);
            }
        }
        return Ok(Vec::new());
    }

    // RFC 3261 §20.19: a malformed Expires header counts as the default.
    let default = header_expires.flatten().unwrap_or(policy.default_expires);
    let mut contacts = Vec::with_capacity(values.len());
    for value in values {
        let contact = parse_contact(value, default)?;
        if contact.expires != 0 && contact.expires < policy.min_expires {
            return Err(Reject::IntervalTooBrief);
        }
        contacts.push(contact);
    }

    // bindings written by this request: a Contact repeated in it is not "out of order"
    let mut touched = vec![false; set.len()];
    for contact in contacts {
        let expires = contact.expires.min(policy.max_expires);
        let expires_at = if expires == 0 {
            0
        } else {
            now.saturating_add(u64::from(expires))
        };
        let updated = Binding {
            contact: contact.uri.to_string(),
            expires_at,
            call_id: call_id.to_owned(),
            cseq,
            q: contact.q,
            instance: contact.instance.clone(),
        };
        let found = set
            .iter()
            .position(|b| same_binding(b, &contact.uri, contact.instance.as_deref()));
        match found {
            Some(i) => {
                let already = touched.get(i).copied().unwrap_or(false);
                if let Some(binding) = set.get_mut(i) {
                    if !already && binding.call_id == call_id && cseq <= binding.cseq {
                        return Err(Reject::OutOfOrder);
                    }
                    *binding = updated;
                }
                if let Some(t) = touched.get_mut(i) {
                    *t = true;
                }
            }
            None if expires > 0 => {
                set.push(updated);
                touched.push(true);
            }
            None => {}
        }
    }
    expire(&mut set, now);
    if set.len() > policy.max_contacts && set.len() > before {
        return Err(Reject::TooManyContacts);
    }
    Ok(set)
}

fn parse_contact(value: &str, default_expires: u32) -> Result<RequestContact, Reject> {
    let addr = NameAddr::parse(value).map_err(|_| Reject::BadRequest("malformed Contact"))?;
    // a malformed expires parameter counts as absent (RFC 3261 §10.3 step 7 falls back)
    let expires = addr
        .param("expires")
        .and_then(parse_delta)
        .unwrap_or(default_expires);
    let q = match addr.param("q") {
        Some(q) => Some(parse_qvalue(q).ok_or(Reject::BadRequest("malformed q"))?),
        None => None,
    };
    let instance = match addr.param("+sip.instance") {
        Some(raw) if raw.starts_with('"') => Some(
            unquote(raw)
                .map(|(s, _)| s)
                .ok_or(Reject::BadRequest("malformed +sip.instance"))?,
        ),
        Some("") => None,
        Some(raw) => Some(raw.to_owned()),
        None => None,
    };
    Ok(RequestContact {
        uri: addr.uri().clone(),
        expires,
        q,
        instance,
    })
}

/// `delta-seconds`: digits only; values beyond `u32` saturate (RFC 3261 §20.19 and §25.1).
fn parse_delta(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u32>().unwrap_or(u32::MAX))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_qvalue(s: &str) -> Option<f32> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let ok = match int {
        "0" => frac.len() <= 3 && frac.bytes().all(|b| b.is_ascii_digit()),
        "1" => frac.len() <= 3 && frac.bytes().all(|b| b == b'0'),
        _ => false,
    };
    if !ok {
        return None;
    }
    let fraction: u16 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    Some(if int == "1" {
        1.0
    } else {
        f32::from(fraction) / 1000.0
    })
}

fn format_qvalue(q: f32) -> String {
    let text = format!("{:.3}", q.clamp(0.0, 1.0));
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text.is_empty() {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Whether a stored binding is the one a request Contact refers to.
fn same_binding(binding: &Binding, uri: &Uri, instance: Option<&str>) -> bool {
    if let (Some(stored), Some(new)) = (binding.instance.as_deref(), instance) {
        return stored.eq_ignore_ascii_case(new);
    }
    match Uri::parse(&binding.contact) {
        Ok(stored) => uris_equivalent(&stored, uri),
        Err(_) => binding.contact == uri.to_string(),
    }
}

/// URI equivalence of RFC 3261 §19.1.4 for SIP and SIPS URIs (URI headers not compared);
/// other schemes compare as case-insensitive text.
fn uris_equivalent(a: &Uri, b: &Uri) -> bool {
    if !a.is_sip() || !b.is_sip() {
        return a.to_string().eq_ignore_ascii_case(&b.to_string());
    }
    let same_scheme = matches!(
        (a.scheme(), b.scheme()),
        (Scheme::Sip, Scheme::Sip) | (Scheme::Sips, Scheme::Sips)
    );
    if !same_scheme
        || a.user_decoded() != b.user_decoded()
        || a.password() != b.password()
        || !a.host().eq_ignore_ascii_case(b.host())
        || a.port() != b.port()
    {
        return false;
    }
    // user, ttl, method, maddr and transport must match if either has them
    for name in ["user", "ttl", "method", "maddr", "transport"] {
        match (a.param(name), b.param(name)) {
            (None, None) => {}
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => {}
            _ => return false,
        }
    }
    // any other parameter present in both must match (the first occurrence of a repeated one)
    a.params()
        .iter()
        .all(|(name, _)| match (a.param(name), b.param(name)) {
            (Some(x), Some(y)) => x.eq_ignore_ascii_case(y),
            _ => true,
        })
}

/// A response to `req` with a To tag and the standard reason phrase; `detail` goes in a
/// `Warning: 399` (as [`crate::bad_request_response`] does), not in the reason phrase, which
/// peers such as SIPp search for header names.
fn reply(req: &Request, status: u16, detail: Option<&str>) -> Response {
    let mut response = Response::for_request(req, status);
    if let Some(detail) = detail {
        response
            .headers
            .push("Warning", format!("399 voxflow \"{detail}\""));
    }
    let tag = stateless_tag(
        req.call_id().unwrap_or(""),
        req.headers.get("From").unwrap_or(""),
    );
    response.set_to_tag(&tag);
    response
}

/// An RFC 1123 date in GMT (RFC 3261 §20.17): `Sat, 13 Nov 2010 23:29:00 GMT`.
fn http_date(now_unix: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = now_unix / 86_400;
    let secs = now_unix % 86_400;
    // civil date from a day count (the proleptic Gregorian calendar, eras of 400 years)
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let weekday = usize::try_from(days % 7).ok().and_then(|d| WEEKDAYS.get(d));
    let month_name = usize::try_from(month - 1).ok().and_then(|m| MONTHS.get(m));
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        weekday.unwrap_or(&"Thu"),
        month_name.unwrap_or(&"Jan"),
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    const NOW: u64 = 1_700_000_000;

    fn register(call_id: &str, cseq: u32, extra: &str) -> Request {
        let text = format!(
            "REGISTER sip:registrar.example.com SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{cseq}\r\n\
             Max-Forwards: 70\r\n\
             From: Bob <sip:bob@example.com>;tag=456248\r\n\
             To: Bob <sip:bob@example.com>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             {extra}\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn accepted(outcome: RegisterOutcome) -> (Vec<Binding>, Response) {
        match outcome {
            RegisterOutcome::Accepted { bindings, response } => (bindings, response),
            RegisterOutcome::Rejected { response } => {
                panic!("rejected: {} {}", response.status, response.reason)
            }
        }
    }

    fn rejected(outcome: RegisterOutcome) -> Response {
        match outcome {
            RegisterOutcome::Rejected { response } => response,
            RegisterOutcome::Accepted { .. } => panic!("accepted"),
        }
    }

    fn binding(contact: &str, expires_at: u64, call_id: &str, cseq: u32) -> Binding {
        Binding {
            contact: contact.into(),
            expires_at,
            call_id: call_id.into(),
            cseq,
            q: None,
            instance: None,
        }
    }

    fn contacts(response: &Response) -> Vec<&str> {
        response.headers.get_all("Contact").collect()
    }

    fn policy() -> RegistrarPolicy {
        RegistrarPolicy::default()
    }

    #[test]
    fn first_registration_uses_the_expires_header() {
        let req = register(
            "c1",
            1,
            "Contact: <sip:bob@192.0.2.10:5060>\r\nExpires: 1800\r\n",
        );
        let (bindings, response) = accepted(process_register(&req, &[], NOW, &policy()));
        assert_eq!(
            bindings,
            [binding("sip:bob@192.0.2.10:5060", NOW + 1800, "c1", 1)]
        );
        assert_eq!(response.status, 200);
        assert_eq!(
            contacts(&response),
            ["<sip:bob@192.0.2.10:5060>;expires=1800"]
        );
        assert_eq!(
            response.headers.get("Date"),
            Some("Tue, 14 Nov 2023 22:13:20 GMT")
        );
        assert!(response.to().unwrap().tag().is_some());
        assert_eq!(response.headers.get("Call-ID"), Some("c1"));
    }

    #[test]
    fn contact_param_beats_header_and_default_applies() {
        let req = register(
            "c1",
            1,
            "Contact: <sip:a@192.0.2.1>;expires=120, <sip:b@192.0.2.2>\r\nExpires: 300\r\n",
        );
        let (bindings, response) = accepted(process_register(&req, &[], NOW, &policy()));
        let expiries: Vec<u64> = bindings.iter().map(|b| b.expires_at - NOW).collect();
        assert_eq!(expiries, [120, 300]);
        assert_eq!(contacts(&response).len(), 2);

        let req = register("c2", 1, "Contact: <sip:c@192.0.2.3>;expires=junk\r\n");
        let (bindings, _) = accepted(process_register(&req, &[], NOW, &policy()));
        assert_eq!(bindings[0].expires_at, NOW + 3600);
    }

    #[test]
    fn interval_too_brief_is_423_with_min_expires() {
        let req = register("c1", 1, "Contact: <sip:bob@192.0.2.10>;expires=30\r\n");
        let response = rejected(process_register(&req, &[], NOW, &policy()));
        assert_eq!(
            (response.status, response.reason.as_str()),
            (423, "Interval Too Brief")
        );
        assert_eq!(response.headers.get("Min-Expires"), Some("60"));
        let req = register("c1", 1, "Contact: <sip:bob@192.0.2.10>\r\nExpires: 59\r\n");
        assert_eq!(
            rejected(process_register(&req, &[], NOW, &policy())).status,
            423
        );
    }

    #[test]
    fn long_intervals_are_shortened_to_max() {
        let req = register(
            "c1",
            1,
            "Contact: <sip:bob@192.0.2.10>\r\nExpires: 99999999999\r\n",
        );
        let (bindings, response) = accepted(process_register(&req, &[], NOW, &policy()));
        assert_eq!(bindings[0].expires_at, NOW + 7200);
        assert_eq!(contacts(&response), ["<sip:bob@192.0.2.10>;expires=7200"]);
    }

    #[test]
    fn refresh_updates_and_lists_remaining_time() {
        let current = [
            binding("sip:bob@192.0.2.10", NOW + 100, "c1", 1),
            binding("sip:bob@phone.example.com", NOW + 500, "other", 9),
        ];
        // same binding, written differently (host case, transport case, extra param)
        let req = register(
            "c1",
            2,
            "Contact: <sip:bob@192.0.2.10;transport=UDP;ob>;expires=600\r\n",
        );
        let current_with_transport = [
            binding("sip:bob@192.0.2.10;transport=udp", NOW + 100, "c1", 1),
            current[1].clone(),
        ];
        let (bindings, response) = accepted(process_register(
            &req,
            &current_with_transport,
            NOW,
            &policy(),
        ));
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[0].contact, "sip:bob@192.0.2.10;transport=UDP;ob");
        assert_eq!((bindings[0].expires_at, bindings[0].cseq), (NOW + 600, 2));
        assert_eq!(
            contacts(&response),
            [
                "<sip:bob@192.0.2.10;transport=UDP;ob>;expires=600",
                "<sip:bob@phone.example.com>;expires=500"
            ]
        );
        // a missing transport parameter on one side makes them different bindings
        let (bindings, _) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!(bindings.len(), 3);
    }

    #[test]
    fn query_lists_bindings_and_drops_expired_ones() {
        let current = [
            binding("sip:a@192.0.2.1", NOW, "x", 1),
            binding("sip:b@192.0.2.2", NOW + 42, "y", 1),
        ];
        let req = register("q", 1, "");
        let (bindings, response) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!(bindings, [current[1].clone()]);
        assert_eq!(contacts(&response), ["<sip:b@192.0.2.2>;expires=42"]);

        let mut list = current.to_vec();
        expire(&mut list, NOW - 1);
        assert_eq!(list.len(), 2);
        expire(&mut list, NOW + 42);
        assert!(list.is_empty());
    }

    #[test]
    fn expires_zero_removes_one_binding() {
        let current = [
            binding("sip:a@192.0.2.1", NOW + 100, "c1", 1),
            binding("sip:b@192.0.2.2", NOW + 100, "c1", 1),
        ];
        let req = register("c1", 2, "Contact: <sip:a@192.0.2.1>;expires=0\r\n");
        let (bindings, response) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!(bindings, [current[1].clone()]);
        assert_eq!(contacts(&response), ["<sip:b@192.0.2.2>;expires=100"]);
        // removing an unknown contact is not an error
        let req = register("c1", 3, "Contact: <sip:z@192.0.2.9>\r\nExpires: 0\r\n");
        let (bindings, _) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!(bindings.len(), 2);
    }

    #[test]
    fn wildcard_removes_all() {
        let current = [
            binding("sip:a@192.0.2.1", NOW + 100, "c1", 1),
            binding("sip:b@192.0.2.2", NOW + 100, "other", 50),
        ];
        let req = register("c1", 2, "Contact: *\r\nExpires: 0\r\n");
        let (bindings, response) = accepted(process_register(&req, &current, NOW, &policy()));
        assert!(bindings.is_empty());
        assert!(contacts(&response).is_empty());
        // same Call-ID with an old CSeq: the whole request fails
        let req = register("c1", 1, "Contact: *\r\nExpires: 0\r\n");
        assert_eq!(
            rejected(process_register(&req, &current, NOW, &policy())).status,
            500
        );
    }

    #[test]
    fn wildcard_misuse_is_400() {
        for extra in [
            "Contact: *\r\n",
            "Contact: *\r\nExpires: 60\r\n",
            "Contact: *\r\nExpires: zero\r\n",
            "Contact: *, <sip:a@192.0.2.1>\r\nExpires: 0\r\n",
            "Contact: *\r\nContact: <sip:a@192.0.2.1>\r\nExpires: 0\r\n",
        ] {
            let req = register("c1", 1, extra);
            let response = rejected(process_register(&req, &[], NOW, &policy()));
            assert_eq!(response.status, 400, "{extra:?}");
            assert_eq!(response.reason, "Bad Request");
            let warning = response.headers.get("Warning").unwrap();
            assert!(
                warning.starts_with("399 voxflow \"wildcard Contact"),
                "{warning}"
            );
        }
    }

    #[test]
    fn malformed_contacts_are_400() {
        for extra in [
            "Contact: <sip:a@192.0.2.1\r\n",
            "Contact: Bell, Alexander <sip:a@192.0.2.1>\r\n",
            "Contact: <sip:a@192.0.2.1>;q=2\r\n",
            "Contact: <sip:a@192.0.2.1>;q=0.1234\r\n",
            "Contact: <sip:a@192.0.2.1>;+sip.instance=\"<urn:x\r\n",
        ] {
            let req = register("c1", 1, extra);
            assert_eq!(
                rejected(process_register(&req, &[], NOW, &policy())).status,
                400,
                "{extra:?}"
            );
        }
    }

    #[test]
    fn out_of_order_cseq_on_same_call_id_is_500() {
        let current = [binding("sip:a@192.0.2.1", NOW + 100, "c1", 5)];
        for cseq in [4, 5] {
            let req = register("c1", cseq, "Contact: <sip:a@192.0.2.1>\r\n");
            let response = rejected(process_register(&req, &current, NOW, &policy()));
            assert_eq!(response.status, 500);
        }
        // another Call-ID may use any CSeq
        let req = register("c2", 1, "Contact: <sip:a@192.0.2.1>\r\n");
        let (bindings, _) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!((bindings[0].call_id.as_str(), bindings[0].cseq), ("c2", 1));
        // a Contact repeated within one request is not out of order
        let req = register(
            "c1",
            6,
            "Contact: <sip:a@192.0.2.1>, <sip:a@192.0.2.1>;expires=90\r\n",
        );
        let (bindings, _) = accepted(process_register(&req, &current, NOW, &policy()));
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].expires_at, NOW + 90);
    }

    #[test]
    fn multiple_contact_headers_and_lists_with_q_and_instance() {
        let req = register(
            "c1",
            1,
            "Contact: <sip:a@192.0.2.1>;q=0.7, <sip:b@192.0.2.2>;q=1\r\n\
             m: <sip:c@192.0.2.3>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";q=0\r\n\
             Expires: 120\r\n",
        );
        let (bindings, response) = accepted(process_register(&req, &[], NOW, &policy()));
        assert_eq!(bindings.len(), 3);
        assert_eq!(bindings[0].q, Some(0.7));
        assert_eq!(bindings[1].q, Some(1.0));
        assert_eq!(
            bindings[2].instance.as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(
            contacts(&response),
            [
                "<sip:a@192.0.2.1>;expires=120;q=0.7",
                "<sip:b@192.0.2.2>;expires=120;q=1",
                "<sip:c@192.0.2.3>;expires=120;q=0;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""
            ]
        );
        // the printed Contact values parse back
        for value in contacts(&response) {
            NameAddr::parse(value).unwrap();
        }
        // the same instance from a new address replaces the binding (RFC 5627)
        let req = register(
            "c9",
            1,
            "Contact: <sip:c@198.51.100.7:5070>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000a95a0e128>\"\r\n",
        );
        let (after, _) = accepted(process_register(&req, &bindings, NOW, &policy()));
        assert_eq!(after.len(), 3);
        assert_eq!(after[2].contact, "sip:c@198.51.100.7:5070");
    }

    #[test]
    fn too_many_contacts_is_403() {
        let policy = RegistrarPolicy {
            max_contacts: 2,
            ..RegistrarPolicy::default()
        };
        let current = [
            binding("sip:a@192.0.2.1", NOW + 100, "c1", 1),
            binding("sip:b@192.0.2.2", NOW + 100, "c1", 1),
        ];
        let req = register("c1", 2, "Contact: <sip:c@192.0.2.3>\r\n");
        let response = rejected(process_register(&req, &current, NOW, &policy));
        assert_eq!(
            (response.status, response.reason.as_str()),
            (403, "Forbidden")
        );
        assert_eq!(
            response.headers.get("Warning"),
            Some("399 voxflow \"too many contacts\"")
        );
        // refreshing existing ones is fine; replacing one by another too
        let req = register(
            "c1",
            3,
            "Contact: <sip:a@192.0.2.1>, <sip:b@192.0.2.2>;expires=0, <sip:c@192.0.2.3>\r\n",
        );
        let (bindings, _) = accepted(process_register(&req, &current, NOW, &policy));
        assert_eq!(bindings.len(), 2);
    }

    #[test]
    fn errors_carry_a_to_tag_and_do_not_need_headers_beyond_the_basics() {
        let mut req = register("c1", 1, "Contact: <sip:a@192.0.2.1>\r\n");
        req.headers.remove("Call-ID");
        let response = rejected(process_register(&req, &[], NOW, &policy()));
        assert_eq!(response.status, 400);
        assert!(response.to().unwrap().tag().is_some());
        let mut options = register("c1", 1, "");
        options.method = crate::Method::Options;
        assert_eq!(
            rejected(process_register(&options, &[], NOW, &policy())).status,
            400
        );
    }

    #[test]
    fn uri_equivalence_rules() {
        let eq =
            |a: &str, b: &str| uris_equivalent(&Uri::parse(a).unwrap(), &Uri::parse(b).unwrap());
        assert!(eq(
            "sip:%61lice@ATLANTA.example.com;transport=TCP",
            "sip:alice@atlanta.example.com;transport=tcp"
        ));
        assert!(eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com"
        ));
        assert!(!eq(
            "SIP:ALICE@AtLanTa.CoM;Transport=udp",
            "sip:alice@AtLanTa.CoM;Transport=UDP"
        ));
        assert!(!eq("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"));
        assert!(!eq("sip:bob@biloxi.com", "sips:bob@biloxi.com"));
        assert!(!eq(
            "sip:carol@chicago.com;security=on",
            "sip:carol@chicago.com;security=off"
        ));
        assert!(eq("tel:+1-201-555-0123", "TEL:+1-201-555-0123"));
        // found by fuzzing: a repeated parameter made a URI differ from itself
        let dup = "sip:a@192.0.2.1;x=1;x=2";
        assert!(eq(dup, dup));
    }

    #[test]
    fn qvalues_and_dates() {
        for (text, q) in [
            ("0", 0.0),
            ("0.5", 0.5),
            ("0.001", 0.001),
            ("1", 1.0),
            ("1.000", 1.0),
            ("0.", 0.0),
        ] {
            assert_eq!(parse_qvalue(text), Some(q), "{text}");
        }
        for bad in ["", "1.5", "2", "0.1234", ".5", "0,5", "-0", "1.001"] {
            assert_eq!(parse_qvalue(bad), None, "{bad}");
        }
        assert_eq!(format_qvalue(0.25), "0.25");
        assert_eq!(format_qvalue(7.0), "1");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_289_690_940), "Sat, 13 Nov 2010 23:29:00 GMT");
        assert_eq!(parse_delta("4294967296"), Some(u32::MAX));
        assert_eq!(parse_delta("+5"), None);
    }
}
