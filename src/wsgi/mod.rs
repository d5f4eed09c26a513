//! The bridge: turns one ISAPI request into one WSGI call. The only place that knows both
//! sides.
//!
//! * [`app`]: loading the applications; what all requests share.
//! * [`mounts`]: `[mount /path]`: several applications, and which one answers a request.
//! * [`headers`]: the request's headers, read and parsed once.
//! * [`environ`]: the request as a WSGI environ dict.
//! * [`input`]: `wsgi.input`, the body stream.
//! * [`server_variables`]: `isapi.server_variable`, IIS's other server variables on demand.
//! * [`identity`]: `isapi.user_sid` and `isapi.groups`, from the request's Windows token.
//! * [`proxy`]: `[wsgi] trusted_proxies`, which `X-Forwarded-*` headers to believe.
//! * [`errors`]: `wsgi.errors`, into the log.
//! * [`exceptions`]: `isapi_wsgi.ClientDisconnected` and `BodyTooLarge`, the `OSError`s
//!   raised when the client side fails.
//! * [`response`]: `start_response` and `write()`, the Python-facing half of the response.
//! * [`file_wrapper`]: `wsgi.file_wrapper`, a regular file sent by the server itself.
//! * [`framing`]: what goes on the wire (header checks, Content-Length, chunks), plain Rust.
//! * [`in_flight`]: the requests running now, for the watchdog (when it is on).
//! * [`repeats`]: `[wsgi] traceback_limit`, the same traceback at most N times a minute.
//!
//! Before a handler takes a request, [`Bridge::route`] says which application answers it
//! (mounts.rs). [`Bridge::serve`] is then the whole of a request, top-down, like CPython's
//! `wsgiref.handlers.BaseHandler.run`: read its headers, give it its id and count it in
//! flight; take the GIL; lend the request's `wsgi.input`, `start_response`,
//! `isapi.server_variable` and `isapi.groups` to Python; then `Bridge::run`'s steps — build
//! the environ, call the application, send each piece of the body it returns (the headers
//! with the first non-empty one), call the iterable's `close()` whatever happened; release
//! the GIL.
//! Every failure goes to one place, `handle_error`: before the headers went out it becomes
//! a 500 page (with the traceback only when `debug = true`); after, it can only be logged
//! and the connection closed.
pub mod app;
pub mod environ;
pub mod errors;
pub mod exceptions;
pub mod file_wrapper;
pub mod framing;
pub mod headers;
pub mod identity;
pub mod in_flight;
pub mod input;
pub mod mounts;
pub mod proxy;
pub mod repeats;
pub mod response;
pub mod server_variables;
pub mod spare;

use std::sync::Arc;

use crate::config::{Config, HandlerKind};
use crate::isapi::ecb::Ecb;
use crate::log;
use crate::page::Page;
use crate::python::runtime::{self, PythonLocation};
use crate::python::{Api, Gil, Kind, NativeType, PyErr, PyRef, PyResult};
use crate::request_id::{self, RequestId};
use crate::stats::STATS;
use app::{App, Shared};
use headers::{HeaderBuffer, Headers};
use identity::Identity;
use in_flight::InFlight;
use input::Input;
use mounts::{Route, Routed, Served, Site};
use repeats::{Repeats, Verdict};
use response::{Flow, Outcome, Response, SendError};
use server_variables::ServerVariables;

/// A running interpreter with the applications loaded.
pub struct Bridge {
    api: &'static Api,
    shared: Shared,
    site: Site,
    /// `[wsgi] max_body`: the largest request body accepted; None for no limit.
    max_body: Option<u64>,
    /// The requests running now, kept when the watchdog is on.
    in_flight: Option<Arc<InFlight>>,
    /// `[wsgi] traceback_limit`: how often the same traceback is logged.
    repeats: Repeats,
    /// Python's logging and warnings were sent to our log (no application configured any).
    logging_routed: bool,
}

impl Bridge {
    /// Starts Python as configured and loads the applications. The error is the complete
    /// report for the log (with the Python traceback when there is one) when Python, or
    /// what all applications share (`path`, `venv`), failed; an application that failed to
    /// import is kept in the [`Site`] with its own report, and the others serve.
    pub fn start(config: &Config) -> Result<Bridge, String> {
        let location = PythonLocation {
            home: config.python_home.clone(),
            library: config.python_library.clone(),
            version: config.python_version,
        };
        let loaded = runtime::start(&location, |gil| {
            let shared = Shared::load(gil, config).map_err(|error| error.text())?;
            let site = load_site(gil, &shared, config);
            // After the imports: an application's own logging set-up is left alone.
            let logging_routed = shared.route_logging(gil).map_err(|error| error.text())?;
            Ok::<_, String>((shared, site, logging_routed))
        })?;
        let (shared, site, logging_routed) =
            loaded.map_err(|traceback| format!("the application failed to load:\n{traceback}"))?;
        let api = runtime::api().expect("started");
        let watched = config.request_timeout.is_some()
            || config.gil_stall.is_some()
            || !config.reload_on.is_empty();
        Ok(Bridge {
            api,
            shared,
            site,
            max_body: config.max_body,
            in_flight: watched.then(Default::default),
            repeats: Repeats::new(config.traceback_limit),
            logging_routed,
        })
    }

    /// The applications, for the start-up log.
    pub fn site(&self) -> &Site {
        &self.site
    }

    /// Whether every application was imported.
    pub fn all_started(&self) -> bool {
        self.site.served().iter().all(|served| served.app.is_ok())
    }

    /// What was loaded, on one line (`serving mysite.wsgi:application; mount /blog:
    /// blog:app with Python 3.12.1 (…)`).
    pub fn describe(&self) -> String {
        let described: Vec<String> = self
            .site
            .served()
            .iter()
            .filter_map(|served| {
                let app = served.app.as_ref().ok()?;
                Some(match &served.mount {
                    Some(mount) => format!("mount {mount}: {}", app.description),
                    None => app.description.clone(),
                })
            })
            .collect();
        format!(
            "serving {} with Python {}",
            described.join("; "),
            self.python_description()
        )
    }

    /// Whether Python's logging and warnings were sent to our log (see app.rs).
    pub fn logging_routed(&self) -> bool {
        self.logging_routed
    }

    /// The interpreter's version number, e.g. `3.12.1`.
    pub fn python_version(&self) -> String {
        let full = &self.shared.python_version;
        full.split_whitespace().next().unwrap_or(full).to_string()
    }

    /// `sys.version`, on one line.
    pub fn python_description(&self) -> String {
        self.shared.python_version.replace('\n', " ")
    }

    /// Whether a running application uses the handler `kind`.
    pub fn uses(&self, kind: HandlerKind) -> bool {
        self.site
            .served()
            .iter()
            .any(|served| served.handler == kind && served.app.is_ok())
    }

    /// Which application answers `ecb` (on the thread IIS called us on, before a handler
    /// takes the request); see [`Site::route`].
    pub fn route(&self, ecb: &Ecb) -> Route<'_> {
        self.site.route(ecb)
    }
    /// Runs the interpreter's `atexit` handlers (at TerminateExtension). Python is never
    /// finalised, so this is the application's one chance to flush and close what it
    /// registered there. A handler that raises is reported by `atexit` itself (on stderr)
    /// and the others still run.
    pub fn run_atexit(&self) {
        Gil::acquire(self.api, |gil| {
            let ran = gil
                .import("atexit")
                .and_then(|atexit| atexit.call_method(c"_run_exitfuncs", &[]));
            if let Err(error) = ran {
                log::line(&format!(
                    "running the atexit handlers failed: {}",
                    error.text()
                ));
            }
        })
    }

    /// For a long-lived thread of our own that will serve many requests: keeps a Python
    /// thread state for it until the returned value is dropped (on that thread), so that
    /// each request only takes the GIL. See [`ThreadAttachment`](crate::python::ThreadAttachment)
    /// (None if the thread has a Python thread state already).
    pub fn attach_thread(&self) -> Option<crate::python::ThreadAttachment> {
        crate::python::ThreadAttachment::new(self.api)
    }

    /// For a thread that is not ours (IIS's): keeps a Python thread state for it until it
    /// ends. See [`keep_thread_state`](crate::python::keep_thread_state).
    pub fn keep_thread_state(&self) {
        crate::python::keep_thread_state(self.api)
    }

    /// `str(sys.<name>)` for each name, and the entries of `sys.path` (for `--check`).
    pub fn sys_values(&self, names: &[&std::ffi::CStr]) -> (Vec<String>, Vec<String>) {
        Gil::acquire(self.api, |gil| {
            let text = |name: &std::ffi::CStr| gil.sys(name).map(|v| v.text()).unwrap_or_default();
            let values = names.iter().map(|name| text(name)).collect();
            let path = gil
                .sys(c"path")
                .and_then(|path| {
                    let count = path.len().ok()?;
                    (0..count)
                        .map(|i| path.get_index(i).ok().map(|entry| entry.text()))
                        .collect()
                })
                .unwrap_or_default();
            (values, path)
        })
    }

    /// The requests running now (None when the watchdog is off).
    pub fn in_flight(&self) -> Option<&Arc<InFlight>> {
        self.in_flight.as_ref()
    }

    /// Takes the GIL and returns the Python stack of each of `threads` (Python's thread
    /// ids), None for a thread running no Python code. With no threads it only takes the
    /// GIL once: the watchdog's heartbeat.
    pub fn python_stacks(&self, threads: &[u64]) -> Vec<Option<String>> {
        if threads.is_empty() {
            return Gil::acquire(self.api, |_| Vec::new());
        }
        Gil::acquire(self.api, |gil| {
            let stacks = (|| {
                let idents = gil.list()?;
                for &thread in threads {
                    idents.list_append(&gil.int(thread as i64)?)?;
                }
                let stacks = self.shared.thread_stacks.bind(gil).call(&[&idents])?;
                (0..threads.len())
                    .map(|index| {
                        let stack = stacks.get_index(index)?;
                        Ok((!stack.is_none()).then(|| stack.text()))
                    })
                    .collect::<Result<Vec<_>, PyErr<'_>>>()
            })();
            stacks.unwrap_or_else(|error| {
                log::line(&format!(
                    "watchdog: reading the threads' stacks failed: {}",
                    error.text()
                ));
                vec![None; threads.len()]
            })
        })
    }

    /// Answers one request, routed to a running application: the request's whole life, on
    /// the calling thread.
    pub fn serve(&self, ecb: &Arc<Ecb>, routed: &Routed) -> Outcome {
        let mut buffer = HeaderBuffer::take();
        let headers = Headers::read(ecb, &mut buffer);
        let id = match headers.get(b"X-Request-Id") {
            // Headers rebuilt from ALL_HTTP may lack it: the server is asked.
            None if !headers.complete() => RequestId::assign(ecb),
            given => RequestId::assign_from_header(ecb, given),
        };
        let in_flight = STATS.begin();
        let served = &self.site.served()[routed.index];
        let app = served
            .app
            .as_ref()
            .expect("requests are routed to running applications only");
        mounts::append_mount(ecb, served);
        let serving = Serving {
            ecb,
            headers: &headers,
            id: &id,
            routed,
            served,
            app,
        };
        // Counted in before it waits for the GIL, out after it gave the GIL back.
        let _running = self
            .in_flight
            .as_ref()
            .map(|in_flight| in_flight.enter(ecb, &id, crate::python::thread_ident(self.api)));
        let outcome = self.serve_with_gil(ecb, &serving);
        in_flight.finish(outcome.status);
        outcome
    }

    fn serve_with_gil(&self, ecb: &Arc<Ecb>, serving: &Serving<'_>) -> Outcome {
        Gil::acquire(self.api, |gil| {
            let request = framing::Request {
                head: ecb.is_head(),
                http11: ecb.server_variable_is(c"SERVER_PROTOCOL", b"HTTP/1.1"),
            };
            let input = Input::new(ecb.clone(), self.max_body);
            let response = Response::new(
                ecb.clone(),
                request,
                *serving.id,
                request_id::header_enabled(),
            );
            let variables = ServerVariables::new(ecb.clone());
            let identity = Identity::of(ecb);
            let shared = &self.shared;
            // Python gets its own objects for these: recalled when `run` returns, whoever
            // still holds them.
            let lent = shared.input_type.lend(gil, &input, |input_object| {
                shared.response_type.lend(gil, &response, |start_response| {
                    shared
                        .server_variables_type
                        .lend(gil, &variables, |server_variable| {
                            lend_if(&shared.groups_type, gil, identity.as_ref(), |groups| {
                                let lent = Lent {
                                    input: input_object,
                                    start_response,
                                    server_variable,
                                    groups,
                                    user_sid: identity.as_ref().map(|i| i.user_sid.as_str()),
                                };
                                self.run(gil, serving, &response, &lent)
                            })
                        })
                })
            });
            let lent = lent.and_then(|inner| inner).and_then(|inner| inner);
            if let Err(error) = lent.and_then(|inner| inner) {
                log::line(&format!(
                    "{}: lending wsgi.input, start_response, isapi.server_variable or isapi.groups failed: {}",
                    describe_serving(serving),
                    error.text()
                ));
                response.abort();
            }
            response.outcome()
        })
    }

    /// The request's life, in the order of `wsgiref.handlers.BaseHandler.run`: set up the
    /// environ, call the application, send what it returns, close it; any failure on the
    /// way is handled in one place.
    fn run<'py>(
        &self,
        gil: Gil<'py>,
        serving: &Serving<'_>,
        response: &Response,
        lent: &Lent<'_, 'py>,
    ) {
        let ecb = serving.ecb;
        if let Some(refusal) = self.refuse(serving) {
            return self.handle_error(gil, serving, response, &describe_serving(serving), refusal);
        }
        let target = &serving.routed.target;
        let environ = match self.shared.environ.build(
            gil,
            ecb,
            serving.headers,
            response.request(),
            target,
            lent,
            serving.id,
        ) {
            Ok(environ) => environ,
            Err(error) => {
                let failure =
                    Failure::Internal(format!("building the environ failed: {}", error.text()));
                return self.handle_error(
                    gil,
                    serving,
                    response,
                    &describe_serving(serving),
                    failure,
                );
            }
        };
        let request = || describe_request(&environ, serving);
        let result = match serving
            .app
            .callable
            .bind(gil)
            .call2(&environ, lent.start_response)
        {
            Ok(result) => result,
            Err(error) => {
                let failure = Failure::Python(error);
                return self.handle_error(gil, serving, response, &request(), failure);
            }
        };
        if let Err(failure) = self.finish_response(gil, &result, response) {
            self.handle_error(gil, serving, response, &request(), failure);
        }
        self.close(&result, &request);
    }

    /// Requests the bridge answers itself, without calling the application: a body
    /// declared larger than `max_body`, and the demo's clients that are not local.
    fn refuse(&self, serving: &Serving<'_>) -> Option<Failure<'static>> {
        self.refuse_too_large(serving)
            .or_else(|| self.refuse_demo_client(serving))
            .map(|page| Failure::Refused(Box::new(page)))
    }

    /// A Content-Length over `max_body`: `413 Content Too Large`, before the application
    /// runs and without reading the body; the connection then closes (the unread body
    /// would otherwise be taken for the next request). A chunked body has no length to
    /// check here: `wsgi.input` stops it when it grows past the limit.
    fn refuse_too_large(&self, serving: &Serving<'_>) -> Option<Page> {
        let limit = self.max_body?;
        let length = serving.ecb.total_bytes().filter(|&length| length > limit)?;
        log::line(&format!(
            "{}: refused with 413: the body's Content-Length ({length}) is over [wsgi] max_body ({limit})",
            describe_serving(serving)
        ));
        Some(Page::too_large(length, limit))
    }

    /// The built-in demo shows the server's insides (every header, the Python version), so
    /// it answers only clients on this machine.
    fn refuse_demo_client(&self, serving: &Serving<'_>) -> Option<Page> {
        if !serving.app.demo || serving.ecb.client_is_loopback() {
            return None;
        }
        DEMO_REFUSED.call_once(|| {
            log::line(
                "no application is configured, and the built-in demo app only answers clients \
                 on this machine (127.0.0.0/8, ::1): other clients get a 500 page. Configure \
                 the application with [wsgi] app = module:callable in an isapi_wsgi.ini next to \
                 the library (or the file named by ISAPI_WSGI_CONFIG); see the README",
            )
        });
        Some(Page::not_configured())
    }

    /// Sends each piece of the body the application returned.
    fn finish_response<'py>(
        &self,
        gil: Gil<'py>,
        result: &PyRef<'py>,
        response: &Response,
    ) -> Result<(), Failure<'py>> {
        let not_bytes = |item: &PyRef<'py>| {
            Failure::Protocol(format!(
                "the application's body must be an iterable of bytes; it yielded {}",
                item_type(item)
            ))
        };
        if self.send_file(gil, result, response)? {
            return Ok(());
        }
        // A one-item list or tuple: the whole body is known, so it gets a Content-Length.
        if matches!(result.kind(), Kind::List | Kind::Tuple) && result.len()? == 1 {
            let item = result.get_index(0)?;
            let bytes = item.as_bytes().ok_or_else(|| not_bytes(&item))?;
            response.send(gil, bytes, true)?;
            return Ok(());
        }
        let iterator = result.iter()?;
        while let Some(item) = iterator.next()? {
            let bytes = item.as_bytes().ok_or_else(|| not_bytes(&item))?;
            if bytes.is_empty() && response.headers_sent() && !response.client_connected() {
                return Err(Failure::Aborted("the client disconnected".into()));
            }
            if response.send(gil, bytes, false)? == Flow::Complete {
                // The declared Content-Length is sent: the rest would be dropped anyway.
                break;
            }
        }
        response.send(gil, b"", true)?;
        Ok(())
    }

    /// `wsgi.file_wrapper` around a regular file: the server sends it (file_wrapper.rs).
    /// False when the body is something else, or the server would not send the file: then
    /// it is iterated like any body.
    fn send_file<'py>(
        &self,
        gil: Gil<'py>,
        result: &PyRef<'py>,
        response: &Response,
    ) -> Result<bool, Failure<'py>> {
        let class = self.shared.file_wrapper.bind(gil);
        let Some(file) = file_wrapper::transmittable(result, &class)? else {
            return Ok(false);
        };
        if !response.transmit(gil, &file)? {
            return Ok(false);
        }
        response.send(gil, b"", true)?;
        Ok(true)
    }

    /// Calls the iterable's `close()`, whatever happened (PEP 3333).
    fn close(&self, result: &PyRef<'_>, request: &dyn Fn() -> String) {
        // Lists and tuples (most bodies) have no close(); asking would raise and catch an
        // AttributeError on every request.
        if !result.is_plain_sequence()
            && result.hasattr(c"close")
            && let Err(error) = result.call_method(c"close", &[])
        {
            log::line(&format!(
                "{}: the response's close() raised:\n{}",
                request(),
                error.text()
            ));
        }
    }

    /// Reports a failed request: an error page if nothing was sent yet, else a closed
    /// connection.
    fn handle_error(
        &self,
        gil: Gil<'_>,
        serving: &Serving<'_>,
        response: &Response,
        request: &str,
        failure: Failure<'_>,
    ) {
        let debug = serving.served.debug;
        let mut page = match failure {
            Failure::Aborted(message) => {
                // A client that leaves mid-response is routine (a closed tab, a benchmark's
                // last requests): one line now and then, with the count.
                if let Some((since, total)) = ABORTED.count() {
                    log::line(&format!(
                        "{request}: response aborted: {message} ({since} since the last report, {total} in all; at most one line a minute)"
                    ));
                }
                return;
            }
            Failure::Refused(page) => *page,
            Failure::Internal(message) => {
                log::line(&format!("{request}: {message}"));
                Page::application_failure(None)
            }
            Failure::Python(error) => self.failure_page(request, response, error.text(), debug),
            Failure::Protocol(message) => self.failure_page(request, response, message, debug),
        };
        if response.headers_sent() {
            response.abort();
            return;
        }
        page.request_id = Some(serving.id.to_string());
        if let Err(SendError::Aborted(message) | SendError::Application(message)) =
            response.send_page(gil, &page)
        {
            log::line(&format!(
                "{request}: the error page could not be sent: {message}"
            ));
        }
    }

    /// Logs the application's failure (the same one's traceback at most `traceback_limit`
    /// times a minute); the 500 page shows it only with `debug = true` (the application's
    /// own: `[wsgi] debug`, or its mount's).
    fn failure_page(
        &self,
        request: &str,
        response: &Response,
        detail: String,
        debug: bool,
    ) -> Page {
        let when = if response.headers_sent() {
            "the application failed after the headers were sent; closing the connection"
        } else {
            "the application failed"
        };
        match self.repeats.note(&detail) {
            Verdict::Full => log::line(&format!("{request}: {when}:\n{detail}")),
            Verdict::Repeated { kind, repeats } => log::line(&format!(
                "{request}: {when}: {kind}, again ({repeats} more in this minute after {} in full; traceback not repeated)",
                self.repeats_limit()
            )),
        }
        Page::application_failure(debug.then_some(detail.as_str()))
    }

    fn repeats_limit(&self) -> usize {
        self.repeats.limit().unwrap_or(0)
    }
}

/// The request being served (with its id), and by which application.
struct Serving<'a> {
    ecb: &'a Ecb,
    headers: &'a Headers<'a>,
    id: &'a RequestId,
    routed: &'a Routed,
    served: &'a Served,
    app: &'a App,
}

/// The request's objects lent to Python (see [`Bridge::serve`]).
pub struct Lent<'a, 'py> {
    /// `wsgi.input`.
    pub input: &'a PyRef<'py>,
    /// The application's second argument.
    pub start_response: &'a PyRef<'py>,
    /// `isapi.server_variable`.
    pub server_variable: &'a PyRef<'py>,
    /// `isapi.groups` (Windows, with a token).
    pub groups: Option<&'a PyRef<'py>>,
    /// `isapi.user_sid` (Windows, with a token).
    pub user_sid: Option<&'a str>,
}

/// Lends `value` to Python as a `native` object for the duration of `body`, if there is a
/// value; else runs `body` without one.
fn lend_if<'py, T: crate::python::Native, R>(
    native: &NativeType<T>,
    gil: Gil<'py>,
    value: Option<&T>,
    body: impl FnOnce(Option<&PyRef<'py>>) -> R,
) -> PyResult<'py, R> {
    match value {
        Some(value) => native.lend(gil, value, |object| body(Some(object))),
        None => Ok(body(None)),
    }
}

/// Imports every application: `[wsgi] app` (if any, or the demo) and each mount's. One
/// that fails keeps its report; the others are unaffected.
fn load_site(gil: Gil<'_>, shared: &Shared, config: &Config) -> Site {
    let load = |spec| {
        shared
            .load_app(gil, spec)
            .map_err(|error| format!("the application failed to load:\n{}", error.text()))
    };
    let mut served = Vec::new();
    if let Some(spec) = config.root_app() {
        served.push(Served {
            mount: None,
            handler: config.handler,
            debug: config.debug,
            app: load(spec),
        });
    }
    let root = (!served.is_empty()).then_some(0);
    for mount in &config.mounts {
        served.push(Served {
            mount: Some(mount.path.clone()),
            handler: mount.handler,
            debug: mount.debug,
            app: load(&mount.app),
        });
    }
    Site::new(served, root)
}

/// Responses aborted because the client left: logged at most once a minute.
static ABORTED: log::RateLimit = log::RateLimit::new(std::time::Duration::from_secs(60));

/// The demo's refusal is logged once.
static DEMO_REFUSED: std::sync::Once = std::sync::Once::new();

/// What went wrong while answering.
enum Failure<'py> {
    /// The application raised.
    Python(PyErr<'py>),
    /// The application broke PEP 3333 (e.g. yielded str).
    Protocol(String),
    /// The client went away, or the response was abandoned.
    Aborted(String),
    /// The bridge failed (a message for the log); the client gets a plain 500 page.
    Internal(String),
    /// The bridge answers this request itself, with this page.
    Refused(Box<Page>),
}

impl From<SendError> for Failure<'_> {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Application(message) => Failure::Protocol(message),
            SendError::Aborted(message) => Failure::Aborted(message),
            SendError::Complete => Failure::Aborted(response::COMPLETE.into()),
        }
    }
}

impl<'py> From<PyErr<'py>> for Failure<'py> {
    fn from(error: PyErr<'py>) -> Self {
        Failure::Python(error)
    }
}

fn item_type(item: &PyRef<'_>) -> String {
    item.getattr(c"__class__")
        .and_then(|class| class.getattr(c"__name__"))
        .map(|name| name.text())
        .unwrap_or_default()
}

/// `[id] GET /path` for log lines, from the ECB (before there is an environ).
fn describe_ecb(ecb: &Ecb, id: &RequestId) -> String {
    format!(
        "[{id}] {} {}",
        log::escape(ecb.method()),
        log::escape(ecb.path_info())
    )
}

/// As [`describe_ecb`], with the mount that answers: `[id] GET /path (mount /blog)`.
fn describe_serving(serving: &Serving<'_>) -> String {
    format!(
        "{}{}",
        describe_ecb(serving.ecb, serving.id),
        mount_note(serving.served)
    )
}

/// ` (mount /blog)` after a request's description, for a mounted application.
fn mount_note(served: &Served) -> String {
    served
        .mount
        .as_deref()
        .map(|mount| format!(" (mount {})", log::escape(mount.as_bytes())))
        .unwrap_or_default()
}

/// `[id] GET /path` for log lines (the request's own bytes, escaped), with the mount.
fn describe_request(environ: &PyRef<'_>, serving: &Serving<'_>) -> String {
    let gil = environ.gil();
    let get = |key: &str| {
        gil.str(key)
            .ok()
            .and_then(|key| environ.get_item(&key))
            .and_then(|value| value.latin1_bytes().ok())
            .unwrap_or_default()
    };
    let mut path = get("SCRIPT_NAME");
    path.extend_from_slice(&get("PATH_INFO"));
    format!(
        "[{}] {} {}{}",
        serving.id,
        log::escape(&get("REQUEST_METHOD")),
        log::escape(&path),
        mount_note(serving.served)
    )
}
