//! A Rust ISAPI extension that exercises every callback `isapi-host` implements, one
//! route per feature, plus one route per deliberate contract violation. The host's
//! integration tests and its throughput benchmark load it.
//!
//! The route is the first path segment that names one (so `/app/vars` and
//! `/app/run.tst/vars` both reach `vars`); an unknown path dumps the variables.
//!
//! | route | what it does |
//! |---|---|
//! | `hello` | 13-byte body with Content-Length, keep-alive (the benchmark) |
//! | `vars` | every server variable, plain and UNICODE_, the ECB fields, buffer-protocol checks |
//! | `var?NAME` | one variable's raw bytes (UNICODE_ ones converted to UTF-8) |
//! | `echo` | the body, from lpbData then ReadClient; X-Total-Bytes / X-Available headers |
//! | `async?n=N&size=S` | N asynchronous WriteClient calls chained through IO_COMPLETION, PENDING |
//! | `async-read` | the body read with HSE_REQ_ASYNC_READ_CLIENT, echoed; PENDING |
//! | `pending?ms=M` | returns PENDING; another thread answers after M ms and ends the session |
//! | `pending-early` | DONE_WITH_SESSION from another thread *before* HttpExtensionProc returns PENDING |
//! | `transmit?path=P&offset=N&sync=1&disconnect=1&shared=1` | HSE_REQ_TRANSMIT_FILE of file P (async, or HSE_IO_SYNC with `sync=1`; with headers, head and tail; HSE_IO_DISCONNECT_AFTER_SEND with `disconnect=1`; with `shared=1` through one handle per path kept open for the process, opened with FILE_FLAG_OVERLAPPED on Windows, as an extension caching file handles does) |
//! | `vector?path=P&final=1&bytewise=1` | HSE_REQ_VECTOR_SEND: status, headers and the body `Hello, ` + file P (if given) + `world!` (a memory element with an offset; with `bytewise=1` six one-byte elements) in one call; `final=1` adds HSE_IO_FINAL_SEND |
//! | `gone` | polls HSE_REQ_IS_CONNECTED until the client has gone, reporting both answers on stderr |
//! | `chunked` | Transfer-Encoding: chunked written by the extension |
//! | `noframe` | no Content-Length: the host must close the connection |
//! | `flush` | HSE_REQ_SET_FLUSH_FLAG then several writes |
//! | `big?size=N` | N bytes with Content-Length (response-buffer tests) |
//! | `redirect` | HSE_REQ_SEND_URL_REDIRECT_RESP |
//! | `old-header` | the old HSE_REQ_SEND_RESPONSE_HEADER |
//! | `ssf` | the other ServerSupportFunction requests, one result line each |
//! | `error` | returns HSE_STATUS_ERROR without a response |
//! | `close` | HSE_REQ_CLOSE_CONNECTION after the headers |
//! | `stream?until=F&flush=1` | writes "first", waits for file F, writes the rest (flush tests) |
//! | `env?NAME` | the extension process's environment variable NAME |
//! | `sleep?ms=M` | a slow synchronous request (shutdown and concurrency tests) |
//! | `violation/KIND` | one contract violation each (see `violation`) |
//! | `crash?how=segv\|panic` | returns PENDING after an asynchronous write whose completion callback crashes (a NULL write) or panics (Rust aborts: a panic cannot leave an `extern` function) |
//!
//! `GetExtensionVersion` fails when `TEST_EXTENSION_FAIL=1`; `TerminateExtension` prints
//! a line to stderr so tests can see it was called.
#![allow(clippy::missing_safety_doc)]

// The ISAPI types come from the same generated file as `isapi_wsgi::isapi::ffi`, included
// by path rather than through the `isapi_wsgi` crate: linking that crate into this cdylib
// would also export its own GetExtensionVersion/HttpExtensionProc/TerminateExtension
// (rustc keeps every `#[no_mangle]` function of a cdylib's dependencies), which collide
// with this extension's.
#[path = "../../src/isapi/ffi.rs"]
mod ffi;
use ffi::*;
use std::ffi::{CStr, CString, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TRUE: BOOL = 1;
const FALSE: BOOL = 0;

/// The ECB of the current request, with safe-ish helpers. Copyable so it can travel to
/// other threads (PENDING routes); the host keeps the ECB alive until DONE_WITH_SESSION.
#[derive(Clone, Copy)]
struct Req(*mut EXTENSION_CONTROL_BLOCK);
// SAFETY: the ECB may be used from any thread until DONE_WITH_SESSION (the contract).
unsafe impl Send for Req {}

fn last_error() -> u32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u32
}

impl Req {
    fn ecb(&self) -> &EXTENSION_CONTROL_BLOCK {
        // SAFETY: the ECB is valid for the whole request.
        unsafe { &*self.0 }
    }

    fn conn(&self) -> HCONN {
        self.ecb().ConnID
    }

    /// GetServerVariable with the size-query protocol: NULL buffer first, then exact size.
    fn var(&self, name: &str) -> Result<Vec<u8>, u32> {
        let c = CString::new(name).unwrap();
        let mut size: u32 = 0;
        let f = self.ecb().GetServerVariable.unwrap();
        // SAFETY: a size query: NULL buffer, size 0.
        let ok = unsafe {
            f(
                self.conn(),
                c.as_ptr() as *mut _,
                std::ptr::null_mut(),
                &mut size,
            )
        };
        if ok != 0 {
            return Ok(Vec::new());
        }
        let e = last_error();
        if e != ERROR_INSUFFICIENT_BUFFER {
            return Err(e);
        }
        let mut buf = vec![0u8; size as usize];
        // SAFETY: buf has `size` bytes.
        let ok = unsafe {
            f(
                self.conn(),
                c.as_ptr() as *mut _,
                buf.as_mut_ptr().cast(),
                &mut size,
            )
        };
        if ok == 0 {
            return Err(last_error());
        }
        buf.truncate(size as usize);
        Ok(buf)
    }

    /// A UNICODE_ variable as UTF-8.
    fn wide_var(&self, name: &str) -> Result<String, u32> {
        let bytes = self.var(name)?;
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let units = units.strip_suffix(&[0]).unwrap_or(&units);
        Ok(String::from_utf16_lossy(units))
    }

    fn write_flags(&self, data: &[u8], flags: u32) -> bool {
        let mut n = data.len() as u32;
        let f = self.ecb().WriteClient.unwrap();
        // SAFETY: data is valid for n bytes.
        unsafe { f(self.conn(), data.as_ptr() as *mut _, &mut n, flags) != 0 }
    }

    fn write(&self, data: &[u8]) -> bool {
        self.write_flags(data, HSE_IO_SYNC)
    }

    fn read(&self, buf: &mut [u8]) -> Result<usize, u32> {
        let mut n = buf.len() as u32;
        let f = self.ecb().ReadClient.unwrap();
        // SAFETY: buf is valid for n bytes.
        if unsafe { f(self.conn(), buf.as_mut_ptr().cast(), &mut n) } != 0 {
            Ok(n as usize)
        } else {
            Err(last_error())
        }
    }

    fn ssf(
        &self,
        request: u32,
        buffer: *mut c_void,
        size: *mut u32,
        data_type: *mut u32,
    ) -> Result<(), u32> {
        let f = self.ecb().ServerSupportFunction.unwrap();
        // SAFETY: callers pass arguments as the request code documents.
        if unsafe { f(self.conn(), request, buffer, size, data_type) } != 0 {
            Ok(())
        } else {
            Err(last_error())
        }
    }

    /// SEND_RESPONSE_HEADER_EX with exact cch values.
    fn headers(&self, status: &str, headers: &str, keep: bool) -> bool {
        let s = CString::new(status).unwrap();
        let h = CString::new(headers).unwrap();
        self.c_headers(&s, &h, keep)
    }

    /// SEND_RESPONSE_HEADER_EX of strings already NUL-terminated (no copy), exact cch values.
    fn c_headers(&self, status: &CStr, headers: &CStr, keep: bool) -> bool {
        let mut info = HSE_SEND_HEADER_EX_INFO {
            pszStatus: status.as_ptr(),
            pszHeader: headers.as_ptr(),
            cchStatus: status.count_bytes() as u32,
            cchHeader: headers.count_bytes() as u32,
            fKeepConn: keep as BOOL,
        };
        self.ssf(
            HSE_REQ_SEND_RESPONSE_HEADER_EX,
            (&mut info as *mut HSE_SEND_HEADER_EX_INFO).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .is_ok()
    }

    fn respond(&self, status: &str, content_type: &str, body: &[u8]) {
        self.headers(
            status,
            &format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            true,
        );
        self.write(body);
    }

    fn done(&self, status: u32) -> Result<(), u32> {
        let mut s = status;
        self.ssf(
            HSE_REQ_DONE_WITH_SESSION,
            (&mut s as *mut u32).cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }

    fn set_completion(&self, f: PFN_HSE_IO_COMPLETION, context: usize) -> Result<(), u32> {
        let f: *mut c_void = f.map_or(std::ptr::null_mut(), |f| f as *mut c_void);
        self.ssf(
            HSE_REQ_IO_COMPLETION,
            f,
            std::ptr::null_mut(),
            context as *mut u32,
        )
    }

    fn query(&self) -> String {
        // SAFETY: lpszQueryString is a NUL-terminated string.
        unsafe { CStr::from_ptr(self.ecb().lpszQueryString) }
            .to_string_lossy()
            .into_owned()
    }

    fn param(&self, name: &str) -> Option<String> {
        self.query().split('&').find_map(|kv| {
            kv.strip_prefix(name)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_string)
        })
    }

    fn num(&self, name: &str, default: u64) -> u64 {
        self.param(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

fn cstr(p: *const std::ffi::c_char) -> String {
    String::from_utf8_lossy(&cbytes(p)).into_owned()
}

/// The bytes of an ECB string (ANSI code page, so not necessarily UTF-8).
fn cbytes(p: *const std::ffi::c_char) -> Vec<u8> {
    if p.is_null() {
        return b"<NULL>".to_vec();
    }
    // SAFETY: the ECB's strings are NUL-terminated.
    unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()
}

/// `\`, CR, LF and non-printables escaped, so that each variable stays on one line.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::new();
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetExtensionVersion(info: *mut HSE_VERSION_INFO) -> BOOL {
    if std::env::var("TEST_EXTENSION_FAIL").is_ok_and(|v| v == "1") {
        return FALSE;
    }
    // SAFETY: the host passes a valid HSE_VERSION_INFO.
    let info = unsafe { &mut *info };
    info.dwExtensionVersion = (HSE_VERSION_MAJOR << 16) | HSE_VERSION_MINOR;
    let desc = b"isapi-wsgi test extension";
    for (d, s) in info
        .lpszExtensionDesc
        .iter_mut()
        .zip(desc.iter().chain(std::iter::once(&0)))
    {
        *d = *s as _;
    }
    TRUE
}

#[unsafe(no_mangle)]
pub unsafe extern "system" fn TerminateExtension(flags: u32) -> BOOL {
    eprintln!("test extension: TerminateExtension({flags})");
    TRUE
}

const ROUTES: &[&str] = &[
    "hello",
    "vars",
    "var",
    "echo",
    "async",
    "async-read",
    "pending",
    "pending-early",
    "transmit",
    "vector",
    "crash",
    "chunked",
    "noframe",
    "flush",
    "big",
    "redirect",
    "old-header",
    "ssf",
    "error",
    "close",
    "sleep",
    "env",
    "stream",
    "gone",
    "violation",
];

#[unsafe(no_mangle)]
pub unsafe extern "system" fn HttpExtensionProc(ecb: *mut EXTENSION_CONTROL_BLOCK) -> u32 {
    // No panic may unwind into the host: a failed route answers HSE_STATUS_ERROR.
    let req = Req(ecb);
    std::panic::catch_unwind(|| route(req)).unwrap_or_else(|_| {
        eprintln!("test extension: a route panicked; returning HSE_STATUS_ERROR");
        HSE_STATUS_ERROR
    })
}

/// Declares `$name` as a completion callback (PFN_HSE_IO_COMPLETION) that runs `$body`
/// with no unwinding into the host.
macro_rules! completion_callback {
    ($name:ident => $body:ident) => {
        unsafe extern "C" fn $name(
            ecb: *mut EXTENSION_CONTROL_BLOCK,
            context: *mut c_void,
            bytes: u32,
            error: u32,
        ) {
            // SAFETY: the host calls this with the arguments of PFN_HSE_IO_COMPLETION.
            let call = || unsafe { $body(ecb, context, bytes, error) };
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(call)).is_err() {
                eprintln!(concat!("test extension: ", stringify!($name), " panicked"));
            }
        }
    };
}

completion_callback!(on_async_write => on_async_write_body);
completion_callback!(on_async_read => on_async_read_body);
completion_callback!(on_transmit => on_transmit_body);
completion_callback!(on_countdown => on_countdown_body);

/// A completion callback that does nothing (for operations whose completion the host drops).
unsafe extern "C" fn on_ignored(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    _context: *mut c_void,
    _bytes: u32,
    _error: u32,
) {
}

/// The URL server variable (without its NUL) and the ECB's lpszPathInfo one after the other:
/// in `room` when they fit, else in `owned`.
fn full_path<'a>(req: &Req, room: &'a mut [u8; 1024], owned: &'a mut Vec<u8>) -> &'a [u8] {
    let f = req.ecb().GetServerVariable.unwrap();
    let mut size = room.len() as u32;
    // SAFETY: room has `size` writable bytes; the name is NUL-terminated.
    let ok = unsafe {
        f(
            req.conn(),
            c"URL".as_ptr() as *mut _,
            room.as_mut_ptr().cast(),
            &mut size,
        )
    };
    let path_info: &[u8] = if req.ecb().lpszPathInfo.is_null() {
        b"<NULL>"
    } else {
        // SAFETY: the ECB's strings are NUL-terminated.
        unsafe { CStr::from_ptr(req.ecb().lpszPathInfo) }.to_bytes()
    };
    let url_len = (size as usize).saturating_sub(1); // without the NUL
    if ok != 0 && url_len + path_info.len() <= room.len() {
        room[url_len..url_len + path_info.len()].copy_from_slice(path_info);
        return &room[..url_len + path_info.len()];
    }
    let mut url = req.var("URL").unwrap_or_default();
    url.pop(); // the NUL
    owned.extend_from_slice(&url);
    owned.extend_from_slice(path_info);
    owned
}

/// Dispatches one request by its route (see the module documentation).
fn route(req: Req) -> u32 {
    // URL followed by PATH_INFO, in a buffer on the stack: the benchmark's /hello costs no
    // allocation here, so that what it measures is the host (a longer path is allocated).
    let mut room = [0u8; 1024];
    let mut owned = Vec::new();
    let full = full_path(&req, &mut room, &mut owned);
    let mut segments = full.split(|&b| b == b'/');
    let route = segments
        .by_ref()
        .find_map(|s| ROUTES.iter().copied().find(|r| r.as_bytes() == s))
        .unwrap_or("vars");
    let rest = String::from_utf8_lossy(segments.next().unwrap_or_default());
    let rest = rest.as_ref();
    match route {
        "hello" => {
            // A fixed block: nothing formatted or copied per request.
            req.c_headers(
                c"200 OK",
                c"Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n",
                true,
            );
            req.write(b"Hello, world!");
            HSE_STATUS_SUCCESS
        }
        "vars" => vars(req),
        "var" => {
            let name = req.query();
            let value = if name.starts_with("UNICODE_") {
                req.wide_var(&name).map(String::into_bytes)
            } else {
                req.var(&name)
            };
            match value {
                Ok(mut v) => {
                    if v.last() == Some(&0) {
                        v.pop();
                    }
                    req.respond("200 OK", "application/octet-stream", &v)
                }
                Err(e) => req.respond(
                    "404 Not Found",
                    "text/plain",
                    format!("error {e}").as_bytes(),
                ),
            }
            HSE_STATUS_SUCCESS
        }
        "echo" => echo(req),
        "async" => async_write(req),
        "async-read" => async_read(req),
        "pending" => {
            let ms = req.num("ms", 20);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                req.respond("200 OK", "text/plain", b"finished on another thread");
                req.done(HSE_STATUS_SUCCESS_AND_KEEP_CONN)
                    .expect("DONE_WITH_SESSION");
            });
            HSE_STATUS_PENDING
        }
        "pending-early" => {
            let t = std::thread::spawn(move || {
                req.respond("200 OK", "text/plain", b"done before return");
                req.done(HSE_STATUS_SUCCESS).expect("DONE_WITH_SESSION");
            });
            t.join().unwrap();
            HSE_STATUS_PENDING
        }
        "transmit" => transmit(req),
        "vector" => vector(req),
        "crash" => crash(req),
        "chunked" => {
            req.headers(
                "200 OK",
                "Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n",
                true,
            );
            for part in ["hello ", "chunked ", "world"] {
                req.write(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
            }
            req.write(b"0\r\n\r\n");
            HSE_STATUS_SUCCESS
        }
        "noframe" => {
            req.headers("200 OK", "Content-Type: text/plain\r\n\r\n", true);
            req.write(b"no length, ");
            req.write(b"so the host closes");
            HSE_STATUS_SUCCESS
        }
        "flush" => {
            req.ssf(
                HSE_REQ_SET_FLUSH_FLAG,
                std::ptr::without_provenance_mut::<c_void>(1), // (LPVOID)TRUE
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .unwrap();
            req.headers(
                "200 OK",
                "Content-Type: text/plain\r\nContent-Length: 15\r\n\r\n",
                true,
            );
            for part in ["part1", "part2", "part3"] {
                req.write(part.as_bytes());
                std::thread::sleep(Duration::from_millis(20));
            }
            HSE_STATUS_SUCCESS
        }
        "big" => {
            let size = req.num("size", 1 << 20) as usize;
            req.headers(
                "200 OK",
                &format!(
                    "Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
                ),
                true,
            );
            let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
            let mut left = size;
            while left > 0 {
                let n = left.min(block.len());
                if !req.write(&block[..n]) {
                    break;
                }
                left -= n;
            }
            HSE_STATUS_SUCCESS
        }
        "redirect" => {
            let target = CString::new("/hello").unwrap();
            let mut size = 6u32;
            req.ssf(
                HSE_REQ_SEND_URL_REDIRECT_RESP,
                target.as_ptr() as *mut c_void,
                &mut size,
                std::ptr::null_mut(),
            )
            .unwrap();
            HSE_STATUS_SUCCESS
        }
        "old-header" => {
            let status = CString::new("201 Created").unwrap();
            let headers =
                CString::new("Content-Type: text/plain\r\nContent-Length: 3\r\n\r\n").unwrap();
            req.ssf(
                HSE_REQ_SEND_RESPONSE_HEADER,
                status.as_ptr() as *mut c_void,
                std::ptr::null_mut(),
                headers.as_ptr() as *mut u32,
            )
            .unwrap();
            req.write(b"old");
            HSE_STATUS_SUCCESS
        }
        "ssf" => ssf(req),
        "error" => HSE_STATUS_ERROR,
        "close" => {
            req.headers(
                "200 OK",
                "Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n",
                true,
            );
            req.ssf(
                HSE_REQ_CLOSE_CONNECTION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .unwrap();
            HSE_STATUS_SUCCESS
        }
        "sleep" => {
            std::thread::sleep(Duration::from_millis(req.num("ms", 100)));
            req.respond("200 OK", "text/plain", b"slept");
            HSE_STATUS_SUCCESS
        }
        "stream" => {
            // "first", then wait until the file `until` exists (the client creates it once it
            // has seen "first"), then "seen!!" or "timeout" (same length, for Content-Length).
            if req.param("flush").is_some_and(|v| v == "1") {
                let on = std::ptr::without_provenance_mut::<c_void>(1);
                let null = std::ptr::null_mut();
                req.ssf(HSE_REQ_SET_FLUSH_FLAG, on, null, null).unwrap();
            }
            req.headers(
                "200 OK",
                "Content-Type: text/plain\r\nContent-Length: 12\r\n\r\n",
                true,
            );
            req.write(b"first");
            let until = std::path::PathBuf::from(req.param("until").unwrap_or_default());
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !until.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            req.write(if until.exists() {
                b"seen!!!"
            } else {
                b"timeout"
            });
            HSE_STATUS_SUCCESS
        }
        "env" => {
            let value = std::env::var(req.query()).unwrap_or_else(|_| "<unset>".into());
            req.respond("200 OK", "text/plain", value.as_bytes());
            HSE_STATUS_SUCCESS
        }
        "gone" => {
            let connected = || {
                let mut b: BOOL = -7;
                let null = std::ptr::null_mut();
                let r = req.ssf(
                    HSE_REQ_IS_CONNECTED,
                    (&mut b as *mut BOOL).cast(),
                    null,
                    null,
                );
                r.map(|()| b)
            };
            let mut answer = connected();
            eprintln!("test extension: gone: IS_CONNECTED {answer:?} while the client waits");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while answer == Ok(TRUE) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
                answer = connected();
            }
            eprintln!("test extension: gone: IS_CONNECTED {answer:?} after the client left");
            req.respond("200 OK", "text/plain", b"too late");
            HSE_STATUS_SUCCESS
        }
        "violation" => violation(req, rest),
        _ => unreachable!(),
    }
}

/// Every documented variable, plain and UNICODE_, then the ECB fields and protocol checks.
const VARIABLES: &[&str] = &[
    "ALL_HTTP",
    "ALL_RAW",
    "APPL_MD_PATH",
    "APPL_PHYSICAL_PATH",
    "APP_POOL_ID",
    "AUTH_PASSWORD",
    "AUTH_TYPE",
    "AUTH_USER",
    "CACHE_URL",
    "CERT_COOKIE",
    "CERT_FLAGS",
    "CERT_ISSUER",
    "CERT_KEYSIZE",
    "CERT_SECRETKEYSIZE",
    "CERT_SERIALNUMBER",
    "CERT_SERVER_ISSUER",
    "CERT_SERVER_SUBJECT",
    "CERT_SUBJECT",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "DOCUMENT_ROOT",
    "GATEWAY_INTERFACE",
    "HTTPS",
    "HTTPS_KEYSIZE",
    "HTTPS_SECRETKEYSIZE",
    "HTTPS_SERVER_ISSUER",
    "HTTPS_SERVER_SUBJECT",
    "HTTP_METHOD",
    "HTTP_URL",
    "HTTP_VERSION",
    "INSTANCE_ID",
    "INSTANCE_META_PATH",
    "INSTANCE_NAME",
    "LOCAL_ADDR",
    "LOGON_USER",
    "MANAGED_PIPELINE_MODE",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_PORT",
    "REMOTE_USER",
    "REQUEST_FILENAME",
    "REQUEST_METHOD",
    "REQUEST_URI",
    "SCRIPT_FILENAME",
    "SCRIPT_NAME",
    "SCRIPT_TRANSLATED",
    "SERVER_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PORT_SECURE",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "UNENCODED_URL",
    "UNMAPPED_REMOTE_USER",
    "URL",
    "HTTP_HOST",
    "HTTP_USER_AGENT",
    "HEADER_Host",
];

fn vars(req: Req) -> u32 {
    let mut out = String::new();
    for name in VARIABLES {
        match req.var(name) {
            Ok(v) => out.push_str(&format!(
                "{name}={}\n",
                escape(v.strip_suffix(&[0]).unwrap_or(&v))
            )),
            Err(e) => out.push_str(&format!("{name}!{e}\n")),
        }
        if !name.starts_with("HTTP_") && !name.starts_with("HEADER_")
            || *name == "HTTP_URL"
            || *name == "HTTP_VERSION"
            || *name == "HTTP_METHOD"
        {
            match req.wide_var(&format!("UNICODE_{name}")) {
                Ok(v) => out.push_str(&format!("UNICODE_{name}={}\n", escape(v.as_bytes()))),
                Err(e) => out.push_str(&format!("UNICODE_{name}!{e}\n")),
            }
        }
    }
    let e = req.ecb();
    out.push_str(&format!(
        "ecb.cbSize={}\necb.dwVersion={:#x}\necb.lpszMethod={}\necb.lpszQueryString={}\necb.lpszPathInfo={}\necb.lpszPathTranslated={}\necb.cbTotalBytes={}\necb.cbAvailable={}\necb.lpszContentType={}\n",
        e.cbSize,
        e.dwVersion,
        cstr(e.lpszMethod),
        cstr(e.lpszQueryString),
        escape(&cbytes(e.lpszPathInfo)),
        escape(&cbytes(e.lpszPathTranslated)),
        e.cbTotalBytes,
        e.cbAvailable,
        cstr(e.lpszContentType),
    ));
    out.push_str(&protocol_checks(req));
    req.respond("200 OK", "text/plain; charset=utf-8", out.as_bytes());
    HSE_STATUS_SUCCESS
}

/// GetServerVariable's buffer protocol, edge case by edge case: one `check.NAME=ok` line
/// each, or `check.NAME=FAIL ...`.
fn protocol_checks(req: Req) -> String {
    let f = req.ecb().GetServerVariable.unwrap();
    let call = |name: &str, buf: *mut u8, size: &mut u32| -> (BOOL, u32) {
        let c = CString::new(name).unwrap();
        // SAFETY: buf is NULL or valid for *size bytes.
        let ok = unsafe { f(req.conn(), c.as_ptr() as *mut _, buf.cast(), size) };
        (ok, if ok == 0 { last_error() } else { 0 })
    };
    let url = req.var("URL").unwrap();
    let need = url.len() as u32;
    let mut lines = String::new();
    let mut check = |name: &str, ok: bool, detail: String| {
        lines.push_str(&format!(
            "check.{name}={}\n",
            if ok {
                "ok".to_string()
            } else {
                format!("FAIL {detail}")
            }
        ));
    };
    let mut size = 0;
    let r = call("URL", std::ptr::null_mut(), &mut size);
    check(
        "size_query",
        r == (FALSE, ERROR_INSUFFICIENT_BUFFER) && size == need,
        format!("{r:?} size {size} need {need}"),
    );
    let mut buf = vec![0xAAu8; need as usize + 8];
    let mut size = need - 1;
    let r = call("URL", buf.as_mut_ptr(), &mut size);
    check(
        "one_short",
        r == (FALSE, ERROR_INSUFFICIENT_BUFFER)
            && size == need
            && buf[need as usize - 1..].iter().all(|&b| b == 0xAA),
        format!("{r:?} size {size}"),
    );
    let mut size = need;
    let r = call("URL", buf.as_mut_ptr(), &mut size);
    check(
        "exact",
        r == (TRUE, 0)
            && size == need
            && buf[..need as usize] == url[..]
            && buf[need as usize] == 0xAA,
        format!("{r:?} size {size}"),
    );
    // Names the server does not know: FALSE with ERROR_INVALID_INDEX.
    for (label, name) in [
        ("unknown", "NO_SUCH_VARIABLE"),
        ("absent_header", "HTTP_X_NOT_SENT_BY_ANYONE"),
        ("unicode_http_invalid", "UNICODE_HTTP_HOST"),
    ] {
        let mut size = 100;
        let r = call(name, buf.as_mut_ptr(), &mut size);
        check(label, r == (FALSE, ERROR_INVALID_INDEX), format!("{r:?}"));
    }
    let wide = req.wide_var("UNICODE_URL").unwrap();
    let mut size = 0;
    let r = call("UNICODE_URL", std::ptr::null_mut(), &mut size);
    let units = wide.encode_utf16().count() as u32;
    check(
        "unicode_size",
        r == (FALSE, ERROR_INSUFFICIENT_BUFFER) && size == 2 * (units + 1),
        format!("{r:?} size {size}"),
    );
    let mut size = 10;
    let r = call("QUERY_STRING", std::ptr::null_mut(), &mut size);
    check("null_buffer_nonzero_size", r.0 == FALSE, format!("{r:?}"));
    lines
}

fn echo(req: Req) -> u32 {
    let e = req.ecb();
    let (total, available) = (e.cbTotalBytes, e.cbAvailable);
    let mut body = Vec::new();
    if available > 0 {
        // SAFETY: lpbData holds cbAvailable bytes.
        body.extend_from_slice(unsafe {
            std::slice::from_raw_parts(e.lpbData, available as usize)
        });
    }
    let mut buf = vec![0u8; 7000]; // an odd size, to cross chunk boundaries
    loop {
        if total != u32::MAX && body.len() as u64 >= total as u64 {
            break;
        }
        match req.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(e) => {
                req.respond(
                    "500 Read Failed",
                    "text/plain",
                    format!("ReadClient failed: {e}").as_bytes(),
                );
                return HSE_STATUS_SUCCESS;
            }
        }
    }
    req.headers(
        "200 OK",
        &format!(
            "Content-Type: application/octet-stream\r\nContent-Length: {}\r\nX-Total-Bytes: {total}\r\nX-Available: {available}\r\n\r\n",
            body.len()
        ),
        true,
    );
    req.write(&body);
    HSE_STATUS_SUCCESS
}

/// State of a chain of asynchronous writes.
struct AsyncWrites {
    req: Req,
    left: u64,
    block: Vec<u8>,
}

unsafe fn on_async_write_body(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    _bytes: u32,
    error: u32,
) {
    // SAFETY: context is the Box<AsyncWrites> leaked in async_write; owned by this chain.
    let state = unsafe { &mut *(context as *mut AsyncWrites) };
    if error != 0 || state.left == 0 {
        let req = state.req;
        // SAFETY: reclaim the box leaked in async_write; no further completion comes.
        drop(unsafe { Box::from_raw(context as *mut AsyncWrites) });
        req.done(if error == 0 {
            HSE_STATUS_SUCCESS_AND_KEEP_CONN
        } else {
            HSE_STATUS_ERROR
        })
        .expect("DONE_WITH_SESSION");
        return;
    }
    state.left -= 1;
    let (req, block) = (state.req, state.block.as_slice());
    req.write_flags(block, HSE_IO_ASYNC);
}

fn async_write(req: Req) -> u32 {
    let n = req.num("n", 4);
    let size = req.num("size", 1000) as usize;
    req.headers(
        "200 OK",
        &format!(
            "Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            n * size as u64
        ),
        true,
    );
    if n == 0 {
        req.done(HSE_STATUS_SUCCESS).unwrap();
        return HSE_STATUS_PENDING;
    }
    let block: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let state = Box::into_raw(Box::new(AsyncWrites {
        req,
        left: n - 1,
        block,
    }));
    req.set_completion(Some(on_async_write), state as usize)
        .unwrap();
    // SAFETY: state is live until the last completion reclaims it.
    let block = unsafe { (*state).block.clone() };
    req.write_flags(&block, HSE_IO_ASYNC);
    HSE_STATUS_PENDING
}

/// A completion callback that crashes on purpose, without the catch_unwind the others have.
unsafe extern "C" fn on_crash(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    _bytes: u32,
    _error: u32,
) {
    if context as usize == 1 {
        panic!("test extension: panic inside an I/O completion callback");
    }
    // SAFETY: none: this is the crash the route asks for, a write through NULL.
    unsafe { std::ptr::null_mut::<u32>().write_volatile(1) };
}

/// `crash?how=segv|panic`: the completion callback of an asynchronous write crashes.
fn crash(req: Req) -> u32 {
    let how = usize::from(req.param("how").is_some_and(|h| h == "panic"));
    req.headers(
        "200 OK",
        "Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n",
        true,
    );
    req.set_completion(Some(on_crash), how).unwrap();
    req.write_flags(b"crash", HSE_IO_ASYNC);
    HSE_STATUS_PENDING
}

struct AsyncRead {
    req: Req,
    body: Vec<u8>,
    buf: Vec<u8>,
}

impl AsyncRead {
    fn next(&mut self) -> Result<(), u32> {
        let mut size = self.buf.len() as u32;
        let mut flags = HSE_IO_ASYNC;
        self.req.ssf(
            HSE_REQ_ASYNC_READ_CLIENT,
            self.buf.as_mut_ptr().cast(),
            &mut size,
            &mut flags,
        )
    }
}

unsafe fn on_async_read_body(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    bytes: u32,
    error: u32,
) {
    // SAFETY: context is the Box<AsyncRead> leaked in async_read.
    let state = unsafe { &mut *(context as *mut AsyncRead) };
    if bytes > 0 && error == 0 {
        let n = bytes as usize;
        let chunk = state.buf[..n].to_vec();
        state.body.extend_from_slice(&chunk);
        if state.next().is_ok() {
            return;
        }
    }
    // SAFETY: reclaim the box; the chain ends here.
    let state = unsafe { Box::from_raw(context as *mut AsyncRead) };
    let req = state.req;
    req.set_completion(None, 0).unwrap();
    req.respond("200 OK", "application/octet-stream", &state.body);
    req.done(HSE_STATUS_SUCCESS_AND_KEEP_CONN).unwrap();
}

fn async_read(req: Req) -> u32 {
    let e = req.ecb();
    let mut body = Vec::new();
    if e.cbAvailable > 0 {
        // SAFETY: lpbData holds cbAvailable bytes.
        body.extend_from_slice(unsafe {
            std::slice::from_raw_parts(e.lpbData, e.cbAvailable as usize)
        });
    }
    let state = Box::into_raw(Box::new(AsyncRead {
        req,
        body,
        buf: vec![0; 5000],
    }));
    req.set_completion(Some(on_async_read), state as usize)
        .unwrap();
    // SAFETY: state is live until the chain reclaims it.
    if unsafe { (*state).next() }.is_err() {
        // SAFETY: no completion will come; reclaim.
        drop(unsafe { Box::from_raw(state) });
        req.respond("500 Error", "text/plain", b"ASYNC_READ_CLIENT failed");
        req.done(HSE_STATUS_SUCCESS).unwrap();
    }
    HSE_STATUS_PENDING
}

/// Context of a TRANSMIT_FILE: the open file and the strings IIS reads until completion.
struct Transmit {
    req: Req,
    _file: Arc<std::fs::File>,
    _status: CString,
    _head: CString,
    _tail: Vec<u8>,
}

unsafe fn on_transmit_body(
    _ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    _bytes: u32,
    error: u32,
) {
    // SAFETY: context is the Box<Transmit> leaked in transmit().
    let t = unsafe { Box::from_raw(context as *mut Transmit) };
    let req = t.req;
    drop(t); // closes the file
    if error != 0 {
        eprintln!("test extension: TRANSMIT_FILE failed with {error}");
    }
    req.done(if error == 0 {
        HSE_STATUS_SUCCESS_AND_KEEP_CONN
    } else {
        HSE_STATUS_ERROR
    })
    .unwrap();
}

/// The one handle per path that `transmit?shared=1` uses, opened the way the TRANSMIT_FILE
/// documentation recommends (FILE_FLAG_SEQUENTIAL_SCAN | FILE_FLAG_OVERLAPPED on Windows)
/// and never closed, so concurrent requests read through the same handle.
fn shared_file(path: &str) -> std::io::Result<Arc<std::fs::File>> {
    static FILES: Mutex<Vec<(String, Arc<std::fs::File>)>> = Mutex::new(Vec::new());
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, f)) = files.iter().find(|(p, _)| p == path) {
        return Ok(f.clone());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        options.custom_flags(0x0800_0000 | 0x4000_0000); // SEQUENTIAL_SCAN | OVERLAPPED
    }
    let file = Arc::new(options.open(path)?);
    files.push((path.to_string(), file.clone()));
    Ok(file)
}

/// A memory element of an HSE_REQ_VECTOR_SEND: `size` bytes of `data` from `offset`.
fn memory_element(data: &[u8], offset: u64, size: u64) -> HSE_VECTOR_ELEMENT {
    HSE_VECTOR_ELEMENT {
        ElementType: HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER,
        pvContext: data.as_ptr() as *mut c_void,
        cbOffset: offset,
        cbSize: size,
    }
}

/// HSE_REQ_VECTOR_SEND with `flags`, the status and header block (NULL when None), and
/// `elements`, synchronously.
fn vector_send(
    req: Req,
    flags: u32,
    status: Option<&str>,
    headers: Option<&str>,
    elements: &mut [HSE_VECTOR_ELEMENT],
) -> Result<(), u32> {
    let status = status.map(|s| CString::new(s).unwrap());
    let headers = headers.map(|h| CString::new(h).unwrap());
    let text = |s: &Option<CString>| {
        s.as_ref()
            .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut _)
    };
    let mut vector = HSE_RESPONSE_VECTOR {
        dwFlags: flags | HSE_IO_SYNC,
        pszStatus: text(&status),
        pszHeaders: text(&headers),
        nElementCount: elements.len() as u32,
        lpElementArray: elements.as_mut_ptr(),
    };
    req.ssf(
        HSE_REQ_VECTOR_SEND,
        (&mut vector as *mut HSE_RESPONSE_VECTOR).cast(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    )
}

/// The `vector` route (see the module documentation).
fn vector(req: Req) -> u32 {
    let file = match req.param("path").map(std::fs::File::open).transpose() {
        Ok(file) => file,
        Err(e) => {
            req.respond("404 Not Found", "text/plain", e.to_string().as_bytes());
            return HSE_STATUS_SUCCESS;
        }
    };
    let file_len = file
        .as_ref()
        .map_or(0, |f| f.metadata().map_or(0, |m| m.len()));
    let (hello, world) = (b"Hello, ", b"[world!]");
    let mut elements = vec![memory_element(hello, 0, hello.len() as u64)];
    if let Some(f) = &file {
        elements.push(HSE_VECTOR_ELEMENT {
            ElementType: HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE,
            pvContext: file_handle(f),
            cbOffset: 0,
            cbSize: 0, // the whole file
        });
    }
    if req.param("bytewise").is_some_and(|v| v == "1") {
        // `world!` one byte an element: more elements than the host checks on its stack.
        elements.extend((1..7).map(|offset| memory_element(world, offset, 1)));
    } else {
        elements.push(memory_element(world, 1, 6));
    }
    let length = hello.len() as u64 + file_len + 6;
    let headers = format!("Content-Type: text/plain\r\nContent-Length: {length}\r\n\r\n");
    let mut flags = HSE_IO_SEND_HEADERS;
    if req.param("final").is_some_and(|v| v == "1") {
        flags |= HSE_IO_FINAL_SEND;
    }
    if let Err(e) = vector_send(req, flags, Some("200 OK"), Some(&headers), &mut elements) {
        let text = format!("HSE_REQ_VECTOR_SEND failed with {e}");
        req.respond("500 Internal Server Error", "text/plain", text.as_bytes());
    }
    HSE_STATUS_SUCCESS
}

/// The HANDLE of `file` as ISAPI passes it (a file descriptor on Unix).
fn file_handle(file: &std::fs::File) -> HANDLE {
    #[cfg(unix)]
    {
        use std::os::unix::io::AsRawFd;
        file.as_raw_fd() as usize as HANDLE
    }
    #[cfg(windows)]
    {
        use std::os::windows::io::AsRawHandle;
        file.as_raw_handle() as HANDLE
    }
}

fn transmit(req: Req) -> u32 {
    let path = req.param("path").unwrap_or_default();
    let offset = req.num("offset", 0) as u32;
    let sync = req.param("sync").is_some_and(|v| v == "1");
    let disconnect = req.param("disconnect").is_some_and(|v| v == "1");
    let shared = req.param("shared").is_some_and(|v| v == "1");
    let opened = if shared {
        shared_file(&path)
    } else {
        std::fs::File::open(&path).map(Arc::new)
    };
    let file = match opened {
        Ok(f) => f,
        Err(e) => {
            req.respond(
                "404 Not Found",
                "text/plain",
                format!("{path}: {e}").as_bytes(),
            );
            return HSE_STATUS_SUCCESS;
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0) as u32;
    // With HSE_IO_SEND_HEADERS, pHead is the header block; the tail follows the file.
    let tail = b"[tail]".to_vec();
    let body_len = len.saturating_sub(offset) + tail.len() as u32;
    let head = CString::new(format!(
        "Content-Type: application/octet-stream\r\nContent-Length: {body_len}\r\n\r\n"
    ))
    .unwrap();
    let status = CString::new("200 OK").unwrap();
    let handle = file_handle(&file);
    let t = Box::into_raw(Box::new(Transmit {
        req,
        _file: file,
        _status: status,
        _head: head,
        _tail: tail,
    }));
    let mut flags = HSE_IO_SEND_HEADERS | if sync { HSE_IO_SYNC } else { HSE_IO_ASYNC };
    if disconnect {
        flags |= HSE_IO_DISCONNECT_AFTER_SEND;
    }
    // SAFETY: t is live until on_transmit (async) or the sync branch below reclaims it.
    let tref = unsafe { &mut *t };
    let mut info = HSE_TF_INFO {
        pfnHseIO: Some(on_transmit),
        pContext: t.cast(),
        hFile: handle,
        pszStatusCode: tref._status.as_ptr(),
        BytesToWrite: 0,
        Offset: offset,
        pHead: tref._head.as_ptr() as *mut c_void,
        HeadLength: tref._head.as_bytes().len() as u32,
        pTail: tref._tail.as_mut_ptr().cast(),
        TailLength: tref._tail.len() as u32,
        dwFlags: flags,
    };
    let result = req.ssf(
        HSE_REQ_TRANSMIT_FILE,
        (&mut info as *mut HSE_TF_INFO).cast(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    if sync {
        // Done when the call returns: no completion comes.
        // SAFETY: reclaim the box leaked above; nothing else refers to it.
        drop(unsafe { Box::from_raw(t) });
        if let Err(e) = result {
            eprintln!("test extension: TRANSMIT_FILE failed with {e}");
            return HSE_STATUS_ERROR;
        }
        return HSE_STATUS_SUCCESS;
    }
    if let Err(e) = result {
        // SAFETY: no completion will come; reclaim.
        drop(unsafe { Box::from_raw(t) });
        req.respond(
            "500 Error",
            "text/plain",
            format!("TRANSMIT_FILE failed: {e}").as_bytes(),
        );
        req.done(HSE_STATUS_SUCCESS).unwrap();
    }
    HSE_STATUS_PENDING
}

/// The other ServerSupportFunction requests, one `name=result` line each.
fn ssf(req: Req) -> u32 {
    let null = std::ptr::null_mut::<u32>();
    let mut out = String::new();
    let mut b: BOOL = -7;
    let r = req.ssf(
        HSE_REQ_IS_KEEP_CONN,
        (&mut b as *mut BOOL).cast(),
        null,
        null,
    );
    out.push_str(&format!("IS_KEEP_CONN={r:?} {b}\n"));
    let mut b: BOOL = -7;
    let r = req.ssf(
        HSE_REQ_IS_CONNECTED,
        (&mut b as *mut BOOL).cast(),
        null,
        null,
    );
    out.push_str(&format!("IS_CONNECTED={r:?} {b}\n"));
    let mut buf = [0u8; 512];
    let url = b"/some/file.txt\0";
    buf[..url.len()].copy_from_slice(url);
    let mut size = buf.len() as u32;
    let r = req.ssf(
        HSE_REQ_MAP_URL_TO_PATH,
        buf.as_mut_ptr().cast(),
        &mut size,
        null,
    );
    let path = CStr::from_bytes_until_nul(&buf)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    out.push_str(&format!("MAP_URL_TO_PATH={r:?} {path} {size}\n"));
    let mut small = [0u8; 4];
    small[..3].copy_from_slice(b"/x\0");
    let mut size = 4u32;
    let r = req.ssf(
        HSE_REQ_MAP_URL_TO_PATH,
        small.as_mut_ptr().cast(),
        &mut size,
        null,
    );
    out.push_str(&format!("MAP_URL_TO_PATH_SMALL={r:?} {size}\n"));
    let mut info = HSE_URL_MAPEX_INFO::default();
    let mut url = *b"/some/file.txt\0";
    let mut size = url.len() as u32;
    let r = req.ssf(
        HSE_REQ_MAP_URL_TO_PATH_EX,
        url.as_mut_ptr().cast(),
        &mut size,
        (&mut info as *mut HSE_URL_MAPEX_INFO).cast(),
    );
    let path: Vec<u8> = info
        .lpszPath
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    out.push_str(&format!(
        "MAP_URL_TO_PATH_EX={r:?} {} flags={:#x} cchMatchingPath={} cchMatchingURL={}\n",
        String::from_utf8_lossy(&path),
        info.dwFlags,
        info.cchMatchingPath,
        info.cchMatchingURL
    ));
    let mut token: HANDLE = 1 as HANDLE;
    let r = req.ssf(
        HSE_REQ_GET_IMPERSONATION_TOKEN,
        (&mut token as *mut HANDLE).cast(),
        null,
        null,
    );
    out.push_str(&format!("GET_IMPERSONATION_TOKEN={r:?} {token:p}\n"));
    let text = CString::new("logparam=1").unwrap();
    let r = req.ssf(
        HSE_APPEND_LOG_PARAMETER,
        text.as_ptr() as *mut c_void,
        null,
        null,
    );
    out.push_str(&format!("APPEND_LOG_PARAMETER={r:?}\n"));
    let reason = CString::new("just testing").unwrap();
    let r = req.ssf(
        HSE_REQ_REPORT_UNHEALTHY,
        reason.as_ptr() as *mut c_void,
        null,
        null,
    );
    out.push_str(&format!("REPORT_UNHEALTHY={r:?}\n"));
    let r = req.ssf(HSE_REQ_EXEC_URL, std::ptr::null_mut(), null, null);
    out.push_str(&format!("EXEC_URL={r:?}\n"));
    let r = req.ssf(9999, std::ptr::null_mut(), null, null);
    out.push_str(&format!("UNKNOWN_9999={r:?}\n"));
    req.respond("200 OK", "text/plain", out.as_bytes());
    HSE_STATUS_SUCCESS
}

/// One deliberate contract violation per kind.
fn violation(req: Req, kind: &str) -> u32 {
    let ok_body = |req: Req| req.respond("200 OK", "text/plain", b"violated");
    match kind {
        "dws-without-pending" => {
            ok_body(req);
            let _ = req.done(HSE_STATUS_SUCCESS);
            HSE_STATUS_SUCCESS
        }
        "dws-twice" => {
            std::thread::spawn(move || {
                ok_body(req);
                let _ = req.done(HSE_STATUS_SUCCESS);
                let _ = req.done(HSE_STATUS_SUCCESS);
            });
            HSE_STATUS_PENDING
        }
        "after-done" => {
            ok_body(req);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                let _ = req.var("URL");
            });
            HSE_STATUS_SUCCESS
        }
        "headers-twice" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "bad-status" => {
            req.headers("OK", "Content-Length: 2\r\n\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "bare-lf" => {
            req.headers(
                "200 OK",
                "Content-Type: text/plain\nContent-Length: 2\r\n\r\n",
                true,
            );
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "cr-in-value" => {
            req.headers("200 OK", "X-Bad: a\rb\r\nContent-Length: 2\r\n\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "no-blank-line" => {
            req.headers("200 OK", "Content-Length: 2\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "cch-mismatch" => {
            let s = CString::new("200 OK").unwrap();
            let h = CString::new("Content-Length: 2\r\n\r\n").unwrap();
            let mut info = HSE_SEND_HEADER_EX_INFO {
                pszStatus: s.as_ptr(),
                pszHeader: h.as_ptr(),
                cchStatus: 3,
                cchHeader: 5,
                fKeepConn: 1,
            };
            let _ = req.ssf(
                HSE_REQ_SEND_RESPONSE_HEADER_EX,
                (&mut info as *mut HSE_SEND_HEADER_EX_INFO).cast(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "write-before-headers" => {
            req.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            HSE_STATUS_SUCCESS
        }
        "short-body" => {
            req.headers("200 OK", "Content-Length: 10\r\n\r\n", true);
            req.write(b"12345");
            HSE_STATUS_SUCCESS
        }
        "vector-headers-without-flag" => {
            // A status and headers, but no HSE_IO_SEND_HEADERS: refused.
            let mut none = [];
            let refused = vector_send(req, 0, Some("200 OK"), Some("\r\n"), &mut none);
            let text = format!("refused: {refused:?}");
            req.respond("200 OK", "text/plain", text.as_bytes());
            HSE_STATUS_SUCCESS
        }
        "vector-empty-buffer" => {
            let mut empty = [memory_element(b"x", 0, 0)];
            let headers = Some("Content-Length: 0\r\n\r\n");
            let refused = vector_send(
                req,
                HSE_IO_SEND_HEADERS,
                Some("200 OK"),
                headers,
                &mut empty,
            );
            let text = format!("refused: {refused:?}");
            req.respond("200 OK", "text/plain", text.as_bytes());
            HSE_STATUS_SUCCESS
        }
        "vector-after-final" => {
            let mut body = [memory_element(b"ok", 0, 2)];
            let headers = Some("Content-Length: 4\r\n\r\n");
            let flags = HSE_IO_SEND_HEADERS | HSE_IO_FINAL_SEND;
            let _ = vector_send(req, flags, Some("200 OK"), headers, &mut body);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "long-body" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.write(b"12345");
            HSE_STATUS_SUCCESS
        }
        "bad-return" => {
            ok_body(req);
            7
        }
        "async-no-callback" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.write_flags(b"ok", HSE_IO_ASYNC);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "no-colon" => {
            req.headers("200 OK", "Content-Length: 2\r\nNoColonHere\r\n\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "bad-name" => {
            req.headers("200 OK", "Bad Name: x\r\nContent-Length: 2\r\n\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        "text-after-blank" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\nX-Late: 1\r\n", true);
            req.write(b"ok");
            HSE_STATUS_SUCCESS
        }
        // The async kinds need the host's completions to wait until HttpExtensionProc has
        // returned, which `--threads 1` guarantees (the one worker is busy running it).
        "async-twice" => async_twice(req),
        "done-while-async" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.set_completion(Some(on_ignored), 0).unwrap();
            req.write_flags(b"ok", HSE_IO_ASYNC);
            let _ = req.done(HSE_STATUS_SUCCESS);
            HSE_STATUS_PENDING
        }
        "end-while-async" => {
            req.headers("200 OK", "Content-Length: 2\r\n\r\n", true);
            req.set_completion(Some(on_ignored), 0).unwrap();
            req.write_flags(b"ok", HSE_IO_ASYNC);
            HSE_STATUS_SUCCESS // not PENDING: the request ends with the write outstanding
        }
        "never-done" => HSE_STATUS_PENDING,
        _ => {
            req.respond(
                "404 Not Found",
                "text/plain",
                format!("no violation called {kind:?}").as_bytes(),
            );
            HSE_STATUS_SUCCESS
        }
    }
}

/// What the completions of `async_twice` share: how many are still to come, and what the
/// host reads from until they have (the file TRANSMIT_FILE sends, the read buffer).
struct Countdown {
    left: std::sync::atomic::AtomicU32,
    _file: std::fs::File,
    buffer: [u8; 16],
}

unsafe fn on_countdown_body(
    ecb: *mut EXTENSION_CONTROL_BLOCK,
    context: *mut c_void,
    _bytes: u32,
    _error: u32,
) {
    use std::sync::atomic::Ordering;
    // SAFETY: context is the Box<Countdown> leaked in async_twice, alive until the last
    // completion reclaims it below.
    let left = unsafe { &(*(context as *const Countdown)).left };
    if left.fetch_sub(1, Ordering::SeqCst) == 1 {
        // SAFETY: the last completion: no one else uses the box any more.
        drop(unsafe { Box::from_raw(context as *mut Countdown) });
        let _ = Req(ecb).done(HSE_STATUS_SUCCESS_AND_KEEP_CONN);
    }
}

/// Starts a second (third, fourth) asynchronous operation while the first is outstanding:
/// WriteClient twice, then HSE_REQ_TRANSMIT_FILE (two bytes of the host's own program
/// file) and HSE_REQ_ASYNC_READ_CLIENT. The last of the four completions ends the session.
fn async_twice(req: Req) -> u32 {
    let file = std::env::current_exe()
        .and_then(std::fs::File::open)
        .expect("the host's program file");
    #[cfg(unix)]
    let handle = {
        use std::os::unix::io::AsRawFd;
        file.as_raw_fd() as usize as HANDLE
    };
    #[cfg(windows)]
    let handle = {
        use std::os::windows::io::AsRawHandle;
        file.as_raw_handle() as HANDLE
    };
    let state = Box::into_raw(Box::new(Countdown {
        left: std::sync::atomic::AtomicU32::new(4),
        _file: file,
        buffer: [0; 16],
    }));
    req.headers("200 OK", "Content-Length: 6\r\n\r\n", true);
    req.set_completion(Some(on_countdown), state as usize)
        .unwrap();
    req.write_flags(b"ok", HSE_IO_ASYNC);
    req.write_flags(b"ok", HSE_IO_ASYNC);
    let mut tf = HSE_TF_INFO {
        pfnHseIO: None, // the registered callback
        pContext: state.cast(),
        hFile: handle,
        pszStatusCode: std::ptr::null(),
        BytesToWrite: 2,
        Offset: 0,
        pHead: std::ptr::null_mut(),
        HeadLength: 0,
        pTail: std::ptr::null_mut(),
        TailLength: 0,
        dwFlags: HSE_IO_ASYNC,
    };
    let null = std::ptr::null_mut();
    req.ssf(
        HSE_REQ_TRANSMIT_FILE,
        (&mut tf as *mut HSE_TF_INFO).cast(),
        null,
        null,
    )
    .unwrap();
    // SAFETY: state lives until the last completion; the host writes the buffer until then.
    let buffer = unsafe { &mut (*state).buffer };
    let mut size = buffer.len() as u32;
    let mut flags = HSE_IO_ASYNC;
    req.ssf(
        HSE_REQ_ASYNC_READ_CLIENT,
        buffer.as_mut_ptr().cast(),
        &mut size,
        &mut flags,
    )
    .unwrap();
    HSE_STATUS_PENDING
}
