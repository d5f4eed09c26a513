//! The extension's counters: what the health page ([`crate::health`]) reports, and what
//! anything else that watches the process (a watchdog, the log at shutdown) may read.
//!
//! One process-wide set of atomics, [`STATS`], so that counting costs a few relaxed atomic
//! additions per request and reading never takes a lock or the GIL:
//!
//! * the extension's [`Phase`] (starting, ok, failed, draining), set by `lib.rs`;
//! * requests **queued** (accepted by the threadpool handler, not yet on a worker):
//!   [`Stats::queued`] / [`Stats::dequeued`];
//! * requests **in flight** (inside the bridge, in Python): [`Stats::begin`] returns an
//!   [`InFlight`] guard that counts the request until it is dropped;
//! * requests **served** and how many of them ended with a **5xx** status:
//!   [`InFlight::finish`] for the bridge's answers, [`Stats::answered`] for the pages the
//!   extension answers by itself ([`crate::page::Page::answer`]). The health page's own
//!   answers are not counted;
//! * the time since the process started serving ([`Stats::uptime`]).
//!
//! [`Stats::snapshot`] reads them all at once (each value is exact, the set is not one
//! atomic picture: a request may be counted as finished and still in flight for an instant).
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the extension is in its life, as the health page reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// GetExtensionVersion has not finished yet.
    Starting = 0,
    /// The application is loaded and serving.
    Ok = 1,
    /// The application failed to start: every request gets a 500 page.
    Failed = 2,
    /// TerminateExtension began: requests in flight finish, new ones are refused.
    Draining = 3,
}

impl Phase {
    /// The word the health page uses.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Ok => "ok",
            Phase::Failed => "failed",
            Phase::Draining => "draining",
        }
    }

    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Ok,
            2 => Phase::Failed,
            3 => Phase::Draining,
            _ => Phase::Starting,
        }
    }
}

/// The process-wide counters (see the module documentation).
pub struct Stats {
    phase: AtomicU8,
    queued: AtomicU64,
    in_flight: AtomicU64,
    served: AtomicU64,
    server_errors: AtomicU64,
    started: OnceLock<Instant>,
}

/// The one set of counters.
pub static STATS: Stats = Stats {
    phase: AtomicU8::new(0),
    queued: AtomicU64::new(0),
    in_flight: AtomicU64::new(0),
    served: AtomicU64::new(0),
    server_errors: AtomicU64::new(0),
    started: OnceLock::new(),
};

/// The counters read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub phase: Phase,
    pub uptime: Duration,
    pub served: u64,
    pub in_flight: u64,
    pub queued: u64,
    pub server_errors: u64,
}

/// A request inside the bridge: counted as in flight until dropped.
#[must_use = "the request is in flight only while the guard lives"]
pub struct InFlight(());

impl InFlight {
    /// The request ended with HTTP status `status`: counted as served (and as a 5xx).
    pub fn finish(self, status: u16) {
        STATS.answered(status);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        STATS.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    /// Starts the uptime clock (the first call wins; `GetExtensionVersion` makes it).
    pub fn start_clock(&self) {
        self.started.get_or_init(Instant::now);
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// A request was queued for a worker.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued request left the queue (a worker took it, or it was answered without one).
    pub fn dequeued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request enters the bridge.
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }

    /// The extension answered a request with `status` (counted as served, and as a 5xx).
    pub fn answered(&self, status: u16) {
        self.served.fetch_add(1, Ordering::Relaxed);
        if (500..600).contains(&status) {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Time since [`start_clock`](Stats::start_clock); zero before it.
    pub fn uptime(&self) -> Duration {
        self.started.get().map(Instant::elapsed).unwrap_or_default()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            phase: self.phase(),
            uptime: self.uptime(),
            served: self.served.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
        }
    }
}
