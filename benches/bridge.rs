//! How much the bridge costs per request, next to what Python itself spends.
//!
//! Drives `HttpExtensionProc` in-process on a synthetic ECB (tests/support/synthetic.rs) for
//! the hello app of examples/hello, and, in the same embedded interpreter, times Python
//! building a fresh 25-key environ dict and calling the same app. The difference is the
//! bridge's overhead: the ECB callbacks, environ from server variables, wsgi.input and
//! start_response objects, the GIL, header validation and framing. Target (issue 10): the
//! whole bridge at most 1.0 x Python alone. The synthetic server looks its variables up in
//! a table, as IIS does; its own cost is still inside the bridge's figure (about 3 k of 28 k
//! instructions, docs/handlers.md). Timings on a shared machine are noisy: run it under
//! `valgrind --tool=callgrind` for instruction counts.
//!
//! The main figure repeats one request (one client on a keep-alive connection: the values
//! that repeat between requests are reused); "two clients in turn" alternates two clients
//! whose headers and addresses differ, so those reuses all miss.
//!
//!     cargo bench --bench bridge            (ISAPI_WSGI_BENCH_REQUESTS=N to change the count)
#[path = "../tests/support/synthetic.rs"]
mod synthetic;

use std::time::Instant;

use isapi_wsgi::python::{Gil, runtime};

const BASELINE: &std::ffi::CStr = cr#"
import time
from hello import application

def start_response(status, headers, exc_info=None):
    return None

def run(n):
    best = None
    for _ in range(1):
        start = time.perf_counter_ns()
        for _ in range(n):
            environ = {
                "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/hello",
                "QUERY_STRING": "", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "REMOTE_PORT": "50000",
                "HTTP_HOST": "localhost", "HTTP_USER_AGENT": "bench/1.0", "HTTP_ACCEPT": "*/*",
                "HTTP_ACCEPT_ENCODING": "gzip", "HTTP_CONNECTION": "keep-alive",
                "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "bench",
                "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": None,
                "wsgi.errors": None, "wsgi.multithread": True, "wsgi.multiprocess": True,
                "wsgi.run_once": False, "wsgi.file_wrapper": None, "wsgi.input_terminated": True,
            }
            body = application(environ, start_response)
            for chunk in body:
                pass
            if hasattr(body, "close"):
                body.close()
        elapsed = (time.perf_counter_ns() - start) / n
        best = elapsed if best is None else min(best, elapsed)
    return best
"#;

fn main() {
    let requests: usize = std::env::var("ISAPI_WSGI_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let dir = synthetic::scratch_dir("bench");
    let ini = dir.join("isapi_wsgi.ini");
    let hello = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("hello");
    std::fs::write(
        &ini,
        format!(
            "[python]\npath = {}\n[wsgi]\napp = hello:application\nlog = {}\n",
            hello.display(),
            dir.join("bench.log").display()
        ),
    )
    .unwrap();
    synthetic::start(&ini);

    let request = synthetic::Request::get("/hello")
        .header("User-Agent", "bench/1.0")
        .header("Accept", "*/*")
        .header("Accept-Encoding", "gzip")
        .header("Connection", "keep-alive");
    let mut prepared = synthetic::Prepared::new(&request);
    let reply = prepared.run(isapi_wsgi::HttpExtensionProc);
    assert_eq!(reply.status, "200 OK", "{}", reply.text());
    assert_eq!(reply.text(), "Hello, World!");

    // Warm up, then alternate rounds of the bridge and of the Python baseline and keep the
    // best of each: the machine is shared, and the best round is the least disturbed one.
    for _ in 0..requests / 10 {
        prepared.run_quiet(isapi_wsgi::HttpExtensionProc);
    }
    let api = runtime::api().expect("Python started");
    let baseline = Gil::acquire(api, |gil| {
        let module = gil
            .run_module(c"bridge_baseline", BASELINE)
            .expect("baseline code");
        module
            .get_item(&gil.str("run").unwrap())
            .expect("run()")
            .into_static()
    });
    // The same requests from two clients in turn: every per-header "last value" cache misses.
    let other = synthetic::Request::get("/hello")
        .header("User-Agent", "other-client/2.0")
        .header("Accept", "text/html")
        .header("Accept-Encoding", "br")
        .header("Connection", "keep-alive")
        .var("REMOTE_ADDR", "10.1.2.3")
        .var("REMOTE_PORT", "61000");
    let mut clients = [
        synthetic::Prepared::new(&request),
        synthetic::Prepared::new(&other),
    ];
    let rounds = 10;
    let per_round = requests / rounds;
    let (mut bridge, mut python, mut alternating) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            assert_eq!(prepared.run_quiet(isapi_wsgi::HttpExtensionProc), 2);
        }
        bridge = bridge.min(start.elapsed().as_nanos() as f64 / per_round as f64);
        let start = Instant::now();
        for i in 0..per_round {
            assert_eq!(clients[i % 2].run_quiet(isapi_wsgi::HttpExtensionProc), 2);
        }
        alternating = alternating.min(start.elapsed().as_nanos() as f64 / per_round as f64);
        let ns = Gil::acquire(api, |gil| {
            let ns = baseline
                .bind(gil)
                .call(&[&gil.int(per_round as i64).unwrap()])
                .expect("baseline run");
            ns.text().parse::<f64>().expect("a number")
        });
        python = python.min(ns);
    }

    // On another thread: as an IIS thread under the simple handler (which keeps a thread
    // state for it from its first request on), and as a threadpool worker (which holds a
    // ThreadAttachment for its whole life). Both should cost what the main thread does.
    let on_thread = |keep: bool| {
        let request = request.clone();
        std::thread::spawn(move || {
            let _attached =
                keep.then(|| isapi_wsgi::python::ThreadAttachment::new(runtime::api().unwrap()));
            let mut prepared = synthetic::Prepared::new(&request);
            let mut best = f64::MAX;
            for _ in 0..rounds {
                let start = Instant::now();
                for _ in 0..per_round / 4 {
                    assert_eq!(prepared.run_quiet(isapi_wsgi::HttpExtensionProc), 2);
                }
                best = best.min(start.elapsed().as_nanos() as f64 / (per_round / 4) as f64);
            }
            best
        })
        .join()
        .unwrap()
    };
    let iis_thread = on_thread(false);
    let worker_thread = on_thread(true);

    println!("rounds x requests:            {rounds} x {per_round}");
    println!("python alone (environ + app): {python:8.0} ns/request");
    println!("through the bridge:           {bridge:8.0} ns/request");
    println!(
        "bridge overhead:              {:8.0} ns/request",
        bridge - python
    );
    println!(
        "bridge / python alone:        {:8.2} (target <= 1.0)",
        bridge / python
    );
    println!(
        "two clients in turn:          {alternating:8.0} ns/request, overhead {:.0} ns",
        alternating - python
    );
    println!("another thread, as an IIS thread:  {iis_thread:6.0} ns/request");
    println!("another thread, as a pool worker:  {worker_thread:6.0} ns/request");
    let _ = std::fs::remove_dir_all(&dir);
}
