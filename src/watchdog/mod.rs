//! The watchdog: requests that run too long, a GIL that is never released, files that ask
//! for a reload. It logs the first, and for all three can ask IIS to recycle the worker
//! process (`HSE_REQ_REPORT_UNHEALTHY`, sent through a request in flight: see
//! [`InFlight`]). Python is never restarted inside the process: a recycle starts a new
//! worker process, and with IIS's overlapped recycle the old one finishes its requests
//! while the new one takes the new ones (docs/iis.md, "Operations").
//!
//! Off unless the configuration asks (`[wsgi] request_timeout`, `unhealthy_after`,
//! `gil_stall`, `reload_on`). Then two threads of ours run:
//!
//! * **the GIL side** (`wsgi-watchdog-gil`), only with `request_timeout` or `gil_stall`:
//!   every [`BEAT`] it takes the GIL once. Before, it notes that it is waiting for it
//!   (the heartbeat); with the GIL it writes the slow-request lines, each with the Python
//!   stack of the request's thread (`sys._current_frames()`, keyed by the thread ids that
//!   `InFlight` recorded), and marks that it is no longer waiting.
//! * **the monitor** (`wsgi-watchdog`), which never touches Python: every [`TICK`] it asks
//!   whether the GIL side has been waiting for the GIL longer than `gil_stall` (a thread
//!   waiting for the GIL asks the holder to drop it after Python's switch interval, 5 ms;
//!   code running Python bytecode drops it within microseconds, so a wait of seconds means
//!   one thread holds it in a C call that does not release it), whether `unhealthy_after`
//!   requests have been running longer than `request_timeout` at once, and (at most once a
//!   second) whether a `reload_on` file changed. The first of these reports the process
//!   unhealthy, once.
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod reload;

use crate::config::Config;
use crate::log;
use crate::wsgi::Bridge;
use crate::wsgi::in_flight::InFlight;
use reload::Reload;

/// How often the GIL side takes the GIL.
pub const BEAT: Duration = Duration::from_millis(500);
/// How often the monitor looks.
pub const TICK: Duration = Duration::from_millis(250);
/// How often `reload_on` files are looked at, at most.
pub const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What the watchdog watches (from the configuration).
#[derive(Clone, Debug)]
struct Settings {
    request_timeout: Option<Duration>,
    unhealthy_after: Option<usize>,
    gil_stall: Option<Duration>,
}

/// The running watchdog; [`Watchdog::stop`] ends its threads.
pub struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    bridge: Arc<Bridge>,
    in_flight: Arc<InFlight>,
    settings: Settings,
    stop: AtomicBool,
    /// The heartbeat: since when the GIL side waits for the GIL, in milliseconds after
    /// `epoch`, plus one; 0 while it is not waiting.
    waiting_since: AtomicU64,
    epoch: Instant,
}

impl Watchdog {
    /// Starts the watchdog if the configuration asks for any of it; logs what it watches.
    /// None when it is off, or when its threads cannot be created (logged).
    pub fn start(config: &Config, bridge: &Arc<Bridge>) -> Option<Watchdog> {
        let in_flight = bridge.in_flight()?.clone();
        let settings = Settings {
            request_timeout: config.request_timeout,
            unhealthy_after: config.unhealthy_after,
            gil_stall: config.gil_stall,
        };
        let shared = Arc::new(Shared {
            bridge: bridge.clone(),
            in_flight,
            settings: settings.clone(),
            stop: AtomicBool::new(false),
            waiting_since: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        log::line(&describe(config));
        let reload = (!config.reload_on.is_empty()).then(|| Reload::new(&config.reload_on));
        let started = spawn("wsgi-watchdog", {
            let shared = shared.clone();
            move || shared.watch(reload)
        })
        .and_then(|()| {
            if settings.request_timeout.is_none() && settings.gil_stall.is_none() {
                return Ok(());
            }
            let shared = shared.clone();
            spawn("wsgi-watchdog-gil", move || shared.beat())
        });
        if let Err(error) = started {
            log::line(&format!(
                "watchdog: cannot start its threads ({error}); nothing is watched"
            ));
            shared.stop.store(true, Ordering::SeqCst);
            return None;
        }
        Some(Watchdog { shared })
    }

    /// Ends the watchdog (at TerminateExtension): its threads stop at their next turn. The
    /// GIL side may be waiting for the GIL; it is not waited for.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map(drop)
}

/// The start-up line: what is watched.
fn describe(config: &Config) -> String {
    let mut parts = Vec::new();
    if let Some(timeout) = config.request_timeout {
        parts.push(format!("request_timeout {} s", timeout.as_secs()));
    }
    if let Some(count) = config.unhealthy_after {
        parts.push(format!("unhealthy_after {count}"));
    }
    if let Some(stall) = config.gil_stall {
        parts.push(format!("gil_stall {} s", stall.as_secs()));
    }
    if !config.reload_on.is_empty() {
        let files: Vec<String> = config
            .reload_on
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        parts.push(format!("reload_on {}", files.join(", ")));
    }
    format!("watchdog: {}", parts.join(", "))
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The GIL side: the heartbeat, and the slow-request lines with their stacks.
    fn beat(&self) {
        let _attached = self.bridge.attach_thread();
        while !self.stopped() {
            let overdue = match self.settings.request_timeout {
                Some(timeout) => self.in_flight.take_overdue(timeout),
                None => Vec::new(),
            };
            let threads: Vec<u64> = overdue.iter().map(|o| o.thread).collect();
            let waiting = self.epoch.elapsed().as_millis() as u64 + 1;
            self.waiting_since.store(waiting, Ordering::SeqCst);
            let stacks = self.bridge.python_stacks(&threads);
            self.waiting_since.store(0, Ordering::SeqCst);
            let timeout = self.settings.request_timeout.unwrap_or_default().as_secs();
            for (request, stack) in overdue.iter().zip(stacks) {
                let what = format!(
                    "{}: still running after {} s (request_timeout = {timeout} s)",
                    request.request,
                    request.elapsed.as_secs()
                );
                log::line(&match stack {
                    Some(stack) => format!("{what}; the Python stack of its thread:\n{stack}"),
                    None => format!(
                        "{what}; its thread is running no Python code (it waits for the GIL, \
                         or is in the bridge)"
                    ),
                });
            }
            std::thread::sleep(BEAT);
        }
    }

    /// The monitor: looks every TICK, reports at most once.
    fn watch(&self, mut reload: Option<Reload>) {
        let mut files_checked = Instant::now();
        while !self.stopped() {
            std::thread::sleep(TICK);
            if self.stopped() {
                return;
            }
            let files_due = files_checked.elapsed() >= RELOAD_CHECK;
            let changed = match reload.as_mut().filter(|_| files_due) {
                Some(reload) => {
                    files_checked = Instant::now();
                    reload.changed()
                }
                None => None,
            };
            let reason = changed
                .map(|file| format!("{} changed (reload_on)", file.display()))
                .or_else(|| self.gil_stalled())
                .or_else(|| self.too_many_stuck());
            if let Some(reason) = reason {
                self.in_flight.report_unhealthy(&reason);
                return;
            }
        }
    }

    /// `gil_stall`: the GIL side has waited for the GIL longer than allowed.
    fn gil_stalled(&self) -> Option<String> {
        let stall = self.settings.gil_stall?;
        let since = self.waiting_since.load(Ordering::SeqCst).checked_sub(1)?;
        let waited = Duration::from_millis(self.epoch.elapsed().as_millis() as u64 - since);
        if waited <= stall {
            return None;
        }
        let longest = match self.in_flight.longest() {
            Some((request, running)) => format!(
                "; the longest-running request: {request} ({} s)",
                running.as_secs()
            ),
            None => String::new(),
        };
        Some(format!(
            "the GIL has not been released for {} s (gil_stall = {} s): a C call holds it{longest}",
            waited.as_secs(),
            stall.as_secs()
        ))
    }

    /// `unhealthy_after`: that many requests over `request_timeout` at once.
    fn too_many_stuck(&self) -> Option<String> {
        let count = self.settings.unhealthy_after?;
        let timeout = self.settings.request_timeout?;
        let stuck = self.in_flight.count_overdue(timeout);
        (stuck >= count).then(|| {
            format!(
                "{stuck} requests have been running longer than request_timeout = {} s at once \
                 (unhealthy_after = {count})",
                timeout.as_secs()
            )
        })
    }
}
