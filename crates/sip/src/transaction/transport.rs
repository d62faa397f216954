//! What the transaction layer needs of the transport layer (RFC 3261 §18): where a message goes,
//! and where responses to a received request are sent (§18.2.2 with RFC 3581 `rport`).

use std::net::{IpAddr, SocketAddr};

use crate::grammar::list_separator;
use crate::{Request, Via};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, so the transaction layer retransmits.
    Udp,
    /// TCP: reliable, no retransmissions; responses go back on the same connection.
    Tcp,
}

impl Transport {
    /// Whether the transport is reliable (no retransmissions, zero-length wait timers).
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }

    /// The transport token of a Via (`UDP`, `TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// The other end of a message: the source of what we received, or the destination of what we
/// send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The transport.
    pub transport: Transport,
    /// The remote address.
    pub addr: SocketAddr,
    /// The shell's id of the TCP connection (`None` for UDP, or to let the shell pick or open
    /// a connection to `addr`).
    pub conn: Option<u64>,
}

/// Bytes to send to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send them.
    pub peer: Peer,
    /// A whole SIP message.
    pub data: Vec<u8>,
}

/// Adds `received` to the top Via when the source address differs from its sent-by host
/// (§18.2.1), fills an empty `rport` with the source port (RFC 3581 §4), and returns where
/// responses to this request must go: over TCP the same connection; over UDP the source
/// address, with the source port if `rport` was requested, else the Via port or 5060.
pub(super) fn stamp_top_via(req: &mut Request, source: Peer) -> Peer {
    let Some(mut via) = req.top_via() else {
        return source;
    };
    let src_ip = source.addr.ip();
    let via_ip = via
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    let mut changed = false;
    if via_ip != Some(src_ip) {
        via.set_param("received", Some(&src_ip.to_string()));
        changed = true;
    }
    let wants_rport = via.param("rport").is_some();
    if wants_rport {
        via.set_param("rport", Some(&source.addr.port().to_string()));
        changed = true;
    }
    if changed {
        replace_top_via(req, &via);
    }
    match source.transport {
        Transport::Tcp => source,
        Transport::Udp => {
            let port = if wants_rport {
                source.addr.port()
            } else {
                via.port().unwrap_or(5060)
            };
            Peer {
                addr: SocketAddr::new(src_ip, port),
                ..source
            }
        }
    }
}

/// Rewrites the first value of the first Via line, keeping the rest of the line as written.
fn replace_top_via(req: &mut Request, via: &Via) {
    if let Some(line) = req.headers.get_mut("Via") {
        let rest = match list_separator(line) {
            Some(Some(i)) => line.get(i..).unwrap_or("").to_owned(),
            _ => String::new(),
        };
        *line = format!("{via}{rest}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Method, Uri};

    fn request(via: &str) -> Request {
        let mut req = Request::new(Method::Options, Uri::parse("sip:a@b").unwrap());
        req.headers.push("Via", via);
        req
    }

    fn udp(addr: &str) -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: addr.parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn same_host_no_rport_goes_to_via_port() {
        let mut req = request("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1");
        let dest = stamp_top_via(&mut req, udp("192.0.2.1:40000"));
        assert_eq!(dest.addr, "192.0.2.1:5070".parse().unwrap());
        assert_eq!(
            req.headers.get("Via"),
            Some("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK1")
        );
        let mut req = request("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1");
        assert_eq!(
            stamp_top_via(&mut req, udp("192.0.2.1:40000")).addr.port(),
            5060
        );
    }

    #[test]
    fn nat_rport_and_received() {
        let mut req = request(
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport, SIP/2.0/UDP p.example.com;branch=z9hG4bK0",
        );
        let dest = stamp_top_via(&mut req, udp("198.51.100.7:31000"));
        assert_eq!(dest.addr, "198.51.100.7:31000".parse().unwrap());
        assert_eq!(
            req.headers.get("Via"),
            Some(
                "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport=31000;received=198.51.100.7, SIP/2.0/UDP p.example.com;branch=z9hG4bK0"
            )
        );
    }

    #[test]
    fn hostname_gets_received_and_source_ip() {
        let mut req = request("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1");
        let dest = stamp_top_via(&mut req, udp("192.0.2.9:5062"));
        assert_eq!(dest.addr, "192.0.2.9:5060".parse().unwrap());
        assert_eq!(req.top_via().unwrap().param("received"), Some("192.0.2.9"));
    }

    #[test]
    fn ipv6_and_tcp() {
        let mut req = request("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK1;rport");
        let source = Peer {
            transport: Transport::Tcp,
            addr: "[2001:db8::1]:49152".parse().unwrap(),
            conn: Some(7),
        };
        assert_eq!(stamp_top_via(&mut req, source), source);
        let via = req.top_via().unwrap();
        assert_eq!(via.param("received"), None);
        assert_eq!(via.param("rport"), Some("49152"));
    }
}
