//! `isapi-host --check`: the extension started as under IIS (through `GetExtensionVersion`,
//! asked by `ISAPI_WSGI_CHECK=1`), reporting what it found, and the exit status saying
//! whether the application would serve. The Windows DLL under wine: `.ci/wine-matrix.py`
//! (`check-mode`).
mod common;

use common::{Host, Site, Stopped, bridge_library};

fn check(site: &Site) -> Stopped {
    Host::fail_to_start(
        &bridge_library(),
        &["--check", "--config", site.ini.to_str().unwrap()],
        &[],
    )
}

#[test]
fn a_good_configuration_is_reported_and_exits_0() {
    let site = Site::new(
        "check-good",
        "[python]\npath = {apps}\n[wsgi]\napp = watchdog_app:app\nlog = {log}\nhandler = threadpool\nthreads = 3\nrequest_timeout = 60\n",
    );
    let stopped = check(&site);
    let out = &stopped.stderr;
    assert!(stopped.status.success(), "{}: {out}", stopped.status);
    let apps = common::apps_dir().display().to_string();
    for expected in [
        &format!("check: configuration {}", site.ini.display()),
        "check: Python 3.",
        " loaded from /",
        "check: sys.prefix /",
        "check: sys.path:",
        &format!("check:   {apps}"),
        "check: app serving watchdog_app:app with Python 3.",
        "check: handler threadpool: 3 worker thread(s), queue of 1000, shutdown_timeout 30 s",
        "max_body 104857600 bytes, debug false",
        "request_timeout 60 s, unhealthy_after off, gil_stall off, reload_on none",
        "check: OK: the application loaded",
        "GetExtensionVersion returned TRUE",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
    // It serves nothing, starts no thread of its own, and the configured log got the same.
    assert!(!out.contains(" on http://"), "{out}");
    assert!(!out.contains("handler = threadpool: 3 worker"), "{out}");
    assert!(site.log().contains("check: OK"), "{}", site.log());
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn an_import_error_is_printed_as_the_log_gets_it_and_exits_1() {
    let site = Site::new(
        "check-import",
        "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n",
    );
    let stopped = check(&site);
    let out = &stopped.stderr;
    assert_eq!(stopped.status.code(), Some(1), "{out}");
    for expected in [
        "the application failed to start; every request gets a 500 page:",
        "ModuleNotFoundError: No module named 'no_such_module'",
        "check: FAILED: the application did not start",
        "--check: ",
        "GetExtensionVersion returned FALSE",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
    assert!(
        site.log()
            .contains("ModuleNotFoundError: No module named 'no_such_module'"),
        "{}",
        site.log()
    );
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn a_configuration_error_exits_1_with_the_message() {
    let site = Site::new("check-config", "[wsgi]\napps = x:y\n");
    let stopped = check(&site);
    let out = &stopped.stderr;
    assert_eq!(stopped.status.code(), Some(1), "{out}");
    assert!(
        out.contains("configuration error, the application is not started: ")
            && out.contains("line 2: unknown key `apps` in [wsgi]; valid keys: app, handler"),
        "{out}"
    );
    assert!(out.contains("GetExtensionVersion returned FALSE"), "{out}");
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn without_check_a_failed_start_still_loads_and_serves_the_500_page() {
    // The check mode is the only one in which GetExtensionVersion returns FALSE.
    let site = Site::new(
        "check-off",
        "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n",
    );
    let host = site.start(&[]);
    common::assert_startup_failure_pages(&host, "no_such_module");
    let _ = site.finish(host);
}

#[test]
fn mounts_are_checked_too_and_one_that_fails_fails_the_check() {
    let site = Site::new(
        "check-mounts",
        "[python]\npath = {apps}\n[wsgi]\napp = mounts_app:root\nlog = {log}\n\
         [mount /blog]\napp = mounts_app:blog\n",
    );
    let stopped = check(&site);
    assert!(stopped.status.success(), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains(
            "check: app serving mounts_app:root; mount /blog: mounts_app:blog with Python 3."
        ),
        "{}",
        stopped.stderr
    );
    let site = Site::new(
        "check-mount-broken",
        "[python]\npath = {apps}\n[wsgi]\napp = mounts_app:root\nlog = {log}\n\
         [mount /broken]\napp = broken_app:app\n",
    );
    let stopped = check(&site);
    let out = &stopped.stderr;
    assert!(!stopped.status.success(), "{out}");
    for expected in [
        "mount /broken: the application failed to start; its requests get a 500 page:",
        "RuntimeError: broken_app cannot start: this is on purpose",
        "check: FAILED: the application did not start",
    ] {
        assert!(out.contains(expected), "missing {expected:?}:\n{out}");
    }
}
