//! isapi_wsgi: an ISAPI extension that runs a Python WSGI application inside IIS.
//!
//! IIS loads the library and calls its three exports, defined here:
//!
//! * `GetExtensionVersion`, once: read the configuration ([`config`]), open the log
//!   ([`log`]), start Python and load the application ([`wsgi::Bridge::start`]). A problem
//!   there never makes the call fail (IIS would then refuse every request with its own
//!   opaque error): it is logged once, in full, and every request is answered with a
//!   500 page saying that the application failed to start.
//! * `HttpExtensionProc`, per request, on IIS's threads: find the request's application
//!   (`[wsgi] app` or a `[mount]`'s, [`wsgi::mounts`]) and hand the request to the
//!   [`handler`] it names (simple: answered on this thread; threadpool: queued, and
//!   `HSE_STATUS_PENDING` returned at once).
//! * `TerminateExtension`, once, before unloading: the handler lets the requests in flight
//!   finish (threadpool: up to `shutdown_timeout`), Python's `atexit` handlers run, the log
//!   is flushed. Python is never finalised (IIS may recycle processes with requests still
//!   in flight; pywin32 does not finalise either).
//!
//! No panic may unwind into IIS: each export catches it, logs it, and answers with an
//! error status.
//!
//! Reading order, top-down, as a request travels: this file (the exports), [`handler`] (who
//! runs a request, on which thread), [`wsgi`] (the bridge: `Bridge::serve` and `run`, the
//! request's life as one sequence of steps), then the two sides it joins: [`isapi`] (the
//! ECB, IIS's side) and [`python`] (the C API, Python's side), and below both [`sys`] (the
//! operating system). Beside them: [`config`] (the ini file), [`wfastcgi`] (a wfastcgi
//! web.config instead, read with [`xml`]), [`log`], [`page`] (the pages the extension
//! answers by itself), [`watchdog`] (slow requests, a stuck GIL, reload files: when to ask
//! IIS for a recycle), [`check`] (the check mode behind `isapi-host --check`), [`client_wait`] (how the bridge
//! tells the pool that a worker waits for its client), and what an
//! administrator runs the site with: [`stats`] (the counters), [`health`] (the status
//! page), [`maintenance`] (`app_offline.htm`) and [`request_id`].
//!
//! Before the handler, [`dispatch`] answers the two requests that never reach Python: the
//! health page, then, while `app_offline.htm` exists, the maintenance page.
pub mod check;
pub mod client_wait;
pub mod config;
pub mod handler;
pub mod health;
pub mod isapi;
pub mod log;
pub mod maintenance;
pub mod page;
pub mod python;
pub mod request_id;
pub mod stats;
pub mod sys;
pub mod watchdog;
pub mod wfastcgi;
pub mod wsgi;
pub mod xml;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use config::Config;
use handler::Handler;
use health::Health;
use isapi::ecb::Ecb;
use isapi::ffi::{
    EXTENSION_CONTROL_BLOCK, HSE_STATUS_ERROR, HSE_VERSION_INFO, HSE_VERSION_MAJOR,
    HSE_VERSION_MINOR,
};
use maintenance::Maintenance;
use page::Page;
use stats::{Phase, STATS};
use wsgi::Bridge;
use wsgi::mounts::Route;

/// What `GetExtensionVersion` set up.
struct Extension {
    /// The running application, or the report of why it is not running.
    bridge: Result<Arc<Bridge>, String>,
    /// Who runs requests (None when the application is not running).
    handler: Option<Handler>,
    /// Watches requests, the GIL and the reload files (None when off).
    watchdog: Option<watchdog::Watchdog>,
    /// Show start-up details in the 500 page (`debug = true`).
    debug: bool,
    /// `[health] path`: the status page.
    health: Option<Health>,
    /// `[wsgi] app_offline`: the maintenance check.
    maintenance: Option<Maintenance>,
}

static EXTENSION: OnceLock<Extension> = OnceLock::new();

const DESCRIPTION: &str = concat!(
    "isapi-wsgi ",
    env!("CARGO_PKG_VERSION"),
    ": Python WSGI applications"
);

/// ISAPI export: called once after IIS loads the library.
///
/// # Safety
/// `info` must be NULL or point to a writable HSE_VERSION_INFO (IIS guarantees this).
#[unsafe(no_mangle)]
pub unsafe extern "system" fn GetExtensionVersion(info: *mut HSE_VERSION_INFO) -> i32 {
    let started = catch_unwind(AssertUnwindSafe(|| {
        STATS.start_clock();
        // SAFETY: IIS passes a valid, writable HSE_VERSION_INFO (or NULL, which we skip).
        if let Some(info) = unsafe { info.as_mut() } {
            info.dwExtensionVersion = (HSE_VERSION_MAJOR << 16) | HSE_VERSION_MINOR;
            let text = DESCRIPTION.as_bytes();
            let length = text.len().min(info.lpszExtensionDesc.len() - 1);
            for (slot, &byte) in info.lpszExtensionDesc.iter_mut().zip(&text[..length]) {
                *slot = byte as _;
            }
            info.lpszExtensionDesc[length] = 0;
        }
        EXTENSION.get_or_init(|| {
            // First of all, before any thread or Python object of ours exists: stay loaded
            // until the process ends. Our code outlives TerminateExtension (the reaper
            // thread, threadpool workers finishing a request, Python holding our types and
            // the objects an app kept), and IIS may FreeLibrary us after it; see
            // docs/bridge.md, "Code that outlives the library".
            let pinned = sys::pin_own_module();
            let extension = start();
            // Logged now that start() has opened the configured log.
            if let Err(error) = pinned {
                let message = format!(
                    "cannot pin the library in memory ({error}); if IIS unloads it while our \
                     threads or Python objects are still in use, the process will crash"
                );
                log::line(&message);
                sys::report_to_admin(&format!("isapi-wsgi: {message}"));
            }
            extension
        });
    }));
    if started.is_err() {
        let _ = catch_unwind(|| {
            let message = "internal error (a panic) during GetExtensionVersion; every request will get a 500 page";
            log::line(message);
            sys::report_to_admin(&format!("isapi-wsgi: {message}"));
        });
    }
    // Under IIS always TRUE (the 500 page explains a failed start); in the check mode the
    // host learns the outcome from it.
    let running = matches!(EXTENSION.get(), Some(Extension { bridge: Ok(bridge), .. }) if bridge.all_started());
    i32::from(running || !check::requested())
}

/// ISAPI export: called for every request.
///
/// # Safety
/// `ecb` must be NULL or a valid EXTENSION_CONTROL_BLOCK for the duration of the request.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn HttpExtensionProc(ecb: *mut EXTENSION_CONTROL_BLOCK) -> u32 {
    // SAFETY: IIS passes an ECB that stays valid until this call returns a final status.
    let Some(ecb) = (unsafe { Ecb::from_raw(ecb) }) else {
        return HSE_STATUS_ERROR;
    };
    match catch_unwind(AssertUnwindSafe(|| dispatch(ecb))) {
        Ok(status) => status,
        Err(_) => {
            // IIS logs the request as a 500 and drops the connection.
            log::line(
                "internal error (a panic) while answering a request; the connection is dropped",
            );
            HSE_STATUS_ERROR
        }
    }
}

/// ISAPI export: called once before IIS unloads the library. Returns within the
/// threadpool's `shutdown_timeout` plus the time the atexit handlers take (at most 1 s more
/// when requests are still running, see [`Handler::terminate`]).
#[unsafe(no_mangle)]
pub extern "system" fn TerminateExtension(_flags: u32) -> i32 {
    static TERMINATED: AtomicBool = AtomicBool::new(false);
    if TERMINATED.swap(true, Ordering::SeqCst) {
        return 1;
    }
    STATS.set_phase(Phase::Draining);
    let ended = catch_unwind(|| {
        if let Some(Extension {
            handler: Some(handler),
            watchdog,
            ..
        }) = EXTENSION.get()
        {
            if let Some(watchdog) = watchdog {
                watchdog.stop();
            }
            handler.terminate();
        }
    });
    if ended.is_err() {
        log::line("internal error (a panic) during TerminateExtension");
    }
    let _ = catch_unwind(|| {
        log::line("unloading");
        log::flush();
    });
    1
}

/// One request: the health page, the maintenance page, or else routed to its application
/// (mounts.rs) and handed to that application's handler; answers by itself what no
/// application can.
fn dispatch(ecb: Ecb) -> u32 {
    let Some(extension) = EXTENSION.get() else {
        return Page::startup_failure(None).answer(&ecb);
    };
    let maintenance = extension.maintenance.as_ref();
    if let Some(health) = &extension.health {
        let offline = maintenance.is_some_and(Maintenance::is_offline);
        if let Some(status) = health.answer(&ecb, offline) {
            return status;
        }
    }
    if let Some(status) = maintenance.and_then(|m| m.answer(&ecb)) {
        return status;
    }
    let (Some(handler), Ok(bridge)) = (&extension.handler, &extension.bridge) else {
        let detail = match &extension.bridge {
            Err(detail) if extension.debug => Some(detail.as_str()),
            _ => None,
        };
        return Page::startup_failure(detail).answer(&ecb);
    };
    match bridge.route(&ecb) {
        Route::To(routed) => handler.handle(ecb, routed),
        Route::Failed { detail, id } => Page::startup_failure(detail).answer_as(&ecb, &id),
        Route::NotFound => Page::no_application().answer(&ecb),
    }
}

/// Reads the configuration, opens the log, starts Python and loads the application.
fn start() -> Extension {
    let checking = check::requested();
    if checking {
        log::tee_to_stderr();
    }
    let library = sys::own_module_path();
    // No ini: a wfastcgi web.config with a WSGI_HANDLER will do (see `wfastcgi`).
    let file = Config::locate(library.as_deref()).or_else(|| {
        wfastcgi::candidates(library.as_deref()?)
            .into_iter()
            .find(|candidate| wfastcgi::applies(candidate))
    });
    let mut notes = Vec::new();
    let loaded = match &file {
        Some(path) if wfastcgi::is_web_config(path) => wfastcgi::load(path).map(|(config, n)| {
            notes = n;
            config
        }),
        Some(path) => Config::load(path),
        None => Ok(Config::default()),
    };
    let (log_path, rotation) = match &loaded {
        Ok(config) => (
            config.log.clone(),
            log::Rotation {
                max: config.log_max,
                keep: config.log_keep,
            },
        ),
        Err(_) => (None, log::Rotation { max: None, keep: 1 }),
    };
    let log_path = log_path.or_else(|| default_log(library.as_deref()));
    if let Err(error) = log::configure(log_path.as_deref(), rotation) {
        log::line(&error);
        sys::report_to_admin(&format!("isapi-wsgi: {error}"));
    }
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            let message = format!("configuration error, the application is not started: {error}");
            log::line(&message);
            sys::report_to_admin(&format!("isapi-wsgi: {message}"));
            STATS.set_phase(Phase::Failed);
            return Extension {
                bridge: Err(format!("configuration error: {error}")),
                handler: None,
                watchdog: None,
                debug: false,
                health: None,
                maintenance: None,
            };
        }
    };
    match &file {
        Some(path) if !notes.is_empty() => log::line(&format!(
            "configuration {} (wfastcgi's appSettings, as no isapi_wsgi.ini exists): {}",
            path.display(),
            notes.join("; ")
        )),
        Some(path) => log::line(&format!("configuration {}", path.display())),
        None => log::line(&format!(
            "no configuration file ({} or ${}): serving the built-in demo app",
            library
                .as_deref()
                .map(|l| {
                    let names: Vec<String> = Config::candidates(l)
                        .iter()
                        .map(|c| c.display().to_string())
                        .collect();
                    names.join(", ")
                })
                .unwrap_or_else(|| "<library>.ini".into()),
            config::CONFIG_ENV
        )),
    }
    request_id::set_header_enabled(config.request_id_header);
    let bridge = Bridge::start(&config).map(Arc::new);
    if checking {
        return checked(&config, bridge);
    }
    let handler = match &bridge {
        Ok(bridge) => {
            log_applications(bridge);
            if bridge.logging_routed() {
                log::line(
                    "Python's logging: the application set up no handler, so the root logger \
                     (WARNING and above unless the application sets a level) and warnings write to this log",
                );
            } else {
                log::line(
                    "Python's logging: the application configured its own handlers; left as they are",
                );
            }
            Some(Handler::start(&config, bridge.clone()))
        }
        Err(error) => {
            let message =
                format!("the application failed to start; every request gets a 500 page:\n{error}");
            log::line(&message);
            // Under IIS the log may be the very thing that failed: tell the Event Log too.
            sys::report_to_admin(&format!("isapi-wsgi: {message}"));
            None
        }
    };
    let watchdog = match (&bridge, &handler) {
        (Ok(bridge), Some(_)) => watchdog::Watchdog::start(&config, bridge),
        _ => None,
    };
    let all_started = matches!(&bridge, Ok(bridge) if bridge.all_started());
    STATS.set_phase(if handler.is_some() && all_started {
        Phase::Ok
    } else {
        Phase::Failed
    });
    let health = health_page(&config, &bridge, &handler);
    Extension {
        bridge,
        handler,
        watchdog,
        debug: config.debug,
        health,
        maintenance: config.app_offline.then(Maintenance::new),
    }
}

/// The check mode's end of start-up: the report, and no threads.
fn checked(config: &Config, bridge: Result<Arc<Bridge>, String>) -> Extension {
    let handler = match &bridge {
        Ok(bridge) if !bridge.all_started() => {
            log_applications(bridge);
            log::line("check: FAILED: the application did not start (the reason is above)");
            None
        }
        Ok(bridge) => {
            log::line(&check::report(config, bridge));
            Some(Handler::without_threads(bridge.clone()))
        }
        Err(error) => {
            log::line(&format!(
                "the application failed to start; every request gets a 500 page:\n{error}"
            ));
            log::line("check: FAILED: the application did not start (the reason is above)");
            None
        }
    };
    Extension {
        bridge,
        handler,
        watchdog: None,
        debug: config.debug,
        health: None,
        maintenance: None,
    }
}

/// One line per application: what it serves, or why it failed to start (also to the
/// Event Log); and what requests under no mount get when there is no `[wsgi] app`.
fn log_applications(bridge: &Bridge) {
    let served = bridge.site().served();
    let mounted = served.iter().any(|s| s.mount.is_some());
    for served in served {
        let message = match (&served.app, &served.mount) {
            (Ok(app), None) => format!(
                "serving {} with Python {}",
                app.description,
                bridge.python_description()
            ),
            (Ok(app), Some(mount)) => format!("mount {mount}: serving {}", app.description),
            (Err(error), None) if !mounted => {
                format!("the application failed to start; every request gets a 500 page:\n{error}")
            }
            (Err(error), None) => format!(
                "the application failed to start; requests under no mount get a 500 page:\n{error}"
            ),
            (Err(error), Some(mount)) => format!(
                "mount {mount}: the application failed to start; its requests get a 500 page:\n{error}"
            ),
        };
        log::line(&message);
        if served.app.is_err() {
            sys::report_to_admin(&format!("isapi-wsgi: {message}"));
        }
    }
    if mounted && !served.iter().any(|s| s.mount.is_none()) {
        log::line(&format!(
            "no [wsgi] app: requests under no mount get 404 (Python {})",
            bridge.python_description()
        ));
    }
}

/// `[health]`'s page, with what start-up found (None when `path` is not set). Its `app` is
/// `[wsgi] app`, followed by each mount's (`; mount /blog: blog:app`); its handler is the
/// one `[wsgi] app` runs on.
fn health_page(
    config: &Config,
    bridge: &Result<Arc<Bridge>, String>,
    handler: &Option<Handler>,
) -> Option<Health> {
    let health = config.health.clone()?;
    let python = bridge.as_ref().ok().map(|b| b.python_version());
    let kind = handler
        .as_ref()
        .map_or("simple", |handler| handler.name(config.handler));
    let mut apps: Vec<String> = config
        .root_app()
        .map(|app| app.to_string())
        .into_iter()
        .collect();
    apps.extend(
        config
            .mounts
            .iter()
            .map(|mount| format!("mount {}: {}", mount.path, mount.app)),
    );
    log::line(&format!(
        "[health] the status page answers at {} for {} client network(s)",
        health.path,
        health.allow.len()
    ));
    Some(Health::new(health, apps.join("; "), kind, python))
}
/// Under IIS (w3wp.exe) there is no console: log to `<library stem>.log` next to the library.
fn default_log(library: Option<&std::path::Path>) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let name = exe.file_name()?.to_string_lossy().to_ascii_lowercase();
    (name == "w3wp.exe").then(|| library.map(|l| l.with_extension("log")))?
}
