//! The whole bridge, from arbitrary server variables to the WSGI environ: the extension
//! (`HttpExtensionProc`) runs in-process on a synthetic ECB (tests/support/synthetic.rs),
//! with an embedded CPython started once, on the first input, serving
//! `fuzz/apps/environ_dump.py`, which answers with the environ's CGI entries.
//!
//! The input is the server variables' values, in the order of [`VARIABLES`], separated by
//! NUL (a byte no server variable holds); a variable past the input's end is one this
//! server does not have. Checked for every input: no panic or crash; the status line is
//! a valid HTTP status (`NNN reason`, 100..=599); for HEAD, the app's 200 with its
//! Content-Length and no body; otherwise the app's 200 arrives with every CGI
//! value a latin-1 string (the app raises otherwise) and PEP 3333's required keys; when
//! the raw URL (`HTTP_URL`) is a path (or, without one, the server's PATH_INFO is),
//! SCRIPT_NAME + PATH_INFO is its canonical form: each empty or starting with `/`, no `\`
//! and no `.`/`..` segment; every `HTTP_*` key is `HTTP_` and a header name from `ALL_RAW`
//! (or ALL_HTTP without it) in upper case with `-` as `_`, made of token characters, never
//! HTTP_CONTENT_TYPE/LENGTH; and each header of ALL_RAW with a valid name is there.
#![no_main]

#[path = "../../tests/support/synthetic.rs"]
mod synthetic;

use libfuzzer_sys::fuzz_target;

/// The server variables the input sets, in order.
const VARIABLES: &[&str] = &[
    "HTTP_URL",
    "ALL_RAW",
    "APPL_MD_PATH",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "REQUEST_METHOD",
    "HTTPS",
    "REMOTE_ADDR",
    "SERVER_PROTOCOL",
    "SERVER_NAME",
    "SERVER_PORT",
    "AUTH_TYPE",
    "REMOTE_USER",
    "PATH_TRANSLATED",
    "CONTENT_TYPE",
    "ALL_HTTP",
];

fn start() {
    synthetic::start_once("fuzz-environ", |dir| {
        let apps = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("apps");
        format!(
            "[python]\npath = {}\n{}[wsgi]\napp = environ_dump:application\nlog = {}\n",
            apps.display(),
            synthetic::python_home_line(),
            dir.join("environ.log").display()
        )
    });
}

/// The request the input describes, and the variables' values as the server holds them.
fn request(data: &[u8]) -> (synthetic::Request, Vec<Option<String>>) {
    let mut request = synthetic::Request::get("/");
    request.headers.clear();
    let mut parts = data.split(|&b| b == 0);
    let mut values = Vec::new();
    for &name in VARIABLES {
        // The synthetic server holds text; the bytes a client sends as latin-1 reach it
        // as UTF-8 here (the bridge reads the bytes either way).
        let value = parts
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        request = match &value {
            Some(value) => request.var(name, value),
            None => request.without(name),
        };
        values.push(value);
    }
    (request, values)
}

/// The app's answer: `NAME=hex` lines as (name, value bytes).
fn environ(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = std::str::from_utf8(body).expect("the app answers in ASCII");
    let byte = |pair: &[u8]| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
    text.lines()
        .map(|line| {
            let (name, hex) = line.split_once('=').expect("NAME=hex");
            (
                name.to_string(),
                hex.as_bytes().chunks(2).map(byte).collect(),
            )
        })
        .collect()
}

/// `HTTP_<NAME>` for a header name, or None for names the bridge must drop.
fn cgi_name(header: &[u8]) -> Option<String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^`|~".contains(&b);
    if header.is_empty() || !header.iter().all(|&b| token(b)) {
        return None;
    }
    let name = format!(
        "HTTP_{}",
        String::from_utf8_lossy(header)
            .to_ascii_uppercase()
            .replace('-', "_")
    );
    (name != "HTTP_CONTENT_TYPE" && name != "HTTP_CONTENT_LENGTH").then_some(name)
}

fn check_path(environ: &[(String, Vec<u8>)]) {
    let get = |key: &str| {
        environ
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (script, path_info) = (get("SCRIPT_NAME"), get("PATH_INFO"));
    for part in [&script, &path_info] {
        assert!(
            part.is_empty() || part.starts_with(b"/"),
            "{script:?} {path_info:?}"
        );
    }
    let path = [script.as_slice(), &path_info].concat();
    assert!(!path.contains(&b'\\'), "a backslash in {path:?}");
    assert!(
        !path.split(|&b| b == b'/').any(|s| s == b"." || s == b".."),
        "a dot-segment in {path:?}"
    );
}

fn check_headers(environ: &[(String, Vec<u8>)], raw: Option<&str>) {
    let keys: Vec<&str> = environ
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| k.starts_with("HTTP_"))
        .collect();
    for key in &keys {
        let name = key["HTTP_".len()..].replace('_', "-");
        assert_eq!(
            cgi_name(name.as_bytes()).as_deref(),
            Some(*key),
            "{key} is not a CGI header name"
        );
    }
    let Some(raw) = raw else { return };
    let sent: Vec<String> = raw
        .split('\n')
        .filter_map(|line| line.split_once(':'))
        .filter_map(|(name, _)| cgi_name(name.trim_ascii().as_bytes()))
        .collect();
    for key in &keys {
        assert!(sent.iter().any(|s| s == key), "{key} was not sent: {raw:?}");
    }
    for name in &sent {
        assert!(
            keys.contains(&name.as_str()),
            "{name} was sent but is missing"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    start();
    let (request, values) = request(data);
    let reply = synthetic::send(&request);
    let code = reply.code();
    assert!(
        (100..=599).contains(&code) && reply.status.as_bytes().get(3) == Some(&b' '),
        "not an HTTP status: {:?}",
        reply.status
    );
    assert_eq!(code, 200, "{}: {}", reply.status, reply.text());
    if values[6].as_deref() == Some("HEAD") {
        // A response to HEAD has the app's headers and no body (RFC 9110, 9.3.2), so the
        // environ the app wrote is not there to check.
        assert!(reply.raw_body.is_empty(), "a body for HEAD: {:?}", reply.raw_body);
        assert!(
            reply.header("Content-Length").is_some(),
            "HEAD lost the app's Content-Length: {:?}",
            reply.headers
        );
        return;
    }
    let environ = environ(&reply.body());
    // PEP 3333's required CGI keys (SCRIPT_NAME and PATH_INFO may be empty, not absent).
    for key in [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "PATH_INFO",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
    ] {
        assert!(
            environ.iter().any(|(k, _)| k == key),
            "no {key} in the environ"
        );
    }
    // The path comes from the raw URL when it is one, else from the server's PATH_INFO.
    let path = match values[0].as_deref() {
        Some(url) if url.starts_with('/') => Some(url),
        _ => values[4].as_deref(),
    };
    if path.is_some_and(|path| path.starts_with('/')) {
        check_path(&environ);
    }
    check_headers(&environ, values[1].as_deref());
});
