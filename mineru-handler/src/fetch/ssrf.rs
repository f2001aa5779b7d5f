//! Which addresses `file_url` may reach (docs/job-contract.md §6.2.2), and the DNS resolver that
//! enforces it on the addresses the socket actually connects to.
//!
//! The resolver is the only place names are turned into addresses for a download: it checks
//! every answer and hands exactly those checked addresses to the connector, so a DNS answer
//! that changes between a check and a connect (rebinding) cannot slip through. reqwest does not
//! call resolvers for literal IP hosts, so those are checked by [`AddressPolicy::check_literal`]
//! before the first request and before every redirect hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::error::FetchError;

/// Whether `ip` may be fetched from: globally routable and not multicast, judged after
/// unwrapping IPv4 addresses embedded in IPv6 (mapped `::ffff:0:0/96`, the NAT64 prefix
/// `64:ff9b::/96` and 6to4 `2002::/16`).
///
/// This follows Python's `ipaddress` `is_global` (the reference worker's rule) and is stricter
/// where Python is lax: IPv6 is routable only inside global unicast `2000::/3`, so the
/// deprecated IPv4-compatible `::a.b.c.d` and other reserved blocks are refused.
///
/// ```
/// use mineru_handler::fetch::is_routable;
/// assert!(is_routable("93.184.215.14".parse().unwrap()));
/// assert!(!is_routable("169.254.169.254".parse().unwrap()));
/// assert!(!is_routable("::ffff:10.0.0.1".parse().unwrap()));
/// ```
pub fn is_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_routable_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => is_routable_v4(v4),
            None => is_routable_v6(v6),
        },
    }
}

/// IPv4 blocks that are not globally routable (Python `ipaddress` private networks, the shared
/// address space, and multicast).
const BLOCKED_V4: &[(u32, u8)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", includes unspecified
    (0x0a00_0000, 8),  // 10/8
    (0x6440_0000, 10), // 100.64/10 carrier-grade NAT
    (0x7f00_0000, 8),  // 127/8 loopback
    (0xa9fe_0000, 16), // 169.254/16 link-local, cloud metadata
    (0xac10_0000, 12), // 172.16/12
    (0xc000_0000, 24), // 192.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2/24 TEST-NET-1
    (0xc058_6300, 24), // 192.88.99/24 deprecated 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168/16
    (0xc612_0000, 15), // 198.18/15 benchmarking
    (0xc633_6400, 24), // 198.51.100/24 TEST-NET-2
    (0xcb00_7100, 24), // 203.0.113/24 TEST-NET-3
    (0xe000_0000, 4),  // 224/4 multicast
    (0xf000_0000, 4),  // 240/4 reserved, includes broadcast
];

/// Globally reachable exceptions inside a blocked block (Python `ipaddress`).
const ALLOWED_V4: &[(u32, u8)] = &[(0xc000_0009, 32), (0xc000_000a, 32)];

fn in_v4(ip: u32, (net, len): (u32, u8)) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

fn is_routable_v4(ip: Ipv4Addr) -> bool {
    let n = u32::from(ip);
    ALLOWED_V4.iter().any(|&b| in_v4(n, b)) || !BLOCKED_V4.iter().any(|&b| in_v4(n, b))
}

/// Blocks inside global unicast `2000::/3` that are not globally routable.
const BLOCKED_V6: &[(u128, u8)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments (Teredo, benchmarking…)
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff_0000 << 96, 20), // 3fff::/20 documentation
];

/// Globally reachable exceptions inside `2001::/23` (Python `ipaddress`).
const ALLOWED_V6: &[(u128, u8)] = &[
    ((0x2001_0001 << 96) | 1, 128),
    ((0x2001_0001 << 96) | 2, 128),
    (0x2001_0003 << 96, 32),
    ((0x2001_0004 << 96) | (0x0112 << 80), 48),
    (0x2001_0020 << 96, 28),
    (0x2001_0030 << 96, 28),
];

fn in_v6(ip: u128, (net, len): (u128, u8)) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

fn is_routable_v6(ip: Ipv6Addr) -> bool {
    let n = u128::from(ip);
    in_v6(n, (0x2000 << 112, 3))
        && (ALLOWED_V6.iter().any(|&b| in_v6(n, b)) || !BLOCKED_V6.iter().any(|&b| in_v6(n, b)))
}

/// The IPv4 address an IPv6 address stands for, where it is one of the translation forms.
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let n = u128::from(ip);
    let low32 = Ipv4Addr::from((n & 0xffff_ffff) as u32);
    if in_v6(n, (0xffff << 32, 96)) || in_v6(n, (0x0064_ff9b << 96, 96)) {
        return Some(low32);
    }
    if in_v6(n, (0x2002 << 112, 16)) {
        return Some(Ipv4Addr::from(((n >> 80) & 0xffff_ffff) as u32));
    }
    None
}

/// The routability policy of one worker: enforced unless `MINERU_ALLOW_LOCAL_FETCH` is truthy.
#[derive(Debug, Clone)]
pub(crate) struct AddressPolicy {
    allow_local: bool,
    /// Literal `ip:port` targets let through so a test can reach its own first hop on
    /// 127.0.0.1 while every other check stays on. Never set outside tests; names are never
    /// exempt.
    #[cfg(test)]
    pub(crate) exempt_for_test: Vec<SocketAddr>,
}

impl AddressPolicy {
    pub(crate) fn new(allow_local: bool) -> AddressPolicy {
        AddressPolicy {
            allow_local,
            #[cfg(test)]
            exempt_for_test: Vec::new(),
        }
    }

    #[cfg_attr(not(test), allow(unused_variables))]
    fn exempt(&self, target: SocketAddr) -> bool {
        #[cfg(test)]
        {
            self.exempt_for_test.contains(&target)
        }
        #[cfg(not(test))]
        {
            false
        }
    }

    /// Check a literal-IP host (initial URL or redirect hop). `host` is the host as written in
    /// the URL, for the message.
    pub(crate) fn check_literal(&self, host: &str, target: SocketAddr) -> Result<(), FetchError> {
        if self.allow_local || is_routable(target.ip()) || self.exempt(target) {
            Ok(())
        } else {
            Err(FetchError::NotRoutable {
                host: host.to_owned(),
            })
        }
    }

    fn check_resolved(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), ResolveFailure> {
        if self.allow_local {
            return Ok(());
        }
        match addrs.iter().find(|a| !is_routable(a.ip())) {
            Some(bad) => Err(ResolveFailure::NonRoutable {
                host: host.to_owned(),
                addr: bad.ip(),
            }),
            None => Ok(()),
        }
    }
}

/// reqwest DNS resolver that resolves with the system resolver, applies the policy to the whole
/// answer set and returns only checked addresses.
pub(crate) struct PolicyResolver {
    pub(crate) policy: Arc<AddressPolicy>,
    pub(crate) lookup_budget: Duration,
    /// Proxy hosts: with a proxy the destination is resolved by the proxy (a documented gap),
    /// and the proxy itself is operator configuration, often on a private address.
    pub(crate) proxy_hosts: Vec<String>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let policy = Arc::clone(&self.policy);
        let budget = self.lookup_budget;
        let is_proxy = self
            .proxy_hosts
            .iter()
            .any(|p| p.eq_ignore_ascii_case(&host));
        Box::pin(async move {
            match resolve_checked(&host, &policy, budget, is_proxy).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(failure) => Err(failure.into()),
            }
        })
    }
}

/// Why the resolver refused a name. It travels through reqwest's error chain as the boxed
/// resolver error and is turned back into a [`FetchError`] by the downloader.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ResolveFailure {
    #[error("{host} resolves to non-routable {addr}")]
    NonRoutable { host: String, addr: IpAddr },
    #[error("{host} could not be resolved: {detail}")]
    Unresolvable { host: String, detail: String },
    #[error("resolving {host} timed out")]
    LookupTimeout { host: String },
}

impl From<ResolveFailure> for FetchError {
    fn from(f: ResolveFailure) -> FetchError {
        match f {
            ResolveFailure::NonRoutable { host, addr } => {
                FetchError::ResolvesToNonRoutable { host, addr }
            }
            ResolveFailure::Unresolvable { host, detail } => {
                FetchError::Unresolvable { host, detail }
            }
            ResolveFailure::LookupTimeout { host } => FetchError::LookupTimeout { host },
        }
    }
}

async fn resolve_checked(
    host: &str,
    policy: &AddressPolicy,
    budget: Duration,
    is_proxy: bool,
) -> Result<Vec<SocketAddr>, ResolveFailure> {
    let answers = tokio::time::timeout(budget, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| ResolveFailure::LookupTimeout {
            host: host.to_owned(),
        })?
        .map_err(|e| ResolveFailure::Unresolvable {
            host: host.to_owned(),
            detail: e.to_string(),
        })?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for a in answers {
        if !addrs.contains(&a) {
            addrs.push(a);
        }
    }
    if addrs.is_empty() {
        return Err(ResolveFailure::Unresolvable {
            host: host.to_owned(),
            detail: "no addresses returned".to_owned(),
        });
    }
    if !is_proxy {
        policy.check_resolved(host, &addrs)?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocked_addresses() {
        for a in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "240.0.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.1",
            "::1",
            "::",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:c0a8:0101::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "ff0e::1",
            "2001:db8::1",
            "3fff::1",
            "2001::1",
            "2001:2::1",
            "100::1",
            "fec0::1",
        ] {
            assert!(!is_routable(ip(a)), "{a} must be blocked");
        }
    }

    #[test]
    fn public_addresses() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.0.9",
            "192.0.0.10",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
            "2001:4:112::1",
            "2001:20::1",
        ] {
            assert!(is_routable(ip(a)), "{a} must be routable");
        }
    }

    #[test]
    fn literal_check_message_and_opt_out() {
        let target: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let err = AddressPolicy::new(false)
            .check_literal("127.0.0.1", target)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "file_url must point at a publicly routable host; '127.0.0.1' is not one (set MINERU_ALLOW_LOCAL_FETCH=1 to allow this)"
        );
        assert!(
            AddressPolicy::new(true)
                .check_literal("127.0.0.1", target)
                .is_ok()
        );
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let policy = AddressPolicy::new(false);
        let err = resolve_checked("localhost", &policy, Duration::from_secs(30), false)
            .await
            .unwrap_err();
        let msg = FetchError::from(err).to_string();
        assert!(
            msg.starts_with(
                "file_url must point at a publicly routable host; 'localhost' resolves to "
            ),
            "{msg}"
        );
        // The opt-out resolves without judging.
        let ok = resolve_checked(
            "localhost",
            &AddressPolicy::new(true),
            Duration::from_secs(30),
            false,
        )
        .await
        .unwrap();
        assert!(ok.iter().all(|a| a.ip().is_loopback()));
        // An unresolvable name fails with the contract wording, not a connection error.
        let err = resolve_checked(
            "no-such-host.invalid",
            &policy,
            Duration::from_secs(30),
            false,
        )
        .await
        .unwrap_err();
        let msg = FetchError::from(err).to_string();
        assert!(
            msg.starts_with("host 'no-such-host.invalid' could not be resolved: "),
            "{msg}"
        );
    }
}
