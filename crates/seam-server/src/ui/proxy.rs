//! Who a request came from when seam runs behind a reverse proxy.
//!
//! The sign-in throttle counts failures per client address ([`super::throttle`]). Behind a reverse
//! proxy every connection comes from the proxy, so every user would share one budget (and one user
//! guessing passwords would lock everyone out) — unless the proxy is trusted: then the client is read
//! from `X-Forwarded-For`. That header is the client's to write, so only the hops seam was told to
//! trust are believed: the list is read from its right end (the hop nearest seam), skipping trusted
//! proxies, and the first address that is not one is the client. Whatever a client puts at the left
//! end is never reached while a trusted proxy appends what it saw. Without trusted proxies (the
//! default) the header is ignored.

use axum::http::HeaderMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// One trusted proxy: an address, or a network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    bits: u8,
}

impl ProxyNet {
    /// Whether `ip` is this address or in this network (an IPv4-mapped IPv6 address counts as its
    /// IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(&net.octets(), &ip.octets(), self.bits),
            _ => false,
        }
    }
}

/// Whether the first `bits` bits of `a` and `b` agree.
fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..whole] != b[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[whole] & mask) == (b[whole] & mask)
}

impl FromStr for ProxyNet {
    type Err = String;

    /// Parses `ADDR` or `ADDR/BITS` (no IO).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or a network like 10.0.0.0/8"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be a number from 0 to {max}"))?,
        };
        Ok(ProxyNet { addr, bits })
    }
}

impl fmt::Display for ProxyNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// The proxies whose `X-Forwarded-For` seam believes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<ProxyNet>,
}

impl TrustedProxies {
    /// Trusts the proxies at these addresses and networks.
    pub fn new(nets: Vec<ProxyNet>) -> TrustedProxies {
        TrustedProxies { nets }
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client of a request whose connection came from `peer`: `peer` itself unless it is a
    /// trusted proxy, else the nearest address in `X-Forwarded-For` that is not a trusted proxy (the
    /// leftmost one when all are). An entry that is not an address ends the walk at the hop that
    /// wrote it: the client is then that hop, as seam cannot see past it.
    pub fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(ip) = forwarded_address(entry) else {
                return Some(client);
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// An `X-Forwarded-For` entry's address: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or
/// `[2001:db8::1]:443`.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn networks_parse_and_contain_what_they_should() {
        let net: ProxyNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one: ProxyNet = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let odd: ProxyNet = "172.16.0.0/12".parse().unwrap();
        assert!(odd.contains(ip("172.31.9.9")) && !odd.contains(ip("172.32.0.1")));
        let v6: ProxyNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: ProxyNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["proxy.local", "10.0.0.0/33", "::/129", "10.0.0.0/x", ""] {
            let e = bad.parse::<ProxyNet>().unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
        }
        assert_eq!(odd.to_string(), "172.16.0.0/12");
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let trusted = TrustedProxies::new(vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()]);
        let proxy = Some(ip("127.0.0.1"));
        // No trusted proxy: the header is not read.
        let none = TrustedProxies::default();
        assert_eq!(none.client(proxy, &forwarded(&["203.0.113.5"])), proxy);
        // A peer that is not a trusted proxy is the client, whatever it claims.
        let direct = Some(ip("198.51.100.2"));
        assert_eq!(trusted.client(direct, &forwarded(&["203.0.113.5"])), direct);
        // Through the proxy: the address it appended.
        assert_eq!(
            trusted.client(proxy, &forwarded(&["203.0.113.5"])),
            Some(ip("203.0.113.5"))
        );
        // A client that writes its own header cannot choose: the proxy appended the real address.
        assert_eq!(
            trusted.client(proxy, &forwarded(&["1.1.1.1, 203.0.113.5"])),
            Some(ip("203.0.113.5"))
        );
        // Through two trusted proxies, the headers of each hop in order.
        assert_eq!(
            trusted.client(proxy, &forwarded(&["6.6.6.6, 203.0.113.7", "10.2.3.4"])),
            Some(ip("203.0.113.7"))
        );
        // Ports and brackets are read; every hop trusted gives the leftmost.
        assert_eq!(
            trusted.client(proxy, &forwarded(&["[2001:db8::5]:443"])),
            Some(ip("2001:db8::5"))
        );
        assert_eq!(
            trusted.client(proxy, &forwarded(&["203.0.113.8:5000"])),
            Some(ip("203.0.113.8"))
        );
        assert_eq!(
            trusted.client(proxy, &forwarded(&["10.9.9.9"])),
            Some(ip("10.9.9.9"))
        );
        // Garbage ends the walk at the hop that wrote it; no header is the proxy itself.
        assert_eq!(trusted.client(proxy, &forwarded(&["unknown"])), proxy);
        assert_eq!(
            trusted.client(proxy, &forwarded(&["203.0.113.5, garbage, 10.0.0.3"])),
            Some(ip("10.0.0.3"))
        );
        assert_eq!(trusted.client(proxy, &HeaderMap::new()), proxy);
        assert_eq!(trusted.client(None, &forwarded(&["203.0.113.5"])), None);
    }
}
