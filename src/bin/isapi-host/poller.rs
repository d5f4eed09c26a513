//! The readiness loop of the worker threads.
//!
//! IIS serves requests on a pool of threads where any free thread takes any ready request;
//! a thread is never tied to a connection. The [`Poller`] gives the host the same shape
//! without a thread per connection and without a separate I/O thread. Two implementations
//! share one interface (`arm`, `arm_with`, `worker`, `hold`, `release`, `take_back`, `later`, `submit`, `expire_all`, `wait`, and `enter`
//! and `rescue` for the worker and rescuer threads):
//!
//! * Linux: a shared one-shot epoll set plus one set per worker.
//!   - The shared set holds the listening socket, new connections, and everything parked
//!     by a thread that is not a worker or that is not a connection between requests
//!     (pre-reads, drains, lingering closes): any worker takes any of them, one at a time;
//!     arming is one `epoll_ctl`.
//!   - A connection a worker parks between requests ([`Poller::arm_with`]) stays in that
//!     worker's own set, level-triggered, where only that worker waits: its next request is
//!     served by the same thread (a warm cache), re-arming costs no system call (the socket
//!     is still registered), and one `epoll_wait` reports every ready connection of the
//!     worker at once. So a keep-alive request costs one read and one write, plus a share
//!     of an `epoll_wait`, as in nginx. The shared set is nested in every worker's set, so
//!     a waiting worker sees both.
//!   - IIS never ties a connection to a thread, and a worker busy inside the extension
//!     cannot serve the connections parked with it. So a connection is pinned only while
//!     its worker is free: the rescuer thread looks every 5 ms, and when a worker has been
//!     busy for 10 ms, every connection parked with it moves to the shared set, where any
//!     free worker takes it. A ready request waits at most about 15 ms behind a slow one.
//!   - A spare worker (started while others wait for their clients inside a call, see
//!     workers.rs) has no set of its own: it waits on the shared set alone, and what it
//!     parks goes there.
//!   - A socket the worker took but did not park again (a close, a pre-read) leaves the
//!     worker's set when the worker next waits, before anyone could see it there.
//!   - A socket whose request the worker left to another thread (HSE_STATUS_PENDING) stays
//!     in its set, held ([`Poller::hold`]): when the request ends on a thread that is not a
//!     worker (the threadpool's), the connection is parked with this worker again without
//!     a system call, and only this worker wakes for its next request (unless the worker
//!     is stuck in a slow call: then the shared set, see [`Poller::take_back`]). (Parked in
//!     the shared set every time, it woke every waiting worker: a nested set wakes all who
//!     wait on it, and the threadpool handler's requests cost 3.8-4.0 voluntary worker
//!     switches each instead of 1.2-2.0.) If the request ends on another worker (the
//!     combining handler's runner), that worker takes it into its own set; if the
//!     connection closes, drains or has a pipelined request read already, it is released
//!     ([`Poller::release`]). A report for a held socket (its client spoke early, or
//!     closed) takes it out of the set.
//!   - The rule for trusting a slot: a socket number is not a connection. Until the worker
//!     next waits, the connection it took may be closed (its socket then leaves every
//!     epoll set by itself) and the number given to a new connection, which this worker
//!     may end another thread's request of (DONE_WITH_SESSION) and park. So a slot taken
//!     by the worker is re-armed without a system call only for the same connection
//!     ([`Watched::serial`]); any other is added to the set. And every addition gets a new
//!     generation in its token, so that a report still queued for a socket that has left
//!     the set cannot be taken for the next connection at that number. Idle slots (swept,
//!     rescued) and the shared slab hold their items, whose sockets are therefore open.
//!     Removing a taken socket at the next wait is harmless if it was closed meanwhile:
//!     the number's new connection is in this set only if this worker parked it, and
//!     then its slot is idle and not removed.
//!   - A worker may keep work back for later ([`Poller::later`]: a response to write, see
//!     exchange.rs's `Unsent`): it gets it back when nothing else of its last report is
//!     ready, or after 1 ms; the rescuer hands a stuck worker's to any free worker, taking
//!     their sockets out of the stuck worker's set first. With one worker nothing is kept.
//!   - Deadlines are swept every 100 ms: the shared set's by whichever worker gets there,
//!     each worker's own by itself; what expired is queued as work.
//! * Elsewhere (Windows, other Unixes), "leader/follower" over `poll(2)` / `WSAPoll`:
//!
//! * idle connections (and the listening socket) are *armed*: parked in the poller with a
//!   deadline, and watched once for readability (one-shot);
//! * each worker calls [`Poller::wait`]. One of them at a time (the leader) sits in
//!   `poll(2)` / `WSAPoll` over everything armed; every ready socket it finds is taken
//!   out of the set and queued, and the leader returns with the first one. The next
//!   waiting worker becomes the leader, or takes an already queued item;
//! * work that does not come from a socket (a connection whose PENDING request ended on an
//!   extension thread, an I/O completion callback to run) is [`Poller::submit`]ted, and a
//!   wake-up datagram interrupts the leader's poll if one is in progress.
//!
//! The poller owns armed items, so an item is closed only after it has left the poll set:
//! a socket number can never be reused while the leader still watches it.
use crate::os::RawSocket;
use std::sync::{Mutex, MutexGuard};

#[cfg(not(target_os = "linux"))]
pub use leader_follower::Poller;
#[cfg(target_os = "linux")]
pub use one_shot_epoll::Poller;

/// Something the poller can watch.
pub trait Watched {
    fn socket(&self) -> RawSocket;
    /// Which connection it is, unique for the host's life: a socket number is reused once
    /// its socket is closed, this never is. (Only Linux's per-worker sets need it.)
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    fn serial(&self) -> u64;
}

/// A unit of work handed to a worker thread.
pub enum Work<T> {
    /// An armed item became readable (or was resubmitted as ready).
    Ready(T),
    /// An armed item reached its deadline (or the host is shutting down).
    Expired(T),
    /// A closure to run on a worker thread (I/O completion callbacks).
    Task(Box<dyn FnOnce() + Send>),
}

fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    // A panic while holding one of these locks leaves consistent data (plain pushes and
    // pops), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The wake-up socket: a non-blocking UDP socket on 127.0.0.1 connected to itself, so that
/// sending it a byte makes it readable and interrupts a worker waiting in poll/epoll.
fn wake_socket() -> std::io::Result<std::net::UdpSocket> {
    let wake = std::net::UdpSocket::bind("127.0.0.1:0")?;
    wake.connect(wake.local_addr()?)?;
    wake.set_nonblocking(true)?;
    Ok(wake)
}

#[cfg(not(target_os = "linux"))]
mod leader_follower {
    use super::{Watched, Work, lock};
    use crate::os::{self, PollFd, RawSocket};
    use std::collections::VecDeque;
    use std::io;
    use std::net::UdpSocket;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// The longest a leader sleeps, so that deadlines of newly armed items are seen.
    const MAX_SLEEP: Duration = Duration::from_millis(500);

    struct Entry<T> {
        item: T,
        deadline: Option<Instant>,
    }

    /// Owned by the current leader while it polls.
    struct State<T> {
        entries: Vec<Entry<T>>,
        fds: Vec<PollFd>,
        ready: VecDeque<Work<T>>,
    }

    /// Filled by any thread without waiting for the leader.
    struct Incoming<T> {
        arms: Vec<Entry<T>>,
        work: VecDeque<Work<T>>,
        expire_all: bool,
    }

    pub struct Poller<T> {
        state: Mutex<State<T>>,
        incoming: Mutex<Incoming<T>>,
        /// True while a leader is (about to be) inside poll(): arming must wake it.
        polling: AtomicBool,
        /// A UDP socket connected to itself: sending a byte makes it readable.
        wake: UdpSocket,
    }

    impl<T: Watched> Poller<T> {
        /// A poller for `workers` worker threads (the count matters only on Linux).
        pub fn new(_workers: usize) -> io::Result<Poller<T>> {
            let wake = super::wake_socket()?;
            Ok(Poller {
                state: Mutex::new(State {
                    entries: Vec::new(),
                    fds: Vec::new(),
                    ready: VecDeque::new(),
                }),
                incoming: Mutex::new(Incoming {
                    arms: Vec::new(),
                    work: VecDeque::new(),
                    expire_all: false,
                }),
                polling: AtomicBool::new(false),
                wake,
            })
        }

        /// Parks `item` until its socket is readable or `deadline` passes.
        pub fn arm(&self, item: T, deadline: Option<Instant>) {
            lock(&self.incoming).arms.push(Entry { item, deadline });
            self.wake_leader();
        }

        /// The same as [`arm`](Poller::arm): no worker has items of its own here.
        pub fn arm_with(&self, _worker: Option<usize>, item: T, deadline: Option<Instant>) {
            self.arm(item, deadline)
        }

        /// None: workers have no numbers that matter here.
        pub fn worker(&self) -> Option<usize> {
            None
        }

        /// Nothing to keep: a connection is watched only while it is armed. None.
        pub fn hold(&self, _socket: RawSocket, _serial: u64) -> Option<usize> {
            None
        }

        /// Nothing was kept.
        pub fn release(&self, _held: Option<usize>, _socket: RawSocket, _serial: u64) {}

        /// Err: no worker has a batch of its own here, so `item` runs at once.
        pub fn later(&self, item: T) -> Result<(), T> {
            Err(item)
        }

        /// False: nothing is kept for later here.
        pub fn keeps_later(&self) -> bool {
            false
        }

        /// None: every item is shared here.
        pub fn take_back(
            &self,
            _held: Option<usize>,
            _socket: RawSocket,
            _serial: u64,
        ) -> Option<usize> {
            None
        }

        /// Nothing to do: the calling thread is worker `index`, and all workers are alike.
        pub fn enter(&self, _index: usize) {}

        /// Nothing to do: no worker keeps items of its own here.
        pub fn rescue(&self) {}

        /// Queues work for the next free worker.
        pub fn submit(&self, work: Work<T>) {
            lock(&self.incoming).work.push_back(work);
            self.wake_leader();
        }

        /// Expires every armed item (shutdown) and every item armed from now on.
        pub fn expire_all(&self) {
            lock(&self.incoming).expire_all = true;
            let _ = self.wake.send(&[1]);
        }

        fn wake_leader(&self) {
            if self.polling.load(Ordering::SeqCst) {
                let _ = self.wake.send(&[1]);
            }
        }

        /// Blocks until there is work for the calling thread.
        pub fn wait(&self) -> Work<T> {
            let mut state = lock(&self.state);
            loop {
                if let Some(work) = state.ready.pop_front() {
                    return work;
                }
                self.polling.store(true, Ordering::SeqCst);
                let expire_all = self.take_incoming(&mut state);
                if expire_all {
                    for entry in state.entries.drain(..).collect::<Vec<_>>() {
                        state.ready.push_back(Work::Expired(entry.item));
                    }
                }
                if !state.ready.is_empty() {
                    self.polling.store(false, Ordering::SeqCst);
                    continue;
                }
                self.poll_once(&mut state);
                self.polling.store(false, Ordering::SeqCst);
            }
        }

        /// Moves everything other threads queued into the leader's state.
        fn take_incoming(&self, state: &mut State<T>) -> bool {
            let mut incoming = lock(&self.incoming);
            state.entries.append(&mut incoming.arms);
            state.ready.append(&mut incoming.work);
            incoming.expire_all
        }

        fn poll_once(&self, state: &mut State<T>) {
            let State {
                entries,
                fds,
                ready,
            } = state;
            fds.clear();
            fds.push(PollFd::readable(os::raw_socket(&self.wake)));
            fds.extend(entries.iter().map(|e| PollFd::readable(e.item.socket())));
            let now = Instant::now();
            let sleep = entries
                .iter()
                .filter_map(|e| e.deadline)
                .min()
                .map_or(MAX_SLEEP, |d| {
                    d.saturating_duration_since(now).min(MAX_SLEEP)
                });
            let timeout = sleep.as_millis() as i32 + 1;
            if let Err(e) = os::poll(fds, timeout) {
                eprintln!("isapi-host: poll failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
                return;
            }
            if fds[0].ready() {
                let mut sink = [0u8; 64];
                while self.wake.recv(&mut sink).is_ok() {}
            }
            let now = Instant::now();
            // Walk backwards so that swap_remove only moves entries already looked at.
            for i in (0..entries.len()).rev() {
                if fds[i + 1].ready() {
                    ready.push_back(Work::Ready(entries.swap_remove(i).item));
                } else if entries[i].deadline.is_some_and(|d| d <= now) {
                    ready.push_back(Work::Expired(entries.swap_remove(i).item));
                }
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod one_shot_epoll {
    use super::{Watched, Work, lock};
    use crate::os::{Epoll, RawSocket, Ready};
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::io;
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};
    use std::thread::Thread;
    use std::time::{Duration, Instant};

    /// How often idle deadlines are checked (and how long a worker waits at most).
    const SWEEP_EVERY: Duration = Duration::from_millis(100);
    /// The token of the wake-up socket; items use `generation << 32 | slot`.
    const WAKE: u64 = u64::MAX;
    /// The token of the shared set inside a worker's own set.
    const SHARED: u64 = u64::MAX - 1;
    /// How long a worker may be busy before the connections parked with it move to the
    /// shared set, and how often the rescuer looks.
    const RESCUE_AFTER: Duration = Duration::from_millis(10);
    const RESCUE_EVERY: Duration = Duration::from_millis(5);
    /// How long a worker keeps work back for later ([`Poller::later`]) while it has
    /// other ready work.
    const LATER_MAX: Duration = Duration::from_millis(1);

    thread_local! {
        /// The index of the worker running on this thread (None: not a worker).
        static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    }

    struct Entry<T> {
        item: T,
        deadline: Option<Instant>,
        generation: u32,
    }

    /// Armed items by slot; a token names a slot and the generation that armed it.
    struct Slab<T> {
        slots: Vec<Option<Entry<T>>>,
        generations: Vec<u32>,
        free: Vec<usize>,
    }

    /// A connection parked with one worker, by socket number.
    enum Kept<T> {
        /// Watched in the worker's set, waiting for input.
        Idle(Entry<T>),
        /// Connection `serial`, taken by the worker (its socket is still in the worker's
        /// set, under `generation`): it either comes back here or, when the worker next
        /// waits, leaves the set. Only that connection may come back without a system
        /// call: if it was closed meanwhile, its socket left the set with it, and a new
        /// connection may have been given the same socket number.
        Busy { serial: u64, generation: u32 },
        /// Connection `serial`, whose request the worker left to another thread
        /// (HSE_STATUS_PENDING, [`Poller::hold`]): its socket stays in the set, so that the
        /// request's end parks it here again without a system call. It leaves the set when
        /// the request ends otherwise ([`Poller::release`]: parked with another worker,
        /// closed, draining, pipelined), or when the set reports it meanwhile (the client
        /// sent more early, or closed).
        Pending { serial: u64, generation: u32 },
    }

    /// One worker's own set: what it parked, watched only by itself.
    struct Own<T> {
        by_socket: Vec<Option<Kept<T>>>,
        /// The generation the next socket added to the set gets: each addition has its own,
        /// so that a report still queued in `ready` for a socket that has left the set
        /// cannot be taken for a connection added later at the same socket number.
        next_generation: u32,
        /// Sockets taken since the worker last waited (to settle then).
        taken: Vec<RawSocket>,
        /// Tokens the last wait reported and the worker has not handled yet.
        ready: VecDeque<u64>,
        last_sweep: Instant,
    }

    /// Work a worker keeps for when it has nothing else ready ([`Poller::later`]).
    struct Later<T> {
        items: VecDeque<T>,
        /// When the oldest of `items` was kept back.
        since: Option<Instant>,
    }

    struct Local<T> {
        epoll: Epoll,
        own: Mutex<Own<T>>,
        later: Mutex<Later<T>>,
        /// Milliseconds since `Poller::start` at which the worker took its current work
        /// (0: it is waiting).
        busy_since: AtomicU64,
    }

    pub struct Poller<T> {
        epoll: Epoll,
        slab: Mutex<Slab<T>>,
        queue: Mutex<VecDeque<Work<T>>>,
        expire_all: AtomicBool,
        last_sweep: Mutex<Instant>,
        /// A UDP socket connected to itself: a byte makes it readable (one-shot too).
        wake: UdpSocket,
        locals: Box<[Local<T>]>,
        start: Instant,
        /// The rescuer's thread, and whether it sleeps until a worker is busy.
        rescuer: OnceLock<Thread>,
        rescuer_asleep: AtomicBool,
    }

    impl<T: Watched> Poller<T> {
        /// A poller for `workers` worker threads (each calls [`Poller::enter`] first).
        pub fn new(workers: usize) -> io::Result<Poller<T>> {
            let wake = super::wake_socket()?;
            let epoll = Epoll::new()?;
            epoll.arm(crate::os::raw_socket(&wake), WAKE)?;
            let mut locals = Vec::with_capacity(workers);
            for _ in 0..workers {
                let own = Epoll::new()?;
                own.watch_set(&epoll, SHARED)?;
                locals.push(Local {
                    epoll: own,
                    own: Mutex::new(Own {
                        by_socket: Vec::new(),
                        next_generation: 0,
                        taken: Vec::new(),
                        ready: VecDeque::new(),
                        last_sweep: Instant::now(),
                    }),
                    later: Mutex::new(Later {
                        items: VecDeque::new(),
                        since: None,
                    }),
                    busy_since: AtomicU64::new(0),
                });
            }
            Ok(Poller {
                epoll,
                slab: Mutex::new(Slab {
                    slots: Vec::new(),
                    generations: Vec::new(),
                    free: Vec::new(),
                }),
                queue: Mutex::new(VecDeque::new()),
                expire_all: AtomicBool::new(false),
                last_sweep: Mutex::new(Instant::now()),
                wake,
                locals: locals.into_boxed_slice(),
                start: Instant::now(),
                rescuer: OnceLock::new(),
                rescuer_asleep: AtomicBool::new(false),
            })
        }

        /// Makes the calling thread worker number `index`.
        pub fn enter(&self, index: usize) {
            WORKER.with(|w| w.set(Some(index)));
        }

        /// Moves the parked connections of workers busy for longer than [`RESCUE_AFTER`]
        /// to the shared set, where any free worker sees them. Runs forever (its own thread),
        /// looking every [`RESCUE_EVERY`] while a worker is busy; while none is, it sleeps
        /// until one takes work ([`Poller::wait`] wakes it), so an idle host does not wake
        /// 200 times a second.
        pub fn rescue(&self) {
            let _ = self.rescuer.set(std::thread::current());
            loop {
                std::thread::sleep(RESCUE_EVERY);
                if !self.rescue_stuck() {
                    self.sleep_until_busy();
                }
            }
        }

        /// One look of the rescuer: what workers busy for [`RESCUE_AFTER`] parked, or kept
        /// for later, goes to where any free worker finds it. Returns whether any worker
        /// is busy.
        fn rescue_stuck(&self) -> bool {
            let now = self.millis();
            let mut busy = false;
            for local in self.locals.iter() {
                let since = local.busy_since.load(Ordering::SeqCst);
                busy |= since != 0;
                if since != 0 && now.saturating_sub(since) >= RESCUE_AFTER.as_millis() as u64 {
                    self.release_all(local);
                    self.hand_on_later(local);
                }
            }
            busy
        }

        /// The rescuer's sleep while no worker is busy. It says it is asleep before it looks
        /// a last time; a worker marks itself busy before it looks whether the rescuer is
        /// asleep (both SeqCst): so either the rescuer sees the busy worker, or the worker
        /// sees the rescuer asleep and unparks it (an unpark before the park is kept).
        fn sleep_until_busy(&self) {
            self.rescuer_asleep.store(true, Ordering::SeqCst);
            while self.rescuer_asleep.load(Ordering::SeqCst) {
                let busy = self
                    .locals
                    .iter()
                    .any(|local| local.busy_since.load(Ordering::SeqCst) != 0);
                if busy {
                    self.rescuer_asleep.store(false, Ordering::SeqCst);
                    return;
                }
                std::thread::park();
            }
        }

        /// Wakes the rescuer if it sleeps (a worker has just marked itself busy).
        fn wake_rescuer(&self) {
            if self.rescuer_asleep.load(Ordering::SeqCst)
                && self.rescuer_asleep.swap(false, Ordering::SeqCst)
                && let Some(rescuer) = self.rescuer.get()
            {
                rescuer.unpark();
            }
        }

        fn millis(&self) -> u64 {
            self.start.elapsed().as_millis() as u64 + 1
        }

        /// Moves every idle connection of `local` to the shared set.
        fn release_all(&self, local: &Local<T>) {
            let mut moved = Vec::new();
            {
                let mut own = lock(&local.own);
                for socket in 0..own.by_socket.len() {
                    if let Some(Kept::Idle(_)) = &own.by_socket[socket] {
                        let Some(Kept::Idle(entry)) = own.by_socket[socket].take() else {
                            continue;
                        };
                        local.epoll.remove(socket as RawSocket);
                        moved.push(entry);
                    }
                }
            }
            for entry in moved {
                self.arm(entry.item, entry.deadline);
            }
        }

        /// Queues the work `local` kept for later ([`Poller::later`]), for any free worker:
        /// its worker is stuck. The sockets leave that worker's set first, here: the
        /// worker may be past its [`settle`](Poller::settle) already (the rescuer read its
        /// busy time just before it came back), and a socket left in its level-triggered
        /// set would be reported there, and passed over, at every wait until the
        /// connection's new worker reads the next request.
        fn hand_on_later(&self, local: &Local<T>) {
            let items: Vec<T> = {
                let mut later = lock(&local.later);
                later.since = None;
                later.items.drain(..).collect()
            };
            if items.is_empty() {
                return;
            }
            {
                let mut own = lock(&local.own);
                for item in &items {
                    let socket = item.socket();
                    if let Some(slot) = own.by_socket.get_mut(socket as usize)
                        && matches!(slot, Some(Kept::Busy { serial, .. }) if *serial == item.serial())
                    {
                        *slot = None;
                        local.epoll.remove(socket);
                    }
                }
            }
            lock(&self.queue).extend(items.into_iter().map(Work::Ready));
            let _ = self.wake.send(&[1]);
        }

        /// Keeps `item`, a connection the calling worker took from its set, to be handed
        /// back to this worker as ready work when it has nothing else ready, or once it has
        /// kept work back for [`LATER_MAX`] (or by any free worker if this one is stuck for
        /// [`RESCUE_AFTER`]). Meanwhile its socket stays in the worker's set, taken: parked
        /// again then, it costs no system call. Err(item), for the caller to run at once,
        /// on a thread that is no worker with a set, and when there is only one worker:
        /// nobody would take over its work while it is stuck in a slow call.
        /// Whether [`later`](Poller::later) keeps work on the calling thread.
        pub fn keeps_later(&self) -> bool {
            self.worker().is_some() && self.locals.len() > 1
        }

        pub fn later(&self, item: T) -> Result<(), T> {
            let Some(index) = self.worker().filter(|_| self.locals.len() > 1) else {
                return Err(item);
            };
            let local = &self.locals[index];
            let socket = item.socket();
            lock(&local.own).taken.retain(|&taken| taken != socket);
            let mut later = lock(&local.later);
            later.since.get_or_insert_with(Instant::now);
            later.items.push_back(item);
            Ok(())
        }

        /// The oldest work kept for later, if the worker has no other (`idle`) or has kept
        /// work back for [`LATER_MAX`]. Its socket counts as taken again (see
        /// [`settle`](Poller::settle)).
        fn take_later(local: &Local<T>, idle: bool) -> Option<T> {
            let item = {
                let mut later = lock(&local.later);
                let due = later
                    .since
                    .is_some_and(|since| idle || since.elapsed() >= LATER_MAX);
                if !due {
                    return None;
                }
                let item = later.items.pop_front();
                if later.items.is_empty() {
                    later.since = None;
                }
                item?
            };
            lock(&local.own).taken.push(item.socket());
            Some(item)
        }

        /// The number of the worker running on the calling thread (None: not a worker).
        pub fn worker(&self) -> Option<usize> {
            WORKER.with(|w| w.get())
        }

        /// Keeps the calling worker's connection `serial` at `socket`, whose request now
        /// goes on on another thread, in the worker's set if the worker took it from there
        /// (see [`Kept::Pending`]); returns the worker's number, for
        /// [`take_back`](Poller::take_back) when the request ends. None on a thread that is
        /// no worker with a set.
        pub fn hold(&self, socket: RawSocket, serial: u64) -> Option<usize> {
            let index = self.worker()?;
            let mut own = lock(&self.locals[index].own);
            if let Some(slot) = own.by_socket.get_mut(socket as usize)
                && let Some(Kept::Busy {
                    serial: s,
                    generation,
                }) = *slot
                && s == serial
            {
                *slot = Some(Kept::Pending { serial, generation });
            }
            Some(index)
        }

        /// Takes connection `serial` at `socket` out of the set of the worker `held` that
        /// keeps it ([`hold`](Poller::hold)), if it does: its request ended and it is not
        /// parked there (closed, draining, pipelined input, another worker's).
        pub fn release(&self, held: Option<usize>, socket: RawSocket, serial: u64) {
            let Some(held) = held else { return };
            let local = &self.locals[held];
            let mut own = lock(&local.own);
            if let Some(slot) = own.by_socket.get_mut(socket as usize)
                && matches!(slot, Some(Kept::Pending { serial: s, .. }) if *s == serial)
            {
                *slot = None;
                local.epoll.remove(socket);
            }
        }

        /// Where to park a connection that worker `held` keeps ([`hold`](Poller::hold))
        /// when its request ends on the calling thread, for [`arm_with`](Poller::arm_with):
        /// * with the calling worker, if it is a worker with a set: the thread that ran the
        ///   request serves what comes next, as if the request had come to it (the socket
        ///   first leaves `held`'s set if that is another worker's);
        /// * else with `held`, unless `held` has been busy for [`RESCUE_AFTER`] (inside a
        ///   slow call): then in the shared set, where a free worker takes the next request
        ///   at once, as the rescuer would have moved it.
        pub fn take_back(
            &self,
            held: Option<usize>,
            socket: RawSocket,
            serial: u64,
        ) -> Option<usize> {
            let here = self.worker();
            let stuck = held.is_some_and(|held| {
                let since = self.locals[held].busy_since.load(Ordering::SeqCst);
                since != 0 && self.millis().saturating_sub(since) >= RESCUE_AFTER.as_millis() as u64
            });
            if (here.is_some() && here != held) || (here.is_none() && stuck) {
                self.release(held, socket, serial);
                return here;
            }
            here.or(held)
        }

        /// Parks `item` with worker `worker`, in its own set, from any thread; in the
        /// shared set if `worker` is None. The calling worker's own number
        /// ([`worker`](Poller::worker)) costs no system call when the socket is still there
        /// from its last request. A connection whose request ended on another
        /// thread (DONE_WITH_SESSION) goes back to the worker that took the request: only
        /// that worker wakes for its next request, where the shared set would wake every
        /// waiting worker (each has the shared set in its own, and a nested set wakes all
        /// who wait on it). Adding a socket to a set another thread waits on is safe; the
        /// slot's rule is the same as for the worker itself, under the same lock.
        pub fn arm_with(&self, worker: Option<usize>, item: T, deadline: Option<Instant>) {
            let Some(index) = worker else {
                return self.arm(item, deadline);
            };
            if self.expire_all.load(Ordering::SeqCst) {
                return; // shutting down: dropping the item closes it
            }
            let local = &self.locals[index];
            let socket = item.socket();
            let slot = socket as usize;
            let mut own = lock(&local.own);
            if own.by_socket.len() <= slot {
                own.by_socket.resize_with(slot + 1, || None);
            }
            let generation =
                match own.by_socket[slot].take() {
                    // The same connection, back from its request: still in the set.
                    Some(
                        Kept::Busy { serial, generation } | Kept::Pending { serial, generation },
                    ) if serial == item.serial() => generation,
                    // Not in the set: a free slot, or the socket number of a connection this
                    // worker took and that has been closed since (its socket left the set then).
                    _ => {
                        let generation = own.next_generation;
                        own.next_generation = generation.wrapping_add(1);
                        if let Err(e) = local.epoll.watch(socket, token(generation, slot)) {
                            drop(own);
                            eprintln!("isapi-host: cannot watch a socket: {e}");
                            return;
                        }
                        generation
                    }
                };
            own.by_socket[slot] = Some(Kept::Idle(Entry {
                item,
                deadline,
                generation,
            }));
        }

        /// Parks `item` in the shared set until its socket is readable or `deadline` passes.
        pub fn arm(&self, item: T, deadline: Option<Instant>) {
            if self.expire_all.load(Ordering::SeqCst) {
                return; // shutting down: dropping the item closes it
            }
            let socket = item.socket();
            let token = {
                let mut slab = lock(&self.slab);
                let index = slab.free.pop().unwrap_or_else(|| {
                    slab.slots.push(None);
                    slab.generations.push(0);
                    slab.slots.len() - 1
                });
                let generation = slab.generations[index];
                slab.slots[index] = Some(Entry {
                    item,
                    deadline,
                    generation,
                });
                token(generation, index)
            };
            if let Err(e) = self.epoll.arm(socket, token) {
                eprintln!("isapi-host: cannot watch a socket: {e}");
                drop(self.take(token));
            }
        }

        /// Removes and returns the item armed with `token`, if it is still there.
        fn take(&self, token: u64) -> Option<T> {
            let (index, generation) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
            let mut slab = lock(&self.slab);
            match slab.slots.get(index) {
                Some(Some(entry)) if entry.generation == generation => {}
                _ => return None,
            }
            let entry = slab.slots[index].take()?;
            slab.generations[index] = generation.wrapping_add(1);
            slab.free.push(index);
            Some(entry.item)
        }

        /// Queues work for the next free worker.
        pub fn submit(&self, work: Work<T>) {
            lock(&self.queue).push_back(work);
            let _ = self.wake.send(&[1]);
        }

        /// Closes every armed item (shutdown) and every item armed from now on.
        pub fn expire_all(&self) {
            self.expire_all.store(true, Ordering::SeqCst);
            let _ = self.wake.send(&[1]);
        }

        /// Hands armed items whose deadline has passed (all of them when shutting down)
        /// to the workers as [`Work::Expired`], after they left the epoll set.
        fn sweep(&self) {
            let now = Instant::now();
            let all = self.expire_all.load(Ordering::SeqCst);
            let expired: Vec<T> = {
                let mut slab = lock(&self.slab);
                let mut out = Vec::new();
                for index in 0..slab.slots.len() {
                    let due = matches!(&slab.slots[index], Some(e) if all || e.deadline.is_some_and(|d| d <= now));
                    if due && let Some(entry) = slab.slots[index].take() {
                        self.epoll.remove(entry.item.socket());
                        slab.generations[index] = entry.generation.wrapping_add(1);
                        slab.free.push(index);
                        out.push(entry.item);
                    }
                }
                out
            };
            if !expired.is_empty() {
                lock(&self.queue).extend(expired.into_iter().map(Work::Expired));
                let _ = self.wake.send(&[1]);
            }
        }

        /// The same for the calling worker's own set (it handles them itself).
        fn sweep_own(&self, local: &Local<T>) {
            let now = Instant::now();
            let all = self.expire_all.load(Ordering::SeqCst);
            let mut expired = Vec::new();
            {
                let mut own = lock(&local.own);
                if now.duration_since(own.last_sweep) < SWEEP_EVERY && !all {
                    return;
                }
                own.last_sweep = now;
                for socket in 0..own.by_socket.len() {
                    let due = matches!(&own.by_socket[socket], Some(Kept::Idle(e)) if all || e.deadline.is_some_and(|d| d <= now));
                    if due && let Some(Kept::Idle(entry)) = own.by_socket[socket].take() {
                        local.epoll.remove(socket as RawSocket);
                        expired.push(entry.item);
                    }
                }
            }
            if !expired.is_empty() {
                lock(&self.queue).extend(expired.into_iter().map(Work::Expired));
            }
        }

        /// Sockets the worker took and did not park again have left it: out of its set.
        /// (If such a connection was closed meanwhile, its socket has left the set already
        /// and the removal finds nothing: a new connection with the same socket number is
        /// in this set only if this worker parked it, and then its slot is `Idle`.)
        fn settle(local: &Local<T>) {
            let mut own = lock(&local.own);
            let Own {
                by_socket, taken, ..
            } = &mut *own;
            for socket in taken.drain(..) {
                // A socket kept for later may never have had a slot here (a new connection).
                let Some(slot) = by_socket.get_mut(socket as usize) else {
                    continue;
                };
                if let Some(Kept::Busy { .. }) = slot {
                    *slot = None;
                    local.epoll.remove(socket);
                }
            }
        }

        /// The next connection of the worker's own set that its last wait found readable.
        fn take_own(local: &Local<T>) -> Option<T> {
            let mut own = lock(&local.own);
            while let Some(token) = own.ready.pop_front() {
                let (slot, generation) = ((token & 0xffff_ffff) as usize, (token >> 32) as u32);
                match own.by_socket.get(slot) {
                    Some(Some(Kept::Idle(e))) if e.generation == generation => {}
                    Some(Some(Kept::Pending { generation: g, .. })) if *g == generation => {
                        // Its request is still elsewhere, or it was parked elsewhere since:
                        // whoever has it watches it; it leaves this set.
                        own.by_socket[slot] = None;
                        local.epoll.remove(slot as RawSocket);
                        continue;
                    }
                    _ => continue, // moved to the shared set, or expired, meanwhile
                }
                let Some(Kept::Idle(entry)) = own.by_socket[slot].take() else {
                    continue;
                };
                let serial = entry.item.serial();
                own.by_socket[slot] = Some(Kept::Busy { serial, generation });
                own.taken.push(slot as RawSocket);
                return Some(entry.item);
            }
            None
        }

        /// Blocks until there is work for the calling worker: a readable connection of its
        /// own set, queued work, or something ready in the shared set.
        pub fn wait(&self) -> Work<T> {
            let Some(index) = WORKER.with(|w| w.get()) else {
                return self.wait_shared();
            };
            let local = &self.locals[index];
            Self::settle(local);
            let work = self.next(local);
            local.busy_since.store(self.millis(), Ordering::SeqCst);
            self.wake_rescuer();
            work
        }

        fn next(&self, local: &Local<T>) -> Work<T> {
            loop {
                local.busy_since.store(0, Ordering::SeqCst);
                if let Some(item) = Self::take_later(local, false) {
                    return Work::Ready(item);
                }
                if let Some(item) = Self::take_own(local) {
                    return Work::Ready(item);
                }
                let (work, more) = {
                    let mut queue = lock(&self.queue);
                    (queue.pop_front(), !queue.is_empty())
                };
                if let Some(work) = work {
                    if more {
                        let _ = self.wake.send(&[1]); // more queued: wake another worker
                    }
                    return work;
                }
                if let Some(item) = Self::take_later(local, true) {
                    return Work::Ready(item);
                }
                self.sweep_if_due();
                self.sweep_own(local);
                if !lock(&self.queue).is_empty() {
                    continue;
                }
                let mut ready = Ready::new();
                if let Err(e) = local
                    .epoll
                    .wait_many(&mut ready, SWEEP_EVERY.as_millis() as i32)
                {
                    eprintln!("isapi-host: epoll_wait failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                let mut shared = false;
                {
                    let mut own = lock(&local.own);
                    for token in ready.tokens() {
                        if token == SHARED {
                            shared = true;
                        } else {
                            own.ready.push_back(token);
                        }
                    }
                }
                if shared && let Some(work) = self.take_shared() {
                    return work;
                }
            }
        }

        /// The shared set's deadlines, when [`SWEEP_EVERY`] has passed since the last sweep
        /// (or the host is stopping).
        fn sweep_if_due(&self) {
            let due = {
                let mut last = lock(&self.last_sweep);
                let due = last.elapsed() >= SWEEP_EVERY || self.expire_all.load(Ordering::SeqCst);
                if due {
                    *last = Instant::now();
                }
                due
            };
            if due {
                self.sweep();
            }
        }

        /// [`wait`](Poller::wait) for a worker without a set of its own (a spare, see
        /// workers.rs): queued work, or a ready item of the shared set. What it parks goes
        /// to the shared set too ([`arm_with`](Poller::arm_with) with no
        /// worker of a set).
        fn wait_shared(&self) -> Work<T> {
            loop {
                let (work, more) = {
                    let mut queue = lock(&self.queue);
                    (queue.pop_front(), !queue.is_empty())
                };
                if let Some(work) = work {
                    if more {
                        let _ = self.wake.send(&[1]); // more queued: wake another worker
                    }
                    return work;
                }
                self.sweep_if_due();
                if !lock(&self.queue).is_empty() {
                    continue;
                }
                match self.epoll.wait(SWEEP_EVERY.as_millis() as i32) {
                    Ok(Some(WAKE)) => self.rearm_wake(),
                    Ok(Some(token)) => {
                        if let Some(item) = self.take(token) {
                            return Work::Ready(item);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        eprintln!("isapi-host: epoll_wait failed: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }

        /// The wake-up socket reported readable: empties it and watches it again (it is
        /// one-shot in the shared set, as everything there).
        fn rearm_wake(&self) {
            let mut sink = [0u8; 64];
            while self.wake.recv(&mut sink).is_ok() {}
            let _ = self.epoll.arm(crate::os::raw_socket(&self.wake), WAKE);
        }

        /// One ready item of the shared set, without waiting.
        fn take_shared(&self) -> Option<Work<T>> {
            match self.epoll.wait(0) {
                Ok(Some(WAKE)) => {
                    self.rearm_wake();
                    None
                }
                Ok(Some(token)) => self.take(token).map(Work::Ready),
                Ok(None) => None,
                Err(e) => {
                    eprintln!("isapi-host: epoll_wait failed: {e}");
                    None
                }
            }
        }
    }

    fn token(generation: u32, slot: usize) -> u64 {
        (generation as u64) << 32 | slot as u64
    }

    #[cfg(test)]
    mod tests {
        use super::{Poller, Work, lock};
        use crate::os::{self, RawSocket, Ready};
        use crate::poller::Watched;
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        use std::time::{Duration, Instant};

        /// The server end of a real loopback connection, numbered as the host numbers its
        /// connections.
        struct Item {
            stream: TcpStream,
            serial: u64,
        }

        impl Watched for Item {
            fn socket(&self) -> RawSocket {
                os::raw_socket(&self.stream)
            }
            fn serial(&self) -> u64 {
                self.serial
            }
        }

        fn accept(listener: &TcpListener, serial: u64) -> Item {
            let (stream, _) = listener.accept().expect("accept");
            Item { stream, serial }
        }

        fn connect(listener: &TcpListener) -> TcpStream {
            TcpStream::connect(listener.local_addr().unwrap()).expect("connect")
        }

        /// What the worker's next wait hands out, if it is a ready item.
        fn next_ready(poller: &Poller<Item>) -> Result<Item, &'static str> {
            match poller.wait() {
                Work::Ready(item) => Ok(item),
                Work::Expired(_) => Err("the item reached its deadline instead"),
                Work::Task(_) => Err("a task instead"),
            }
        }

        fn soon() -> Option<Instant> {
            Some(Instant::now() + Duration::from_secs(3))
        }

        /// A worker takes connection A from its own set; A is closed before the worker
        /// waits again, and a new connection C gets A's socket number; the worker parks C
        /// (as when it ends C's request for another thread). C must be watched: with
        /// the slot's `Busy` trusted for any connection, C's input waited until C's deadline.
        #[test]
        fn a_new_connection_on_the_socket_number_of_one_taken_and_closed_is_watched() {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            // Other tests of this binary open sockets too, so the number may be taken in
            // between: try a few times.
            for _ in 0..20 {
                let poller = Poller::new(1).unwrap();
                poller.enter(0);
                let mut a_client = connect(&listener);
                poller.arm_with(poller.worker(), accept(&listener, 1), soon());
                a_client.write_all(b"a").unwrap();
                let a = next_ready(&poller).expect("A is ready");
                let number = a.socket();
                let mut c_client = connect(&listener);
                drop(a);
                let c = accept(&listener, 2);
                if c.socket() != number {
                    continue;
                }
                poller.arm_with(poller.worker(), c, soon());
                c_client.write_all(b"c").unwrap();
                let c = next_ready(&poller).expect("C is watched");
                assert_eq!(c.serial, 2);
                return;
            }
            panic!("no new connection got the closed one's socket number in 20 tries");
        }

        /// Worker 0 of a poller for two workers, whose wait found connections 1 and 2
        /// ready at once: it has taken one of them and read its request; the other is
        /// still to come. Also the clients' ends, by serial.
        fn taken_and_ready() -> (Poller<Item>, [TcpStream; 2], Item) {
            let poller = Poller::new(2).unwrap();
            poller.enter(0);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut first = connect(&listener);
            poller.arm_with(poller.worker(), accept(&listener, 1), soon());
            let mut second = connect(&listener);
            poller.arm_with(poller.worker(), accept(&listener, 2), soon());
            first.write_all(b"a").unwrap();
            second.write_all(b"b").unwrap();
            let mut item = next_ready(&poller).expect("ready");
            let mut byte = [0u8; 1];
            item.stream.read_exact(&mut byte).unwrap();
            (poller, [first, second], item)
        }

        /// Work kept for later (a response to write) comes back to its worker after the
        /// connections that are ready, and, once nothing else is, before the worker sleeps;
        /// parked again then, it is still in the worker's set, and its next request is
        /// reported there.
        #[test]
        fn work_kept_for_later_comes_after_the_ready_connections() {
            let (poller, mut clients, item) = taken_and_ready();
            let kept = item.serial;
            assert!(poller.later(item).is_ok());
            let other = next_ready(&poller).expect("the ready connection first");
            assert_eq!(other.serial, 3 - kept);
            let first = next_ready(&poller).expect("then the kept work");
            assert_eq!(first.serial, kept);
            poller.arm_with(poller.worker(), first, soon());
            clients[kept as usize - 1].write_all(b"c").unwrap();
            let again = next_ready(&poller).expect("its next request, in the same set");
            assert_eq!(again.serial, kept);
        }

        /// Kept longer than LATER_MAX, the work comes back before the ready connections.
        #[test]
        fn work_kept_for_later_waits_at_most_a_millisecond() {
            let (poller, _clients, item) = taken_and_ready();
            let kept = item.serial;
            assert!(poller.later(item).is_ok());
            std::thread::sleep(super::LATER_MAX * 2);
            let first = next_ready(&poller).expect("the kept work first");
            assert_eq!(first.serial, kept);
        }

        /// A worker stuck in a slow call: the rescuer hands the work it kept for later to
        /// any free worker (here worker 1).
        #[test]
        fn a_stuck_workers_later_work_goes_to_a_free_worker() {
            let (poller, _clients, item) = taken_and_ready();
            let kept = item.serial;
            assert!(poller.later(item).is_ok());
            // Worker 0 takes work and does not come back for longer than RESCUE_AFTER.
            poller.locals[0]
                .busy_since
                .store(poller.millis(), Ordering::SeqCst);
            std::thread::sleep(super::RESCUE_AFTER + Duration::from_millis(5));
            assert!(poller.rescue_stuck());
            let taken = std::thread::scope(|s| {
                s.spawn(|| {
                    poller.enter(1);
                    next_ready(&poller).map(|item| item.serial)
                })
                .join()
                .unwrap()
            });
            assert_eq!(taken, Ok(kept), "worker 1 took the kept work");
        }

        /// The rescuer hands a kept connection on just after its worker came back and
        /// settled (it read the worker's busy time before); worker 1 serves it and parks it.
        /// The connection's next request must not be reported to worker 0's set: it is
        /// level-triggered, and worker 0 would find the report at every wait, pass over it
        /// and wait again, spinning until worker 1 read the request.
        #[test]
        fn later_work_handed_on_leaves_its_workers_set_at_once() {
            let (poller, mut clients, item) = taken_and_ready();
            let kept = item.serial;
            assert!(poller.later(item).is_ok());
            // Worker 0 has settled and waits (its other ready connection taken meanwhile).
            let other = Poller::take_own(&poller.locals[0]).expect("the other is ready");
            Poller::settle(&poller.locals[0]);
            poller.hand_on_later(&poller.locals[0]);
            std::thread::scope(|s| {
                s.spawn(|| {
                    poller.enter(1);
                    let item = next_ready(&poller).expect("worker 1 takes the kept work");
                    assert_eq!(item.serial, kept);
                    poller.arm_with(poller.worker(), item, soon());
                });
            });
            clients[kept as usize - 1].write_all(b"c").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(
                reports_to_worker_0(&poller),
                0,
                "worker 0's set reports the connection worker 1 has"
            );
            drop(other);
        }

        /// With one worker nobody could take its work over: nothing is kept for later.
        #[test]
        fn one_worker_keeps_nothing_for_later() {
            let poller = Poller::new(1).unwrap();
            poller.enter(0);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let _client = connect(&listener);
            assert!(poller.later(accept(&listener, 1)).is_err());
        }

        /// Worker 0 (the calling thread) of a poller for `workers` workers takes the first
        /// request of connection 1 from its own set, reads it, and leaves the request to
        /// another thread (HSE_STATUS_PENDING): the socket is held. Also the client's end.
        fn held_request(workers: usize) -> (Poller<Item>, TcpStream, Item) {
            let poller = Poller::new(workers).unwrap();
            poller.enter(0);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = connect(&listener);
            poller.arm_with(poller.worker(), accept(&listener, 1), soon());
            client.write_all(b"a").unwrap();
            let mut item = next_ready(&poller).expect("ready");
            let mut byte = [0u8; 1];
            item.stream.read_exact(&mut byte).unwrap();
            assert_eq!(poller.hold(item.socket(), 1), Some(0));
            (poller, client, item)
        }

        /// How many reports of connections worker 0's own set has within 50 ms (not
        /// counting the shared set's, which wake-ups for queued work make).
        fn reports_to_worker_0(poller: &Poller<Item>) -> usize {
            let mut ready = Ready::new();
            poller.locals[0].epoll.wait_many(&mut ready, 50).unwrap();
            ready
                .tokens()
                .filter(|&token| token != super::SHARED)
                .count()
        }

        /// The request ends on a thread that is no worker. The connection must come back to
        /// worker 0's set, where its socket still is (no second set, no shared set: that one
        /// wakes every waiting worker), and be served there.
        #[test]
        fn a_held_connection_comes_back_to_its_worker() {
            let (poller, mut client, item) = held_request(2);
            let socket = item.socket();
            // Worker 0 is back in its wait (as after returning PENDING), not stuck.
            poller.locals[0].busy_since.store(0, Ordering::SeqCst);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let home = poller.take_back(Some(0), socket, 1);
                    assert_eq!(home, Some(0), "parked with the worker that held it");
                    poller.arm_with(home, item, soon());
                });
            });
            assert!(lock(&poller.slab).slots.iter().all(Option::is_none));
            assert!(
                poller.take_shared().is_none(),
                "nothing went to the shared set"
            );
            client.write_all(b"b").unwrap();
            let back = next_ready(&poller).expect("served by worker 0 again");
            assert_eq!(back.serial, 1);
        }

        /// The request ends on worker 1 (the combining handler's runner): the connection is
        /// parked with worker 1 and leaves worker 0's set, so that only worker 1 hears of
        /// its next request.
        #[test]
        fn a_held_connection_taken_back_by_another_worker_leaves_the_first_set() {
            let (poller, mut client, item) = held_request(2);
            let socket = item.socket();
            // Kept open (unread) until worker 0's set has been looked at.
            let _back = std::thread::scope(|s| {
                s.spawn(|| {
                    poller.enter(1);
                    let home = poller.take_back(Some(0), socket, 1);
                    assert_eq!(home, Some(1), "parked with the worker that ended it");
                    poller.arm_with(home, item, soon());
                    client.write_all(b"b").unwrap();
                    let back = next_ready(&poller).expect("served by worker 1");
                    assert_eq!(back.serial, 1);
                    back
                })
                .join()
                .unwrap()
            });
            assert_eq!(
                reports_to_worker_0(&poller),
                0,
                "worker 0's set still reports it"
            );
        }

        /// A held connection whose request ends without coming back for its next request
        /// (closed, draining in the shared set, pipelined input handed to any worker) is
        /// released: it leaves the set of the worker that held it, which would otherwise
        /// wake for it once more.
        #[test]
        fn a_released_connection_leaves_the_set_of_the_worker_that_held_it() {
            let (poller, mut client, item) = held_request(1);
            let socket = item.socket();
            std::thread::scope(|s| {
                s.spawn(|| poller.release(Some(0), socket, 1));
            });
            client.write_all(b"b").unwrap();
            assert_eq!(
                reports_to_worker_0(&poller),
                0,
                "the unread input is still reported to worker 0"
            );
            drop(item);
        }

        /// A held connection whose worker is stuck in a slow call when the request ends on
        /// another thread goes to the shared set, where a free worker takes its next request
        /// at once (parked with the stuck worker, it would wait for the rescuer).
        #[test]
        fn a_held_connection_of_a_stuck_worker_goes_to_the_shared_set() {
            let (poller, mut client, item) = held_request(2);
            let socket = item.socket();
            // Worker 0 took work 50 ms ago and is still at it.
            std::thread::sleep(Duration::from_millis(60));
            let since = poller.millis() - 50;
            poller.locals[0].busy_since.store(since, Ordering::SeqCst);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let home = poller.take_back(Some(0), socket, 1);
                    assert_eq!(home, None, "parked with a worker stuck for 50 ms");
                    poller.arm_with(home, item, soon());
                });
            });
            client.write_all(b"b").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let Some(Work::Ready(back)) = poller.take_shared() else {
                panic!("the next request is not in the shared set");
            };
            assert_eq!(back.serial, 1);
        }

        /// While its request is elsewhere, the client of a held connection sends more (or
        /// closes): worker 0's set reports it. It must not be handed out (its request is
        /// not over), it leaves the set (a level-triggered report would come back at every
        /// wait), and when the request ends the connection is watched again and served.
        #[test]
        fn a_held_connection_that_speaks_early_leaves_the_set_until_its_request_ends() {
            let (poller, mut client, item) = held_request(1);
            let socket = item.socket();
            client.write_all(b"b").unwrap();
            let local = &poller.locals[0];
            let mut ready = Ready::new();
            local.epoll.wait_many(&mut ready, 1000).unwrap();
            let tokens: Vec<u64> = ready.tokens().collect();
            assert_eq!(tokens.len(), 1, "the early input is reported");
            lock(&local.own).ready.push_back(tokens[0]);
            assert!(
                Poller::take_own(local).is_none(),
                "a connection whose request is elsewhere is handed out"
            );
            assert_eq!(reports_to_worker_0(&poller), 0, "it is still in the set");
            local.busy_since.store(0, Ordering::SeqCst);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let home = poller.take_back(Some(0), socket, 1);
                    poller.arm_with(home, item, soon());
                });
            });
            let back = next_ready(&poller).expect("watched again, with its input");
            assert_eq!(back.serial, 1);
        }

        /// One wait finds A and B ready; the worker takes A, the rescuer moves B to the
        /// shared set, another worker takes B, reads it, and B is parked with this worker
        /// again with nothing to read. The report for B still queued from the first wait
        /// must not hand B out: with generations restarting at 0 for a free slot it did, and
        /// serving it would block in a read until B's client sent something.
        #[test]
        fn a_report_still_queued_for_a_socket_that_left_is_not_taken_for_its_return() {
            let poller = Poller::new(1).unwrap();
            poller.enter(0);
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut clients = Vec::new();
            for serial in 1..=2 {
                clients.push(connect(&listener));
                poller.arm_with(poller.worker(), accept(&listener, serial), soon());
            }
            for client in &mut clients {
                client.write_all(b"x").unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
            let mut first = next_ready(&poller).expect("one is ready");
            assert_eq!(
                lock(&poller.locals[0].own).ready.len(),
                1,
                "the same wait reported the other"
            );
            poller.release_all(&poller.locals[0]);
            let Some(Work::Ready(mut other)) = poller.take_shared() else {
                panic!("the other is ready in the shared set");
            };
            let mut byte = [0u8; 1];
            other.stream.read_exact(&mut byte).unwrap();
            first.stream.read_exact(&mut byte).unwrap();
            let first_serial = first.serial;
            poller.arm_with(poller.worker(), other, soon());
            poller.arm_with(poller.worker(), first, soon());
            clients[first_serial as usize - 1].write_all(b"y").unwrap();
            let next = next_ready(&poller).expect("a ready connection");
            assert_eq!(
                next.serial, first_serial,
                "the connection handed out is the one with input"
            );
        }
    }
}
