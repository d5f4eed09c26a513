//! RFC 9110's `tchar`: the bytes a token may hold. An ISAPI header block's names are
//! tokens, and so are request methods and server variable names. The bridge checks the
//! names the application sends and the variable names it is asked for; the host checks the
//! requests it receives and the header blocks the extension sends. One table for both.

/// Whether `b` may appear in a token (a method, a header name).
pub fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[b as usize]
}

/// [`is_token_byte`] for every byte: one look-up per byte of a name, not a comparison with
/// each punctuation character.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let others = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < others.len() {
        table[others[i] as usize] = true;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::is_token_byte;

    #[test]
    fn tokens_are_letters_digits_and_rfc_9110_punctuation() {
        let tokens: Vec<u8> = (0..=255u8).filter(|&b| is_token_byte(b)).collect();
        let mut expected: Vec<u8> = (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .collect();
        expected.extend_from_slice(b"!#$%&'*+-.^_`|~");
        expected.sort();
        assert_eq!(tokens, expected);
    }
}
