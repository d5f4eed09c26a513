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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_digits_as_format() {
        for n in [0, 7, 13, 100, 65_536, 4_294_967_295, u64::MAX] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }
}
