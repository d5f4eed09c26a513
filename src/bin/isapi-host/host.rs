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
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// What the poller holds: the listening socket or an idle connection.
pub enum Parked {
    Listener(TcpListener),
    /// An idle connection, waiting for its next request.
    Conn(Conn),
    /// A connection handed back after a PENDING request ended, possibly with pipelined
    /// input already buffered (never armed; only submitted as ready work).
    Resume(Conn),
}

impl Watched for Parked {
    fn socket(&self) -> os::RawSocket {
        match self {
            Parked::Listener(l) => os::raw_socket(l),
            Parked::Conn(c) | Parked::Resume(c) => c.socket(),
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

    /// `--trace`: one line per ISAPI call and result.
    pub fn trace(&self, id: u64, line: impl FnOnce() -> String) {
        if self.options.trace {
            eprintln!("trace: #{id} {}", line());
        }
    }

    /// Returns an idle connection to the poller (or closes it when the host is stopping).
    pub fn park(&self, conn: Conn) {
        if self.stopping() {
            return;
        }
        let deadline = (!self.options.idle_timeout.is_zero())
            .then(|| Instant::now() + self.options.idle_timeout);
        self.poller.arm(Parked::Conn(conn), deadline);
    }

    /// Takes back a connection whose request ended on a thread that is not a host worker
    /// (DONE_WITH_SESSION from the extension's own thread). With nothing buffered (the
    /// usual case) it only has to wait for its next request: it is parked right here,
    /// which costs no worker a wake-up. A pipelined request already read is handed to a
    /// host worker.
    pub fn resume_elsewhere(&self, conn: Conn) {
        if conn.input.is_empty() {
            self.park(conn);
        } else {
            self.poller.submit(Work::Ready(Parked::Resume(conn)));
        }
    }
}
