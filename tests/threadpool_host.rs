//! The threadpool and combining handlers end to end (both answer HSE_STATUS_PENDING and
//! end requests with DONE_WITH_SESSION): the built `isapi_wsgi` library in the real
//! `isapi-host --strict` (which reports any ECB call after DONE_WITH_SESSION, a missing or
//! double DONE_WITH_SESSION, ... as a contract violation), over real TCP. The app is
//! tests/apps/threadpool_app.py.
mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Host, Response, get};

/// A scratch directory with an ini for tests/apps/threadpool_app.py.
struct Site {
    dir: PathBuf,
    ini: PathBuf,
    log: PathBuf,
}

impl Site {
    /// `wsgi` is added to the `[wsgi]` section (handler, threads, ...).
    fn new(name: &str, wsgi: &str) -> Site {
        let dir = common::scratch_dir(&format!("threadpool-{name}"));
        let log = dir.join("wsgi.log");
        let apps = common::apps_dir();
        let text = format!(
            "[python]\npath = {}\n[wsgi]\napp = threadpool_app:application\nlog = {}\n{wsgi}\n",
            apps.display(),
            log.display()
        );
        let ini = dir.join("site.ini");
        std::fs::write(&ini, text).unwrap();
        Site { dir, ini, log }
    }

    fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut all = vec!["--strict", "--config", self.ini.to_str().unwrap()];
        all.extend_from_slice(args);
        Host::start_with_env(&common::bridge_library(), &all, env)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the host: it must exit cleanly with zero contract violations.
    fn finish(&self, host: Host) -> String {
        let stopped = host.stop();
        stopped.assert_clean();
        let _ = std::fs::remove_dir_all(&self.dir);
        stopped.stderr
    }
}

impl Site {
    /// Starts the host with `THREADPOOL_ATEXIT_FILE` set: the app's atexit handler writes
    /// "atexit ran" into the returned file.
    fn start_recording_atexit(&self, args: &[&str]) -> (Host, PathBuf) {
        let atexit = self.dir.join("atexit.txt");
        let host = self.start(
            args,
            &[("THREADPOOL_ATEXIT_FILE", atexit.to_str().unwrap())],
        );
        (host, atexit)
    }
}

/// Sends `GET path` with `Connection: close` on a thread; yields all the bytes received.
fn in_background(addr: SocketAddr, path: &str) -> std::thread::JoinHandle<Vec<u8>> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    std::thread::spawn(move || common::raw(addr, request.as_bytes()))
}

/// The host's report holds exactly `count` contract violations, each a request still open
/// (no DONE_WITH_SESSION) when its own shutdown wait ended, and nothing else.
fn assert_only_unended_sessions(stderr: &str, count: usize) {
    let violations: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("CONTRACT VIOLATION"))
        .collect();
    assert_eq!(violations.len(), count, "{stderr}");
    assert!(
        violations
            .iter()
            .all(|v| v.contains("DONE_WITH_SESSION never came")),
        "{stderr}"
    );
}

/// GETs `paths` all at once, one connection each; returns the responses in order and how
/// long the whole burst took.
fn burst(addr: SocketAddr, paths: &[String]) -> (Vec<Response>, Duration) {
    let begun = Instant::now();
    let threads: Vec<_> = paths
        .iter()
        .cloned()
        .map(|path| std::thread::spawn(move || get(addr, &path)))
        .collect();
    let responses = threads.into_iter().map(|t| t.join().unwrap()).collect();
    (responses, begun.elapsed())
}

/// Eight `/sleep?0.5` at once, on eight connections: all answered, in about 0.5 s in all
/// (serialized they would need 4 s).
fn eight_slow_requests_run_at_once(addr: SocketAddr) {
    assert_eq!(get(addr, "/hello").status, 200); // warm up
    let paths: Vec<String> = (0..8).map(|_| "/sleep?0.5".to_string()).collect();
    let (responses, took) = burst(addr, &paths);
    for r in &responses {
        assert_eq!((r.status, r.text().as_str()), (200, "slept 0.5"));
    }
    assert!(
        took < Duration::from_millis(2500),
        "8 x 0.5 s took {took:?}"
    );
}

#[test]
fn sixty_four_keep_alive_clients_get_no_503_with_the_defaults() {
    // The default queue is as deep as IIS's application-pool queue (1 000): 64 clients at
    // once wait their turn instead of being refused, as they would under IIS. (Before,
    // the default of 4 x threads = 32 answered some of them 503.)
    let site = Site::new("defaults", "handler = threadpool");
    let host = site.start(&[], &[]);
    sixty_four_clients(host.addr);
    assert!(
        site.log()
            .contains("handler = threadpool: 8 worker thread(s), queue of 1000")
    );
    site.finish(host);
}

#[test]
fn eight_workers_run_eight_slow_requests_at_once() {
    let site = Site::new("concurrent", "handler = threadpool\nthreads = 8\nqueue = 8");
    let host = site.start(&[], &[]);
    eight_slow_requests_run_at_once(host.addr);
    // Each request ran on one of our workers, not on a host thread.
    assert!(
        get(host.addr, "/hello")
            .text()
            .starts_with("hello from wsgi-worker-")
    );
    assert!(
        site.log()
            .contains("handler = threadpool: 8 worker thread(s), queue of 8")
    );
    site.finish(host);
}

#[test]
fn the_simple_handler_on_one_host_thread_serializes() {
    let site = Site::new("serial", "handler = simple");
    let host = site.start(&["--threads", "1"], &[]);
    let paths: Vec<String> = (0..8).map(|_| "/sleep?0.5".to_string()).collect();
    let (responses, took) = burst(host.addr, &paths);
    for r in &responses {
        assert_eq!((r.status, r.text().as_str()), (200, "slept 0.5"));
    }
    assert!(
        took >= Duration::from_millis(4000),
        "8 x 0.5 s took only {took:?}"
    );
    site.finish(host);
}

#[test]
fn wsgi_multithread_is_true_for_every_handler() {
    for handler in ["simple", "threadpool", "combining"] {
        let site = Site::new("multithread", &format!("handler = {handler}"));
        let host = site.start(&[], &[]);
        assert_eq!(get(host.addr, "/multithread").text(), "True", "{handler}");
        site.finish(host);
    }
}

#[test]
fn a_full_queue_answers_503_with_retry_after_and_the_rest_succeed() {
    let site = Site::new(
        "backpressure",
        "handler = threadpool\nthreads = 1\nqueue = 2",
    );
    let host = site.start(&[], &[]);
    let paths: Vec<String> = (0..20).map(|_| "/sleep?0.3".to_string()).collect();
    let (responses, _) = burst(host.addr, &paths);
    let (mut ok, mut busy) = (0, 0);
    for r in &responses {
        match r.status {
            200 => {
                assert_eq!(r.text(), "slept 0.3");
                ok += 1;
            }
            503 => {
                assert_eq!(r.header("Retry-After"), Some("1"), "{r:?}");
                assert!(r.text().contains("busy"), "{}", r.text());
                busy += 1;
            }
            other => panic!("unexpected status {other}: {r:?}"),
        }
    }
    // One running and two waiting at most at any moment: most of the burst is refused.
    assert!(ok >= 3, "only {ok} of 20 succeeded");
    assert!(busy >= 1, "no request was refused");
    assert_eq!(ok + busy, 20);
    // Healthy afterwards.
    for _ in 0..5 {
        let r = get(host.addr, "/hello");
        assert_eq!(r.status, 200);
    }
    let log = site.log();
    assert!(
        log.contains("queue full: answered 503 with Retry-After"),
        "{log}"
    );
    site.finish(host);
}

#[test]
fn a_failing_app_and_a_vanishing_client_leave_the_worker_usable() {
    let site = Site::new("failures", "handler = threadpool\nthreads = 1\nqueue = 4");
    let host = site.start(&[], &[]);
    for _ in 0..3 {
        let r = get(host.addr, "/raise");
        assert_eq!(r.status, 500);
        let r = get(host.addr, "/hello");
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello from wsgi-worker-0")
        );
    }
    // A client that reads a little of a long stream and goes away.
    for _ in 0..3 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(host.addr).unwrap();
        s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        drop(s);
        // The stream's worker waited for its client in WriteClient, so a spare may have
        // started and may serve this (src/handler/pool.rs: waits do not count).
        let r = get(host.addr, "/hello");
        assert_eq!(r.status, 200);
        assert!(
            r.text().starts_with("hello from wsgi-worker-"),
            "{}",
            r.text()
        );
    }
    assert!(site.log().contains("the app fails on purpose"));
    site.finish(host);
}

#[test]
fn objects_kept_past_the_request_fail_cleanly_in_python() {
    for handler in ["threadpool", "simple", "combining"] {
        let site = Site::new("kept", &format!("handler = {handler}"));
        let host = site.start(&[], &[]);
        let r = get(host.addr, "/keep?k");
        assert_eq!((r.status, r.text().as_str()), (200, "kept"));
        // Another thread uses wsgi.input and write() after the request ended.
        let r = get(host.addr, "/kept?k");
        assert_eq!(
            r.text(),
            "read: ValueError: isapi_wsgi.Input is no longer usable: its request has finished; \
             write: ValueError: isapi_wsgi.StartResponse is no longer usable: its request has \
             finished",
            "{handler}"
        );
        site.finish(host); // --strict: no ECB call after the request ended
    }
}

#[test]
fn a_thread_still_reading_the_body_keeps_the_request_open() {
    for handler in ["threadpool", "simple", "combining"] {
        let site = Site::new("reader", &format!("handler = {handler}"));
        // The host reads ahead only 3 bytes of the body: the rest needs ReadClient.
        let host = site.start(&["--read-ahead", "3"], &[]);
        // The body arrives in two parts; the app returns before the second, while its
        // thread is blocked reading it (with the GIL released).
        let mut client = common::Client::connect(host.addr);
        client
            .send(b"POST /read-in-thread?r HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfirst");
        std::thread::sleep(Duration::from_millis(500));
        client.send(b"-last");
        let r = client.response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "started"), "{handler}");
        let r = get(host.addr, "/kept?r");
        assert_eq!(r.text(), "read: b'first-last'", "{handler}");
        site.finish(host); // --strict: the request ended after the read, not under it
    }
}

#[test]
fn the_request_does_not_end_under_a_call_still_running_on_another_thread() {
    for handler in ["threadpool", "simple", "combining"] {
        let site = Site::new("readline", &format!("handler = {handler}"));
        // The host reads ahead only 3 bytes of the body: the rest needs ReadClient.
        let host = site.start(&["--read-ahead", "3"], &[]);
        let mut client = common::Client::connect(host.addr);
        client.send(
            b"POST /readline-in-thread?l HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nfir",
        );
        // The app returns after 0.2 s, while its thread waits in ReadClient for the rest.
        std::thread::sleep(Duration::from_millis(500));
        client.send(b"st-");
        std::thread::sleep(Duration::from_millis(300));
        client.send(b"last\n");
        let r = client.response(false);
        assert_eq!((r.status, r.text().as_str()), (200, "started"), "{handler}");
        let r = get(host.addr, "/kept?l");
        assert_eq!(r.text(), "readline: b'first-last\\n'", "{handler}");
        site.finish(host); // --strict: no ReadClient after the request ended
    }
}

#[test]
fn shutdown_with_requests_in_flight_answers_every_client() {
    for handler in ["threadpool", "combining"] {
        let site = Site::new(
            &format!("shutdown-{handler}"),
            &format!("handler = {handler}\nthreads = 2\nqueue = 8\nshutdown_timeout = 10"),
        );
        let (host, atexit) = site.start_recording_atexit(&[]);
        let addr = host.addr;
        let clients: Vec<_> = (0..6)
            .map(|_| std::thread::spawn(move || get(addr, "/sleep?1")))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let begun = Instant::now();
        let stopped = host.stop();
        let took = begun.elapsed();
        for client in clients {
            let r = client.join().unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "slept 1"), "{handler}");
        }
        stopped.assert_clean();
        assert!(
            took < Duration::from_secs(8),
            "{handler}: stopping took {took:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&atexit).unwrap_or_default(),
            "atexit ran",
            "{handler}"
        );
        let _ = std::fs::remove_dir_all(&site.dir);
    }
}

#[test]
fn terminate_answers_queued_requests_and_never_waits_past_shutdown_timeout() {
    // The host waits only 0.2 s itself, then calls TerminateExtension with one request
    // running (a 4 s sleep) and four queued behind it; shutdown_timeout is 1 s.
    let site = Site::new(
        "terminate",
        "handler = threadpool\nthreads = 1\nqueue = 8\nshutdown_timeout = 1",
    );
    let (host, atexit) = site.start_recording_atexit(&["--shutdown-timeout", "0.2"]);
    let addr = host.addr;
    let slow = in_background(addr, "/sleep?4");
    std::thread::sleep(Duration::from_millis(300));
    let queued: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(move || get(addr, "/hello")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let begun = Instant::now();
    let stopped = host.stop();
    let took = begun.elapsed();
    for q in queued {
        let r = q.join().unwrap();
        assert_eq!(r.status, 503, "{r:?}");
        assert_eq!(r.header("Retry-After"), Some("1"));
        assert!(r.text().contains("shutting down"));
    }
    // The running request keeps its ECB; the process ends under it: the client sees a
    // closed connection, never a partial response.
    let data = slow.join().unwrap();
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    assert!(took < Duration::from_millis(3500), "stopping took {took:?}");
    // The only violations are the host's own report that five requests were still open
    // when its 0.2 s wait ended (we answered four of them in TerminateExtension).
    assert_only_unended_sessions(&stopped.stderr, 5);
    let log = std::fs::read_to_string(&site.log).unwrap_or_default();
    assert!(
        log.contains("4 queued request(s) never started; answered 503"),
        "{log}"
    );
    assert!(
        log.contains("1 request(s) still running after shutdown_timeout"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_to_string(&atexit).unwrap_or_default(),
        "atexit ran"
    );
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn a_request_holding_the_gil_delays_neither_the_503s_nor_the_shutdown() {
    // One worker is stuck in a 5 s C call that holds the GIL; one request may wait.
    let site = Site::new(
        "hold-gil",
        "handler = threadpool\nthreads = 1\nqueue = 1\nshutdown_timeout = 1",
    );
    let (host, atexit) = site.start_recording_atexit(&["--shutdown-timeout", "0.2"]);
    let addr = host.addr;
    let held = in_background(addr, "/hold-gil?5");
    std::thread::sleep(Duration::from_millis(300));
    // The IIS-side work (queueing, refusing) never waits for Python.
    let paths: Vec<String> = (0..6).map(|_| "/hello".to_string()).collect();
    let timed: Vec<_> = paths
        .into_iter()
        .map(|path| {
            std::thread::spawn(move || {
                let begun = Instant::now();
                let r = get(addr, &path);
                (r, begun.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // The 503s have all arrived while the GIL is still held; now stop the host with the
    // held request running and one queued.
    let begun = Instant::now();
    let stopped = host.stop();
    let took = begun.elapsed();
    let results: Vec<(Response, Duration)> = timed.into_iter().map(|t| t.join().unwrap()).collect();
    let (busy, other): (Vec<_>, Vec<_>) = results
        .iter()
        .partition(|(r, _)| r.text().contains("the server is busy"));
    assert_eq!(busy.len(), 5, "{results:?}");
    for (r, waited) in &busy {
        assert_eq!((r.status, r.header("Retry-After")), (503, Some("1")));
        assert!(
            *waited < Duration::from_millis(500),
            "a 503 took {waited:?}"
        );
    }
    // The queued one never started: TerminateExtension answered it.
    assert_eq!(other.len(), 1, "{results:?}");
    assert_eq!(other[0].0.status, 503);
    assert!(other[0].0.text().contains("shutting down"), "{results:?}");
    // shutdown_timeout (1 s) + at most 1 s for atexit, although the GIL is held for 5 s.
    assert!(took < Duration::from_millis(2800), "stopping took {took:?}");
    let held = held.join().unwrap();
    assert!(held.is_empty(), "{:?}", String::from_utf8_lossy(&held));
    let log = site.log();
    assert!(
        log.contains("1 request(s) still running after shutdown_timeout"),
        "{log}"
    );
    assert!(
        log.contains("atexit handlers did not finish within 1 s while requests were still running"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&atexit).unwrap_or_default(), "");
    // The host's own 0.2 s wait ended with two requests open (the held one and the queued
    // one, which TerminateExtension answered later): that, and nothing else, is reported.
    assert_only_unended_sessions(&stopped.stderr, 2);
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn the_threadpool_example_serves_and_each_worker_asks_for_the_users_token() {
    let ini = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/threadpool/isapi_wsgi.ini");
    let host = Host::start(
        &common::bridge_library(),
        &["--strict", "--trace", "--config", ini.to_str().unwrap()],
    );
    let paths: Vec<String> = (0..3).map(|_| "/slow?0.5".to_string()).collect();
    let (responses, _) = burst(host.addr, &paths);
    for r in &responses {
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("waited 0.5 s on "), "{}", r.text());
    }
    let r = get(host.addr, "/");
    assert_eq!(
        r.text(),
        "try /slow?2 several times at once (wsgi.multithread = True)\n"
    );
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(stopped.stderr.contains("stopped; 0 contract violation(s)"));
    // The worker takes the request's identity before running the app (a NULL token here:
    // the host does not impersonate) and every request ends with one DONE_WITH_SESSION.
    let asked = stopped
        .stderr
        .matches("HSE_REQ_GET_IMPERSONATION_TOKEN")
        .count();
    let done = stopped.stderr.matches("HSE_REQ_DONE_WITH_SESSION").count();
    assert!(asked >= 4, "{}", stopped.stderr);
    assert!(done >= 4, "{}", stopped.stderr);
}

/// 64 keep-alive clients, 20 requests each, all at once: every answer is a 200.
fn sixty_four_clients(addr: SocketAddr) {
    let clients: Vec<_> = (0..64)
        .map(|_| {
            std::thread::spawn(move || {
                let mut client = common::Client::connect(addr);
                (0..20)
                    .map(|_| {
                        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
                        client.response(false).status
                    })
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    for client in clients {
        let statuses = client.join().unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
}

#[test]
fn the_default_handler_is_combining_and_sixty_four_clients_get_no_503() {
    // No `handler =`: the combining handler, with the defaults (queue of 1 000).
    let site = Site::new("combining-defaults", "");
    let host = site.start(&[], &[]);
    sixty_four_clients(host.addr);
    assert!(
        site.log()
            .contains("handler = combining: queue of 1000, 8 worker thread(s) for slow requests"),
        "{}",
        site.log()
    );
    site.finish(host);
}

#[test]
fn the_combining_handler_runs_a_request_nobody_waits_for_on_the_iis_thread() {
    let site = Site::new("combining-inline", "handler = combining");
    let host = site.start(&[], &[]);
    // One request at a time: each finds Python free and runs on the host's thread (the
    // host names its threads `worker-N`), never on one of our own.
    for _ in 0..5 {
        let text = get(host.addr, "/hello").text();
        assert!(text.starts_with("hello from worker-"), "{text}");
    }
    site.finish(host);
}

#[test]
fn the_combining_handler_runs_slow_requests_at_once_on_its_workers() {
    let site = Site::new("combining-slow", "handler = combining\nthreads = 8");
    let host = site.start(&[], &[]);
    // The runner stalls in its sleep; the standby hands the others to the workers.
    eight_slow_requests_run_at_once(host.addr);
    site.finish(host);
}
