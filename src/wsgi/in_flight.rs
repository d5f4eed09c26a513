//! The requests the bridge is running right now, for the watchdog (`crate::watchdog`):
//! since when, on which Python thread, and their ECB, which is how the extension talks to
//! IIS while they run.
//!
//! Kept only when a watchdog setting is on (`request_timeout`, `gil_stall`, `reload_on`):
//! then [`Bridge::serve`](super::Bridge::serve) enters each request here before it takes
//! the GIL ([`InFlight::enter`]) and leaves when it is done (the [`Running`] guard drops
//! before `serve` returns, so the ECB held here never outlives its request: the
//! threadpool's check that nobody else holds the request still holds).
//!
//! `HSE_REQ_REPORT_UNHEALTHY` needs an ECB: IIS has no other handle for the extension to
//! call it through. [`InFlight::report_unhealthy`] uses the oldest request in flight, with
//! the lock held, so that request cannot end meanwhile; if none is running, the report waits
//! here and the next request to arrive carries it, before anything else happens to it.
//! The lock is never held while the GIL is taken or waited for.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::isapi::ecb::Ecb;
use crate::log;
use crate::request_id::RequestId;

/// The requests running now.
#[derive(Default)]
pub struct InFlight {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    running: HashMap<u64, Entry>,
    /// A report that found no request to go through: the next request sends it.
    pending: Option<String>,
}

struct Entry {
    ecb: Arc<Ecb>,
    /// The request's id, for the log lines.
    id: RequestId,
    started: Instant,
    /// `threading.get_ident()` of the thread running it.
    thread: u64,
    /// The slow-request line was written for it.
    logged: bool,
}

/// One request in [`InFlight`]; it leaves when this drops.
pub struct Running<'a> {
    in_flight: &'a InFlight,
    serial: u64,
}

/// A request over `request_timeout` that was not logged yet.
pub struct Overdue {
    /// `GET /path`, escaped.
    pub request: String,
    pub thread: u64,
    pub elapsed: Duration,
}

impl InFlight {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Counts a request in, running on the thread `thread` (Python's id for it). A report
    /// waiting for a request goes out through this one first.
    pub fn enter(&self, ecb: &Arc<Ecb>, id: &RequestId, thread: u64) -> Running<'_> {
        let mut state = self.lock();
        if let Some(reason) = state.pending.take() {
            send_report(ecb, id, &reason);
        }
        let serial = state.next;
        state.next += 1;
        state.running.insert(
            serial,
            Entry {
                ecb: ecb.clone(),
                id: *id,
                started: Instant::now(),
                thread,
                logged: false,
            },
        );
        Running {
            in_flight: self,
            serial,
        }
    }

    /// The requests running longer than `timeout` that were not reported yet; each is
    /// returned once.
    pub fn take_overdue(&self, timeout: Duration) -> Vec<Overdue> {
        let mut state = self.lock();
        let mut overdue: Vec<Overdue> = state
            .running
            .values_mut()
            .filter(|entry| !entry.logged && entry.started.elapsed() > timeout)
            .map(|entry| {
                entry.logged = true;
                Overdue {
                    request: describe(&entry.ecb, &entry.id),
                    thread: entry.thread,
                    elapsed: entry.started.elapsed(),
                }
            })
            .collect();
        overdue.sort_by_key(|o| std::cmp::Reverse(o.elapsed));
        overdue
    }

    /// How many requests have been running longer than `timeout`.
    pub fn count_overdue(&self, timeout: Duration) -> usize {
        let state = self.lock();
        state
            .running
            .values()
            .filter(|entry| entry.started.elapsed() > timeout)
            .count()
    }

    /// The request running longest, and for how long.
    pub fn longest(&self) -> Option<(String, Duration)> {
        let state = self.lock();
        state
            .running
            .values()
            .max_by_key(|entry| entry.started.elapsed())
            .map(|entry| (describe(&entry.ecb, &entry.id), entry.started.elapsed()))
    }

    /// Sends `HSE_REQ_REPORT_UNHEALTHY` with `reason` through the oldest request in flight,
    /// or, when none is, through the next request that arrives.
    pub fn report_unhealthy(&self, reason: &str) {
        let mut state = self.lock();
        let oldest = state.running.values().max_by_key(|e| e.started.elapsed());
        match oldest {
            Some(entry) => send_report(&entry.ecb, &entry.id, reason),
            None => {
                log::line(&format!(
                    "unhealthy: {reason}; no request is in flight to report it to IIS through \
                     (HSE_REQ_REPORT_UNHEALTHY needs one): the next request will carry it"
                ));
                state.pending = Some(reason.to_string());
            }
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.in_flight.lock().running.remove(&self.serial);
    }
}

/// Reports through `ecb` (a request that cannot end meanwhile: the caller holds the lock),
/// and logs it.
fn send_report(ecb: &Ecb, id: &RequestId, reason: &str) {
    let outcome = if ecb.report_unhealthy(reason) {
        "IIS recycles the worker process at its next health ping (if pinging is enabled for the pool)"
    } else {
        "the server refused the call"
    };
    log::line(&format!(
        "reported this worker process unhealthy to IIS (HSE_REQ_REPORT_UNHEALTHY, through the \
         request {}): {reason}; {outcome}",
        describe(ecb, id)
    ));
}

fn describe(ecb: &Ecb, id: &RequestId) -> String {
    super::describe_ecb(ecb, id)
}
