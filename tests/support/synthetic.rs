//! A synthetic ISAPI server in the test process: builds real EXTENSION_CONTROL_BLOCKs whose
//! callbacks serve server variables and a body from memory and record everything the
//! extension does (headers, writes, flush, close, DONE_WITH_SESSION), then calls
//! `HttpExtensionProc` directly. Used by the in-process tests and by `benches/bridge.rs`,
//! until (and next to) the end-to-end tests through the real `isapi-host`.
//!
//! A request's ECB lives only for the [`send`] call: tests whose requests may run at once
//! say `handler = simple` (the default combining handler answers `HSE_STATUS_PENDING` for a
//! request that arrives while another thread runs Python, and ends it later).
//!
//! The callbacks are `extern "C"` functions handed to the extension as raw pointers, so
//! this file has `unsafe` code; each block says why it holds.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_void};

use isapi_wsgi::isapi::ffi::*;
// The bridge's FNV-1a: a cheap hash for short names (a server's own table would not use
// SipHash either).
use isapi_wsgi::wsgi::headers::BuildFnv;

/// One request to send.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The URL as sent: path (percent-encoded) and query.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How much of the body is pre-read into lpbData (IIS: up to 48 KiB).
    pub preread: usize,
    /// Send the body as "length unknown" (cbTotalBytes = 0xFFFFFFFF), like a chunked upload.
    pub unknown_length: bool,
    pub protocol: String,
    /// Server variables to add or override (APPL_MD_PATH, SCRIPT_NAME, HTTPS, ...).
    pub vars: Vec<(String, String)>,
    /// Make WriteClient fail after this many successful calls (a client that disconnects).
    pub fail_writes_after: Option<usize>,
    /// Make ReadClient report a closed connection (TRUE, 0 bytes) at once.
    pub disconnect_on_read: bool,
    /// Server variables this server does not have (e.g. ALL_RAW).
    pub missing: Vec<String>,
}

impl Request {
    pub fn get(url: &str) -> Request {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: vec![("Host".into(), "localhost".into())],
            body: Vec::new(),
            preread: 48 * 1024,
            unknown_length: false,
            protocol: "HTTP/1.1".into(),
            vars: Vec::new(),
            fail_writes_after: None,
            disconnect_on_read: false,
            missing: Vec::new(),
        }
    }

    pub fn post(url: &str, content_type: &str, body: &[u8]) -> Request {
        let mut request = Request::get(url);
        request.method = "POST".into();
        request
            .headers
            .push(("Content-Type".into(), content_type.into()));
        request
            .headers
            .push(("Content-Length".into(), body.len().to_string()));
        request.body = body.to_vec();
        request
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A server without the variable `name`.
    pub fn without(mut self, name: &str) -> Request {
        self.missing.push(name.into());
        self
    }

    pub fn var(mut self, name: &str, value: &str) -> Request {
        self.vars.push((name.into(), value.into()));
        self
    }
}

/// What the extension did.
#[derive(Debug, Default)]
pub struct Reply {
    /// HttpExtensionProc's return value.
    pub hse_status: u32,
    /// `200 OK`.
    pub status: String,
    pub headers: Vec<(String, String)>,
    pub keep_conn: bool,
    /// Body bytes as written (still chunked if the response was).
    pub raw_body: Vec<u8>,
    pub header_calls: usize,
    pub flush_requested: bool,
    pub close_requested: bool,
    pub done_calls: usize,
    pub status_code_logged: u32,
}

impl Reply {
    pub fn code(&self) -> u16 {
        self.status
            .get(..3)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with chunked framing removed (and checked).
    pub fn body(&self) -> Vec<u8> {
        if self.header("Transfer-Encoding") == Some("chunked") {
            dechunk(&self.raw_body).expect("valid chunked body")
        } else {
            self.raw_body.clone()
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body()).into_owned()
    }
}

/// Decodes a chunked body; None if the framing is broken or the terminator is missing.
pub fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).ok()?, 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return (raw == b"\r\n").then_some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        if raw.get(size..size + 2)? != b"\r\n" {
            return None;
        }
        raw = &raw[size + 2..];
    }
}

/// The per-request state the callbacks see through ConnID.
struct Connection {
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// Where each variable is in `vars`, by name (and `HEADER_<name>` also by its upper-case
    /// name): a server looks variables up in a table, not by scanning them all.
    by_name: HashMap<Vec<u8>, usize, BuildFnv>,
    /// Benchmarks: record headers and body sizes only, not their parsed contents.
    quiet: bool,
    body: Vec<u8>,
    read_position: usize,
    reply: Reply,
    writes: usize,
    fail_writes_after: Option<usize>,
    disconnect_on_read: bool,
    done: bool,
}

#[cfg(not(windows))]
fn set_error(code: u32) {
    // SAFETY: errno is thread-local; writing it is what SetLastError means off Windows.
    unsafe { *libc::__errno_location() = code as i32 };
}

#[cfg(windows)]
fn set_error(code: u32) {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn SetLastError(code: u32);
    }
    // SAFETY: SetLastError has no preconditions.
    unsafe { SetLastError(code) };
}

/// # Safety
/// `connection` is the ConnID we put in the ECB: a live `*mut Connection`.
unsafe fn conn<'a>(connection: *mut c_void) -> &'a mut Connection {
    // SAFETY: see the function contract; the extension calls back on one thread at a time.
    unsafe { &mut *connection.cast::<Connection>() }
}

unsafe extern "C" fn get_server_variable(
    hconn: HCONN,
    name: *mut c_char,
    buffer: *mut c_void,
    size: *mut u32,
) -> i32 {
    // SAFETY: ConnID is ours; name is NUL-terminated; size points to the buffer's size.
    let (connection, name, size) = unsafe { (conn(hconn), CStr::from_ptr(name), &mut *size) };
    let name = name.to_bytes();
    // HEADER_<name> (IIS 7+): the header exactly as the client named it, in any case.
    let found = connection.by_name.get(name).copied().or_else(|| {
        name.starts_with(b"HEADER_")
            .then(|| connection.by_name.get(&name.to_ascii_uppercase()).copied())
            .flatten()
    });
    let Some((_, value)) = found.map(|index| &connection.vars[index]) else {
        set_error(ERROR_INVALID_INDEX);
        return 0;
    };
    let needed = value.len() + 1;
    if (*size as usize) < needed || buffer.is_null() {
        *size = needed as u32;
        set_error(ERROR_INSUFFICIENT_BUFFER);
        return 0;
    }
    // SAFETY: the buffer has at least `needed` bytes (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), buffer.cast::<u8>(), value.len());
        *buffer.cast::<u8>().add(value.len()) = 0;
    }
    *size = needed as u32;
    1
}

unsafe extern "C" fn write_client(
    hconn: HCONN,
    buffer: *mut c_void,
    bytes: *mut u32,
    _flags: u32,
) -> i32 {
    // SAFETY: ConnID is ours; `bytes` points to the length of `buffer`.
    let (connection, length) = unsafe { (conn(hconn), &mut *bytes) };
    assert!(!connection.done, "WriteClient after DONE_WITH_SESSION");
    if connection
        .fail_writes_after
        .is_some_and(|after| connection.writes >= after)
    {
        set_error(ERROR_CONNECTION_ABORTED);
        return 0;
    }
    connection.writes += 1;
    // SAFETY: the extension passes `length` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), *length as usize) };
    assert!(
        connection.reply.header_calls > 0,
        "WriteClient before the headers"
    );
    if !connection.quiet {
        connection.reply.raw_body.extend_from_slice(data);
    }
    1
}

unsafe extern "C" fn read_client(hconn: HCONN, buffer: *mut c_void, size: *mut u32) -> i32 {
    // SAFETY: ConnID is ours; `size` holds the buffer's size.
    let (connection, size) = unsafe { (conn(hconn), &mut *size) };
    if connection.disconnect_on_read {
        *size = 0;
        return 1;
    }
    let rest = &connection.body[connection.read_position..];
    // Hand out at most 1000 bytes per call: the extension must loop, as with real sockets.
    let take = rest.len().min(*size as usize).min(1000);
    // SAFETY: the buffer has room for `*size` >= `take` bytes.
    unsafe { std::ptr::copy_nonoverlapping(rest.as_ptr(), buffer.cast::<u8>(), take) };
    connection.read_position += take;
    *size = take as u32;
    1
}

unsafe extern "C" fn server_support(
    hconn: HCONN,
    request: u32,
    buffer: *mut c_void,
    _size: *mut u32,
    _kind: *mut u32,
) -> i32 {
    // SAFETY: ConnID is ours.
    let connection = unsafe { conn(hconn) };
    match request {
        HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            // SAFETY: the documented argument: an HSE_SEND_HEADER_EX_INFO.
            let info = unsafe { &*buffer.cast::<HSE_SEND_HEADER_EX_INFO>() };
            // SAFETY: the strings hold cchStatus/cchHeader bytes.
            let (status, headers) = unsafe {
                (
                    std::slice::from_raw_parts(
                        info.pszStatus.cast::<u8>(),
                        info.cchStatus as usize,
                    ),
                    std::slice::from_raw_parts(
                        info.pszHeader.cast::<u8>(),
                        info.cchHeader as usize,
                    ),
                )
            };
            let reply = &mut connection.reply;
            reply.header_calls += 1;
            if connection.quiet {
                return 1;
            }
            reply.status = String::from_utf8_lossy(status).into_owned();
            reply.keep_conn = info.fKeepConn != 0;
            let text = String::from_utf8_lossy(headers).into_owned();
            assert!(
                text.is_empty() || text.ends_with("\r\n\r\n") || text == "\r\n",
                "header block must end with a blank line: {text:?}"
            );
            reply.headers = text
                .split("\r\n")
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let (name, value) = line.split_once(": ").expect("Name: value");
                    (name.to_string(), value.to_string())
                })
                .collect();
            1
        }
        HSE_REQ_SET_FLUSH_FLAG => {
            connection.reply.flush_requested = !buffer.is_null();
            1
        }
        HSE_REQ_IS_CONNECTED => {
            let connected = connection
                .fail_writes_after
                .is_none_or(|after| connection.writes < after);
            // SAFETY: the documented argument: a BOOL to fill.
            unsafe { *buffer.cast::<i32>() = i32::from(connected) };
            1
        }
        HSE_REQ_CLOSE_CONNECTION => {
            connection.reply.close_requested = true;
            1
        }
        HSE_REQ_DONE_WITH_SESSION => {
            connection.reply.done_calls += 1;
            connection.done = true;
            1
        }
        _ => {
            set_error(ERROR_INVALID_PARAMETER);
            0
        }
    }
}

/// The server variables IIS would give for `request` (wildcard mapping at the site root).
fn variables(request: &Request) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (path, query) = request.url.split_once('?').unwrap_or((&request.url, ""));
    let decoded = String::from_utf8_lossy(&percent_decode(path.as_bytes())).into_owned();
    let mut raw = String::new();
    for (name, value) in &request.headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    // As IIS: one ALL_HTTP line and one HEADER_<name> per header name (case-insensitive),
    // a repeated header's values joined with ','.
    let mut grouped: Vec<(String, String)> = Vec::new();
    for (name, value) in &request.headers {
        match grouped
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(value);
            }
            None => grouped.push((name.clone(), value.clone())),
        }
    }
    let mut all_http = String::new();
    for (name, value) in &grouped {
        all_http.push_str(&format!(
            "HTTP_{}:{value}\n",
            name.to_ascii_uppercase().replace('-', "_")
        ));
    }
    let by_name = grouped
        .iter()
        .map(|(name, value)| (format!("HEADER_{name}"), value.clone()));
    let content_type = request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    let mut vars: Vec<(String, String)> = vec![
        ("REQUEST_METHOD".into(), request.method.clone()),
        ("QUERY_STRING".into(), query.into()),
        ("HTTP_URL".into(), request.url.clone()),
        ("URL".into(), decoded.clone()),
        ("PATH_INFO".into(), decoded.clone()),
        ("SCRIPT_NAME".into(), decoded),
        ("APPL_MD_PATH".into(), "/LM/W3SVC/1/ROOT".into()),
        ("SERVER_NAME".into(), "localhost".into()),
        ("SERVER_PORT".into(), "80".into()),
        ("SERVER_PROTOCOL".into(), request.protocol.clone()),
        ("SERVER_SOFTWARE".into(), "synthetic".into()),
        ("REMOTE_ADDR".into(), "127.0.0.1".into()),
        ("REMOTE_PORT".into(), "50000".into()),
        ("HTTPS".into(), "off".into()),
        ("REMOTE_USER".into(), "".into()),
        ("AUTH_TYPE".into(), "".into()),
        ("ALL_RAW".into(), raw),
        ("ALL_HTTP".into(), all_http),
        ("CONTENT_TYPE".into(), content_type.unwrap_or_default()),
    ];
    vars.extend(by_name);
    vars.retain(|(name, _)| !request.missing.contains(name));
    // The request's own entries replace the defaults.
    for (name, value) in &request.vars {
        vars.retain(|(n, _)| n != name);
        vars.push((name.clone(), value.clone()));
    }
    vars.into_iter()
        .map(|(n, v)| (n.into_bytes(), v.into_bytes()))
        .collect()
}

fn index_by_name(vars: &[(Vec<u8>, Vec<u8>)]) -> HashMap<Vec<u8>, usize, BuildFnv> {
    let mut by_name = HashMap::with_hasher(BuildFnv);
    for (index, (name, _)) in vars.iter().enumerate() {
        by_name.entry(name.clone()).or_insert(index);
    }
    for (index, (name, _)) in vars.iter().enumerate() {
        if name.starts_with(b"HEADER_") {
            by_name.entry(name.to_ascii_uppercase()).or_insert(index);
        }
    }
    by_name
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && i + 2 < raw.len()
            && let (Some(high), Some(low)) = (hex(raw[i + 1]), hex(raw[i + 2]))
        {
            out.push(high << 4 | low);
            i += 3;
            continue;
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A prepared request: the ECB and its connection, reusable for benchmarks.
pub struct Prepared {
    connection: Box<Connection>,
    strings: Vec<CString>,
    ecb: Box<EXTENSION_CONTROL_BLOCK>,
    preread: usize,
}

impl Prepared {
    pub fn new(request: &Request) -> Prepared {
        let vars = variables(request);
        let by_name = index_by_name(&vars);
        let connection = Box::new(Connection {
            vars,
            by_name,
            quiet: false,
            body: request.body.clone(),
            read_position: 0,
            reply: Reply::default(),
            writes: 0,
            fail_writes_after: request.fail_writes_after,
            disconnect_on_read: request.disconnect_on_read,
            done: false,
        });
        let text = |name: &str| {
            let value = connection
                .vars
                .iter()
                .find(|(n, _)| n == name.as_bytes())
                .map(|(_, v)| v.clone());
            CString::new(value.unwrap_or_default()).unwrap()
        };
        let strings = vec![
            text("REQUEST_METHOD"),
            text("QUERY_STRING"),
            text("PATH_INFO"),
            text("CONTENT_TYPE"),
            text("PATH_TRANSLATED"),
        ];
        let preread = request.preread.min(request.body.len());
        let mut prepared = Prepared {
            connection,
            strings,
            ecb: Box::default(),
            preread,
        };
        prepared.reset(request.unknown_length);
        prepared
    }

    fn reset(&mut self, unknown_length: bool) {
        let connection: *mut Connection = &mut *self.connection;
        let body_length = self.connection.body.len();
        self.connection.read_position = self.preread;
        self.connection.reply = Reply::default();
        self.connection.writes = 0;
        self.connection.done = false;
        *self.ecb = EXTENSION_CONTROL_BLOCK {
            cbSize: size_of::<EXTENSION_CONTROL_BLOCK>() as u32,
            dwVersion: 8 << 16,
            ConnID: connection.cast(),
            dwHttpStatusCode: 200,
            lpszLogData: [0; 80],
            lpszMethod: self.strings[0].as_ptr() as *mut c_char,
            lpszQueryString: self.strings[1].as_ptr() as *mut c_char,
            lpszPathInfo: self.strings[2].as_ptr() as *mut c_char,
            lpszPathTranslated: self.strings[4].as_ptr() as *mut c_char,
            cbTotalBytes: if unknown_length {
                u32::MAX
            } else {
                body_length as u32
            },
            cbAvailable: self.preread as u32,
            lpbData: self.connection.body.as_mut_ptr(),
            lpszContentType: self.strings[3].as_ptr() as *mut c_char,
            GetServerVariable: Some(get_server_variable),
            WriteClient: Some(write_client),
            ReadClient: Some(read_client),
            ServerSupportFunction: Some(server_support),
        };
    }

    /// Runs the request through `proc` (HttpExtensionProc) and returns what happened.
    pub fn run(
        &mut self,
        proc: unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32,
    ) -> Reply {
        let unknown = self.ecb.cbTotalBytes == u32::MAX;
        self.reset(unknown);
        self.connection.quiet = false;
        // SAFETY: the ECB and its connection live in `self` for the whole call.
        let status = unsafe { proc(&mut *self.ecb) };
        let mut reply = std::mem::take(&mut self.connection.reply);
        reply.hse_status = status;
        reply.status_code_logged = self.ecb.dwHttpStatusCode;
        reply
    }

    /// Runs the request and throws the reply away (benchmarks).
    pub fn run_quiet(
        &mut self,
        proc: unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32,
    ) -> u32 {
        // Record nothing but counts: the harness's own bookkeeping stays out of the figures.
        self.connection.quiet = true;
        self.connection.read_position = self.preread;
        self.connection.reply.raw_body.clear();
        self.connection.reply.header_calls = 0;
        self.connection.writes = 0;
        // SAFETY: the ECB and its connection live in `self` for the whole call.
        unsafe { proc(&mut *self.ecb) }
    }
}

/// Sends one request through `HttpExtensionProc`.
pub fn send(request: &Request) -> Reply {
    Prepared::new(request).run(isapi_wsgi::HttpExtensionProc)
}

/// Calls `GetExtensionVersion` once per process with the configuration file `ini`.
pub fn start(ini: &std::path::Path) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        // SAFETY: set before any other thread of this test process reads the environment
        // (the first test to get here does it, under the Once).
        unsafe { std::env::set_var("ISAPI_WSGI_CONFIG", ini) };
        let mut info = HSE_VERSION_INFO {
            dwExtensionVersion: 0,
            lpszExtensionDesc: [0; 256],
        };
        // SAFETY: a valid, writable HSE_VERSION_INFO.
        let ok = unsafe { isapi_wsgi::GetExtensionVersion(&mut info) };
        assert_eq!(ok, 1, "GetExtensionVersion must always succeed");
        assert_eq!(info.dwExtensionVersion >> 16, 8);
    });
}

/// Once per process: makes the scratch directory `name`, writes the configuration that
/// `ini` returns for it (given the directory), and starts the extension with it. Returns
/// the directory. Safe to call from every test of a file, concurrently.
pub fn start_once(name: &str, ini: impl FnOnce(&std::path::Path) -> String) -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = scratch_dir(name);
        let path = dir.join("isapi_wsgi.ini");
        std::fs::write(&path, ini(&dir)).unwrap();
        start(&path);
        dir
    })
    .clone()
}

/// A command that runs the ignored test `test` of this test binary alone, in a fresh
/// process: an interpreter starts once per process, so each configuration (or each Python)
/// a parent test tries gets its own child. Add `.env(...)` and run it with `.output()`.
pub fn child_test(test: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--ignored",
        "--exact",
        test,
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

/// What a child test printed: its stdout, then its stderr, as text.
pub fn child_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A scratch directory for this test process.
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("isapi-wsgi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The repository's tests/apps directory.
pub fn apps_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("apps");
    if cfg!(windows) && dir.starts_with("/") {
        // Built on Linux, running under wine: the Linux root is drive Z:.
        return std::path::PathBuf::from(format!("Z:{}", dir.display()).replace('/', "\\"));
    }
    dir
}

/// `[python]` lines choosing the interpreter: `home = $ISAPI_WSGI_TEST_PYTHON_HOME` when set
/// (required on Windows, where there is no build-time default), else nothing.
pub fn python_home_line() -> String {
    match std::env::var("ISAPI_WSGI_TEST_PYTHON_HOME") {
        Ok(home) if !home.is_empty() => format!("home = {home}\n"),
        _ => String::new(),
    }
}
