//! What the worker threads, the requests and the ISAPI callbacks share: the [`Host`]
//! (options, the site, the loaded extension, the readiness set, the checker, the access
//! log), reachable from a callback through [`host()`], since a callback gets nothing but
//! an HCONN.
//!
//! It depends on nothing that serves requests (`server`, `exchange`, `callbacks`), so
//! every one of those can use it without an import circle.
use crate::accesslog::AccessLog;
use crate::checker::Checker;
use crate::cli::Options;
use crate::conn::Conn;
use crate::extension::Extension;
use crate::http::Limits;
use crate::os::{self, ImpersonationToken};
use crate::poller::{Poller, Watched, Work};
use crate::vars::Site;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Something parked in the readiness loop: the listening socket, or a connection waiting
/// for input (between requests, in a request head, in the body pre-read, draining an
/// unread body, closing). Whoever parks it says what happens next; no worker waits for
/// a client meanwhile.
pub trait Waiting: Send {
    fn socket(&self) -> os::RawSocket;
    /// Which connection it is ([`Conn::serial`]; 0 for the listening socket).
    fn serial(&self) -> u64;
    /// Its socket is readable (or it was submitted as ready work).
    fn ready(self: Box<Self>, host: &'static Host);
    /// Its deadline has passed, or the host is stopping. Dropping it closes the socket.
    fn expired(self: Box<Self>, _host: &'static Host) {}
}

/// What the poller holds.
pub type Parked = Box<dyn Waiting>;

impl Watched for Parked {
    fn socket(&self) -> os::RawSocket {
        (**self).socket()
    }

    fn serial(&self) -> u64 {
        (**self).serial()
    }
}

/// A connection waiting for its next request head, made by the server (which reads and
/// parses heads). `read_first`: read the socket before parsing (false for a connection
/// handed back with input already buffered).
pub type NextRequest = fn(Conn, bool) -> Parked;

/// How long, and for how many bytes, a closing connection is read and discarded while the
/// client takes in the last response (lingering close).
pub const LINGER_TIME: Duration = Duration::from_secs(2);
pub const LINGER_BYTES: usize = 256 * 1024;

/// A connection being closed: our side is shut down; what the client still sends is
/// discarded until it closes, [`LINGER_BYTES`] have come, or [`LINGER_TIME`] has passed.
struct Lingering {
    conn: Conn,
    left: usize,
    until: Instant,
}

impl Waiting for Lingering {
    fn socket(&self) -> os::RawSocket {
        self.conn.socket()
    }

    fn serial(&self) -> u64 {
        self.conn.serial()
    }

    fn ready(mut self: Box<Self>, host: &'static Host) {
        if let Some(n) = self.conn.discard()
            && n < self.left
        {
            self.left -= n;
            let until = self.until;
            host.poller.arm(self, Some(until));
        }
    }
}

/// Everything the worker threads and the ISAPI callbacks share.
pub struct Host {
    pub options: Options,
    pub site: Arc<Site>,
    pub limits: Limits,
    pub extension: Extension,
    pub poller: Poller<Parked>,
    pub checker: Checker,
    pub access: AccessLog,
    /// What HSE_REQ_GET_IMPERSONATION_TOKEN hands out (`--impersonation-token`).
    pub impersonation_token: ImpersonationToken,
    pub stopping: AtomicBool,
    /// The server's reader of request heads.
    pub next_request: NextRequest,
    /// Requests cut off by the shutdown while still arriving (a partial head, a pre-read).
    pub cut_arriving: std::sync::atomic::AtomicUsize,
}

static HOST: OnceLock<Host> = OnceLock::new();

/// Makes `host` the one the callbacks find. Fails if one was set already.
pub fn install(host: Host) -> Result<&'static Host, ()> {
    HOST.set(host).map_err(|_| ())?;
    Ok(self::host())
}

/// The host, for the ISAPI callbacks (which get nothing but an HCONN).
pub fn host() -> &'static Host {
    HOST.get()
        .expect("callbacks are only reachable after the host has started")
}

impl Host {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// A request still arriving is closed because the host is stopping (counted for the
    /// shutdown report).
    pub fn cut_while_arriving(&self) {
        self.cut_arriving.fetch_add(1, Ordering::SeqCst);
    }

    /// How slow a client may be, for each new connection.
    pub fn conn_limits(&self) -> crate::conn::Limits {
        let o = &self.options;
        crate::conn::Limits {
            idle: (!o.idle_timeout.is_zero()).then_some(o.idle_timeout),
            allowance: if o.header_timeout.is_zero() {
                Duration::from_secs(20)
            } else {
                o.header_timeout
            },
            receive_rate: o.min_receive_rate,
            send_rate: o.min_send_rate,
        }
    }

    /// `--trace`: one line per ISAPI call and result.
    pub fn trace(&self, id: u64, line: impl FnOnce() -> String) {
        if self.options.trace {
            eprintln!("trace: #{id} {}", line());
        }
    }

    /// Parks a connection until its next request (or the rest of its head) arrives:
    /// until the idle timeout between requests, until `--header-timeout` after the first
    /// byte of a head. When the host is stopping, closes it instead. On a worker thread it
    /// is parked with that worker ([`Poller::arm_with`]): the connection's next request is
    /// most likely served by the thread that served this one, with no system call to
    /// re-arm it.
    pub fn park(&self, conn: Conn) {
        self.park_with(self.poller.worker(), conn)
    }

    /// [`park`](Host::park) with worker `worker` (from any thread), or in the shared set.
    fn park_with(&self, worker: Option<usize>, mut conn: Conn) {
        if self.stopping() {
            return self.close(conn);
        }
        conn.pending_on = None;
        let deadline = self.head_deadline(&mut conn);
        self.poller
            .arm_with(worker, (self.next_request)(conn, true), deadline);
    }

    /// [`park`](Host::park) in the shared set, where any worker takes it (a new connection).
    pub fn park_shared(&self, mut conn: Conn) {
        if self.stopping() {
            return self.close(conn);
        }
        let deadline = self.head_deadline(&mut conn);
        self.poller.arm((self.next_request)(conn, true), deadline);
    }

    /// How long a parked connection waits for its next request head, or the rest of one.
    fn head_deadline(&self, conn: &mut Conn) -> Option<Instant> {
        if conn.input.is_empty() {
            conn.head_since = None;
            (!self.options.idle_timeout.is_zero())
                .then(|| Instant::now() + self.options.idle_timeout)
        } else {
            let since = *conn.head_since.get_or_insert_with(Instant::now);
            (!self.options.header_timeout.is_zero()).then(|| since + self.options.header_timeout)
        }
    }

    /// Takes back a connection whose request ended after HttpExtensionProc returned
    /// HSE_STATUS_PENDING (DONE_WITH_SESSION, on the extension's own thread or on a host
    /// worker). With nothing buffered (the usual case) it only has to wait for its next
    /// request. On a host worker it is parked with that worker, which is likely to run the
    /// next one too (the combining handler's runner). Elsewhere it is parked with the
    /// worker that took this request ([`Poller::take_back`]), whose set still has its
    /// socket if the request came from there ([`Poller::hold`]): no system call, no
    /// wake-up now, and that worker alone wakes for the next request (the shared set would
    /// wake every waiting worker). A pipelined request already read is handed to a host
    /// worker.
    pub fn resume_elsewhere(&self, mut conn: Conn) {
        if conn.input.is_empty() {
            let worker = self
                .poller
                .take_back(conn.pending_on, conn.socket(), conn.serial());
            self.park_with(worker, conn);
        } else {
            self.release_hold(&mut conn);
            self.poller
                .submit(Work::Ready((self.next_request)(conn, false)));
        }
    }

    /// A connection that is not parked for its next request (closed, draining, pipelined):
    /// the worker that held its socket while its request ran elsewhere lets it go.
    pub fn release_hold(&self, conn: &mut Conn) {
        let held = conn.pending_on.take();
        self.poller.release(held, conn.socket(), conn.serial());
    }

    /// Runs `item` when this worker has nothing else ready ([`Poller::later`]), or at once
    /// on a thread that is no worker with a set of its own.
    pub fn later(&'static self, item: Parked) {
        if let Err(item) = self.poller.later(item) {
            item.ready(self);
        }
    }

    /// Goes on with the next request of a connection on this thread (its request ended
    /// here, after a pre-read or a drain that waited in the readiness loop).
    pub fn resume_here(&'static self, conn: Conn) {
        (self.next_request)(conn, false).ready(self);
    }

    /// Closes a connection without losing the response just written: our side is shut
    /// down at once, and the socket is then read and discarded in the readiness loop,
    /// bounded in time and bytes ([`LINGER_TIME`], [`LINGER_BYTES`]), until the client
    /// closes too.
    pub fn close(&self, mut conn: Conn) {
        self.release_hold(&mut conn);
        if !conn.begin_close() {
            return;
        }
        if self.stopping() {
            // The readiness loop is closing down: linger here, briefly.
            let until = Instant::now() + Duration::from_millis(200);
            let _ = conn
                .stream
                .set_read_timeout(Some(Duration::from_millis(200)));
            let mut left = LINGER_BYTES;
            while Instant::now() < until
                && let Some(n) = conn.discard()
                && n < left
            {
                left -= n;
            }
        } else {
            let until = Instant::now() + LINGER_TIME;
            let lingering = Lingering {
                conn,
                left: LINGER_BYTES,
                until,
            };
            self.poller.arm(Box::new(lingering), Some(until));
        }
    }

    /// Answers with a host-generated error and closes the connection. Returns the bytes
    /// sent, for the access log.
    pub fn refuse(&self, mut conn: Conn, status: (u16, &str), message: &str, server: &str) -> u64 {
        let sent = conn.answer(status, message, server);
        self.close(conn);
        sent
    }
}
