//! `wsgi.input`: the request body as a Python binary stream that reads the client lazily.
//!
//! The body arrives in two parts: the bytes IIS read ahead (`lpbData`, up to 48 KiB by
//! default) and the rest, fetched with `ReadClient` only when the application asks for it.
//! Nothing is buffered beyond what a call needs (plus, for `readline`, the rest of the last
//! block read), so a large upload streams through. The stream never reads past the body's
//! Content-Length (which would block on a keep-alive connection); when the length is unknown
//! (a chunked request) it reads until the server reports the end. Past the end every read
//! returns `b""`. A client that disconnects before sending the whole body raises
//! `isapi_wsgi.ClientDisconnected` (an `OSError`, see [`super::exceptions`]): for a chunked body, whose end ReadClient reports as it reports a closed connection (TRUE
//! with 0 bytes), the stream asks `HSE_REQ_IS_CONNECTED` before taking it as the end.
//!
//! `[wsgi] max_body` bounds what the stream takes: a Content-Length over it never gets
//! here (the bridge answers 413 first), and a chunked body that grows past it raises
//! `isapi_wsgi.BodyTooLarge` (an `OSError`) as soon as more than `max_body` bytes arrived, so even `read()` without a size
//! never holds more than `max_body` (+1) bytes. A failed body stays failed: every later
//! read raises the same error again, never a short `b""` that would look like the end.
//!
//! The GIL is released while `ReadClient` blocks. No lock is held then: each call takes the
//! body's state out of its slot and puts it back when it returns, so a second thread that
//! reads meanwhile gets a `RuntimeError` instead of waiting (for a thread that, to finish,
//! needs the GIL it holds).
use std::sync::{Arc, Mutex};

use super::exceptions::ClientError;
use crate::client_wait::WaitingForClient;
use crate::isapi::ecb::Ecb;
use crate::python::{Args, Exception, Gil, Kind, Method, Native, PyErr, PyRef, PyResult};

/// Bytes asked from ReadClient at a time.
const BLOCK: usize = 64 * 1024;

/// The request body stream.
pub struct Input {
    ecb: Arc<Ecb>,
    /// The body's state; None while a call has taken it.
    body: Mutex<Option<Body>>,
}

struct Body {
    /// Bytes received but not yet handed to the application: `buffer[position..]`.
    buffer: Vec<u8>,
    position: usize,
    /// Whether the read-ahead part has been moved into `buffer`.
    preread_taken: bool,
    /// Bytes still to come from ReadClient; None when the length is unknown.
    remaining: Option<u64>,
    /// The body is over.
    ended: bool,
    /// Bytes of the body received so far.
    received: u64,
    total: Option<u64>,
    /// `[wsgi] max_body`; None for no limit.
    limit: Option<u64>,
    /// Why the body failed: raised again by every later read.
    failed: Option<Failed>,
}

impl Input {
    /// The body of the request `ecb`, of at most `limit` bytes (None: no limit).
    pub fn new(ecb: Arc<Ecb>, limit: Option<u64>) -> Input {
        let total = ecb.total_bytes();
        let preread = ecb.preread().len() as u64;
        let body = Body {
            buffer: Vec::new(),
            position: 0,
            preread_taken: false,
            remaining: total.map(|total| total.saturating_sub(preread)),
            ended: total == Some(0),
            received: 0,
            total,
            limit,
            failed: None,
        };
        Input {
            ecb,
            body: Mutex::new(Some(body)),
        }
    }

    /// Appends the next block of the body to the buffer; `Ok(0)` at the end. A failed read
    /// or a body cut short raises `ClientDisconnected`, one over `max_body` `BodyTooLarge`
    /// (and again on every later call).
    fn fill<'py>(&self, gil: Gil<'py>, body: &mut Body) -> PyResult<'py, usize> {
        match self.receive(gil, body) {
            Ok(got) => Ok(got),
            Err(failed) => {
                // Nothing more is handed out: the rest of the buffer is dropped too.
                body.buffer.truncate(body.position);
                body.ended = true;
                let (kind, message) = body.failed.get_or_insert(failed);
                Err(kind.exception(gil, message))
            }
        }
    }

    /// [`fill`](Input::fill)'s work: the next block into the buffer, or why not.
    fn receive(&self, gil: Gil<'_>, body: &mut Body) -> Result<usize, Failed> {
        if let Some(failed) = &body.failed {
            return Err(failed.clone());
        }
        // What was handed out goes: without this a read(n) that takes less than a block
        // each time would keep every byte of the body in the buffer.
        if body.position > 0 {
            body.buffer.drain(..body.position);
            body.position = 0;
        }
        if !body.preread_taken {
            body.preread_taken = true;
            let preread = self.ecb.preread();
            if !preread.is_empty() {
                body.buffer.extend_from_slice(preread);
                body.received += preread.len() as u64;
                body.check_limit()?;
                return Ok(preread.len());
            }
        }
        if body.ended {
            return Ok(0);
        }
        let want = match body.remaining {
            Some(0) => {
                body.ended = true;
                return Ok(0);
            }
            Some(remaining) => BLOCK.min(remaining as usize),
            // One byte past the limit is enough to know the body is over it.
            None => body.limit.map_or(BLOCK, |limit| {
                BLOCK.min((limit - body.received).saturating_add(1) as usize)
            }),
        };
        let start = body.buffer.len();
        body.buffer.resize(start + want, 0);
        let ecb = &self.ecb;
        let block = &mut body.buffer[start..];
        let result = gil.allow_threads(|| {
            let _waiting = WaitingForClient::begin();
            ecb.read(block)
        });
        let got = match result {
            Ok(got) => got,
            Err(error) => {
                body.buffer.truncate(start);
                return Err(disconnected(format!(
                    "reading the request body failed ({error}); the client may have disconnected"
                )));
            }
        };
        body.buffer.truncate(start + got);
        body.received += got as u64;
        if got == 0 {
            body.ended = true;
            if let Some(remaining) = body.remaining.filter(|&r| r > 0) {
                return Err(disconnected(format!(
                    "the client disconnected before sending the whole body ({} of {} bytes; {remaining} missing)",
                    body.received,
                    body.total.unwrap_or(0)
                )));
            }
            // A chunked body's end and a client gone mid-body look alike (TRUE, 0 bytes):
            // only the connection tells them apart.
            if body.remaining.is_none() && !self.ecb.is_connected() {
                return Err(disconnected(format!(
                    "the client disconnected before the end of the chunked body ({} bytes received)",
                    body.received
                )));
            }
            return Ok(0);
        }
        if let Some(remaining) = &mut body.remaining {
            *remaining -= got as u64;
        }
        body.check_limit()?;
        Ok(got)
    }

    /// Takes up to `limit` buffered-or-received bytes (all of the body for None).
    fn read<'py>(
        &self,
        gil: Gil<'py>,
        body: &mut Body,
        limit: Option<usize>,
    ) -> PyResult<'py, PyRef<'py>> {
        loop {
            let available = body.buffer.len() - body.position;
            if limit.is_some_and(|limit| available >= limit) {
                break;
            }
            if self.fill(gil, body)? == 0 {
                break;
            }
        }
        let available = body.buffer.len() - body.position;
        let take = limit.map_or(available, |limit| limit.min(available));
        let chunk = gil.bytes(&body.buffer[body.position..body.position + take])?;
        body.position += take;
        Ok(chunk)
    }

    /// One line, up to and including `\n`, at most `limit` bytes.
    fn readline<'py>(
        &self,
        gil: Gil<'py>,
        body: &mut Body,
        limit: Option<usize>,
    ) -> PyResult<'py, PyRef<'py>> {
        let mut scanned = 0;
        loop {
            let pending = &body.buffer[body.position..];
            let window = limit.map_or(pending.len(), |limit| limit.min(pending.len()));
            if let Some(newline) = pending[scanned..window].iter().position(|&b| b == b'\n') {
                return self.read(gil, body, Some(scanned + newline + 1));
            }
            if limit.is_some_and(|limit| pending.len() >= limit) {
                return self.read(gil, body, limit);
            }
            scanned = window;
            if self.fill(gil, body)? == 0 {
                return self.read(gil, body, Some(scanned));
            }
        }
    }

    /// Takes the body's state for one call (given back when the result drops).
    fn lock<'py>(&self, gil: Gil<'py>) -> PyResult<'py, Taken<'_>> {
        let body = self
            .body
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .take();
        match body {
            Some(body) => Ok(Taken {
                slot: &self.body,
                body: Some(body),
            }),
            None => Err(PyErr::new(
                gil,
                Exception::RuntimeError,
                "wsgi.input is being read by another thread",
            )),
        }
    }
}

impl Body {
    /// A body of unknown length (chunked) that grew past `max_body`.
    fn check_limit(&self) -> Result<(), Failed> {
        match self.limit {
            Some(limit) if self.received > limit => Err((
                ClientError::TooLarge,
                format!(
                    "the request body is larger than [wsgi] max_body ({limit} bytes); the rest was not read"
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Why the body failed: the exception's class and its message.
type Failed = (ClientError, String);

fn disconnected(message: String) -> Failed {
    (ClientError::Disconnected, message)
}

/// The body's state, out of its slot for the length of one call.
struct Taken<'a> {
    slot: &'a Mutex<Option<Body>>,
    body: Option<Body>,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        *self
            .slot
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = self.body.take();
    }
}

impl std::ops::Deref for Taken<'_> {
    type Target = Body;
    fn deref(&self) -> &Body {
        self.body.as_ref().expect("taken until dropped")
    }
}

impl std::ops::DerefMut for Taken<'_> {
    fn deref_mut(&mut self) -> &mut Body {
        self.body.as_mut().expect("taken until dropped")
    }
}

/// A size argument: None (or absent, or negative) means "no limit".
fn size_argument<'py>(gil: Gil<'py>, args: &Args<'py>, what: &str) -> PyResult<'py, Option<usize>> {
    let Some(size) = args.get(0) else {
        return Ok(None);
    };
    if size.is_none() {
        return Ok(None);
    }
    let text = size.text();
    match (size.kind(), text.parse::<i64>()) {
        (Kind::Other, Ok(size)) if size < 0 => Ok(None),
        (Kind::Other, Ok(size)) => Ok(Some(size as usize)),
        _ => Err(PyErr::new(
            gil,
            Exception::TypeError,
            &format!("{what}() argument must be an int or None"),
        )),
    }
}

impl Native for Input {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.Input";
    const METHODS: &'static [Method<Self>] = &[
        Method {
            name: c"read",
            body: Input::read_method,
        },
        Method {
            name: c"readline",
            body: Input::readline_method,
        },
        Method {
            name: c"readlines",
            body: Input::readlines_method,
        },
        Method {
            name: c"close",
            body: Input::close_method,
        },
    ];
    const ITERATOR: bool = true;

    fn next<'py>(&self, gil: Gil<'py>) -> PyResult<'py, Option<PyRef<'py>>> {
        let mut body = self.lock(gil)?;
        let line = self.readline(gil, &mut body, None)?;
        Ok(line
            .as_bytes()
            .is_some_and(|bytes| !bytes.is_empty())
            .then_some(line))
    }
}

/// The Python methods.
impl Input {
    /// `read(size=-1)`.
    fn read_method<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let limit = size_argument(gil, &args, "read")?;
        let mut body = self.lock(gil)?;
        self.read(gil, &mut body, limit)
    }

    /// `readline(size=-1)`.
    fn readline_method<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let limit = size_argument(gil, &args, "readline")?;
        let mut body = self.lock(gil)?;
        self.readline(gil, &mut body, limit)
    }

    /// `readlines(hint=-1)`.
    fn readlines_method<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let hint = size_argument(gil, &args, "readlines")?.filter(|&hint| hint > 0);
        let mut body = self.lock(gil)?;
        let lines = gil.list()?;
        let mut total = 0;
        loop {
            let line = self.readline(gil, &mut body, None)?;
            let length = line.as_bytes().map_or(0, <[u8]>::len);
            if length == 0 {
                break;
            }
            lines.list_append(&line)?;
            total += length;
            if hint.is_some_and(|hint| total >= hint) {
                break;
            }
        }
        Ok(lines)
    }

    /// `close()`: nothing to do (the server owns the connection).
    fn close_method<'py>(
        &self,
        gil: Gil<'py>,
        _args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        Ok(gil.none())
    }
}
