//! One client connection, from its first byte to its close: reading and parsing requests
//! (pipelined ones in order), the request body, error answers, and handing each request
//! to the extension as an [`Exchange`].
//!
//! A connection is owned by exactly one party at a time: the poller while it is idle, a
//! worker thread while it reads a request, and the request's [`Exchange`] while the
//! extension runs. When a request ends, the connection either goes back to the worker
//! that ran it (which goes on with the next pipelined request), or back to the pool.
use crate::ecb::{Exchange, State};
use crate::http::{self, BodyKind, BodyOut, ChunkedDecoder, HttpError, Parsed, RequestHead};
use crate::poller::{Watched, Work};
use crate::response::{self, HTTP_API_SERVER, Response};
use crate::server::{Host, Parked};
use crate::vars::{RequestInfo, Unmapped};
use isapi_wsgi::isapi::ffi::{HSE_STATUS_ERROR, HSE_STATUS_PENDING};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client connection and the bytes received but not yet used.
pub struct Conn {
    pub stream: TcpStream,
    /// Received, not yet consumed input (the rest of a pipelined batch, body bytes).
    pub input: Vec<u8>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The socket was shut down by the extension (HSE_REQ_CLOSE_CONNECTION).
    pub closed: bool,
}

impl Watched for Conn {
    fn socket(&self) -> crate::os::RawSocket {
        crate::os::raw_socket(&self.stream)
    }
}

impl Conn {
    pub fn new(stream: TcpStream, idle: Duration) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        // Blocking reads and writes (ReadClient, WriteClient, the pre-read) give up after
        // the idle timeout, so a stalled client cannot hold a thread forever.
        let idle = if idle.is_zero() { None } else { Some(idle) };
        stream.set_read_timeout(idle)?;
        stream.set_write_timeout(idle)?;
        let remote = stream.peer_addr()?;
        let local = stream.local_addr()?;
        Ok(Conn {
            stream,
            input: Vec::with_capacity(4096),
            remote,
            local,
            closed: false,
        })
    }

    /// One read from the socket, appended to `input`. Ok(0) means the client closed.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16384];
        let n = self.stream.read(&mut chunk)?;
        self.input.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Answers with a host-generated error ([`response::host_answer`], `server` its
    /// `Server` header), tells `sent` how many bytes went out (for the access log), and
    /// closes the connection.
    fn refuse(
        mut self,
        (code, reason): (u16, &str),
        message: &str,
        server: &str,
        sent: impl FnOnce(u64),
    ) {
        let text = response::host_answer(code, reason, message, server);
        sent(match self.stream.write_all(&text) {
            Ok(()) => text.len() as u64,
            Err(_) => 0,
        });
        self.close_gracefully();
    }

    /// Closes without losing the response just written: shut down our side, then read
    /// and discard briefly until the client closes too (a plain close with unread input
    /// would reset the connection and could destroy the response in flight).
    pub fn close_gracefully(mut self) {
        if self.closed {
            return;
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)));
        let mut sink = [0u8; 4096];
        let mut total = 0;
        while total < 256 * 1024 {
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    }
}

/// Where the request body stands.
#[derive(Debug)]
pub enum BodyReader {
    /// Content-Length: bytes still to read.
    Length(u64),
    Chunked(ChunkedDecoder),
    /// No body, or all of it read.
    Done,
}

impl BodyReader {
    pub fn new(kind: BodyKind) -> BodyReader {
        match kind {
            BodyKind::None | BodyKind::Length(0) => BodyReader::Done,
            BodyKind::Length(n) => BodyReader::Length(n),
            BodyKind::Chunked => BodyReader::Chunked(ChunkedDecoder::default()),
        }
    }

    pub fn finished(&self) -> bool {
        match self {
            BodyReader::Done => true,
            BodyReader::Length(n) => *n == 0,
            BodyReader::Chunked(d) => d.is_done(),
        }
    }
}

/// Why reading the body failed.
#[derive(Debug)]
pub enum BodyError {
    Io(io::Error),
    /// The client closed before the end of the body.
    Truncated,
    Malformed(HttpError),
}

/// Reads body bytes into `out`: buffered input first, then the socket (blocking, up to the
/// idle timeout). Ok(0) only at the end of the body (or if `out` is empty).
pub fn read_body(
    conn: &mut Conn,
    body: &mut BodyReader,
    mut out: BodyOut<'_>,
) -> Result<usize, BodyError> {
    if out.is_empty() || body.finished() {
        return Ok(0);
    }
    loop {
        if conn.input.is_empty() {
            match conn.fill() {
                Ok(0) => return Err(BodyError::Truncated),
                Ok(_) => {}
                Err(e) => return Err(BodyError::Io(e)),
            }
        }
        match body {
            BodyReader::Length(remaining) => {
                let n = (*remaining)
                    .min(out.len() as u64)
                    .min(conn.input.len() as u64) as usize;
                out.put(0, &conn.input[..n]);
                conn.input.drain(..n);
                *remaining -= n as u64;
                return Ok(n);
            }
            BodyReader::Chunked(decoder) => {
                let (used, made) = decoder
                    .decode(&conn.input, &mut out)
                    .map_err(BodyError::Malformed)?;
                conn.input.drain(..used);
                if made > 0 || decoder.is_done() {
                    return Ok(made);
                }
            }
            BodyReader::Done => return Ok(0),
        }
    }
}

/// What happens to the connection after a request.
pub enum Next {
    /// Go on with the next request on this connection.
    Continue(Conn),
    /// The extension returned PENDING: the Exchange owns the connection now.
    Pending,
    /// The connection is closed.
    Closed,
}

/// Serves requests on `conn` until it has to wait for input. `read_first`: the socket is
/// readable (rather than the connection being resumed with input already buffered).
pub fn serve(host: &'static Host, mut conn: Conn, read_first: bool) {
    if read_first {
        match conn.fill() {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    loop {
        if conn.input.is_empty() {
            return park(host, conn);
        }
        match http::parse_request(&conn.input, &host.limits) {
            Err(e) => {
                let code = e.status().0;
                let remote = conn.remote;
                return conn.refuse(e.status(), e.message(), HTTP_API_SERVER, |sent| {
                    host.access.log_error(remote, code, sent)
                });
            }
            Ok(Parsed::Incomplete) => return park(host, conn),
            Ok(Parsed::Complete(head, used)) => {
                conn.input.drain(..used);
                match run_request(host, conn, head) {
                    Next::Continue(c) => conn = c,
                    Next::Pending | Next::Closed => return,
                }
            }
        }
    }
}

/// Returns an idle connection to the poller (or closes it when the host is stopping).
fn park(host: &'static Host, conn: Conn) {
    if host.stopping() {
        return;
    }
    let deadline =
        (!host.options.idle_timeout.is_zero()).then(|| Instant::now() + host.options.idle_timeout);
    host.poller.arm(Parked::Conn(conn), deadline);
}

/// Takes back a connection whose request ended on a thread that is not a host worker
/// (DONE_WITH_SESSION from the extension's own thread). With nothing buffered (the usual
/// case) it only has to wait for its next request: it is parked right here, which costs
/// no worker a wake-up. A pipelined request already read is handed to a host worker.
pub fn resume_elsewhere(host: &'static Host, conn: Conn) {
    if conn.input.is_empty() {
        park(host, conn);
    } else {
        host.poller.submit(Work::Ready(Parked::Resume(conn)));
    }
}

/// Runs one request: maps it, pre-reads the body, calls HttpExtensionProc.
fn run_request(host: &'static Host, mut conn: Conn, head: RequestHead) -> Next {
    let started = Instant::now();
    let version = head.version;
    let label = format!("{} {}", head.method, head.target);
    let info = match RequestInfo::new(head, conn.remote, conn.local, host.site.clone()) {
        Ok(info) => info,
        Err(Unmapped::Http(e)) => {
            // URL canonicalisation fails in http.sys, before IIS sees the request.
            let code = e.status().0;
            let remote = conn.remote;
            conn.refuse(e.status(), e.message(), HTTP_API_SERVER, |sent| {
                host.access.log(remote, &label, code, sent, started, "")
            });
            return Next::Closed;
        }
        Err(Unmapped::NotFound) => {
            // IIS's own 404, with IIS's Server header.
            let remote = conn.remote;
            conn.refuse(
                (404, "Not Found"),
                "no handler mapping for this URL",
                &host.site.server_software,
                |sent| host.access.log(remote, &label, 404, sent, started, ""),
            );
            return Next::Closed;
        }
    };
    let mut body = BodyReader::new(info.head.body);
    // The client waits for 100 Continue before it sends the body. http.sys sends it before
    // the read-ahead; with --continue-on-read the host reads nothing ahead and leaves it to
    // the extension's first ReadClient.
    let continue_on_read =
        info.head.expect_continue && conn.input.is_empty() && host.options.continue_on_read;
    if info.head.expect_continue
        && !continue_on_read
        && conn.input.is_empty()
        && conn
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_err()
    {
        return Next::Closed;
    }
    let (total, want) = match info.head.body {
        BodyKind::None => (0u32, 0usize),
        BodyKind::Length(n) => (
            n.min(u32::MAX as u64) as u32,
            n.min(host.options.read_ahead as u64) as usize,
        ),
        BodyKind::Chunked => (u32::MAX, host.options.read_ahead),
    };
    let want = if continue_on_read { 0 } else { want };
    // The pre-read (IIS's UploadReadAheadSize): lpbData holds the first `want` bytes.
    let mut preread = vec![0u8; want + 1]; // +1: a NUL after the data, as IIS seems to
    let mut got = 0;
    while got < want {
        match read_body(&mut conn, &mut body, (&mut preread[got..want]).into()) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(BodyError::Malformed(e)) => {
                let remote = conn.remote;
                conn.refuse(e.status(), e.message(), HTTP_API_SERVER, |sent| {
                    host.access.log(remote, &label, 400, sent, started, "")
                });
                return Next::Closed;
            }
            Err(_) => {
                host.access.log(
                    conn.remote,
                    &label,
                    400,
                    0,
                    started,
                    "client closed during the body",
                );
                return Next::Closed;
            }
        }
    }
    preread.truncate(got + 1);
    preread[got] = 0;
    let mut info = info;
    let total = if host.options.chunked_known_length
        && info.head.body == BodyKind::Chunked
        && body.finished()
    {
        // The whole chunked body arrived within the read-ahead: present its real length.
        info.synthetic_length = Some(got as u32);
        got as u32
    } else {
        total
    };

    let keep_alive = info.head.keep_alive && !host.stopping();
    let response = Response::new(
        version,
        keep_alive,
        info.is_head(),
        host.options.response_buffer,
        &host.site.server_software,
        host.options.buffered_content_length,
    );
    let mut state = State::new(conn, body, response);
    state.continue_pending = continue_on_read;
    let Some(exchange) = Exchange::register(host, info, label, started, total, preread, state)
    else {
        return Next::Closed; // Exchange::register answered 503
    };
    host.trace(exchange.id, || {
        format!(
            "HttpExtensionProc({}) called",
            exchange.label.split_once(' ').map_or("", |(_, l)| l)
        )
    });
    // SAFETY: `Exchange::register` built the whole ECB (strings and pre-read body owned
    // by the exchange, ConnID its registry HCONN, the four callbacks, which find the
    // `Host` already set); the registry keeps the exchange, and so the ECB at this
    // address, until `finish` ends the request, which happens only after a non-PENDING
    // return (`after_return`) or DONE_WITH_SESSION; no Rust reference to the ECB exists
    // (the host reaches it only through `Exchange`'s raw-pointer accessors).
    let status = unsafe { host.extension.http_extension_proc(exchange.ecb_ptr()) };
    host.trace(exchange.id, || {
        format!("HttpExtensionProc -> {}", status_name(status))
    });
    after_return(host, &exchange, status)
}

pub fn status_name(status: u32) -> String {
    match status {
        1 => "HSE_STATUS_SUCCESS".into(),
        2 => "HSE_STATUS_SUCCESS_AND_KEEP_CONN".into(),
        3 => "HSE_STATUS_PENDING".into(),
        4 => "HSE_STATUS_ERROR".into(),
        n => format!("{n} (not an HSE_STATUS_* value)"),
    }
}

/// HttpExtensionProc has returned `status`: end the request now, or leave it to
/// DONE_WITH_SESSION.
fn after_return(host: &'static Host, exchange: &Arc<Exchange>, status: u32) -> Next {
    let mut state = exchange.lock();
    state.returned = Some(status);
    if !(1..=4).contains(&status) {
        exchange.violation(
            host,
            &format!("HttpExtensionProc returned {status}, which is not an HSE_STATUS_* value"),
        );
    }
    if status == HSE_STATUS_PENDING {
        if !state.done_with_session {
            return Next::Pending;
        }
    } else if state.done_with_session {
        exchange.violation(
            host,
            "HSE_REQ_DONE_WITH_SESSION was called but HttpExtensionProc did not return HSE_STATUS_PENDING",
        );
    }
    match finish(host, exchange, &mut state) {
        Some(conn) => Next::Continue(conn),
        None => Next::Closed,
    }
}

/// Ends a request: final response bytes, framing checks, body drain, access log, registry
/// release. Returns the connection if it can serve another request.
pub fn finish(host: &'static Host, exchange: &Arc<Exchange>, state: &mut State) -> Option<Conn> {
    if state.finished {
        return None;
    }
    state.finished = true;
    host.registry.remove(exchange.hconn);
    exchange.release_body(state);
    let error =
        state.returned == Some(HSE_STATUS_ERROR) || state.dws_status == Some(HSE_STATUS_ERROR);
    let stopping = host.stopping();
    let mut conn = state.conn.take();
    let mut keep = false;
    if let Some(c) = conn.as_mut().filter(|c| !c.closed) {
        let written =
            state
                .response
                .finish(&mut c.stream, error && !state.response.started(), stopping);
        keep = written.is_ok() && state.response.keep && !error && !state.close_after;
        if let Some(short) = state.response.short_by() {
            exchange.violation(
                host,
                &format!("the response ended {short} bytes short of its Content-Length; the connection is closed"),
            );
            keep = false;
        }
        if state.continue_pending && !state.body.finished() {
            // The client was never told to send its body: it may send it now, or never.
            // Neither can be told from the next request, so the connection closes.
            keep = false;
        }
        if keep && !state.body.finished() {
            // Unread request body: drain a little so the connection stays usable.
            let mut sink = [0u8; 8192];
            let mut drained = 0;
            while !state.body.finished() && drained < 64 * 1024 {
                match read_body(c, &mut state.body, (&mut sink[..]).into()) {
                    Ok(n) if n > 0 => drained += n,
                    _ => break,
                }
            }
            keep = state.body.finished();
        }
    }
    let code = state
        .response
        .status_code()
        .unwrap_or(if state.response.raw {
            200
        } else {
            exchange.status_for_log(state)
        });
    host.access.log(
        exchange.info.remote,
        &exchange.label,
        code,
        state.response.bytes_sent,
        exchange.started,
        &state.log_params,
    );
    host.trace(exchange.id, || {
        format!(
            "request ended: status {code}, {} bytes sent, connection {}",
            state.response.bytes_sent,
            if keep { "kept alive" } else { "closed" }
        )
    });
    let conn = conn?;
    if keep && !stopping {
        Some(conn)
    } else {
        conn.close_gracefully();
        None
    }
}

/// Answers 503 when no request slot is free.
pub fn refuse(conn: Conn) {
    conn.refuse(
        (503, "Service Unavailable"),
        "too many requests in flight",
        HTTP_API_SERVER,
        |_| {},
    );
}
