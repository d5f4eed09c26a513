//! Bad input over real TCP: each malformed request gets the right status (400, 414, 431,
//! 501, 505), and a bounded fuzz run of random and mutated requests never brings the host
//! down: afterwards it still serves, and it stops cleanly.
mod common;

use common::{Host, get, parse_response, raw, test_extension};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

fn status_of(host: &Host, request: &[u8]) -> u16 {
    let data = raw(host.addr, request);
    parse_response(&data, false)
        .unwrap_or_else(|| {
            panic!(
                "no response to {:?}: {:?}",
                String::from_utf8_lossy(request),
                String::from_utf8_lossy(&data)
            )
        })
        .0
        .status
}

#[test]
fn malformed_requests_get_the_right_status() {
    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--max-request-line",
            "1000",
            "--max-header-bytes",
            "2000",
        ],
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2000));
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "b".repeat(3000)
    );
    let cases: Vec<(&[u8], u16)> = vec![
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400), // no Host
        (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\n folded: x\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /%00 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (b"GET /../etc/passwd HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (long_target.as_bytes(), 414),
        (big_headers.as_bytes(), 431),
        (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
        (b"GET / HTTP/1.0\r\n\r\n", 200), // HTTP/1.0 needs no Host
    ];
    for (request, expected) in cases {
        assert_eq!(
            status_of(&host, request),
            expected,
            "{:?}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        );
    }
    // A client that closes in the middle of a body does not disturb anything.
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\npartial")
        .unwrap();
    drop(s);
    assert_eq!(get(host.addr, "/hello").text(), "Hello, world!");
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// xorshift64: a deterministic source of randomness, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fuzzed_requests_never_bring_the_host_down() {
    let host = Host::start(
        &test_extension(),
        &[
            "--max-request-line",
            "2000",
            "--max-header-bytes",
            "4000",
            "--idle-timeout",
            "2",
        ],
    );
    let seeds: &[&[u8]] = &[
        b"GET /hello HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET /vars?a=%20b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"HEAD /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    let alphabet = b"GETPOSTHEAD /%?:;-_\r\n\t 0123456789abcdefABCDEF\x00\x7f\x80\xffHTTP/1.1chunkedContent-LengthTransfer-Encoding";
    let mut rng = Rng(0x2545F4914F6CDD1D);
    let rounds = 1500;
    let mut answered = 0;
    for round in 0..rounds {
        let mut input: Vec<u8> = if round % 3 == 0 {
            (0..rng.below(300))
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect()
        } else {
            seeds[rng.below(seeds.len())].to_vec()
        };
        for _ in 0..rng.below(8) {
            if input.is_empty() {
                break;
            }
            let at = rng.below(input.len());
            match rng.below(4) {
                0 => input[at] = rng.next() as u8,
                1 => {
                    input.remove(at);
                }
                2 => input.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => {
                    let end = (at + rng.below(20)).min(input.len());
                    let copy = input[at..end].to_vec();
                    input.splice(at..at, copy);
                }
            }
        }
        let mut s = TcpStream::connect(host.addr).expect("the host must keep accepting");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&input);
        let _ = s.shutdown(Shutdown::Write);
        let data = common::read_to_close(&mut s);
        if data.starts_with(b"HTTP/1.1 ") {
            answered += 1;
        }
    }
    assert!(
        answered > 0,
        "some fuzzed requests are valid and must be answered"
    );
    // Still healthy: serves, and stops cleanly (the process did not crash).
    assert_eq!(get(host.addr, "/hello").text(), "Hello, world!");
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(!stopped.stderr.contains("panic"), "{}", stopped.stderr);
}
