//! Running a site for years, through the real `isapi-host --strict` over TCP with the built
//! library: request ids (X-Request-Id, the environ, IIS's log line, our log, the 500 page),
//! the `[health]` page (answered without the app and without the GIL), maintenance with
//! `app_offline.htm`, and the log (rotation, the process id, Python's logging and warnings,
//! tracebacks not repeated past `traceback_limit`). The app is tests/apps/ops_app.py.
mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Host, Response, Site};

const HANDLERS: [&str; 2] = ["simple", "threadpool"];

fn ops_site(name: &str, handler: &str, extra: &str) -> Site {
    Site::new(
        &format!("ops-{name}-{handler}"),
        &format!(
            "[python]\npath = {{apps}}\n[wsgi]\napp = ops_app:application\nhandler = {handler}\nlog = {{log}}\n{extra}\n"
        ),
    )
}

/// A GET with extra header lines (each `Name: value`), over a fresh connection.
fn get_with(addr: SocketAddr, path: &str, headers: &[&str]) -> Response {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let data = common::raw(addr, request.as_bytes());
    common::parse_response(&data, false)
        .unwrap_or_else(|| panic!("no response to {path}: {}", String::from_utf8_lossy(&data)))
        .0
}

/// The host's access-log line for the request `#n` (the host numbers requests from 1).
fn access_line(host: &Host, n: usize) -> String {
    let needle = format!("\"#{n} ");
    assert!(host.wait_for_output(&needle), "{}", host.output());
    host.output()
        .lines()
        .find(|line| line.starts_with("access: ") && line.contains(&needle))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_request_gets_an_id_in_the_header_the_environ_and_iis_log() {
    for handler in HANDLERS {
        let site = ops_site("id", handler, "");
        let host = site.start(&[]);
        // Generated: the same id in the header, the environ and IIS's log line.
        let r = common::get(host.addr, "/id");
        assert_eq!(r.status, 200, "{handler}");
        let id = r.text();
        let pid = format!("-{:x}-", host.pid());
        assert!(id.contains(&pid), "{handler}: {id} names the process");
        assert_eq!(r.header("X-Request-Id"), Some(id.as_str()), "{handler}");
        let line = access_line(&host, 1);
        assert!(line.ends_with(&format!(" request_id={id}")), "{line}");
        // The next request gets another one.
        let second = common::get(host.addr, "/id").text();
        assert_ne!(second, id, "{handler}");
        // A client's safe id is kept; after a query string the log parameter is `&`-joined.
        let r = get_with(host.addr, "/id?x=1", &["X-Request-Id: lb-7f3a.9:1"]);
        assert_eq!(
            (r.text().as_str(), r.header("X-Request-Id")),
            ("lb-7f3a.9:1", Some("lb-7f3a.9:1"))
        );
        assert!(access_line(&host, 3).ends_with(" &request_id=lb-7f3a.9:1"));
        // Unsafe or too long: replaced by a generated one.
        let long = format!("X-Request-Id: {}", "a".repeat(65));
        for bad in ["X-Request-Id: a b", "X-Request-Id: <script>", long.as_str()] {
            let r = get_with(host.addr, "/id", &[bad]);
            let given = r.text();
            assert!(given.contains(&pid), "{handler}: {bad} -> {given}");
            assert_eq!(r.header("X-Request-Id"), Some(given.as_str()));
        }
        // Sent twice (say by two proxies), it is ambiguous: replaced too, and the header
        // name's case does not matter.
        let r = get_with(
            host.addr,
            "/id",
            &["X-Request-Id: one", "x-request-id: two"],
        );
        let given = r.text();
        assert!(given.contains(&pid), "{handler}: twice -> {given}");
        let r = get_with(host.addr, "/id", &["x-REQUEST-id: lower-9"]);
        assert_eq!(r.text(), "lower-9", "{handler}");
        // The application's own X-Request-Id wins; there is only one.
        let r = common::get(host.addr, "/own-id");
        let ids: Vec<_> = r
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("x-request-id"))
            .collect();
        assert_eq!(ids.len(), 1, "{:?}", r.headers);
        assert_eq!(r.header("X-Request-Id"), Some("set-by-app"));
        site.finish(host);
    }
}

#[test]
fn the_500_page_and_the_log_line_name_the_request_id() {
    for handler in HANDLERS {
        let site = ops_site("failure", handler, "max_body = 1K");
        let host = site.start(&[]);
        let r = get_with(host.addr, "/fail/1", &["X-Request-Id: trace-me-42"]);
        assert_eq!(r.status, 500, "{handler}");
        assert!(
            r.text().contains("Request id: <code>trace-me-42</code>"),
            "{}",
            r.text()
        );
        assert_eq!(r.header("X-Request-Id"), Some("trace-me-42"));
        assert!(
            site.wait_for_log("isapi_wsgi: [trace-me-42] GET /fail/1: the application failed:"),
            "{}",
            site.log()
        );
        // Pages the bridge answers before the app (here: 413) name it too.
        let mut request =
            b"POST /id HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-1\r\nContent-Length: 2000\r\n\r\n"
                .to_vec();
        request.extend_from_slice(&[b'k'; 2000]);
        let data = common::raw(host.addr, &request);
        let r = common::parse_response(&data, false).unwrap().0;
        assert_eq!(r.status, 413, "{handler}");
        assert!(r.text().contains("<code>big-1</code>"), "{}", r.text());
        assert!(site.wait_for_log("[big-1] POST /id: refused with 413"));
        site.finish(host);
    }
}

#[test]
fn request_id_header_false_keeps_the_id_off_the_response_only() {
    let site = ops_site("noheader", "simple", "request_id_header = false");
    let host = site.start(&[]);
    let r = common::get(host.addr, "/id");
    assert_eq!(r.header("X-Request-Id"), None, "{:?}", r.headers);
    let id = r.text();
    assert!(!id.is_empty());
    assert!(access_line(&host, 1).ends_with(&format!(" request_id={id}")));
    let r = common::get(host.addr, "/fail/2");
    assert_eq!((r.status, r.header("X-Request-Id")), (500, None));
    assert!(r.text().contains("Request id: <code>"), "{}", r.text());
    site.finish(host);
}

/// A field of the health page's JSON, as text (a number, `true`, or a quoted string).
fn field(json: &str, name: &str) -> String {
    let key = format!("\"{name}\":");
    let start = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + key.len();
    let rest = &json[start..];
    let end = match rest.strip_prefix('"') {
        Some(quoted) => quoted.find('"').unwrap() + 2,
        None => rest.find([',', '}']).unwrap(),
    };
    rest[..end].to_string()
}

#[test]
fn health_reports_the_counters_from_allowed_clients_only() {
    for handler in HANDLERS {
        let site = ops_site("health", handler, "[health]\npath = /_isapi/health\n");
        let host = site.start(&[]);
        assert_eq!(common::get(host.addr, "/hello").status, 200);
        assert_eq!(common::get(host.addr, "/fail/3").status, 500);
        let r = common::get(host.addr, "/_isapi/health");
        assert_eq!(r.status, 200, "{handler}: {}", r.text());
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        assert_eq!(r.header("Cache-Control"), Some("no-store"));
        let json = r.text();
        assert_eq!(field(&json, "status"), "\"ok\"", "{json}");
        assert_eq!(field(&json, "maintenance"), "false");
        assert_eq!(field(&json, "requests_served"), "2", "{json}");
        assert_eq!(field(&json, "errors_5xx"), "1", "{json}");
        assert_eq!(field(&json, "in_flight"), "0", "{json}");
        assert_eq!(field(&json, "queued"), "0", "{json}");
        assert_eq!(field(&json, "app"), "\"ops_app:application\"");
        assert_eq!(field(&json, "handler"), format!("\"{handler}\""));
        assert_eq!(field(&json, "pid"), host.pid().to_string());
        let python = field(&json, "python");
        assert!(python.starts_with("\"3."), "{json}");
        // The app never saw the health requests, and they are not counted as served.
        let hits = common::get(host.addr, "/hits").text();
        assert!(!hits.contains("health"), "{hits}");
        let json = common::get(host.addr, "/_isapi/health").text();
        assert_eq!(field(&json, "requests_served"), "3", "{json}");
        site.finish(host);
        // From another network: 404, as if there were no such page.
        let site = ops_site("health-far", handler, "[health]\npath = /_isapi/health\n");
        let host = site.start(&["--remote-addr", "203.0.113.9"]);
        let r = common::get(host.addr, "/_isapi/health");
        assert_eq!(r.status, 404, "{handler}");
        assert!(!r.text().contains("requests_served"));
        assert!(
            !common::get(host.addr, "/hits").text().contains("health"),
            "the app was not asked either"
        );
        site.finish(host);
    }
}

#[test]
fn health_is_off_by_default_and_follows_the_application_mount() {
    let site = ops_site("health-off", "simple", "");
    let host = site.start(&[]);
    let r = common::get(host.addr, "/_isapi/health");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello from ops_app /_isapi/health")
    );
    site.finish(host);

    let site = ops_site(
        "health-vdir",
        "simple",
        "[health]\npath = /status\nallow = 203.0.113.0/24\n",
    );
    let host = site.start(&["--vdir", "/app", "--remote-addr", "203.0.113.9"]);
    let r = common::get(host.addr, "/app/status");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(field(&r.text(), "status"), "\"ok\"");
    // The same path outside the application, or deeper, is the app's.
    let r = common::get(host.addr, "/app/x/status");
    assert_eq!(r.text(), "hello from ops_app /x/status");
    site.finish(host);
}

/// CLOCK_MONOTONIC in seconds: the clock of Python's `time.monotonic()` on Linux.
fn monotonic_now() -> f64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to the pointer it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

#[test]
fn health_answers_while_a_request_holds_the_gil() {
    for handler in HANDLERS {
        let site = ops_site(
            "gil",
            handler,
            "threads = 1\nqueue = 10\n[health]\npath = /_isapi/health\n",
        );
        let holding = site.dir.join("holding");
        let host = site.start_with_env(&[], &[("OPS_APP_HOLDING", holding.to_str().unwrap())]);
        let addr = host.addr;
        let held = std::thread::spawn(move || common::get(addr, "/hold-gil?6"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !holding.exists() {
            assert!(Instant::now() < deadline, "the app never started holding");
            std::thread::sleep(Duration::from_millis(10));
        }
        // threadpool: one more request waits in the queue for the one worker.
        let queued =
            (handler == "threadpool").then(|| std::thread::spawn(move || common::get(addr, "/id")));
        if queued.is_some() {
            std::thread::sleep(Duration::from_millis(300));
        }
        let json = common::get(host.addr, "/_isapi/health").text();
        let answered = monotonic_now();
        assert_eq!(field(&json, "in_flight"), "1", "{handler}: {json}");
        if let Some(queued) = queued {
            assert_eq!(field(&json, "queued"), "1", "{json}");
            assert_eq!(queued.join().unwrap().status, 200);
        }
        let held = held.join().unwrap().text();
        let until: f64 = held
            .strip_prefix("held until ")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{held}"));
        assert!(
            answered < until,
            "{handler}: the health page came at {answered}, after the GIL was free ({until})"
        );
        site.finish(host);
    }
}

#[test]
fn health_says_failed_when_the_application_did_not_start() {
    let site = Site::new(
        "ops-health-failed",
        "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n[health]\npath = /_isapi/health\n",
    );
    let host = site.start(&[]);
    let r = common::get(host.addr, "/_isapi/health");
    assert_eq!(r.status, 503);
    let json = r.text();
    assert_eq!(field(&json, "status"), "\"failed\"", "{json}");
    // Python itself started (only the application's import failed): its version is given.
    assert!(field(&json, "python").starts_with("\"3."), "{json}");
    assert_eq!(field(&json, "app"), "\"no_such_module:app\"");
    common::assert_startup_failure_pages(&host, "health-failed");
    let json = common::get(host.addr, "/_isapi/health").text();
    assert_eq!(field(&json, "errors_5xx"), "2", "{json}");
    site.finish(host);
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn app_offline_htm_answers_every_request_with_503_while_it_exists() {
    for handler in HANDLERS {
        let site = ops_site("offline", handler, "[health]\npath = /_isapi/health\n");
        let physical = site.dir.to_str().unwrap().to_string();
        let host = site.start(&["--physical-path", &physical]);
        assert_eq!(common::get(host.addr, "/hello").status, 200);
        let offline = site.dir.join("app_offline.htm");
        let page = "<!doctype html><title>Back soon</title><p>Upgrading.</p>\n";
        std::fs::write(&offline, page).unwrap();
        wait_until("the maintenance page", || {
            common::get(host.addr, "/hello").status == 503
        });
        let r = get_with(host.addr, "/offline-1?q=1", &["X-Request-Id: maint-1"]);
        assert_eq!(r.status, 503, "{handler}");
        assert_eq!(r.text(), page);
        assert_eq!(r.header("Retry-After"), Some("30"));
        assert_eq!(r.header("Content-Type"), Some("text/html"));
        assert_eq!(r.header("X-Request-Id"), Some("maint-1"));
        // The health page still answers, and says so (503: out of rotation).
        let health = common::get(host.addr, "/_isapi/health");
        assert_eq!(health.status, 503);
        assert_eq!(field(&health.text(), "maintenance"), "true");
        assert_eq!(field(&health.text(), "status"), "\"ok\"");
        // A changed file is served changed.
        std::fs::write(&offline, "second text").unwrap();
        wait_until("the changed page", || {
            common::get(host.addr, "/offline-2").text() == "second text"
        });
        std::fs::remove_file(&offline).unwrap();
        wait_until("the application again", || {
            common::get(host.addr, "/hello").status == 200
        });
        // The application never saw a request while the file was there.
        let hits = common::get(host.addr, "/hits").text();
        assert!(!hits.contains("/offline"), "{hits}");
        let log = site.log();
        assert!(
            log.contains("app_offline.htm is there: every request gets it with 503"),
            "{log}"
        );
        assert!(
            log.contains("app_offline.htm is gone: the application serves again"),
            "{log}"
        );
        site.finish(host);
    }
}

#[test]
fn app_offline_false_ignores_the_file_and_a_failed_app_still_goes_offline() {
    let site = ops_site("offline-off", "simple", "app_offline = false");
    std::fs::write(site.dir.join("app_offline.htm"), "down").unwrap();
    let physical = site.dir.to_str().unwrap().to_string();
    let host = site.start(&["--physical-path", &physical]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(common::get(host.addr, "/hello").status, 200);
    site.finish(host);

    let site = Site::new(
        "ops-offline-failed",
        "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n",
    );
    std::fs::write(site.dir.join("app_offline.htm"), "down for repairs").unwrap();
    let physical = site.dir.to_str().unwrap().to_string();
    let host = site.start(&["--physical-path", &physical]);
    let r = common::get(host.addr, "/");
    assert_eq!((r.status, r.text().as_str()), (503, "down for repairs"));
    site.finish(host);
}

fn log_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("wsgi.log"))
        .collect();
    names.sort();
    names
}

#[test]
fn the_log_rotates_at_log_max_and_keeps_log_keep_files() {
    for handler in HANDLERS {
        let site = ops_site("rotate", handler, "log_max = 4K\nlog_keep = 2\n");
        let host = site.start(&[]);
        for _ in 0..12 {
            assert_eq!(common::get(host.addr, "/noise").status, 200);
        }
        let names = log_files(&site.dir);
        assert_eq!(names, ["wsgi.log", "wsgi.log.1", "wsgi.log.2"], "{handler}");
        for name in &names {
            let size = std::fs::metadata(site.dir.join(name)).unwrap().len();
            assert!(size <= 4096, "{name}: {size} bytes");
        }
        // No line is lost or cut across the files kept: the newest noise is whole.
        let newest = site.log();
        let rotated = std::fs::read_to_string(site.dir.join("wsgi.log.1")).unwrap();
        for text in [&newest, &rotated] {
            for line in text.lines() {
                assert!(
                    line.starts_with("ops_app: noise line ")
                        || line.contains(" isapi_wsgi: ")
                        || line.contains(" ops_app "),
                    "a cut line: {line:?}"
                );
            }
        }
        site.finish(host);
    }
}

#[test]
fn log_lines_carry_the_process_id_and_python_logging_and_warnings_reach_the_log() {
    let site = ops_site("pylog", "simple", "");
    let host = site.start(&[]);
    let r = common::get(host.addr, "/log");
    assert_eq!(r.status, 200);
    let id = r.header("X-Request-Id").unwrap().to_string();
    let pid = host.pid();
    assert!(
        site.wait_for_log("UserWarning: a warning from warnings.warn"),
        "{}",
        site.log()
    );
    let log = site.log();
    assert!(
        log.contains(&format!("[{pid}] isapi_wsgi: serving ops_app:application")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "[{pid}] ops_app WARNING: a warning from logging, request {id}"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("[{pid}] py.warnings WARNING: ")),
        "{log}"
    );
    assert!(
        !log.contains("an info record"),
        "the root logger's level is kept: {log}"
    );
    assert!(log.contains("Python's logging: the application set up no handler"));
    site.finish(host);

    // An application that configured logging keeps it.
    let site = Site::new(
        "ops-pylog-own",
        "[python]\npath = {apps}\n[wsgi]\napp = ops_app_logging:application\nlog = {log}\n",
    );
    let own = site.dir.join("own.log");
    std::fs::write(
        site.dir.join("ops_app_logging.py"),
        format!(
            "import logging\nlogging.basicConfig(filename={:?})\nfrom ops_app import application\n",
            own.to_str().unwrap()
        ),
    )
    .unwrap();
    let ini = std::fs::read_to_string(&site.ini).unwrap();
    std::fs::write(
        &site.ini,
        ini.replace(
            "[python]\npath = ",
            &format!("[python]\npath = {};", site.dir.display()),
        ),
    )
    .unwrap();
    let host = site.start(&[]);
    assert_eq!(common::get(host.addr, "/log").status, 200);
    let log = site.log();
    assert!(
        log.contains("Python's logging: the application configured its own handlers"),
        "{log}"
    );
    assert!(!log.contains("a warning from logging"), "{log}");
    let own = std::fs::read_to_string(&own).unwrap();
    assert!(own.contains("a warning from logging"), "{own}");
    site.finish(host);
}

#[test]
fn the_same_traceback_is_logged_at_most_traceback_limit_times_a_minute() {
    for handler in HANDLERS {
        let site = ops_site("repeats", handler, "traceback_limit = 2");
        let host = site.start(&[]);
        let mut ids = Vec::new();
        for n in 0..5 {
            let r = common::get(host.addr, &format!("/fail/{n}"));
            assert_eq!(r.status, 500);
            ids.push(r.header("X-Request-Id").unwrap().to_string());
        }
        assert_eq!(common::get(host.addr, "/other-fail").status, 500);
        assert!(
            site.wait_for_log("ValueError: another failure"),
            "{}",
            site.log()
        );
        let log = site.log();
        assert_eq!(
            log.matches("KeyError: 'item ").count(),
            2,
            "{handler}: {log}"
        );
        for (n, id) in ids.iter().enumerate().skip(2) {
            let line = format!(
                "[{id}] GET /fail/{n}: the application failed: KeyError at {}, line",
                common::apps_dir().join("ops_app.py").display()
            );
            assert!(log.contains(&line), "{line}\n{log}");
            assert!(
                log.contains(&format!("again ({} more in this minute", n - 1)),
                "{log}"
            );
        }
        site.finish(host);
    }
}
