//! Fault injection against the real host and the Rust test extension
//! (examples/test-extension): a client that resets its connection at each phase of a
//! request, an extension that crashes or panics inside an I/O completion callback, and
//! SIGTERM while requests are in flight.
mod common;

use std::os::unix::process::ExitStatusExt;

use common::{Host, test_extension};

/// A client resets its connection at each phase of a request (see
/// [`common::hostile::client_resets_at_every_phase`]).
#[test]
fn client_resets_at_every_phase() {
    let dir = common::scratch_dir("faults-resets");
    let file = dir.join("big.bin");
    std::fs::write(&file, vec![b'f'; 32 << 20]).unwrap();
    let host = Host::start(&test_extension(), &["--strict"]);
    common::hostile::client_resets_at_every_phase(host, &file.display().to_string());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A response the client never got (it reset the connection while the extension worked,
/// so the host's write fails) is logged with the bytes that went out, none, and its
/// `--trace` line says the connection closed. Both ways a response is written: at once
/// (`--threads 1`) and kept back for the worker's other ready work (4 workers). Before, the
/// line counted the bytes ready to send, and the kept-back one said "kept alive".
#[test]
fn a_response_whose_write_failed_is_logged_with_no_bytes() {
    for threads in ["1", "4"] {
        let host = Host::start(&test_extension(), &["--threads", threads, "--trace"]);
        let port = host.addr.port().to_string();
        let phase = "sleep|0|GET /sleep?ms=900 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n";
        let out = common::python(common::hostile::RESETS, &["127.0.0.1", &port, phase]);
        assert_eq!(out.trim(), "sleep 0", "{out}");
        assert!(host.wait_for_output("request ended"), "{}", host.output());
        let stderr = common::stop_clean(host);
        let access = stderr
            .lines()
            .find(|l| l.starts_with("access: ") && l.contains("GET /sleep"))
            .unwrap_or_else(|| panic!("no access-log line:\n{stderr}"));
        let fields: Vec<&str> = access
            .rsplit('"')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(fields[..2], ["200", "0"], "--threads {threads}: {access}");
        let ended = stderr
            .lines()
            .find(|l| l.contains("request ended"))
            .unwrap();
        assert!(
            ended.ends_with("0 bytes sent, connection closed"),
            "--threads {threads}: {ended}"
        );
    }
}

/// Extension code that faults inside an I/O completion callback, or panics there (Rust
/// aborts: a panic cannot unwind out of an `extern` function), takes the process down, as
/// it would take down IIS's worker process. The host says so in one line, with the
/// requests it cuts off, and the process ends with the signal.
#[test]
fn a_crash_in_a_completion_callback_is_reported() {
    for (how, signal, name) in [
        ("segv", libc::SIGSEGV, "SIGSEGV"),
        ("panic", libc::SIGABRT, "SIGABRT"),
    ] {
        let host = Host::start(&test_extension(), &["--strict"]);
        let _ = common::raw(
            host.addr,
            format!("GET /crash?how={how} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
        let stopped = host.stop();
        assert_eq!(stopped.status.signal(), Some(signal), "{}", stopped.stderr);
        assert!(
            stopped.stderr.contains(&format!(
                "isapi-host: fatal signal {signal} ({name}): the extension crashed, or a call it \
                 made did; 1 request(s) in flight are cut off"
            )),
            "{}",
            stopped.stderr
        );
    }
}

/// Keep-alive clients asking for `/sleep?ms=50` in a loop, two clients in a request that
/// outlasts the shutdown wait, and two sending half a request head. Each request's
/// outcome is printed once: answered, closed (the host closed the connection first), or
/// lost (no answer and no close within 60 s: the failure this test looks for).
const LOAD: &str = r#"
import socket, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
outcomes, lock = [], threading.Lock()
def note(what):
    with lock:
        outcomes.append(what)
def ask(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"slept"):
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return "lost"
        except OSError:
            return "closed"
        if not chunk:
            return "closed"
        data += chunk
    return "answered"
def client(path, repeat):
    try:
        s = socket.create_connection((host, port), timeout=60)
    except OSError:
        return note("refused")
    for _ in range(repeat):
        outcome = ask(s, path)
        note(outcome)
        if outcome != "answered":
            return
def partial():
    s = socket.create_connection((host, port), timeout=60)
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
    try:
        note("closed" if s.recv(100) == b"" else "answered")
    except socket.timeout:
        note("lost")
    except OSError:
        note("closed")
threads = [threading.Thread(target=client, args=("/sleep?ms=50", 1000)) for _ in range(16)]
threads += [threading.Thread(target=client, args=("/sleep?ms=30000", 1)) for _ in range(2)]
threads += [threading.Thread(target=partial) for _ in range(2)]
for t in threads:
    t.start()
print("started", flush=True)
for t in threads:
    t.join()
for what in ("answered", "closed", "lost", "refused"):
    print(what, outcomes.count(what))
"#;

/// SIGTERM under load: every request the host accepted is answered or its connection
/// closed, none is left hanging, and the host's log says how many it cut off (the two
/// requests still in the extension after `--shutdown-timeout`, the two half heads).
#[test]
fn sigterm_under_load_cuts_nothing_silently() {
    use std::io::BufRead;
    let host = Host::start(
        &test_extension(),
        &[
            "--threads",
            "8",
            "--shutdown-timeout",
            "1",
            "--access-log",
            "off",
        ],
    );
    let mut load = std::process::Command::new("python3")
        .arg("-c")
        .arg(LOAD)
        .args(["127.0.0.1", &host.addr.port().to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(load.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "started");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stopped = host.stop();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut out, &mut report).unwrap();
    assert!(load.wait().unwrap().success(), "{report}");
    let count = |what: &str| -> usize {
        let line = report.lines().find(|l| l.starts_with(what)).unwrap();
        line.split(' ').nth(1).unwrap().parse().unwrap()
    };
    assert_eq!(count("lost"), 0, "{report}\n{}", stopped.stderr);
    assert!(count("answered") > 16, "{report}");
    assert!(count("closed") >= 4, "{report}");
    assert!(
        stopped.stderr.contains(
            "isapi-host: stopping: 4 request(s) cut off: 2 still in the extension when the wait \
             ended, 0 still writing their response, 2 still arriving (a partial head or body)"
        ),
        "{}",
        stopped.stderr
    );
    // The two cut off in the extension are also contract violations (never ended).
    assert!(
        stopped.stderr.contains("stopped; 2 contract violation(s)"),
        "{}",
        stopped.stderr
    );
}
