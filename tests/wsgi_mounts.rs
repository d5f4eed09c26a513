//! Mounts through the real `isapi-host --strict`: what happens around the routing that
//! tests/wsgi_paths.rs tabulates. One application failing to import leaves the others
//! serving (its requests get the start-up failure page, with the traceback only where that
//! mount says `debug = true`); with mounts and no `[wsgi] app`, the rest is 404; the log
//! names each mount at start-up, IIS's log entry (the host's access log and `--trace`)
//! names the mount that answered; a bad `[mount]` section is a configuration error. The
//! identity entries are checked here too, as far as Linux has them.
mod common;

use common::{Site, curl, get};

/// GET `path`: status and body.
fn fetch(host: &common::Host, path: &str) -> (u16, String) {
    let response = get(host.addr, path);
    (response.status, response.text())
}

#[test]
fn a_mount_that_fails_to_import_leaves_the_others_serving() {
    let site = Site::new(
        "mount-broken",
        "[python]\npath = {apps}\n[wsgi]\nlog = {log}\n\
         [mount /blog]\napp = mounts_app:blog\nhandler = threadpool\n\
         [mount /broken]\napp = broken_app:app\ndebug = true\n\
         [mount /quiet]\napp = broken_app:app\n",
    );
    let host = site.start(&["--trace"]);
    let (status, body) = fetch(&host, "/blog/post?x=1");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""app": "blog""#) && body.contains(r#""PATH_INFO": "/post""#),
        "{body}"
    );
    // The broken mount's own requests: the start-up page, with its traceback (debug).
    for path in ["/broken", "/broken/x"] {
        let (status, body) = fetch(&host, path);
        assert_eq!(status, 500, "{path}: {body}");
        assert!(
            body.contains("The application failed to start")
                && body.contains("broken_app cannot start: this is on purpose"),
            "{path}: {body}"
        );
    }
    // Another broken mount without debug: the page without the detail.
    let (status, body) = fetch(&host, "/quiet/x");
    assert!(
        status == 500
            && body.contains("The application failed to start")
            && !body.contains("on purpose"),
        "{body}"
    );
    // No [wsgi] app: under no mount is 404, not the demo.
    for path in ["/", "/blogger", "/blog/../x"] {
        let (status, body) = fetch(&host, path);
        assert!(
            status == 404 && body.contains("No application is served at this address"),
            "{path}: {status} {body}"
        );
    }
    let (status, _) = fetch(&host, "/BLOG");
    assert_eq!(status, 200);
    let (stderr, log) = site.finish_with_log(host);
    for line in [
        "mount /blog: serving mounts_app:blog",
        "mount /broken: the application failed to start; its requests get a 500 page:",
        "mount /quiet: the application failed to start; its requests get a 500 page:",
        "RuntimeError: broken_app cannot start: this is on purpose",
        "no [wsgi] app: requests under no mount get 404",
        "handler = threadpool: 8 worker thread(s)",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
    // IIS's log entry names the mount (the host's access log shows the appended text),
    // and --trace shows the call; requests under no mount append nothing.
    for line in [
        "\"#1 GET /blog/post?x=1\" 200",
        "\"#2 GET /broken\" 500",
        "\"#5 GET /\" 404",
    ] {
        assert!(stderr.contains(line), "{line:?} not in:\n{stderr}");
    }
    let access = |request: &str| {
        stderr
            .lines()
            .find(|l| l.starts_with("access:") && l.contains(request))
            .unwrap_or_else(|| panic!("no access line for {request}:\n{stderr}"))
            .to_string()
    };
    for (request, mount) in [
        ("GET /blog/post?x=1\"", "/blog"),
        ("GET /broken\"", "/broken"),
        ("GET /BLOG\"", "/blog"),
    ] {
        let line = access(request);
        assert!(line.ends_with(&format!("|mount={mount}")), "{line}");
    }
    let line = access("GET /\"");
    assert!(!line.contains("|mount="), "{line}");
    assert!(
        stderr.contains("HSE_APPEND_LOG_PARAMETER") && stderr.contains("|mount=/blog"),
        "{stderr}"
    );
}

#[test]
fn the_root_app_failing_leaves_the_mounts_serving() {
    let site = Site::new(
        "root-broken",
        "[python]\npath = {apps}\n[wsgi]\napp = broken_app:app\nlog = {log}\n\
         [mount /café]\napp = mounts_app:cafe\n",
    );
    let host = site.start(&[]);
    let (status, body) = fetch(&host, "/caf%C3%A9/x");
    assert!(status == 200 && body.contains(r#""app": "cafe""#), "{body}");
    let (status, body) = fetch(&host, "/other");
    assert!(
        status == 500 && body.contains("The application failed to start"),
        "{body}"
    );
    let (stderr, log) = site.finish_with_log(host);
    assert!(
        log.contains("the application failed to start; requests under no mount get a 500 page:")
            && log.contains("mount /café: serving mounts_app:cafe"),
        "{log}"
    );
    assert!(stderr.contains("|mount=/caf%C3%A9"), "{stderr}");
}

#[test]
fn a_bad_mount_section_is_a_configuration_error() {
    for (ini, message) in [
        (
            "[mount /blog/]\napp = mounts_app:blog\n",
            "[mount /blog/]: write the mount path without a trailing `/`",
        ),
        (
            "[mount /blog]\napp = mounts_app:blog\n[mount /BLOG]\napp = mounts_app:root\n",
            "line 5: [mount /BLOG] repeats [mount /blog] of line 3",
        ),
        (
            "[mount /blog]\napp = mounts_app:blog\nthreads = 2\n",
            "unknown key `threads` in [mount /blog]; valid keys: app, handler, debug",
        ),
    ] {
        let site = Site::new(
            "mount-config",
            &format!("[python]\npath = {{apps}}\n{ini}[wsgi]\nlog = {{log}}\n"),
        );
        let host = site.start(&[]);
        common::assert_startup_failure_pages(&host, message);
        let stopped = host.stop();
        stopped.assert_clean();
        // A file that cannot be parsed cannot name its log: the lines go to stderr.
        let logged = "configuration error, the application is not started: ";
        assert!(
            stopped.stderr.contains(logged) && stopped.stderr.contains(message),
            "{message:?} not in:\n{}",
            stopped.stderr
        );
    }
}

#[test]
fn logon_user_is_in_the_environ_and_the_token_keys_are_absent_off_windows() {
    let site = Site::new(
        "identity",
        "[python]\npath = {apps}\n[wsgi]\napp = mounts_app:root\nlog = {log}\n",
    );
    let host = site.start(&["--user", "CORP\\ann"]);
    let (_, body, _) = curl(&[&host.url("/who")]);
    let body = String::from_utf8_lossy(&body).into_owned();
    for expected in [
        r#""logon_user": "CORP\\ann""#,
        r#""has_sid": false"#,
        r#""has_groups": false"#,
    ] {
        assert!(body.contains(expected), "{expected} not in {body}");
    }
    site.finish(host);
    // Anonymous: no isapi.logon_user either.
    let site = Site::new(
        "identity-anonymous",
        "[python]\npath = {apps}\n[wsgi]\napp = mounts_app:root\nlog = {log}\n",
    );
    let host = site.start(&[]);
    let (_, body) = fetch(&host, "/who");
    assert!(body.contains(r#""logon_user": null"#), "{body}");
    site.finish(host);
}
