//! The outbound URL guard (SSRF): what `play`, `fetch` and `webhook_send` may reach.
//!
//! Flows are written by API users, and the URLs they name are fetched from inside the
//! operator's network. Unless the operator allows it (`--allow-private-urls`), a request is
//! refused when its target is not a public address:
//!
//! - **Before the request** ([`UrlPolicy::check`]): only http and https; a host that is an IP
//!   literal (dotted quad, bracketed IPv6, and the decimal, octal and hex IPv4 forms, which the
//!   URL parser normalizes: `http://2130706433/` and `http://0x7f.1/` are 127.0.0.1) must not be
//!   [forbidden](forbidden); `localhost` and `*.localhost` are refused by name.
//! - **At connection time** ([`GuardedResolver`]): names are resolved with the system resolver,
//!   and the request fails if *any* of the addresses is forbidden (a mixed answer cannot smuggle a
//!   private address in). The connection goes to the addresses checked, so a name that changes
//!   its answer between two lookups (DNS rebinding) gains nothing.
//! - **Redirects** ([`redirect_policy`]): every hop is checked like the first URL (IP literals
//!   here, names by the resolver), at most [`MAX_REDIRECTS`] hops.
//!
//! Forbidden: every address that is not globally routable unicast, and the ranges reserved for
//! documentation and benchmarking (no legitimate prompt or webhook server lives there, so
//! refusing them costs nothing). IPv6 addresses that embed an IPv4 address (mapped,
//! compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by that IPv4 address.
//!
//! An HTTP proxy configured through the environment (`HTTP_PROXY`, `HTTPS_PROXY`) resolves the
//! names itself: then only IP literals are checked here, and the proxy must enforce its own
//! policy.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Url, redirect};

/// Most redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 5;

/// What every refusal of a private target ends with.
const HINT: &str = "start voxflow with --allow-private-urls to allow private and loopback targets";

/// Which targets outbound requests may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct UrlPolicy {
    /// Private, loopback, link-local and other non-public targets are allowed
    /// (`--allow-private-urls`).
    pub(crate) allow_private: bool,
}

impl UrlPolicy {
    /// Check `url` before a request: always its scheme, and, unless private targets are
    /// allowed, a literal host (see [`check_url`]).
    pub(crate) fn check(self, url: &str) -> Result<(), GuardError> {
        if self.allow_private {
            parse_http(url).map(drop)
        } else {
            check_url(url)
        }
    }
}

/// Why a URL is not fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GuardError {
    /// Not a URL at all.
    #[error("refused: {url:?} is not a valid URL ({reason})")]
    Invalid {
        /// The text given.
        url: String,
        /// What the URL parser said.
        reason: String,
    },
    /// A scheme other than http or https.
    #[error("refused: {scheme} URLs are not fetched (only http and https)")]
    Scheme {
        /// The URL's scheme.
        scheme: String,
    },
    /// The host is an IP literal that is not public.
    #[error("refused: {ip} is {}; {HINT}", .why)]
    Address {
        /// The address.
        ip: IpAddr,
        /// What kind of address it is.
        why: Why,
    },
    /// The host's name resolved to an address that is not public.
    #[error("refused: {host} resolves to {ip}, {}; {HINT}", .why)]
    Resolved {
        /// The name.
        host: String,
        /// The first forbidden address it resolved to.
        ip: IpAddr,
        /// What kind of address it is.
        why: Why,
    },
    /// `localhost` or a name under `.localhost` (always the loopback interface, RFC 6761).
    #[error("refused: {host} is the loopback interface; {HINT}")]
    LoopbackName {
        /// The name.
        host: String,
    },
    /// A redirect chain longer than [`MAX_REDIRECTS`].
    #[error("refused: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects,
}

/// What kind of forbidden address an address is (a phrase: "a loopback address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Why {
    /// The kind, e.g. "a private address".
    pub(crate) what: &'static str,
    /// The IPv4 address an IPv6 address embeds, when that is what was judged.
    pub(crate) embedded: Option<Ipv4Addr>,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)?;
        if let Some(v4) = self.embedded {
            write!(f, " (it embeds the IPv4 address {v4})")?;
        }
        Ok(())
    }
}

/// Whether `ip` is a target refused unless private targets are allowed.
pub(crate) fn is_forbidden(ip: IpAddr) -> bool {
    forbidden(ip).is_some()
}

/// What kind of forbidden address `ip` is; `None` for a public address.
pub(crate) fn forbidden(ip: IpAddr) -> Option<Why> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(|what| Why {
            what,
            embedded: None,
        }),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// The IPv4 ranges refused, as (network, prefix length, what).
const V4_RANGES: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "a \"this network\" address (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "a private address"),
    (
        [100, 64, 0, 0],
        10,
        "a shared address (carrier-grade NAT, 100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "a loopback address"),
    (
        [169, 254, 0, 0],
        16,
        "a link-local address (where cloud metadata services live)",
    ),
    ([172, 16, 0, 0], 12, "a private address"),
    (
        [192, 0, 0, 0],
        24,
        "an IETF protocol assignment (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "a documentation address"),
    ([192, 168, 0, 0], 16, "a private address"),
    (
        [198, 18, 0, 0],
        15,
        "a benchmarking address (198.18.0.0/15)",
    ),
    ([198, 51, 100, 0], 24, "a documentation address"),
    ([203, 0, 113, 0], 24, "a documentation address"),
    ([224, 0, 0, 0], 4, "a multicast address"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([240, 0, 0, 0], 4, "a reserved address (240.0.0.0/4)"),
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, len, _)| in_prefix(bits, u32::from_be_bytes(*net), *len))
        .map(|(_, _, what)| *what)
}

/// Whether `bits` is in `net/len` (32-bit).
fn in_prefix(bits: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    bits & mask == net & mask
}

/// The IPv6 ranges refused outright, as (network, prefix length, what).
const V6_RANGES: &[(u128, u8, &str)] = &[
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        "a discard-only address (100::/64)",
    ),
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        "a local-use NAT64 address (64:ff9b:1::/48)",
    ),
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        32,
        "a Teredo tunnel address (2001::/32)",
    ),
    (
        0x2001_0002_0000_0000_0000_0000_0000_0000,
        48,
        "a benchmarking address (2001:2::/48)",
    ),
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        "a documentation address",
    ),
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        "a unique-local address (fc00::/7)",
    ),
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        "a link-local address",
    ),
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        "a site-local address",
    ),
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        "a multicast address",
    ),
];

fn forbidden_v6(ip: Ipv6Addr) -> Option<Why> {
    let bits = u128::from(ip);
    let plain = |what| {
        Some(Why {
            what,
            embedded: None,
        })
    };
    if ip.is_unspecified() {
        return plain("the unspecified address");
    }
    if ip.is_loopback() {
        return plain("a loopback address");
    }
    if let Some(v4) = embedded_v4(bits) {
        return forbidden_v4(v4).map(|what| Why {
            what,
            embedded: Some(v4),
        });
    }
    V6_RANGES
        .iter()
        .find(|(net, len, _)| in_prefix6(bits, *net, *len))
        .and_then(|(_, _, what)| plain(what))
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible
/// (`::/96`), NAT64 (`64:ff9b::/96`) and 6to4 (`2002::/16`, the router's address).
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_prefix6(bits, 0xffff_0000_0000, 96)
        || in_prefix6(bits, 0, 96)
        || in_prefix6(bits, 0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96)
    {
        return Some(low);
    }
    if in_prefix6(bits, 0x2002_0000_0000_0000_0000_0000_0000_0000, 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// Whether `bits` is in `net/len` (128-bit).
fn in_prefix6(bits: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    bits & mask == net & mask
}

/// Parse `url` and require http or https.
fn parse_http(url: &str) -> Result<Url, GuardError> {
    let parsed = Url::parse(url).map_err(|e| GuardError::Invalid {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(GuardError::Scheme {
            scheme: other.to_owned(),
        }),
    }
}

/// The strict check: `url` is http(s), and its host is not a forbidden IP literal nor a
/// `localhost` name. Names are checked when they are resolved ([`GuardedResolver`]).
pub(crate) fn check_url(url: &str) -> Result<(), GuardError> {
    check_parsed(&parse_http(url)?)
}

fn check_parsed(url: &Url) -> Result<(), GuardError> {
    // The URL parser serializes IPv4 hosts in every spelling as dotted quads, and IPv6 hosts
    // in brackets: what does not parse as an address here is a name.
    let host = url.host_str().ok_or_else(|| GuardError::Invalid {
        url: url.to_string(),
        reason: "no host".to_owned(),
    })?;
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return check_name(host);
    };
    match forbidden(ip) {
        Some(why) => Err(GuardError::Address { ip, why }),
        None => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), GuardError> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Err(GuardError::LoopbackName { host: name });
    }
    Ok(())
}

/// The addresses `host` resolved to, or the refusal if any of them is forbidden.
pub(crate) fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), GuardError> {
    if !addrs.iter().any(|a| is_forbidden(a.ip())) {
        return Ok(());
    }
    match addrs
        .iter()
        .find_map(|a| forbidden(a.ip()).map(|why| (a.ip(), why)))
    {
        Some((ip, why)) => Err(GuardError::Resolved {
            host: host.to_owned(),
            ip,
            why,
        }),
        None => Ok(()),
    }
}

/// A reqwest resolver: the system resolver, refusing names with any forbidden address.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host}: no address").into());
            }
            check_resolved(&host, &addrs)?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Follow at most [`MAX_REDIRECTS`] redirects, each target checked by `policy` first.
pub(crate) fn redirect_policy(policy: UrlPolicy) -> redirect::Policy {
    redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(GuardError::TooManyRedirects);
        }
        let verdict = if policy.allow_private {
            Ok(())
        } else {
            check_parsed(attempt.url())
        };
        match verdict {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e),
        }
    })
}

/// The guard in a request error's causes (a refused name or redirect), as a sentence.
pub(crate) fn refusal(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    for _ in 0..16 {
        let current = cause?;
        if let Some(refused) = current.downcast_ref::<GuardError>() {
            return Some(refused.to_string());
        }
        cause = current.source();
    }
    None
}

/// The runtime's HTTP client with its URL policy: every request is checked before it is made,
/// and (unless private targets are allowed) names and redirects are checked on the way.
#[derive(Debug, Clone)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    policy: UrlPolicy,
}

impl HttpClient {
    /// Finish `builder` with the guard's resolver and redirect policy (the redirect limit only,
    /// when private targets are allowed).
    pub(crate) fn build(
        policy: UrlPolicy,
        builder: reqwest::ClientBuilder,
    ) -> Result<HttpClient, reqwest::Error> {
        // reqwest is built without a default TLS provider: make sure one is installed (a
        // no-op when the process already has one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = builder.redirect(redirect_policy(policy));
        let builder = if policy.allow_private {
            builder
        } else {
            builder.dns_resolver(GuardedResolver)
        };
        Ok(HttpClient {
            client: builder.build()?,
            policy,
        })
    }

    /// The policy requests are checked against.
    pub(crate) fn policy(&self) -> UrlPolicy {
        self.policy
    }

    /// A request to `url`, once it passes the policy.
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, GuardError> {
        self.policy.check(url)?;
        Ok(self.client.request(method, url))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse().unwrap())
    }

    fn v6(s: &str) -> IpAddr {
        IpAddr::V6(s.parse().unwrap())
    }

    #[test]
    fn ipv4_ranges_that_are_not_public_are_forbidden() {
        for (ip, what) in [
            ("0.0.0.0", "this network"),
            ("0.255.1.2", "this network"),
            ("10.0.0.1", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.1", "carrier-grade NAT"),
            ("100.127.255.254", "carrier-grade NAT"),
            ("127.0.0.1", "loopback"),
            ("127.255.0.9", "loopback"),
            ("169.254.169.254", "cloud metadata"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.170", "IETF protocol"),
            ("192.0.2.1", "documentation"),
            ("192.168.1.1", "private"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.50", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "broadcast"),
        ] {
            let why = forbidden(v4(ip)).unwrap_or_else(|| panic!("{ip} should be forbidden"));
            assert!(why.what.contains(what), "{ip}: {}", why.what);
            assert!(is_forbidden(v4(ip)));
        }
    }

    #[test]
    fn public_ipv4_addresses_and_range_edges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!is_forbidden(v4(ip)), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_ranges_that_are_not_public_are_forbidden() {
        for (ip, what) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique-local"),
            ("fd12:3456::1", "unique-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "discard"),
            ("2001:db8::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("2001:0:4136:e378::1", "Teredo"),
            ("64:ff9b:1::1", "local-use NAT64"),
        ] {
            let why = forbidden(v6(ip)).unwrap_or_else(|| panic!("{ip} should be forbidden"));
            assert!(why.what.contains(what), "{ip}: {}", why.what);
        }
        for ip in [
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "fbff::1",
            "fe7f::1",
            "2001:db9::1",
        ] {
            assert!(!is_forbidden(v6(ip)), "{ip} should be allowed");
        }
    }

    #[test]
    fn ipv6_addresses_embedding_ipv4_are_judged_by_the_ipv4_address() {
        for (ip, inner) in [
            ("::ffff:127.0.0.1", "127.0.0.1"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("::ffff:169.254.169.254", "169.254.169.254"),
            ("::127.0.0.1", "127.0.0.1"),
            ("::192.168.0.1", "192.168.0.1"),
            ("64:ff9b::10.0.0.1", "10.0.0.1"),
            ("64:ff9b::7f00:1", "127.0.0.1"),
            ("2002:c0a8:0101::1", "192.168.1.1"),
            ("2002:7f00:0001::", "127.0.0.1"),
        ] {
            let why = forbidden(v6(ip)).unwrap_or_else(|| panic!("{ip} should be forbidden"));
            assert_eq!(why.embedded, Some(inner.parse().unwrap()), "{ip}");
        }
        for ip in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:0808:0808::1"] {
            assert!(!is_forbidden(v6(ip)), "{ip} should be allowed");
        }
    }

    #[test]
    fn literal_hosts_in_every_spelling_are_checked() {
        for url in [
            "http://127.0.0.1/",
            "https://127.0.0.1:8443/a.wav",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://017700000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://10.1/",
            "http://0/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://[fe80::1]/",
            "http://[fd00::5]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://169.254.169.254/latest/meta-data/",
            "http://user:pass@192.168.0.1/",
            "http://localhost:8080/",
            "http://LocalHost./",
            "http://api.localhost/",
        ] {
            assert!(check_url(url).is_err(), "{url} should be refused");
            assert_eq!(
                UrlPolicy {
                    allow_private: true
                }
                .check(url),
                Ok(()),
                "{url} is allowed with allow_private"
            );
        }
        for url in [
            "http://8.8.8.8/",
            "https://example.com/prompt.wav",
            "http://[2606:4700::1111]/",
            "https://127.0.0.1.example.com/",
            "http://localhost.example.com/",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn refusals_say_what_the_address_is_and_how_to_allow_it() {
        assert_eq!(
            check_url("http://127.0.0.1/x").unwrap_err().to_string(),
            "refused: 127.0.0.1 is a loopback address; start voxflow with --allow-private-urls \
             to allow private and loopback targets"
        );
        assert_eq!(
            check_url("http://0x7f.1/").unwrap_err(),
            GuardError::Address {
                ip: v4("127.0.0.1"),
                why: Why {
                    what: "a loopback address",
                    embedded: None
                }
            }
        );
        let mapped = check_url("http://[::ffff:10.0.0.1]/")
            .unwrap_err()
            .to_string();
        assert!(
            mapped.starts_with(
                "refused: ::ffff:10.0.0.1 is a private address (it embeds the IPv4 address \
                 10.0.0.1)"
            ),
            "{mapped}"
        );
    }

    #[test]
    fn only_http_and_https_are_fetched_whatever_the_policy() {
        for policy in [
            UrlPolicy::default(),
            UrlPolicy {
                allow_private: true,
            },
        ] {
            for url in [
                "file:///etc/passwd",
                "ftp://8.8.8.8/a.wav",
                "gopher://8.8.8.8/",
            ] {
                assert!(
                    matches!(policy.check(url), Err(GuardError::Scheme { .. })),
                    "{url}"
                );
            }
            assert!(matches!(
                policy.check("not a url"),
                Err(GuardError::Invalid { .. })
            ));
            assert!(matches!(
                policy.check("http://1.2.3.4.5/"),
                Err(GuardError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn a_name_with_any_forbidden_address_is_refused() {
        let public: SocketAddr = "93.184.215.14:0".parse().unwrap();
        let private: SocketAddr = "10.0.0.7:0".parse().unwrap();
        let public6: SocketAddr = "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:0"
            .parse()
            .unwrap();
        assert_eq!(check_resolved("example.test", &[public, public6]), Ok(()));
        let mixed = check_resolved("example.test", &[public, private, public6]).unwrap_err();
        assert_eq!(
            mixed.to_string(),
            "refused: example.test resolves to 10.0.0.7, a private address; start voxflow \
             with --allow-private-urls to allow private and loopback targets"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_localhost() {
        let err = GuardedResolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost resolves to loopback");
        let refused = err.downcast_ref::<GuardError>().expect("a guard refusal");
        assert!(
            matches!(refused, GuardError::Resolved { host, ip, .. } if host == "localhost" && ip.is_loopback()),
            "{refused}"
        );
    }

    /// A loopback HTTP server counting its requests: `/ok` answers 200, `/to?url` redirects to
    /// `url`, `/loop` redirects to itself.
    struct Server {
        base: String,
        port: u16,
        hits: Arc<AtomicUsize>,
    }

    async fn serve() -> Server {
        async fn ok(State(hits): State<Arc<AtomicUsize>>) -> &'static str {
            hits.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
        async fn to(
            State(hits): State<Arc<AtomicUsize>>,
            query: axum::extract::RawQuery,
        ) -> Response {
            hits.fetch_add(1, Ordering::SeqCst);
            let mut headers = HeaderMap::new();
            let target = query.0.unwrap_or_default();
            headers.insert(header::LOCATION, target.parse().unwrap());
            (StatusCode::FOUND, headers).into_response()
        }
        async fn looping(State(hits): State<Arc<AtomicUsize>>) -> Response {
            hits.fetch_add(1, Ordering::SeqCst);
            (StatusCode::FOUND, [(header::LOCATION, "/loop")]).into_response()
        }
        let hits = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/ok", get(ok))
            .route("/to", get(to))
            .route("/loop", get(looping))
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            base: format!("http://127.0.0.1:{port}"),
            port,
            hits,
        }
    }

    fn client(allow_private: bool) -> HttpClient {
        HttpClient::build(UrlPolicy { allow_private }, reqwest::Client::builder()).unwrap()
    }

    #[tokio::test]
    async fn a_guarded_client_refuses_a_loopback_server_that_an_allowing_client_reaches() {
        let server = serve().await;
        let url = format!("{}/ok", server.base);
        let refused = client(false)
            .request(reqwest::Method::GET, &url)
            .unwrap_err();
        assert!(matches!(refused, GuardError::Address { .. }), "{refused}");
        let by_name = format!("http://localhost:{}/ok", server.port);
        assert!(
            client(false)
                .request(reqwest::Method::GET, &by_name)
                .is_err()
        );
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);

        let allowed = client(true);
        assert_eq!(
            allowed.policy(),
            UrlPolicy {
                allow_private: true
            }
        );
        for url in [&url, &by_name] {
            let reply = allowed
                .request(reqwest::Method::GET, url)
                .unwrap()
                .send()
                .await
                .unwrap();
            assert_eq!(reply.text().await.unwrap(), "ok");
        }
        assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn the_guarded_resolver_refuses_a_name_that_resolves_to_loopback() {
        // The request check is bypassed (a plain reqwest client with the guard's resolver): the
        // name is caught when it is resolved, before any connection.
        let server = serve().await;
        let raw = reqwest::Client::builder()
            .dns_resolver(GuardedResolver)
            .build()
            .unwrap();
        let err = raw
            .get(format!("http://localhost:{}/ok", server.port))
            .send()
            .await
            .unwrap_err();
        let said = refusal(&err).expect("the refusal is among the causes");
        assert!(
            said.starts_with("refused: localhost resolves to "),
            "{said}"
        );
        assert!(said.contains("a loopback address"), "{said}");
        assert_eq!(server.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn redirects_to_private_literals_are_refused_and_chains_are_bounded() {
        let server = serve().await;
        // The first hop is let through (no resolver, no request check) to test the redirect
        // policy alone: its redirect to a loopback literal is refused.
        let redirects_checked = reqwest::Client::builder()
            .redirect(redirect_policy(UrlPolicy::default()))
            .build()
            .unwrap();
        for target in [
            format!("http://[::ffff:127.0.0.1]:{}/ok", server.port),
            format!("http://2130706433:{}/ok", server.port),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
        ] {
            let before = server.hits.load(Ordering::SeqCst);
            let err = redirects_checked
                .get(format!("{}/to?{target}", server.base))
                .send()
                .await
                .unwrap_err();
            assert!(err.is_redirect(), "{err}");
            let said = refusal(&err).expect("the refusal is among the causes");
            assert!(said.starts_with("refused: "), "{said}");
            assert_eq!(
                server.hits.load(Ordering::SeqCst),
                before + 1,
                "only the redirecting request reached the server"
            );
        }

        // Allowed targets still get at most MAX_REDIRECTS hops.
        let before = server.hits.load(Ordering::SeqCst);
        let err = client(true)
            .request(reqwest::Method::GET, &format!("{}/loop", server.base))
            .unwrap()
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            refusal(&err).as_deref(),
            Some("refused: more than 5 redirects")
        );
        assert_eq!(
            server.hits.load(Ordering::SeqCst) - before,
            MAX_REDIRECTS + 1
        );
        // And an allowed redirect is followed.
        let reply = client(true)
            .request(
                reqwest::Method::GET,
                &format!("{}/to?{}/ok", server.base, server.base),
            )
            .unwrap()
            .send()
            .await
            .unwrap();
        assert_eq!(reply.text().await.unwrap(), "ok");
    }
}
