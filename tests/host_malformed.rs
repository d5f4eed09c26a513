//! Bad input over real TCP: each malformed request gets the right status (400, 414, 431,
//! 501, 505), a malformed chunked body gets its 400 at once (RFC 9112 §7.1 read strictly,
//! the request-smuggling cases), the host's own answers carry `Date` and `Server` as
//! http.sys's do, the Host header must be a valid `host[:port]` (an absolute-form target's
//! authority wins over it), and a bounded fuzz run of random and mutated requests
//! never brings the host down: afterwards it still serves, and it stops cleanly.
mod common;

use common::{Host, Response, get, parse_response, raw, test_extension};
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

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

/// Sends `request` and keeps the connection open (no half-close, so a host waiting for
/// more input would wait): returns the response, how long it took to come, and whether
/// the host then closed the connection.
fn answer_on_open_connection(addr: SocketAddr, request: &[u8]) -> (Response, Duration, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    s.write_all(request).unwrap();
    let data = common::read_to_close(&mut s);
    let took = started.elapsed();
    let (response, used) = parse_response(&data, false).unwrap_or_else(|| {
        panic!(
            "no response within 5 s to {:?}: {:?}",
            String::from_utf8_lossy(&request[..request.len().min(100)]),
            String::from_utf8_lossy(&data)
        )
    });
    // read_to_close returned before its 5 s timeout: the host closed the connection.
    let closed = used == data.len() && took < Duration::from_secs(4);
    (response, took, closed)
}

#[test]
fn malformed_chunked_bodies_get_400_at_once() {
    // The default idle timeout (120 s): a host that waits for more input shows as a hang.
    let host = Host::start(&test_extension(), &["--strict"]);
    let head = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(5000));
    let many_ext = "1;extension-name=value\r\na\r\n".repeat(200) + "0\r\n\r\n";
    let many_trailers = format!("0\r\n{}\r\n", "T: v\r\n".repeat(65));
    let big_trailer = format!("0\r\nT: {}\r\n\r\n", "v".repeat(8200));
    let bodies: Vec<(&str, &[u8])> = vec![
        ("text after the size", b"5 xyz\r\nhello\r\n0\r\n\r\n"),
        ("'=' without a value", b"20;invalid=\r\n"),
        ("extension without a name", b"5;=v\r\nhello\r\n0\r\n\r\n"),
        (
            "unterminated quoted value",
            b"5;a=\"v\r\nhello\r\n0\r\n\r\n",
        ),
        ("two values", b"5;a=b c\r\nhello\r\n0\r\n\r\n"),
        ("bare LF after the size", b"5\nhello\r\n0\r\n\r\n"),
        ("bare LF in an extension", b"5;a\nhello\r\n0\r\n\r\n"),
        ("bare CR after the size", b"5\rhello\r\n0\r\n\r\n"),
        ("bare LF after the data", b"5\r\nhello\n0\r\n\r\n"),
        ("bare LF at the end", b"5\r\nhello\r\n0\r\n\n"),
        ("bare LF in a trailer", b"0\r\nT: v\nX"),
        ("folded trailer", b"0\r\n T: v\r\n\r\n"),
        ("trailer without a colon", b"0\r\nTrailer\r\n\r\n"),
        ("chunk size overflow", b"10000000000000001\r\n"),
        ("data longer than its size", b"3\r\nhello\r\n0\r\n\r\n"),
        ("extensions over 4 KiB", long_ext.as_bytes()),
        ("extensions over 4 KiB, many chunks", many_ext.as_bytes()),
        ("65 trailer lines", many_trailers.as_bytes()),
        ("trailer over 8 KiB", big_trailer.as_bytes()),
    ];
    for (what, body) in bodies {
        let request = [&head[..], body].concat();
        let (response, took, closed) = answer_on_open_connection(host.addr, &request);
        assert_eq!(response.status, 400, "{what}: {response:?}");
        assert_eq!(response.header("connection"), Some("close"), "{what}");
        assert!(closed, "{what}: the host must close the connection");
        assert!(took < Duration::from_secs(3), "{what}: took {took:?}");
    }
    // A valid body with extensions (token and quoted values, whitespace) and trailers.
    let valid = [
        &head[..],
        b"5 ; name ; q=\"a \\\" b\" ; t=tok\r\nhello\r\n6;x=1\r\n world\r\n0;last\r\nX-Trailer: 1\r\nX-Other:\r\n\r\n",
    ]
    .concat();
    let (response, _, _) = answer_on_open_connection(host.addr, &valid);
    assert_eq!(
        (response.status, response.text()),
        (200, "hello world".into())
    );
    assert_eq!(response.header("x-total-bytes"), Some("4294967295"));
    // Found by fuzz/'s differential target: an empty Transfer-Encoding line has no
    // codings (RFC 9110 §5.6.1), so another line's chunked frames the body; one alone is
    // still a 400.
    let split_te = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: ,\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    let (response, _, _) = answer_on_open_connection(host.addr, split_te);
    assert_eq!((response.status, response.text()), (200, "ok".into()));
    let empty_te = b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , \r\n\r\n";
    assert_eq!(answer_on_open_connection(host.addr, empty_te).0.status, 400);
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC
/// 9110 §5.6.7), or None if `date` is not one (weekday checked too).
fn imf_fixdate(date: &str) -> Option<i64> {
    let b = date.as_bytes();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = date.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() != 29 || &date[3..5] != ", " || &date[25..] != " GMT" {
        return None;
    }
    let (day, year) = (num(5..7)?, num(12..16)?);
    let month = months.iter().position(|m| date.get(8..11) == Some(m))? as i64 + 1;
    let (h, m, s) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if [&date[7..8], &date[11..12], &date[16..17]] != [" "; 3] || &date[19..20] != ":" {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let days = era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
    let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    (date[..3] == *weekdays[days.rem_euclid(7) as usize])
        .then_some(days * 86400 + h * 3600 + m * 60 + s)
}

#[test]
fn the_hosts_own_answers_carry_date_and_server() {
    assert_eq!(
        imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784111777)
    );
    assert_eq!(imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    let host = Host::start(
        &test_extension(),
        &[
            "--vdir",
            "/app",
            "--server-software",
            "Test-IIS/1.0",
            "--max-request-line",
            "1000",
            "--max-header-bytes",
            "2000",
        ],
    );
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2000));
    let big_headers = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
        "b".repeat(3000)
    );
    let http_api = "Microsoft-HTTPAPI/2.0";
    let cases: Vec<(&[u8], u16, &str)> = vec![
        (b"GARBAGE\r\n\r\n", 400, http_api),
        (b"GET /app/%zz HTTP/1.1\r\nHost: h\r\n\r\n", 400, http_api),
        (
            b"POST /app/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n",
            400,
            http_api,
        ),
        (long_target.as_bytes(), 414, http_api),
        (big_headers.as_bytes(), 431, http_api),
        (
            b"POST /app/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            http_api,
        ),
        (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, http_api),
        // Not a URL of the application: IIS's own 404, with IIS's Server header.
        (
            b"GET /outside HTTP/1.1\r\nHost: h\r\n\r\n",
            404,
            "Test-IIS/1.0",
        ),
    ];
    for (request, status, server) in cases {
        let what = String::from_utf8_lossy(&request[..request.len().min(60)]).into_owned();
        let (response, _, _) = answer_on_open_connection(host.addr, request);
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert_eq!(response.header("server"), Some(server), "{what}");
        assert_eq!(response.header("connection"), Some("close"), "{what}");
        let date = response
            .header("date")
            .unwrap_or_else(|| panic!("{what}: no Date"));
        let at = imf_fixdate(date)
            .unwrap_or_else(|| panic!("{what}: Date {date:?} is not an IMF-fixdate"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - at).abs() <= 5, "{what}: Date {date:?} is not now");
    }
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn the_host_header_must_be_an_authority() {
    let host = Host::start(&test_extension(), &["--strict"]);
    let ask = |target: &str, host_header: &str| {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n");
        let data = raw(host.addr, request.as_bytes());
        parse_response(&data, false)
            .unwrap_or_else(|| panic!("no response to {request:?}"))
            .0
    };
    for bad in [
        "a b",
        "a/b",
        "user@h",
        "[::1",
        "[::1]x",
        "[zz::1]",
        "h:80x",
        "h:1:2",
        "%zz",
        "\"h\"",
        "h?",
        "\u{e9}.example",
    ] {
        let r = ask("/hello", bad);
        assert_eq!(r.status, 400, "Host: {bad:?}: {r:?}");
        assert_eq!(
            r.text(),
            "400 Bad Request: Invalid Hostname\r\n",
            "Host: {bad:?}"
        );
        assert_eq!(r.header("server"), Some("Microsoft-HTTPAPI/2.0"));
    }
    for (good, server_name) in [
        ("www.example.com:8080", "www.example.com"),
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]:81", "[::1]"),
        ("%41b", "%41b"),
        ("", "127.0.0.1"), // RFC 9112 §3.2 allows an empty Host; the local address then
    ] {
        let r = ask("/var?SERVER_NAME", good);
        assert_eq!(
            (r.status, r.text()),
            (200, server_name.into()),
            "Host: {good:?}"
        );
    }
    // An absolute-form target's authority wins over Host (RFC 9112 §3.2.2) ...
    let r = ask("http://target.example:81/var?SERVER_NAME", "host.example");
    assert_eq!((r.status, r.text()), (200, "target.example".into()));
    let r = ask("http://target.example/var?HTTP_URL", "host.example");
    assert_eq!((r.status, r.text()), (200, "/var?HTTP_URL".into()));
    // ... and is checked the same way, with no userinfo and a host that is not empty.
    for bad in [
        "http://u@h/hello",
        "http:///hello",
        "http://:80/hello",
        "http://h:x/hello",
    ] {
        let r = ask(bad, "h");
        assert_eq!(
            (r.status, r.text()),
            (400, "400 Bad Request: Invalid Hostname\r\n".into()),
            "{bad}"
        );
    }
    // Two Host headers are a 400 in HTTP/1.0 too.
    let data = raw(
        host.addr,
        b"GET /hello HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
    );
    assert_eq!(parse_response(&data, false).unwrap().0.status, 400);
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
