//! The response side of PEP 3333: `start_response`, the `write()` callable, and sending
//! the body. What the bytes on the wire look like is decided in [`super::framing`];
//! this module is the thin part that talks to Python and to the ECB.
//!
//! [`Response`] is what the application receives as `start_response` (a callable object
//! with a `write` method). It checks the Python types the application passes (a `str`
//! status, a list of `(str, str)` tuples, latin-1 text), applies the `exc_info` rules, and
//! holds the headers back until the first non-empty piece of body (or the end), as the PEP
//! requires.
//!
//! Threads and locks. The request's thread sends the body, but the application may also
//! call `write()` from a thread of its own. The state sits behind a mutex that is only ever
//! held for bookkeeping: never across I/O, never while the GIL is released or taken. A
//! write that may block releases the GIL; meanwhile another thread's `write()` finds the
//! response busy and waits for its turn with the GIL released too, so nobody waits for the
//! GIL while holding something its holder needs. (docs/bridge.md, "Locks and the GIL".)
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use super::exceptions::ClientError;
use super::file_wrapper::FileRange;
use super::framing::{
    self, Body, Framing, Head, HeaderBlock, HeaderError, Mismatch, Request, StatusError,
};
use crate::client_wait::WaitingForClient;
use crate::isapi::ecb::{Ecb, IoError};
use crate::isapi::ffi::ERROR_INVALID_PARAMETER;
use crate::log;
use crate::page::Page;
use crate::python::{Args, Exception, Gil, Kind, Native, PyErr, PyRef, PyResult, PyStatic};
use crate::request_id::RequestId;

/// Why a write after the end fails.
pub const COMPLETE: &str = "the response is complete: nothing more can be written";

/// Writes up to this size are assumed to land in IIS's response buffer without blocking.
const BUFFERED_WRITE: usize = 256 * 1024;

/// The server refused HSE_REQ_VECTOR_SEND once (it has no such call): from then on the
/// headers and the body go out as two calls, as they must on IIS 5.
static VECTOR_SEND_REFUSED: AtomicBool = AtomicBool::new(false);

/// `start_response` and the state of one response.
pub struct Response {
    ecb: Arc<Ecb>,
    request: Request,
    /// The request's id, for log lines.
    id: RequestId,
    /// Send it as `X-Request-Id` (unless the application sets that header itself).
    id_header: bool,
    state: Mutex<State>,
    /// Signalled when a thread's turn to write ends.
    turn_ended: Condvar,
}

#[derive(Default)]
struct State {
    /// What start_response was given: the status line, its code, the headers.
    started: Option<(Vec<u8>, u16, HeaderBlock)>,
    /// The code of the status sent (or about to be).
    code: Option<u16>,
    /// Set once the headers are on their way: the body's framing.
    body: Option<Body>,
    /// The connection may stay open after this response.
    keep_conn: bool,
    /// The connection must close after this response, whatever its framing (a page sent
    /// without reading the request's body).
    close: bool,
    /// Writing failed (client gone) or the response was abandoned: stop and close.
    broken: bool,
    /// A thread is writing (without this lock, perhaps without the GIL); others wait.
    writing: bool,
    /// How many threads wait for their turn: only then is the end of a turn signalled (a
    /// signal nobody waits for is still a system call, once per write).
    waiting: usize,
    /// The end of the body has been sent: nothing more may follow.
    finished: bool,
    /// IIS was asked to flush each write (a streamed body): writes may block.
    flushing: bool,
}

/// Why the body could not be sent.
#[derive(Debug)]
pub enum SendError {
    /// The application broke the protocol (no start_response, or a bad body item): a
    /// Python exception to report.
    Application(String),
    /// The client went away or the response was abandoned; the connection is closed.
    Aborted(String),
    /// The end of the body was sent already: nothing more may follow.
    Complete,
}

/// Whether the application should go on producing the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    More,
    /// The application gave more than its declared Content-Length: the rest would only
    /// be dropped.
    Complete,
}

/// How a finished response went, for the handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub keep_conn: bool,
    pub aborted: bool,
}

/// The I/O one call of [`Response::send`] does, prepared under the lock, run without it.
struct Write<'d> {
    /// The status line and header block, if they go out now.
    head: Option<Head>,
    body: Cow<'d, [u8]>,
    ending: &'static [u8],
    /// Nothing of the response follows this piece.
    last: bool,
    keep_conn: bool,
    /// Set IIS's flush flag before the headers (a streamed body).
    flush: bool,
    mismatch: Option<Mismatch>,
}

impl Response {
    /// A response to `ecb`, whose method and protocol the caller read already; `id` is the
    /// request's id, sent as `X-Request-Id` when `id_header`.
    pub fn new(ecb: Arc<Ecb>, request: Request, id: RequestId, id_header: bool) -> Response {
        Response {
            ecb,
            request,
            id,
            id_header,
            state: Mutex::new(State::default()),
            turn_ended: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// What the request allows the response to be.
    pub fn request(&self) -> Request {
        self.request
    }

    /// Whether the headers have gone out.
    pub fn headers_sent(&self) -> bool {
        self.lock().body.is_some()
    }

    /// Whether the client is still there (checked between empty body pieces).
    pub fn client_connected(&self) -> bool {
        self.ecb.is_connected()
    }

    /// Sends `data` as the next piece of the body; `last` says it is the end (then an empty
    /// `data` just finishes the response). Headers go out with the first non-empty piece.
    pub fn send(&self, gil: Gil<'_>, data: &[u8], last: bool) -> Result<Flow, SendError> {
        let mut state = self.take_turn(gil);
        let write = match self.prepare(&mut state, data, last) {
            Ok(Some(write)) => write,
            Ok(None) => return Ok(self.end_turn(state)),
            Err(error) => {
                self.end_turn(state);
                return Err(error);
            }
        };
        // A response sent in one go lands in IIS's response buffer (IIS 7+ buffers ISAPI
        // output up to 4 MB unless the flush flag is set): the call does not block, and
        // releasing the GIL would cost more than it saves. Streamed or large bodies go to
        // the socket and may block: other threads get the GIL meanwhile.
        let may_block = state.flushing || write.flush || write.body.len() > BUFFERED_WRITE;
        drop(state);
        let ecb = &self.ecb;
        let written = if may_block {
            gil.allow_threads(|| {
                let _waiting = WaitingForClient::begin();
                write.perform(ecb, may_block)
            })
        } else {
            write.perform(ecb, may_block)
        };
        let mut state = self.lock();
        let result = self.conclude(&mut state, written, write.mismatch);
        let flow = self.end_turn(state);
        result.map(|()| flow)
    }

    /// Waits until no other thread is writing this response, then makes it this thread's
    /// turn. The wait happens with the GIL released: the writer may need the GIL to finish.
    fn take_turn(&self, gil: Gil<'_>) -> MutexGuard<'_, State> {
        let mut state = self.lock();
        if state.writing {
            drop(state);
            gil.allow_threads(|| {
                let mut state = self.lock();
                state.waiting += 1;
                while state.writing {
                    state = self
                        .turn_ended
                        .wait(state)
                        .unwrap_or_else(|poison| poison.into_inner());
                }
                state.waiting -= 1;
                state.writing = true;
            });
            state = self.lock();
        } else {
            state.writing = true;
        }
        state
    }

    fn end_turn(&self, mut state: MutexGuard<'_, State>) -> Flow {
        state.writing = false;
        let flow = match &state.body {
            Some(body) if body.overrun() => Flow::Complete,
            _ => Flow::More,
        };
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.turn_ended.notify_one();
        }
        flow
    }

    /// Decides what one call writes (no I/O); None when there is nothing to write yet.
    fn prepare<'d>(
        &self,
        state: &mut State,
        data: &'d [u8],
        last: bool,
    ) -> Result<Option<Write<'d>>, SendError> {
        check_open(state)?;
        if state.body.is_none() && state.started.is_some() && data.is_empty() && !last {
            return Ok(None);
        }
        // The body is known whole when this is the last piece, or when it is a first piece
        // of exactly the declared Content-Length (Flask's and Django's responses): nothing
        // after it can go out (Body cuts a longer body), so it goes out as a one-piece body
        // does, with the headers and unflushed.
        let whole = if last {
            Some(data.len() as u64)
        } else {
            declared_whole(state, data)
        };
        let head = self.open_body(state, whole)?;
        let flush = head.is_some() && state.flushing;
        let body = state.body.as_mut().expect("the headers went out");
        let (bytes, mut mismatch) = body.frame(data);
        let ending = if last {
            state.finished = true;
            let (ending, short) = body.finish();
            mismatch = mismatch.or(short);
            ending
        } else {
            b""
        };
        Ok(Some(Write {
            head,
            body: bytes,
            ending,
            last: whole.is_some(),
            keep_conn: state.keep_conn,
            flush,
            mismatch,
        }))
    }

    /// Chooses the framing when the headers are about to go out (`whole_body`: the body's
    /// length, if all of it is known now) and returns the status line and header block to
    /// send; None when they went out already.
    fn open_body(
        &self,
        state: &mut State,
        whole_body: Option<u64>,
    ) -> Result<Option<Head>, SendError> {
        if state.body.is_some() {
            return Ok(None);
        }
        let Some((status, code, mut headers)) = state.started.take() else {
            return Err(SendError::Application(
                "the application returned a body without calling start_response()".into(),
            ));
        };
        if self.id_header && !headers.has(b"X-Request-Id") {
            // A safe token (request_id.rs): always a valid header value.
            headers.add_own(b"X-Request-Id", self.id.as_bytes());
        }
        let plan = Framing::choose(self.request, code, headers, whole_body);
        state.code = Some(code);
        state.keep_conn = plan.keep_conn && !state.close;
        state.flushing = plan.flush_each_write;
        state.body = Some(plan.body);
        self.ecb.set_status_code(code);
        // Validation let no NUL through, so each string ends at the NUL Head puts after it.
        Ok(Some(Head::new(status, plan.headers)))
    }

    /// Sends `file` as the (rest of the) body through the server (HSE_REQ_TRANSMIT_FILE),
    /// the headers first if they have not gone out: with the application's Content-Length,
    /// else with the file's. Returns false when the server refused the call before sending
    /// any of it (it may not offer it, or the range is past 4 GiB): the caller then sends
    /// the file piece by piece. The end of the body is left to the caller's last `send`.
    pub fn transmit(&self, gil: Gil<'_>, file: &FileRange) -> Result<bool, SendError> {
        let mut state = self.take_turn(gil);
        let head =
            match check_open(&state).and_then(|()| self.open_body(&mut state, Some(file.length))) {
                Ok(head) => head,
                Err(error) => {
                    self.end_turn(state);
                    return Err(error);
                }
            };
        let range = state
            .body
            .as_ref()
            .expect("the headers went out")
            .range(file.length);
        // IIS may keep a file it was given in its response buffer until the request ends,
        // and the application's close() follows at once: so IIS is told to send now.
        let flush = head.is_some() || !state.flushing;
        state.flushing = true;
        let keep_conn = state.keep_conn;
        drop(state);
        let ecb = &self.ecb;
        let sent = gil.allow_threads(|| {
            let _waiting = WaitingForClient::begin();
            if flush {
                ecb.set_flush(true);
            }
            if let Some(head) = &head {
                ecb.send_headers(head.status(), head.headers(), keep_conn)?;
            }
            if range.send == 0 {
                return Ok(true);
            }
            match ecb.transmit_file(
                file.handle,
                file.offset,
                range.send,
                &range.head,
                range.tail,
            ) {
                Ok(()) => Ok(true),
                Err(IoError(ERROR_INVALID_PARAMETER)) => Ok(false),
                Err(error) => Err(error),
            }
        });
        let mut state = self.lock();
        let outcome = match sent {
            Ok(transmitted) => {
                if transmitted {
                    let body = state.body.as_mut().expect("the headers went out");
                    body.commit(&range);
                }
                Ok(transmitted)
            }
            Err(error) => self.conclude(&mut state, Err(error), None).map(|()| false),
        };
        self.end_turn(state);
        outcome
    }

    /// Records how the write went.
    fn conclude(
        &self,
        state: &mut State,
        written: Result<(), IoError>,
        mismatch: Option<Mismatch>,
    ) -> Result<(), SendError> {
        if let Err(error) = written {
            state.broken = true;
            state.keep_conn = false;
            return Err(SendError::Aborted(format!(
                "writing the response failed ({error}): the client is gone"
            )));
        }
        match mismatch {
            None => {}
            Some(longer @ Mismatch::Longer { .. }) => log::line(&format!("[{}] {longer}", self.id)),
            Some(shorter @ Mismatch::Shorter { .. }) => {
                log::line(&format!("[{}] {shorter}", self.id));
                state.keep_conn = false;
                // The body was flushed write by write (framing.rs sees to it): closing loses
                // nothing, and tells the client the body is incomplete.
                self.ecb.close_connection();
            }
        }
        Ok(())
    }

    /// Replaces whatever the application started with `page` and sends it (only before
    /// the headers went out). The page goes through the same framing as any response.
    pub fn send_page(&self, gil: Gil<'_>, page: &Page) -> Result<(), SendError> {
        {
            let mut state = self.lock();
            if state.body.is_some() {
                return Err(SendError::Aborted("headers already sent".into()));
            }
            let mut headers = HeaderBlock::default();
            for line in page.headers().lines() {
                if let Some((name, value)) = line.split_once(": ") {
                    let _ = headers.add(name.as_bytes(), value.as_bytes());
                }
            }
            state.started = Some((page.status.as_bytes().to_vec(), page.code(), headers));
            state.close = page.close;
        }
        self.send(gil, &page.html(), true).map(|_| ())
    }

    /// Gives up on a response whose headers went out: the connection is closed so the client
    /// sees an incomplete response rather than a complete-looking wrong one.
    pub fn abort(&self) {
        let mut state = self.lock();
        state.broken = true;
        state.keep_conn = false;
        drop(state);
        self.ecb.close_connection();
    }

    /// The result, once the body is done (or abandoned).
    pub fn outcome(&self) -> Outcome {
        let state = self.lock();
        let status = state
            .code
            .or(state.started.as_ref().map(|(_, code, _)| *code))
            .unwrap_or(500);
        Outcome {
            status,
            keep_conn: state.keep_conn && !state.broken,
            aborted: state.broken,
        }
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

        let state = self.lock();
        if let Some(exc_info) = &exc_info {
            if state.body.is_some() {
                // PEP 3333: too late to change the response; re-raise the application's error.
                drop(state);
                return Err(PyErr::from_exc_info(exc_info)?);
            }
        } else if state.started.is_some() {
            return Err(PyErr::new(
                gil,
                Exception::AssertionError,
                "start_response() was already called; pass exc_info to call it again",
            ));
        }
        drop(state);
        // Checked without the lock (building the block calls into Python).
        let (status_line, code) = validate_status(gil, &status)?;
        let block = validate_headers(gil, &headers)?;
        let mut state = self.lock();
        if state.body.is_none() {
            state.started = Some((status_line, code, block));
        }
        Ok(())
    }

    /// write(data): the imperative API, sent at once.
    fn write<'py>(&self, gil: Gil<'py>, args: Args<'py>) -> PyResult<'py, PyRef<'py>> {
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
        match self.send(gil, bytes, false) {
            Ok(_) => Ok(gil.none()),
            Err(SendError::Application(message)) => {
                Err(PyErr::new(gil, Exception::AssertionError, &message))
            }
            Err(SendError::Aborted(message)) => {
                Err(ClientError::Disconnected.exception(gil, &message))
            }
            Err(SendError::Complete) => Err(PyErr::new(gil, Exception::OSError, COMPLETE)),
        }
    }
}

/// The length of `data` if it is the first piece of the body and exactly as long as the
/// Content-Length the application declared.
fn declared_whole(state: &State, data: &[u8]) -> Option<u64> {
    let (_, _, headers) = state.started.as_ref()?;
    let length = data.len() as u64;
    (state.body.is_none() && headers.content_length() == Some(length)).then_some(length)
}

/// A response that may still be written: not abandoned, its end not sent.
fn check_open(state: &State) -> Result<(), SendError> {
    if state.broken {
        return Err(SendError::Aborted(
            "the response was already aborted".into(),
        ));
    }
    if state.finished {
        return Err(SendError::Complete);
    }
    Ok(())
}

impl Write<'_> {
    /// Runs on the ECB: flush flag, headers, the framed piece, the end of the body.
    /// `may_block`: the piece goes to the socket rather than into IIS's buffer.
    fn perform(&self, ecb: &Ecb, may_block: bool) -> Result<(), IoError> {
        if let Some(head) = &self.head {
            let (status, headers) = (head.status(), head.headers());
            // Headers with a piece IIS buffers, the connection kept: one call instead of
            // two, where the server has it (HSE_REQ_VECTOR_SEND, IIS 6 and later).
            if !may_block && self.keep_conn && !VECTOR_SEND_REFUSED.load(Ordering::Relaxed) {
                let pieces = [&self.body[..], self.ending];
                match ecb.send_response(status, headers, pieces, self.last) {
                    Err(IoError(ERROR_INVALID_PARAMETER)) => {
                        VECTOR_SEND_REFUSED.store(true, Ordering::Relaxed)
                    }
                    sent => return sent,
                }
            }
            if self.flush {
                // IIS 7+ buffers ISAPI output unless told otherwise; a streamed body must move.
                ecb.set_flush(true);
            }
            ecb.send_headers(status, headers, self.keep_conn)?;
        }
        match (self.body.is_empty(), self.ending.is_empty()) {
            (true, true) => Ok(()),
            (false, true) => ecb.write(&self.body),
            (true, false) => ecb.write(self.ending),
            (false, false) => ecb.write(&[&self.body[..], self.ending].concat()),
        }
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
    // With room for the NUL that Head adds (no second allocation then).
    let with_nul_room = |text: &[u8]| {
        let mut bytes = framing::status_buffer(text.len());
        bytes.extend_from_slice(text);
        bytes
    };
    let bytes = status.with_latin1(with_nul_room).map_err(|_| {
        PyErr::new(
            gil,
            Exception::ValueError,
            "the status must be latin-1 text",
        )
    })?;
    match framing::status_code(&bytes) {
        Ok(code) => Ok((bytes, code)),
        Err(StatusError::Malformed) => {
            let message = format!(
                "invalid status '{}': it must be a 3-digit code, a space and a reason phrase, like '200 OK'",
                status.text()
            );
            Err(PyErr::new(gil, Exception::ValueError, &message))
        }
        Err(StatusError::Interim(code)) => {
            let message = format!(
                "invalid status '{}': {code} is an interim (1xx) status, which cannot be the \
                 response to a request",
                status.text()
            );
            Err(PyErr::new(gil, Exception::ValueError, &message))
        }
    }
}

/// The application's headers, checked.
fn validate_headers<'py>(gil: Gil<'py>, headers: &PyRef<'py>) -> PyResult<'py, HeaderBlock> {
    if headers.kind() != Kind::List {
        return Err(PyErr::new(
            gil,
            Exception::TypeError,
            "response_headers must be a list of (name, value) tuples",
        ));
    }
    let mut block = HeaderBlock::default();
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
        let added = name
            .with_latin1(|name| value.with_latin1(|value| block.add(name, value)))
            .and_then(|inner| inner)
            .map_err(|_| invalid("not latin-1"))?;
        match added {
            Ok(()) => {}
            Err(HeaderError::Name) => {
                return Err(invalid(
                    "the name must be a token (letters, digits, '-', ...)",
                ));
            }
            Err(HeaderError::Control) => {
                return Err(invalid(
                    "a control character (CR, LF, NUL, ...; only HTAB is allowed) in the value",
                ));
            }
            Err(HeaderError::HopByHop) => {
                let message = format!(
                    "{} is a hop-by-hop header, which only the server may set (PEP 3333)",
                    name.text()
                );
                return Err(PyErr::new(gil, Exception::AssertionError, &message));
            }
            Err(HeaderError::Length) => return Err(invalid("Content-Length is not a number")),
            Err(HeaderError::SecondLength) => {
                return Err(invalid("a second, different Content-Length"));
            }
        }
    }
    Ok(block)
}

impl Native for Response {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.StartResponse";
    const METHODS: &'static [crate::python::Method<Self>] = &[crate::python::Method {
        name: c"write",
        // write(data): the imperative API, sent at once.
        body: |response, gil, args, _this| response.write(gil, args),
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
