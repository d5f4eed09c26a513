//! The bridge: turns one ISAPI request into one WSGI call. The only place that knows both
//! sides.
//!
//! * [`app`]: loading the application; what all requests share.
//! * [`environ`]: the request as a WSGI environ dict.
//! * [`input`]: `wsgi.input`, the body stream.
//! * [`server_variables`]: `isapi.server_variable`, IIS's other server variables on demand.
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
//! [`Bridge::serve`] is the whole of a request, top-down, like CPython's
//! `wsgiref.handlers.BaseHandler.run`: give the request its id and count it in flight; take
//! the GIL; lend the request's `wsgi.input`,
//! `start_response` and `isapi.server_variable` to Python; then `Bridge::run`'s steps — build the environ,
//! call the application, send each piece of the body it returns (the headers with the
//! first non-empty one), call the iterable's `close()` whatever happened; release the GIL.
//! Every failure goes to one place, `handle_error`: before the headers went out it becomes
//! a 500 page (with the traceback only when `debug = true`); after, it can only be logged
//! and the connection closed.
pub mod app;
pub mod environ;
pub mod errors;
pub mod exceptions;
pub mod file_wrapper;
pub mod framing;
pub mod in_flight;
pub mod input;
pub mod proxy;
pub mod repeats;
pub mod response;
pub mod server_variables;

use std::sync::Arc;

use crate::config::Config;
use crate::isapi::ecb::Ecb;
use crate::log;
use crate::page::Page;
use crate::python::runtime::{self, PythonLocation};
use crate::python::{Api, Gil, Kind, PyErr, PyRef};
use crate::request_id::{self, RequestId};
use crate::stats::STATS;
use app::App;
use in_flight::InFlight;
use input::Input;
use repeats::{Repeats, Verdict};
use response::{Flow, Outcome, Response, SendError};
use server_variables::ServerVariables;

/// A running interpreter with the application loaded.
pub struct Bridge {
    api: &'static Api,
    app: App,
    /// `[wsgi] max_body`: the largest request body accepted; None for no limit.
    max_body: Option<u64>,
    /// The requests running now, kept when the watchdog is on.
    in_flight: Option<Arc<InFlight>>,
    /// `[wsgi] traceback_limit`: how often the same traceback is logged.
    repeats: Repeats,
}

impl Bridge {
    /// Starts Python as configured and loads the application. The error is the complete
    /// report for the log (with the Python traceback when there is one).
    pub fn start(config: &Config) -> Result<Bridge, String> {
        let location = PythonLocation {
            home: config.python_home.clone(),
            library: config.python_library.clone(),
            version: config.python_version,
        };
        let loaded = runtime::start(&location, |gil| {
            App::load(gil, config).map_err(|error| error.text())
        })?;
        let app =
            loaded.map_err(|traceback| format!("the application failed to load:\n{traceback}"))?;
        let api = runtime::api().expect("started");
        let watched = config.request_timeout.is_some()
            || config.gil_stall.is_some()
            || !config.reload_on.is_empty();
        Ok(Bridge {
            api,
            app,
            max_body: config.max_body,
            in_flight: watched.then(Default::default),
            repeats: Repeats::new(config.traceback_limit),
        })
    }

    /// What was loaded, for the log.
    pub fn describe(&self) -> String {
        format!(
            "serving {} with Python {}",
            self.app.description,
            self.app.python_version.replace('\n', " ")
        )
    }

    /// Whether Python's logging and warnings were sent to our log (see app.rs).
    pub fn logging_routed(&self) -> bool {
        self.app.logging_routed
    }

    /// The interpreter's version number, e.g. `3.12.1`.
    pub fn python_version(&self) -> String {
        let full = &self.app.python_version;
        full.split_whitespace().next().unwrap_or(full).to_string()
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
                let stacks = self.app.thread_stacks.bind(gil).call(&[&idents])?;
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

    /// Answers one request: the request's whole life, on the calling thread.
    pub fn serve(&self, ecb: &Arc<Ecb>) -> Outcome {
        let id = RequestId::assign(ecb);
        let in_flight = STATS.begin();
        // Counted in before it waits for the GIL, out after it gave the GIL back.
        let _running = self
            .in_flight
            .as_ref()
            .map(|in_flight| in_flight.enter(ecb, &id, crate::python::thread_ident(self.api)));
        let outcome = self.serve_with_gil(ecb, &id);
        in_flight.finish(outcome.status);
        outcome
    }

    fn serve_with_gil(&self, ecb: &Arc<Ecb>, id: &RequestId) -> Outcome {
        Gil::acquire(self.api, |gil| {
            let request = framing::Request {
                head: ecb.is_head(),
                http11: ecb.server_variable_is(c"SERVER_PROTOCOL", b"HTTP/1.1"),
            };
            let input = Input::new(ecb.clone(), self.max_body);
            let response = Response::new(ecb.clone(), request, *id, request_id::header_enabled());
            let variables = ServerVariables::new(ecb.clone());
            // Python gets its own objects for the three: recalled when `run` returns, whoever
            // still holds them.
            let lent = self.app.input_type.lend(gil, &input, |input_object| {
                self.app
                    .response_type
                    .lend(gil, &response, |start_response| {
                        self.app
                            .server_variables_type
                            .lend(gil, &variables, |server_variable| {
                                let lent = Lent {
                                    input: input_object,
                                    start_response,
                                    server_variable,
                                };
                                self.run(gil, ecb, id, &response, &lent)
                            })
                    })
            });
            if let Err(error) = lent.and_then(|inner| inner).and_then(|inner| inner) {
                log::line(&format!(
                    "{}: lending wsgi.input, start_response or isapi.server_variable failed: {}",
                    describe_ecb(ecb, id),
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
        ecb: &Ecb,
        id: &RequestId,
        response: &Response,
        lent: &Lent<'_, 'py>,
    ) {
        if let Some(refusal) = self.refuse(ecb, id) {
            return self.handle_error(gil, response, &describe_ecb(ecb, id), id, refusal);
        }
        let environ = match self
            .app
            .environ
            .build(gil, ecb, response.request(), lent, id)
        {
            Ok(environ) => environ,
            Err(error) => {
                let failure =
                    Failure::Internal(format!("building the environ failed: {}", error.text()));
                return self.handle_error(gil, response, &describe_ecb(ecb, id), id, failure);
            }
        };
        let request = || describe_request(&environ, id);
        let result = match self
            .app
            .callable
            .bind(gil)
            .call2(&environ, lent.start_response)
        {
            Ok(result) => result,
            Err(error) => {
                return self.handle_error(gil, response, &request(), id, Failure::Python(error));
            }
        };
        if let Err(failure) = self.finish_response(gil, &result, response) {
            self.handle_error(gil, response, &request(), id, failure);
        }
        self.close(&result, &request);
    }

    /// Requests the bridge answers itself, without calling the application: a body
    /// declared larger than `max_body`, and the demo's clients that are not local.
    fn refuse(&self, ecb: &Ecb, id: &RequestId) -> Option<Failure<'static>> {
        self.refuse_too_large(ecb, id)
            .or_else(|| self.refuse_demo_client(ecb))
            .map(|page| Failure::Refused(Box::new(page)))
    }

    /// A Content-Length over `max_body`: `413 Content Too Large`, before the application
    /// runs and without reading the body; the connection then closes (the unread body
    /// would otherwise be taken for the next request). A chunked body has no length to
    /// check here: `wsgi.input` stops it when it grows past the limit.
    fn refuse_too_large(&self, ecb: &Ecb, id: &RequestId) -> Option<Page> {
        let limit = self.max_body?;
        let length = ecb.total_bytes().filter(|&length| length > limit)?;
        log::line(&format!(
            "{}: refused with 413: the body's Content-Length ({length}) is over [wsgi] max_body ({limit})",
            describe_ecb(ecb, id)
        ));
        Some(Page::too_large(length, limit))
    }

    /// The built-in demo shows the server's insides (every header, the Python version), so
    /// it answers only clients on this machine.
    fn refuse_demo_client(&self, ecb: &Ecb) -> Option<Page> {
        if !self.app.demo || ecb.client_is_loopback() {
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
        let class = self.app.file_wrapper.bind(gil);
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
        response: &Response,
        request: &str,
        id: &RequestId,
        failure: Failure<'_>,
    ) {
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
            Failure::Python(error) => self.failure_page(request, response, error.text()),
            Failure::Protocol(message) => self.failure_page(request, response, message),
        };
        if response.headers_sent() {
            response.abort();
            return;
        }
        page.request_id = Some(id.to_string());
        if let Err(SendError::Aborted(message) | SendError::Application(message)) =
            response.send_page(gil, &page)
        {
            log::line(&format!(
                "{request}: the error page could not be sent: {message}"
            ));
        }
    }

    /// Logs the application's failure (the same one's traceback at most `traceback_limit`
    /// times a minute); the 500 page shows it only with `debug = true`.
    fn failure_page(&self, request: &str, response: &Response, detail: String) -> Page {
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
        Page::application_failure(self.app.debug.then_some(detail.as_str()))
    }

    fn repeats_limit(&self) -> usize {
        self.repeats.limit().unwrap_or(0)
    }
}

/// The request's objects lent to Python (see [`Bridge::serve`]).
pub struct Lent<'a, 'py> {
    /// `wsgi.input`.
    pub input: &'a PyRef<'py>,
    /// The application's second argument.
    pub start_response: &'a PyRef<'py>,
    /// `isapi.server_variable`.
    pub server_variable: &'a PyRef<'py>,
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

/// `[id] GET /path` for log lines (the request's own bytes, escaped).
fn describe_request(environ: &PyRef<'_>, id: &RequestId) -> String {
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
        "[{id}] {} {}",
        log::escape(&get("REQUEST_METHOD")),
        log::escape(&path)
    )
}
