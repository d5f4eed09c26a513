//! The bridge-safety checks on Windows: the Windows builds of `isapi-host` and the bridge
//! under wine, with an official Windows CPython.
//!
//! * Code that outlives the library: `isapi-host --unload` frees the DLL after
//!   `TerminateExtension`. `FreeLibrary` unmaps an unpinned DLL at once (there is no
//!   glibc-like rule that keeps it while threads have thread-local destructors pending, see
//!   tests/unload_host.rs), so both unload tests crash the host (wine: "Unhandled page fault
//!   on execute access") without `sys::pin_own_module` in `GetExtensionVersion`, and pass
//!   with it.
//! * Interpreters we cannot drive: a free-threaded `python313t.dll` and a debug
//!   `python311_d.dll` (stubs built with mingw-w64's gcc that export what such builds
//!   export) are refused by name through `[python] home`, as tests/unsupported_python.rs
//!   does on Linux.
//!
//! Ignored by default because it needs the Windows build, wine and the Windows CPythons:
//!
//! ```text
//! bash .ci/setup        # wine, target/wineprefix (with the bcryptprimitives shim), target/windows-pythons
//! cargo build --target x86_64-pc-windows-gnu --lib --bins
//! cargo test --test wine_bridge_safety -- --ignored
//! ```
//!
//! `WINEPREFIX` and `ISAPI_WSGI_TEST_WINDOWS_PYTHONS` (the folder holding `3.12\python312.dll`)
//! override the defaults under `target/`.
#![cfg(unix)] // drives wine from Linux
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Host, Launch, get};

/// The Python version the tests use (any of the embeddable packages would do).
const VERSION: &str = "3.12";

fn manifest_target() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target")
}

fn windows_build(name: &str) -> PathBuf {
    let target = common::target_dir();
    let profile = target.file_name().unwrap().to_owned();
    let path = target
        .parent()
        .unwrap()
        .join("x86_64-pc-windows-gnu")
        .join(profile)
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: cargo build --target x86_64-pc-windows-gnu --lib --bins",
        path.display()
    );
    path
}

/// A Linux path as wine sees it, through its Z: drive.
fn winpath(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The wine environment: the prefix .ci/wine-setup prepared, unless WINEPREFIX says another.
fn wine_env() -> Vec<(&'static str, String)> {
    let prefix = std::env::var("WINEPREFIX")
        .unwrap_or_else(|_| manifest_target().join("wineprefix").display().to_string());
    vec![("WINEPREFIX", prefix), ("WINEDEBUG", "-all".to_string())]
}

fn python_home() -> PathBuf {
    let pythons = std::env::var_os("ISAPI_WSGI_TEST_WINDOWS_PYTHONS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_target().join("windows-pythons"));
    let home = pythons.join(VERSION);
    let dll = format!("python{}.dll", VERSION.replace('.', ""));
    assert!(
        home.join(&dll).is_file(),
        "no {dll} in {}: run `bash .ci/setup`",
        home.display()
    );
    home
}

/// A scratch directory with an ini for tests/apps/outlive_app.py (Windows paths); the log
/// goes to the host's stderr, where the test reads it.
fn ini(name: &str, wsgi: &str) -> (PathBuf, PathBuf) {
    let home = format!("home = {}", winpath(&python_home()));
    ini_for(name, &home, wsgi)
}

/// As [`ini`], with `python` (`home = ...` or `library = ...`) naming the interpreter.
fn ini_for(name: &str, python: &str, wsgi: &str) -> (PathBuf, PathBuf) {
    let dir = common::scratch_dir(&format!("wine-safety-{name}"));
    let text = format!(
        "[python]\n{python}\npath = {}\n[wsgi]\napp = outlive_app:application\n{wsgi}\n",
        winpath(&common::apps_dir())
    );
    let ini = dir.join("site.ini");
    std::fs::write(&ini, text).unwrap();
    (dir, ini)
}

fn start(ini: &Path, args: &[&str]) -> (Host, String) {
    let exe = windows_build("isapi-host.exe");
    let dll = winpath(&windows_build("isapi_wsgi.dll"));
    let config = winpath(ini);
    let mut all = vec!["--config", config.as_str()];
    all.extend_from_slice(args);
    let env = wine_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let host = Host::launch(&Launch::wine(&exe), Path::new(&dll), &all, &env);
    (host, dll)
}

/// The host ended by itself with status 0 after lingering. (wine reports a crash on the
/// output, "Unhandled page fault ...", but the process may still exit with status 0.)
fn assert_survived_unload(status: std::process::ExitStatus, output: &str, dll: &str) {
    assert!(
        status.success()
            && !output.contains("Unhandled page fault")
            && output.contains("isapi-host: stopped;"),
        "isapi-host.exe did not survive --unload ({status}):\n{output}"
    );
    let unloaded = format!("--unload: unloaded the extension {dll}; it is still loaded");
    assert!(output.contains(&unloaded), "{output}");
    assert!(output.contains("still alive"), "{output}");
}

#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build, wine and the Windows CPythons"]
fn windows_an_app_keeping_start_response_and_wsgi_errors_survives_unload() {
    let (dir, ini) = ini("kept", "");
    let (host, dll) = start(&ini, &["--unload"]);
    assert_eq!(get(host.addr, "/keep").text(), "kept");
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(host.addr, "/calls").text().parse::<u64>().unwrap() < 20 {
        assert!(Instant::now() < deadline, "the app's thread does not call");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stopped = host.stop();
    assert_survived_unload(stopped.status, &stopped.stderr, &dll);
    assert!(!stopped.stderr.contains("Traceback"), "{}", stopped.stderr);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build, wine and the Windows CPythons"]
fn windows_a_threadpool_request_running_past_shutdown_timeout_survives_unload() {
    // As in tests/unload_host.rs: the DLL is freed while a worker of ours is in the app's
    // 3 s sleep; it comes back to our code during the 4 s linger and answers.
    let (dir, ini) = ini(
        "threadpool",
        "handler = threadpool\nthreads = 1\nshutdown_timeout = 1",
    );
    let (host, dll) = start(
        &ini,
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
    assert_survived_unload(stopped.status, &stopped.stderr, &dll);
    assert!(
        answer.ends_with("slept 3.0"),
        "{answer:?}\n{}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("1 request(s) still running after shutdown_timeout"),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stub DLL at `path` (mingw-w64's gcc): `Py_GetVersion` returning `version`, and empty
/// functions `exports`; nothing else.
fn build_stub_dll(path: &Path, version: &str, exports: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut source = format!(
        "__declspec(dllexport) const char *Py_GetVersion(void) {{ return \"{version}\"; }}\n"
    );
    for name in exports {
        source.push_str(&format!(
            "__declspec(dllexport) void {name}(void *op) {{ (void)op; }}\n"
        ));
    }
    let c_file = path.with_extension("c");
    std::fs::write(&c_file, source).unwrap();
    let output = std::process::Command::new("x86_64-w64-mingw32-gcc")
        .args(["-shared", "-o"])
        .arg(path)
        .arg(&c_file)
        .output()
        .expect("run x86_64-w64-mingw32-gcc (mingw-w64, see .ci/setup)");
    assert!(
        output.status.success(),
        "x86_64-w64-mingw32-gcc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build, wine and the Windows CPythons"]
fn windows_free_threaded_and_debug_dlls_are_refused_by_name() {
    // The free-threaded DLL is found through `home`; the debug one is named by `library` in
    // a home laid out like an installation (Lib\os.py), which the code before the check
    // went on to load and start.
    for (name, dll, version, exports, expected) in [
        (
            "free-threaded",
            "python313t.dll",
            "3.13.0 experimental free-threading build (tags/v3.13.0, Oct  7 2024) [MSC v.1941 64 bit (AMD64)]",
            &["_Py_MergeZeroLocalRefcount", "_Py_DecRefShared"][..],
            "is a free-threaded build of CPython (3.13t); isapi-wsgi needs a regular (GIL) \
             build: use python313.dll from the same installation",
        ),
        (
            "debug",
            "python311_d.dll",
            "3.11.9 (tags/v3.11.9, Apr  2 2024) [MSC v.1938 64 bit (AMD64)]",
            &["_Py_NegativeRefcount"][..],
            "is a debug build of CPython (3.11d); isapi-wsgi needs a regular release build: \
             use python311.dll from the same installation",
        ),
    ] {
        let home = common::scratch_dir(&format!("wine-safety-{name}-home"));
        build_stub_dll(&home.join(dll), version, exports);
        let python = if name == "debug" {
            std::fs::create_dir_all(home.join("Lib")).unwrap();
            std::fs::write(home.join("Lib").join("os.py"), "").unwrap();
            format!("library = {}", winpath(&home.join(dll)))
        } else {
            format!("home = {}", winpath(&home))
        };
        let (dir, ini) = ini_for(name, &python, "");
        let (host, _) = start(&ini, &["--strict"]);
        for _ in 0..2 {
            let r = get(host.addr, "/");
            assert_eq!(r.status, 500, "{name}: {r:?}");
            assert!(
                r.text().contains("The application failed to start"),
                "{name}"
            );
        }
        let stopped = host.stop();
        stopped.assert_clean();
        let line = format!("{}\\{dll} {expected}", winpath(&home));
        assert!(
            stopped.stderr.contains(&line),
            "{name}: {line:?} not logged:\n{}",
            stopped.stderr
        );
        assert!(
            !stopped.stderr.contains("does not export"),
            "{}",
            stopped.stderr
        );
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&home);
    }
}

#[test]
#[ignore = "needs the x86_64-pc-windows-gnu build, wine and the Windows CPythons"]
fn windows_the_request_token_gives_the_user_sid_and_groups_on_both_handlers() {
    // Two mounts of tests/apps/identity_app.py, one per handler; the host hands out a
    // duplicate of its own token, so the app's ctypes reading of its process token must
    // agree with what the bridge read from the request's.
    let (dir, ini) = ini(
        "identity",
        "[mount /simple]\napp = identity_app:application\n\
         [mount /pool]\napp = identity_app:application\nhandler = threadpool\n",
    );
    let (host, _) = start(&ini, &["--strict", "--impersonation-token", "self"]);
    for mount in ["/simple", "/pool"] {
        let body = get(host.addr, &format!("{mount}/who")).text();
        let field = |name: &str| {
            let start = body
                .find(&format!("\"{name}\": "))
                .unwrap_or_else(|| panic!("{mount}: no {name} in {body}"))
                + name.len()
                + 4;
            let rest = &body[start..];
            let end = if rest.starts_with('[') {
                rest.find(']').unwrap() + 1
            } else {
                rest.find([',', '}']).unwrap()
            };
            rest[..end].to_string()
        };
        let sid = field("user_sid");
        assert!(
            sid.starts_with("\"S-1-5-") && sid[1..sid.len() - 1].split('-').all(|p| !p.is_empty()),
            "{mount}: {body}"
        );
        assert_eq!(sid, field("own_sid"), "{mount}: {body}");
        let groups = field("groups");
        assert!(
            groups.starts_with("[\"") && groups.ends_with("\"]"),
            "{mount}: a non-empty list of names expected: {body}"
        );
        assert_eq!(groups, field("own_groups"), "{mount}: {body}");
        // Kept past its request, isapi.groups raises.
        let kept = get(host.addr, &format!("{mount}/kept")).text();
        assert_eq!(kept, r#"{"kept": "ValueError"}"#, "{mount}");
    }
    // Without a token (the default), the keys are absent.
    let stopped = host.stop();
    stopped.assert_clean();
    let (host, _) = start(&ini, &["--strict"]);
    let body = get(host.addr, "/simple/who").text();
    assert!(
        body.contains(r#""user_sid": null"#) && body.contains(r#""groups": null"#),
        "{body}"
    );
    host.stop().assert_clean();
    let _ = std::fs::remove_dir_all(&dir);
}
