//! Locating SIP servers (RFC 3263 §4) for trunk hosts: an IP literal or a host with an explicit
//! port is used as is (A/AAAA for a name); otherwise NAPTR picks the transport and the SRV name,
//! SRV gives targets by priority and weight, and A/AAAA their addresses. The ordering rules are
//! plain functions (tested here); hickory-resolver does the lookups.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{RData, RecordType};
use sip::Transport;

/// Bound on one lookup.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A NAPTR record as far as SIP cares (RFC 3263 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naptr {
    pub(crate) order: u16,
    pub(crate) preference: u16,
    pub(crate) service: String,
    pub(crate) replacement: String,
}

/// An SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    pub(crate) target: String,
}

/// The transport and SRV name to use from NAPTR records: the lowest order, then preference,
/// among the services we speak (`SIP+D2U` UDP, `SIP+D2T` TCP), restricted to `wanted` when the
/// trunk names a transport.
pub(crate) fn pick_naptr(
    records: &[Naptr],
    wanted: Option<Transport>,
) -> Option<(Transport, String)> {
    let mut usable: Vec<(&Naptr, Transport)> = records
        .iter()
        .filter_map(|r| {
            let transport = match r.service.to_ascii_uppercase().as_str() {
                "SIP+D2U" => Transport::Udp,
                "SIP+D2T" => Transport::Tcp,
                _ => return None,
            };
            (wanted.is_none_or(|w| w == transport) && !r.replacement.is_empty())
                .then_some((r, transport))
        })
        .collect();
    usable.sort_by_key(|(r, _)| (r.order, r.preference));
    usable.first().map(|(r, t)| (*t, r.replacement.clone()))
}

/// SRV targets in the order to try: by priority, and within a priority by weight, heaviest first
/// (a deterministic reading of RFC 2782's weighted choice, so a trunk always hits its primary).
/// A single record with target "." means the service is not offered.
pub(crate) fn order_srv(mut records: Vec<Srv>) -> Vec<Srv> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    records
}

/// Resolve a trunk host to the addresses to try, in order.
pub(crate) async fn resolve(
    resolver: &TokioResolver,
    host: &str,
    port: Option<u16>,
    transport: Option<Transport>,
) -> Result<Vec<(Transport, SocketAddr)>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let default_transport = transport.unwrap_or(Transport::Udp);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![(
            default_transport,
            SocketAddr::new(ip, port.unwrap_or(5060)),
        )]);
    }
    if let Some(port) = port {
        let ips = lookup_ip(resolver, bare).await?;
        return Ok(ips
            .into_iter()
            .map(|ip| (default_transport, SocketAddr::new(ip, port)))
            .collect());
    }
    // NAPTR → SRV name and transport; without NAPTR, the SRV names of the transports we speak.
    let naptr = lookup_naptr(resolver, bare).await;
    let candidates: Vec<(Transport, String)> = match pick_naptr(&naptr, transport) {
        Some(choice) => vec![choice],
        None => [(Transport::Udp, "_sip._udp"), (Transport::Tcp, "_sip._tcp")]
            .into_iter()
            .filter(|(t, _)| transport.is_none_or(|w| w == *t))
            .map(|(t, prefix)| (t, format!("{prefix}.{bare}")))
            .collect(),
    };
    for (transport, name) in candidates {
        let srv = order_srv(lookup_srv(resolver, &name).await);
        let mut out = Vec::new();
        for record in srv {
            if let Ok(ips) = lookup_ip(resolver, record.target.trim_end_matches('.')).await {
                out.extend(
                    ips.into_iter()
                        .map(|ip| (transport, SocketAddr::new(ip, record.port))),
                );
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    // No SRV: the host itself on 5060 (RFC 3263 §4.2).
    let ips = lookup_ip(resolver, bare).await?;
    Ok(ips
        .into_iter()
        .map(|ip| (default_transport, SocketAddr::new(ip, 5060)))
        .collect())
}

async fn lookup_ip(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup_ip(host))
        .await
        .map_err(|_| format!("{host}: DNS timed out"))?
        .map_err(|e| format!("{host}: {e}"))?;
    let ips: Vec<IpAddr> = found.iter().collect();
    if ips.is_empty() {
        Err(format!("{host}: no address"))
    } else {
        Ok(ips)
    }
}

async fn lookup_naptr(resolver: &TokioResolver, host: &str) -> Vec<Naptr> {
    lookup_records(resolver, host, RecordType::NAPTR, |data| match data {
        RData::NAPTR(n) => Some(Naptr {
            order: n.order,
            preference: n.preference,
            service: String::from_utf8_lossy(&n.services).into_owned(),
            replacement: n.replacement.to_utf8().trim_end_matches('.').to_owned(),
        }),
        _ => None,
    })
    .await
}

async fn lookup_srv(resolver: &TokioResolver, name: &str) -> Vec<Srv> {
    lookup_records(resolver, name, RecordType::SRV, |data| match data {
        RData::SRV(s) => Some(Srv {
            priority: s.priority,
            weight: s.weight,
            port: s.port,
            target: s.target.to_utf8(),
        }),
        _ => None,
    })
    .await
}

/// The answers of one lookup of `record_type` that `read` understands; none on an error or a
/// timeout (RFC 3263 then falls back to the next step).
async fn lookup_records<T>(
    resolver: &TokioResolver,
    name: &str,
    record_type: RecordType,
    read: impl Fn(&RData) -> Option<T>,
) -> Vec<T> {
    let Ok(Ok(found)) =
        tokio::time::timeout(LOOKUP_TIMEOUT, resolver.lookup(name, record_type)).await
    else {
        return Vec::new();
    };
    found
        .answers()
        .iter()
        .filter_map(|record| read(&record.data))
        .collect()
}
#[cfg(test)]
mod tests {
    use super::*;

    fn naptr(order: u16, preference: u16, service: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference,
            service: service.into(),
            replacement: replacement.into(),
        }
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn naptr_picks_the_lowest_order_then_preference_we_speak() {
        let records = vec![
            naptr(50, 50, "SIPS+D2T", "_sips._tcp.example.com"),
            naptr(90, 40, "SIP+D2U", "_sip._udp.example.com"),
            naptr(90, 30, "SIP+D2T", "_sip._tcp.example.com"),
        ];
        assert_eq!(
            pick_naptr(&records, None),
            Some((Transport::Tcp, "_sip._tcp.example.com".into()))
        );
        assert_eq!(
            pick_naptr(&records, Some(Transport::Udp)),
            Some((Transport::Udp, "_sip._udp.example.com".into()))
        );
        assert_eq!(pick_naptr(&[naptr(1, 1, "SIPS+D2T", "x")], None), None);
    }

    #[test]
    fn srv_orders_by_priority_then_weight_and_drops_the_dot_target() {
        let ordered = order_srv(vec![
            srv(20, 0, "backup.example.com."),
            srv(10, 10, "b.example.com."),
            srv(10, 60, "a.example.com."),
        ]);
        let targets: Vec<&str> = ordered.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(
            targets,
            ["a.example.com.", "b.example.com.", "backup.example.com."]
        );
        assert!(order_srv(vec![srv(0, 0, ".")]).is_empty());
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_need_no_srv() {
        let resolver = TokioResolver::builder_tokio().unwrap().build().unwrap();
        assert_eq!(
            resolve(&resolver, "192.0.2.7", None, None).await.unwrap(),
            vec![(Transport::Udp, "192.0.2.7:5060".parse().unwrap())]
        );
        assert_eq!(
            resolve(&resolver, "[::1]", Some(5080), Some(Transport::Tcp))
                .await
                .unwrap(),
            vec![(Transport::Tcp, "[::1]:5080".parse().unwrap())]
        );
    }
}
