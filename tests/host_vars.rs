//! Every server variable for each site model the host offers (wildcard and file-extension
//! script maps, root and virtual directory, allowPathInfo, HTTPS, Windows auth), read by
//! the test extension through GetServerVariable and fetched with Python's http.client.
mod common;

use common::{Host, python, test_extension};
use std::collections::HashMap;

/// GET `path` with extra headers via http.client; returns the /vars dump as a map.
fn vars(host: &Host, path: &str, headers: &[(&str, &str)]) -> HashMap<String, String> {
    let script = r#"
import http.client, sys, json
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
c.putrequest("GET", sys.argv[2], skip_accept_encoding=True)
for h in json.loads(sys.argv[3]):
    c.putheader(h[0], h[1])
c.endheaders()
r = c.getresponse()
assert r.status == 200, r.status
sys.stdout.write(r.read().decode("utf-8"))
"#;
    let headers = format!(
        "[{}]",
        headers
            .iter()
            .map(|(n, v)| format!("[\"{n}\", \"{v}\"]"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = python(script, &[&host.addr.port().to_string(), path, &headers]);
    let mut map = HashMap::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('=') {
            map.insert(k.to_string(), v.to_string());
        } else if let Some((k, e)) = line.split_once('!') {
            map.insert(k.to_string(), format!("!{e}"));
        }
    }
    map
}

fn check(map: &HashMap<String, String>, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(
            map.get(*name).map(String::as_str),
            Some(*value),
            "{name} in {map:#?}"
        );
    }
    for (k, v) in map {
        if k.starts_with("check.") {
            assert_eq!(v, "ok", "{k}");
        }
    }
}

fn stop_clean(host: Host) {
    let stopped = host.stop();
    assert!(stopped.status.success(), "{}", stopped.stderr);
}

#[test]
fn wildcard_map_at_the_site_root() {
    let host = Host::start(
        &test_extension(),
        &["--strict", "--physical-path", "/srv/site"],
    );
    let port = host.addr.port().to_string();
    let m = vars(
        &host,
        "/a/b%20c/vars?x=1&y=%41",
        &[("X-Custom-Thing", "v1"), ("Content-Type", "text/x")],
    );
    let sep = std::path::MAIN_SEPARATOR;
    check(
        &m,
        &[
            ("URL", "/a/b c/vars"),
            ("SCRIPT_NAME", "/a/b c/vars"),
            ("PATH_INFO", "/a/b c/vars"),
            ("UNICODE_PATH_INFO", "/a/b c/vars"),
            (
                "PATH_TRANSLATED",
                &format!("/srv/site{sep}a{sep}b c{sep}vars"),
            ),
            ("QUERY_STRING", "x=1&y=%41"),
            ("HTTP_URL", "/a/b%20c/vars?x=1&y=%41"),
            ("UNENCODED_URL", "/a/b%20c/vars?x=1&y=%41"),
            ("APPL_MD_PATH", "/LM/W3SVC/1/ROOT"),
            ("APPL_PHYSICAL_PATH", &format!("/srv/site{sep}")),
            ("INSTANCE_ID", "1"),
            ("INSTANCE_META_PATH", "/LM/W3SVC/1"),
            ("REQUEST_METHOD", "GET"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("SERVER_SOFTWARE", "Microsoft-IIS/10.0"),
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("SERVER_NAME", "127.0.0.1"),
            ("SERVER_PORT", &port),
            ("SERVER_PORT_SECURE", "0"),
            ("HTTPS", "off"),
            ("HTTPS_KEYSIZE", ""),
            ("REMOTE_ADDR", "127.0.0.1"),
            ("REMOTE_HOST", "127.0.0.1"),
            ("LOCAL_ADDR", "127.0.0.1"),
            ("AUTH_TYPE", ""),
            ("AUTH_USER", ""),
            ("REMOTE_USER", ""),
            ("LOGON_USER", ""),
            ("CONTENT_LENGTH", "0"),
            ("CONTENT_TYPE", "text/x"),
            ("ecb.lpszContentType", "text/x"),
            ("ecb.lpszMethod", "GET"),
            ("ecb.lpszQueryString", "x=1&y=%41"),
            ("ecb.lpszPathInfo", "/a/b c/vars"),
            ("ecb.cbSize", "192"),
            ("ecb.dwVersion", "0x80000"),
            ("ecb.cbTotalBytes", "0"),
            ("ecb.cbAvailable", "0"),
            (
                "ALL_HTTP",
                &format!(
                    "HTTP_HOST:127.0.0.1:{port}\\nHTTP_X_CUSTOM_THING:v1\\nHTTP_CONTENT_TYPE:text/x\\n"
                ),
            ),
            (
                "ALL_RAW",
                &format!(
                    "Host: 127.0.0.1:{port}\\r\\nX-Custom-Thing: v1\\r\\nContent-Type: text/x\\r\\n"
                ),
            ),
            ("HTTP_HOST", &format!("127.0.0.1:{port}")),
            ("HEADER_Host", &format!("127.0.0.1:{port}")),
            ("HTTP_USER_AGENT", "!1413"),
            ("HTTP_VERSION", "HTTP/1.1"),
        ],
    );
    assert!(m["REMOTE_PORT"].parse::<u16>().is_ok());
    stop_clean(host);
}

#[test]
fn wildcard_map_in_a_virtual_directory() {
    let host = Host::start(&test_extension(), &["--strict", "--vdir", "/app"]);
    let m = vars(&host, "/app/x/vars", &[]);
    check(
        &m,
        &[
            ("APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app"),
            ("SCRIPT_NAME", "/app/x/vars"),
            ("PATH_INFO", "/app/x/vars"),
            ("URL", "/app/x/vars"),
        ],
    );
    assert_eq!(common::get(host.addr, "/other/vars").status, 404);
    assert_eq!(common::get(host.addr, "/application").status, 404);
    stop_clean(host);
}

#[test]
fn extension_map_with_and_without_allow_path_info() {
    let host = Host::start(
        &test_extension(),
        &["--strict", "--vdir", "/app", "--script-map", ".tst"],
    );
    let m = vars(&host, "/app/run.tst/a/b?q", &[]);
    check(
        &m,
        &[
            ("SCRIPT_NAME", "/app/run.tst"),
            ("URL", "/app/run.tst"),
            ("PATH_INFO", "/app/run.tst/a/b"),
            ("ecb.lpszPathInfo", "/app/run.tst/a/b"),
            ("APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app"),
            ("QUERY_STRING", "q"),
        ],
    );
    assert_eq!(common::get(host.addr, "/app/run.other/x").status, 404);
    stop_clean(host);

    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--vdir",
            "/app",
            "--script-map",
            "*.tst",
            "--allow-path-info",
        ],
    );
    let m = vars(&host, "/app/run.tst/a/b", &[]);
    check(
        &m,
        &[
            ("SCRIPT_NAME", "/app/run.tst"),
            ("URL", "/app/run.tst"),
            ("PATH_INFO", "/a/b"),
        ],
    );
    stop_clean(host);
}

#[test]
fn https_windows_auth_and_server_name() {
    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--https",
            "--user",
            "CORP\\alice",
            "--server-name",
            "www.example.com",
            "--all-http-eol",
            "crlf",
        ],
    );
    let m = vars(
        &host,
        "/vars",
        &[("My_Header", "u"), ("X-A", "1"), ("x-a", "2")],
    );
    check(
        &m,
        &[
            ("HTTPS", "on"),
            ("SERVER_PORT_SECURE", "1"),
            ("HTTPS_KEYSIZE", "256"),
            ("HTTPS_SECRETKEYSIZE", "2048"),
            ("HTTPS_SERVER_SUBJECT", "CN=www.example.com"),
            ("SERVER_NAME", "www.example.com"),
            ("AUTH_TYPE", "Negotiate"),
            ("AUTH_USER", "CORP\\\\alice"),
            ("REMOTE_USER", "CORP\\\\alice"),
            ("LOGON_USER", "CORP\\\\alice"),
            ("UNMAPPED_REMOTE_USER", "CORP\\\\alice"),
            ("AUTH_PASSWORD", ""),
        ],
    );
    assert!(
        m["ALL_HTTP"].contains("HTTP_X_A:1\\r\\nHTTP_X_A:2\\r\\n"),
        "{}",
        m["ALL_HTTP"]
    );
    assert!(!m["ALL_HTTP"].contains("MY_HEADER"), "{}", m["ALL_HTTP"]);
    assert!(
        m["CACHE_URL"].starts_with("https://www.example.com:"),
        "{}",
        m["CACHE_URL"]
    );
    let one = |name: &str| {
        let request = format!(
            "GET /var?{name} HTTP/1.1\r\nHost: h\r\nMy_Header: u\r\nConnection: close\r\n\r\n"
        );
        let data = common::raw(host.addr, request.as_bytes());
        common::parse_response(&data, false).unwrap().0.text()
    };
    assert_eq!(one("HEADER_My_Header"), "u");
    assert_eq!(one("HEADER_MY_HEADER"), "u"); // names compare case-insensitively
    assert_eq!(one("HTTP_MY_HEADER"), "error 1413"); // '_' in the name: unreachable via HTTP_
    stop_clean(host);
}

#[test]
fn unicode_paths_and_the_ansi_code_page() {
    let host = Host::start(&test_extension(), &["--strict"]);
    let m = vars(&host, "/caf%C3%A9/%E2%82%AC/vars", &[]);
    // Narrow variables are in the (Latin-1 modelled) ANSI code page, where € is not; the
    // UNICODE_ forms keep everything (the extension prints them as escaped UTF-8).
    let unicode = "/caf\\xc3\\xa9/\\xe2\\x82\\xac/vars";
    check(
        &m,
        &[
            ("PATH_INFO", "/caf\\xe9/?/vars"),
            ("UNICODE_PATH_INFO", unicode),
            ("UNICODE_URL", unicode),
        ],
    );
    check(&m, &[("HTTP_URL", "/caf%C3%A9/%E2%82%AC/vars")]);
    stop_clean(host);
}

#[test]
fn ecb_version_and_all_http_without_content_headers() {
    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--ecb-version",
            "7.5",
            "--all-http-omit-content",
        ],
    );
    let port = host.addr.port();
    let m = vars(&host, "/vars", &[("Content-Type", "text/x")]);
    check(
        &m,
        &[
            ("ecb.dwVersion", "0x70005"),
            ("ALL_HTTP", &format!("HTTP_HOST:127.0.0.1:{port}\\n")),
            ("CONTENT_TYPE", "text/x"),
        ],
    );
    stop_clean(host);
}
