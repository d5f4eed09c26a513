//! The threadpool handler: requests run on our own worker threads, never on IIS's.
//!
//! IIS calls `HttpExtensionProc` on its own threads, and those threads are a shared, scarce
//! resource: if Python holds them (waiting for the GIL, or for a slow app), every other site
//! in the worker process waits too. This handler therefore only *queues* each request
//! ([`Threadpool::handle`]) and returns `HSE_STATUS_PENDING` at once. A worker of the
//! [`ThreadPool`] later takes the request, runs it under the request's user (the
//! impersonation token IIS gives, on Windows), answers it with the same
//! [`Bridge::serve`] the simple handler uses, and ends it with exactly one
//! `HSE_REQ_DONE_WITH_SESSION` (`Session` makes sure of that, even if something panics).
//!
//! * **Queue full**: the request is answered on the IIS thread at once with
//!   `503 Service Unavailable` and `Retry-After`, without touching Python or the GIL, and
//!   counted (the log gets at most one line per second about it, and the total at the end).
//! * **Shutdown** ([`Threadpool::terminate`], from `TerminateExtension`): new requests get
//!   the same 503; queued and running requests get up to `shutdown_timeout` to finish;
//!   requests still queued then are answered 503 and ended; the workers are joined. A
//!   request still running in Python at the timeout keeps its ECB: only its worker may end
//!   it (ending it from here while the worker may still write to it would break the ISAPI
//!   contract), so it is logged and left to finish on its own — if the process lives on.
use std::sync::Arc;
use std::time::Duration;

use super::pool::{Rejected, ThreadPool};
use super::{answer_busy, status_for};
use crate::isapi::ecb::Ecb;
use crate::isapi::ffi::{HSE_STATUS_ERROR, HSE_STATUS_PENDING};
use crate::log;
use crate::page::Page;
use crate::request_id::RequestId;
use crate::stats::STATS;
use crate::sys;
use crate::wsgi::Bridge;
use crate::wsgi::mounts::Routed;

/// The threadpool handler's state: the workers, and the count of refused requests.
pub struct Threadpool {
    /// The queued requests, each with where it goes.
    pool: ThreadPool<(Ecb, Routed)>,
    shutdown_timeout: Duration,
    refused: Refusals,
}

impl Threadpool {
    /// Starts `threads` workers that answer requests with `bridge`; at most `queue`
    /// requests wait for a worker.
    pub fn start(
        bridge: Arc<Bridge>,
        threads: usize,
        queue: usize,
        shutdown_timeout: Duration,
    ) -> std::io::Result<Threadpool> {
        // Each worker keeps a Python thread state for its whole life, so a request only
        // has to take the GIL.
        let for_setup = bridge.clone();
        let pool = ThreadPool::with_setup(
            threads,
            queue,
            "wsgi-worker",
            move || for_setup.attach_thread(),
            move |(ecb, routed)| run(&bridge, ecb, &routed),
        )?;
        Ok(Threadpool {
            pool,
            shutdown_timeout,
            refused: Refusals::default(),
        })
    }

    /// On the IIS thread: queues the request and returns `HSE_STATUS_PENDING`, or, if the
    /// queue is full or closed, answers 503 at once and returns the final status.
    pub fn handle(&self, ecb: Ecb, routed: Routed) -> u32 {
        // Counted before it is queued: a worker may take it (and count it out) at once.
        STATS.queued();
        let submitted = self.pool.submit((ecb, routed));
        if submitted.is_err() {
            STATS.dequeued();
        }
        match submitted {
            Ok(()) => HSE_STATUS_PENDING,
            Err(Rejected::Full((ecb, _))) => {
                self.refused.count();
                answer_busy(&ecb, "the server is busy")
            }
            Err(Rejected::Closed((ecb, _))) => answer_busy(&ecb, "the server is shutting down"),
        }
    }

    /// A request already answered `HSE_STATUS_PENDING` (queued by the combining handler):
    /// queued for a worker, or, if the queue is full or closed, answered 503 and ended here.
    pub fn take_over(&self, ecb: Ecb, routed: Routed) {
        STATS.queued();
        let submitted = self.pool.submit((ecb, routed));
        let (ecb, reason) = match submitted {
            Ok(()) => return,
            Err(Rejected::Full((ecb, _))) => {
                self.refused.count();
                (ecb, "the server is busy")
            }
            Err(Rejected::Closed((ecb, _))) => (ecb, "the server is shutting down"),
        };
        STATS.dequeued();
        let status = answer_busy(&ecb, reason);
        ecb.done(status);
    }

    /// Stops taking requests, drains for up to `shutdown_timeout`, answers what never
    /// started, and joins the workers. Never takes (much) longer than the timeout.
    /// Returns how many requests were still running when `shutdown_timeout` ran out.
    pub fn terminate(&self) -> usize {
        self.terminate_within(self.shutdown_timeout)
    }

    /// [`terminate`](Threadpool::terminate), waiting at most `timeout`.
    pub fn terminate_within(&self, timeout: Duration) -> usize {
        let (waiting, running) = self.pool.load();
        log::line(&format!(
            "stopping the threadpool: {running} request(s) running, {waiting} queued; waiting up to {} s",
            timeout.as_secs_f64()
        ));
        let drained = self.pool.shutdown(timeout);
        let never_started = drained.never_started.len();
        for (ecb, _) in drained.never_started {
            STATS.dequeued();
            // These were accepted with PENDING: each is owed an answer and its
            // DONE_WITH_SESSION, from whichever thread.
            let status = answer_busy(&ecb, "the server is shutting down");
            ecb.done(status);
        }
        if never_started > 0 {
            log::line(&format!(
                "{never_started} queued request(s) never started; answered 503"
            ));
        }
        if drained.still_running > 0 {
            log::line(&format!(
                "{} request(s) still running after shutdown_timeout; their workers are left \
                 to finish them (they end their own requests; the process may be ended first)",
                drained.still_running
            ));
        }
        let total = self.refused.total();
        if total > 0 {
            log::line(&format!(
                "{total} request(s) were refused with 503 because the queue was full"
            ));
        }
        drained.still_running
    }
}

/// On a worker (or the combining handler's runner): answers one request that was answered
/// `HSE_STATUS_PENDING`, as its user, and ends it.
pub fn run(bridge: &Bridge, ecb: Ecb, routed: &Routed) {
    STATS.dequeued();
    let session = Session(Some(Arc::new(ecb)));
    let outcome = {
        let ecb = session.ecb();
        // Run as the request's user, as an IIS thread would; reverted at the end of this
        // block, before the request ends and the token becomes invalid.
        let impersonation = sys::impersonate(ecb.impersonation_token());
        match impersonation.applied() {
            Ok(()) => status_for(bridge.serve(ecb, routed)),
            Err(code) => {
                // Never run the application as the worker process instead of the user IIS
                // authorised: that identity may reach what the user may not.
                let id = RequestId::assign(ecb);
                log::line(&format!(
                    "[{id}] could not take the request's identity (SetThreadToken error {code}); \
                     the request is refused with a 500 page"
                ));
                Page::internal_error(
                    "The server could not take the identity of this request.",
                    None,
                )
                .answer_as(ecb, &id)
            }
        }
    };
    session.finish(outcome);
}

/// A request a worker owns: it ends with exactly one DONE_WITH_SESSION, sent by
/// [`Session::finish`], or by `drop` (with an error status) if the worker unwinds.
struct Session(Option<Arc<Ecb>>);

impl Session {
    fn ecb(&self) -> &Arc<Ecb> {
        self.0
            .as_ref()
            .expect("a session holds its request until it ends")
    }

    fn finish(mut self, status: u32) {
        Session::end(self.0.take(), status);
    }

    /// Sends DONE_WITH_SESSION if nobody else still holds the request. `Bridge::serve`
    /// drops every copy it made before returning, so another holder is a bug; the request
    /// is then never ended rather than ended while still in use.
    fn end(ecb: Option<Arc<Ecb>>, status: u32) {
        let Some(ecb) = ecb else { return };
        match Arc::try_unwrap(ecb) {
            Ok(ecb) => ecb.done(status),
            Err(_) => log::line(
                "internal error: a finished request is still referenced; it is not ended \
                 (DONE_WITH_SESSION is not sent)",
            ),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.0.is_some() {
            log::line("internal error (a panic) on a worker; the request ends with an error");
            Session::end(self.0.take(), HSE_STATUS_ERROR);
        }
    }
}

/// Requests refused because the queue was full: counted, and logged at most once a second
/// so that an overload does not also flood the log.
pub struct Refusals(log::RateLimit);

impl Default for Refusals {
    fn default() -> Refusals {
        Refusals(log::RateLimit::new(Duration::from_secs(1)))
    }
}

impl Refusals {
    /// Requests refused so far.
    pub fn total(&self) -> u64 {
        self.0.total()
    }

    /// Counts one refusal (and logs, at most once a second).
    pub fn count(&self) {
        if let Some((since, total)) = self.0.count() {
            log::line(&format!(
                "queue full: answered 503 with Retry-After ({since} since the last report, {total} in all)"
            ));
        }
    }
}
