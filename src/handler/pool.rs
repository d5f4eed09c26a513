//! [`ThreadPool`]: a set of std threads (`threads`, and spares while workers wait for their
//! clients) fed by a bounded queue; the machinery under the
//! [threadpool handler](super::threadpool).
//!
//! This module knows nothing of ISAPI or Python: it moves jobs of any type `J` to workers.
//! What it guarantees is what the handler needs:
//!
//! * **Back-pressure.** At most `threads` jobs run and `queue` more wait (`queue = 0`: none
//!   wait; a job is taken only if a worker is free). [`ThreadPool::submit`] never blocks:
//!   when the pool is full it hands the job back ([`Rejected::Full`]) so the caller can
//!   answer 503 on the IIS thread without touching Python.
//! * **A worker survives its job.** A job that panics is caught; the worker goes back to the
//!   pool in a clean state (the job's own drop code has run).
//! * **One worker at a time, more only when it stalls.** Python runs one thread at a time,
//!   so workers that all take jobs would only take turns at the GIL, and every turn costs
//!   a thread switch (measured: most of the time spent). So a job is taken by a waiting
//!   worker only when no worker is running; the running one takes the next job itself when
//!   it finishes. One waiting worker stands by: when the running ones have finished nothing
//!   for [`STALL`] while jobs wait (an application waiting on a database, a sleep, a long
//!   computation), it takes a job too, and the next waiting worker stands by. With a fast
//!   application one thread serves everything back to back; with a slow one, up to
//!   `threads` run at once, as before.
//! * **A worker waiting for its client does not count.** While a job waits for its client
//!   (the bridge marks those waits with a [`WaitingForClient`](crate::client_wait) guard:
//!   ReadClient for `wsgi.input`, WriteClient and TRANSMIT_FILE for the response, all with
//!   the GIL released), it does not count against `threads`: when a wait would leave fewer
//!   than `threads` workers free for other jobs, the pool starts a spare worker (at most
//!   [`MAX_SPARES`] beyond `threads`). A worker with nothing to do for [`SPARE_LINGER`]
//!   leaves while more than `threads` workers are not waiting, so the spares end soon after
//!   the slow clients do (and a response streamed in many writes reuses one spare). Marking
//!   a wait costs one uncontended lock; a thread starts only when one is needed.
//! * **A bounded drain.** [`ThreadPool::shutdown`] stops taking jobs, lets queued and running
//!   jobs finish for at most the given time, then hands back every job that never started
//!   (the caller still owes each of them an answer) and joins the workers that have stopped.
//!   It never waits longer than asked, even if a job never returns.
use std::collections::VecDeque;

use crate::client_wait::{self, ClientWaits};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why [`ThreadPool::submit`] gave a job back.
#[derive(Debug)]
pub enum Rejected<J> {
    /// Every worker is busy and `queue` jobs are already waiting.
    Full(J),
    /// The pool is shutting down.
    Closed(J),
}

/// What [`ThreadPool::shutdown`] leaves to the caller.
#[derive(Debug)]
pub struct Drained<J> {
    /// Jobs that were queued but never started before the time ran out.
    pub never_started: Vec<J>,
    /// Jobs still running when the time ran out (their workers were left behind, detached).
    pub still_running: usize,
}

/// A pool of `threads` worker threads (and spares, see the module docs) with a bounded queue.
pub struct ThreadPool<J: Send + 'static> {
    shared: Arc<Shared<J>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Signalled when a job is queued or the pool starts stopping.
    work: Condvar,
    /// Signalled when a worker exits, and when it finishes a job while the pool shuts down
    /// (only [`ThreadPool::shutdown`] waits for it: a signal nobody waits for is still a
    /// system call, one per job).
    progress: Condvar,
}

struct State<J> {
    queue: VecDeque<J>,
    capacity: usize,
    running: usize,
    /// The active worker's token, if one is serving.
    active: Option<u64>,
    /// The last token handed out.
    next_token: u64,
    /// Jobs the active worker finished: what the standby watches.
    progress: u64,
    /// A waiting worker is standing by (waiting with a timeout of [`STALL`]).
    standby: bool,
    /// The workers wanted free for jobs (`threads`).
    threads: usize,
    /// Jobs whose workers are waiting for their clients.
    waiting: usize,
    /// The number given to the next spare worker's name.
    next_spare: usize,
    accepting: bool,
    /// Workers exit when they see this (after the drain).
    stop: bool,
    alive: usize,
}

impl<J: Send + 'static> ThreadPool<J> {
    /// Starts `threads` workers (named `<name>-<n>`), each running `run(job)` for the jobs it
    /// takes. At most `queue` jobs wait at once.
    pub fn new<F>(
        threads: usize,
        queue: usize,
        name: &str,
        run: F,
    ) -> std::io::Result<ThreadPool<J>>
    where
        F: Fn(J) + Send + Sync + 'static,
    {
        ThreadPool::with_setup(threads, queue, name, || (), run)
    }

    /// As [`new`](ThreadPool::new), and each worker calls `setup()` when it starts and keeps
    /// what it returns until it leaves (dropped on the worker's own thread): per-thread
    /// resources such as a Python thread state.
    pub fn with_setup<G, S, F>(
        threads: usize,
        queue: usize,
        name: &str,
        setup: S,
        run: F,
    ) -> std::io::Result<ThreadPool<J>>
    where
        S: Fn() -> G + Send + Sync + 'static,
        F: Fn(J) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(queue),
                capacity: queue,
                running: 0,
                active: None,
                next_token: 0,
                progress: 0,
                standby: false,
                threads,
                waiting: 0,
                next_spare: threads,
                accepting: true,
                stop: false,
                alive: threads,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let spawner = Arc::new(Spawner {
            shared: Arc::clone(&shared),
            name: name.to_string(),
            setup,
            run,
        });
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            match Arc::clone(&spawner).start(n) {
                Ok(handle) => workers.push(handle),
                Err(error) => {
                    // Tell the workers already started to leave, then report.
                    let mut state = lock(&shared.state);
                    state.alive -= threads - n;
                    state.accepting = false;
                    state.stop = true;
                    drop(state);
                    shared.work.notify_all();
                    return Err(error);
                }
            }
        }
        Ok(ThreadPool {
            shared,
            workers: Mutex::new(workers),
        })
    }

    /// Queues `job` for a worker, or gives it back at once if the pool is full or closed.
    pub fn submit(&self, job: J) -> Result<(), Rejected<J>> {
        let mut state = lock(&self.shared.state);
        if !state.accepting {
            return Err(Rejected::Closed(job));
        }
        // Jobs in the queue that idle workers are about to take are not waiting: the bound
        // is `queue` beyond the free workers, so a free worker never causes a refusal.
        let idle = state.alive.saturating_sub(state.running);
        if state.queue.len() >= state.capacity + idle {
            return Err(Rejected::Full(job));
        }
        state.queue.push_back(job);
        // Wake a worker if nobody is serving, or to stand by while somebody is.
        let wake = state.active.is_none() || !state.standby;
        drop(state);
        if wake {
            self.shared.work.notify_one();
        }
        Ok(())
    }

    /// Jobs waiting and jobs running, for logs and tests.
    pub fn load(&self) -> (usize, usize) {
        let state = lock(&self.shared.state);
        (state.queue.len(), state.running)
    }

    /// Stops taking jobs, waits up to `timeout` for the queue to empty and the running jobs
    /// to finish, then stops the workers. Returns what the caller still has to deal with.
    pub fn shutdown(&self, timeout: Duration) -> Drained<J> {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        state.accepting = false;
        while !(state.queue.is_empty() && state.running == 0) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = match self.shared.progress.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let never_started: Vec<J> = state.queue.drain(..).collect();
        let still_running = state.running;
        state.stop = true;
        drop(state);
        self.shared.work.notify_all();
        // Join only the workers that are free; a worker still inside a job is detached, so a
        // job that never returns cannot hang the shutdown.
        let mut state = lock(&self.shared.state);
        while state.alive > still_running {
            let now = Instant::now();
            // Idle workers leave at once; give them a moment even past the deadline.
            let wait = deadline
                .saturating_duration_since(now)
                .max(Duration::from_millis(100));
            let (guard, timed_out) = match self.shared.progress.wait_timeout(state, wait) {
                Ok((guard, result)) => (guard, result.timed_out()),
                Err(poisoned) => {
                    let (guard, result) = poisoned.into_inner();
                    (guard, result.timed_out())
                }
            };
            state = guard;
            if timed_out {
                break;
            }
        }
        drop(state);
        for handle in std::mem::take(&mut *lock(&self.workers)) {
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        Drained {
            never_started,
            still_running,
        }
    }
}

/// Spare workers the pool may start beyond `threads` for jobs waiting for their clients.
pub const MAX_SPARES: usize = 1024;

/// What starts a worker (at creation, and a spare later): it owns the pool's job code.
struct Spawner<J, S, F> {
    shared: Arc<Shared<J>>,
    name: String,
    setup: S,
    run: F,
}

impl<J, G, S, F> Spawner<J, S, F>
where
    J: Send + 'static,
    S: Fn() -> G + Send + Sync + 'static,
    F: Fn(J) + Send + Sync + 'static,
{
    /// Starts worker number `n` (the caller has counted it in `alive`).
    fn start(self: Arc<Self>, n: usize) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("{}-{n}", self.name))
            .spawn(move || {
                client_wait::install(Arc::clone(&self) as Arc<dyn ClientWaits>);
                let _kept = (self.setup)();
                worker_loop(&self.shared, &self.run)
            })
    }
}

impl<J, G, S, F> ClientWaits for Spawner<J, S, F>
where
    J: Send + 'static,
    S: Fn() -> G + Send + Sync + 'static,
    F: Fn(J) + Send + Sync + 'static,
{
    fn begin(self: Arc<Self>) {
        let mut state = lock(&self.shared.state);
        state.waiting += 1;
        let free = state.alive - state.waiting.min(state.alive);
        let spare =
            free < state.threads && state.alive < state.threads + MAX_SPARES && state.accepting;
        if !spare {
            return;
        }
        state.alive += 1;
        let n = state.next_spare;
        state.next_spare += 1;
        drop(state);
        // Detached: a spare leaves by itself, and `alive` counts it until then.
        if Arc::clone(&self).start(n).is_err() {
            lock(&self.shared.state).alive -= 1;
        }
    }

    fn end(&self) {
        let mut state = lock(&self.shared.state);
        state.waiting -= 1;
        // An extra worker left idle leaves after SPARE_LINGER (see `worker_loop`).
    }
}

/// How long a worker beyond the ones needed stays idle before it leaves: a response
/// streamed in many writes reuses one spare instead of starting a thread per write.
pub const SPARE_LINGER: Duration = Duration::from_secs(5);

/// How long the active worker may finish nothing, while jobs wait, before the standby
/// worker takes over.
pub const STALL: Duration = Duration::from_millis(1);

/// The worker that serves jobs back to back (the active one) is named by a token; a
/// worker that stalled keeps running its job, but when it comes back it is no longer the
/// active one and waits instead of taking more.
fn worker_loop<J, F: Fn(J)>(shared: &Shared<J>, run: &F) {
    let mut state = lock(&shared.state);
    let mut my_token = 0;
    // Set while this worker stands by: the active worker's progress, and since when.
    let mut watching: Option<(u64, Instant)> = None;
    // Set while this worker is idle beyond the workers needed: since when.
    let mut extra_since: Option<Instant> = None;
    loop {
        let active = state.active.is_some_and(|token| token == my_token);
        if let Some((seen, since)) = &mut watching
            && *seen != state.progress
        {
            *seen = state.progress;
            *since = Instant::now();
        }
        let stalled = watching.is_some_and(|(_, since)| since.elapsed() >= STALL);
        let take =
            !state.queue.is_empty() && (active || state.active.is_none() || stalled || state.stop);
        if take {
            if !active {
                state.next_token += 1;
                my_token = state.next_token;
                state.active = Some(my_token);
            }
            if watching.take().is_some() {
                state.standby = false;
                // Another waiting worker stands by in this one's place.
                shared.work.notify_one();
            }
            extra_since = None;
            let job = state.queue.pop_front().expect("not empty");
            state.running += 1;
            drop(state);
            // A panicking job must not take its worker with it. The job was moved into the
            // closure, so whatever it owns has been dropped by the time we get here.
            let _ = catch_unwind(AssertUnwindSafe(|| run(job)));
            state = lock(&shared.state);
            state.running -= 1;
            if state.active == Some(my_token) {
                state.progress += 1;
            }
            if !state.accepting {
                shared.progress.notify_all();
            }
            continue;
        }
        if active {
            // Nothing queued: the next job wakes a worker (this one, or another).
            state.active = None;
        }
        if state.alive <= state.threads + state.waiting {
            extra_since = None;
        } else if extra_since.is_none() {
            extra_since = Some(Instant::now());
        }
        let lingered = extra_since.is_some_and(|since| since.elapsed() >= SPARE_LINGER);
        if (state.stop || lingered) && state.queue.is_empty() {
            if watching.is_some() {
                state.standby = false;
            }
            state.alive -= 1;
            shared.progress.notify_all();
            return;
        }
        if watching.is_none() && !state.standby && state.active.is_some() {
            state.standby = true;
            watching = Some((state.progress, Instant::now()));
        }
        if watching.is_some() {
            state = match shared.work.wait_timeout(state, STALL) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        } else if extra_since.is_some() {
            state = match shared.work.wait_timeout(state, SPARE_LINGER) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        } else {
            state = match shared.work.wait(state) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
    }
}

/// The pool's lock is never held while user code runs, so a poisoned lock only means a
/// panic in this module's own bookkeeping; the state is still consistent enough to go on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_on_the_workers() {
        let done = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&done);
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = ThreadPool::new(3, 100, "t", move |n: usize| {
            counter.fetch_add(n, Ordering::SeqCst);
            lock(&tx)
                .send(std::thread::current().name().unwrap().to_string())
                .unwrap();
        })
        .unwrap();
        for n in 1..=50 {
            pool.submit(n).unwrap();
        }
        let drained = pool.shutdown(Duration::from_secs(5));
        assert!(drained.never_started.is_empty());
        assert_eq!(drained.still_running, 0);
        assert_eq!(done.load(Ordering::SeqCst), (1..=50).sum::<usize>());
        let names: Vec<String> = rx.try_iter().collect();
        assert_eq!(names.len(), 50);
        assert!(names.iter().all(|n| n.starts_with("t-")));
    }

    #[test]
    fn a_full_queue_gives_the_job_back() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (started_tx, started_rx) = mpsc::channel::<u32>();
        let started_tx = Mutex::new(started_tx);
        let pool = ThreadPool::new(1, 2, "t", move |n: u32| {
            lock(&started_tx).send(n).unwrap();
            lock(&release_rx).recv().unwrap();
        })
        .unwrap();
        pool.submit(1).unwrap();
        assert_eq!(started_rx.recv().unwrap(), 1); // the only worker is busy with job 1
        pool.submit(2).unwrap();
        pool.submit(3).unwrap();
        match pool.submit(4) {
            Err(Rejected::Full(4)) => {}
            other => panic!("expected Full(4), got {other:?}"),
        }
        assert_eq!(pool.load(), (2, 1));
        for _ in 0..3 {
            release_tx.send(()).unwrap();
        }
        let drained = pool.shutdown(Duration::from_secs(5));
        assert!(drained.never_started.is_empty());
        assert!(matches!(pool.submit(5), Err(Rejected::Closed(5))));
    }

    #[test]
    fn with_no_queue_a_free_worker_still_takes_the_job() {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        let (started_tx, started_rx) = mpsc::channel::<u32>();
        let started_tx = Mutex::new(started_tx);
        let pool = ThreadPool::new(2, 0, "t", move |n: u32| {
            lock(&started_tx).send(n).unwrap();
            lock(&release_rx).recv().unwrap();
        })
        .unwrap();
        // Two free workers: both jobs are taken, even before a worker has woken up.
        pool.submit(1).unwrap();
        pool.submit(2).unwrap();
        match pool.submit(3) {
            Err(Rejected::Full(3)) => {}
            other => panic!("expected Full(3), got {other:?}"),
        }
        let mut started = [started_rx.recv().unwrap(), started_rx.recv().unwrap()];
        started.sort();
        assert_eq!(started, [1, 2]);
        assert!(matches!(pool.submit(4), Err(Rejected::Full(4))));
        release_tx.send(()).unwrap();
        // A worker is free again: the next job is taken.
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.load().1 == 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        pool.submit(5).unwrap();
        assert_eq!(started_rx.recv().unwrap(), 5);
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        let drained = pool.shutdown(Duration::from_secs(5));
        assert!(drained.never_started.is_empty());
        assert_eq!(drained.still_running, 0);
    }

    #[test]
    fn quick_jobs_are_served_back_to_back_by_one_worker() {
        // Eight workers, 200 quick jobs queued at once: one worker takes them all, in turn
        // (no turns at a lock between threads), unless the machine stalls it for STALL.
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let gate = Mutex::new(gate_rx);
        let pool = ThreadPool::new(8, 1000, "t", move |n: u32| {
            if n == 0 {
                lock(&gate).recv().unwrap(); // hold the first job until all are queued
            }
            lock(&tx)
                .send(std::thread::current().name().unwrap().to_string())
                .unwrap();
        })
        .unwrap();
        for n in 0..200 {
            pool.submit(n).unwrap();
        }
        gate_tx.send(()).unwrap();
        let names: Vec<String> = (0..200).map(|_| rx.recv().unwrap()).collect();
        let mut distinct = names.clone();
        distinct.sort();
        distinct.dedup();
        // The job held at the gate stalls its worker, so the standby takes over once; a
        // loaded machine may stall a worker again. Eight workers taking turns would spread
        // the jobs over all of them.
        assert!(distinct.len() <= 3, "served by {distinct:?}");
        pool.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn a_stalled_job_does_not_hold_up_the_others() {
        // The first job sleeps; the rest are quick and must not wait for it.
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let pool = ThreadPool::new(2, 100, "t", move |n: u32| {
            if n == 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            lock(&tx).send(n).unwrap();
        })
        .unwrap();
        let begun = Instant::now();
        for n in 0..20 {
            pool.submit(n).unwrap();
        }
        let first: Vec<u32> = (0..19).map(|_| rx.recv().unwrap()).collect();
        assert!(!first.contains(&0), "{first:?}");
        assert!(
            begun.elapsed() < Duration::from_secs(1),
            "{:?}",
            begun.elapsed()
        );
        assert_eq!(rx.recv().unwrap(), 0);
        pool.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn a_job_waiting_for_its_client_leaves_room_for_others() {
        // One thread: job 0 waits (as for a slow client) until job 1 has run. Without a
        // spare worker job 1 would sit in the queue behind it for ever. Job 1 says it ran
        // before it lets job 0 go on (the other way round, job 0's report could come first).
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let done_rx = Mutex::new(done_rx);
        let (ran_tx, ran_rx) = mpsc::channel::<u32>();
        let ran_tx = Mutex::new(ran_tx);
        let pool = ThreadPool::new(1, 10, "t", move |n: u32| {
            if n == 0 {
                let _waiting = crate::client_wait::WaitingForClient::begin();
                lock(&done_rx).recv().unwrap();
                lock(&ran_tx).send(n).unwrap();
            } else {
                lock(&ran_tx).send(n).unwrap();
                done_tx.send(()).unwrap();
            }
        })
        .unwrap();
        pool.submit(0).unwrap();
        pool.submit(1).unwrap();
        let order: Vec<u32> = (0..2)
            .map(|_| ran_rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        assert_eq!(order, [1, 0]);
        // The spare leaves once nobody waits: back to one worker.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lock(&pool.shared.state).alive > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lock(&pool.shared.state).alive, 1);
        let drained = pool.shutdown(Duration::from_secs(5));
        assert_eq!(drained.still_running, 0);
    }

    #[test]
    fn a_panicking_job_leaves_its_worker_usable() {
        let done = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&done);
        let pool = ThreadPool::new(1, 10, "t", move |n: u32| {
            if n == 0 {
                panic!("job 0 fails (expected in this test)");
            }
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        pool.submit(0).unwrap();
        pool.submit(1).unwrap();
        pool.submit(2).unwrap();
        let drained = pool.shutdown(Duration::from_secs(5));
        assert_eq!(drained.still_running, 0);
        assert_eq!(done.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn shutdown_never_waits_past_its_timeout() {
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let started_tx = Mutex::new(started_tx);
        let pool = ThreadPool::new(1, 10, "t", move |_: u32| {
            lock(&started_tx).send(()).unwrap();
            std::thread::sleep(Duration::from_secs(30)); // a job that does not come back
        })
        .unwrap();
        pool.submit(1).unwrap();
        started_rx.recv().unwrap();
        pool.submit(2).unwrap();
        pool.submit(3).unwrap();
        let begun = Instant::now();
        let drained = pool.shutdown(Duration::from_millis(300));
        assert!(
            begun.elapsed() < Duration::from_secs(3),
            "shutdown took {:?}",
            begun.elapsed()
        );
        assert_eq!(drained.never_started, vec![2, 3]);
        assert_eq!(drained.still_running, 1);
    }
}
