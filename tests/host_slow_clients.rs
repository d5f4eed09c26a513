//! Slow and hostile clients against the real host serving the Python bridge (both
//! handlers) and the Rust test extension: clients that drip a request head (slowloris) or
//! a body (slow POST, during the pre-read and during the app's ReadClient) byte by byte,
//! and clients that do not read a large response, leave the host free to answer a fresh
//! GET within 1 s (heads and the pre-read are read in the readiness loop; a worker
//! waiting for its client inside a call is replaced meanwhile); `--header-timeout` and
//! `--min-receive-rate` end them with 408; and thousands of idle connections neither stop
//! a new request nor make the host spin.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::Site;
use common::hostile::{BRIDGE, Drip, RUST, fresh_gets_beside, slow_client};

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

/// Each kind of slow client in turn, 4 x WORKERS of them, beside fresh GETs to the bridge
/// with `handler`. The threadpool and combining handlers run the app on a pool of their own
/// (`[wsgi] threads`, 8 by default, fewer than the slow clients): a client stalling in the
/// app's `wsgi.input.read()` or in its response keeps its pool worker inside ReadClient or
/// WriteClient until its rate runs out, and such a worker must not count against `threads`
/// (the pool starts spares), or the fresh GET waits in the pool's queue. Heads and
/// pre-reads never reach the pool.
fn slow_clients_hold_no_worker(handler: &str) {
    for drip in Drip::ALL {
        let site = Site::new(
            &format!("slow-hold-{drip:?}-{handler}"),
            &format!(
                "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\n\
                 handler = {handler}\n"
            ),
        );
        let workers = WORKERS.to_string();
        let host = site.start(&["--threads", &workers, "--access-log", "off"]);
        fresh_gets_beside(
            &host,
            4 * WORKERS,
            drip,
            &BRIDGE,
            &format!("bridge, {handler}"),
        );
        site.finish(host);
    }
}

#[test]
fn slow_clients_hold_no_worker_simple() {
    slow_clients_hold_no_worker("simple");
}

#[test]
fn slow_clients_hold_no_worker_threadpool() {
    slow_clients_hold_no_worker("threadpool");
}

#[test]
fn slow_clients_hold_no_worker_combining() {
    slow_clients_hold_no_worker("combining");
}

/// The same against the Rust test extension, whose ReadClient and WriteClient run on the
/// host's worker inside HttpExtensionProc.
#[test]
fn slow_clients_hold_no_worker_rust_extension() {
    for drip in Drip::ALL {
        let threads = WORKERS.to_string();
        let host = common::Host::start(
            &common::test_extension(),
            &["--strict", "--threads", &threads, "--access-log", "off"],
        );
        fresh_gets_beside(&host, 4 * WORKERS, drip, &RUST, "Rust test extension");
        common::stop_clean(host);
    }
}

/// `--header-timeout` ends a slowloris head with 408, `--min-receive-rate` a slow POST,
/// each with an access-log line; a client at a normal pace is not affected.
#[test]
fn slowloris_and_slow_post_get_408() {
    let site = site("408", "simple");
    let host = site.start(&["--header-timeout", "2", "--min-receive-rate", "240"]);
    let stop = Arc::new(AtomicBool::new(false));
    let head = slow_client(host.addr, Drip::Head, &BRIDGE, stop.clone());
    let body = slow_client(host.addr, Drip::Preread, &BRIDGE, stop.clone());
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

/// Opens `count` idle connections (raising its own open-file limit), measures the host's
/// CPU time while they sit for `sit` seconds, then times a GET on a fresh connection and
/// reports whether each idle connection is still open. Prints one JSON object.
const IDLE_CONNECTIONS: &str = r#"
import json, resource, socket, sys, time
host, port, pid, count, sit = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def cpu():
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / float(__import__("os").sysconf("SC_CLK_TCK"))
idle = []
for i in range(count):
    s = socket.create_connection((host, port), timeout=30)
    idle.append(s)
time.sleep(1)
before = cpu()
time.sleep(sit)
idle_cpu = cpu() - before
started = time.time()
c = socket.create_connection((host, port), timeout=60)
c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
answer = b""
while True:
    chunk = c.recv(65536)
    if not chunk:
        break
    answer += chunk
took = time.time() - started
open_now = 0
for s in idle:
    s.setblocking(False)
    try:
        if s.recv(1):  # b"": the host closed it
            open_now += 1
    except BlockingIOError:  # nothing to read: still open
        open_now += 1
    except OSError:
        pass
print(json.dumps({"idle_cpu": idle_cpu, "took": took, "answer": answer.decode("latin-1"), "open": open_now}))
"#;

fn field<'a>(json: &'a str, name: &str) -> &'a str {
    let at = json.find(&format!("\"{name}\": ")).expect(name) + name.len() + 4;
    let rest = &json[at..];
    let end = rest.find([',', '}']).unwrap();
    &rest[..end]
}

/// 5 000 idle connections: a new GET is still answered, and while they sit the host uses
/// next to no CPU time (no busy loop).
#[test]
fn five_thousand_idle_connections() {
    let site = site("idle", "simple");
    let host = site.start(&["--access-log", "off"]);
    let port = host.addr.port().to_string();
    let pid = host.pid().to_string();
    let out = common::python(IDLE_CONNECTIONS, &["127.0.0.1", &port, &pid, "5000", "5"]);
    assert!(out.contains("Hello, World!"), "{out}");
    let took: f64 = field(&out, "took").parse().unwrap();
    let idle_cpu: f64 = field(&out, "idle_cpu").parse().unwrap();
    let open: usize = field(&out, "open").parse().unwrap();
    assert_eq!(open, 5000, "{out}");
    assert!(
        took < 15.0,
        "a GET took {took} s beside 5000 idle connections"
    );
    // A busy loop would use the whole 5 s; sweeping deadlines ten times a second costs
    // milliseconds.
    assert!(
        idle_cpu < 1.0,
        "the host used {idle_cpu} s of CPU in 5 s idle: {out}"
    );
    eprintln!("5000 idle connections: GET in {took:.3} s, host CPU {idle_cpu:.2} s in 5 s");
    site.finish(host);
}

/// `--max-connections`: the connection past the limit gets 503 at once (and an access-log
/// line); once one closes, a new one is served again.
#[test]
fn connections_past_the_limit_get_503() {
    let site = site("maxconn", "simple");
    let host = site.start(&["--max-connections", "20"]);
    let held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(host.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500)); // all of them accepted
    let refused = common::raw(host.addr, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    let refused = String::from_utf8_lossy(&refused).into_owned();
    assert!(
        refused.starts_with("HTTP/1.1 503 Service Unavailable"),
        "{refused}"
    );
    assert!(refused.contains("too many connections"), "{refused}");
    drop(held);
    std::thread::sleep(Duration::from_millis(500)); // the host saw them close
    let response = common::get(host.addr, "/hello");
    assert_eq!(response.status, 200);
    let stderr = site.finish(host);
    assert!(
        stderr.contains("\"(too many connections)\" 503"),
        "{stderr}"
    );
}

/// `--min-send-rate`: a client that stops reading a large response is cut off once the
/// response falls behind the rate (here 10 MB/s after 1 s), and the request ends with its
/// access-log line; before that, the worker writing it is the only one it holds.
#[test]
fn a_client_that_stops_reading_is_cut_off() {
    let host = common::Host::start(
        &common::test_extension(),
        &[
            "--strict",
            "--header-timeout",
            "1",
            "--min-send-rate",
            "10000000",
        ],
    );
    let mut s = TcpStream::connect(host.addr).unwrap();
    s.write_all(b"GET /big?size=500000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read nothing: the socket buffers fill up and the host's writes block.
    assert!(
        host.wait_for_output("\"#1 GET /big?size=500000000\" 200"),
        "the request did not end:\n{}",
        host.output()
    );
    // The host closed the connection: what is buffered can be read, then the end.
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.len() < 500_000_000, "{} bytes", got.len());
    let response = common::get(host.addr, "/hello");
    assert_eq!(response.status, 200);
    common::stop_clean(host);
}
