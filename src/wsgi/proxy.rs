//! `[wsgi] trusted_proxies`: believing `X-Forwarded-*` from the proxies in front of IIS, and
//! from nobody else. Plain Rust; environ.rs applies the answer.
//!
//! Behind a load balancer or a reverse proxy every request comes from the proxy: REMOTE_ADDR
//! is its address, `wsgi.url_scheme` the scheme between it and IIS, `HTTP_HOST` what it
//! asked for. It tells the real ones in `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `X-Forwarded-Host`, but any client can send those headers too. So they are used only when
//! REMOTE_ADDR is in one of the configured networks (off by default: an empty list), and
//! then:
//!
//! * `X-Forwarded-For` (`client, proxy1, proxy2`, each proxy appending the address it saw)
//!   is read from the right: addresses of trusted proxies are skipped, and the first other
//!   one is the client (what a client wrote further left is not believed). If every entry is
//!   a trusted proxy, the leftmost is the client. An entry that is not an IP address makes
//!   the whole header ignored.
//! * `X-Forwarded-Proto`: its last value, if `http` or `https` (any case).
//! * `X-Forwarded-Host`: its last value, if it looks like a host (`name`, `name:port`,
//!   `[v6]:port`: letters, digits, `-._:[]`).
use std::net::IpAddr;

/// A network: an address and how many leading bits of it count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Whether `address` is in this network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.bits)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.bits)
            }
            _ => false,
        }
    }
}

fn prefix_matches(network: &[u8], address: &[u8], bits: u8) -> bool {
    let whole = usize::from(bits / 8);
    let rest = bits % 8;
    if network[..whole] != address[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        network[whole] & mask == address[whole] & mask
    }
}

/// `10.0.0.0/8, 192.168.1.7, ::1, fd00::/8`: networks, or single addresses (also the
/// parser of `[health] allow`).
pub fn parse_networks(value: &str) -> Result<Vec<Cidr>, String> {
    let mut networks = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (address, bits) = entry.split_once('/').unwrap_or((entry, ""));
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{entry} is not an IP address or network (e.g. 10.0.0.0/8)"))?;
        let most = if network.is_ipv4() { 32 } else { 128 };
        let bits = if bits.is_empty() {
            most
        } else {
            match bits.trim().parse::<u8>() {
                Ok(bits) if bits <= most => bits,
                _ => {
                    return Err(format!("{entry}: the prefix length must be 0 to {most}"));
                }
            }
        };
        networks.push(Cidr { network, bits });
    }
    Ok(networks)
}

/// What the forwarding headers change, when they are believed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address, for REMOTE_ADDR (and REMOTE_HOST).
    pub remote_addr: Option<String>,
    /// `http` or `https`, for `wsgi.url_scheme`.
    pub scheme: Option<&'static str>,
    /// For HTTP_HOST.
    pub host: Option<Vec<u8>>,
}

/// What to believe of the forwarding headers of a request from `remote`; nothing unless
/// `remote` is in `trusted`.
pub fn forwarded(
    trusted: &[Cidr],
    remote: &[u8],
    forwarded_for: Option<&[u8]>,
    proto: Option<&[u8]>,
    host: Option<&[u8]>,
) -> Forwarded {
    let is_trusted = |address: IpAddr| trusted.iter().any(|network| network.contains(address));
    let Some(remote) = parse_address(remote) else {
        return Forwarded::default();
    };
    if !is_trusted(remote) {
        return Forwarded::default();
    }
    let remote_addr = forwarded_for.and_then(|header| {
        let entries: Option<Vec<IpAddr>> = header
            .split(|&b| b == b',')
            .map(|entry| parse_address(entry.trim_ascii()))
            .collect();
        let entries = entries?;
        let client = entries
            .iter()
            .rev()
            .find(|&&address| !is_trusted(address))
            .or(entries.first())?;
        Some(client.to_string())
    });
    let scheme = proto.map(last_value).and_then(|value| {
        if value.eq_ignore_ascii_case(b"https") {
            Some("https")
        } else if value.eq_ignore_ascii_case(b"http") {
            Some("http")
        } else {
            None
        }
    });
    let host = host.map(last_value).filter(|value| {
        !value.is_empty()
            && value
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b))
    });
    Forwarded {
        remote_addr,
        scheme,
        host: host.map(<[u8]>::to_vec),
    }
}

fn parse_address(bytes: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

fn last_value(header: &[u8]) -> &[u8] {
    header
        .rsplit(|&b| b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let networks = parse_networks("10.0.0.0/8, 192.168.1.7 ,fd00::/8, ::1").unwrap();
        let inside = |address: &str| {
            let address: IpAddr = address.parse().unwrap();
            networks.iter().any(|n| n.contains(address))
        };
        assert!(inside("10.200.3.4") && inside("192.168.1.7") && inside("fd12::5"));
        assert!(inside("::1") && inside("::ffff:10.1.1.1"));
        assert!(!inside("11.0.0.1") && !inside("192.168.1.8") && !inside("fe80::1"));
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("example.org").is_err());
        assert_eq!(parse_networks(" ").unwrap(), vec![]);
        let odd = parse_networks("172.16.0.0/12").unwrap();
        assert!(odd[0].contains("172.31.255.255".parse().unwrap()));
        assert!(!odd[0].contains("172.32.0.0".parse().unwrap()));
    }

    #[test]
    fn forwarding_headers_only_from_trusted_proxies() {
        let trusted = parse_networks("10.0.0.0/8").unwrap();
        let all = |remote: &[u8], xff: &[u8]| {
            forwarded(
                &trusted,
                remote,
                Some(xff),
                Some(b"http, HTTPS"),
                Some(b"example.org:8443"),
            )
        };
        let believed = all(b"10.0.0.5", b"203.0.113.9, 10.0.0.7");
        assert_eq!(
            believed,
            Forwarded {
                remote_addr: Some("203.0.113.9".into()),
                scheme: Some("https"),
                host: Some(b"example.org:8443".to_vec()),
            }
        );
        // A client's own X-Forwarded-For entries, left of the first untrusted one, are not
        // believed.
        let spoofed = all(b"10.0.0.5", b"127.0.0.1, 198.51.100.1, 10.0.0.7");
        assert_eq!(spoofed.remote_addr.as_deref(), Some("198.51.100.1"));
        // Only proxies: the leftmost.
        assert_eq!(
            all(b"10.0.0.5", b"10.1.1.1, 10.0.0.7")
                .remote_addr
                .as_deref(),
            Some("10.1.1.1")
        );
        // Not from a trusted proxy: nothing.
        assert_eq!(all(b"192.0.2.1", b"203.0.113.9"), Forwarded::default());
        // Garbage in X-Forwarded-For: that header ignored, the others still used.
        let garbage = all(b"10.0.0.5", b"203.0.113.9, unknown");
        assert_eq!(garbage.remote_addr, None);
        assert_eq!(garbage.scheme, Some("https"));
        let odd = forwarded(&trusted, b"10.0.0.5", None, Some(b"ftp"), Some(b"a b"));
        assert_eq!(odd, Forwarded::default());
        assert_eq!(
            forwarded(&[], b"10.0.0.5", Some(b"1.2.3.4"), None, None),
            Forwarded::default()
        );
    }
}
