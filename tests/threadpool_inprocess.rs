//! The threadpool handler in-process, on synthetic ECBs (tests/support/synthetic.rs), for
//! what the host cannot show: after `TerminateExtension` a request is answered at once on
//! the calling thread with 503 and Retry-After (no PENDING, no Python), `TerminateExtension`
//! runs the application's atexit handlers, and a second call does nothing.
#[path = "support/synthetic.rs"]
mod synthetic;

use isapi_wsgi::isapi::ffi::HSE_STATUS_SUCCESS_AND_KEEP_CONN;
use synthetic::{Request, send};

#[test]
fn after_terminate_requests_get_503_at_once_and_atexit_has_run() {
    let dir = synthetic::scratch_dir("threadpool-inprocess");
    let atexit = dir.join("atexit.txt");
    // The app's atexit handler writes where this variable says (set before Python starts).
    // SAFETY: no other thread of this test process reads the environment yet.
    unsafe { std::env::set_var("THREADPOOL_ATEXIT_FILE", &atexit) };
    let ini = dir.join("isapi_wsgi.ini");
    std::fs::write(
        &ini,
        format!(
            "[python]\n{}path = {}\n[wsgi]\napp = threadpool_app:application\n\
             handler = threadpool\nthreads = 2\nqueue = 4\nshutdown_timeout = 5\nlog = {}\n",
            synthetic::python_home_line(),
            synthetic::apps_dir().display(),
            dir.join("wsgi.log").display()
        ),
    )
    .unwrap();
    synthetic::start(&ini);

    assert_eq!(isapi_wsgi::TerminateExtension(1), 1);
    assert_eq!(
        std::fs::read_to_string(&atexit).unwrap_or_default(),
        "atexit ran"
    );

    let reply = send(&Request::get("/hello"));
    assert_eq!(reply.hse_status, HSE_STATUS_SUCCESS_AND_KEEP_CONN);
    assert_eq!(reply.code(), 503);
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert!(reply.text().contains("shutting down"), "{}", reply.text());
    assert_eq!(
        reply.done_calls, 0,
        "a request answered at once is not PENDING"
    );
    assert_eq!(reply.status_code_logged, 503);

    // A second TerminateExtension is harmless and does not run atexit again.
    std::fs::remove_file(&atexit).unwrap();
    assert_eq!(isapi_wsgi::TerminateExtension(1), 1);
    assert!(!atexit.exists());
    let log = std::fs::read_to_string(dir.join("wsgi.log")).unwrap_or_default();
    assert!(log.contains("stopping the threadpool"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
