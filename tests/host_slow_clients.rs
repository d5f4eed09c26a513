//! Slow and hostile clients against the real host serving the Python bridge (both
//! handlers): clients that drip a request head (slowloris) or a body (slow POST) byte by
//! byte hold no worker thread, since heads and the body pre-read are read in the
//! readiness loop; `--header-timeout` and `--min-receive-rate` end them with 408; and
//! thousands of idle connections neither stop a new request nor make the host spin.
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Site;

/// The worker threads the host runs with here; the tests send four times as many slow
/// clients.
const WORKERS: usize = 4;

fn site(name: &str, handler: &str) -> Site {
    Site::new(
        &format!("slow-{name}-{handler}"),
        &format!(
            "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\nhandler = {handler}\n"
        ),
    )
}

/// How a slow client misbehaves.
#[derive(Clone, Copy, Debug)]
enum Drip {
    /// Sends a request head a byte at a time, never finishing it.
    Head,
    /// Sends a whole head announcing a 100 000-byte body, then the body a byte at a time.
    Body,
}

/// A slow client dripping one byte every 100 ms on its own thread until `stop` is set or
/// the host closes; then it reads what the host answered (if anything) and returns it.
fn slow_client(addr: SocketAddr, drip: Drip, stop: Arc<AtomicBool>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let (head, endless): (&[u8], u8) = match drip {
            Drip::Head => (b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ", b'a'),
            Drip::Body => (
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
                b'x',
            ),
        };
        let _ = s.write_all(head);
        while !stop.load(Ordering::SeqCst) {
            if s.write_all(&[endless]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
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

/// 4 x WORKERS slow clients (half dripping heads, half bodies) do not stop a fresh GET.
fn slow_clients_hold_no_worker(handler: &str) {
    let site = site("hold", handler);
    let threads = WORKERS.to_string();
    let host = site.start(&["--threads", &threads, "--access-log", "off"]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4 * WORKERS)
        .map(|i| {
            let drip = if i % 2 == 0 { Drip::Head } else { Drip::Body };
            slow_client(host.addr, drip, stop.clone())
        })
        .collect();
    // Let every slow client get its head (or part of it) in.
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..3 {
        let (response, took) = timed_get(host.addr);
        assert!(
            response.starts_with("HTTP/1.1 200") && response.ends_with("Hello, World!"),
            "{response}"
        );
        // The defaults (idle 120 s) would hold a worker per slow POST for two minutes if
        // the pre-read ran on a worker: a generous bound tells the two apart.
        assert!(
            took < Duration::from_secs(15),
            "{handler}: a GET took {took:?} with {} slow clients",
            4 * WORKERS
        );
    }
    stop.store(true, Ordering::SeqCst);
    drop(clients); // their threads end when the host closes them at shutdown
    site.finish(host);
}

#[test]
fn slow_clients_hold_no_worker_simple() {
    slow_clients_hold_no_worker("simple");
}

#[test]
fn slow_clients_hold_no_worker_threadpool() {
    slow_clients_hold_no_worker("threadpool");
}

/// `--header-timeout` ends a slowloris head with 408, `--min-receive-rate` a slow POST,
/// each with an access-log line; a client at a normal pace is not affected.
#[test]
fn slowloris_and_slow_post_get_408() {
    let site = site("408", "simple");
    let host = site.start(&["--header-timeout", "2", "--min-receive-rate", "240"]);
    let stop = Arc::new(AtomicBool::new(false));
    let head = slow_client(host.addr, Drip::Head, stop.clone());
    let body = slow_client(host.addr, Drip::Body, stop.clone());
    let started = Instant::now();
    let head = String::from_utf8_lossy(&head.join().unwrap()).into_owned();
    let body = String::from_utf8_lossy(&body.join().unwrap()).into_owned();
    // Both threads ended on their own: the host closed both connections.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(head.starts_with("HTTP/1.1 408 Request Timeout"), "{head}");
    assert!(head.contains("Server: Microsoft-HTTPAPI/2.0"), "{head}");
    assert!(body.starts_with("HTTP/1.1 408 Request Timeout"), "{body}");
    // A body sent at once is not affected.
    let response = common::raw(
        host.addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(
        String::from_utf8_lossy(&response).ends_with("hello"),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let stderr = site.finish(host);
    assert!(
        stderr.contains("\"(request head too slow)\" 408"),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"POST /echo\" 408") && stderr.contains("body too slow"),
        "{stderr}"
    );
}
