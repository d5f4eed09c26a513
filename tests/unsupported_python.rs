//! Interpreters we cannot drive: free-threaded, debug and (before 3.13) `Py_TRACE_REFS`
//! builds lay out or count their objects differently from the regular build our types are
//! made for. The bridge must refuse them from the library's exports alone, before any
//! object exists, with one log line naming the build, and then answer every request with
//! the start-up failure page. Through the real host, `isapi-host --strict`:
//!
//! * a real debug build: Debian's `libpython3.11d.so` (package libpython3.11-dbg, which
//!   `.ci/setup` installs);
//! * free-threaded and trace-refs builds: no Debian bookworm package has one, so the test
//!   compiles a stub library with `cc` that exports what such a build exports
//!   (`_Py_MergeZeroLocalRefcount`, `_Py_DecRefShared`; `_Py_ForgetReference`) plus
//!   `Py_GetVersion`, and nothing else: had the bridge looked for anything more before
//!   refusing, the error would name a missing symbol instead.
#![cfg(target_os = "linux")] // Debian's debug libpython, ELF stubs built with cc
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Site, curl};

/// Serves `ini` (with `{log}`), asserts that two requests get the start-up failure page and
/// that the log names the refusal `expected`; returns the log.
fn assert_refused(name: &str, ini: &str, expected: &str) -> String {
    let site = Site::new(name, ini);
    let host = site.start(&[]);
    common::assert_startup_failure_pages(&host, name);
    let stopped = host.stop();
    stopped.assert_clean();
    let log = site.log();
    assert!(
        log.contains("the application failed to start; every request gets a 500 page"),
        "{name}:\n{log}"
    );
    let line = log
        .lines()
        .find(|line| line.contains(expected))
        .unwrap_or_else(|| panic!("{name}: {expected:?} not logged:\n{log}"));
    // One line that says what to do instead.
    assert!(
        line.contains("isapi-wsgi needs a regular"),
        "{name}: {line}"
    );
    let _ = std::fs::remove_dir_all(&site.dir);
    log
}

/// Compiles a shared library at `path` from `source` (C) with the system `cc`.
fn build_stub(path: &Path, source: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c_file = path.with_extension("c");
    std::fs::write(&c_file, source).unwrap();
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(path)
        .arg(&c_file)
        .output()
        .expect("run cc");
    assert!(
        output.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stub libpython: `Py_GetVersion` returning `version`, and empty functions `exports`.
fn stub_source(version: &str, exports: &[&str]) -> String {
    let mut source = format!("const char *Py_GetVersion(void) {{ return \"{version}\"; }}\n");
    for name in exports {
        source.push_str(&format!("void {name}(void *op) {{ (void)op; }}\n"));
    }
    source
}

/// Debian's debug libpython (libpython3.11-dbg), wherever its multiarch directory is.
fn debian_debug_library() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("libpython3.11d.so.1.0"))
        .find(|path| path.is_file());
    found.expect(
        "no libpython3.11d.so.1.0 under /usr/lib/*: run `bash .ci/setup` (libpython3.11-dbg)",
    )
}

#[test]
fn a_real_debug_build_is_refused_by_name() {
    let library = debian_debug_library();
    assert_refused(
        "debug",
        &format!(
            "[python]\nlibrary = {}\n[wsgi]\nlog = {{log}}\n",
            library.display()
        ),
        &format!("{} is a debug build of CPython (3.11d)", library.display()),
    );
}

#[test]
fn a_free_threaded_build_is_refused_by_name() {
    // Found through [python] home as `lib/libpython3.14t.so`, as pyenv installs `3.14t`.
    let home = common::scratch_dir("free-threaded-home");
    let library = home.join("lib").join("libpython3.14t.so");
    build_stub(
        &library,
        &stub_source(
            "3.14.0 free-threading build (main, Oct  7 2025, 12:00:00) [GCC 12.2.0]",
            &["_Py_MergeZeroLocalRefcount", "_Py_DecRefShared"],
        ),
    );
    let log = assert_refused(
        "free-threaded",
        &format!(
            "[python]\nhome = {}\n[wsgi]\nlog = {{log}}\n",
            home.display()
        ),
        &format!(
            "{} is a free-threaded build of CPython (3.14t); isapi-wsgi needs a regular (GIL) \
             build: install python3.14",
            library.display()
        ),
    );
    assert!(!log.contains("does not export"), "{log}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_trace_refs_build_is_refused_before_3_13_only() {
    let dir = common::scratch_dir("trace-refs");
    let old = dir.join("old").join("lib").join("libpython3.12.so.1.0");
    build_stub(
        &old,
        &stub_source("3.12.1 (main, Jan  1 2024) [GCC]", &["_Py_ForgetReference"]),
    );
    assert_refused(
        "trace-refs-3.12",
        &format!(
            "[python]\nlibrary = {}\n[wsgi]\nlog = {{log}}\n",
            old.display()
        ),
        &format!(
            "{} is a Py_TRACE_REFS build of CPython (3.12)",
            old.display()
        ),
    );
    // 3.13's trace-refs build keeps the regular object header: not refused for that; this
    // stub then fails as the non-CPython library it is.
    let new = dir.join("new").join("lib").join("libpython3.13.so.1.0");
    build_stub(
        &new,
        &stub_source("3.13.0 (main, Oct  7 2024) [GCC]", &["_Py_ForgetReference"]),
    );
    let site = Site::new(
        "trace-refs-3.13",
        &format!(
            "[python]\nlibrary = {}\n[wsgi]\nlog = {{log}}\n",
            new.display()
        ),
    );
    let host = site.start(&[]);
    let (_, body, _) = curl(&["-i", &host.url("/")]);
    assert!(String::from_utf8_lossy(&body).starts_with("HTTP/1.1 500"));
    host.stop().assert_clean();
    let log = site.log();
    assert!(!log.contains("Py_TRACE_REFS"), "{log}");
    assert!(log.contains("does not export"), "{log}");
    let _ = std::fs::remove_dir_all(&site.dir);
    let _ = std::fs::remove_dir_all(&dir);
}
