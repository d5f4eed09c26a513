//! Every server variable for each site model the host offers (wildcard and file-extension
//! script maps, root and virtual directory, allowPathInfo, HTTPS, Windows auth), read by
//! the test extension through GetServerVariable and fetched with Python's http.client.
//!
//! Each test states the whole expected table ([`Expected`]): every variable the extension
//! prints must be listed with its exact value, and every `UNICODE_` twin must equal its
//! narrow form unless the test gives it separately (non-ASCII paths), so a variable the
//! host adds or changes cannot go unchecked. The values follow Microsoft's "IIS Server
//! Variables" reference and docs/host.md (site model, fixed values).
mod common;

use common::{Host, python, test_extension};
use std::collections::{BTreeMap, HashMap};

/// GET `path` with extra headers via http.client; returns the /vars dump as a map, plus
/// `client.port` (the client's own port, which REMOTE_PORT must name).
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
sys.stdout.write("client.port=%d\n" % c.sock.getsockname()[1])
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

/// A value as the test extension prints it (`\` doubled; CR and LF as `\r`, `\n`).
fn shown(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// `dir` + the URL path's segments, with the OS's separator (the host's PATH_TRANSLATED).
fn physical(dir: &str, url_path: &str) -> String {
    let sep = std::path::MAIN_SEPARATOR.to_string();
    let mut out = dir.to_string();
    for segment in url_path.split('/').filter(|s| !s.is_empty()) {
        out.push_str(&sep);
        out.push_str(segment);
    }
    out
}

/// The whole table of variables one request must see.
struct Expected(BTreeMap<String, String>);

impl Expected {
    /// An anonymous plain-HTTP request on 127.0.0.1:`port` for `target` (raw, as sent),
    /// to an application in `vdir` whose physical directory is `dir`, with no body.
    fn plain(port: u16, target: &str, vdir: &str, dir: &str) -> Expected {
        let sep = std::path::MAIN_SEPARATOR;
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let md_path = if vdir == "/" {
            "/LM/W3SVC/1/ROOT".to_string()
        } else {
            format!("/LM/W3SVC/1/ROOT{vdir}")
        };
        Expected(BTreeMap::new())
            .set("APPL_MD_PATH", &md_path)
            .set("APPL_PHYSICAL_PATH", &format!("{dir}{sep}"))
            .set("DOCUMENT_ROOT", dir)
            // Fixed values (docs/host.md § The site model).
            .set("APP_POOL_ID", "DefaultAppPool")
            .set("INSTANCE_ID", "1")
            .set("INSTANCE_META_PATH", "/LM/W3SVC/1")
            .set("INSTANCE_NAME", "DEFAULT WEB SITE")
            .set("GATEWAY_INTERFACE", "CGI/1.1")
            .set("MANAGED_PIPELINE_MODE", "Integrated")
            .set("SERVER_SOFTWARE", "Microsoft-IIS/10.0")
            // Anonymous, plain HTTP: no user, no TLS, no client certificate.
            .set("AUTH_TYPE", "")
            .set("AUTH_USER", "")
            .set("AUTH_PASSWORD", "")
            .set("REMOTE_USER", "")
            .set("LOGON_USER", "")
            .set("UNMAPPED_REMOTE_USER", "")
            .set("HTTPS", "off")
            .set("SERVER_PORT_SECURE", "0")
            .set("HTTPS_KEYSIZE", "")
            .set("HTTPS_SECRETKEYSIZE", "")
            .set("HTTPS_SERVER_ISSUER", "")
            .set("HTTPS_SERVER_SUBJECT", "")
            .set("CERT_COOKIE", "")
            .set("CERT_FLAGS", "")
            .set("CERT_ISSUER", "")
            .set("CERT_KEYSIZE", "")
            .set("CERT_SECRETKEYSIZE", "")
            .set("CERT_SERIALNUMBER", "")
            .set("CERT_SERVER_ISSUER", "")
            .set("CERT_SERVER_SUBJECT", "")
            .set("CERT_SUBJECT", "")
            // The connection.
            .set("SERVER_NAME", "127.0.0.1")
            .set("SERVER_PORT", &port.to_string())
            .set("SERVER_ADDR", "127.0.0.1")
            .set("LOCAL_ADDR", "127.0.0.1")
            .set("REMOTE_ADDR", "127.0.0.1")
            .set("REMOTE_HOST", "127.0.0.1")
            .set("CACHE_URL", &format!("http://127.0.0.1:{port}{target}"))
            // The request line.
            .set("REQUEST_METHOD", "GET")
            .set("HTTP_METHOD", "GET")
            .set("SERVER_PROTOCOL", "HTTP/1.1")
            .set("HTTP_VERSION", "HTTP/1.1")
            .set("HTTP_URL", target)
            .set("UNENCODED_URL", target)
            .set("REQUEST_URI", target)
            .set("QUERY_STRING", query)
            // Headers: only Host was sent.
            .set("HTTP_HOST", &format!("127.0.0.1:{port}"))
            .set("HEADER_Host", &format!("127.0.0.1:{port}"))
            .set("HTTP_USER_AGENT", "!1413")
            .set("ALL_HTTP", &format!("HTTP_HOST:127.0.0.1:{port}\n"))
            .set("ALL_RAW", &format!("Host: 127.0.0.1:{port}\r\n"))
            .set("CONTENT_LENGTH", "0")
            .set("CONTENT_TYPE", "")
            // The ECB.
            .set("ecb.cbSize", "192")
            .set("ecb.dwVersion", "0x80000")
            .set("ecb.lpszMethod", "GET")
            .set("ecb.lpszQueryString", query)
            .set("ecb.cbTotalBytes", "0")
            .set("ecb.cbAvailable", "0")
            .set("ecb.lpszContentType", "")
    }

    /// Sets (or replaces) one expected value, given as the plain text.
    fn set(mut self, name: &str, value: &str) -> Expected {
        self.0.insert(name.to_string(), shown(value));
        self
    }

    /// Sets a value given exactly as the extension prints it (already escaped).
    fn set_shown(mut self, name: &str, printed: &str) -> Expected {
        self.0.insert(name.to_string(), printed.to_string());
        self
    }

    /// The paths IIS derives from the mapping: SCRIPT_NAME, PATH_INFO (also the ECB's
    /// lpszPathInfo) and URL; PATH_TRANSLATED (also REQUEST_FILENAME and the ECB's
    /// lpszPathTranslated) maps PATH_INFO below `dir`; SCRIPT_FILENAME and
    /// SCRIPT_TRANSLATED map SCRIPT_NAME (the latter `\\?\`-prefixed on Windows).
    fn paths(
        self,
        vdir: &str,
        dir: &str,
        script_name: &str,
        path_info: &str,
        url: &str,
    ) -> Expected {
        let below = |p: &str| {
            if vdir == "/" {
                p.to_string()
            } else {
                p.strip_prefix(vdir).unwrap_or(p).to_string()
            }
        };
        let translated = physical(dir, &below(path_info));
        let script_file = physical(dir, &below(script_name));
        let script_translated = if cfg!(windows) {
            format!("\\\\?\\{script_file}")
        } else {
            script_file.clone()
        };
        self.set("SCRIPT_NAME", script_name)
            .set("PATH_INFO", path_info)
            .set("ecb.lpszPathInfo", path_info)
            .set("URL", url)
            .set("PATH_TRANSLATED", &translated)
            .set("REQUEST_FILENAME", &translated)
            .set("ecb.lpszPathTranslated", &translated)
            .set("SCRIPT_FILENAME", &script_file)
            .set("SCRIPT_TRANSLATED", &script_translated)
    }

    /// Asserts the whole table: each expected value; each `UNICODE_` twin equal to its
    /// explicit entry, else to its narrow form (which must then be ASCII); REMOTE_PORT the
    /// client's port; every buffer-protocol check ok; and nothing printed left unchecked.
    fn check(&self, map: &HashMap<String, String>) {
        let mut problems = Vec::new();
        for (name, value) in &self.0 {
            if name.starts_with("UNICODE_") {
                continue;
            }
            if map.get(name) != Some(value) {
                problems.push(format!(
                    "{name}: expected {value:?}, got {:?}",
                    map.get(name)
                ));
            }
        }
        for (key, value) in map {
            if key == "REMOTE_PORT" || key == "UNICODE_REMOTE_PORT" {
                if Some(value) != map.get("client.port") {
                    problems.push(format!(
                        "{key} {value:?}, but the client's port is {:?}",
                        map.get("client.port")
                    ));
                }
            } else if let Some(base) = key.strip_prefix("UNICODE_") {
                let expected = match (self.0.get(key), self.0.get(base)) {
                    (Some(v), _) => v.clone(),
                    (None, Some(v)) if !v.contains("\\x") => v.clone(),
                    (None, Some(v)) => {
                        problems.push(format!("{key}: {base} is not ASCII ({v:?}): give it"));
                        continue;
                    }
                    (None, None) => {
                        problems.push(format!("{key}: not expected"));
                        continue;
                    }
                };
                if *value != expected {
                    problems.push(format!("{key}: expected {expected:?}, got {value:?}"));
                }
            } else if key.starts_with("check.") {
                if value != "ok" {
                    problems.push(format!("{key}: {value}"));
                }
            } else if key != "client.port" && !self.0.contains_key(key) {
                problems.push(format!("{key}={value:?} is printed but not checked"));
            }
        }
        assert!(map.contains_key("client.port"), "{map:#?}");
        assert!(
            problems.is_empty(),
            "{} problem(s):\n{}",
            problems.len(),
            problems.join("\n")
        );
    }
}

fn stop_clean(host: Host) {
    host.stop().assert_clean();
}

#[test]
fn wildcard_map_at_the_site_root() {
    let host = Host::start(
        &test_extension(),
        &["--strict", "--physical-path", "/srv/site"],
    );
    let port = host.addr.port();
    let m = vars(
        &host,
        "/a/b%20c/vars?x=1&y=%41",
        &[("X-Custom-Thing", "v1"), ("Content-Type", "text/x")],
    );
    // facts §2.4, wildcard at the root: SCRIPT_NAME == PATH_INFO == URL == the whole path.
    Expected::plain(port, "/a/b%20c/vars?x=1&y=%41", "/", "/srv/site")
        .paths(
            "/",
            "/srv/site",
            "/a/b c/vars",
            "/a/b c/vars",
            "/a/b c/vars",
        )
        .set("CONTENT_TYPE", "text/x")
        .set("ecb.lpszContentType", "text/x")
        .set(
            "ALL_HTTP",
            &format!(
                "HTTP_HOST:127.0.0.1:{port}\nHTTP_X_CUSTOM_THING:v1\nHTTP_CONTENT_TYPE:text/x\n"
            ),
        )
        .set(
            "ALL_RAW",
            &format!("Host: 127.0.0.1:{port}\r\nX-Custom-Thing: v1\r\nContent-Type: text/x\r\n"),
        )
        .check(&m);
    stop_clean(host);
}

#[test]
fn wildcard_map_in_a_virtual_directory() {
    let host = Host::start(
        &test_extension(),
        &["--strict", "--vdir", "/app", "--physical-path", "/srv/app"],
    );
    let m = vars(&host, "/app/x/vars", &[]);
    // facts §2.4, wildcard in app /app: the vdir stays in SCRIPT_NAME and PATH_INFO;
    // APPL_MD_PATH names the application; the physical path maps the part below the vdir.
    Expected::plain(host.addr.port(), "/app/x/vars", "/app", "/srv/app")
        .paths(
            "/app",
            "/srv/app",
            "/app/x/vars",
            "/app/x/vars",
            "/app/x/vars",
        )
        .check(&m);
    assert_eq!(common::get(host.addr, "/other/vars").status, 404);
    assert_eq!(common::get(host.addr, "/application").status, 404);
    stop_clean(host);
}

#[test]
fn extension_map_with_and_without_allow_path_info() {
    let app = ["--strict", "--vdir", "/app", "--physical-path", "/srv/app"];
    let host = Host::start(
        &test_extension(),
        &[&app[..], &["--script-map", ".tst"]].concat(),
    );
    let m = vars(&host, "/app/run.tst/a/b?q", &[]);
    // facts §2.4, extension map in app /app, allowPathInfo=false: URL and SCRIPT_NAME end
    // with the script, PATH_INFO is the whole path (and PATH_TRANSLATED follows it).
    Expected::plain(host.addr.port(), "/app/run.tst/a/b?q", "/app", "/srv/app")
        .paths(
            "/app",
            "/srv/app",
            "/app/run.tst",
            "/app/run.tst/a/b",
            "/app/run.tst",
        )
        .check(&m);
    assert_eq!(common::get(host.addr, "/app/run.other/x").status, 404);
    stop_clean(host);

    let host = Host::start(
        &test_extension(),
        &[&app[..], &["--script-map", "*.tst", "--allow-path-info"]].concat(),
    );
    let m = vars(&host, "/app/run.tst/a/b", &[]);
    // allowPathInfo=true: PATH_INFO is only what follows the script, and PATH_TRANSLATED
    // is derived from it (the reason the docs warn that ASP breaks).
    Expected::plain(host.addr.port(), "/app/run.tst/a/b", "/app", "/srv/app")
        .paths("/app", "/srv/app", "/app/run.tst", "/a/b", "/app/run.tst")
        .check(&m);
    stop_clean(host);
}

#[test]
fn extension_map_at_the_site_root() {
    let host = Host::start(
        &test_extension(),
        &[
            "--strict",
            "--script-map",
            ".tst",
            "--physical-path",
            "/srv/site",
        ],
    );
    let m = vars(&host, "/x/run.tst/a", &[]);
    // facts §2.4, extension map at the site root, URL /x/run.tst/a.
    Expected::plain(host.addr.port(), "/x/run.tst/a", "/", "/srv/site")
        .paths("/", "/srv/site", "/x/run.tst", "/x/run.tst/a", "/x/run.tst")
        .check(&m);
    assert_eq!(common::get(host.addr, "/x/run.tstx/a").status, 404);
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
            "--physical-path",
            "/srv/site",
        ],
    );
    let port = host.addr.port();
    let m = vars(
        &host,
        "/vars",
        &[("My_Header", "u"), ("X-A", "1"), ("x-a", "2")],
    );
    let server_cert = "CN=www.example.com";
    Expected::plain(port, "/vars", "/", "/srv/site")
        .paths("/", "/srv/site", "/vars", "/vars", "/vars")
        // --https: TLS terminated by IIS (docs/host.md § The site model); the CERT_ values
        // of the connection and the server certificate are set, those of a client
        // certificate stay empty.
        .set("HTTPS", "on")
        .set("SERVER_PORT_SECURE", "1")
        .set("HTTPS_KEYSIZE", "256")
        .set("HTTPS_SECRETKEYSIZE", "2048")
        .set("HTTPS_SERVER_SUBJECT", server_cert)
        .set("HTTPS_SERVER_ISSUER", server_cert)
        .set("CERT_KEYSIZE", "256")
        .set("CERT_SECRETKEYSIZE", "2048")
        .set("CERT_SERVER_SUBJECT", server_cert)
        .set("CERT_SERVER_ISSUER", server_cert)
        .set("CACHE_URL", &format!("https://www.example.com:{port}/vars"))
        .set("SERVER_NAME", "www.example.com")
        // --user: Windows authentication.
        .set("AUTH_TYPE", "Negotiate")
        .set("AUTH_USER", "CORP\\alice")
        .set("REMOTE_USER", "CORP\\alice")
        .set("LOGON_USER", "CORP\\alice")
        .set("UNMAPPED_REMOTE_USER", "CORP\\alice")
        // Repeated headers are separate ALL_HTTP lines; a name with '_' is left out of
        // ALL_HTTP but is in ALL_RAW as sent.
        .set(
            "ALL_HTTP",
            &format!("HTTP_HOST:127.0.0.1:{port}\r\nHTTP_X_A:1\r\nHTTP_X_A:2\r\n"),
        )
        .set(
            "ALL_RAW",
            &format!("Host: 127.0.0.1:{port}\r\nMy_Header: u\r\nX-A: 1\r\nx-a: 2\r\n"),
        )
        .check(&m);
    let one = |name: &str| {
        let request = format!(
            "GET /var?{name} HTTP/1.1\r\nHost: h\r\nMy_Header: u\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n"
        );
        let data = common::raw(host.addr, request.as_bytes());
        common::parse_response(&data, false).unwrap().0.text()
    };
    assert_eq!(one("HEADER_My_Header"), "u");
    assert_eq!(one("HEADER_MY_HEADER"), "u"); // names compare case-insensitively
    assert_eq!(one("HTTP_MY_HEADER"), "error 1413"); // '_' in the name: unreachable via HTTP_
    assert_eq!(one("HTTP_X_A"), "1, 2"); // repeated headers joined with ", "
    assert_eq!(one("UNICODE_HTTP_X_A"), "error 1413"); // no UNICODE_ form for headers
    stop_clean(host);
}

#[test]
fn unicode_paths_and_the_ansi_code_page() {
    // No --physical-path: the host's current directory (the test's) is the default.
    let cwd = std::env::current_dir().unwrap();
    let dir = cwd
        .to_str()
        .unwrap()
        .trim_end_matches(std::path::MAIN_SEPARATOR);
    let host = Host::start(&test_extension(), &["--strict"]);
    let target = "/caf%C3%A9/%E2%82%AC/vars";
    let m = vars(&host, target, &[]);
    // Narrow variables and ECB strings are in the (Latin-1 modelled) ANSI code page, where
    // é is 0xE9 and € is not (it becomes '?'); the UNICODE_ forms keep everything (the
    // extension prints them as escaped UTF-8). HTTP_URL and friends stay percent-encoded.
    let narrow = "/caf\\xe9/?/vars";
    let wide = "/caf\\xc3\\xa9/\\xe2\\x82\\xac/vars";
    let sep = shown(std::path::MAIN_SEPARATOR_STR);
    let dir_shown = shown(dir);
    let narrow_file = format!("{dir_shown}{sep}caf\\xe9{sep}?{sep}vars");
    let wide_file = format!("{dir_shown}{sep}caf\\xc3\\xa9{sep}\\xe2\\x82\\xac{sep}vars");
    let script_translated = |f: &str| {
        if cfg!(windows) {
            format!("\\\\\\\\?\\\\{f}")
        } else {
            f.to_string()
        }
    };
    let mut e = Expected::plain(host.addr.port(), target, "/", dir);
    for name in ["SCRIPT_NAME", "PATH_INFO", "URL", "ecb.lpszPathInfo"] {
        e = e.set_shown(name, narrow);
        e = e.set_shown(&format!("UNICODE_{name}"), wide);
    }
    for name in [
        "PATH_TRANSLATED",
        "REQUEST_FILENAME",
        "SCRIPT_FILENAME",
        "ecb.lpszPathTranslated",
    ] {
        e = e.set_shown(name, &narrow_file);
        e = e.set_shown(&format!("UNICODE_{name}"), &wide_file);
    }
    e.set_shown("SCRIPT_TRANSLATED", &script_translated(&narrow_file))
        .set_shown("UNICODE_SCRIPT_TRANSLATED", &script_translated(&wide_file))
        .check(&m);
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
            "--physical-path",
            "/srv/site",
        ],
    );
    let port = host.addr.port();
    let m = vars(&host, "/vars", &[("Content-Type", "text/x")]);
    Expected::plain(port, "/vars", "/", "/srv/site")
        .paths("/", "/srv/site", "/vars", "/vars", "/vars")
        .set("ecb.dwVersion", "0x70005")
        .set("ALL_HTTP", &format!("HTTP_HOST:127.0.0.1:{port}\n"))
        .set(
            "ALL_RAW",
            &format!("Host: 127.0.0.1:{port}\r\nContent-Type: text/x\r\n"),
        )
        .set("CONTENT_TYPE", "text/x")
        .set("ecb.lpszContentType", "text/x")
        .check(&m);
    stop_clean(host);
}

/// `--remote-addr ADDR`: requests look to the extension as if they came from ADDR. IIS
/// derives REMOTE_ADDR and REMOTE_HOST (reverse lookups are off by default) from the
/// client's address, so both carry ADDR, as do their UNICODE_ twins (checked against the
/// narrow forms); the address is written as Windows writes one (IPv6 compressed, lower
/// case). REMOTE_PORT stays the real client's port (checked by `Expected::check`), every
/// other variable is unchanged, and the access log still names the real peer.
#[test]
fn remote_addr_option_shows_another_client_address() {
    for (given, shown) in [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:DB8:0:0::7", "2001:db8::7"),
    ] {
        let host = Host::start(
            &test_extension(),
            &[
                "--strict",
                "--physical-path",
                "/srv/site",
                "--remote-addr",
                given,
            ],
        );
        let port = host.addr.port();
        let m = vars(&host, "/vars", &[]);
        Expected::plain(port, "/vars", "/", "/srv/site")
            .paths("/", "/srv/site", "/vars", "/vars", "/vars")
            .set("REMOTE_ADDR", shown)
            .set("REMOTE_HOST", shown)
            .check(&m);
        let client_port = &m["client.port"];
        let stopped = host.stop();
        stopped.assert_clean();
        let logged = format!("access: 127.0.0.1:{client_port} \"#1 GET /vars\" 200 ");
        assert!(stopped.stderr.contains(&logged), "{}", stopped.stderr);
    }
}

/// Anything but a bare IPv4 or IPv6 address is refused before the extension is loaded:
/// exit status 2 (bad options) and a message naming the option and the value.
#[test]
fn remote_addr_option_refuses_what_is_not_an_address() {
    for bad in [
        "localhost",
        "192.0.2.7:80",
        "[2001:db8::7]",
        "192.0.2",
        "fe80::1%eth0",
        "",
    ] {
        let failed = Host::fail_to_start(&test_extension(), &["--remote-addr", bad], &[]);
        assert_eq!(failed.status.code(), Some(2), "{bad:?}: {}", failed.stderr);
        let message = format!(
            "isapi-host: --remote-addr: '{bad}' is not an IPv4 or IPv6 address (like 192.0.2.7 or 2001:db8::7; no port, brackets or host name)\n"
        );
        assert_eq!(failed.stderr, message);
    }
    let help = std::process::Command::new(common::host_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(
        help.contains("  --remote-addr ADDR       requests look as if they came from ADDR"),
        "{help}"
    );
}
