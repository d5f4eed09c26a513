//! The host's request-head parser against `reference`, a second, independent reading of
//! RFC 9112: both must agree on every input whether the head is incomplete, refused, or
//! complete, and for a complete head on every field.
#![no_main]

use isapi_host_fuzz::http::{BodyKind, Limits, Parsed, Version, parse_request};
use isapi_host_fuzz::reference::{self, Outcome};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    request_line: 200,
    header_bytes: 400,
};

fuzz_target!(|data: &[u8]| {
    let ours = parse_request(data, &LIMITS);
    let theirs = reference::parse(data, LIMITS.request_line, LIMITS.header_bytes);
    match (&ours, &theirs) {
        (Ok(Parsed::Incomplete), Outcome::Incomplete) | (Err(_), Outcome::Error(_)) => {}
        (Ok(Parsed::Complete(h, used)), Outcome::Head(r)) => {
            let body = match h.body {
                BodyKind::None => None,
                BodyKind::Chunked => Some(None),
                BodyKind::Length(n) => Some(Some(n)),
            };
            let headers: Vec<(Vec<u8>, Vec<u8>)> = h
                .headers
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.to_vec()))
                .collect();
            let mine = reference::Head {
                method: h.method.as_bytes().to_vec(),
                target: h.target.as_bytes().to_vec(),
                authority: h.authority.as_ref().map(|a| a.as_bytes().to_vec()),
                http11: h.version == Version::Http11,
                headers,
                body,
                keep_alive: h.keep_alive,
                expect_continue: h.expect_continue,
                used: *used,
            };
            assert_eq!(&mine, r, "input {:?}", String::from_utf8_lossy(data));
        }
        _ => panic!(
            "host: {ours:?}\nreference: {theirs:?}\ninput: {:?}",
            String::from_utf8_lossy(data)
        ),
    }
});
