//! The readiness loop shared by all worker threads.
//!
//! IIS serves requests on a pool of threads where any free thread takes any ready request;
//! a thread is never tied to a connection. The [`Poller`] gives the host the same shape
//! without a thread per connection and without a separate I/O thread. Two implementations
//! share one interface (`arm`, `submit`, `expire_all`, `wait`):
//!
//! * Linux: one-shot epoll. Every waiting worker sits in `epoll_wait` on the same epoll
//!   set; each gets one ready socket. Arming is one `epoll_ctl`; deadlines are swept
//!   by whichever worker wakes from its timeout, and what expired is queued as work.
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
    use crate::os::{self, PollFd};
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
        pub fn new() -> io::Result<Poller<T>> {
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
    use crate::os::Epoll;
    use std::collections::VecDeque;
    use std::io;
    use std::net::UdpSocket;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    /// How often idle deadlines are checked (and how long a worker waits at most).
    const SWEEP_EVERY: Duration = Duration::from_millis(100);
    /// The token of the wake-up socket; items use `generation << 32 | slot`.
    const WAKE: u64 = u64::MAX;

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

    pub struct Poller<T> {
        epoll: Epoll,
        slab: Mutex<Slab<T>>,
        queue: Mutex<VecDeque<Work<T>>>,
        expire_all: AtomicBool,
        last_sweep: Mutex<Instant>,
        /// A UDP socket connected to itself: a byte makes it readable (one-shot too).
        wake: UdpSocket,
    }

    impl<T: Watched> Poller<T> {
        pub fn new() -> io::Result<Poller<T>> {
            let wake = super::wake_socket()?;
            let epoll = Epoll::new()?;
            epoll.arm(crate::os::raw_socket(&wake), WAKE)?;
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
            })
        }

        /// Parks `item` until its socket is readable or `deadline` passes.
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
                (generation as u64) << 32 | index as u64
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

        /// Blocks until there is work for the calling thread.
        pub fn wait(&self) -> Work<T> {
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
                let due = {
                    let mut last = lock(&self.last_sweep);
                    let due =
                        last.elapsed() >= SWEEP_EVERY || self.expire_all.load(Ordering::SeqCst);
                    if due {
                        *last = Instant::now();
                    }
                    due
                };
                if due {
                    self.sweep();
                }
                match self.epoll.wait(SWEEP_EVERY.as_millis() as i32) {
                    Ok(Some(WAKE)) => {
                        let mut sink = [0u8; 64];
                        while self.wake.recv(&mut sink).is_ok() {}
                        let _ = self.epoll.arm(crate::os::raw_socket(&self.wake), WAKE);
                    }
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
    }
}
