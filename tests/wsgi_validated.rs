//! Every WSGI application of the repository that does not wrap itself, served through the
//! real host (`--strict`) wrapped in wsgiref.validate.validator with warnings as errors
//! (tests/apps/validated.py): tests/apps' factory and threadpool apps, each example under
//! examples/ with its own ini file, and the built-in demo app. Each answers real requests
//! over TCP; [`Site::finish`] then requires a clean stop, zero contract violations and no
//! validator complaint in the log or on the host's stderr. (testapp.py and frameworks.py
//! wrap themselves; tests/wsgi_host.rs serves them.)
mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{Host, Response, Site, curl, get};

const WRAPPED: &str = "[python]\npath = {apps}\n[wsgi]\napp = validated:application\nlog = {log}\n";

/// Serves `target` (`module:attribute`, `module:factory()` or `isapi_wsgi:demo`) wrapped
/// in the validator, with `ini` as the site's configuration.
fn wrapped(name: &str, target: &str, ini: &str) -> (Site, Host) {
    let site = Site::new(name, ini);
    let host = site.start_with_env(&[], &[("VALIDATED_APP", target)]);
    (site, host)
}

/// The example's own ini file with its application swapped for the wrapped one: `path = .`
/// becomes the example's directory (and tests/apps, for the wrapper), `venv = .venv` the
/// test venv, and the log goes to the site's file. Everything else stays as written.
fn example(name: &str) -> (Site, Host) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let original = std::fs::read_to_string(dir.join("isapi_wsgi.ini")).unwrap();
    let mut target = None;
    let mut ini = String::new();
    for line in original.lines() {
        let setting = line.split_once('=').map(|(k, v)| (k.trim(), v.trim()));
        let line = match setting {
            Some(("app", app)) => {
                target = Some(app.to_string());
                "app = validated:application".to_string()
            }
            Some(("path", ".")) => format!("path = {};{{apps}}", dir.display()),
            Some(("venv", ".venv")) => format!("venv = {}", common::test_venv().display()),
            _ => line.to_string(),
        };
        ini.push_str(&line);
        ini.push('\n');
    }
    ini.push_str("[wsgi]\nlog = {log}\n");
    let target = target.unwrap_or_else(|| panic!("examples/{name}: no `app =`"));
    assert!(ini.contains("{apps}"), "examples/{name}: no `path = .`");
    wrapped(&format!("example-{name}"), &target, &ini)
}

/// A POST with `Connection: close` over a fresh connection.
fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Response {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let data = common::raw(addr, &request);
    common::parse_response(&data, false)
        .unwrap_or_else(|| panic!("no response to POST {path}: {:?}", text(&data)))
        .0
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_factory_app_wrapped_in_the_validator() {
    let (site, host) = wrapped("factory", "factory:create_app()", WRAPPED);
    let r = get(host.addr, "/");
    assert_eq!((r.status, r.text()), (200, "made by create_app".into()));
    assert_eq!(r.header("Content-Length"), Some("18"));
    assert!(site.log().contains("serving validated:application"));
    site.finish(host);
}

#[test]
fn the_threadpool_test_app_wrapped_in_the_validator() {
    let ini = WRAPPED.replace("[wsgi]\n", "[wsgi]\nhandler = threadpool\nthreads = 2\n");
    let (site, host) = wrapped("threadpool-app", "threadpool_app:application", &ini);
    let r = get(host.addr, "/hello");
    assert!(
        r.status == 200 && r.text().starts_with("hello from "),
        "{r:?}"
    );
    assert_eq!(get(host.addr, "/sleep?0.1").text(), "slept 0.1");
    assert_eq!(get(host.addr, "/multithread").text(), "True");
    assert_eq!(get(host.addr, "/nowhere").status, 404);
    let r = get(host.addr, "/raise");
    assert!(
        r.status == 500 && r.text().contains("failed to answer"),
        "{r:?}"
    );
    assert!(site.wait_for_log("RuntimeError: the app fails on purpose"));
    site.finish(host);
}

#[test]
fn the_built_in_demo_app_wrapped_in_the_validator() {
    let (site, host) = wrapped("demo", "isapi_wsgi:demo", WRAPPED);
    let r = get(host.addr, "/some/path?x=1");
    assert_eq!(r.status, 200, "{}", site.log());
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("<h1>Hello from isapi-wsgi</h1>"), "{page}");
    assert!(
        page.contains("<th>PATH_INFO</th><td>&#x27;/some/path&#x27;</td>"),
        "{page}"
    );
    site.finish(host);
}

#[test]
fn the_built_in_demo_app_without_any_configuration() {
    // No --config, no ISAPI_WSGI_CONFIG, and no libisapi_wsgi.ini next to the library: the
    // demo, with the Python the extension was built with, logging to the host's stderr.
    let library = common::bridge_library();
    for ini in isapi_wsgi::config::Config::candidates(&library) {
        assert!(
            !ini.exists(),
            "{} would configure the library",
            ini.display()
        );
    }
    let host = Host::start(&library, &["--strict"]);
    let r = get(host.addr, "/");
    assert!(
        r.status == 200 && r.text().contains("<h1>Hello from isapi-wsgi</h1>"),
        "{r:?}"
    );
    let stopped = host.stop();
    stopped.assert_clean();
    assert!(
        stopped.stderr.contains("no configuration file")
            && stopped.stderr.contains("serving the built-in demo app"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn the_demo_answers_only_clients_on_this_machine() {
    // With no application configured, the demo shows every request header and the
    // Python version: only to loopback clients. A client elsewhere on the network
    // (isapi-host --remote-addr, as IIS would report it) gets a 500 page that says nothing
    // about the server, and the log says once how to configure an application. Before,
    // anyone got the demo.
    let library = common::bridge_library();
    for (address, served) in [
        ("192.0.2.7", false),
        ("10.1.2.3", false),
        ("2001:db8::7", false),
        ("::ffff:192.0.2.7", false),
        ("127.0.0.1", true),
        ("127.8.9.10", true),
        ("::1", true),
        ("::ffff:127.0.0.1", true),
    ] {
        let host = Host::start(&library, &["--strict", "--remote-addr", address]);
        for _ in 0..2 {
            let r = get(host.addr, "/");
            if served {
                assert!(
                    r.status == 200 && r.text().contains("<h1>Hello from isapi-wsgi</h1>"),
                    "{address}: {r:?}"
                );
            } else {
                let page = r.text();
                assert!(
                    r.status == 500 && page.contains("No application is configured"),
                    "{address}: {r:?}"
                );
                assert!(
                    !page.contains("Python") && !page.contains("HTTP_"),
                    "{address}: {page}"
                );
            }
        }
        let stopped = host.stop();
        stopped.assert_clean();
        let refusals = stopped
            .stderr
            .matches("the built-in demo app only answers clients on this machine")
            .count();
        assert_eq!(
            refusals,
            usize::from(!served),
            "{address}: {}",
            stopped.stderr
        );
        if !served {
            assert!(stopped.stderr.contains("[wsgi] app = module:callable"));
        }
    }
}

#[test]
fn the_hello_example_wrapped_in_the_validator() {
    let (site, host) = example("hello");
    let r = get(host.addr, "/");
    assert_eq!((r.status, r.text()), (200, "Hello, World!".into()));
    site.finish(host);
}

#[test]
fn the_environ_example_wrapped_in_the_validator() {
    let (site, host) = example("environ");
    let r = get(host.addr, "/some/path?x=1");
    let page = r.text();
    assert_eq!(r.status, 200, "{page}");
    for line in [
        "PATH_INFO = '/some/path'",
        "QUERY_STRING = 'x=1'",
        "REQUEST_METHOD = 'GET'",
        "wsgi.url_scheme = 'http'",
    ] {
        assert!(page.contains(line), "{line} not in\n{page}");
    }
    site.finish(host);
}

#[test]
fn the_echo_example_wrapped_in_the_validator() {
    let (site, host) = example("echo");
    let body: Vec<u8> = (0..200_000u32)
        .map(|i| {
            if i % 100 == 99 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect();
    let r = post(host.addr, "/", "text/plain", &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
    assert!(r.body == body, "{} bytes back", r.body.len());
    // A chunked upload has no Content-Length: the example iterates over wsgi.input's lines.
    let file = site.dir.join("upload.txt");
    std::fs::write(&file, &body).unwrap();
    let (ok, back, err) = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: text/plain",
        &host.url("/"),
    ]);
    assert!(ok && back == body, "{err}: {} bytes back", back.len());
    site.finish(host);
}

#[test]
fn the_flask_example_wrapped_in_the_validator() {
    let (site, host) = example("flask");
    let r = get(host.addr, "/");
    assert!(
        r.status == 200 && r.text().contains("<h1>Flask under isapi-wsgi</h1>"),
        "{r:?}\n{}",
        site.log()
    );
    assert_eq!(get(host.addr, "/hello/World").text(), "Hello, World!");
    let r = post(host.addr, "/api", "application/json", br#"{"n": [1, 2]}"#);
    let answer = r.text().replace([' ', '\n'], "");
    assert!(
        r.status == 200
            && answer.contains(r#""json":{"n":[1,2]}"#)
            && answer.contains(r#""method":"POST""#),
        "{r:?}\n{}",
        site.log()
    );
    assert_eq!(get(host.addr, "/no-such-page").status, 404);
    site.finish(host);
}

#[test]
fn the_django_example_wrapped_in_the_validator() {
    let (site, host) = example("django");
    let jar = site.dir.join("cookies.txt");
    let jar = jar.to_str().unwrap();
    let form = common::django_form(jar, &host.url("/"));
    assert!(
        form.page.contains("<h1>Django under isapi-wsgi</h1>"),
        "{}\n{}",
        form.page,
        site.log()
    );
    assert_eq!(form.answer, "Thank you, Ann Lee.");
    assert_eq!(
        form.without_token, "403",
        "Django refuses a POST without the token"
    );
    site.finish(host);
}

#[test]
fn the_threadpool_example_wrapped_in_the_validator() {
    let (site, host) = example("threadpool");
    let addr = host.addr;
    let started = std::time::Instant::now();
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/slow?0.5")))
        .collect();
    for request in slow {
        let r = request.join().unwrap();
        assert!(
            r.status == 200 && r.text().starts_with("waited 0.5 s on "),
            "{r:?}"
        );
    }
    // The example's 8 workers run the three at once.
    assert!(started.elapsed() < std::time::Duration::from_millis(1400));
    assert_eq!(
        get(addr, "/").text(),
        "try /slow?2 several times at once (wsgi.multithread = True)\n"
    );
    site.finish(host);
}
