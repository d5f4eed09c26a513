//! Hostile clients, shared by the Linux tests (host_slow_clients.rs, host_faults.rs) and
//! the same checks against the Windows build under wine (host_wine.rs): slow clients of
//! each kind beside fresh GETs that must each be answered within 1 s, and a client that
//! resets its connection at each phase of a request.
use super::Host;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How a slow client misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Drip {
    /// Slowloris: sends a request head a byte at a time, never finishing it.
    Head,
    /// Slow POST during the pre-read: a whole head announcing a 100 000-byte body, then
    /// the body a byte at a time (the host reads it ahead, in the readiness loop).
    Preread,
    /// Slow POST during ReadClient: a head announcing 10 MB, 64 KiB at once (more than
    /// the 48 KiB read-ahead, so the app is called and reads on), then a byte at a time
    /// while the app waits in ReadClient (wsgi.input.read).
    ReadClient,
    /// Slow reader: asks for a 64 MiB response and reads none of it, so the writes of
    /// the response wait for room in the socket.
    Reader,
}

impl Drip {
    pub const ALL: [Drip; 4] = [Drip::Head, Drip::Preread, Drip::ReadClient, Drip::Reader];

    /// What the client sends at once, and the byte it then drips (None: it sends
    /// nothing more, and reads nothing).
    fn request(self, target: &Target) -> (Vec<u8>, Option<u8>) {
        let mut head = match self {
            Drip::Head => b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ".to_vec(),
            Drip::Preread => {
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec()
            }
            Drip::ReadClient => {
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".to_vec()
            }
            Drip::Reader => format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", target.big).into_bytes(),
        };
        match self {
            Drip::Head => (head, Some(b'a')),
            Drip::Preread => (head, Some(b'x')),
            Drip::ReadClient => {
                head.extend_from_slice(&[b'x'; 65536]);
                (head, Some(b'x'))
            }
            Drip::Reader => (head, None),
        }
    }
}

/// What the slow clients and the fresh GETs ask of an extension.
pub struct Target {
    /// A 64 MiB response.
    pub big: &'static str,
    /// The body /hello answers.
    pub hello: &'static str,
}

pub const BRIDGE: Target = Target {
    big: "/big?blocks=1024",
    hello: "Hello, World!",
};
pub const RUST: Target = Target {
    big: "/big?size=67108864",
    hello: "Hello, world!",
};

/// A slow client on its own thread: sends its request, then drips one byte every 100 ms
/// (or, a slow reader, just waits) until `stop` is set or the host closes. Stopped, it
/// closes at once; closed by the host, it returns what the host answered.
pub fn slow_client(
    addr: SocketAddr,
    drip: Drip,
    target: &Target,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Vec<u8>> {
    let (request, byte) = drip.request(target);
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&request);
        while !stop.load(Ordering::SeqCst) {
            if let Some(byte) = byte
                && s.write_all(&[byte]).is_err()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut got = Vec::new();
        if !stop.load(Ordering::SeqCst) {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let _ = s.read_to_end(&mut got);
        }
        got
    })
}

/// A GET on a fresh connection, with its own generous timeout; the time it took.
fn timed_get(addr: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

/// The fresh GETs each case times, one after the other.
pub const TRIES: usize = 10;

/// `slow` slow clients of one kind: TRIES fresh GETs are each answered within 1 s
/// (the issue's bound), with their latencies printed (p50 and max). `name` says which
/// extension and handler, for the messages.
pub fn fresh_gets_beside(host: &Host, slow: usize, drip: Drip, target: &Target, name: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..slow)
        .map(|_| slow_client(host.addr, drip, target, stop.clone()))
        .collect();
    // Let every slow client get to where it waits (a ReadClient needs its app called, a
    // slow reader the socket buffers full).
    std::thread::sleep(Duration::from_secs(2));
    let mut took: Vec<Duration> = (0..TRIES)
        .map(|_| {
            let (response, took) = timed_get(host.addr);
            assert!(
                response.starts_with("HTTP/1.1 200") && response.ends_with(target.hello),
                "{name} beside {drip:?}: after {took:?}: {response}"
            );
            took
        })
        .collect();
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    took.sort();
    let (p50, max) = (took[TRIES / 2], took[TRIES - 1]);
    eprintln!(
        "{name}: {} slow clients ({drip:?}): {TRIES} fresh GETs, p50 {:.1} ms, max {:.1} ms",
        slow,
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    assert!(
        max < Duration::from_secs(1),
        "{name}: a fresh GET took {max:?} beside {} slow clients ({drip:?}); all: {took:?}",
        slow
    );
}

/// Sends each request, reads `read` bytes of the answer (0: none), then resets the
/// connection (SO_LINGER 0: RST instead of FIN). One line per phase: its name and what
/// was read.
pub const RESETS: &str = r#"
import socket, struct, sys, time
host, port, phases = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for phase in phases:
    name, read, request = phase.split("|", 2)
    request = request.encode().decode("unicode_escape").encode("latin-1")
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(request)
    got = b""
    while len(got) < int(read):
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    time.sleep(0.3)  # let the host get into the phase
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print(name, len(got), flush=True)
"#;

/// A client resets its connection in the request head, in the pre-read, while the
/// extension is in ReadClient, in WriteClient, in a chain of asynchronous writes and in
/// HSE_REQ_TRANSMIT_FILE: each request ends (an access-log line), the host serves the
/// next request, and no contract violation is reported (the extension did nothing wrong).
/// A client resets its connection in the request head, in the pre-read, while the
/// extension is in ReadClient, in WriteClient, in a chain of asynchronous writes and in
/// HSE_REQ_TRANSMIT_FILE (async and sync) of `file` (a 32 MiB file, named as the host's
/// platform names it, each `\` doubled: the script decodes escapes): each request ends (an access-log line), the host serves the next
/// request, and no contract violation is reported (the extension did nothing wrong).
/// `host` serves the Rust test extension; it is stopped here.
pub fn client_resets_at_every_phase(host: Host, file: &str) {
    let port = host.addr.port().to_string();
    let head = "GET /hello HTTP/1.1\\r\\nHost: x\\r\\nX-Partial: abc";
    let preread = format!(
        "POST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 100000\\r\\n\\r\\n{}",
        "x".repeat(1000)
    );
    let read_client = format!(
        "POST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 1000000\\r\\n\\r\\n{}",
        "x".repeat(60000)
    );
    let write_client = "GET /big?size=200000000 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
    let async_write = "GET /async?n=5000&size=65536 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
    let transmit = format!("GET /transmit?path={file} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
    let transmit_sync =
        format!("GET /transmit?sync=1&path={file} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
    let phases = [
        format!("head|0|{head}"),
        format!("preread|0|{preread}"),
        format!("readclient|0|{read_client}"),
        format!("writeclient|100000|{write_client}"),
        format!("async|100000|{async_write}"),
        format!("transmit|100000|{transmit}"),
        format!("transmit-sync|100000|{transmit_sync}"),
    ];
    let mut args = vec!["127.0.0.1", port.as_str()];
    args.extend(phases.iter().map(String::as_str));
    let out = super::python(RESETS, &args);
    assert_eq!(out.lines().count(), phases.len(), "{out}");
    // The host is still serving, and every request ended.
    let response = super::get(host.addr, "/hello");
    assert_eq!(response.status, 200);
    assert!(host.wait_for_output("\"#"), "{}", host.output());
    let stderr = super::stop_clean(host);
    for request in [
        "\"POST /echo\" 400",
        "POST /echo\" ",
        "GET /big?size=200000000\" 200",
        "GET /async?n=5000&size=65536\" 200",
        "GET /transmit?path=",
        "GET /transmit?sync=1&path=",
    ] {
        assert!(stderr.contains(request), "{request} not logged:\n{stderr}");
    }
    assert!(stderr.contains("client closed during the body"), "{stderr}");
}
