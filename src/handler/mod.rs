//! Handlers: who runs a request, and on which thread (`[wsgi] handler =` in the
//! configuration; docs/handlers.md says which to choose).
//!
//! * [`simple`]: on the IIS thread that called `HttpExtensionProc`; the request is finished
//!   when the call returns.
//! * [`threadpool`]: queued to our own workers ([`pool`]); `HttpExtensionProc` returns
//!   `HSE_STATUS_PENDING` and a worker ends the request with `HSE_REQ_DONE_WITH_SESSION`.
//!
//! Both take the request as an owned [`Ecb`] and use the same
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
use threadpool::Threadpool;

/// The configured handler, with the application it runs.
pub enum Handler {
    Simple(Arc<Bridge>),
    Threadpool(Threadpool),
}

impl Handler {
    /// Sets up the handler the configuration names. If the worker threads cannot be
    /// created, the simple handler serves instead (and the log says so).
    pub fn start(config: &Config, bridge: Arc<Bridge>) -> Handler {
        if config.handler == HandlerKind::Simple {
            return Handler::Simple(bridge);
        }
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
                Handler::Threadpool(pool)
            }
            Err(error) => {
                log::line(&format!(
                    "handler = threadpool: cannot start the worker threads ({error}); \
                     requests run on the simple handler"
                ));
                Handler::Simple(bridge)
            }
        }
    }

    /// Answers (or queues) one request; returns the HSE_STATUS_* for HttpExtensionProc.
    pub fn handle(&self, ecb: Ecb) -> u32 {
        match self {
            Handler::Simple(bridge) => simple::handle(bridge, ecb),
            Handler::Threadpool(pool) => pool.handle(ecb),
        }
    }

    /// TerminateExtension: let the requests finish (threadpool: up to shutdown_timeout),
    /// then run Python's atexit handlers. Python itself is never finalised.
    ///
    /// If requests are still running, one of them may hold the GIL (a long C call) and the
    /// atexit handlers would wait for it without end; then they run on a thread of their
    /// own and TerminateExtension waits for them at most [`ATEXIT_WAIT_WHILE_RUNNING`].
    pub fn terminate(&self, bridge: &Arc<Bridge>) {
        let still_running = match self {
            Handler::Threadpool(pool) => pool.terminate(),
            Handler::Simple(_) => 0,
        };
        if still_running == 0 {
            bridge.run_atexit();
            return;
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let for_atexit = bridge.clone();
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
