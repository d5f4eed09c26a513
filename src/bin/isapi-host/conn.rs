//! The transport of one client connection: the socket, the bytes received but not yet
//! used, reading request bodies (by Content-Length or de-chunked), the host's own error
//! answers, and closing without losing the response just written.
//!
//! A connection is owned by exactly one party at a time: the poller while it is idle, a
//! worker thread while it reads a request, and the request's exchange while the
//! extension runs. This module knows nothing of requests or of who owns it.
use crate::http::{BodyKind, BodyOut, ChunkedDecoder, HttpError};
use crate::poller::Watched;
use crate::response;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

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

    /// Answers with a host-generated error ([`response::host_answer`], `server` its
    /// `Server` header), tells `sent` how many bytes went out (for the access log), and
    /// closes the connection.
    pub fn refuse(
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

/// Reads and discards what is left of an unread request body, up to `limit` bytes, so
/// that the connection can serve its next request. True if the body was read to its end.
pub fn drain_body(conn: &mut Conn, body: &mut BodyReader, limit: usize) -> bool {
    let mut sink = [0u8; 8192];
    let mut drained = 0;
    while !body.finished() && drained < limit {
        match read_body(conn, body, (&mut sink[..]).into()) {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
    body.finished()
}
