//! The bridge end to end: the built `isapi_wsgi` library loaded by the real `isapi-host`
//! (`--strict`: any ISAPI contract violation fails the run), spoken to over real TCP by real
//! clients (curl, Python's http.client, raw sockets). The apps are tests/apps/*, wrapped in
//! wsgiref.validate.validator with warnings as errors; every run's log is checked for
//! validator complaints.
mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use std::time::{Duration, Instant};

use common::{Client, Site, curl, python};

fn testapp() -> Site {
    Site::new(
        "testapp",
        "[python]\npath = {apps}\n[wsgi]\napp = testapp:application\nlog = {log}\n",
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn testapp_through_the_host_with_real_clients() {
    let site = testapp();
    let host = site.start(&[]);
    // curl: a GET with its Content-Length.
    let (ok, body, err) = curl(&["-i", &host.url("/hello")]);
    let response = text(&body);
    assert!(ok, "{err}");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("Content-Length: 13") && response.ends_with("Hello, World!"),
        "{response}"
    );

    // Python's http.client: one keep-alive connection, several requests of each kind.
    let script = r#"
import http.client, json, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=20)
def ask(method, path, body=None, headers={}):
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()
s, h, b = ask("GET", "/hello"); assert (s, b) == (200, b"Hello, World!"), (s, b)
s, h, b = ask("GET", "/stream"); assert h.get("Transfer-Encoding") == "chunked" and b == b"one,two,three", (h, b)
s, h, b = ask("POST", "/echo", b"x" * 100000, {"Content-Type": "application/octet-stream"}); assert b == b"x" * 100000
s, h, b = ask("HEAD", "/hello"); assert s == 200 and h["Content-Length"] == "13" and b == b"", (s, h, b)
s, h, b = ask("GET", "/environ?q=%20x"); env = json.loads(b)
assert env["SCRIPT_NAME"] == "" and env["PATH_INFO"] == "/environ" and env["QUERY_STRING"] == "q=%20x", env
assert env["SERVER_PORT"] == sys.argv[2] and env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit(), env
assert env["HTTP_HOST"].startswith("127.0.0.1") and env["wsgi.url_scheme"] == "http", env
s, h, b = ask("GET", "/unicode/caf%C3%A9"); assert json.loads(b)["path"] == "/unicode/caf\u00c3\u00a9", b
s, h, b = ask("GET", "/write"); assert b == b"written;returned", b
s, h, b = ask("GET", "/file"); assert b == b"x" * 20000
s, h, b = ask("GET", "/empty"); assert s == 204 and b == b""
s, h, b = ask("GET", "/exc-info"); assert s == 503 and b == b"replaced", (s, b)
s, h, b = ask("GET", "/nowhere"); assert s == 404
s, h, b = ask("GET", "/error"); assert s == 500 and b"failed to answer" in b, (s, b)
s, h, b = ask("GET", "/hello"); assert s == 200, "the connection survives a 500"
print("http.client ok")
"#;
    let port = host.addr.port().to_string();
    assert_eq!(
        python(script, &["127.0.0.1", &port]).trim(),
        "http.client ok"
    );

    // curl: a large upload, and a chunked one (no Content-Length: read to its end).
    let file = site.dir.join("upload.bin");
    let upload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&file, &upload).unwrap();
    let data = format!("@{}", file.display());
    let (ok, body, err) = curl(&[
        "--data-binary",
        &data,
        "-H",
        "Content-Type: application/octet-stream",
        &host.url("/echo"),
    ]);
    assert!(ok && body == upload, "{err}: {} bytes back", body.len());
    let (ok, body, err) = curl(&[
        "--data-binary",
        &data,
        "-H",
        "Transfer-Encoding: chunked",
        &host.url("/echo"),
    ]);
    assert!(ok && body == upload, "{err}: {} bytes back", body.len());

    site.finish(host);
}

#[test]
fn errors_and_disconnects_leave_the_host_healthy() {
    let site = testapp();
    let host = site.start(&[]);
    // The application fails mid-body: the connection is closed, the response incomplete.
    let (ok, _, _) = curl(&[&host.url("/error-after")]);
    assert!(!ok, "curl must see an incomplete chunked response");
    // A client that goes away while a big response is being written.
    {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut some = [0u8; 4096];
        let _ = stream.read(&mut some).unwrap();
    }
    // Protocol violations by the app are 500s, and the host keeps serving.
    for path in [
        "/raw/hop-by-hop",
        "/raw/bad-status",
        "/raw/str-body",
        "/raw/no-start",
    ] {
        let (ok, body, _) = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &host.url(path),
        ]);
        assert!(ok && body == b"500", "{path}: {}", text(&body));
    }
    let (ok, body, _) = curl(&[&host.url("/hello")]);
    assert!(ok && body == b"Hello, World!");
    // Close was called for the abandoned responses.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, body, _) = curl(&[&host.url("/closed")]);
        let closed = text(&body);
        if closed.contains("big") && closed.contains("error-after") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "close() not called: {closed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = site.log();
    assert!(log.contains("RuntimeError: boom mid-body"), "{log}");
    let stopped = host.stop();
    assert!(
        stopped.status.success() && stopped.stderr.contains("stopped; 0 contract violation(s)"),
        "{}",
        stopped.stderr
    );
}

#[test]
fn mounts_mappings_https_and_users() {
    let site = testapp();
    let host = site.start(&["--vdir", "/app", "--https", "--user", "alice"]);
    let (_, body, _) = curl(&[&host.url("/App/environ")]);
    let environ = text(&body);
    for expected in [
        r#""SCRIPT_NAME": "/App""#,
        r#""PATH_INFO": "/environ""#,
        r#""wsgi.url_scheme": "https""#,
        r#""HTTPS": "on""#,
        r#""REMOTE_USER": "alice""#,
    ] {
        assert!(environ.contains(expected), "{expected} not in {environ}");
    }
    site.finish(host);

    let site = testapp();
    let host = site.start(&["--vdir", "/app", "--script-map", ".wsgi"]);
    let (_, body, _) = curl(&[&host.url("/app/run.wsgi/environ")]);
    let environ = text(&body);
    assert!(
        environ.contains(r#""SCRIPT_NAME": "/app/run.wsgi""#)
            && environ.contains(r#""PATH_INFO": "/environ""#),
        "{environ}"
    );
    let host_env = environ.contains(r#""REMOTE_USER""#);
    assert!(
        !host_env,
        "no REMOTE_USER for anonymous requests: {environ}"
    );
    site.finish(host);
}

#[test]
fn remote_host_request_uri_and_path_translated_through_the_host() {
    let site = testapp();
    let host = site.start(&[
        "--vdir",
        "/app",
        "--physical-path",
        "/srv/app",
        "--remote-addr",
        "192.0.2.7",
    ]);
    let environ = text(
        &curl(&[
            "-H",
            "X-Environ: 1",
            &host.url("/app/environ/caf%C3%A9?q=%20x"),
        ])
        .1,
    );
    for expected in [
        r#""REMOTE_ADDR": "192.0.2.7""#,
        r#""REMOTE_HOST": "192.0.2.7""#,
        r#""REQUEST_URI": "/app/environ/caf%C3%A9?q=%20x""#,
        r#""RAW_URI": "/app/environ/caf%C3%A9?q=%20x""#,
        // IIS maps its own (wildcard: the whole) PATH_INFO below the application's folder.
        r#""PATH_TRANSLATED": "/srv/app/environ/caf\u00e9""#,
    ] {
        assert!(environ.contains(expected), "{expected} not in {environ}");
    }
    // The mount point itself: PATH_INFO is empty, so no PATH_TRANSLATED.
    let environ = text(&curl(&["-H", "X-Environ: 1", &host.url("/app")]).1);
    assert!(
        environ.contains(r#""PATH_INFO": """#) && !environ.contains("PATH_TRANSLATED"),
        "{environ}"
    );
    site.finish(host);
}

/// environ.rs reuses the `str`s of the last request's target, PATH_INFO and PATH_TRANSLATED
/// while the bytes are the same: each request still sees its own values, whatever came
/// before it (the same length, another query, the same PATH_INFO from another raw target,
/// a target too long to be kept).
#[test]
fn a_url_asked_for_again_and_then_another_each_see_their_own_paths() {
    let site = testapp();
    let host = site.start(&["--vdir", "/app", "--physical-path", "/srv/app"]);
    let segment = "x".repeat(300);
    let (long, long_info) = (
        format!("/app/environ/{segment}"),
        format!("/environ/{segment}"),
    );
    let long_translated = format!("/srv/app/environ/{segment}");
    for (target, path_info, translated) in [
        ("/app/environ/a", "/environ/a", Some("/srv/app/environ/a")),
        ("/app/environ/a", "/environ/a", Some("/srv/app/environ/a")),
        (
            "/app/environ/b?x=1",
            "/environ/b",
            Some("/srv/app/environ/b"),
        ),
        (
            "/app/environ/a?x=1",
            "/environ/a",
            Some("/srv/app/environ/a"),
        ),
        ("/app", "", None),
        ("/app/environ/a", "/environ/a", Some("/srv/app/environ/a")),
        ("/app/environ/%61", "/environ/a", Some("/srv/app/environ/a")),
        (&long, &long_info, Some(&long_translated)),
        ("/app/environ/a", "/environ/a", Some("/srv/app/environ/a")),
    ] {
        let environ = text(&curl(&["-H", "X-Environ: 1", &host.url(target)]).1);
        for expected in [
            format!(r#""REQUEST_URI": "{target}""#),
            format!(r#""RAW_URI": "{target}""#),
            format!(r#""PATH_INFO": "{path_info}""#),
        ] {
            assert!(
                environ.contains(&expected),
                "{target}: {expected} not in {environ}"
            );
        }
        match translated {
            Some(t) => assert!(
                environ.contains(&format!(r#""PATH_TRANSLATED": "{t}""#)),
                "{target}: {environ}"
            ),
            None => assert!(!environ.contains("PATH_TRANSLATED"), "{target}: {environ}"),
        }
    }
    site.finish(host);
}

#[test]
fn isapi_server_variable_reads_iis_variables_during_the_request_only() {
    let site = testapp();
    let host = site.start(&["--https"]);
    let port = host.addr.port().to_string();
    let (_, body, _) = curl(&[
        "-H",
        "X-Auth: token",
        &host.url("/server-variables?LOCAL_ADDR,SERVER_PORT,INSTANCE_ID,HTTPS_KEYSIZE,HEADER_X-Auth,NO_SUCH_VARIABLE"),
    ]);
    let answer = text(&body);
    let expected = format!(
        r#"{{"LOCAL_ADDR": "127.0.0.1", "SERVER_PORT": "{port}", "INSTANCE_ID": "1", "HTTPS_KEYSIZE": "256", "HEADER_X-Auth": "token", "NO_SUCH_VARIABLE": null}}"#
    );
    assert_eq!(answer, expected);
    // Names that are not str, or not tokens, or UNICODE_ ones; calls with the wrong arguments.
    let (_, body, _) = curl(&[&host.url("/server-variable-errors")]);
    assert_eq!(
        text(&body),
        "TypeError TypeError ValueError ValueError ValueError ValueError ValueError TypeError TypeError"
    );
    // Kept after its request: refused, like wsgi.input.
    assert_eq!(text(&curl(&[&host.url("/raw/keep")]).1), "kept");
    assert_eq!(
        text(&curl(&[&host.url("/raw/use-kept-variable")]).1),
        "ValueError: isapi_wsgi.ServerVariable is no longer usable: its request has finished"
    );
    site.finish(host);
}

#[test]
fn the_app_sees_the_canonical_path_iis_routed_and_authorised() {
    // IIS (http.sys) decodes the path, treats `\` as `/` and removes dot segments before it
    // routes, authorises and filters the request; the app must see that path, not the raw
    // one (where `/app/public/../admin` would look like something under /public).
    let site = testapp();
    let host = site.start(&["--vdir", "/app"]);
    for (target, script, path) in [
        ("/app/unicode/x/../y", "/app", "/unicode/y"),
        ("/app/unicode/./a/%2E%2E/b", "/app", "/unicode/b"),
        ("/app/unicode/a%2F..%2Fc", "/app", "/unicode/c"),
        ("/app/unicode/a%5C..%5Cd", "/app", "/unicode/d"),
        ("/app/other/../unicode/e/", "/app", "/unicode/e/"),
        ("/app/unicode/f/..", "/app", "/unicode/"),
    ] {
        let response = common::get(host.addr, target);
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        let expected = format!(r#"{{"path": "{path}", "script": "{script}"}}"#);
        assert_eq!(response.text(), expected, "{target}");
    }
    site.finish(host);
}

#[test]
fn x_forwarded_headers_are_believed_from_trusted_proxies_only() {
    let site = Site::new(
        "proxies",
        "[python]\npath = {apps}\n[wsgi]\napp = testapp:application\nlog = {log}\ntrusted_proxies = 10.0.0.0/8, ::1\n",
    );
    let headers = [
        "-H",
        "X-Forwarded-For: 127.0.0.1, 203.0.113.9, 10.0.0.7",
        "-H",
        "X-Forwarded-Proto: https",
        "-H",
        "X-Forwarded-Host: www.example.org",
        "-H",
        "Host: internal:8080",
    ];
    // From a proxy in 10.0.0.0/8: the client is the rightmost untrusted address (the
    // 127.0.0.1 left of it is the client's own claim), the scheme and host the proxy's.
    let host = site.start(&["--remote-addr", "10.0.0.5"]);
    let mut args = headers.to_vec();
    let url = host.url("/environ");
    args.push(&url);
    let environ = text(&curl(&args).1);
    for expected in [
        r#""REMOTE_ADDR": "203.0.113.9""#,
        r#""REMOTE_HOST": "203.0.113.9""#,
        r#""isapi.original_remote_addr": "10.0.0.5""#,
        r#""wsgi.url_scheme": "https""#,
        r#""HTTPS": "on""#,
        r#""isapi.original_url_scheme": "http""#,
        r#""HTTP_HOST": "www.example.org""#,
        r#""isapi.original_http_host": "internal:8080""#,
    ] {
        assert!(environ.contains(expected), "{expected} not in {environ}");
    }
    site.finish(host);
    // From anyone else: the headers are just headers.
    let site = Site::new(
        "proxies-untrusted",
        "[python]\npath = {apps}\n[wsgi]\napp = testapp:application\nlog = {log}\ntrusted_proxies = 10.0.0.0/8\n",
    );
    let host = site.start(&["--remote-addr", "192.0.2.1"]);
    let mut args = headers.to_vec();
    let url = host.url("/environ");
    args.push(&url);
    let environ = text(&curl(&args).1);
    for expected in [
        r#""REMOTE_ADDR": "192.0.2.1""#,
        r#""wsgi.url_scheme": "http""#,
        r#""HTTP_HOST": "internal:8080""#,
        r#""HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.9, 10.0.0.7""#,
    ] {
        assert!(environ.contains(expected), "{expected} not in {environ}");
    }
    assert!(!environ.contains("isapi.original"), "{environ}");
    site.finish(host);
}

fn venv() -> PathBuf {
    std::env::var_os("ISAPI_WSGI_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("test-venv")
        })
}

#[test]
fn flask_and_django_through_the_host() {
    let venv = venv();
    assert!(
        venv.join("bin").join("python").exists(),
        "no venv at {}: run `bash .ci/setup`",
        venv.display()
    );
    let site = Site::new(
        "frameworks",
        &format!(
            "[python]\npath = {{apps}}\nvenv = {}\n[wsgi]\napp = frameworks:application\nlog = {{log}}\n",
            venv.display()
        ),
    );
    let host = site.start(&[]);
    let jar = site.dir.join("cookies.txt");
    let jar = jar.to_str().unwrap();
    for framework in ["flask", "django"] {
        let url = |path: &str| host.url(&format!("/{framework}{path}"));
        let code = |args: &[&str]| {
            let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
            all.extend_from_slice(args);
            text(&curl(&all).1)
        };
        assert_eq!(text(&curl(&[&url("/")]).1), format!("{framework} index"));
        assert_eq!(code(&[&url("/no-such-page")]), "404");
        assert_eq!(code(&[&url("/boom")]), "500");
        let (_, body, _) = curl(&[
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"n": [1, 2]}"#,
            &url("/json"),
        ]);
        assert!(
            text(&body)
                .replace(' ', "")
                .contains(r#""received":{"n":[1,2]}"#),
            "{}",
            text(&body)
        );
        let (_, body, _) = curl(&["-i", &url("/redirect")]);
        let head = text(&body);
        assert!(
            head.starts_with("HTTP/1.1 302") && head.contains(&format!("/{framework}/target")),
            "{head}"
        );
        let (_, body, _) = curl(&["-L", &url("/redirect")]);
        assert!(
            text(&body).starts_with("you were redirected to"),
            "{}",
            text(&body)
        );
        curl(&["-c", jar, &url("/cookie-set")]);
        assert_eq!(
            text(&curl(&["-b", jar, &url("/cookie-get")]).1),
            "flavour=oatmeal"
        );
    }
    // Forms: Flask plainly, Django with its CSRF token (cookie + hidden field).
    let (_, body, _) = curl(&["--data", "name=Ann+Lee", &host.url("/flask/form")]);
    assert_eq!(text(&body), "hello Ann Lee from a form");
    let form = common::django_form(jar, &host.url("/django/form"));
    assert_eq!(form.answer, "hello Ann Lee from a form");
    assert_eq!(
        form.without_token, "403",
        "Django refuses a POST without the CSRF token"
    );
    site.finish(host);
}

#[test]
fn request_data_in_log_lines_cannot_forge_or_split_lines() {
    // PATH_INFO is percent-decoded, so a path can carry CR, LF and other control bytes.
    // Every log line of ours that quotes the request escapes them (`\x0d\x0a`); before, the
    // path below wrote a line of its own into the log.
    let site = testapp();
    let host = site.start(&[]);
    let forged = "/raw/fail%0D%0A2000-01-01T00:00:00Z%20isapi_wsgi:%20forged%1b[31m%7f";
    let r = common::get(host.addr, forged);
    assert_eq!(r.status, 500);
    let expected = "GET /raw/fail\\x0d\\x0a2000-01-01T00:00:00Z isapi_wsgi: forged\\x1b[31m\\x7f: the application failed:";
    assert!(site.wait_for_log(expected), "{expected}\n{}", site.log());
    let log = site.log();
    assert!(
        !log.lines().any(|line| line.starts_with("2000-01-01")),
        "a forged line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape character reached the log"
    );
    site.finish(host);
}

#[test]
fn a_lower_case_head_is_not_head_anywhere() {
    // Methods are case-sensitive (RFC 9110 §9.1): `head` is some other method, so its
    // answer has a body. Before, the extension's own pages (here the start-up failure page)
    // took `head` for HEAD and sent no body after announcing one.
    let site = Site::new(
        "head-case",
        "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n",
    );
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    client.send(b"head / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.status, 500, "{r:?}");
    assert!(
        r.text().contains("The application failed to start"),
        "{r:?}"
    );
    client.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(true);
    assert!(r.status == 500 && r.body.is_empty(), "{r:?}");
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 500);
    site.finish(host);
    // And through the application: `head` reaches it as itself, and gets its body.
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    client.send(b"head /raw/method HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "head"));
    client.send(b"HEAD /raw/method HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("4")));
    site.finish(host);
}

#[test]
fn bad_configurations_give_the_documented_line_and_a_500_page() {
    for (name, ini, expected) in [
        (
            "unknown-key",
            "[wsgi]\napp = testapp:application\nworkers = 4\n",
            "configuration error, the application is not started",
        ),
        (
            "bad-max-body",
            "[wsgi]\napp = testapp:application\nmax_body = 10 MB\n",
            "line 3: [wsgi] max_body: `10 MB` is not a size in bytes",
        ),
        (
            "bad-log-max",
            "[wsgi]\napp = testapp:application\nlog_max = 10 MB\n",
            "line 3: [wsgi] log_max: `10 MB` is not a size in bytes",
        ),
        (
            "bad-health-allow",
            "[wsgi]\napp = testapp:application\n[health]\npath = /_isapi/health\nallow = localhost\n",
            "line 5: [health] allow: localhost is not an IP address or network",
        ),
        (
            "health-allow-without-path",
            "[health]\nallow = 127.0.0.1\n",
            "line 2: [health] allow: there is no health page without [health] path",
        ),
        (
            "import-error",
            "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:app\nlog = {log}\n",
            "ModuleNotFoundError: No module named 'no_such_module'",
        ),
        (
            "no-python",
            "[python]\nhome = /nonexistent/python\n[wsgi]\nlog = {log}\n",
            "the application failed to start; every request gets a 500 page",
        ),
    ] {
        let site = Site::new(name, ini);
        let host = site.start(&[]);
        common::assert_startup_failure_pages(&host, name);
        let stopped = host.stop();
        assert!(
            stopped.status.success() && stopped.stderr.contains("0 contract violation(s)"),
            "{}",
            stopped.stderr
        );
        let log = format!("{}{}", stopped.stderr, site.log());
        assert!(
            log.contains(expected),
            "{name}: {expected:?} not logged:\n{log}"
        );
        let _ = std::fs::remove_dir_all(&site.dir);
    }
}

/// The pyenv CPythons from 3.8 up, as (version, prefix); 3.11 must be among them.
fn pyenv_pythons() -> Vec<(String, PathBuf)> {
    let output = Command::new("pyenv")
        .args(["versions", "--bare"])
        .output()
        .expect("pyenv");
    let pythons: Vec<(String, PathBuf)> = text(&output.stdout)
        .lines()
        .map(|v| v.trim().to_string())
        .filter(|v| {
            v.split('.')
                .nth(1)
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| v.starts_with("3.") && m >= 8)
        })
        .map(|version| {
            let prefix = Command::new("pyenv")
                .args(["prefix", &version])
                .output()
                .unwrap()
                .stdout;
            (version, PathBuf::from(text(&prefix).trim()))
        })
        .collect();
    assert!(
        pythons.iter().any(|(v, _)| v.starts_with("3.11.")),
        "{pythons:?}"
    );
    pythons
}

/// `3.11` for `3.11.7`.
fn minor(version: &str) -> &str {
    version.rsplit_once('.').unwrap().0
}

#[test]
fn one_library_every_pyenv_python_through_the_host() {
    let pythons = pyenv_pythons();
    for (version, prefix) in &pythons {
        let prefix = prefix.display();
        let site = Site::new(
            &format!("py{version}"),
            &format!(
                "[python]\nhome = {prefix}\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\n"
            ),
        );
        let host = site.start(&[]);
        assert_eq!(
            text(&curl(&[&host.url("/version")]).1),
            minor(version),
            "{version}: {}",
            site.log()
        );
        let (_, body, _) = curl(&["--data-binary", "echo", &host.url("/echo")]);
        assert_eq!(text(&body), "echo");
        assert_eq!(text(&curl(&[&host.url("/stream")]).1), "one,two,three");
        // C extension modules from lib-dynload (math, _json) resolve against libpython.
        let answer = text(&curl(&[&host.url("/c-extensions")]).1);
        let dynload = format!("{prefix}/lib/python{}/lib-dynload", minor(version));
        for module in ["math", "_json"] {
            let expected = format!(r#""{module}": "{dynload}/{module}.cpython-"#);
            assert!(
                answer.contains(&expected),
                "{version}: {expected} not in {answer}"
            );
        }
        assert!(
            answer.contains(r#""sqrt2": 1.4142135623730951"#),
            "{version}: {answer}"
        );
        site.finish(host);
        println!("CPython {version} through the host: ok");
    }
}

#[test]
fn uploads_cut_short_in_both_ways_iis_may_report_them() {
    use std::io::{Read, Write};
    for mode in ["eof", "error"] {
        let site = testapp();
        let host = site.start(&["--read-client-on-disconnect", mode, "--read-ahead", "1000"]);
        let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n")
            .unwrap();
        stream.write_all(&[b'a'; 5000]).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        drop(stream);
        // The application saw an OSError (ClientDisconnected); the host keeps serving.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !site.log().contains("isapi_wsgi.ClientDisconnected: ") {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode}: no ClientDisconnected logged:\n{}",
                site.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(text(&curl(&[&host.url("/hello")]).1), "Hello, World!");
        let log = site.log();
        let expected = if mode == "eof" {
            "the client disconnected before sending the whole body"
        } else {
            "reading the request body failed"
        };
        assert!(log.contains(expected), "{mode}: {expected:?} not in\n{log}");
        site.finish(host);
    }
}

#[test]
fn other_iis_variants_change_nothing_for_the_app() {
    let site = testapp();
    let host = site.start(&[
        "--chunked-known-length",
        "--all-http-omit-content",
        "--ecb-version",
        "7.5",
    ]);
    let (ok, body, err) = curl(&[
        "--data-binary",
        "small chunked body",
        "-H",
        "Transfer-Encoding: chunked",
        &host.url("/echo"),
    ]);
    assert!(
        ok && body == b"small chunked body",
        "{err}: {}",
        text(&body)
    );
    let (_, body, _) = curl(&[
        "-H",
        "Content-Type: text/csv",
        "--data",
        "a,b",
        &host.url("/environ"),
    ]);
    let environ = text(&body);
    assert!(
        environ.contains(r#""CONTENT_TYPE": "text/csv""#)
            && environ.contains(r#""CONTENT_LENGTH": "3""#),
        "{environ}"
    );
    assert!(
        !environ.contains("HTTP_CONTENT_TYPE") && !environ.contains("HTTP_CONTENT_LENGTH"),
        "{environ}"
    );
    site.finish(host);
}

/// Reads until the server closes the connection, or `within` passes. Returns the bytes and
/// whether the end was a close (EOF), not the time limit.
fn read_until_closed(stream: &mut std::net::TcpStream, within: Duration) -> (Vec<u8>, bool) {
    use std::io::Read;
    let deadline = Instant::now() + within;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (data, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (data, true),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (data, true),
            Err(_) => return (data, false),
        }
    }
}

/// Sends `request` on a new keep-alive connection (no `Connection: close`, no half-close:
/// only the server can end it) and reads until the server closes it, for at most 5 s.
fn until_the_server_closes(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    let (data, closed) = read_until_closed(&mut stream, Duration::from_secs(5));
    assert!(
        closed,
        "the server did not close the connection: the client would hang; got {:?}",
        text(&data)
    );
    data
}

#[test]
fn wsgi_input_readline_readlines_and_iteration_through_the_host() {
    let site = testapp();
    // A read-ahead of 7 bytes: the rest of each body comes through ReadClient.
    let host = site.start(&["--read-ahead", "7"]);
    let mut client = Client::connect(host.addr);
    // The body arrives in three pieces, cut inside lines.
    let body = b"abcdef\nline two is long\nthree\nfour\nrest";
    client.send(
        format!(
            "POST /raw/echo-pieces HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for piece in [&body[..9], &body[9..27], &body[27..]] {
        std::thread::sleep(Duration::from_millis(50));
        client.send(piece);
    }
    // read(3), readline(), readline(5), readlines(1), read(), read(10) past the end.
    assert_eq!(
        client.response(false).text(),
        r#"["abc", "def\n", "line ", "two is long\n", "three\nfour\nrest", ""]"#
    );
    // Iteration: wsgi.input's own iterator, and the validator's (readline), over a
    // Content-Length body and over a chunked one (no CONTENT_LENGTH: read to its end).
    for path in ["/raw/iterate", "/echo-iter"] {
        client.send(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\na\nb\n\nc").as_bytes(),
        );
        assert_eq!(
            client.response(false).text(),
            r#"["a\n", "b\n", "\n", "c"]"#,
            "{path}"
        );
        client.send(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\na\nb\r\n").as_bytes(),
        );
        std::thread::sleep(Duration::from_millis(50));
        client.send(b"3\r\n\n\nc\r\n0\r\n\r\n");
        assert_eq!(
            client.response(false).text(),
            r#"["a\n", "b\n", "\n", "c"]"#,
            "{path}, chunked"
        );
    }
    site.finish(host);
}

#[test]
fn invalid_status_and_headers_are_a_500_and_a_logged_message_through_the_host() {
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    for (path, expected) in [
        (
            "/raw/bad-header",
            "a control character (CR, LF, NUL, ...; only HTAB is allowed) in the value",
        ),
        (
            "/raw/control-header",
            "invalid response header ('X-Bad', 'a\\x01b'): a control character",
        ),
        (
            "/raw/escape-delete",
            "invalid response header ('X-Bad', 'a\\x7fb'): a control character",
        ),
        (
            "/raw/interim-100",
            "100 is an interim (1xx) status, which cannot be the response to a request",
        ),
        (
            "/raw/interim-101",
            "101 is an interim (1xx) status, which cannot be the response to a request",
        ),
        (
            "/raw/interim-103",
            "103 is an interim (1xx) status, which cannot be the response to a request",
        ),
        (
            "/raw/hop-by-hop",
            "Connection is a hop-by-hop header, which only the server may set",
        ),
        ("/raw/bad-status", "invalid status 'OK'"),
        (
            "/raw/bytes-status",
            "TypeError: the status must be a str, like '200 OK'",
        ),
        (
            "/raw/non-latin1-status",
            "ValueError: the status must be latin-1 text",
        ),
        (
            "/raw/int-header-value",
            "TypeError: header names and values must be str, got ('X-Number', 5)",
        ),
        (
            "/raw/headers-not-list",
            "TypeError: response_headers must be a list of (name, value) tuples",
        ),
        (
            "/raw/header-not-tuple",
            "TypeError: each response header must be a (name, value) tuple",
        ),
        (
            "/raw/start-twice",
            "AssertionError: start_response() was already called; pass exc_info to call it again",
        ),
        ("/raw/two-lengths", "a second, different Content-Length"),
        (
            "/raw/str-body",
            "must be an iterable of bytes; it yielded str",
        ),
        ("/raw/no-start", "without calling start_response"),
    ] {
        // All on one keep-alive connection: each 500 keeps it open.
        client.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = client.response(false);
        assert!(
            r.status == 500 && r.text().contains("The application failed to answer"),
            "{path}: {r:?}"
        );
        assert!(
            !r.text().contains(expected),
            "{path}: no details without debug = true"
        );
        let line = format!("GET {path}: the application failed:");
        assert!(site.wait_for_log(&line), "{path}: {line}\n{}", site.log());
        assert!(
            site.log().contains(expected),
            "{path}: {expected:?} not logged\n{}",
            site.log()
        );
    }
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).text(), "Hello, World!");
    site.finish(host);
}

/// Splits a response into its header block and the bytes after it.
fn split_head(data: &[u8]) -> (String, &[u8]) {
    let end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block")
        + 4;
    (text(&data[..end]), &data[end..])
}

#[test]
fn an_app_thread_writing_while_the_request_streams_to_a_slow_client_deadlocks_nothing() {
    // The request's thread streams 4 MiB to a client that does not read at first, so its
    // write blocks (with the GIL released); meanwhile a thread of the app calls write() in
    // a loop. Before, the blocked writer held the response's lock and the app's thread
    // waited for it holding the GIL: every thread of the process hung, the next request
    // too. Now the response completes, the app's write() raises once it is over, and the
    // host serves the next request.
    use std::io::Read;
    for handler in ["simple", "threadpool"] {
        let site = Site::new(
            &format!("writer-{handler}"),
            &format!(
                "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nhandler = {handler}\nlog = {{log}}\n"
            ),
        );
        let host = site.start(&[]);
        let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
        stream
            .write_all(b"GET /raw/writer-thread HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 65536];
        let deadline = Instant::now() + Duration::from_secs(30);
        while !data.ends_with(b"0\r\n\r\n") && Instant::now() < deadline {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
            // A slow reader: a little at a time.
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            data.ends_with(b"0\r\n\r\n"),
            "{handler}: the response did not complete ({} bytes)",
            data.len()
        );
        let (head, _) = split_head(&data);
        assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
        let started = Instant::now();
        let next = common::get(host.addr, "/hello");
        assert_eq!(next.text(), "Hello, World!", "{handler}");
        assert!(started.elapsed() < Duration::from_secs(5), "{handler}");
        let ended = common::get(host.addr, "/raw/writer-ended").text();
        assert!(
            [
                "OSError after ",
                "ClientDisconnected after ",
                "ValueError after "
            ]
            .iter()
            .any(|start| ended.starts_with(start)),
            "{handler}: the app's writer: {ended}"
        );
        site.finish(host);
    }
}

#[test]
fn a_second_reader_of_wsgi_input_is_refused_while_the_first_waits_for_the_client() {
    // The first reader waits in ReadClient with the GIL released and holds no lock; the
    // second gets a RuntimeError at once (it neither waits nor reads in between), and the
    // first gets the whole body once the client sends the rest.
    let site = testapp();
    let host = site.start(&[]);
    // More than the host reads ahead before calling the extension (48 KiB), so the first
    // reader must wait in ReadClient for the rest.
    let mut client = Client::connect(host.addr);
    client.send(b"POST /raw/two-readers HTTP/1.1\r\nHost: x\r\nContent-Length: 200000\r\n\r\n");
    client.send(&[b'a'; 100_000]);
    std::thread::sleep(Duration::from_millis(800));
    client.send(&[b'b'; 100_000]);
    let r = client.response(false);
    assert_eq!(
        r.text(),
        "RuntimeError: wsgi.input is being read by another thread; the first reader got 200000 bytes"
    );
    client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).text(), "Hello, World!");
    site.finish(host);
}

#[test]
fn a_body_shorter_than_its_content_length_is_sent_and_the_connection_closed() {
    // Shorter: what the app gave goes out under its own Content-Length, and the connection
    // closes so the client sees the truncation — whether the body was known at once (a
    // one-item list) or streamed. Before, the one-item list got an empty reply.
    let site = testapp();
    let host = site.start(&[]);
    for (path, body, logged) in [
        (
            "/raw/short",
            "12345",
            "the application's body ended after 5 of the 10 bytes its Content-Length announced; the connection is closed",
        ),
        (
            "/raw/short-list",
            "123456789",
            "the application's body ended after 9 of the 10 bytes its Content-Length announced; the connection is closed",
        ),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let data = until_the_server_closes(host.addr, request.as_bytes());
        let (head, rest) = split_head(&data);
        assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
        assert!(head.contains("Content-Length: 10\r\n"), "{path}: {head}");
        assert_eq!(text(rest), body, "{path}: the body the app gave");
        assert!(
            site.wait_for_log(logged),
            "{path}: {logged}\n{}",
            site.log()
        );
    }
    let closed = text(&curl(&[&host.url("/closed")]).1);
    assert!(closed.contains("\"short\""), "close() not called: {closed}");
    site.finish(host);
}

#[test]
fn a_body_longer_than_its_content_length_is_cut_there_and_the_connection_kept() {
    // Longer: exactly the declared bytes go out (PEP 3333: never more), the rest is dropped
    // and logged, and the connection serves the next request. Before, a one-item list
    // declaring 1 byte got an empty reply.
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    for (path, body) in [("/raw/long", "123"), ("/raw/long-list", "\"")] {
        client.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = client.response(false);
        assert_eq!((r.status, r.text().as_str()), (200, body), "{path}: {r:?}");
        let logged = format!(
            "the application sent more than its Content-Length of {} bytes; the rest was not sent",
            body.len()
        );
        assert!(
            site.wait_for_log(&logged),
            "{path}: {logged}\n{}",
            site.log()
        );
        // The same connection goes on: nothing of the rest is taken for the next response.
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            client.response(false).text(),
            "Hello, World!",
            "after {path}"
        );
    }
    let closed = text(&curl(&[&host.url("/closed")]).1);
    assert!(closed.contains("\"long\""), "close() not called: {closed}");
    site.finish(host);
}

#[test]
fn one_content_length_and_none_on_204_and_304_and_htab_in_values() {
    let site = testapp();
    let host = site.start(&[]);
    for (path, status, length_lines, body) in [
        ("/raw/same-length-twice", 200, 1, "abc"),
        ("/raw/no-content-with-length", 204, 0, ""),
        ("/raw/not-modified-with-length", 304, 0, ""),
        ("/raw/tab-header", 200, 1, "ok"),
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut client = Client::connect(host.addr);
        client.send(request.as_bytes());
        // 204 and 304 have no body by definition (the client must not wait for one).
        let r = client.response(status != 200);
        assert_eq!(
            (r.status, r.text().as_str()),
            (status, body),
            "{path}: {r:?}"
        );
        let lengths = r
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .count();
        assert_eq!(lengths, length_lines, "{path}: {:?}", r.headers);
        if path == "/raw/tab-header" {
            assert_eq!(r.header("x-tab"), Some("a\tb"));
        }
        if status != 200 {
            assert_eq!(r.header("transfer-encoding"), None, "{path}");
        }
        // Still the same connection: the bodiless answer carried no stray bytes.
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            client.response(false).text(),
            "Hello, World!",
            "after {path}"
        );
    }
    site.finish(host);
}

#[test]
fn exc_info_after_the_headers_reraises_and_the_connection_is_aborted() {
    let site = testapp();
    let host = site.start(&[]);
    let data = until_the_server_closes(
        host.addr,
        b"GET /raw/exc-info-late HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let response = text(&data);
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("Transfer-Encoding: chunked"),
        "{response}"
    );
    assert!(response.contains("4\r\nsent\r\n"), "{response}");
    assert!(
        !response.contains("0\r\n\r\n") && !response.contains("never"),
        "the chunked body must not look complete: {response:?}"
    );
    assert!(site.wait_for_log(
        "GET /raw/exc-info-late: the application failed after the headers were sent; closing the connection"
    ));
    assert!(site.log().contains("KeyError: 'late'"), "{}", site.log());
    site.finish(host);
}

#[test]
fn wsgi_errors_write_writelines_and_flush_reach_the_log_through_the_host() {
    let site = testapp();
    let host = site.start(&[]);
    assert_eq!(text(&curl(&[&host.url("/errors")]).1), "logged");
    assert!(
        site.wait_for_log("testapp: a line for wsgi.errors\ntestapp: two\ntestapp: lines\n"),
        "{}",
        site.log()
    );
    site.finish(host);
}

#[test]
fn http10_clients_get_a_streamed_body_ended_by_the_close() {
    let site = testapp();
    let host = site.start(&[]);
    // Also when the HTTP/1.0 client asks to keep the connection: an unframed body can only
    // end with it.
    for request in [
        "GET /stream HTTP/1.0\r\nHost: x\r\n\r\n",
        "GET /stream HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    ] {
        let data = until_the_server_closes(host.addr, request.as_bytes());
        let (r, _) = common::parse_response(&data, false).expect("a response");
        assert_eq!(r.status, 200, "{request:?}");
        assert_eq!(r.header("Transfer-Encoding"), None, "{request:?}");
        assert_eq!(r.header("Content-Length"), None, "{request:?}");
        assert_eq!(r.text(), "one,two,three", "{request:?}");
    }
    site.finish(host);
}

#[test]
fn a_client_that_disconnects_stops_an_endless_stream_within_a_second() {
    use std::io::{Read, Write};
    let site = testapp();
    let host = site.start(&[]);
    let count = || -> u64 {
        let body = text(&curl(&[&host.url("/count?endless")]).1);
        body.parse().unwrap_or_else(|_| panic!("/count: {body:?}"))
    };
    let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
    stream
        .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The headers and the first 1 KiB piece (chunked: 400\r\n + 1024 bytes).
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    while !data.windows(1024).any(|w| w.iter().all(|&b| b == b'x')) {
        let n = stream.read(&mut buf).expect("the first piece");
        assert!(n > 0, "closed early: {:?}", text(&data));
        data.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(200));
    let running = count();
    assert!(running > 10, "the stream runs: {running} pieces");
    drop(stream);
    let gone = Instant::now();
    loop {
        if text(&curl(&[&host.url("/closed")]).1).contains("\"endless\"") {
            break;
        }
        assert!(
            gone.elapsed() < Duration::from_secs(1),
            "close() not called within 1 s of the disconnect; {} pieces",
            count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), stopped, "the iteration goes on after close()");
    // Only b"" pieces followed the disconnect (the next data is due at piece 400): the
    // heartbeats' connection check stopped it, not a failed write.
    assert!(stopped < 400, "{stopped} pieces");
    assert!(
        site.wait_for_log("GET /endless: response aborted: the client disconnected"),
        "{}",
        site.log()
    );
    site.finish(host);
}

#[test]
fn an_error_after_only_an_empty_piece_is_still_a_500_page() {
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    client.send(b"GET /error-after-empty HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.status, 500, "{r:?}");
    assert!(
        r.text()
            .contains("The application failed to answer this request"),
        "{r:?}"
    );
    assert!(site.wait_for_log("GET /error-after-empty: the application failed:"));
    assert!(
        site.log()
            .contains("RuntimeError: boom after an empty piece")
    );
    // A complete response: the connection goes on, and close() was called.
    client.send(b"GET /closed HTTP/1.1\r\nHost: x\r\n\r\n");
    let closed = client.response(false).text();
    assert!(closed.contains("\"error-after-empty\""), "{closed}");
    site.finish(host);
}

#[test]
fn the_app_answers_a_large_upload_before_the_client_sent_the_rest() {
    use std::io::Write;
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    // 50 MiB announced; 64 KiB sent, the rest held back until the answer has arrived.
    let declared = 50 * 1024 * 1024;
    client.send(
        format!("POST /read-some HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {declared}\r\n\r\n")
            .as_bytes(),
    );
    client.send(&vec![b'u'; 64 * 1024]);
    let r = client.response(false);
    assert_eq!(
        (r.status, r.text()),
        (200, format!("read 1024 of {declared}")),
        "{}",
        site.log()
    );
    // The host still takes the rest of the body (or has closed the connection), and keeps
    // serving others.
    let more = vec![b'u'; 1024 * 1024];
    for _ in 0..4 {
        if client.stream.write_all(&more).is_err() {
            break;
        }
    }
    drop(client);
    assert_eq!(text(&curl(&[&host.url("/hello")]).1), "Hello, World!");
    site.finish(host);
}

#[test]
fn a_library_wins_over_a_wrong_home() {
    // One CPython's library with another CPython's prefix as home, or a home that does not
    // exist: the library decides (README: "wins over home (home is then derived from it)").
    let pythons = pyenv_pythons();
    let (version, prefix) = &pythons[0];
    let (other, other_prefix) = pythons
        .iter()
        .find(|(v, _)| minor(v) != minor(version))
        .expect("two CPython minor versions in pyenv");
    let library = prefix
        .join("lib")
        .join(format!("libpython{}.so.1.0", minor(version)));
    assert!(library.is_file(), "{}", library.display());
    for home in [other_prefix.clone(), PathBuf::from("/nonexistent/python")] {
        let site = Site::new(
            "library-wins",
            &format!(
                "[python]\nhome = {}\nlibrary = {}\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\n",
                home.display(),
                library.display()
            ),
        );
        let host = site.start(&[]);
        let (_, body, _) = curl(&[&host.url("/version")]);
        assert_eq!(
            text(&body),
            minor(version),
            "library {version} with home {} ({other}'s prefix or none): {}",
            home.display(),
            site.log()
        );
        assert_eq!(text(&curl(&[&host.url("/hello")]).1), "Hello, World!");
        site.finish(host);
    }
}

#[test]
fn a_venvs_pth_files_are_honoured() {
    // A venv-like directory for CPython 3.11 whose site-packages has only a .pth file naming
    // tests/apps/pth: the app is importable only if the venv went through site.addsitedir.
    let (version, prefix) = pyenv_pythons()
        .into_iter()
        .find(|(v, _)| v.starts_with("3.11."))
        .unwrap();
    let site = Site::new(
        "venv-pth",
        &format!(
            "[python]\nhome = {}\nvenv = venv\n[wsgi]\napp = pth_app:application\nlog = {{log}}\n",
            prefix.display()
        ),
    );
    let packages = site
        .dir
        .join("venv")
        .join("lib")
        .join(format!("python{}", minor(&version)))
        .join("site-packages");
    std::fs::create_dir_all(&packages).unwrap();
    let target = common::apps_dir().join("pth");
    std::fs::write(
        packages.join("x.pth"),
        format!("# a comment line\n{}\n", target.display()),
    )
    .unwrap();
    let host = site.start(&[]);
    let (_, body, _) = curl(&[&host.url("/")]);
    let answer = text(&body);
    let script = r#"
import json, sys
answer = json.loads(sys.stdin.read())
target, packages = sys.argv[1], sys.argv[2]
assert answer["file"].startswith(target), answer["file"]
path = answer["path"]
assert packages in path and target in path, path
# The venv's entries come before the interpreter's own site-packages.
own = [i for i, p in enumerate(path) if p.endswith("site-packages") and p != packages]
assert path.index(packages) < min(own, default=len(path)), path
assert path.index(target) < min(own, default=len(path)), path
print("ok")
"#;
    let checked = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&target)
        .arg(&packages)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(answer.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        checked.status.success(),
        "{answer}\n{}\n{}",
        text(&checked.stderr),
        site.log()
    );
    site.finish(host);
}

#[test]
fn wsgi_multithread_and_multiprocess_are_true_and_run_once_false_for_both_handlers() {
    for handler in ["simple", "threadpool"] {
        let site = Site::new(
            &format!("flags-{handler}"),
            &format!(
                "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nhandler = {handler}\nlog = {{log}}\n"
            ),
        );
        let host = site.start(&[]);
        let environ = text(&curl(&[&host.url("/environ")]).1);
        for expected in [
            r#""wsgi.multithread": true"#,
            r#""wsgi.multiprocess": true"#,
            r#""wsgi.run_once": false"#,
            r#""wsgi.version": [1, 0]"#,
        ] {
            assert!(
                environ.contains(expected),
                "{handler}: {expected} not in {environ}"
            );
        }
        site.finish(host);
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_host_cleanly_with_python_loaded() {
    let site = testapp();
    let host = site.launch(&common::Launch::native_ctrl_c(), &[], &[]);
    assert_eq!(text(&curl(&[&host.url("/hello")]).1), "Hello, World!");
    // Py_InitializeEx(0): Python did not take SIGINT for itself.
    let handler = text(&curl(&[&host.url("/sigint")]).1);
    assert!(
        !handler.contains("default_int_handler"),
        "Python installed its SIGINT handler: {handler}"
    );
    let stopped = host.stop(); // SIGINT
    stopped.assert_clean();
    assert!(
        stopped
            .stderr
            .contains("isapi-host: TerminateExtension(HSE_TERM_MUST_UNLOAD) returned TRUE"),
        "{}",
        stopped.stderr
    );
    let log = site.log();
    assert!(log.ends_with("isapi_wsgi: unloading\n"), "{log}");
    let _ = std::fs::remove_dir_all(&site.dir);
}

/// A testapp site with `[wsgi] max_body = 1K` and the given handler.
fn testapp_with_max_body(handler: &str) -> Site {
    Site::new(
        &format!("max-body-{handler}"),
        &format!(
            "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\nhandler = {handler}\nmax_body = 1K\n"
        ),
    )
}

#[test]
fn a_content_length_over_max_body_is_a_413_before_the_app_runs_for_both_handlers() {
    for handler in ["simple", "threadpool"] {
        let site = testapp_with_max_body(handler);
        // The host reads ahead 1000 bytes before calling the extension: all the client
        // sends, so nothing is left unread in the socket when the host closes it.
        let host = site.start(&["--read-ahead", "1000"]);
        // At the limit: the app reads it all, and the connection stays open.
        let mut client = Client::connect(host.addr);
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1024\r\n\r\n");
        client.send(&[b'k'; 1024]);
        let r = client.response(false);
        assert_eq!((r.status, r.body.len()), (200, 1024), "{handler}");
        // Over it: 1 MiB announced, 1000 bytes sent. /echo would wait for the rest: the
        // 413 can only come from the bridge, before the app.
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n");
        client.send(&[b'k'; 1000]);
        let (data, closed) = read_until_closed(&mut client.stream, Duration::from_secs(5));
        let response = text(&data);
        assert!(
            response.starts_with("HTTP/1.1 413 Content Too Large\r\n")
                && response.contains("Connection: close")
                && response
                    .contains("(1048576 bytes) is larger than this server accepts (1024 bytes)"),
            "{handler}: {response}"
        );
        assert!(closed, "{handler}: the connection must close after the 413");
        assert!(
            site.log().contains(
                "POST /echo: refused with 413: the body's Content-Length (1048576) is over [wsgi] max_body (1024)"
            ),
            "{handler}: {}",
            site.log()
        );
        assert_eq!(text(&curl(&[&host.url("/hello")]).1), "Hello, World!");
        site.finish(host);
    }
}

#[test]
fn a_chunked_body_growing_past_max_body_raises_oserror_in_every_read_for_both_handlers() {
    for handler in ["simple", "threadpool"] {
        let site = testapp_with_max_body(handler);
        let host = site.start(&["--read-ahead", "100"]);
        let mut client = Client::connect(host.addr);
        for how in ["read", "readline", "readlines"] {
            // At the limit: all of it.
            client.send(
                format!("POST /raw/read-report/{how} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n").as_bytes(),
            );
            client.send(&[b'c'; 1024]);
            client.send(b"\r\n0\r\n\r\n");
            let r = client.response(false);
            assert_eq!(r.text(), "read 1024 bytes", "{handler} {how}");
            // One byte more: BodyTooLarge (an OSError), and again on the next read (never a
            // short b"").
            client.send(
                format!("POST /raw/read-report/{how} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(),
            );
            for _ in 0..5 {
                client.send(b"cd\r\n");
                client.send(&[b'c'; 205]);
                client.send(b"\r\n");
            }
            client.send(b"0\r\n\r\n");
            let r = client.response(false);
            assert_eq!(
                r.text(),
                "isapi_wsgi.BodyTooLarge (an OSError): the request body is larger than [wsgi] max_body (1024 bytes); the rest was not read; again: isapi_wsgi.BodyTooLarge (an OSError)",
                "{handler} {how}"
            );
            client = Client::connect(host.addr);
        }
        site.finish(host);
    }
}

#[test]
fn a_body_cut_short_by_the_client_raises_oserror_never_a_short_success() {
    use std::net::Shutdown;
    // isapi-host reports a cut-short body as IIS 4-6 documented: ReadClient TRUE with 0
    // bytes, which for a chunked body is also what its real end looks like.
    let chunked = &b"POST /raw/read-report HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"[..];
    let length =
        &b"POST /raw/read-report HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhello"[..];
    for handler in ["simple", "threadpool"] {
        for (body, request, expected) in [
            (
                "chunked",
                chunked,
                "isapi_wsgi.ClientDisconnected (an OSError): the client disconnected before the end of the chunked body (5 bytes received); again: isapi_wsgi.ClientDisconnected (an OSError)",
            ),
            (
                "content-length",
                length,
                "isapi_wsgi.ClientDisconnected (an OSError): the client disconnected before sending the whole body (5 of 100 bytes; 95 missing); again: isapi_wsgi.ClientDisconnected (an OSError)",
            ),
        ] {
            for how in ["shutdown", "close"] {
                let site = Site::new(
                    &format!("cut-{handler}-{body}-{how}"),
                    &format!(
                        "[python]\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\nhandler = {handler}\n"
                    ),
                );
                // The host calls the extension once it has the first 5 bytes.
                let host = site.start(&["--read-ahead", "5"]);
                let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
                stream.write_all(request).unwrap();
                if how == "shutdown" {
                    stream.shutdown(Shutdown::Write).unwrap();
                } else {
                    drop(stream);
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                let report = loop {
                    let report = common::get(host.addr, "/raw/last-report").text();
                    if report != "nothing yet" || Instant::now() > deadline {
                        break report;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                assert_eq!(report, expected, "{handler}, {body}, {how}");
                site.finish(host);
            }
        }
    }
}

#[test]
fn wsgi_input_terminated_is_true_for_a_chunked_body_only() {
    let site = testapp();
    let host = site.start(&[]);
    let mut client = Client::connect(host.addr);
    client.send(b"POST /raw/input-terminated HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    assert_eq!(client.response(false).text(), "True, 3 bytes");
    // The next request on the same connection has a length: the key is absent again.
    client.send(b"POST /raw/input-terminated HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!(client.response(false).text(), "None, 2 bytes");
    client.send(b"GET /raw/input-terminated HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).text(), "None, 0 bytes");
    site.finish(host);
}

#[test]
fn with_continue_on_read_an_answer_given_without_reading_never_asks_for_the_body() {
    for handler in ["simple", "threadpool"] {
        let site = testapp_with_max_body(handler);
        let host = site.start(&["--continue-on-read"]);
        // The app reads: 100 Continue first, then the body is sent and echoed.
        let mut client = Client::connect(host.addr);
        client.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        let mut interim = [0u8; 25];
        std::io::Read::read_exact(&mut client.stream, &mut interim).unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{handler}");
        client.send(b"hello");
        let r = client.response(false);
        assert_eq!(
            (r.status, r.text()),
            (200, "hello".to_string()),
            "{handler}"
        );
        // Too large: the bridge's 413 is the first and only answer; no 100 Continue.
        for (path, expected) in [("/echo", "HTTP/1.1 413 "), ("/hello", "HTTP/1.1 200 ")] {
            let length = if path == "/echo" { 1 << 20 } else { 5 };
            let request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: {length}\r\n\r\n"
            );
            let data = until_the_server_closes(host.addr, request.as_bytes());
            let response = text(&data);
            assert!(
                response.starts_with(expected) && !response.contains("100 Continue"),
                "{handler} {path}: {response}"
            );
        }
        site.finish(host);
    }
}

/// A response known whole goes out in one HSE_REQ_VECTOR_SEND (headers and body together)
/// and the connection stays open for the next request: a one-item list, or an iterable
/// whose first piece is all of its Content-Length (Flask's and Django's responses), which
/// is not flushed either. A streamed one still sends its headers with
/// SEND_RESPONSE_HEADER_EX and its body with WriteClient. (The in-process tests' synthetic
/// server has no VECTOR_SEND: the same responses go out in two calls there, the path for a
/// server that refuses it.)
#[test]
fn a_response_known_whole_is_one_server_call_and_keeps_the_connection() {
    // The demo app (a one-item list), not the validator-wrapped testapp, whose wrapped
    // iterable has no length to know the body by.
    let hello = Site::new(
        "vector-send",
        &format!(
            "[python]\npath = {}/examples/hello\n[wsgi]\napp = hello:application\nlog = {{log}}\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    );
    let host = hello.start(&["--strict", "--trace"]);
    let mut client = Client::connect(host.addr);
    for _ in 0..2 {
        client.send(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
        let r = client.response(false);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"Hello, World!");
        assert_eq!(r.header("Content-Length"), Some("13"));
    }
    let out = host.stop().stderr;
    // testapp is wrapped in wsgiref's validator: its bodies are iterators, never lists.
    let host = testapp().start(&["--strict", "--trace"]);
    let mut client = Client::connect(host.addr);
    client.send(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = client.response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"one,two,three");
    // One piece of the declared length; then "123" of a declared 3 and "456789" after it.
    for (path, body) in [("/hello", &b"Hello, World!"[..]), ("/raw/long", b"123")] {
        client.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        let r = client.response(false);
        assert_eq!((r.status, &r.body[..]), (200, body), "{path}");
    }
    let streamed = host.stop().stderr;
    let calls = |out: &str, request: &str, what: &str| {
        out.lines()
            .filter(|l| l.starts_with(&format!("trace: #{request} ")) && l.contains(what))
            .count()
    };
    for request in ["1", "2"] {
        assert_eq!(calls(&out, request, "HSE_REQ_VECTOR_SEND"), 1, "{out}");
        assert_eq!(
            calls(&out, request, "HSE_REQ_SEND_RESPONSE_HEADER_EX"),
            0,
            "{out}"
        );
        assert_eq!(calls(&out, request, "connection kept alive"), 1, "{out}");
    }
    assert_eq!(
        calls(&streamed, "1", "HSE_REQ_VECTOR_SEND"),
        0,
        "{streamed}"
    );
    assert_eq!(
        calls(&streamed, "1", "HSE_REQ_SEND_RESPONSE_HEADER_EX"),
        1,
        "{streamed}"
    );
    for request in ["2", "3"] {
        assert_eq!(
            calls(&streamed, request, "HSE_REQ_VECTOR_SEND"),
            1,
            "{streamed}"
        );
        for other in [
            "HSE_REQ_SET_FLUSH_FLAG",
            "HSE_REQ_SEND_RESPONSE_HEADER_EX",
            "WriteClient",
        ] {
            assert_eq!(calls(&streamed, request, other), 0, "{other}: {streamed}");
        }
        assert_eq!(
            calls(&streamed, request, "connection kept alive"),
            1,
            "{streamed}"
        );
    }
}
