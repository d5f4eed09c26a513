//! [`Combiner`]: one thread at a time runs jobs, the jobs of the threads that came while
//! it ran included ("combining"); the machinery under the
//! [combining handler](super::combining).
//!
//! This module knows nothing of ISAPI or Python: it decides which thread runs a job of any
//! type `J`. The caller's own threads do the work, in turn:
//!
//! * **The first thread to come runs.** [`Combiner::enter`] gives a thread that finds
//!   nobody running the *baton* ([`Entry::Run`]): it runs its own job, then, in
//!   [`Combiner::run_batch`], the jobs that other threads queued meanwhile, back to back,
//!   at most [`BATCH`] of them, and lets the baton go. A thread that finds somebody running
//!   queues its job and leaves at once ([`Entry::Queued`]): nobody waits for anybody, and
//!   nobody wakes anybody while there is work. The jobs of the runner's batch all run on
//!   one thread, which is what Python wants: no turns at the GIL, no thread switches.
//! * **A standby for what the runner cannot do.** One thread of this module's own watches
//!   the runner every [`STALL`] while jobs wait. When the runner has finished nothing for
//!   [`STALL`] while jobs wait (a slow job: a database call, a sleep), or jobs wait and
//!   nobody runs (a batch ended with jobs left and no thread came since), it hands the
//!   waiting jobs to the caller's `divert` (the combining handler: its threadpool), and new
//!   jobs go there too ([`Entry::Divert`]) until the runner finishes its slow job. While
//!   nothing waits the standby sleeps, and the next job queued wakes it: a runner that
//!   keeps up (its callers never queue) is never interrupted. (Watching every millisecond
//!   whenever jobs came, queued or not, cost 10-15 % of hello's requests/s on 2 cores:
//!   a thread switch each time.)
//! * **Back-pressure.** At most `queue` jobs wait; beyond that [`Entry::Full`] gives the job
//!   back, so the caller can refuse it without running it.
//! * **A bounded drain.** [`Combiner::shutdown`] stops taking jobs, waits at most the given
//!   time for the queue to empty and the runner to finish, stops the standby and hands back
//!   the jobs that never started.
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What [`Combiner::enter`] decided for a job.
#[derive(Debug)]
pub enum Entry<J> {
    /// Nobody was running: this thread holds the baton; run the job and then
    /// [`Combiner::run_batch`].
    Run(J),
    /// Somebody is running: the job waits for them (or for the standby's `divert`).
    Queued,
    /// The runner is stuck in a slow job: run this one elsewhere.
    Divert(J),
    /// `queue` jobs are already waiting.
    Full(J),
    /// The combiner is shutting down.
    Closed(J),
}

/// How many queued jobs one runner runs after its own before it lets the baton go: its own
/// caller waits for them (under IIS, its connection's next request does).
pub const BATCH: usize = 64;

/// How long the runner may finish nothing while jobs wait (or jobs may wait with no runner)
/// before the standby hands them to `divert`.
pub const STALL: Duration = Duration::from_millis(1);

/// One runner at a time, a queue for the others, and the standby.
pub struct Combiner<J: Send + 'static> {
    shared: Arc<Shared<J>>,
    standby: Mutex<Option<JoinHandle<()>>>,
}

struct Shared<J> {
    state: Mutex<State<J>>,
    /// Wakes the standby (from its sleep, or to stop) and whoever waits in `shutdown`.
    changed: Condvar,
}

struct State<J> {
    queue: VecDeque<J>,
    capacity: usize,
    /// A thread holds the baton.
    running: bool,
    /// Jobs the runners finished: what the standby watches.
    progress: u64,
    /// The runner stalled: new jobs go to `divert` until it finishes its job.
    diverted: bool,
    /// The standby sleeps without a timeout (nothing waits): the next job queued wakes it.
    standby_asleep: bool,
    accepting: bool,
    stop: bool,
}

impl<J: Send + 'static> Combiner<J> {
    /// A combiner with at most `queue` waiting jobs; its standby thread (named `name`)
    /// passes jobs the runner cannot get to to `divert`, once they have waited `stall`
    /// ([`STALL`]) with no progress.
    pub fn start<D>(
        queue: usize,
        stall: Duration,
        name: &str,
        divert: D,
    ) -> std::io::Result<Combiner<J>>
    where
        D: Fn(J) + Send + 'static,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(queue.min(1024)),
                capacity: queue,
                running: false,
                progress: 0,
                diverted: false,
                standby_asleep: false,
                accepting: true,
                stop: false,
            }),
            changed: Condvar::new(),
        });
        let for_standby = Arc::clone(&shared);
        let standby = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || standby_loop(&for_standby, stall, &divert))?;
        Ok(Combiner {
            shared,
            standby: Mutex::new(Some(standby)),
        })
    }

    /// Decides who runs `job`: this thread (it gets the baton), the runner (queued), or
    /// somebody else.
    pub fn enter(&self, job: J) -> Entry<J> {
        let mut state = lock(&self.shared.state);
        if !state.accepting {
            return Entry::Closed(job);
        }
        if state.diverted {
            return Entry::Divert(job);
        }
        if !state.running {
            state.running = true;
            // The standby's stall clock starts now.
            state.progress += 1;
            return Entry::Run(job);
        }
        if state.queue.len() >= state.capacity {
            return Entry::Full(job);
        }
        state.queue.push_back(job);
        if state.standby_asleep {
            state.standby_asleep = false;
            self.shared.changed.notify_one();
        }
        Entry::Queued
    }

    /// For the holder of the baton ([`Entry::Run`]): `own()` runs its own job, then
    /// `queued(job)` runs up to [`BATCH`] queued jobs, and the baton goes. Returns what
    /// `own` returned. A queued job that panics is caught (the next one runs); if `own`
    /// panics, the baton is let go and the panic goes on.
    pub fn run_batch<R>(&self, own: impl FnOnce() -> R, queued: impl Fn(J)) -> R {
        let baton = Baton(&self.shared);
        let result = own();
        for _ in 0..BATCH {
            let Some(job) = baton.next() else { break };
            // A panicking job must not leave the baton held; the job was moved into the
            // closure, so whatever it owns has been dropped by the time we get here.
            let _ = catch_unwind(AssertUnwindSafe(|| queued(job)));
        }
        drop(baton);
        result
    }

    /// Jobs waiting, and whether a runner runs (for logs and tests).
    pub fn load(&self) -> (usize, bool) {
        let state = lock(&self.shared.state);
        (state.queue.len(), state.running)
    }

    /// Stops taking jobs, waits up to `timeout` for the queue to empty and the runner to let
    /// the baton go, stops the standby, and returns the jobs that never started. Returns
    /// also whether a runner was still running.
    pub fn shutdown(&self, timeout: Duration) -> (Vec<J>, bool) {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        state.accepting = false;
        while !state.queue.is_empty() || state.running {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            // The standby diverts what the runner does not get to; look again soon.
            let wait = (deadline - now).min(Duration::from_millis(10));
            state = match self.shared.changed.wait_timeout(state, wait) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        let never_started = state.queue.drain(..).collect();
        let still_running = state.running;
        state.stop = true;
        drop(state);
        self.shared.changed.notify_all();
        if let Some(standby) = lock(&self.standby).take() {
            let _ = standby.join();
        }
        (never_started, still_running)
    }
}

/// The baton, held by the runner: [`Baton::next`] hands out queued jobs; dropping it (also
/// while unwinding) lets the baton go.
struct Baton<'a, J>(&'a Shared<J>);

impl<J> Baton<'_, J> {
    /// Counts the job just finished; the next queued job, if any.
    fn next(&self) -> Option<J> {
        let mut state = lock(&self.0.state);
        state.progress += 1;
        state.diverted = false;
        state.queue.pop_front()
    }
}

impl<J> Drop for Baton<'_, J> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.progress += 1;
        state.diverted = false;
        state.running = false;
        if !state.accepting {
            // `shutdown` waits for the runner.
            self.0.changed.notify_all();
        }
    }
}

/// The standby: every `stall` while jobs wait, diverts the waiting jobs if the runner
/// finished none in that time (or nobody runs); sleeps while nothing waits.
fn standby_loop<J, D: Fn(J)>(shared: &Shared<J>, stall: Duration, divert: &D) {
    let mut state = lock(&shared.state);
    let mut seen = state.progress;
    let mut progress_since = Instant::now();
    while !state.stop {
        let was_asleep = state.standby_asleep;
        state = if was_asleep {
            match shared.changed.wait(state) {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            }
        } else {
            match shared.changed.wait_timeout(state, stall) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            }
        };
        let now = Instant::now();
        // Woken by a job just queued: the runner gets `stall` from now.
        if was_asleep || state.progress != seen {
            seen = state.progress;
            progress_since = now;
        }
        if state.queue.is_empty() {
            // Nothing waits, so there is nothing to watch until `enter` queues a job.
            state.standby_asleep = true;
            continue;
        }
        // Jobs wait: the runner is stuck, or nobody runs (a batch ended with jobs left,
        // and no thread came since).
        if now - progress_since < stall {
            continue;
        }
        state.diverted = state.running;
        let waiting: Vec<J> = state.queue.drain(..).collect();
        drop(state);
        for job in waiting {
            divert(job);
        }
        state = lock(&shared.state);
    }
}

/// The lock is never held while a job runs, so a poisoned lock only means a panic in this
/// module's own bookkeeping; the state is still consistent enough to go on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A combiner whose diverted jobs are sent to the returned receiver, with a stall time
    /// no loaded machine reaches by accident.
    fn combiner(queue: usize) -> (Combiner<u32>, mpsc::Receiver<u32>) {
        stalling_after(queue, Duration::from_secs(30))
    }

    fn stalling_after(queue: usize, stall: Duration) -> (Combiner<u32>, mpsc::Receiver<u32>) {
        let (tx, rx) = mpsc::channel();
        let divert = move |n| tx.send(n).unwrap();
        (
            Combiner::start(queue, stall, "t-standby", divert).unwrap(),
            rx,
        )
    }

    #[test]
    fn the_first_thread_runs_and_then_runs_what_came_meanwhile() {
        let (combiner, diverted) = combiner(100);
        let Entry::Run(own) = combiner.enter(1) else {
            panic!("nobody was running")
        };
        // While this thread holds the baton, others only queue.
        for n in 2..=5 {
            assert!(matches!(combiner.enter(n), Entry::Queued));
        }
        assert_eq!(combiner.load(), (4, true));
        let ran = Mutex::new(Vec::new());
        let result = combiner.run_batch(
            || {
                lock(&ran).push(own);
                "own status"
            },
            |n| lock(&ran).push(n),
        );
        assert_eq!(result, "own status");
        assert_eq!(*lock(&ran), [1, 2, 3, 4, 5]);
        assert_eq!(combiner.load(), (0, false));
        // The baton is free again.
        assert!(matches!(combiner.enter(6), Entry::Run(6)));
        combiner.run_batch(|| (), |_| ());
        assert!(combiner.shutdown(Duration::from_secs(5)).0.is_empty());
        assert!(diverted.try_recv().is_err(), "nothing stalled");
    }

    #[test]
    fn a_batch_is_bounded_and_what_is_left_goes_to_divert() {
        let (combiner, diverted) = stalling_after(1000, Duration::from_secs(2));
        let Entry::Run(_) = combiner.enter(0) else {
            panic!("nobody was running")
        };
        let extra = 10;
        for n in 1..=(BATCH + extra) as u32 {
            assert!(matches!(combiner.enter(n), Entry::Queued));
        }
        let ran = Mutex::new(Vec::new());
        combiner.run_batch(|| (), |n| lock(&ran).push(n));
        assert_eq!(lock(&ran).len(), BATCH);
        // Nobody comes to run the rest: the standby hands it on.
        let rest: Vec<u32> = (0..extra)
            .map(|_| diverted.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        let expected: Vec<u32> = ((BATCH + 1) as u32..=(BATCH + extra) as u32).collect();
        assert_eq!(rest, expected);
        combiner.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn a_stalled_runner_has_its_queue_and_new_jobs_diverted() {
        let (combiner, diverted) = stalling_after(100, STALL);
        let combiner = Arc::new(combiner);
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let runner = {
            let combiner = Arc::clone(&combiner);
            std::thread::spawn(move || {
                let Entry::Run(_) = combiner.enter(0) else {
                    panic!("nobody was running")
                };
                combiner.run_batch(
                    || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap(); // a slow job
                    },
                    |n| panic!("job {n} should have been diverted"),
                )
            })
        };
        started_rx.recv().unwrap();
        assert!(matches!(combiner.enter(1), Entry::Queued));
        assert_eq!(diverted.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
        // Until the runner finishes its job, new jobs go elsewhere at once.
        assert!(matches!(combiner.enter(2), Entry::Divert(2)));
        release_tx.send(()).unwrap();
        runner.join().unwrap();
        assert!(matches!(combiner.enter(3), Entry::Run(3)));
        combiner.run_batch(|| (), |_| ());
        combiner.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn a_full_queue_and_a_closed_combiner_give_the_job_back() {
        let (combiner, _diverted) = combiner(2);
        let Entry::Run(_) = combiner.enter(0) else {
            panic!("nobody was running")
        };
        assert!(matches!(combiner.enter(1), Entry::Queued));
        assert!(matches!(combiner.enter(2), Entry::Queued));
        assert!(matches!(combiner.enter(3), Entry::Full(3)));
        combiner.run_batch(|| (), |_| ());
        let (never_started, still_running) = combiner.shutdown(Duration::from_secs(5));
        assert!(never_started.is_empty());
        assert!(!still_running);
        assert!(matches!(combiner.enter(4), Entry::Closed(4)));
    }

    #[test]
    fn shutdown_hands_back_what_never_started_within_its_timeout() {
        // A divert that never returns the jobs anywhere: they stay queued behind a runner
        // that never ends, until the standby would divert them. Here the standby is too
        // slow on purpose: the runner holds the baton and the jobs were queued just now.
        let (combiner, _diverted) = combiner(100);
        let combiner = Arc::new(combiner);
        let (started_tx, started_rx) = mpsc::channel::<()>();
        {
            let combiner = Arc::clone(&combiner);
            std::thread::spawn(move || {
                let Entry::Run(_) = combiner.enter(0) else {
                    panic!("nobody was running")
                };
                combiner.run_batch(
                    || {
                        started_tx.send(()).unwrap();
                        std::thread::sleep(Duration::from_secs(30)); // never comes back
                    },
                    |_| (),
                )
            });
        }
        started_rx.recv().unwrap();
        let begun = Instant::now();
        let (never_started, still_running) = combiner.shutdown(Duration::from_millis(300));
        assert!(
            begun.elapsed() < Duration::from_secs(3),
            "{:?}",
            begun.elapsed()
        );
        assert!(never_started.is_empty());
        assert!(still_running, "the runner is still in its job");
    }

    #[test]
    fn a_panicking_job_lets_the_baton_go() {
        let (combiner, _diverted) = combiner(10);
        let Entry::Run(_) = combiner.enter(0) else {
            panic!("nobody was running")
        };
        assert!(matches!(combiner.enter(1), Entry::Queued));
        assert!(matches!(combiner.enter(2), Entry::Queued));
        let ran = Mutex::new(Vec::new());
        combiner.run_batch(
            || (),
            |n| {
                if n == 1 {
                    panic!("job 1 fails (expected in this test)");
                }
                lock(&ran).push(n);
            },
        );
        assert_eq!(*lock(&ran), [2]);
        let own_panics = catch_unwind(AssertUnwindSafe(|| {
            let Entry::Run(_) = combiner.enter(3) else {
                panic!("nobody was running")
            };
            combiner.run_batch(
                || panic!("the own job fails (expected in this test)"),
                |_| (),
            )
        }));
        assert!(own_panics.is_err());
        assert!(
            matches!(combiner.enter(4), Entry::Run(4)),
            "the baton was let go"
        );
        combiner.run_batch(|| (), |_| ());
        combiner.shutdown(Duration::from_secs(5));
    }
}
