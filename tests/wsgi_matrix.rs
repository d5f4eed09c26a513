//! The version matrix: the ONE built library (target/<profile>/libisapi_wsgi.so, loaded with
//! dlopen exactly as a host loads it) against every CPython 3.8+ that pyenv has, chosen only
//! by the configuration file. Each interpreter runs in its own child process (one Python per
//! process), which drives the library's own `HttpExtensionProc` with synthetic ECBs.
//!
//! CPython 3.14 and 3.15, which pyenv cannot install here, join as Debian packages them:
//! the child runs in the Debian sid root of `.ci/sid-root` (tests/support/sid.rs) with
//! `home = /usr` and `version = 3.X`, the distribution layout.
mod common;
#[path = "support/sid.rs"]
mod sid;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::PathBuf;
use std::process::Command;

use isapi_wsgi::isapi::ffi::{EXTENSION_CONTROL_BLOCK, HSE_VERSION_INFO};
use isapi_wsgi::sys::{Library, Visibility};
use synthetic::{Prepared, Request};

const CHILD_ENV: &str = "ISAPI_WSGI_MATRIX_HOME";
/// Set for a Debian child: `[python] version`.
const CHILD_VERSION: &str = "ISAPI_WSGI_MATRIX_VERSION";

/// The pyenv CPython installations from 3.8 up: (version, prefix).
fn pythons() -> Vec<(String, PathBuf)> {
    let Ok(output) = Command::new("pyenv").args(["versions", "--bare"]).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|v| {
            let mut parts = v.split('.');
            parts.next() == Some("3")
                && parts
                    .next()
                    .and_then(|m| m.parse::<u32>().ok())
                    .is_some_and(|m| m >= 8)
        })
        .filter_map(|version| {
            let prefix = Command::new("pyenv")
                .args(["prefix", version])
                .output()
                .ok()?;
            let prefix = PathBuf::from(String::from_utf8_lossy(&prefix.stdout).trim());
            prefix
                .join("lib")
                .is_dir()
                .then(|| (version.to_string(), prefix))
        })
        .collect()
}

fn cdylib() -> PathBuf {
    common::bridge_library()
}

#[test]
fn one_library_serves_every_pyenv_python() {
    let pythons = pythons();
    let found: Vec<&str> = pythons.iter().map(|(v, _)| v.as_str()).collect();
    assert!(
        found.iter().any(|v| v.starts_with("3.11.")),
        "pyenv must have CPython 3.11 (found {found:?})"
    );
    assert!(
        cdylib().is_file(),
        "{} is not built: `cargo test` builds only the rlib; run `cargo build` (or `--release`) first, as .ci/test does",
        cdylib().display()
    );
    let mut failures = Vec::new();
    for (version, prefix) in &pythons {
        let output = synthetic::child_test("matrix_child")
            .env(CHILD_ENV, prefix)
            .output()
            .unwrap();
        let text = synthetic::child_text(&output);
        let minor = version
            .rsplit_once('.')
            .map_or(version.as_str(), |(major_minor, _)| major_minor);
        if output.status.success() && text.contains(&format!("matrix: served by Python {minor}")) {
            println!("CPython {version}: ok");
        } else {
            failures.push(format!("CPython {version} failed:\n{text}"));
        }
    }
    if let Some(root) = sid::root() {
        for (minor, _) in sid::pythons(&root) {
            let command = sid::command(&root, &std::env::current_exe().unwrap());
            let output = Command::new(&command[0])
                .args(&command[1..])
                .args([
                    "--ignored",
                    "--exact",
                    "matrix_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, "/usr")
                .env(CHILD_VERSION, minor.to_string())
                .output()
                .unwrap();
            let text = synthetic::child_text(&output);
            if output.status.success()
                && text.contains(&format!("matrix: served by Python 3.{minor}"))
            {
                println!("CPython 3.{minor} (Debian sid, home = /usr): ok");
            } else {
                failures.push(format!(
                    "CPython 3.{minor} (Debian sid, home = /usr) failed:\n{text}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The child: one interpreter, chosen by `[python] home`.
#[test]
#[ignore = "run by one_library_serves_every_pyenv_python, once per interpreter"]
fn matrix_child() {
    let home = PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the matrix test"));
    let debian = std::env::var(CHILD_VERSION).ok();
    let dir = synthetic::scratch_dir("matrix");
    let ini = dir.join("isapi_wsgi.ini");
    let log = dir.join("wsgi.log");
    std::fs::write(
        &ini,
        format!(
            "[python]\nhome = {}\n{}path = {}\n[wsgi]\napp = testapp:application\nhandler = simple\nlog = {}\n",
            home.display(),
            debian
                .as_ref()
                .map_or_else(String::new, |minor| format!("version = 3.{minor}\n")),
            synthetic::apps_dir().display(),
            log.display()
        ),
    )
    .unwrap();
    // SAFETY: single-threaded child (--test-threads=1), before the library starts.
    unsafe { std::env::set_var("ISAPI_WSGI_CONFIG", &ini) };

    let library = Library::open(&cdylib(), Visibility::Local).unwrap();
    type Version = unsafe extern "system" fn(*mut HSE_VERSION_INFO) -> i32;
    type Proc = unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32;
    // SAFETY: the exports have these ISAPI signatures (src/lib.rs).
    let (get_version, proc): (Version, Proc) = unsafe {
        (
            std::mem::transmute::<*mut std::ffi::c_void, Version>(
                library.symbol("GetExtensionVersion").unwrap(),
            ),
            std::mem::transmute::<*mut std::ffi::c_void, Proc>(
                library.symbol("HttpExtensionProc").unwrap(),
            ),
        )
    };
    let mut info = HSE_VERSION_INFO {
        dwExtensionVersion: 0,
        lpszExtensionDesc: [0; 256],
    };
    // SAFETY: a valid HSE_VERSION_INFO.
    assert_eq!(unsafe { get_version(&mut info) }, 1);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();

    let version = Prepared::new(&Request::get("/version")).run(proc);
    assert_eq!(version.code(), 200, "{}\n{log_text}", version.text());
    let hello = Prepared::new(&Request::get("/hello")).run(proc);
    assert_eq!(hello.text(), "Hello, World!");
    let echo = Prepared::new(&Request::post("/echo", "text/plain", &[b'z'; 100_000])).run(proc);
    assert_eq!(echo.body(), vec![b'z'; 100_000]);
    let stream = Prepared::new(&Request::get("/stream")).run(proc);
    assert_eq!(stream.text(), "one,two,three");
    let error = Prepared::new(&Request::get("/error")).run(proc);
    assert_eq!(error.code(), 500);
    if debian.is_some() {
        // Debian links math and _json into libpython: /dynload imports two that it does not.
        let extensions = Prepared::new(&Request::get("/dynload")).run(proc);
        let dynload = home.join(format!("lib/python{}/lib-dynload", version.text()));
        for module in ["_bz2", "_decimal"] {
            let expected = format!(r#""{module}": "{}/{module}.cpython-"#, dynload.display());
            assert!(
                extensions.text().contains(&expected),
                "{expected} not in {}",
                extensions.text()
            );
        }
    } else {
        let extensions = Prepared::new(&Request::get("/c-extensions")).run(proc);
        assert_c_extensions(&extensions.text(), &home, &version.text());
    }
    let environ = Prepared::new(&Request::get("/environ")).run(proc);
    assert!(environ.text().contains("\"wsgi.url_scheme\": \"http\""));
    // Server threads keep their thread state between requests, and one that ends leaves
    // it to the reaper thread (PyThreadState_Clear/Delete from another thread, which each
    // version must accept without upsetting any other thread's PyGILState).
    let local = |proc| {
        Prepared::new(&Request::get("/thread-local"))
            .run(proc)
            .text()
    };
    assert_eq!(
        (local(proc), local(proc)),
        ("1".to_string(), "2".to_string())
    );
    let states = |proc| {
        Prepared::new(&Request::get("/thread-states"))
            .run(proc)
            .text()
    };
    let before = states(proc);
    for _ in 0..5 {
        let counted = std::thread::spawn(move || local(proc)).join().unwrap();
        assert_eq!(counted, "1");
    }
    // Deleted by the reaper thread (whose own state may be new since `before`): wait a little.
    let limit: usize = before.parse::<usize>().unwrap() + 1;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut now: usize = states(proc).parse().unwrap();
    while now > limit && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        now = states(proc).parse().unwrap();
    }
    assert!(
        now <= limit,
        "thread states of ended threads are left behind: {before} -> {now}"
    );
    println!("matrix: served by Python {}", version.text());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `answer` is testapp's /c-extensions: math and _json were loaded from the interpreter's
/// lib-dynload as shared libraries, and work.
fn assert_c_extensions(answer: &str, home: &std::path::Path, minor: &str) {
    let dynload = home
        .join("lib")
        .join(format!("python{minor}"))
        .join("lib-dynload");
    for module in ["math", "_json"] {
        let expected = format!(r#""{module}": "{}/{module}.cpython-"#, dynload.display());
        assert!(answer.contains(&expected), "{expected} not in {answer}");
    }
    assert!(
        answer.contains(r#""sqrt2": 1.4142135623730951"#)
            && answer.contains(r#""encoded": "\"caf\\u00e9\"""#),
        "{answer}"
    );
}
