//! IP allow-lists (devices trusted by address, trunks' inbound sources): addresses and CIDR
//! blocks, IPv4 and IPv6.

use std::net::IpAddr;

/// Parse `192.0.2.7`, `192.0.2.0/24`, `2001:db8::1` or `2001:db8::/32` into an address and a
/// prefix length. `None` for anything else (including a prefix longer than the address).
#[must_use]
pub fn parse_cidr(text: &str) -> Option<(IpAddr, u8)> {
    let (ip, bits) = match text.trim().split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = ip.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max)?,
        None => max,
    };
    Some((ip, bits))
}

/// Whether `ip` is in one of the entries of `list` (entries that do not parse match nothing).
#[must_use]
pub fn allows(list: &[String], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    list.iter()
        .filter_map(|entry| parse_cidr(entry))
        .any(|(net, bits)| contains(canonical(net), bits, ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.7`) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_blocks_match() {
        let list = vec![
            "192.0.2.0/24".to_owned(),
            "2001:db8::1".to_owned(),
            "junk".to_owned(),
        ];
        assert!(allows(&list, ip("192.0.2.200")));
        assert!(!allows(&list, ip("192.0.3.1")));
        assert!(allows(&list, ip("2001:db8::1")));
        assert!(!allows(&list, ip("2001:db8::2")));
        assert!(allows(&list, ip("::ffff:192.0.2.9")), "IPv4-mapped IPv6");
        assert!(allows(&["0.0.0.0/0".to_owned()], ip("203.0.113.1")));
        assert!(!allows(&[], ip("127.0.0.1")));
    }

    #[test]
    fn parse_refuses_bad_entries() {
        assert_eq!(parse_cidr("10.0.0.0/8"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(parse_cidr("::1"), Some((ip("::1"), 128)));
        for bad in ["10.0.0.0/33", "::/129", "example.com", "10.0.0.0/x", ""] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }
}
