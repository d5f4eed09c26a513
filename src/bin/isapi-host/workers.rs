//! How many worker threads the host runs: `--threads` of them are always free for the
//! readiness loop, even while others are blocked inside an extension's call waiting for a
//! slow client.
//!
//! A synchronous ReadClient or WriteClient (and the host's own writes of a response) runs
//! on the thread that called it, and waits for the client: for the next body bytes, or
//! for room in the socket's send buffer. When that thread is a host worker (the extension
//! called back from inside `HttpExtensionProc`, or an async completion runs), every slow
//! client doing so would take one worker away from everyone else, and `--threads` slow
//! clients would stop the host until their minimum rates ran out. So a worker about to
//! wait for its client counts itself blocked ([`while_blocked`]); when fewer than
//! `--threads` workers are left unblocked, a spare one is started (at most
//! [`SPARE_LIMIT`]). A worker that finds, between two pieces of work, more unblocked
//! workers than `--threads`, and no worker blocked for [`LINGER`], ends ([`surplus`]):
//! so a burst of large responses, whose writes block for moments, does not start and end
//! a thread per write. (Blocked IIS threads starve IIS's pool instead: new requests
//! queue, then get 503.)
//!
//! Threads that are not host workers (an extension's own) are not counted: their
//! waiting costs the host nothing.
use std::cell::Cell;
use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most spare workers running at once, beyond `--threads`.
pub const SPARE_LIMIT: usize = 1024;

/// How long spare workers stay after a worker last blocked.
pub const LINGER: Duration = Duration::from_secs(2);

/// When a worker last blocked, in milliseconds since [`EPOCH`].
static LAST_BLOCKED: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Starts one more worker thread.
type Spawn = fn() -> io::Result<()>;

/// `--threads`, and how to start one more worker.
static POOL: OnceLock<(usize, Spawn)> = OnceLock::new();
/// Worker threads running (started and not ended).
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Of those, the ones waiting for a client inside a call.
static BLOCKED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Starts `threads` workers with `spawn`, which also starts the spares later; each
/// worker calls [`enter`] first.
pub fn start(threads: usize, spawn: Spawn) -> io::Result<()> {
    let _ = POOL.set((threads, spawn));
    for _ in 0..threads {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        spawn().inspect_err(|_| {
            RUNNING.fetch_sub(1, Ordering::SeqCst);
        })?;
    }
    Ok(())
}

/// Marks the calling thread as a worker (first thing on a worker's thread).
pub fn enter() {
    IS_WORKER.with(|w| w.set(true));
}

/// Runs `wait`, a read or write that may wait for the client. On a worker, it counts as
/// blocked meanwhile, and a spare worker is started first if fewer than `--threads`
/// would be left free, unless `ready` (asked only then) says the socket is ready, so
/// that `wait` will not wait.
pub fn while_blocked<T>(ready: impl FnOnce() -> bool, wait: impl FnOnce() -> T) -> T {
    if !IS_WORKER.with(Cell::get) {
        return wait();
    }
    let blocked = BLOCKED.fetch_add(1, Ordering::SeqCst) + 1;
    if short(blocked) && !ready() {
        LAST_BLOCKED.store(now_ms(), Ordering::Relaxed);
        start_spare_if_short(blocked);
    }
    let result = wait();
    BLOCKED.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Fewer than `--threads` workers are free with `blocked` of them blocked.
fn short(blocked: usize) -> bool {
    POOL.get().is_some_and(|&(threads, _)| {
        RUNNING.load(Ordering::SeqCst).saturating_sub(blocked) < threads
    })
}

fn start_spare_if_short(blocked: usize) {
    let Some(&(threads, spawn)) = POOL.get() else {
        return;
    };
    let mut running = RUNNING.load(Ordering::SeqCst);
    while running.saturating_sub(blocked) < threads && running < threads + SPARE_LIMIT {
        match RUNNING.compare_exchange(running, running + 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => {
                if spawn().is_err() {
                    RUNNING.fetch_sub(1, Ordering::SeqCst);
                }
                return;
            }
            Err(now) => running = now,
        }
    }
}

/// Between two pieces of work: true if this worker is one more than needed (more than
/// `--threads` unblocked, and none blocked for [`LINGER`]), and has been counted out;
/// the caller's thread then ends.
pub fn surplus() -> bool {
    let Some(&(threads, _)) = POOL.get() else {
        return false;
    };
    if RUNNING.load(Ordering::SeqCst) <= threads
        || now_ms().saturating_sub(LAST_BLOCKED.load(Ordering::Relaxed)) < LINGER.as_millis() as u64
    {
        return false;
    }
    let mut running = RUNNING.load(Ordering::SeqCst);
    loop {
        let free = running.saturating_sub(BLOCKED.load(Ordering::SeqCst));
        if free <= threads {
            return false;
        }
        match RUNNING.compare_exchange(running, running - 1, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(now) => running = now,
        }
    }
}
