//! The Via header value (RFC 3261 §20.42, §18.2.1; `received`/`rport` from RFC 3581).

use std::fmt;
use std::str::FromStr;

use crate::ParseError;
use crate::grammar::{is_lws, is_token_char, trim_lws};
use crate::params::Params;

/// The magic cookie that starts every RFC 3261 branch (§8.1.1.7).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    transport: String,
    host: String,
    port: Option<u16>,
    params: Params,
}

impl Via {
    /// A Via for `transport` (`UDP`, `TCP`, ...) and sent-by `host[:port]`, without parameters.
    pub fn new(transport: &str, host: &str, port: Option<u16>) -> Via {
        Via {
            transport: transport.to_owned(),
            host: host.to_owned(),
            port,
            params: Params::new(),
        }
    }

    /// Parses one Via value (not a comma-separated list). LWS is allowed around `/`, `:`, `;`
    /// and `=`.
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        parse_via(s).ok_or(ParseError::InvalidVia)
    }

    /// The transport token as written (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, ...).
    pub fn transport(&self) -> &str {
        &self.transport
    }

    /// The sent-by host as written (IPv6 references keep their brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The sent-by port, if explicit.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The sent-by `(host, port)`.
    pub fn sent_by(&self) -> (&str, Option<u16>) {
        (&self.host, self.port)
    }

    /// The `branch` parameter, if present and non-empty.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").filter(|b| !b.is_empty())
    }

    /// One parameter (`Some("")` for a flag such as an empty `rport`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name)
    }

    /// The parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Sets (or adds) a parameter; `None` = no value.
    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        self.params.set(name, value);
    }

    /// The parameters, to change them.
    pub fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl FromStr for Via {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Via, ParseError> {
        Via::parse(s)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write!(f, "{}", self.params)
    }
}

fn take_token(s: &str) -> (&str, &str) {
    s.split_at(s.find(|c| !is_token_char(c)).unwrap_or(s.len()))
}

fn skip_separator(s: &str, sep: char) -> Option<&str> {
    Some(
        s.trim_start_matches(is_lws)
            .strip_prefix(sep)?
            .trim_start_matches(is_lws),
    )
}

fn parse_via(s: &str) -> Option<Via> {
    let s = trim_lws(s);
    let (protocol, rest) = take_token(s);
    if !protocol.eq_ignore_ascii_case("SIP") {
        return None;
    }
    let (version, rest) = take_token(skip_separator(rest, '/')?);
    if version != "2.0" {
        return None;
    }
    let (transport, rest) = take_token(skip_separator(rest, '/')?);
    if transport.is_empty() || !rest.starts_with(is_lws) {
        return None;
    }
    let rest = rest.trim_start_matches(is_lws);
    let host_len = if rest.starts_with('[') {
        let end = rest.find(']')?;
        rest.get(1..end)?.parse::<std::net::Ipv6Addr>().ok()?;
        end + 1
    } else {
        rest.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
            .unwrap_or(rest.len())
    };
    if host_len == 0 {
        return None;
    }
    let (host, mut rest) = rest.split_at(host_len);
    let mut port = None;
    if let Some(after) = skip_separator(rest, ':') {
        let len = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        let (digits, after) = after.split_at(len);
        if digits.is_empty() || digits.len() > 5 {
            return None;
        }
        port = Some(digits.parse::<u16>().ok()?);
        rest = after;
    }
    Some(Via {
        transport: transport.to_owned(),
        host: host.to_owned(),
        port,
        params: Params::parse_header(rest)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> Via {
        let via = Via::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via, "{s}");
        via
    }

    #[test]
    fn plain_via() {
        let via = round_trip("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport");
        assert_eq!(via.transport(), "UDP");
        assert_eq!(via.sent_by(), ("192.0.2.1", Some(5060)));
        assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(via.param("rport"), Some(""));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport"
        );
    }

    #[test]
    fn unusual_spacing_and_transports() {
        let via = round_trip("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw");
        assert_eq!(via.host(), "192.0.2.2");
        assert_eq!(via.port(), None);
        let via =
            round_trip("SIP  / 2.0  / TCP     spindle.example.com   ;  branch  =   z9hG4bK9ikj8");
        assert_eq!(via.transport(), "TCP");
        assert_eq!(via.branch(), Some("z9hG4bK9ikj8"));
        let via = round_trip("SIP/2.0/UNKNOWN t4.example.com : 5070 ;branch=z9hG4bKasd0f3en");
        assert_eq!(via.sent_by(), ("t4.example.com", Some(5070)));
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let via = round_trip(
            "SIP/2.0/UDP [2001:db8::9:1]:5060;received=2001:db8::9:255;branch=z9hG4bKas3",
        );
        assert_eq!(via.host(), "[2001:db8::9:1]");
        assert_eq!(via.param("received"), Some("2001:db8::9:255"));
    }

    #[test]
    fn set_received_and_rport() {
        let mut via = Via::parse("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKx;rport").unwrap();
        via.set_param("received", Some("192.0.2.4"));
        via.set_param("rport", Some("5070"));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP pc33.example.com;branch=z9hG4bKx;rport=5070;received=192.0.2.4"
        );
    }

    #[test]
    fn malformed_vias_rejected() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP 192.0.2.15;",
            "SIP/3.0/UDP host",
            "SIP/2.0/ host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP [::1",
            "SIP/2.0/UDP host junk",
            "HTTP/2.0/UDP host",
            "",
        ] {
            assert_eq!(Via::parse(bad), Err(ParseError::InvalidVia), "{bad:?}");
        }
    }
}
