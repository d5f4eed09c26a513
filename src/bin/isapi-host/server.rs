//! The running host: starting it ([`run`]), the worker threads and what they take from
//! the readiness loop, accepting connections, reading each request head off a connection
//! (pipelined ones in order) and handing it to the [`exchange`], and the orderly shutdown
//! (stop accepting, wait for requests in flight, `TerminateExtension(HSE_TERM_MUST_UNLOAD)`,
//! with `--unload` free the library and linger, report).
use crate::accesslog::AccessLog;
use crate::callbacks;
use crate::checker::Checker;
use crate::cli::{Options, TokenChoice};
use crate::conn::{self, Conn};
use crate::exchange::{self, Callbacks, Next};
use crate::extension::Extension;
use crate::host::{self, Host, Parked, Waiting};
use crate::http::{self, Limits, Parsed};
use crate::os::{self, ImpersonationToken};
use crate::poller::{Poller, Work};
use crate::response::HTTP_API_SERVER;
use crate::vars::Site;
use crate::workers;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

/// The ECB callbacks every request's ECB carries.
static CALLBACKS: Callbacks = callbacks::TABLE;

/// The listening socket, parked until a connection arrives.
struct Listening(TcpListener);

impl Waiting for Listening {
    fn socket(&self) -> os::RawSocket {
        os::raw_socket(&self.0)
    }

    /// Not a connection (and never parked with a worker).
    fn serial(&self) -> u64 {
        0
    }

    fn ready(self: Box<Self>, host: &'static Host) {
        accept(host, self.0);
    }
}

/// A connection waiting for a request head (or the rest of one).
struct Idle {
    conn: Conn,
    /// Read the socket before parsing (false: resumed with input already buffered).
    read_first: bool,
}

impl Waiting for Idle {
    fn socket(&self) -> os::RawSocket {
        self.conn.socket()
    }

    fn serial(&self) -> u64 {
        self.conn.serial()
    }

    fn ready(self: Box<Self>, host: &'static Host) {
        serve(host, self.conn, self.read_first);
    }

    /// Between requests: closed. Within a request head (`--header-timeout`): 408.
    fn expired(self: Box<Self>, host: &'static Host) {
        let conn = self.conn;
        if conn.input.is_empty() {
            return;
        }
        if host.stopping() {
            return host.cut_while_arriving();
        }
        let remote = conn.remote;
        let sent = host.refuse(
            conn,
            (408, "Request Timeout"),
            "the request head did not arrive in time",
            HTTP_API_SERVER,
        );
        let label = "(request head too slow)";
        host.access
            .log(remote, label, 408, sent, Instant::now(), "");
    }
}

fn next_request(conn: Conn, read_first: bool) -> Parked {
    Box::new(Idle { conn, read_first })
}

/// Binds, starts the workers, serves until Ctrl-C / SIGTERM, shuts down. Returns the
/// process exit status.
pub fn run(options: Options, extension: Extension) -> io::Result<i32> {
    os::raise_open_file_limit();
    let listener = TcpListener::bind(options.listen).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen on {}: {e}", options.listen),
        )
    })?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let impersonation_token = match options.impersonation_token {
        TokenChoice::None => ImpersonationToken::none(),
        TokenChoice::Own => ImpersonationToken::own()?,
        TokenChoice::Invalid => ImpersonationToken::invalid(),
    };
    let threads = options.threads;
    let host = Host {
        site: Arc::new(Site::from_options(&options)),
        limits: Limits {
            request_line: options.max_request_line,
            header_bytes: options.max_header_bytes,
        },
        access: AccessLog::start(&options.access_log)?,
        options,
        extension,
        poller: Poller::new(threads)?,
        checker: Checker::default(),
        impersonation_token,
        stopping: AtomicBool::new(false),
        next_request,
        cut_arriving: Default::default(),
    };
    exchange::open_registry(host.options.max_requests);
    let Ok(host) = host::install(host) else {
        return Err(io::Error::other("the host was started twice"));
    };
    os::install_stop_handler();
    os::install_crash_report(exchange::registry().active_counter());
    host.poller.arm(Box::new(Listening(listener)), None);
    workers::start(host.options.threads, start_worker)?;
    std::thread::Builder::new()
        .name("rescuer".to_string())
        .spawn(move || host.poller.rescue())?;
    eprintln!(
        "isapi-host: serving {} (\"{}\", ISAPI {}.{}) on http://{address}{} with {} threads",
        host.extension.path().display(),
        host.extension.description,
        host.extension.version >> 16,
        host.extension.version & 0xffff,
        if host.site.vdir == "/" {
            "/"
        } else {
            &host.site.vdir
        },
        host.options.threads
    );
    while !os::stop_requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(shutdown(host))
}

/// Starts one worker thread (at start-up, and a spare one when workers are blocked; see
/// [`workers`]).
fn start_worker() -> io::Result<()> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let host = host::host();
    std::thread::Builder::new()
        .name(format!("worker-{i}"))
        .spawn(move || worker(host, i))
        .map(drop)
}

/// Worker `index`. The first `--threads` workers have a readiness set of their own
/// ([`Poller::enter`]) and run as long as the host; a spare one (started while others wait
/// for slow clients) takes work from the shared set only, and ends when it is no longer
/// needed.
fn worker(host: &'static Host, index: usize) {
    workers::enter();
    let spare = index >= host.options.threads;
    if !spare {
        host.poller.enter(index);
    }
    loop {
        match host.poller.wait() {
            Work::Ready(item) => item.ready(host),
            Work::Expired(item) => item.expired(host),
            Work::Task(task) => task(),
        }
        if spare && workers::surplus() {
            return;
        }
    }
}

/// Serves requests on `conn` until it has to wait for input. `read_first`: the socket is
/// readable (rather than the connection being resumed with input already buffered).
fn serve(host: &'static Host, mut conn: Conn, read_first: bool) {
    if read_first {
        match conn.fill() {
            Ok(0) => return,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return host.park(conn),
            Err(_) => return,
            Ok(_) => {}
        }
    }
    loop {
        if conn.input.is_empty() {
            return host.park(conn);
        }
        match http::parse_request(&conn.input, &host.limits) {
            Err(e) => {
                let remote = conn.remote;
                let sent = host.refuse(conn, e.status(), e.message(), HTTP_API_SERVER);
                return host.access.log_error(remote, e.status().0, sent);
            }
            Ok(Parsed::Incomplete) => return host.park(conn),
            Ok(Parsed::Complete(head, used)) => {
                conn.input.drain(..used);
                conn.head_since = None;
                match exchange::run(host, &CALLBACKS, conn, head) {
                    Next::Continue(c) => conn = c,
                    Next::Elsewhere => return,
                }
            }
        }
    }
}

/// Accepts every pending connection, then re-arms the listener.
fn accept(host: &'static Host, listener: TcpListener) {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if stream.set_nonblocking(false).is_err() {
                    continue;
                }
                let over = conn::open_connections() >= host.options.max_connections;
                match Conn::new(stream, host.conn_limits()) {
                    Ok(c) if over => refuse_connection(host, c),
                    // Shared: whichever worker is free serves its first request.
                    Ok(c) => host.park_shared(c),
                    Err(_) => continue,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::ConnectionAborted =>
            {
                continue;
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                eprintln!("isapi-host: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
        }
    }
    if !host.stopping() {
        host.poller.arm(Box::new(Listening(listener)), None);
    }
}

/// `--max-connections` reached: 503 at once, logged, closed.
fn refuse_connection(host: &'static Host, conn: Conn) {
    let remote = conn.remote;
    let sent = host.refuse(
        conn,
        (503, "Service Unavailable"),
        "too many connections",
        HTTP_API_SERVER,
    );
    let label = "(too many connections)";
    host.access
        .log(remote, label, 503, sent, Instant::now(), "");
}

/// Stops accepting, waits (bounded) for requests in flight, calls TerminateExtension,
/// reports, and returns the exit status.
fn shutdown(host: &'static Host) -> i32 {
    eprintln!(
        "isapi-host: stopping: no new connections; waiting up to {:?} for requests in flight",
        host.options.shutdown_timeout
    );
    host.stopping
        .store(true, std::sync::atomic::Ordering::SeqCst);
    host.poller.expire_all();
    let deadline = Instant::now() + host.options.shutdown_timeout;
    // At least one sweep of the readiness loop, so that every parked connection is closed.
    std::thread::sleep(Duration::from_millis(150));
    // Requests in the extension, and those that left it but have yet to write their last
    // bytes and access-log line.
    while (exchange::registry().active() > 0 || exchange::ending() > 0) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let in_extension = exchange::registry().active();
    let writing = exchange::ending();
    let arriving = host.cut_arriving.load(std::sync::atomic::Ordering::SeqCst);
    exchange::report_unfinished(host);
    eprintln!(
        "isapi-host: stopping: {} request(s) cut off: {in_extension} still in the extension when \
         the wait ended, {writing} still writing their response, {arriving} still arriving (a \
         partial head or body)",
        in_extension + writing + arriving,
    );
    match host.extension.terminate() {
        Some(result) => eprintln!(
            "isapi-host: TerminateExtension(HSE_TERM_MUST_UNLOAD) returned {}",
            if result { "TRUE" } else { "FALSE" }
        ),
        None => eprintln!("isapi-host: the extension has no TerminateExtension export"),
    }
    if host.options.unload {
        unload(host);
    }
    host.access.flush();
    let violations = host.checker.count();
    eprintln!("isapi-host: stopped; {violations} contract violation(s)");
    if host.options.strict && violations > 0 {
        eprintln!("isapi-host: --strict: exiting with status 3 because of contract violations");
        3
    } else {
        0
    }
}

/// `--unload`: frees the library as IIS may after TerminateExtension, then keeps the process
/// alive for `--unload-linger`, so that extension code still running on the extension's own
/// threads, or called from Python, hits unmapped memory and crashes the host visibly (a
/// signal, not exit status 0) instead of dying unnoticed with the process.
fn unload(host: &'static Host) {
    let path = host.extension.path().display();
    match host.extension.unload() {
        Ok(crate::extension::Unloaded::Gone) => {
            eprintln!("isapi-host: --unload: unloaded the extension {path}; it is no longer loaded")
        }
        Ok(crate::extension::Unloaded::StillLoaded) => eprintln!(
            "isapi-host: --unload: unloaded the extension {path}; it is still loaded (it pinned \
             itself, or something else holds it)"
        ),
        Err(e) => eprintln!("isapi-host: --unload: {e}"),
    }
    let linger = host.options.unload_linger;
    std::thread::sleep(linger);
    eprintln!("isapi-host: --unload: still alive {linger:?} after unloading");
}
