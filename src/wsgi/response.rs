//! The response side of PEP 3333: `start_response`, the `write()` callable, the body
//! iteration, and how the bytes are framed on the wire.
//!
//! [`Response`] is what the application receives as `start_response` (a callable object
//! with a `write` method). It validates what the application passes (status `"200 OK"`,
//! headers as a list of `(str, str)` tuples, latin-1, no CR/LF, no hop-by-hop headers),
//! applies the `exc_info` rules, and holds the headers back until the first non-empty piece
//! of body (or the end), as the PEP requires.
//!
//! Framing, decided when the headers go out (IIS never frames an ISAPI response for us):
//! * no body for HEAD, 1xx, 204 and 304;
//! * the application's own Content-Length is honoured; a body that turns out shorter or
//!   longer is logged, cut at the declared length, and the connection closed;
//! * when the whole body is known at that moment (the end was reached, e.g. a one-item
//!   list), Content-Length is added;
//! * otherwise HTTP/1.1 clients get `Transfer-Encoding: chunked` (and IIS is asked to flush
//!   each write), HTTP/1.0 clients get the body followed by a closed connection.
use std::ffi::CString;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::isapi::ecb::{Ecb, IoError};
use crate::log;
use crate::python::{Args, Exception, Gil, Kind, Native, PyErr, PyRef, PyResult, PyStatic};

/// Headers an application must not set (PEP 3333: hop-by-hop headers belong to the server).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
];

/// Writes up to this size are assumed to land in IIS's response buffer without blocking.
const BUFFERED_WRITE: usize = 256 * 1024;

/// `start_response` and the state of one response.
pub struct Response {
    ecb: Arc<Ecb>,
    /// HEAD request: headers only.
    head: bool,
    /// The client speaks HTTP/1.1 (chunked encoding available).
    http11: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `200 OK`, as validated bytes, and its code.
    status: Option<(Vec<u8>, u16)>,
    /// The header block, `Name: value\r\n` lines, as validated bytes.
    headers: Vec<u8>,
    /// The application's Content-Length.
    content_length: Option<u64>,
    /// The headers have gone to the client.
    sent: bool,
    framing: Framing,
    /// Body bytes sent (or, without a body, that would have been).
    body_bytes: u64,
    /// The connection may stay open after this response.
    keep_conn: bool,
    /// Writing failed (client gone) or the body broke its framing: stop and close.
    broken: bool,
    /// IIS was asked to flush each write (a streamed body): writes may block.
    flushing: bool,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
enum Framing {
    #[default]
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The status line and header block, ready to go.
struct Head {
    status: CString,
    headers: CString,
    /// More body will follow later: ask IIS to flush each write.
    streaming: bool,
}

/// Why the body could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// The application broke the protocol (no start_response, or a bad body item): a
    /// Python exception to report.
    Application(String),
    /// The client went away or the framing broke; the connection is closed.
    Aborted(String),
}

/// How a finished response went, for the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub keep_conn: bool,
    pub aborted: bool,
}

impl Response {
    /// A response to the request `ecb`, whose method and protocol the caller read already.
    pub fn new(ecb: Arc<Ecb>, head: bool, http11: bool) -> Response {
        Response {
            ecb,
            head,
            http11,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether the headers have gone out.
    pub fn headers_sent(&self) -> bool {
        self.lock().sent
    }

    /// Whether start_response has been called (and not been undone by an error page).
    pub fn started(&self) -> bool {
        self.lock().status.is_some()
    }

    /// Sends `data` as the next piece of the body; `last` says it is the end (then an empty
    /// `data` just finishes the response). Headers go out with the first non-empty piece.
    /// All I/O of one call (headers, the framed piece, the end of the body) happens in one
    /// stretch without the GIL.
    pub fn send(&self, gil: Gil<'_>, data: &[u8], last: bool) -> Result<(), SendError> {
        let mut state = self.lock();
        if state.broken {
            return Err(SendError::Aborted(
                "the response was already aborted".into(),
            ));
        }
        let head = if state.sent {
            None
        } else if state.status.is_none() {
            return Err(SendError::Application(
                "the application returned a body without calling start_response()".into(),
            ));
        } else if data.is_empty() && !last {
            return Ok(());
        } else {
            Some(self.prepare_headers(&mut state, last.then_some(data.len() as u64)))
        };
        let (body, overflow) = self.frame(&mut state, data, last);
        let ecb = &self.ecb;
        let keep_conn = state.keep_conn;
        let io = || {
            if let Some(head) = &head {
                if head.streaming {
                    // IIS 7+ buffers ISAPI output unless told otherwise; a streamed body must move.
                    ecb.set_flush(true);
                }
                ecb.send_headers(&head.status, &head.headers, keep_conn)?;
            }
            if !body.is_empty() {
                ecb.write(&body)?;
            }
            Ok::<(), IoError>(())
        };
        // A response sent in one go lands in IIS's response buffer (IIS 7+ buffers ISAPI
        // output up to 4 MB unless the flush flag is set): the call does not block, and
        // releasing the GIL would cost more than it saves. Streamed or large bodies go to
        // the socket and may block: other threads get the GIL meanwhile.
        let may_block = state.flushing || body.len() > BUFFERED_WRITE;
        let written = if may_block {
            gil.allow_threads(io)
        } else {
            io()
        };
        if let Err(error) = written {
            state.broken = true;
            state.keep_conn = false;
            return Err(SendError::Aborted(format!(
                "writing the response failed ({error}): the client is gone"
            )));
        }
        if let Some(message) = overflow.or_else(|| {
            if last {
                self.check_length(&state)
            } else {
                None
            }
        }) {
            state.broken = true;
            state.keep_conn = false;
            log::line(&message);
            self.ecb.close_connection();
            return Err(SendError::Aborted(message));
        }
        Ok(())
    }

    /// Decides the framing and builds the header block (no I/O).
    fn prepare_headers(&self, state: &mut State, whole_body: Option<u64>) -> Head {
        let (status, code) = match &mut state.status {
            Some((line, code)) => (std::mem::take(line), *code),
            None => (b"500 Internal Server Error".to_vec(), 500),
        };
        let bodiless_status = (100..200).contains(&code) || code == 204 || code == 304;
        let mut headers = std::mem::take(&mut state.headers);
        state.framing = if let Some(length) = state.content_length {
            if bodiless_status {
                Framing::NoBody
            } else {
                Framing::Length(length)
            }
        } else if let Some(length) = whole_body.filter(|_| !bodiless_status) {
            headers.extend_from_slice(b"Content-Length: ");
            let _ = std::io::Write::write_fmt(&mut headers, format_args!("{length}"));
            headers.extend_from_slice(b"\r\n");
            Framing::Length(length)
        } else if bodiless_status || self.head {
            Framing::NoBody
        } else if self.http11 {
            headers.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            Framing::Chunked
        } else {
            Framing::UntilClose
        };
        state.keep_conn = state.framing != Framing::UntilClose;
        if self.head {
            // The length the body would have had is announced; no byte of it is sent.
            state.framing = Framing::NoBody;
        }
        headers.extend_from_slice(b"\r\n\0");
        let mut status = status;
        status.push(0);
        state.sent = true;
        self.ecb.set_status_code(code);
        let streaming = whole_body.is_none() && state.framing != Framing::NoBody;
        state.flushing = streaming;
        // Validation let no NUL through, so these cannot fail.
        let status = CString::from_vec_with_nul(status).unwrap_or_default();
        let headers = CString::from_vec_with_nul(headers).unwrap_or_default();
        Head {
            status,
            headers,
            streaming,
        }
    }

    /// The bytes to write for `data` under the chosen framing (with the chunked terminator
    /// when `last`), and a message if the application overran its Content-Length.
    fn frame<'d>(
        &self,
        state: &mut State,
        data: &'d [u8],
        last: bool,
    ) -> (std::borrow::Cow<'d, [u8]>, Option<String>) {
        use std::borrow::Cow;
        let before = state.body_bytes;
        state.body_bytes += data.len() as u64;
        match state.framing {
            Framing::NoBody => (Cow::Borrowed(&[]), None),
            Framing::Length(length) => {
                let room = length.saturating_sub(before);
                if data.len() as u64 <= room {
                    (Cow::Borrowed(data), None)
                } else {
                    let message = format!(
                        "the application sent more than its Content-Length of {length} bytes; the rest was not sent and the connection is closed"
                    );
                    (Cow::Borrowed(&data[..room as usize]), Some(message))
                }
            }
            Framing::Chunked => {
                let mut chunk = Vec::with_capacity(data.len() + 20);
                if !data.is_empty() {
                    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    chunk.extend_from_slice(data);
                    chunk.extend_from_slice(b"\r\n");
                }
                if last {
                    chunk.extend_from_slice(b"0\r\n\r\n");
                }
                (Cow::Owned(chunk), None)
            }
            Framing::UntilClose => (Cow::Borrowed(data), None),
        }
    }

    /// At the end of the body: a message if it fell short of the declared Content-Length.
    fn check_length(&self, state: &State) -> Option<String> {
        match (state.framing, state.content_length) {
            (Framing::Length(length), _) if state.body_bytes < length => Some(format!(
                "the application's body ended after {} of the {length} bytes its Content-Length announced; the connection is closed",
                state.body_bytes
            )),
            (Framing::NoBody, Some(length)) if self.head && state.body_bytes > length => {
                log::line(&format!(
                    "the application's HEAD body is longer than its Content-Length ({length})"
                ));
                None
            }
            _ => None,
        }
    }

    /// Replaces whatever the application started with an error page (only before the
    /// headers went out).
    pub fn send_error_page(
        &self,
        gil: Gil<'_>,
        status: &str,
        body: &[u8],
    ) -> Result<(), SendError> {
        {
            let mut state = self.lock();
            if state.sent {
                return Err(SendError::Aborted("headers already sent".into()));
            }
            state.status = Some((
                status.as_bytes().to_vec(),
                status[..3].parse().unwrap_or(500),
            ));
            state.headers = b"Content-Type: text/html; charset=utf-8\r\n".to_vec();
            state.content_length = None;
        }
        self.send(gil, body, true)
    }

    /// Gives up on a response whose headers went out: the connection is closed so the client
    /// sees an incomplete response rather than a complete-looking wrong one.
    pub fn abort(&self) {
        let mut state = self.lock();
        state.broken = true;
        state.keep_conn = false;
        self.ecb.close_connection();
    }

    /// The result, once the body is done (or abandoned).
    pub fn outcome(&self) -> Outcome {
        let state = self.lock();
        let status = state.status.as_ref().map_or(500, |(_, code)| *code);
        Outcome {
            status,
            keep_conn: state.keep_conn && !state.broken,
            aborted: state.broken,
        }
    }

    /// Whether the client is still there (checked between empty body pieces).
    pub fn client_connected(&self) -> bool {
        self.ecb.is_connected()
    }

    /// start_response(status, response_headers, exc_info=None).
    fn start<'py>(&self, gil: Gil<'py>, args: &Args<'py>) -> PyResult<'py, ()> {
        let type_error = |message: &str| PyErr::new(gil, Exception::TypeError, message);
        if args.has_keywords_besides(&[c"exc_info"]) || args.len() > 3 {
            return Err(type_error(
                "start_response(status, response_headers, exc_info=None)",
            ));
        }
        let status = args
            .get(0)
            .ok_or_else(|| type_error("start_response() missing the status"))?;
        let headers = args
            .get(1)
            .ok_or_else(|| type_error("start_response() missing response_headers"))?;
        let exc_info = args
            .get(2)
            .or_else(|| args.keyword(c"exc_info"))
            .filter(|e| !e.is_none());

        let mut state = self.lock();
        if let Some(exc_info) = &exc_info {
            if state.sent {
                // PEP 3333: too late to change the response; re-raise the application's error.
                drop(state);
                return Err(PyErr::from_exc_info(exc_info)?);
            }
        } else if state.status.is_some() {
            return Err(PyErr::new(
                gil,
                Exception::AssertionError,
                "start_response() was already called; pass exc_info to call it again",
            ));
        }

        let (status_line, code) = validate_status(gil, &status)?;
        let (block, content_length) = validate_headers(gil, &headers)?;
        state.status = Some((status_line, code));
        state.headers = block;
        state.content_length = content_length;
        Ok(())
    }
}

fn validate_status<'py>(gil: Gil<'py>, status: &PyRef<'py>) -> PyResult<'py, (Vec<u8>, u16)> {
    if status.kind() != Kind::Str {
        return Err(PyErr::new(
            gil,
            Exception::TypeError,
            "the status must be a str, like '200 OK'",
        ));
    }
    let bytes = status.latin1_bytes().map_err(|_| {
        PyErr::new(
            gil,
            Exception::ValueError,
            "the status must be latin-1 text",
        )
    })?;
    let valid = bytes.len() >= 5
        && bytes[..3].iter().all(u8::is_ascii_digit)
        && bytes[0] != b'0'
        && bytes[3] == b' '
        && bytes[4..].iter().all(|&b| b >= 0x20 && b != 0x7f);
    if !valid {
        let message = format!(
            "invalid status '{}': it must be a 3-digit code, a space and a reason phrase, like '200 OK'",
            status.text()
        );
        return Err(PyErr::new(gil, Exception::ValueError, &message));
    }
    let code = std::str::from_utf8(&bytes[..3])
        .ok()
        .and_then(|code| code.parse().ok())
        .unwrap_or(500);
    Ok((bytes, code))
}

/// The header block, and the Content-Length the application declared.
fn validate_headers<'py>(
    gil: Gil<'py>,
    headers: &PyRef<'py>,
) -> PyResult<'py, (Vec<u8>, Option<u64>)> {
    if headers.kind() != Kind::List {
        return Err(PyErr::new(
            gil,
            Exception::TypeError,
            "response_headers must be a list of (name, value) tuples",
        ));
    }
    let mut block = Vec::with_capacity(128);
    let mut content_length = None;
    for index in 0..headers.len()? {
        let pair = headers.get_index(index)?;
        if pair.kind() != Kind::Tuple || pair.len()? != 2 {
            return Err(PyErr::new(
                gil,
                Exception::TypeError,
                "each response header must be a (name, value) tuple",
            ));
        }
        let (name, value) = (pair.get_index(0)?, pair.get_index(1)?);
        if name.kind() != Kind::Str || value.kind() != Kind::Str {
            let message = format!("header names and values must be str, got {}", pair.text());
            return Err(PyErr::new(gil, Exception::TypeError, &message));
        }
        let invalid = |what: &str| {
            let message = format!("invalid response header {}: {what}", pair.text());
            PyErr::new(gil, Exception::ValueError, &message)
        };
        // Straight into the header block, then checked there (no copies).
        let start = block.len();
        name.with_latin1(|bytes| block.extend_from_slice(bytes))
            .map_err(|_| invalid("not latin-1"))?;
        let name_end = block.len();
        block.extend_from_slice(b": ");
        let value_start = block.len();
        value
            .with_latin1(|bytes| block.extend_from_slice(bytes))
            .map_err(|_| invalid("not latin-1"))?;
        let (name_bytes, value_bytes) = (&block[start..name_end], &block[value_start..]);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name_bytes.is_empty() || !name_bytes.iter().all(token) {
            return Err(invalid(
                "the name must be a token (letters, digits, '-', ...)",
            ));
        }
        if value_bytes
            .iter()
            .any(|&b| b == b'\r' || b == b'\n' || b == 0)
        {
            return Err(invalid("CR, LF or NUL in the value"));
        }
        if HOP_BY_HOP
            .iter()
            .any(|hop| hop.as_bytes().eq_ignore_ascii_case(name_bytes))
        {
            let message = format!(
                "{} is a hop-by-hop header, which only the server may set (PEP 3333)",
                name.text()
            );
            return Err(PyErr::new(gil, Exception::AssertionError, &message));
        }
        if name_bytes.eq_ignore_ascii_case(b"content-length") {
            let digits = value_bytes.trim_ascii();
            let length = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or_else(|| invalid("Content-Length is not a number"))?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(invalid("a second, different Content-Length"));
            }
            content_length = Some(length);
        }
        block.extend_from_slice(b"\r\n");
    }
    Ok((block, content_length))
}

impl Native for Response {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.StartResponse";
    const METHODS: &'static [crate::python::Method<Self>] = &[crate::python::Method {
        name: c"write",
        // write(data): the imperative API, sent at once.
        body: |response, gil, args, _this| {
            let data = args.get(0).ok_or_else(|| {
                PyErr::new(
                    gil,
                    Exception::TypeError,
                    "write() takes one bytes argument",
                )
            })?;
            let Some(bytes) = data.as_bytes() else {
                return Err(PyErr::new(
                    gil,
                    Exception::TypeError,
                    "write() takes bytes, not str or other types",
                ));
            };
            match response.send(gil, bytes, false) {
                Ok(()) => Ok(gil.none()),
                Err(SendError::Application(message)) => {
                    Err(PyErr::new(gil, Exception::AssertionError, &message))
                }
                Err(SendError::Aborted(message)) => {
                    Err(PyErr::new(gil, Exception::OSError, &message))
                }
            }
        },
    }];
    const CALLABLE: bool = true;

    /// start_response(...) returns the `write` callable.
    fn call<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        self.start(gil, &args)?;
        static WRITE: OnceLock<PyStatic> = OnceLock::new();
        let name = match WRITE.get() {
            Some(name) => name.bind(gil),
            None => {
                let name = gil.interned(c"write")?;
                let _ = WRITE.set(name.clone().into_static());
                name
            }
        };
        this.getattr_object(&name)
    }
}
