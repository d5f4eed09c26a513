//! Code that outlives the library, on Windows: the Windows build of `isapi-host --unload`
//! serving the Windows build of the bridge under wine, with an official Windows CPython.
//! `FreeLibrary` unmaps an unpinned DLL at once (there is no glibc-like rule that keeps it
//! while threads have thread-local destructors pending, see tests/unload_host.rs), so both
//! tests crash the host (a page fault, "Unhandled page fault on execute access") without
//! `sys::pin_own_module` in `GetExtensionVersion`, and pass with it.
//!
//! Ignored by default because it needs the Windows build, wine and the Windows CPythons:
//!
//! ```text
//! bash .ci/setup        # wine, target/wineprefix (with the bcryptprimitives shim), target/windows-pythons
//! cargo build --target x86_64-pc-windows-gnu --lib --bins
//! cargo test --test unload_wine -- --ignored
//! ```
//!
//! `WINEPREFIX` and `ISAPI_WSGI_TEST_WINDOWS_PYTHONS` (the folder holding `3.12\python312.dll`)
//! override the defaults under `target/`.
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
    let dir = common::scratch_dir(&format!("unload-wine-{name}"));
    let text = format!(
        "[python]\nhome = {}\npath = {}\n[wsgi]\napp = outlive_app:application\n{wsgi}\n",
        winpath(&python_home()),
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
