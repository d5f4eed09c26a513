//! The bridge end to end: the built `isapi_wsgi` library loaded by the real `isapi-host`
//! (`--strict`: any ISAPI contract violation fails the run), spoken to over real TCP by real
//! clients (curl, Python's http.client, raw sockets). The apps are tests/apps/*, wrapped in
//! wsgiref.validate.validator with warnings as errors; every run's log is checked for
//! validator complaints.
mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Site, curl, python};

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
    let (_, page, _) = curl(&["-c", jar, &host.url("/django/form")]);
    let page = text(&page);
    let token = page
        .split("value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("token");
    let form = format!("csrfmiddlewaretoken={token}&name=Ann+Lee");
    let (_, body, _) = curl(&["-b", jar, "--data", &form, &host.url("/django/form")]);
    assert_eq!(text(&body), "hello Ann Lee from a form");
    let (_, body, _) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data",
        "name=Eve",
        &host.url("/django/form"),
    ]);
    assert_eq!(
        text(&body),
        "403",
        "Django refuses a POST without the CSRF token"
    );
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
        for _ in 0..2 {
            let (ok, body, _) = curl(&["-i", &host.url("/")]);
            let response = text(&body);
            assert!(
                ok && response.starts_with("HTTP/1.1 500"),
                "{name}: {response}"
            );
            assert!(
                response.contains("The application failed to start"),
                "{name}: {response}"
            );
        }
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

#[test]
fn one_library_every_pyenv_python_through_the_host() {
    let output = Command::new("pyenv")
        .args(["versions", "--bare"])
        .output()
        .expect("pyenv");
    let versions: Vec<String> = text(&output.stdout)
        .lines()
        .map(|v| v.trim().to_string())
        .filter(|v| {
            v.split('.')
                .nth(1)
                .and_then(|m| m.parse::<u32>().ok())
                .is_some_and(|m| v.starts_with("3.") && m >= 8)
        })
        .collect();
    assert!(
        versions.iter().any(|v| v.starts_with("3.11.")),
        "{versions:?}"
    );
    for version in &versions {
        let prefix = text(
            &Command::new("pyenv")
                .args(["prefix", version])
                .output()
                .unwrap()
                .stdout,
        )
        .trim()
        .to_string();
        let site = Site::new(
            &format!("py{version}"),
            &format!(
                "[python]\nhome = {prefix}\npath = {{apps}}\n[wsgi]\napp = testapp:application\nlog = {{log}}\n"
            ),
        );
        let host = site.start(&[]);
        let minor = version.rsplit_once('.').unwrap().0;
        assert_eq!(
            text(&curl(&[&host.url("/version")]).1),
            minor,
            "{version}: {}",
            site.log()
        );
        let (_, body, _) = curl(&["--data-binary", "echo", &host.url("/echo")]);
        assert_eq!(text(&body), "echo");
        assert_eq!(text(&curl(&[&host.url("/stream")]).1), "one,two,three");
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
        // The application saw an OSError; the host keeps serving.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !site.log().contains("OSError") {
            assert!(
                std::time::Instant::now() < deadline,
                "{mode}: no OSError logged:\n{}",
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
