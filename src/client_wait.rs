//! [`WaitingForClient`]: tells the thread pool a worker is waiting for its client.
//!
//! A request's thread spends the time a slow client takes inside the bridge's client I/O
//! (ReadClient for `wsgi.input`, WriteClient and HSE_REQ_TRANSMIT_FILE for the response),
//! with the GIL released. On a worker of the [thread pool](crate::handler::pool) that
//! time must not count against `threads`, or a few slow clients hold every worker and a
//! fresh request waits in the queue. The bridge marks those waits with a
//! [`WaitingForClient`] guard; the pool installs, on each of its workers, the
//! [`ClientWaits`] to tell. On any other thread (an IIS thread under the `simple`
//! handler) the guard does nothing.
//!
//! This module sits between the bridge ([`crate::wsgi`]) and the pool
//! ([`crate::handler::pool`]) so that neither imports the other. No lock is held across a
//! wait: [`ClientWaits::begin`] and [`ClientWaits::end`] return at once.
use std::cell::RefCell;
use std::sync::Arc;

/// What a worker thread tells when its job starts and stops waiting for its client.
pub trait ClientWaits: Send + Sync {
    /// The job on this thread starts waiting for its client.
    fn begin(self: Arc<Self>);
    /// The job on this thread is done waiting.
    fn end(&self);
}

thread_local! {
    static TOLD: RefCell<Option<Arc<dyn ClientWaits>>> = const { RefCell::new(None) };
}

/// Makes `waits` the one told about this thread's client waits (a pool worker calls this
/// when it starts).
pub fn install(waits: Arc<dyn ClientWaits>) {
    TOLD.with(|told| *told.borrow_mut() = Some(waits));
}

/// Marks a wait for the client while it lives (create it just around the client I/O call).
pub struct WaitingForClient(Option<Arc<dyn ClientWaits>>);

impl WaitingForClient {
    /// Begins a wait for the client on this thread.
    pub fn begin() -> WaitingForClient {
        let told = TOLD.with(|told| told.borrow().clone());
        if let Some(waits) = &told {
            Arc::clone(waits).begin();
        }
        WaitingForClient(told)
    }
}

impl Drop for WaitingForClient {
    fn drop(&mut self) {
        if let Some(waits) = &self.0 {
            waits.end();
        }
    }
}
