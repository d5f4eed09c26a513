//! The transport of one client connection: the socket, the bytes received but not yet
//! used, reading request bodies (by Content-Length or de-chunked), the minimum rates a
//! client must keep to ([`Pace`]), the host's own error answers, and the steps of closing
//! without losing the response just written.
//!
//! A connection is owned by exactly one party at a time: the poller while it is idle, a
//! worker thread while it reads a request, and the request's exchange while the
//! extension runs. This module knows nothing of requests or of who owns it; a read or
//! write that may wait for the client tells [`workers`], which keeps enough workers free.
use crate::http::{BodyKind, BodyOut, ChunkedDecoder, HttpError};
use crate::os::PollFd;
use crate::response;
use crate::workers;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How slow a client may be, from the options (`--idle-timeout`, `--header-timeout`,
/// `--min-receive-rate`, `--min-send-rate`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest any one blocking read or write waits (None: forever).
    pub idle: Option<Duration>,
    /// The allowance a body or a response gets before its rate counts.
    pub allowance: Duration,
    pub receive_rate: u64,
    pub send_rate: u64,
}

/// A transfer that must keep to a minimum rate: `bytes` may take at most `allowance +
/// bytes / rate` from `since` (as Apache's mod_reqtimeout `body=20,MinRate=240` reads,
/// and http.sys's MinSendRate for responses). A rate of 0 never runs out.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    since: Instant,
    bytes: u64,
    allowance: Duration,
    rate: u64,
}

impl Pace {
    pub fn new(allowance: Duration, rate: u64) -> Pace {
        Pace::since(Instant::now(), allowance, rate)
    }

    /// A transfer that started at `since`.
    pub fn since(since: Instant, allowance: Duration, rate: u64) -> Pace {
        Pace {
            since,
            bytes: 0,
            allowance,
            rate,
        }
    }

    pub fn add(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// When the transfer must have made more progress, if there is such a time.
    pub fn deadline(&self) -> Option<Instant> {
        (self.rate > 0).then(|| {
            self.since
                + self.allowance
                + Duration::from_secs_f64(self.bytes as f64 / self.rate as f64)
        })
    }

    /// How long the next blocking read or write may wait: the time left, capped by
    /// `idle`; Err(TimedOut) once the deadline has passed.
    fn wait(&self, idle: Option<Duration>) -> io::Result<Option<Duration>> {
        let Some(deadline) = self.deadline() else {
            return Ok(idle);
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "below the minimum rate",
            ));
        }
        Ok(Some(idle.map_or(left, |i| i.min(left))))
    }
}

/// The largest write a writable socket is trusted to take without waiting.
const SMALL_WRITE: usize = 16 * 1024;

/// Whether the socket is ready now (a read or write would not wait).
fn ready(mut fd: PollFd) -> bool {
    crate::os::poll(std::slice::from_mut(&mut fd), 0).is_ok_and(|n| n > 0)
}

/// A client connection and the bytes received but not yet used. Boxed once per connection
/// ([`Connection`] is its content): a connection changes hands several times per request
/// (the poller, a worker, the exchange, back), and moving a pointer is cheaper than moving
/// its ~250 bytes each time.
pub struct Conn(Box<Connection>);

/// What a [`Conn`] holds.
pub struct Connection {
    pub stream: TcpStream,
    /// Which connection this is, unique for the host's life ([`Conn::serial`]).
    serial: u64,
    /// Received, not yet consumed input (the rest of a pipelined batch, body bytes).
    pub input: Vec<u8>,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The socket was shut down by the extension (HSE_REQ_CLOSE_CONNECTION).
    pub closed: bool,
    /// When the first byte of the request head now in `input` arrived (`--header-timeout`).
    pub head_since: Option<Instant>,
    /// The pace of the request body being received, if one is.
    pub receiving: Option<Pace>,
    pub limits: Limits,
    /// The host worker whose HttpExtensionProc call returned HSE_STATUS_PENDING for this
    /// connection's request: when the request ends on another thread, the connection is
    /// parked with that worker again ([`Host::resume_elsewhere`](crate::host::Host::resume_elsewhere)).
    pub pending_on: Option<usize>,
    /// The last response's buffer, emptied, for the next response
    /// ([`Conn::keep_out_buffer`]): a keep-alive connection's requests do not each
    /// allocate one.
    spare_out: Vec<u8>,
}

thread_local! {
    /// What one read takes from the socket, before it is appended to `Conn::input`: one
    /// buffer per thread, zeroed once (a fresh 16 KiB array per read cost a memset of
    /// 16 KiB per request, 40 % of the host's instructions for a small request).
    static READ_BUFFER: std::cell::RefCell<Box<[u8; 16384]>> =
        std::cell::RefCell::new(Box::new([0; 16384]));
}

/// The largest response buffer a connection keeps for its next response.
const SPARE_OUT_MAX: usize = 8 * 1024;

/// How many client connections are open (`--max-connections`).
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// The serial number of the last connection opened.
static SERIALS: AtomicU64 = AtomicU64::new(0);

/// The number of open client connections.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::SeqCst)
}

impl std::ops::Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Conn {
    /// The socket, for the readiness loop.
    pub fn socket(&self) -> crate::os::RawSocket {
        crate::os::raw_socket(&self.stream)
    }

    /// Which connection this is: numbered from 1 as they are opened, never reused (unlike
    /// the socket number, which the system gives to a new socket once this one is closed).
    /// The readiness loop tells by it whether a socket number still means this connection.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    pub fn new(stream: TcpStream, limits: Limits) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        // Blocking reads and writes (ReadClient, WriteClient) give up after the idle
        // timeout, so a stalled client cannot hold a thread forever; writes look at their
        // pace (`--min-send-rate`) at least once per allowance ([`Paced`]).
        stream.set_read_timeout(limits.idle)?;
        let write_wait = match limits.idle {
            Some(idle) if limits.send_rate > 0 => Some(idle.min(limits.allowance)),
            None if limits.send_rate > 0 => Some(limits.allowance),
            idle => idle,
        };
        stream.set_write_timeout(write_wait)?;
        let remote = stream.peer_addr()?;
        let local = stream.local_addr()?;
        OPEN.fetch_add(1, Ordering::SeqCst);
        Ok(Conn(Box::new(Connection {
            stream,
            serial: SERIALS.fetch_add(1, Ordering::Relaxed) + 1,
            input: Vec::with_capacity(4096),
            remote,
            local,
            closed: false,
            head_since: None,
            receiving: None,
            limits,
            pending_on: None,
            spare_out: Vec::new(),
        })))
    }

    /// The buffer the connection's next response writes into (empty; with room when an
    /// earlier response left its buffer).
    pub fn take_out_buffer(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.spare_out)
    }

    /// Keeps an ended response's buffer for the next response, if it is no larger than
    /// [`SPARE_OUT_MAX`] (an idle connection does not hold on to a large response's room).
    pub fn keep_out_buffer(&mut self, mut out: Vec<u8>) {
        if out.capacity() <= SPARE_OUT_MAX {
            out.clear();
            self.spare_out = out;
        }
    }

    /// One read from the socket, appended to `input`. Ok(0) means the client closed.
    /// Called when the socket is readable, or (ReadClient) blocking up to the idle
    /// timeout and the body's pace.
    pub fn fill(&mut self) -> io::Result<usize> {
        let n = READ_BUFFER.with_borrow_mut(|chunk| {
            let n = self.stream.read(&mut chunk[..])?;
            self.input.extend_from_slice(&chunk[..n]);
            Ok::<_, io::Error>(n)
        })?;
        if let Some(pace) = &mut self.receiving {
            pace.add(n);
        }
        Ok(n)
    }

    /// Reads what has already arrived, without waiting: None if nothing has.
    pub fn fill_now(&mut self) -> io::Result<Option<usize>> {
        self.stream.set_nonblocking(true)?;
        let result = self.fill();
        self.stream.set_nonblocking(false)?;
        match result {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// How long the readiness loop waits for this connection's next bytes of a body: as
    /// the body's pace allows, and at most the idle timeout.
    pub fn wait_deadline(&self) -> Option<Instant> {
        let idle = self.limits.idle.map(|i| Instant::now() + i);
        let paced = self.receiving.and_then(|p| p.deadline());
        match (idle, paced) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts counting a request body's pace (`--min-receive-rate`).
    pub fn start_body(&mut self) {
        self.receiving = Some(Pace::new(self.limits.allowance, self.limits.receive_rate));
    }

    /// A blocking [`fill`](Conn::fill) that waits no longer than the body's pace allows
    /// (on a worker, counted as blocked: [`workers::while_blocked`]).
    fn fill_paced(&mut self) -> io::Result<usize> {
        if let Some(pace) = self.receiving.filter(|p| p.rate > 0) {
            self.stream.set_read_timeout(pace.wait(self.limits.idle)?)?;
        }
        let socket = self.socket();
        workers::while_blocked(|| ready(PollFd::readable(socket)), || self.fill())
    }

    /// The socket to write the response to, keeping to `--min-send-rate`.
    pub fn out(&mut self) -> Paced<'_> {
        let limits = self.limits;
        // One clock read for both (a few dozen instructions each, on every response).
        let now = Instant::now();
        Paced {
            stream: &mut self.stream,
            pace: Pace::since(now, limits.allowance, limits.send_rate),
            idle: limits.idle,
            progress: now,
        }
    }

    /// The client has not closed its end, as far as the socket knows (peeks without
    /// consuming; HSE_REQ_IS_CONNECTED).
    pub fn is_connected(&self) -> bool {
        if self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let mut byte = [0u8; 1];
        let connected = match self.stream.peek(&mut byte) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
        };
        let _ = self.stream.set_nonblocking(false);
        connected
    }

    /// Shuts the socket down at once, both ways (HSE_REQ_CLOSE_CONNECTION).
    pub fn shut_down(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        self.closed = true;
    }

    /// Writes a host-generated error answer ([`response::host_answer`], `server` its
    /// `Server` header). Returns the bytes that went out, for the access log; the caller
    /// closes the connection.
    pub fn answer(&mut self, (code, reason): (u16, &str), message: &str, server: &str) -> u64 {
        let text = response::host_answer(code, reason, message, server);
        match self.out().write_all(&text) {
            Ok(()) => text.len() as u64,
            Err(_) => 0,
        }
    }

    /// The first step of closing without losing the response just written: shut down
    /// our side. The caller then reads and discards what the client still sends, for a
    /// bounded time and number of bytes, until it closes too ([`Conn::discard`]): a
    /// plain close with unread input would reset the connection and could destroy the
    /// response in flight. False if there is nothing to wait for.
    pub fn begin_close(&mut self) -> bool {
        !self.closed && self.stream.shutdown(Shutdown::Write).is_ok()
    }

    /// One read of a closing connection, discarded (the socket is readable). Some(n)
    /// while the client is still sending; None when it has closed or failed.
    pub fn discard(&mut self) -> Option<usize> {
        let mut sink = [0u8; 16384];
        match self.stream.read(&mut sink) {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        }
    }
}

/// The socket, written at no less than a minimum rate. The socket's own write timeout
/// is the shorter of the idle timeout and the rate's allowance (set once, in
/// [`Conn::new`]); when a write times out, it is tried again as long as the transfer is
/// still within its pace and the client took bytes within the idle timeout, and fails
/// otherwise. So the common case, a write that does not block, costs no extra system call.
pub struct Paced<'a> {
    stream: &'a mut TcpStream,
    pace: Pace,
    idle: Option<Duration>,
    progress: Instant,
}

impl Paced<'_> {
    /// Sends up to `count` bytes of the file behind `handle` from `offset` straight to the
    /// socket (TRANSMIT_FILE; [`crate::os::send_file`]), at the same pace as any write.
    #[cfg(target_os = "linux")]
    pub fn send_file(
        &mut self,
        handle: *mut std::ffi::c_void,
        offset: u64,
        count: usize,
    ) -> io::Result<usize> {
        self.paced(count, |stream| {
            crate::os::send_file(stream, handle, offset, count)
        })
    }

    /// One transfer to the socket, tried again after a timeout while the pace allows (on
    /// a worker, counted as blocked: [`workers::while_blocked`]).
    fn paced(
        &mut self,
        len: usize,
        mut transfer: impl FnMut(&mut TcpStream) -> io::Result<usize>,
    ) -> io::Result<usize> {
        loop {
            // A writable socket takes a small write at once; a large one may still wait.
            let socket = crate::os::raw_socket(&*self.stream);
            let ready = || len <= SMALL_WRITE && ready(PollFd::writable(socket));
            match workers::while_blocked(ready, || transfer(self.stream)) {
                Ok(n) => return Ok(self.sent(n)),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = Instant::now();
                    let slow = self.pace.deadline().is_none_or(|d| now >= d);
                    let idle = self.idle.is_some_and(|i| now - self.progress >= i);
                    if slow || idle {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Counts `n` bytes the client took.
    fn sent(&mut self, n: usize) -> usize {
        self.pace.add(n);
        self.progress = Instant::now();
        n
    }
}

impl Write for Paced<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // The usual small write goes out at once: one system call, and no need to count
        // as blocked (nor to ask the socket first whether it would wait).
        #[cfg(unix)]
        if data.len() <= SMALL_WRITE {
            let socket = crate::os::raw_socket(&*self.stream);
            if let Some(sent) = crate::os::send_now(socket, data) {
                return sent.map(|n| self.sent(n));
            }
        }
        self.paced(data.len(), |stream| stream.write(data))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
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

/// Moves body bytes already received into `out`, without touching the socket. Ok(0)
/// when nothing buffered is body data yet (or at the end: see `body.finished()`).
pub fn take_body(
    conn: &mut Conn,
    body: &mut BodyReader,
    out: &mut BodyOut<'_>,
) -> Result<usize, BodyError> {
    match body {
        BodyReader::Length(remaining) => {
            let n = (*remaining)
                .min(out.len() as u64)
                .min(conn.input.len() as u64) as usize;
            out.put(0, &conn.input[..n]);
            conn.input.drain(..n);
            *remaining -= n as u64;
            Ok(n)
        }
        BodyReader::Chunked(decoder) => {
            let (used, made) = decoder
                .decode(&conn.input, out)
                .map_err(BodyError::Malformed)?;
            conn.input.drain(..used);
            Ok(made)
        }
        BodyReader::Done => Ok(0),
    }
}

/// Reads body bytes into `out`: buffered input first, then the socket (blocking, up to the
/// idle timeout and no longer than the body's pace allows). Ok(0) only at the end of the
/// body (or if `out` is empty).
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
            match conn.fill_paced() {
                Ok(0) => return Err(BodyError::Truncated),
                Ok(_) => {}
                Err(e) => return Err(BodyError::Io(e)),
            }
        }
        let n = take_body(conn, body, &mut out)?;
        if n > 0 || body.finished() {
            return Ok(n);
        }
    }
}

/// Moves what is buffered of an unread request body out of the way, without touching
/// the socket; `limit` is decreased by the bytes dropped. True once the body has ended.
pub fn skip_body(
    conn: &mut Conn,
    body: &mut BodyReader,
    limit: &mut usize,
) -> Result<bool, BodyError> {
    let mut sink = [0u8; 8192];
    while !body.finished() && *limit > 0 && !conn.input.is_empty() {
        let room = sink.len().min(*limit);
        let n = take_body(conn, body, &mut (&mut sink[..room]).into())?;
        *limit -= n;
        if n == 0 && !body.finished() && conn.input.is_empty() {
            break;
        }
    }
    Ok(body.finished())
}
