//! The watchdog through the real host (`--strict`), with both handlers: the slow-request
//! log with the Python stack (`request_timeout`), a recycle asked for when too many requests
//! are stuck (`unhealthy_after`) or when a C call holds the GIL (`gil_stall`), and when a
//! `reload_on` file changes. `--exit-on-unhealthy` makes the host stop as IIS recycles:
//! no new connections, the requests in flight finish, TerminateExtension.
mod common;

use common::{Host, Site, Stopped, get};
use std::time::Duration;

const HANDLERS: [&str; 2] = ["simple", "threadpool"];

fn site(name: &str, handler: &str, watchdog: &str) -> Site {
    Site::new(
        &format!("watchdog-{name}-{handler}"),
        &format!(
            "[python]\npath = {{apps}}\n[wsgi]\napp = watchdog_app:app\nlog = {{log}}\nhandler = {handler}\n{watchdog}\n"
        ),
    )
}

/// Starts GETs of `paths` at once, each on its own connection; they run in the background.
fn in_background(host: &Host, paths: &[&str]) -> Vec<std::thread::JoinHandle<common::Response>> {
    paths
        .iter()
        .map(|path| {
            let (addr, path) = (host.addr, path.to_string());
            std::thread::spawn(move || get(addr, &path))
        })
        .collect()
}

/// The host stopped by itself after the report, as IIS recycles: the report printed as
/// IIS's event log has it, the requests in flight answered, TerminateExtension called, no
/// contract violation.
fn assert_recycled(stopped: &Stopped, reason: &str) {
    stopped.assert_clean();
    let text = &stopped.stderr;
    assert!(
        text.contains("event 2262: ISAPI '")
            && text.contains(&format!(
                "' reported itself as unhealthy for the following reason: '{reason}"
            )),
        "{text}"
    );
    assert!(
        text.contains("--exit-on-unhealthy: recycling")
            && text.contains("TerminateExtension(HSE_TERM_MUST_UNLOAD) returned TRUE"),
        "{text}"
    );
    assert_eq!(
        text.matches("event 2262").count(),
        1,
        "reported once:\n{text}"
    );
}

#[test]
fn a_slow_request_is_logged_once_with_the_python_stack_of_its_thread() {
    for handler in HANDLERS {
        let site = site("stack", handler, "request_timeout = 1");
        let host = site.start(&[]);
        assert_eq!(get(host.addr, "/sleep/4").text(), "done: /sleep/4");
        assert_eq!(get(host.addr, "/fast").text(), "done: /fast");
        let log = site.log();
        let line = "GET /sleep/4: still running after ";
        assert_eq!(log.matches(line).count(), 1, "{handler}: once:\n{log}");
        assert!(
            log.contains("(request_timeout = 1 s); the Python stack of its thread:"),
            "{handler}:\n{log}"
        );
        // The stack is that request's thread's: the app's frames down to the sleep.
        let stack = &log[log.find(line).unwrap()..];
        assert!(
            stack.contains("watchdog_app.py") && stack.contains("in snooze"),
            "{handler}:\n{log}"
        );
        assert!(stack.contains("time.sleep(seconds)"), "{handler}:\n{log}");
        assert!(!log.contains("GET /fast: still running"), "{log}");
        assert!(log.contains("watchdog: request_timeout 1 s"), "{log}");
        site.finish(host);
    }
}

#[test]
fn unhealthy_after_n_stuck_requests_asks_iis_for_a_recycle() {
    for handler in HANDLERS {
        let site = site("stuck", handler, "request_timeout = 1\nunhealthy_after = 2");
        let host = site.start(&["--exit-on-unhealthy"]);
        // One slow request is not enough.
        assert_eq!(get(host.addr, "/sleep/3").text(), "done: /sleep/3");
        assert!(!host.output().contains("event 2262"), "{}", host.output());
        let running = in_background(&host, &["/sleep/6", "/sleep/6"]);
        let stopped = host.wait_exit(Duration::from_secs(60));
        for request in running {
            assert_eq!(request.join().unwrap().text(), "done: /sleep/6");
        }
        assert_recycled(
            &stopped,
            "2 requests have been running longer than request_timeout = 1 s at once (unhealthy_after = 2)",
        );
        let log = site.log();
        assert!(
            log.contains("reported this worker process unhealthy to IIS (HSE_REQ_REPORT_UNHEALTHY, through the request [") && log.contains("] GET /sleep/6)"),
            "{handler}:\n{log}"
        );
        let _ = std::fs::remove_dir_all(&site.dir);
    }
}

#[test]
fn a_gil_held_by_a_c_call_asks_iis_for_a_recycle_but_busy_python_does_not() {
    for handler in HANDLERS {
        let site = site("gil", handler, "gil_stall = 2");
        let host = site.start(&["--exit-on-unhealthy"]);
        // Pure Python keeps handing the GIL over (the switch interval): no stall.
        assert_eq!(get(host.addr, "/spin/4").text(), "done: /spin/4");
        assert!(!host.output().contains("event 2262"), "{}", host.output());
        let holding = in_background(&host, &["/hold-gil/7"]);
        let stopped = host.wait_exit(Duration::from_secs(60));
        assert_eq!(
            holding.into_iter().next().unwrap().join().unwrap().text(),
            "done: /hold-gil/7"
        );
        assert_recycled(&stopped, "the GIL has not been released for ");
        assert!(
            stopped
                .stderr
                .contains("s (gil_stall = 2 s): a C call holds it; the longest-running request: [")
                && stopped.stderr.contains("] GET /hold-gil/7 ("),
            "{handler}:\n{}",
            stopped.stderr
        );
        let _ = std::fs::remove_dir_all(&site.dir);
    }
}

#[test]
fn a_reload_file_that_changes_asks_iis_for_a_recycle() {
    for handler in HANDLERS {
        let site = site("reload", handler, "reload_on = restart.txt, *.flag");
        std::fs::write(site.dir.join("a.flag"), "1").unwrap();
        let host = site.start(&["--exit-on-unhealthy"]);
        assert_eq!(get(host.addr, "/").text(), "done: /");
        // Files that are not watched change nothing.
        std::fs::write(site.dir.join("notes.txt"), "x").unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        assert!(!host.output().contains("event 2262"), "{}", host.output());
        // Touching restart.txt (it did not exist): no request is in flight, so the report
        // waits for the next one, which is still answered by this process.
        let restart = site.dir.join("restart.txt");
        std::fs::write(&restart, "").unwrap();
        assert!(
            site.wait_for_log("no request is in flight to report it to IIS through"),
            "{}",
            site.log()
        );
        assert_eq!(get(host.addr, "/after").text(), "done: /after");
        let stopped = host.wait_exit(Duration::from_secs(60));
        assert_recycled(
            &stopped,
            &format!("{} changed (reload_on)", restart.display()),
        );
        assert!(site.log().contains("] GET /after): "), "{}", site.log());
        let _ = std::fs::remove_dir_all(&site.dir);
    }
}

#[test]
fn a_changed_wildcard_match_asks_for_a_recycle_through_a_request_in_flight() {
    let site = site("reload-busy", "threadpool", "reload_on = *.flag");
    std::fs::write(site.dir.join("a.flag"), "1").unwrap();
    let host = site.start(&["--exit-on-unhealthy"]);
    let running = in_background(&host, &["/sleep/5"]);
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(site.dir.join("a.flag"), "22").unwrap();
    let stopped = host.wait_exit(Duration::from_secs(60));
    assert_eq!(
        running.into_iter().next().unwrap().join().unwrap().text(),
        "done: /sleep/5"
    );
    assert_recycled(
        &stopped,
        &format!("{} changed (reload_on)", site.dir.join("a.flag").display()),
    );
    assert!(site.log().contains("] GET /sleep/5): "), "{}", site.log());
    let _ = std::fs::remove_dir_all(&site.dir);
}
