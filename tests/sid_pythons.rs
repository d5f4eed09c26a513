//! CPython 3.14 and 3.15 as Debian installs them, served by the ONE built library through
//! the real host (`isapi-host --strict`, over TCP) in the Debian sid root that
//! `.ci/sid-root` builds (see tests/support/sid.rs): `home = /usr` (the distribution layout:
//! libpython in `/usr/lib/x86_64-linux-gnu`, the standard library in `/usr/lib/python3.X`),
//! `library =` alone, and no home at all (`python3` on PATH, found through its sysconfig).
//! testapp runs wrapped in wsgiref.validate.validator with warnings as errors, and every
//! run must end with zero contract violations and no validator complaint.
#![cfg(unix)]
mod common;
#[path = "support/sid.rs"]
mod sid;

use std::path::Path;
use std::time::Duration;

use common::{Launch, Site, curl};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A site whose files have the same paths inside the root as outside; `python` is the
/// `[python]` section's lines besides `path`.
fn site(label: &str, python: &str) -> Site {
    let dir = sid::scratch_dir(label);
    let log = dir.join("wsgi.log");
    let ini = dir.join("site.ini");
    std::fs::write(
        &ini,
        format!(
            "[python]\n{python}path = {}\n[wsgi]\napp = testapp:application\nlog = {}\n",
            common::apps_dir().display(),
            log.display()
        ),
    )
    .unwrap();
    Site { dir, ini, log }
}

/// The host built for this test run, run in the root.
fn in_root(root: &Path) -> Launch {
    Launch {
        command: sid::command(root, &common::host_binary()),
        stop_signal: libc::SIGTERM,
        startup: Duration::from_secs(30),
    }
}

/// What the host-level matrix checks (tests/wsgi_host.rs): the version, a body both ways,
/// a streamed response, C extension modules from Debian's lib-dynload, the environ.
fn serves(site: &Site, host: &common::Host, minor: u32, what: &str) {
    let version = text(&curl(&[&host.url("/version")]).1);
    assert_eq!(version, format!("3.{minor}"), "{what}: {}", site.log());
    assert_eq!(
        text(&curl(&[&host.url("/hello")]).1),
        "Hello, World!",
        "{what}"
    );
    let (_, body, _) = curl(&["--data-binary", "echo", &host.url("/echo")]);
    assert_eq!(text(&body), "echo", "{what}");
    assert_eq!(
        text(&curl(&[&host.url("/stream")]).1),
        "one,two,three",
        "{what}"
    );
    // C extension modules from Debian's lib-dynload resolve against libpython (Debian links
    // math and _json into libpython, so testapp's /dynload imports _bz2 and _decimal).
    let answer = text(&curl(&[&host.url("/dynload")]).1);
    for module in ["_bz2", "_decimal"] {
        let expected =
            format!(r#""{module}": "/usr/lib/python3.{minor}/lib-dynload/{module}.cpython-"#);
        assert!(
            answer.contains(&expected),
            "{what}: {expected} not in {answer}"
        );
    }
    assert!(
        answer.contains(r#""bz2": "isapi-wsgi""#)
            && answer.contains(r#""sqrt2": "1.414213562373095048801688724""#),
        "{what}: {answer}"
    );
    let environ = text(&curl(&["-H", "X-Probe: 1", &host.url("/environ?a=b")]).1);
    assert!(
        environ.contains(r#""wsgi.url_scheme": "http""#)
            && environ.contains(r#""HTTP_X_PROBE": "1""#)
            && environ.contains(r#""QUERY_STRING": "a=b""#),
        "{what}: {environ}"
    );
}

#[test]
fn debian_sid_pythons_with_home_usr() {
    let Some(root) = sid::root() else { return };
    for (minor, _) in sid::pythons(&root) {
        let what = format!("home = /usr, version = 3.{minor}");
        let site = site(
            &format!("home-usr-3.{minor}"),
            &format!("home = /usr\nversion = 3.{minor}\n"),
        );
        let host = site.launch(&in_root(&root), &[], &[]);
        serves(&site, &host, minor, &what);
        site.finish(host);
        println!("Debian sid CPython 3.{minor}, {what}: ok");
    }
    // Without a version, the newest in /usr.
    let site = site("home-usr", "home = /usr\n");
    let host = site.launch(&in_root(&root), &[], &[]);
    serves(&site, &host, 15, "home = /usr");
    site.finish(host);
}

#[test]
fn debian_sid_library_alone_finds_its_home() {
    let Some(root) = sid::root() else { return };
    for (minor, library) in sid::pythons(&root) {
        let what = format!("library = {}", library.display());
        let site = site(&format!("library-3.{minor}"), &format!("{what}\n"));
        let host = site.launch(&in_root(&root), &[], &[]);
        serves(&site, &host, minor, &what);
        site.finish(host);
        println!("Debian sid CPython 3.{minor}, {what}: ok");
    }
}

#[test]
fn debian_sid_default_is_python3_on_path_and_the_log_says_so() {
    let Some(root) = sid::root() else { return };
    // The CPython the extension was built with is not in the root, so the default is sid's
    // python3 (3.14 today), found through its sysconfig.
    let python3 = std::fs::read_link(root.join("usr/bin/python3")).unwrap();
    let minor: u32 = python3
        .to_string_lossy()
        .strip_prefix("python3.")
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("sid's /usr/bin/python3 -> {}", python3.display()));
    let site = site("default", "");
    let host = site.launch(&in_root(&root), &[], &[]);
    serves(&site, &host, minor, "no home");
    let log = site.log();
    let expected = format!(
        "no [python] home or library: using python3 on PATH, /usr/lib/x86_64-linux-gnu/libpython3.{minor}.so.1.0 (home /usr); the one isapi-wsgi was built with, {}, is gone",
        env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY")
    );
    assert!(log.contains(&expected), "{expected:?} not in\n{log}");
    site.finish(host);
}

#[test]
fn debian_sid_a_missing_version_names_where_it_looked() {
    let Some(root) = sid::root() else { return };
    let site = site("missing", "home = /usr\nversion = 3.9\n");
    let host = site.launch(&in_root(&root), &[], &[]);
    let (_, _, _) = curl(&[&host.url("/hello")]);
    let expected = "[python] home /usr has no libpython3.9.so (CPython 3.8 or newer; looked in \
                    /usr/lib/x86_64-linux-gnu, /usr/lib64, /usr/lib)";
    assert!(
        site.wait_for_log(expected),
        "{expected:?} not in\n{}",
        site.log()
    );
    site.finish(host);
}
