//! The host's request-head parser on any bytes: it never panics, never claims more bytes
//! than it was given, reads the same head from exactly the bytes it says it used, and
//! answers Incomplete for every prefix of a complete head (a head arrives in pieces).
#![no_main]

use isapi_host_fuzz::http::{Limits, Parsed, parse_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks small limits, so that 414 and 431 are reached too.
    let (limits, input) = match data.split_first() {
        Some((&l, rest)) if l & 1 == 1 => (
            Limits {
                request_line: 16 + (l as usize >> 1),
                header_bytes: 32 + 2 * l as usize,
            },
            rest,
        ),
        _ => (
            Limits {
                request_line: 8192,
                header_bytes: 16384,
            },
            data,
        ),
    };
    if let Ok(Parsed::Complete(head, used)) = parse_request(input, &limits) {
        assert!(used <= input.len());
        match parse_request(&input[..used], &limits) {
            Ok(Parsed::Complete(again, n)) => {
                assert_eq!(n, used);
                assert_eq!(format!("{head:?}"), format!("{again:?}"));
            }
            other => panic!("the head's own bytes gave {other:?}"),
        }
        for cut in [used - 1, used / 2] {
            assert!(
                matches!(
                    parse_request(&input[..cut], &limits),
                    Ok(Parsed::Incomplete)
                ),
                "a prefix of a complete head ({cut} of {used} bytes) is not Incomplete"
            );
        }
        assert!(head.target.bytes().all(|b| (0x21..0x7f).contains(&b)));
    }
});
