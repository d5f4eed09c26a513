//! The bridge in-process: real CPython (the build machine's), real `HttpExtensionProc`, on
//! synthetic ECBs (tests/support/synthetic.rs). One interpreter and one configuration for
//! this whole test process; the app is tests/apps/testapp.py, wrapped in
//! wsgiref.validate.validator with warnings as errors (except its /raw/ routes).
#[path = "support/synthetic.rs"]
mod synthetic;

use isapi_wsgi::isapi::ffi::{HSE_STATUS_SUCCESS, HSE_STATUS_SUCCESS_AND_KEEP_CONN};
use std::path::PathBuf;
use synthetic::{Request, send};

/// Writes the ini file (with absolute paths) and starts the extension once.
fn setup() -> PathBuf {
    let dir = synthetic::start_once("inprocess", |dir| {
        format!(
            "[python]\n{}path = {}\n[wsgi]\napp = testapp:application\nhandler = simple\ndebug = false\nlog = {}\n",
            synthetic::python_home_line(),
            synthetic::apps_dir().display(),
            dir.join("wsgi.log").display()
        )
    });
    dir.join("wsgi.log")
}

fn log_text(log: &PathBuf) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn json(text: &str) -> std::collections::HashMap<String, String> {
    // The app dumps str values; a tiny parser for {"k": "v", ...} with string/bool/list values.
    let mut map = std::collections::HashMap::new();
    let value: Vec<(String, String)> = parse_object(text);
    for (k, v) in value {
        map.insert(k, v);
    }
    map
}

/// Parses the app's flat JSON object via Python's own json module would be circular; this
/// minimal reader handles strings with escapes and bare literals, enough for /environ.
fn parse_object(text: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let read_string = |i: &mut usize| -> String {
        assert_eq!(chars[*i], '"');
        *i += 1;
        let mut s = String::new();
        while chars[*i] != '"' {
            if chars[*i] == '\\' {
                *i += 1;
                match chars[*i] {
                    'n' => s.push('\n'),
                    'r' => s.push('\r'),
                    't' => s.push('\t'),
                    'u' => {
                        let code: String = chars[*i + 1..*i + 5].iter().collect();
                        s.push(
                            char::from_u32(u32::from_str_radix(&code, 16).unwrap()).unwrap_or('?'),
                        );
                        *i += 4;
                    }
                    c => s.push(c),
                }
            } else {
                s.push(chars[*i]);
            }
            *i += 1;
        }
        *i += 1;
        s
    };
    while i < chars.len() {
        if chars[i] == '"' {
            let key = read_string(&mut i);
            while chars[i] == ':' || chars[i] == ' ' {
                i += 1;
            }
            let value = if chars[i] == '"' {
                read_string(&mut i)
            } else {
                let start = i;
                let mut depth = 0;
                while i < chars.len() && (depth > 0 || (chars[i] != ',' && chars[i] != '}')) {
                    if chars[i] == '[' {
                        depth += 1;
                    }
                    if chars[i] == ']' {
                        depth -= 1;
                    }
                    i += 1;
                }
                chars[start..i]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string()
            };
            out.push((key, value));
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn hello_has_content_length_and_keeps_the_connection() {
    setup();
    let reply = send(&Request::get("/hello"));
    assert_eq!(reply.status, "200 OK");
    assert_eq!(reply.text(), "Hello, World!");
    assert_eq!(reply.header("Content-Length"), Some("13"));
    assert_eq!(reply.header_calls, 1);
    assert!(reply.keep_conn);
    assert_eq!(reply.hse_status, 2, "HSE_STATUS_SUCCESS_AND_KEEP_CONN");
    assert_eq!(reply.status_code_logged, 200);
    assert_eq!(
        reply.done_calls, 0,
        "the simple handler never sends DONE_WITH_SESSION"
    );
}

#[test]
fn environ_has_every_required_key_from_the_request() {
    setup();
    let request = Request::get("/environ?a=1&b=%20")
        .header("User-Agent", "synthetic/1.0")
        .header("X-Dup", "one")
        .header("x-dup", "two")
        .header("Cookie", "a=1")
        .header("Cookie", "b=2")
        .header("X_Sneaky", "dropped")
        .var("REMOTE_USER", "alice")
        .var("AUTH_TYPE", "Basic");
    let reply = send(&request);
    assert_eq!(reply.code(), 200, "{}", reply.text());
    let environ = json(&reply.text());
    let get = |k: &str| {
        environ
            .get(k)
            .cloned()
            .unwrap_or_else(|| panic!("{k} missing from {environ:?}"))
    };
    assert_eq!(get("REQUEST_METHOD"), "GET");
    assert_eq!(get("SCRIPT_NAME"), "");
    assert_eq!(get("PATH_INFO"), "/environ");
    assert_eq!(get("QUERY_STRING"), "a=1&b=%20");
    assert_eq!(get("SERVER_NAME"), "localhost");
    assert_eq!(get("SERVER_PORT"), "80");
    assert_eq!(get("SERVER_PROTOCOL"), "HTTP/1.1");
    assert_eq!(get("REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(get("REMOTE_PORT"), "50000");
    assert_eq!(get("REMOTE_USER"), "alice");
    assert_eq!(get("AUTH_TYPE"), "Basic");
    assert_eq!(get("wsgi.url_scheme"), "http");
    assert_eq!(get("wsgi.version"), "[1, 0]");
    assert_eq!(get("wsgi.multithread"), "true");
    assert_eq!(get("wsgi.multiprocess"), "true");
    assert_eq!(get("wsgi.run_once"), "false");
    assert_eq!(get("has_file_wrapper"), "true");
    assert_eq!(get("HTTP_USER_AGENT"), "synthetic/1.0");
    assert_eq!(get("HTTP_HOST"), "localhost");
    assert_eq!(get("HTTP_X_DUP"), "one,two");
    assert_eq!(get("HTTP_COOKIE"), "a=1; b=2");
    assert!(
        !environ.contains_key("HTTP_X_SNEAKY"),
        "headers with '_' must be dropped"
    );
    assert!(!environ.contains_key("HTTPS"));
    // The process environment is never copied in.
    assert!(!environ.contains_key("PATH") && !environ.contains_key("HOME"));
}

#[test]
fn environ_has_the_cgi_variables_iis_provides() {
    setup();
    // REMOTE_HOST as IIS gives it (a name when reverse lookups are on), the raw request
    // target undecoded, IIS's PATH_TRANSLATED.
    let request = Request::get("/environ?a=%41")
        .var("REMOTE_HOST", "client.example")
        .var("PATH_TRANSLATED", "C:\\inetpub\\wwwroot\\environ");
    let environ = json(&send(&request).text());
    assert_eq!(environ["REMOTE_HOST"], "client.example", "{environ:?}");
    assert_eq!(environ["REQUEST_URI"], "/environ?a=%41");
    assert_eq!(environ["RAW_URI"], "/environ?a=%41");
    assert_eq!(environ["PATH_TRANSLATED"], "C:\\inetpub\\wwwroot\\environ");
    assert!(!environ.contains_key("REMOTE_IDENT"));
    // A server without REMOTE_HOST: the address stands in (RFC 3875 §4.1.9); the target
    // keeps its escapes.
    let request = Request::get("/caf%C3%A9?x").header("X-Environ", "1");
    let environ = json(&send(&request).text());
    assert_eq!(environ["REMOTE_HOST"], "127.0.0.1", "{environ:?}");
    assert_eq!(environ["REQUEST_URI"], "/caf%C3%A9?x");
    // No PATH_INFO (the request is for the mount point itself): no PATH_TRANSLATED.
    let request = Request::get("/app")
        .header("X-Environ", "1")
        .var("APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app")
        .var("PATH_TRANSLATED", "C:\\inetpub\\app");
    let environ = json(&send(&request).text());
    assert_eq!(environ["SCRIPT_NAME"], "/app", "{environ:?}");
    assert_eq!(environ["PATH_INFO"], "");
    assert!(!environ.contains_key("PATH_TRANSLATED"), "{environ:?}");
}

#[test]
fn a_long_remote_addr_stands_in_for_its_own_missing_remote_host() {
    setup();
    // The bridge keeps short addresses between requests (longer values are not kept):
    // a long one, after a short one, must still be this request's REMOTE_HOST.
    let short = Request::get("/environ").var("REMOTE_ADDR", "10.0.0.1");
    let environ = json(&send(&short).text());
    assert_eq!(environ["REMOTE_HOST"], "10.0.0.1", "{environ:?}");
    let long = format!("fe80::1%{}", "x".repeat(300));
    let request = Request::get("/environ").var("REMOTE_ADDR", &long);
    let environ = json(&send(&request).text());
    assert_eq!(environ["REMOTE_ADDR"], long);
    assert_eq!(
        environ["REMOTE_HOST"], long,
        "the previous request's address"
    );
}

#[test]
fn without_all_raw_a_header_with_an_underscore_still_cannot_pose_as_another() {
    // A server without ALL_RAW: the headers come from ALL_HTTP, where `X_Auth` and `X-Auth`
    // both read HTTP_X_AUTH. Only what the server confirms the client sent with dashes
    // (HEADER_X-Auth) becomes HTTP_X_AUTH; before, the forged value got in.
    setup();
    let request = Request::get("/environ")
        .header("User-Agent", "synthetic/1.0")
        .header("X_Auth", "forged")
        .header("X_Sneaky", "dropped")
        .header("X-Dup", "one")
        .header("x-dup", "two")
        .without("ALL_RAW");
    let environ = json(&send(&request).text());
    assert_eq!(environ.get("HTTP_X_AUTH"), None, "{environ:?}");
    assert_eq!(environ.get("HTTP_X_SNEAKY"), None, "{environ:?}");
    assert_eq!(environ["HTTP_USER_AGENT"], "synthetic/1.0");
    assert_eq!(environ["HTTP_HOST"], "localhost");
    assert_eq!(environ["HTTP_X_DUP"], "one,two");
    let request = Request::get("/environ")
        .header("X-Auth", "real")
        .header("X_Auth", "forged")
        .without("ALL_RAW");
    let environ = json(&send(&request).text());
    assert_eq!(environ["HTTP_X_AUTH"], "real", "{environ:?}");
}

#[test]
fn https_sets_the_url_scheme() {
    setup();
    let reply = send(&Request::get("/environ").var("HTTPS", "ON"));
    let environ = json(&reply.text());
    assert_eq!(environ["wsgi.url_scheme"], "https");
    assert_eq!(environ["HTTPS"], "on");
}

#[test]
fn script_name_and_path_info_for_mounts_and_mappings() {
    setup();
    // Wildcard map in an application /app; APPL_MD_PATH with a differently-cased Root.
    let reply = send(
        &Request::get("/App/unicode/caf%C3%A9")
            .var("APPL_MD_PATH", "/LM/W3SVC/1/Root/app")
            .var("SCRIPT_NAME", "/App/unicode/café"),
    );
    assert_eq!(reply.code(), 200, "{}", reply.text());
    let environ = json(&reply.text());
    assert_eq!(environ["script"], "/App");
    // UTF-8 bytes of the path, decoded as latin-1 (PEP 3333).
    assert_eq!(environ["path"], "/unicode/caf\u{c3}\u{a9}");
    // Extension map: /app/run.wsgi/unicode/x, IIS's SCRIPT_NAME is the script.
    let reply = send(
        &Request::get("/app/run.wsgi/unicode/x")
            .var("APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app")
            .var("SCRIPT_NAME", "/app/run.wsgi")
            .var("PATH_INFO", "/app/run.wsgi/unicode/x"),
    );
    let environ = json(&reply.text());
    assert_eq!(environ["script"], "/app/run.wsgi");
    assert_eq!(environ["path"], "/unicode/x");
}

#[test]
fn without_http_url_the_servers_path_info_is_made_canonical_too() {
    // A server without HTTP_URL: PATH_INFO is the server's own (lpszPathInfo). IIS gives it
    // canonical; another server may not, and the app must never see `\` or a dot-segment
    // (found by the fuzz target `environ`; before, `/x/../environ\.` reached the app as is).
    setup();
    let reply = send(
        &Request::get("/environ")
            .header("X-Environ", "1")
            .without("HTTP_URL")
            .var("PATH_INFO", "/x/../environ\\.")
            .var("SCRIPT_NAME", "/x/../environ\\."),
    );
    assert_eq!(reply.code(), 200, "{}", reply.text());
    let environ = json(&reply.text());
    assert_eq!(environ["SCRIPT_NAME"], "", "{environ:?}");
    assert_eq!(environ["PATH_INFO"], "/environ/", "{environ:?}");
}

#[test]
fn post_body_streams_through_preread_and_read_client() {
    setup();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut request = Request::post("/echo", "application/octet-stream", &body);
    request.preread = 4096;
    let reply = send(&request);
    assert_eq!(reply.code(), 200, "{}", reply.text());
    assert_eq!(reply.header("X-Length"), Some("200000"));
    assert_eq!(reply.body(), body);
}

#[test]
fn body_of_unknown_length_is_read_to_its_end() {
    setup();
    let mut request = Request::post("/raw/read-all", "text/plain", b"chunked upload body");
    request.unknown_length = true;
    request.preread = 5;
    let reply = send(&request);
    assert_eq!(reply.text(), "chunked upload body");
}

#[test]
fn input_read_readline_readlines_and_iteration() {
    setup();
    let mut request = Request::post(
        "/raw/echo-pieces",
        "text/plain",
        b"abcdef\nline two is long\nthree\nfour\nrest",
    );
    request.preread = 7;
    let reply = send(&request);
    assert_eq!(
        reply.text(),
        r#"["abc", "def\n", "line ", "two is long\n", "three\nfour\nrest", ""]"#
    );
    let reply = send(&Request::post("/echo-iter", "text/plain", b"a\nb\n\nc"));
    assert_eq!(reply.text(), r#"["a\n", "b\n", "\n", "c"]"#);
}

#[test]
fn client_disconnect_while_reading_raises_in_the_app() {
    let log = setup();
    let mut request = Request::post("/echo", "text/plain", b"0123456789");
    request.preread = 2;
    request.disconnect_on_read = true;
    let reply = send(&request);
    assert_eq!(reply.code(), 500);
    assert!(log_text(&log).contains(
        "the client disconnected before sending the whole body (2 of 10 bytes; 8 missing)"
    ));
}

#[test]
fn generator_bodies_are_chunked_and_closed() {
    setup();
    let reply = send(&Request::get("/stream"));
    assert_eq!(reply.code(), 200);
    assert_eq!(reply.header("Transfer-Encoding"), Some("chunked"));
    assert_eq!(reply.header("Content-Length"), None);
    assert!(reply.flush_requested, "a streamed body asks IIS to flush");
    assert_eq!(
        reply.raw_body,
        b"4\r\none,\r\n4\r\ntwo,\r\n5\r\nthree\r\n0\r\n\r\n"
    );
    assert!(reply.keep_conn);
    let closed = send(&Request::get("/closed")).text();
    assert!(
        closed.contains("stream"),
        "close() was not called: {closed}"
    );
}

#[test]
fn http10_clients_get_a_closed_connection_instead_of_chunks() {
    setup();
    let mut request = Request::get("/stream");
    request.protocol = "HTTP/1.0".into();
    let reply = send(&request);
    assert_eq!(reply.header("Transfer-Encoding"), None);
    assert_eq!(reply.raw_body, b"one,two,three");
    assert!(!reply.keep_conn);
    assert_eq!(reply.hse_status, 1, "HSE_STATUS_SUCCESS");
}

#[test]
fn write_callable_and_returned_body() {
    setup();
    let reply = send(&Request::get("/write"));
    assert_eq!(reply.text(), "written;returned");
    assert_eq!(reply.header("Transfer-Encoding"), Some("chunked"));
}

#[test]
fn head_sends_headers_only() {
    setup();
    let mut request = Request::get("/hello");
    request.method = "HEAD".into();
    let reply = send(&request);
    assert_eq!(reply.code(), 200);
    assert_eq!(reply.header("Content-Length"), Some("13"));
    assert!(reply.raw_body.is_empty());
    assert!(reply.keep_conn);
}

#[test]
fn no_content_has_no_body_and_no_framing() {
    setup();
    let reply = send(&Request::get("/empty"));
    assert_eq!(reply.status, "204 No Content");
    assert_eq!(reply.header("Content-Length"), None);
    assert_eq!(reply.header("Transfer-Encoding"), None);
    assert!(reply.raw_body.is_empty());
    assert!(reply.keep_conn);
}

#[test]
fn file_wrapper_serves_a_file_like_object() {
    setup();
    let reply = send(&Request::get("/file"));
    assert_eq!(reply.body(), vec![b'x'; 20000]);
}

#[test]
fn big_bodies_arrive_whole() {
    setup();
    let reply = send(&Request::get("/big"));
    let body = reply.body();
    assert_eq!(body.len(), 16 * 65536);
    assert!(
        body.chunks(65536)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == (i % 251) as u8))
    );
}

#[test]
fn exception_before_headers_is_a_500_page_and_a_logged_traceback() {
    let log = setup();
    let reply = send(&Request::get("/error"));
    assert_eq!(reply.status, "500 Internal Server Error");
    assert!(
        reply
            .text()
            .contains("The application failed to answer this request")
    );
    assert!(
        !reply.text().contains("boom"),
        "no details without debug = true"
    );
    assert!(reply.keep_conn);
    let log = log_text(&log);
    assert!(log.contains("GET /error: the application failed:"), "{log}");
    assert!(
        log.contains("Traceback (most recent call last)")
            && log.contains("ValueError: boom before start_response"),
        "{log}"
    );
}

#[test]
fn exception_after_headers_closes_the_connection_and_calls_close() {
    let log = setup();
    let reply = send(&Request::get("/error-after"));
    assert_eq!(reply.code(), 200);
    assert!(reply.close_requested);
    assert_eq!(reply.hse_status, 4, "HSE_STATUS_ERROR");
    assert!(
        synthetic::dechunk(&reply.raw_body).is_none(),
        "the chunked body must not look complete"
    );
    assert!(log_text(&log).contains("RuntimeError: boom mid-body"));
    assert!(
        send(&Request::get("/closed"))
            .text()
            .contains("error-after")
    );
}

#[test]
fn exc_info_replaces_headers_before_they_are_sent() {
    setup();
    let reply = send(&Request::get("/exc-info"));
    assert_eq!(reply.status, "503 Service Unavailable");
    assert_eq!(reply.text(), "replaced");
}

#[test]
fn exc_info_after_headers_reraises() {
    let log = setup();
    let reply = send(&Request::get("/raw/exc-info-late"));
    assert_eq!(reply.code(), 200);
    assert!(reply.close_requested);
    assert!(log_text(&log).contains("KeyError: 'late'"));
}

#[test]
fn exc_info_that_is_not_an_exception_is_refused() {
    setup();
    // Handed to PyErr_Restore as it was, such a triple would make CPython write a traceback
    // into the int 5 as into an exception object.
    let reply = send(&Request::get("/raw/exc-info-bogus"));
    assert_eq!(reply.code(), 200);
    let refused = "TypeError: exc_info must be (type, value, traceback) of an exception, \
                   as sys.exc_info() returns;";
    assert_eq!(
        reply.text(),
        format!("sent;{refused}{refused}TypeError: __traceback__ must be a traceback or None;")
    );
}

#[test]
fn safe_wrappers_check_the_type_c_would_trust() {
    setup();
    let api = isapi_wsgi::python::runtime::api().expect("started");
    isapi_wsgi::python::Gil::acquire(api, |gil| {
        let pending = || {
            // SAFETY: the GIL is held (the token); PyErr_Occurred only reads the indicator.
            !unsafe { (api.PyErr_Occurred)() }.is_null()
        };
        // PyIter_Next would call a NULL tp_iternext.
        let text = gil.str("not an iterator").unwrap();
        let error = text.next().err().expect("refused");
        assert_eq!(
            error.summary(),
            "TypeError: next() on an object that is not an iterator"
        );
        let letters = gil.str("ab").unwrap().iter().unwrap();
        assert_eq!(letters.next().unwrap().unwrap().text(), "a");
        // PyTuple_Size and PyTuple_GetItem on a list set SystemError; nothing is left set.
        let list = gil.list().unwrap();
        list.list_append(&text).unwrap();
        assert_eq!(list.tuple_len(), 0);
        assert!(list.tuple_item(0).is_none());
        assert!(!pending());
        let tuple = gil.tuple(&[&text]).unwrap();
        assert_eq!(tuple.tuple_len(), 1);
        assert_eq!(tuple.tuple_item(0).unwrap().text(), "not an iterator");
        assert!(tuple.tuple_item(1).is_none());
        assert!(!pending());
    });
}

#[test]
fn invalid_status_and_headers_are_rejected() {
    let log = setup();
    for (path, expected) in [
        ("/raw/hop-by-hop", "Connection is a hop-by-hop header"),
        ("/raw/bad-status", "invalid status 'OK'"),
        ("/raw/bad-header", "a control character (CR, LF, NUL"),
        ("/raw/interim-101", "101 is an interim (1xx) status"),
        (
            "/raw/str-body",
            "must be an iterable of bytes; it yielded str",
        ),
        ("/raw/no-start", "without calling start_response"),
        ("/raw/two-lengths", "a second, different Content-Length"),
    ] {
        let reply = send(&Request::get(path));
        assert_eq!(reply.code(), 500, "{path}");
        assert!(log_text(&log).contains(expected), "{path}: {expected}");
    }
}

#[test]
fn content_length_mismatches_are_cut_or_closed() {
    // Shorter: sent, then the connection closed (the request itself succeeded). Longer:
    // cut at the declared length, the connection kept.
    let log = setup();
    let reply = send(&Request::get("/raw/short"));
    assert_eq!(reply.raw_body, b"12345");
    assert!(reply.close_requested && reply.hse_status == HSE_STATUS_SUCCESS);
    let reply = send(&Request::get("/raw/short-list"));
    assert_eq!(reply.raw_body, b"123456789");
    assert!(reply.close_requested && reply.hse_status == HSE_STATUS_SUCCESS);
    let reply = send(&Request::get("/raw/long"));
    assert_eq!(reply.raw_body, b"123");
    assert!(!reply.close_requested && reply.hse_status == HSE_STATUS_SUCCESS_AND_KEEP_CONN);
    let log = log_text(&log);
    assert!(
        log.contains("ended after 5 of the 10 bytes its Content-Length announced"),
        "{log}"
    );
    assert!(
        log.contains("sent more than its Content-Length of 3 bytes"),
        "{log}"
    );
    let closed = send(&Request::get("/closed")).text();
    assert!(
        closed.contains("short") && closed.contains("long"),
        "{closed}"
    );
}

#[test]
fn client_disconnect_while_writing_stops_the_iteration() {
    let log = setup();
    let mut request = Request::get("/big");
    request.fail_writes_after = Some(2);
    let reply = send(&request);
    assert_eq!(reply.hse_status, 4);
    // Headers, then two chunks written; the third write failed and iteration stopped.
    assert_eq!(reply.raw_body.len(), 2 * (65536 + 9));
    assert!(log_text(&log).contains("GET /big: response aborted: writing the response failed"));
    assert!(send(&Request::get("/closed")).text().contains("big"));
}

#[test]
fn objects_kept_after_the_request_refuse_to_work() {
    setup();
    assert_eq!(send(&Request::get("/raw/keep")).text(), "kept");
    let reply = send(&Request::get("/raw/use-kept"));
    assert_eq!(
        reply.text(),
        "ValueError: isapi_wsgi.Input is no longer usable: its request has finished"
    );
}

/// The lent objects of a request nobody kept are lent again to the next one (no new
/// Python objects per request); one the application kept is never lent again, and stays
/// the finished request's. In a process of its own: concurrent tests would take turns
/// with the spare objects.
#[test]
fn lent_objects_are_reused_only_when_nobody_kept_them() {
    let output = synthetic::child_test("lent_objects_child")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        synthetic::child_text(&output)
    );
}

#[test]
#[ignore = "run by lent_objects_are_reused_only_when_nobody_kept_them, alone in its process"]
fn lent_objects_child() {
    setup();
    let ids = |reply: synthetic::Reply| {
        let text = reply.text();
        let (lent, kept) = text.split_once('|').expect("lent|kept");
        let words = |list: &str| list.split(' ').map(String::from).collect::<Vec<_>>();
        (words(lent), words(kept))
    };
    let (first, _) = ids(send(&Request::get("/raw/object-ids")));
    let (second, _) = ids(send(&Request::get("/raw/object-ids")));
    assert_eq!(first, second, "objects nobody kept are lent again");
    assert_eq!(send(&Request::get("/raw/keep")).text(), "kept");
    let (after, kept) = ids(send(&Request::get("/raw/object-ids")));
    assert_eq!(kept.len(), 3, "{kept:?}");
    for (now, kept) in after.iter().zip(&kept) {
        assert_ne!(now, kept, "a kept object is never lent again");
    }
    let reply = send(&Request::get("/raw/use-kept"));
    assert_eq!(
        reply.text(),
        "ValueError: isapi_wsgi.Input is no longer usable: its request has finished"
    );
}

#[test]
fn wsgi_errors_goes_to_the_log() {
    let log = setup();
    assert_eq!(send(&Request::get("/errors")).text(), "logged");
    let log = log_text(&log);
    assert!(
        log.contains("testapp: a line for wsgi.errors\ntestapp: two\ntestapp: lines\n"),
        "{log}"
    );
}

#[test]
fn not_found_is_the_apps_404() {
    setup();
    let reply = send(&Request::get("/nowhere"));
    assert_eq!(reply.status, "404 Not Found");
    assert_eq!(reply.text(), "not found: /nowhere");
}

#[test]
fn concurrent_requests_from_many_threads() {
    setup();
    let threads: Vec<_> = (0..8)
        .map(|n| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let body = format!("thread {n} request {i}");
                    let reply = send(&Request::post("/echo", "text/plain", body.as_bytes()));
                    assert_eq!(reply.text(), body);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn threads_that_keep_a_python_thread_state() {
    setup();
    let api = isapi_wsgi::python::runtime::api().expect("started");
    let workers: Vec<_> = (0..3)
        .map(|n| {
            std::thread::spawn(move || {
                // A worker keeps its thread state for its whole life, then gives it back.
                let attached = isapi_wsgi::python::ThreadAttachment::new(api)
                    .expect("a new thread has no Python thread state");
                for i in 0..20 {
                    let body = format!("worker {n} request {i}");
                    assert_eq!(
                        send(&Request::post("/echo", "text/plain", body.as_bytes())).text(),
                        body
                    );
                }
                drop(attached);
                // Afterwards the thread still works, the per-request way.
                assert_eq!(send(&Request::get("/hello")).text(), "Hello, World!");
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
}

#[test]
fn a_thread_attachment_never_takes_the_gil_from_a_live_token() {
    use isapi_wsgi::python::{Gil, ThreadAttachment};
    setup();
    let api = isapi_wsgi::python::runtime::api().expect("started");
    std::thread::spawn(move || {
        Gil::acquire(api, |gil| {
            // Taking a thread state and giving up the GIL here would leave `gil` without it.
            assert!(ThreadAttachment::new(api).is_none());
            assert_eq!(gil.str("still held").unwrap().text(), "still held");
            // Without the GIL, the thread still has the state Gil::acquire made for it.
            gil.allow_threads(|| assert!(ThreadAttachment::new(api).is_none()));
            assert_eq!(gil.str("held again").unwrap().text(), "held again");
        });
        // Outside (the per-request state is gone), an attachment is made; one per thread.
        let attached = ThreadAttachment::new(api).expect("no Python thread state here");
        assert!(ThreadAttachment::new(api).is_none());
        assert_eq!(send(&Request::get("/hello")).text(), "Hello, World!");
        // Dropped where the GIL is held with its state, it can neither restore nor release
        // it: the state is kept until the thread ends, and the token keeps the GIL.
        Gil::acquire(api, move |gil| {
            drop(attached);
            assert_eq!(gil.str("after the drop").unwrap().text(), "after the drop");
        });
        assert_eq!(send(&Request::get("/thread-local")).text(), "1");
        assert_eq!(send(&Request::get("/thread-local")).text(), "2");
        assert!(ThreadAttachment::new(api).is_none(), "the state is kept");
        // A drop in allow_threads (no GIL held) is the ordinary one: the state goes.
        Gil::acquire(api, |gil| {
            let attached = gil.allow_threads(|| ThreadAttachment::new(api));
            assert!(attached.is_none(), "the thread still has the kept state");
        });
    })
    .join()
    .unwrap();
    std::thread::spawn(move || {
        thread_local! {
            static STASH: std::cell::RefCell<Option<ThreadAttachment>> =
                const { std::cell::RefCell::new(None) };
        }
        let attached = ThreadAttachment::new(api).expect("no Python thread state here");
        STASH.with(|stash| *stash.borrow_mut() = Some(attached));
        assert_eq!(send(&Request::get("/thread-local")).text(), "1");
        Gil::acquire(api, |gil| {
            // In allow_threads the GIL is not held: the drop restores and releases as usual.
            gil.allow_threads(|| drop(STASH.with(|stash| stash.borrow_mut().take())));
            assert_eq!(gil.str("still held").unwrap().text(), "still held");
        });
        // The state went with the attachment (and Gil::acquire's release): a fresh one.
        assert_eq!(send(&Request::get("/thread-local")).text(), "1");
    })
    .join()
    .unwrap();
}

#[test]
fn a_server_thread_keeps_its_python_state_and_an_ended_one_leaves_none_behind() {
    setup();
    // The same thread, request after request: the app's threading.local data survives
    // (the thread keeps its Python thread state, as under any threaded server).
    let counts: Vec<String> = (0..3)
        .map(|_| send(&Request::get("/thread-local")).text())
        .collect();
    assert_eq!(counts, ["1", "2", "3"]);
    // Threads that serve one request and end: their thread states are deleted, not left in
    // the interpreter.
    let before: usize = send(&Request::get("/thread-states"))
        .text()
        .parse()
        .unwrap();
    for _ in 0..40 {
        std::thread::spawn(|| {
            assert_eq!(send(&Request::get("/thread-local")).text(), "1");
        })
        .join()
        .unwrap();
    }
    // The reaper thread deletes them (its own state may be new since `before`); other tests
    // of this process run meanwhile on their own threads: allow for a few.
    let count = || -> usize {
        send(&Request::get("/thread-states"))
            .text()
            .parse()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let mut after = count();
    while after > before + 4 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
        after = count();
    }
    assert!(
        after <= before + 4,
        "thread states: {before} before 40 short-lived threads, {after} after"
    );
}

#[test]
fn each_environ_has_its_own_requests_common_entries_whatever_came_before() {
    setup();
    // The environ builder starts from a copy of the template with the last different
    // request's method, SCRIPT_NAME, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL and HTTPS in
    // (environ.rs, `Common`). Requests that differ in each of them, twice over, in an order
    // that changes one or more at a time: each environ must have its own request's.
    let plain = || Request::get("/x").header("X-Environ", "1");
    let mut http10 = plain();
    http10.protocol = "HTTP/1.0".into();
    let cases: Vec<(Request, [&str; 6], bool)> = vec![
        (
            plain(),
            ["GET", "", "localhost", "80", "HTTP/1.1", "http"],
            false,
        ),
        (
            plain()
                .var("SERVER_NAME", "other")
                .var("SERVER_PORT", "8080"),
            ["GET", "", "other", "8080", "HTTP/1.1", "http"],
            false,
        ),
        (
            plain().var("HTTPS", "on"),
            ["GET", "", "localhost", "80", "HTTP/1.1", "https"],
            true,
        ),
        (
            plain(),
            ["GET", "", "localhost", "80", "HTTP/1.1", "http"],
            false,
        ),
        (
            Request::get("/app/x")
                .header("X-Environ", "1")
                .var("APPL_MD_PATH", "/LM/W3SVC/1/ROOT/app"),
            ["GET", "/app", "localhost", "80", "HTTP/1.1", "http"],
            false,
        ),
        (
            Request::post("/x", "text/plain", b"body").header("X-Environ", "1"),
            ["POST", "", "localhost", "80", "HTTP/1.1", "http"],
            false,
        ),
        (
            http10,
            ["GET", "", "localhost", "80", "HTTP/1.0", "http"],
            false,
        ),
        (
            {
                let mut put = plain();
                put.method = "PUT".into();
                put
            },
            ["PUT", "", "localhost", "80", "HTTP/1.1", "http"],
            false,
        ),
    ];
    let keys = [
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "wsgi.url_scheme",
    ];
    for round in 0..2 {
        for (n, (request, expected, https)) in cases.iter().enumerate() {
            let reply = send(request);
            assert_eq!(reply.code(), 200, "case {n}: {}", reply.text());
            let environ = json(&reply.text());
            for (key, value) in keys.iter().zip(expected) {
                assert_eq!(
                    environ.get(*key).map(String::as_str),
                    Some(*value),
                    "round {round}, case {n}: {key} in {environ:?}"
                );
            }
            assert_eq!(
                environ.get("HTTPS").map(String::as_str),
                https.then_some("on"),
                "round {round}, case {n}"
            );
        }
    }
}

#[test]
fn without_all_raw_the_request_id_is_still_the_clients() {
    setup();
    // A server with neither ALL_RAW nor HEADER_<name> (pre-IIS 7): the headers are rebuilt
    // from ALL_HTTP, where X_REQUEST_ID cannot be told from a forged X_Request_Id and is
    // dropped; the bridge then asks the server for HTTP_X_REQUEST_ID itself.
    let request = Request::get("/x")
        .header("X-Environ", "1")
        .header("X-Request-Id", "given-7")
        .var("HTTP_X_REQUEST_ID", "given-7")
        .without("ALL_RAW")
        .without("HEADER_X-Request-Id");
    let reply = send(&request);
    assert_eq!(reply.code(), 200, "{}", reply.text());
    let environ = json(&reply.text());
    assert_eq!(environ["isapi.request_id"], "given-7", "{environ:?}");
    assert_eq!(reply.header("X-Request-Id"), Some("given-7"));
}
