//! Code that outlives the library: `isapi-host --unload` frees the extension after
//! `TerminateExtension`, as IIS may, and stays alive for `--unload-linger`. The bridge pins
//! itself in `GetExtensionVersion` (`sys::pin_own_module`), so Python calling our types, an
//! app's kept `start_response`/`wsgi.errors`, and a threadpool worker finishing a request
//! never run unmapped code. The app is tests/apps/outlive_app.py.
//!
//! What each test proves on Linux (glibc): `dlclose` does not unmap a library for which a
//! thread still has a thread-local destructor pending (glibc's `l_tls_dtor_count`), and
//! Rust's std registers one on any thread that builds an environ, keeps a thread state or
//! spawns a thread from our code. So once a request has been served (or the threadpool
//! started), glibc happens to keep the unpinned library too, and only
//! `python_calling_the_bridge_after_unload_does_not_crash`, where no request ever ran, crashes
//! (SIGSEGV) without the pin. Windows' FreeLibrary knows no such rule:
//! tests/wine_bridge_safety.rs runs the other two scenarios against the Windows build, where
//! both crash without it.
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Host, Site, get};

/// A site serving `app` from tests/apps, `wsgi` added to the `[wsgi]` section.
fn site(name: &str, app: &str, wsgi: &str) -> Site {
    Site::new(
        name,
        &format!("[python]\npath = {{apps}}\n[wsgi]\napp = {app}\nlog = {{log}}\n{wsgi}\n"),
    )
}

/// `isapi-host --config site.ini ARGS... <bridge library>` (no --strict: the threadpool
/// test leaves a request open on purpose, which --strict would turn into status 3).
fn start(site: &Site, args: &[&str]) -> Host {
    let mut all = vec!["--config", site.ini.to_str().unwrap()];
    all.extend_from_slice(args);
    Host::start(&common::bridge_library(), &all)
}

/// The host ended by itself with status 0 (not by a signal), after unloading the library
/// and lingering; the loader still holds it, because the bridge pinned itself.
fn assert_survived_unload(status: std::process::ExitStatus, output: &str, library: &Path) {
    assert!(
        status.success(),
        "isapi-host did not survive --unload ({status}):\n{output}"
    );
    let unloaded = format!("--unload: unloaded the extension {}", library.display());
    assert!(output.contains(&unloaded), "{output}");
    assert!(output.contains("it is still loaded"), "{output}");
    assert!(output.contains("still alive"), "{output}");
    assert!(output.contains("isapi-host: stopped;"), "{output}");
}

/// Waits until the app's background thread has called into the bridge `at_least` times.
fn wait_for_calls(host: &Host, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let calls: u64 = get(host.addr, "/calls").text().parse().unwrap();
        if calls >= at_least || Instant::now() > deadline {
            return calls;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unload_really_unloads_a_library_that_does_not_pin_itself() {
    // The Rust test extension has no threads of its own and does not pin itself: after
    // --unload it is gone from the process (so the other tests' "still loaded" is the pin).
    let extension = common::test_extension();
    let host = Host::start(
        &extension,
        &["--strict", "--unload", "--unload-linger", "0.2"],
    );
    assert_eq!(get(host.addr, "/hello").text(), "Hello, world!");
    let stopped = host.stop();
    stopped.assert_clean();
    let gone = format!(
        "--unload: unloaded the extension {}; it is no longer loaded",
        extension.display()
    );
    assert!(stopped.stderr.contains(&gone), "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("still alive 200ms after unloading"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn python_calling_the_bridge_after_unload_does_not_crash() {
    // A thread the app starts at start-up finds wsgi.errors through the garbage collector
    // and calls its flush() every 2 ms; no request is ever served, so nothing makes glibc
    // keep the library: without the pin, dlclose unmaps it under that thread (SIGSEGV).
    let site = site("unload-no-request", "outlive_app:without_a_request()", "");
    let host = start(&site, &["--unload"]);
    assert!(
        site.wait_for_log("found wsgi.errors without a request"),
        "{}",
        site.log()
    );
    let stopped = host.stop();
    assert_survived_unload(stopped.status, &stopped.stderr, &common::bridge_library());
    // It went on calling for the whole linger (2 s, every 2 ms), and nothing failed.
    assert!(!site.log().contains("Traceback"), "{}", site.log());
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn an_app_keeping_start_response_and_wsgi_errors_survives_unload() {
    let site = site("unload-kept", "outlive_app:application", "");
    let host = start(&site, &["--unload"]);
    assert_eq!(get(host.addr, "/keep").text(), "kept");
    let calls = wait_for_calls(&host, 20);
    assert!(calls >= 20, "the app's thread made only {calls} calls");
    let stopped = host.stop();
    assert_survived_unload(stopped.status, &stopped.stderr, &common::bridge_library());
    // start_response raised ValueError (the request was over), which the thread caught.
    assert!(!site.log().contains("Traceback"), "{}", site.log());
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn a_threadpool_request_running_past_shutdown_timeout_survives_unload() {
    // The host waits 0.2 s, TerminateExtension 1 s (shutdown_timeout), then the library is
    // unloaded while a worker of ours is in the app's 3 s sleep; it comes back to our code
    // (start_response, the response, DONE_WITH_SESSION) during the 4 s linger.
    let site = site(
        "unload-threadpool",
        "outlive_app:application",
        "handler = threadpool\nthreads = 1\nshutdown_timeout = 1",
    );
    let host = start(
        &site,
        &[
            "--shutdown-timeout",
            "0.2",
            "--unload",
            "--unload-linger",
            "4",
        ],
    );
    let addr = host.addr;
    let slow = std::thread::spawn(move || {
        let request = b"GET /sleep?3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        common::raw(addr, request)
    });
    std::thread::sleep(Duration::from_millis(500));
    let stopped = host.stop();
    let answer = String::from_utf8_lossy(&slow.join().unwrap()).into_owned();
    assert_survived_unload(stopped.status, &stopped.stderr, &common::bridge_library());
    // The worker ran our code after the unload: it answered the request.
    assert!(
        answer.ends_with("slept 3.0"),
        "{answer:?}\n{}",
        stopped.stderr
    );
    let log = site.log();
    assert!(
        log.contains("1 request(s) still running after shutdown_timeout"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&site.dir);
}
