//! The paths an application sees, as one table: every site shape × every kind of path ×
//! mounts, through the real `isapi-host --strict` serving the built library.
//!
//! Site shapes (one host each, many requests on one keep-alive connection): the site root
//! or a nested virtual directory (`--vdir /Deep/Nested`, asked for in another letter case
//! than configured), a wildcard (`*`) or an extension mapping (`.wsgi`, with and without
//! `allowPathInfo`), and APPL_MD_PATH as the host writes it (`/LM/W3SVC/1/ROOT/Deep/Nested`)
//! or in another case (`--appl-md-path`, `Root`, `root/DEEP/nested`: IIS writes what was
//! configured). Paths: ASCII, UTF-8 (percent-encoded; isapi-host answers 400 to bytes
//! beyond ASCII in the request line, so raw UTF-8 is not in the table), percent-encoded
//! delimiters (`%20`, `%3F`, `%2F`, `%5C`), dot-segments; under a mount, under the longer of
//! two nested mounts, beside one (`/blogger`), and out of one by `..`. Every application
//! (tests/apps/mounts_app.py) answers with its name, SCRIPT_NAME, PATH_INFO, QUERY_STRING
//! and what `wsgiref.util.request_uri(environ)` rebuilds from them; each row states all of
//! it. The `/blog/admin` mount runs on the threadpool handler, the others on the simple one:
//! the row's application says which OS thread ran it.
mod common;

use common::{Site, python};

const INI: &str = "[python]\npath = {apps}\n[wsgi]\napp = mounts_app:root\nlog = {log}\nthreads = 2\n\
    [mount /blog]\napp = mounts_app:blog\n\
    [mount /blog/admin]\napp = mounts_app:admin\nhandler = threadpool\n\
    [mount /café]\napp = mounts_app:cafe\n";

/// One site shape: the host's options, and what a client puts in front of an
/// application-relative path (which is also SCRIPT_NAME's start, in the client's bytes).
struct Shape {
    name: &'static str,
    args: &'static [&'static str],
    base: &'static str,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "root, *, ROOT",
        args: &[],
        base: "",
    },
    Shape {
        name: "root, *, Root",
        args: &["--appl-md-path", "/LM/W3SVC/1/Root"],
        base: "",
    },
    Shape {
        name: "nested vdir, *, ROOT",
        args: &["--vdir", "/Deep/Nested"],
        base: "/deep/NESTED",
    },
    Shape {
        name: "nested vdir, *, root/DEEP/nested",
        args: &[
            "--vdir",
            "/Deep/Nested",
            "--appl-md-path",
            "/LM/W3SVC/1/root/DEEP/nested",
        ],
        base: "/Deep/Nested",
    },
    Shape {
        name: "root, .wsgi, ROOT",
        args: &["--script-map", ".wsgi"],
        base: "/app.wsgi",
    },
    Shape {
        name: "root, .wsgi + allowPathInfo, Root",
        args: &[
            "--script-map",
            ".wsgi",
            "--allow-path-info",
            "--appl-md-path",
            "/LM/W3SVC/1/Root",
        ],
        base: "/app.wsgi",
    },
    Shape {
        name: "nested vdir, .wsgi + allowPathInfo, ROOT",
        args: &[
            "--vdir",
            "/Deep/Nested",
            "--script-map",
            ".wsgi",
            "--allow-path-info",
        ],
        base: "/deep/nested/app.wsgi",
    },
    Shape {
        name: "nested vdir, .wsgi, ROOT/deep/nested",
        args: &[
            "--vdir",
            "/Deep/Nested",
            "--script-map",
            ".wsgi",
            "--appl-md-path",
            "/LM/W3SVC/1/ROOT/deep/nested",
        ],
        base: "/Deep/NESTED/run.wsgi",
    },
];

/// One request below the application, and what must answer it.
struct Row {
    /// The target after the shape's base, exactly as sent (raw bytes allowed).
    target: &'static str,
    /// The application that answers.
    app: &'static str,
    /// What SCRIPT_NAME has after the base: the mount, as the client wrote it (decoded).
    mount: &'static str,
    /// PATH_INFO (decoded, canonical).
    path_info: &'static str,
    /// The path wsgiref.util.request_uri rebuilds after the base (without the query).
    uri: &'static str,
}

const fn row(
    target: &'static str,
    app: &'static str,
    mount: &'static str,
    path_info: &'static str,
    uri: &'static str,
) -> Row {
    Row {
        target,
        app,
        mount,
        path_info,
        uri,
    }
}

const ROWS: &[Row] = &[
    // Under no mount: ASCII, UTF-8 (percent-encoded and raw), encoded delimiters, dots.
    row("/", "root", "", "/", "/"),
    row(
        "/hello/world?a=1&b=two",
        "root",
        "",
        "/hello/world",
        "/hello/world",
    ),
    row("/hello?", "root", "", "/hello", "/hello"),
    row(
        "/na%C3%AFve/%E2%82%AC",
        "root",
        "",
        "/naïve/€",
        "/na%C3%AFve/%E2%82%AC",
    ),
    row(
        "/%C3%BCber/x?q=%C3%BC",
        "root",
        "",
        "/über/x",
        "/%C3%BCber/x",
    ),
    row(
        "/a%20b/c%3Fd?q=%20x%2F",
        "root",
        "",
        "/a b/c?d",
        "/a%20b/c%3Fd",
    ),
    row("/p%2Fq%5Cr", "root", "", "/p/q/r", "/p/q/r"),
    row("/x/./y/../z/", "root", "", "/x/z/", "/x/z/"),
    row("/blogger", "root", "", "/blogger", "/blogger"),
    // Under a mount: whole segments, any ASCII case, the longest mount.
    row("/blog", "blog", "/blog", "", "/blog"),
    row("/blog/", "blog", "/blog", "/", "/blog/"),
    row(
        "/Blog/post/1?x=y",
        "blog",
        "/Blog",
        "/post/1",
        "/Blog/post/1",
    ),
    row(
        "/blog/administrator",
        "blog",
        "/blog",
        "/administrator",
        "/blog/administrator",
    ),
    row(
        "/blog/admin/users",
        "admin",
        "/blog/admin",
        "/users",
        "/blog/admin/users",
    ),
    row("/blog/ADMIN", "admin", "/blog/ADMIN", "", "/blog/ADMIN"),
    row(
        "/caf%C3%A9/menu",
        "cafe",
        "/café",
        "/menu",
        "/caf%C3%A9/menu",
    ),
    row(
        "/CAF%C3%A9/menu?day=1",
        "cafe",
        "/CAFé",
        "/menu",
        "/CAF%C3%A9/menu",
    ),
    row(
        "/blog/na%C3%AFve",
        "blog",
        "/blog",
        "/naïve",
        "/blog/na%C3%AFve",
    ),
    // The canonical path decides: %2F is a slash, dot-segments lead into and out of mounts.
    row("/blog%2Fpost", "blog", "/blog", "/post", "/blog/post"),
    row("/blog/./post", "blog", "/blog", "/post", "/blog/post"),
    row("/x/../blog/post", "blog", "/blog", "/post", "/blog/post"),
    row("/blog/../admin", "root", "", "/admin", "/admin"),
    row("/blog/%2E%2E/admin", "root", "", "/admin", "/admin"),
    row(
        "/blog/x/../../blog/admin/y",
        "admin",
        "/blog/admin",
        "/y",
        "/blog/admin/y",
    ),
];

/// A str as the environ holds it: each UTF-8 byte of `text` as one latin-1 character.
fn latin1(text: &str) -> String {
    text.bytes().map(char::from).collect()
}

/// Sends every row's request for `shape` on one connection; returns one line per row:
/// status, then the answer's fields, tab-separated.
fn ask(port: u16, shape: &Shape) -> Vec<String> {
    let script = r#"
import http.client, json, socket, sys
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port), timeout=60)
for target in json.loads(sys.argv[2]):
    raw = target.encode("utf-8")
    sock.sendall(b"GET " + raw + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port)
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    if (response.getheader("Connection") or "").lower() == "close":
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    if response.status != 200:
        print("%d\t%r" % (response.status, body[:300]))
        continue
    seen = json.loads(body)
    fields = [seen[k] for k in ("app", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "request_uri", "thread")]
    sys.stdout.buffer.write(("200\t" + "\t".join(fields) + "\n").encode("utf-8"))
"#;
    let targets: Vec<String> = ROWS
        .iter()
        .map(|row| format!("\"{}{}\"", shape.base, row.target))
        .collect();
    let targets = format!("[{}]", targets.join(","));
    python(script, &[&port.to_string(), &targets])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The line [`ask`] must print for `row` under `shape`.
fn expected(port: u16, shape: &Shape, row: &Row) -> String {
    let query = row.target.split_once('?').map_or("", |(_, q)| q);
    let script_name = latin1(&format!("{}{}", shape.base, row.mount));
    let uri = format!(
        "http://127.0.0.1:{port}{}{}{}",
        shape.base,
        row.uri,
        if query.is_empty() {
            String::new()
        } else {
            format!("?{}", latin1(query))
        }
    );
    format!(
        "200\t{}\t{script_name}\t{}\t{}\t{uri}",
        row.app,
        latin1(row.path_info),
        latin1(query)
    )
}

#[test]
fn script_name_path_info_and_request_uri_for_every_shape_path_and_mount() {
    let mut wrong = Vec::new();
    for shape in SHAPES {
        let site = Site::new("paths", INI);
        let host = site.start(shape.args);
        let port = host.addr.port();
        let answers = ask(port, shape);
        assert_eq!(answers.len(), ROWS.len(), "{}: {answers:?}", shape.name);
        for (row, answer) in ROWS.iter().zip(&answers) {
            // The last field is the OS thread: the threadpool's workers for /blog/admin.
            let (answer, thread) = answer.rsplit_once('\t').unwrap_or((answer, ""));
            let on_worker = thread.starts_with("wsgi-worker");
            let expected = expected(port, shape, row);
            if answer != expected || on_worker != (row.app == "admin") {
                wrong.push(format!(
                    "{}: GET {}{}\n  got      {answer:?} on thread {thread:?}\n  expected {expected:?}",
                    shape.name, shape.base, row.target
                ));
            }
        }
        site.finish(host);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
