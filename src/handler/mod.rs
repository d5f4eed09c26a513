//! Handlers: who runs a request, and on which thread (`[wsgi] handler =` in the
//! configuration; docs/handlers.md says which to choose).
//!
//! * [`combining`] (the default): the IIS thread that finds Python free runs its request
//!   and then those that other IIS threads queued meanwhile ([`combine`]); those threads
//!   return `HSE_STATUS_PENDING` at once. Slow requests go to its own [`threadpool`].
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
pub mod combine;
pub mod combining;
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
use combining::Combining;
use threadpool::Threadpool;

/// The handlers, with the applications they run: each request runs on the handler its
/// application names (`[wsgi]` or its `[mount]`; combining unless it says otherwise). The
/// combining and threadpool handlers' threads are started only if an application uses
/// them, and are shared by all that do; if they cannot start, the simple handler serves.
pub struct Handler {
    bridge: Arc<Bridge>,
    combining: Option<Combining>,
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
        let combining = if bridge.uses(HandlerKind::Combining) {
            start_combining(config, &bridge)
        } else {
            None
        };
        Handler {
            bridge,
            combining,
            pool,
        }
    }

    /// Only the simple handler, whatever the applications say (the check mode starts no
    /// threads).
    pub fn without_threads(bridge: Arc<Bridge>) -> Handler {
        Handler {
            bridge,
            combining: None,
            pool: None,
        }
    }

    /// Whether the threadpool runs (an application uses it, and its threads started).
    pub fn has_threadpool(&self) -> bool {
        self.pool.is_some()
    }

    /// The name of the handler that serves an application that asks for `kind` (the
    /// simple one if the threads of `kind` did not start).
    pub fn name(&self, kind: HandlerKind) -> &'static str {
        match kind {
            HandlerKind::Combining if self.combining.is_some() => "combining",
            HandlerKind::Threadpool if self.pool.is_some() => "threadpool",
            _ => "simple",
        }
    }

    /// Answers (or queues) one request, routed to its application; returns the
    /// HSE_STATUS_* for HttpExtensionProc.
    pub fn handle(&self, ecb: Ecb, routed: Routed) -> u32 {
        match (routed.handler, &self.combining, &self.pool) {
            (HandlerKind::Combining, Some(combining), _) => combining.handle(ecb, routed),
            (HandlerKind::Threadpool, _, Some(pool)) => pool.handle(ecb, routed),
            _ => simple::handle(&self.bridge, ecb, &routed),
        }
    }

    /// TerminateExtension: let the requests finish (combining, threadpool: up to
    /// shutdown_timeout each),
    /// then run Python's atexit handlers. Python itself is never finalised.
    ///
    /// If requests are still running, one of them may hold the GIL (a long C call) and the
    /// atexit handlers would wait for it without end; then they run on a thread of their
    /// own and TerminateExtension waits for them at most [`ATEXIT_WAIT_WHILE_RUNNING`].
    pub fn terminate(&self) {
        let still_running = self.combining.as_ref().map_or(0, Combining::terminate)
            + self.pool.as_ref().map_or(0, Threadpool::terminate);
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

/// The combining handler's standby and workers, or None (and a log line) if they cannot be
/// created.
fn start_combining(config: &Config, bridge: &Arc<Bridge>) -> Option<Combining> {
    match Combining::start(
        bridge.clone(),
        config.threads,
        config.queue,
        config.shutdown_timeout,
    ) {
        Ok(combining) => {
            log::line(&format!(
                "handler = combining: queue of {}, {} worker thread(s) for slow requests, \
                 shutdown_timeout {} s",
                config.queue,
                config.threads,
                config.shutdown_timeout.as_secs_f64()
            ));
            Some(combining)
        }
        Err(error) => {
            log::line(&format!(
                "handler = combining: cannot start its threads ({error}); requests run on \
                 the simple handler"
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
