//! The client's IP address behind trusted proxies, and the per-IP
//! connection limit.

use std::{net::IpAddr, str::FromStr, sync::Arc};

use dashmap::DashMap;

/// An address block such as `10.0.0.0/16` (or a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The address of the client: the TCP peer, unless the peer is a trusted
/// proxy, in which case `X-Forwarded-For` is read from the right (the
/// entries proxies appended) and the first address no trusted proxy owns
/// is the client. Entries left of it are whatever the client chose to
/// send, so they are never believed.
pub fn client_ip(peer: IpAddr, forwarded_for: &[&str], trusted: &[Cidr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let hops = forwarded_for
        .iter()
        .rev()
        .flat_map(|h| h.rsplit(','))
        .map(str::trim);
    for hop in hops {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            // Unparsable (or a port-qualified form we do not accept): stop at
            // the last address we could vouch for.
            break;
        };
        client = ip.to_canonical();
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Counts open connections per client IP and refuses beyond `max`.
#[derive(Debug)]
pub struct IpLimiter {
    max: usize,
    open: DashMap<IpAddr, usize>,
}

/// One connection's place in its IP's count; dropping it frees the place.
#[derive(Debug)]
pub struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    pub fn new(max: usize) -> Arc<IpLimiter> {
        Arc::new(IpLimiter {
            max,
            open: DashMap::new(),
        })
    }

    /// A slot for one more connection from `ip`, or `None` at the limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut count = self.open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// Connections currently counted for `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&ip).map_or(0, |c| *c)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        // Remove the entry at zero so the map holds only IPs with connections.
        self.limiter.open.remove_if_mut(&self.ip, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let c: Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.0.255.1")));
        assert!(!c.contains(ip("10.1.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.9")), "IPv4-mapped");
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains(ip("fd12::1")));
        assert!("127.0.0.1"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("127.0.0.1")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn forwarded_for_is_only_believed_from_trusted_proxies() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        // Untrusted peer: the header is ignored.
        assert_eq!(
            client_ip(ip("203.0.113.7"), &["1.2.3.4"], &trusted),
            ip("203.0.113.7")
        );
        // Trusted peer: the right-most untrusted entry is the client, even
        // when the client prepended a forged one.
        assert_eq!(
            client_ip(
                ip("10.0.1.1"),
                &["6.6.6.6, 198.51.100.9, 10.0.2.2"],
                &trusted
            ),
            ip("198.51.100.9")
        );
        // Several header lines read as one list.
        assert_eq!(
            client_ip(ip("10.0.1.1"), &["6.6.6.6", "198.51.100.9"], &trusted),
            ip("198.51.100.9")
        );
        // No header: the proxy itself.
        assert_eq!(client_ip(ip("10.0.1.1"), &[], &trusted), ip("10.0.1.1"));
        // Garbage stops the walk at the last trustworthy address.
        assert_eq!(
            client_ip(ip("10.0.1.1"), &["junk"], &trusted),
            ip("10.0.1.1")
        );
    }

    #[test]
    fn limiter_counts_and_frees() {
        let limiter = IpLimiter::new(2);
        let a = ip("192.0.2.1");
        let first = limiter.try_acquire(a).unwrap();
        let _second = limiter.try_acquire(a).unwrap();
        assert!(limiter.try_acquire(a).is_none());
        assert!(
            limiter.try_acquire(ip("192.0.2.2")).is_some(),
            "other IPs unaffected"
        );
        drop(first);
        assert_eq!(limiter.open(a), 1);
        assert!(limiter.try_acquire(a).is_some());
    }
}
