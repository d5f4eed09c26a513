//! Numbers in decimal, written by hand. An ISAPI response carries them as text
//! (Content-Length, ports, request ids), on every request's path, where `format!` or
//! `write!` costs a few hundred instructions each. Only arithmetic: the host's crash report
//! writes numbers with it from a signal handler too.

/// `n` in decimal, written into the end of `digits`; the digits are the returned slice.
pub fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}

/// Appends `address` in dotted decimal (`127.0.0.1`, as `Display` and Windows write it).
/// Written on the stack and appended at once (it is on the path of every request: the
/// access log's client, REMOTE_ADDR, REMOTE_HOST, LOCAL_ADDR).
pub fn push_ipv4(out: &mut Vec<u8>, address: std::net::Ipv4Addr) {
    let mut text = [0u8; 15]; // "255.255.255.255"
    let mut len = 0;
    for (i, octet) in address.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    out.extend_from_slice(&text[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_digits_as_format() {
        for n in [0, 7, 13, 100, 65_536, 4_294_967_295, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn an_ipv4_address_as_display_writes_it() {
        for address in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.255",
            "255.255.255.255",
            "99.100.9.10",
        ] {
            let mut out = Vec::new();
            push_ipv4(&mut out, address.parse().unwrap());
            assert_eq!(out, address.as_bytes());
        }
    }
}
