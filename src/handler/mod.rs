//! Handlers: who runs a request, and on which thread (`[wsgi] handler =` in the
//! configuration; docs/handlers.md says which to choose).
//!
//! * [`simple`]: on the IIS thread that called `HttpExtensionProc`; the request is finished
//!   when the call returns.
//! * [`threadpool`]: queued to our own workers ([`pool`]); `HttpExtensionProc` returns
//!   `HSE_STATUS_PENDING` and a worker ends the request with `HSE_REQ_DONE_WITH_SESSION`.
//!
//! Each application (`[wsgi] app` or a `[mount]`'s) names its handler, so the handler is
//! chosen per request, after the mount ([`Routed`]). Both take the request as an owned
//! [`Ecb`] and use the same
//! [`Bridge::serve`](crate::wsgi::Bridge::serve) (which works from any thread), turning its
//! [`Outcome`] into the status IIS expects.
pub mod pool;
pub mod simple;
pub mod threadpool;

use std::sync::Arc;

use crate::config::{Config, HandlerKind};
use crate::isapi::ecb::Ecb;
use crate::log;
use crate::page::Page;
use crate::wsgi::Bridge;
use crate::wsgi::mounts::Routed;
use threadpool::Threadpool;

/// The handlers, with the applications they run: every request runs on the simple
/// handler unless its application says `handler = threadpool` (`[wsgi]` or its `[mount]`);
/// the threadpool's workers are started only if one does, and are shared by all that do.
pub struct Handler {
    bridge: Arc<Bridge>,
    pool: Option<Threadpool>,
}

impl Handler {
    /// Sets up the handlers the applications name. If the worker threads cannot be
    /// created, the simple handler serves instead (and the log says so).
    pub fn start(config: &Config, bridge: Arc<Bridge>) -> Handler {
        let pool = if bridge.uses(HandlerKind::Threadpool) {
            start_threadpool(config, &bridge)
        } else {
            None
        };
        Handler { bridge, pool }
    }

    /// Only the simple handler, whatever the applications say (the check mode starts no
    /// threads).
    pub fn without_threads(bridge: Arc<Bridge>) -> Handler {
        Handler { bridge, pool: None }
    }

    /// Whether the threadpool runs (an application uses it, and its threads started).
    pub fn has_threadpool(&self) -> bool {
        self.pool.is_some()
    }

    /// Answers (or queues) one request, routed to its application; returns the
    /// HSE_STATUS_* for HttpExtensionProc.
    pub fn handle(&self, ecb: Ecb, routed: Routed) -> u32 {
        match (&self.pool, routed.handler) {
            (Some(pool), HandlerKind::Threadpool) => pool.handle(ecb, routed),
            _ => simple::handle(&self.bridge, ecb, &routed),
        }
    }

    /// TerminateExtension: let the requests finish (threadpool: up to shutdown_timeout),
    /// then run Python's atexit handlers. Python itself is never finalised.
    ///
    /// If requests are still running, one of them may hold the GIL (a long C call) and the
    /// atexit handlers would wait for it without end; then they run on a thread of their
    /// own and TerminateExtension waits for them at most [`ATEXIT_WAIT_WHILE_RUNNING`].
    pub fn terminate(&self) {
        let still_running = self.pool.as_ref().map_or(0, Threadpool::terminate);
        if still_running == 0 {
            self.bridge.run_atexit();
            return;
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let for_atexit = self.bridge.clone();
        let started = std::thread::Builder::new()
            .name("wsgi-atexit".into())
            .spawn(move || {
                for_atexit.run_atexit();
                let _ = done_tx.send(());
            });
        let finished = started.is_ok() && done_rx.recv_timeout(ATEXIT_WAIT_WHILE_RUNNING).is_ok();
        if !finished {
            log::line(&format!(
                "Python's atexit handlers did not finish within {} s while requests were \
                 still running (one may hold the GIL); not waiting for them",
                ATEXIT_WAIT_WHILE_RUNNING.as_secs_f64()
            ));
        }
    }
}

/// The threadpool's workers, or None (and a log line) if they cannot be created.
fn start_threadpool(config: &Config, bridge: &Arc<Bridge>) -> Option<Threadpool> {
    match Threadpool::start(
        bridge.clone(),
        config.threads,
        config.queue,
        config.shutdown_timeout,
    ) {
        Ok(pool) => {
            log::line(&format!(
                "handler = threadpool: {} worker thread(s), queue of {}, shutdown_timeout {} s",
                config.threads,
                config.queue,
                config.shutdown_timeout.as_secs_f64()
            ));
            Some(pool)
        }
        Err(error) => {
            log::line(&format!(
                "handler = threadpool: cannot start the worker threads ({error}); \
                 requests run on the simple handler"
            ));
            None
        }
    }
}

/// How long TerminateExtension waits for the atexit handlers when requests are still
/// running after `shutdown_timeout`.
pub const ATEXIT_WAIT_WHILE_RUNNING: std::time::Duration = std::time::Duration::from_secs(1);

use crate::isapi::ffi::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS, HSE_STATUS_SUCCESS_AND_KEEP_CONN};
use crate::wsgi::response::Outcome;

// The threadpool handler moves requests to its workers and shares the bridge between them.
const _: () = {
    const fn send<T: Send>() {}
    const fn shared<T: Send + Sync>() {}
    send::<crate::isapi::ecb::Ecb>();
    shared::<crate::wsgi::Bridge>();
};

/// The HSE_STATUS_* for a finished request.
pub fn status_for(outcome: Outcome) -> u32 {
    if outcome.aborted {
        HSE_STATUS_ERROR
    } else if outcome.keep_conn {
        HSE_STATUS_SUCCESS_AND_KEEP_CONN
    } else {
        HSE_STATUS_SUCCESS
    }
}

/// Answers `503 Service Unavailable` with `Retry-After`, on the calling thread, without
/// Python (queue full, or shutting down). Returns the final HSE_STATUS_*.
pub fn answer_busy(ecb: &Ecb, reason: &str) -> u32 {
    Page::busy(reason).answer(ecb)
}
