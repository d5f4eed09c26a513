//! The combining handler (the default): the IIS thread that finds Python free runs its own
//! request, then the requests other IIS threads left meanwhile; nobody waits for the GIL.
//!
//! Under IIS, many threads call `HttpExtensionProc` at once. With the simple handler each
//! of them takes the GIL in turn, and every turn is a thread switch (measured: that cost
//! most of the time, docs/handlers.md). Here ([`Combining::handle`], on the IIS thread):
//!
//! * **Nobody runs Python**: this thread runs its request at once, exactly as the simple
//!   handler does (it returns the final status; no hand-over, no DONE_WITH_SESSION), and
//!   then, before it returns, the requests that arrived meanwhile, back to back, at most
//!   [`BATCH`](super::combine::BATCH), each under its own user's token and ended with
//!   `HSE_REQ_DONE_WITH_SESSION` (the threadpool's [`run`](super::threadpool::run)).
//! * **Somebody runs Python**: the request is queued for them and `HttpExtensionProc`
//!   returns `HSE_STATUS_PENDING` at once: the thread goes back to IIS without touching
//!   Python, and nobody wakes anybody.
//! * **The runner is stuck in a slow request** (it finished nothing for
//!   [`STALL`](super::combine::STALL) while requests wait), or requests wait and nobody
//!   runs: the [`Combiner`]'s standby hands them to this handler's own threadpool
//!   (`threads` workers, its stall rule), and new requests go there directly until the
//!   runner is back. A slow application is thus served by up to `threads` + 1 threads at
//!   once, as by the threadpool handler.
//! * **Queue full** (`queue` requests waiting): `503` with `Retry-After` on the IIS thread,
//!   without Python, counted as the threadpool counts its refusals.
//! * **Shutdown** ([`Combining::terminate`]): new requests get `503`; the queue and the
//!   runner get up to `shutdown_timeout`; requests never started are answered `503` and
//!   ended; then the threadpool is stopped as the threadpool handler is, in the time left.
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::combine::{Combiner, Entry, STALL};
use super::threadpool::{self, Threadpool};
use super::{answer_busy, simple};
use crate::isapi::ecb::Ecb;
use crate::isapi::ffi::HSE_STATUS_PENDING;
use crate::log;
use crate::stats::STATS;
use crate::wsgi::Bridge;
use crate::wsgi::mounts::Routed;

/// The combining handler's state: the runner's queue, and the threadpool for slow requests.
pub struct Combining {
    bridge: Arc<Bridge>,
    combiner: Combiner<(Ecb, Routed)>,
    overflow: Arc<Threadpool>,
    shutdown_timeout: Duration,
    refused: threadpool::Refusals,
}

impl Combining {
    /// Starts the standby and the `threads` workers for slow requests; at most `queue`
    /// requests wait for the runner (and as many for the workers).
    pub fn start(
        bridge: Arc<Bridge>,
        threads: usize,
        queue: usize,
        shutdown_timeout: Duration,
    ) -> std::io::Result<Combining> {
        let overflow = Arc::new(Threadpool::start(
            bridge.clone(),
            threads,
            queue,
            shutdown_timeout,
        )?);
        let for_standby = Arc::clone(&overflow);
        let combiner = Combiner::start(queue, STALL, "wsgi-standby", move |(ecb, routed)| {
            // Out of this queue, into the threadpool's (which counts it again).
            STATS.dequeued();
            for_standby.take_over(ecb, routed)
        })?;
        Ok(Combining {
            bridge,
            combiner,
            overflow,
            shutdown_timeout,
            refused: threadpool::Refusals::default(),
        })
    }

    /// On the IIS thread: runs the request (and those queued meanwhile) if Python is free,
    /// else queues it and returns `HSE_STATUS_PENDING`; returns the HSE_STATUS_* for
    /// HttpExtensionProc.
    pub fn handle(&self, ecb: Ecb, routed: Routed) -> u32 {
        // Counted before it is queued: the runner may take it (and count it out) at once.
        STATS.queued();
        let entry = self.combiner.enter((ecb, routed));
        if !matches!(entry, Entry::Queued) {
            STATS.dequeued();
        }
        match entry {
            Entry::Run((ecb, routed)) => self.combiner.run_batch(
                || simple::handle(&self.bridge, ecb, &routed),
                |(ecb, routed)| threadpool::run(&self.bridge, ecb, &routed),
            ),
            Entry::Queued => HSE_STATUS_PENDING,
            Entry::Divert((ecb, routed)) => self.overflow.handle(ecb, routed),
            Entry::Full((ecb, _)) => {
                self.refused.count();
                answer_busy(&ecb, "the server is busy")
            }
            Entry::Closed((ecb, _)) => answer_busy(&ecb, "the server is shutting down"),
        }
    }

    /// Stops taking requests, drains the queue and then the threadpool, in `shutdown_timeout`
    /// in all. Returns how many requests were still running when it ran out.
    pub fn terminate(&self) -> usize {
        let deadline = Instant::now() + self.shutdown_timeout;
        let (never_started, still_running) = self.combiner.shutdown(self.shutdown_timeout);
        let count = never_started.len();
        for (ecb, _) in never_started {
            STATS.dequeued();
            // Accepted with PENDING: each is owed an answer and its DONE_WITH_SESSION.
            let status = answer_busy(&ecb, "the server is shutting down");
            ecb.done(status);
        }
        if count > 0 {
            log::line(&format!(
                "{count} queued request(s) never started; answered 503"
            ));
        }
        let total = self.refused.total();
        if total > 0 {
            log::line(&format!(
                "{total} request(s) were refused with 503 because the queue was full"
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        usize::from(still_running) + self.overflow.terminate_within(left)
    }
}
