//! The check mode behind `isapi-host --check`: start as under IIS, say what was found, serve
//! nothing.
//!
//! An ISAPI extension has three exports and no other way in, so the host asks through the
//! environment: it sets `ISAPI_WSGI_CHECK=1` before loading the library. `GetExtensionVersion`
//! then does exactly what it does under IIS (find and read the configuration, open the
//! log, start Python, import the application), with two differences: every log line goes
//! to stderr as well as to the configured log, followed by [`report`] (Python, `sys.path`,
//! the application, the handler and its limits); and the call returns FALSE when the
//! application did not start, where it otherwise always returns TRUE (so that IIS keeps the
//! library loaded and serves the 500 page). No handler or watchdog thread is started.
//!
//! Under IIS nobody sets the variable: an app pool's environment comes from the service,
//! and setting it there would only make a failed start refuse every request with IIS's own
//! 500 instead of ours.
use std::ffi::CStr;

use crate::config::{Config, HandlerKind};
use crate::wsgi::Bridge;

/// The environment variable that turns the check mode on (value `1`).
pub const CHECK_ENV: &str = "ISAPI_WSGI_CHECK";

/// Whether the host asked for the check mode.
pub fn requested() -> bool {
    std::env::var_os(CHECK_ENV).is_some_and(|value| value == "1")
}

/// What the check found, for stderr: the lines start with `check:`.
pub fn report(config: &Config, bridge: &Bridge) -> String {
    let names: [&CStr; 3] = [c"version", c"prefix", c"executable"];
    let (values, path) = bridge.sys_values(&names);
    let library = crate::python::runtime::library_path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut lines = vec![
        format!(
            "check: configuration {}",
            config
                .file
                .as_ref()
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "none (the built-in demo app)".into())
        ),
        format!(
            "check: Python {} loaded from {library}",
            values[0].replace('\n', " ")
        ),
        format!(
            "check: sys.prefix {}, sys.executable {}",
            values[1], values[2]
        ),
        "check: sys.path:".into(),
    ];
    lines.extend(path.iter().map(|entry| format!("check:   {entry}")));
    lines.push(format!("check: app {}", bridge.describe()));
    lines.push(format!("check: {}", handler(config)));
    lines.push(format!("check: {}", limits(config)));
    lines.push("check: OK: the application loaded; the extension would serve it".into());
    lines.join("\n")
}

fn handler(config: &Config) -> String {
    match config.handler {
        HandlerKind::Simple => "handler simple (requests run on IIS's threads)".into(),
        HandlerKind::Combining => format!(
            "handler combining: one IIS thread at a time runs Python, queue of {}; {} worker \
             thread(s) for slow requests, shutdown_timeout {} s",
            config.queue,
            config.threads,
            config.shutdown_timeout.as_secs()
        ),
        HandlerKind::Threadpool => format!(
            "handler threadpool: {} worker thread(s), queue of {}, shutdown_timeout {} s",
            config.threads,
            config.queue,
            config.shutdown_timeout.as_secs()
        ),
    }
}

fn limits(config: &Config) -> String {
    let seconds = |value: Option<std::time::Duration>| match value {
        Some(d) => format!("{} s", d.as_secs()),
        None => "off".into(),
    };
    format!(
        "max_body {}, debug {}, log {}, request_timeout {}, unhealthy_after {}, gil_stall {}, reload_on {}",
        config
            .max_body
            .map(|b| format!("{b} bytes"))
            .unwrap_or_else(|| "no limit".into()),
        config.debug,
        config
            .log
            .as_ref()
            .map(|l| l.display().to_string())
            .unwrap_or_else(|| "default".into()),
        seconds(config.request_timeout),
        config
            .unhealthy_after
            .map(|n| n.to_string())
            .unwrap_or_else(|| "off".into()),
        seconds(config.gil_stall),
        if config.reload_on.is_empty() {
            "none".into()
        } else {
            config
                .reload_on
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )
}
