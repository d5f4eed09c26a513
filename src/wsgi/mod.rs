//! The bridge: turns one ISAPI request into one WSGI call. The only place that knows both
//! sides.
//!
//! * [`app`]: loading the application; what all requests share.
//! * [`environ`]: the request as a WSGI environ dict.
//! * [`input`]: `wsgi.input`, the body stream.
//! * [`errors`]: `wsgi.errors`, into the log.
//! * [`response`]: `start_response`, `write()`, framing the body.
//!
//! [`Bridge::serve`] is the whole of a request, top-down: take the GIL; lend the request's
//! `wsgi.input` and `start_response` to Python; build the environ; call the application;
//! send each piece of the body it returns (the headers with the first non-empty one); call
//! the iterable's `close()` whatever happened; release the GIL. An exception before the
//! headers went out becomes a 500 page (with the traceback only when `debug = true`); after,
//! it can only be logged and the connection closed.
pub mod app;
pub mod environ;
pub mod errors;
pub mod input;
pub mod response;

use std::sync::Arc;

use crate::config::Config;
use crate::isapi::ecb::Ecb;
use crate::log;
use crate::python::runtime::{self, PythonLocation};
use crate::python::{Api, Gil, Kind, PyErr, PyRef};
use app::App;
use input::Input;
use response::{Outcome, Response, SendError};

/// A running interpreter with the application loaded.
pub struct Bridge {
    api: &'static Api,
    app: App,
}

impl Bridge {
    /// Starts Python as configured and loads the application. The error is the complete
    /// report for the log (with the Python traceback when there is one).
    pub fn start(config: &Config) -> Result<Bridge, String> {
        let location = PythonLocation {
            home: config.python_home.clone(),
            library: config.python_library.clone(),
        };
        let loaded = runtime::start(&location, |gil| {
            App::load(gil, config).map_err(|error| error.text())
        })?;
        let app =
            loaded.map_err(|traceback| format!("the application failed to load:\n{traceback}"))?;
        let api = runtime::api().expect("started");
        Ok(Bridge { api, app })
    }

    /// What was loaded, for the log.
    pub fn describe(&self) -> String {
        format!(
            "serving {} with Python {}",
            self.app.description,
            self.app.python_version.replace('\n', " ")
        )
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

    /// Answers one request.
    pub fn serve(&self, ecb: &Arc<Ecb>) -> Outcome {
        Gil::acquire(self.api, |gil| self.serve_with_gil(gil, ecb))
    }

    fn serve_with_gil(&self, gil: Gil<'_>, ecb: &Arc<Ecb>) -> Outcome {
        let app = &self.app;
        let input = Input::new(ecb.clone());
        let served = app.input_type.lend(gil, &input, |input_object| {
            let (environ, line) = match app.environ.build(gil, ecb, input_object) {
                Ok(built) => built,
                Err(error) => {
                    log::line(&format!("building the environ failed: {}", error.text()));
                    let response = Response::new(ecb.clone(), false, false);
                    let _ = response.send_error_page(
                        gil,
                        "500 Internal Server Error",
                        &error_page(None),
                    );
                    return response.outcome();
                }
            };
            let response = Response::new(ecb.clone(), line.head, line.http11);
            let called = app.response_type.lend(gil, &response, |start_response| {
                self.call_app(gil, &environ, start_response, &response);
            });
            if let Err(error) = called {
                log::line(&format!("creating start_response failed: {}", error.text()));
            }
            response.outcome()
        });
        served.unwrap_or_else(|error| {
            log::line(&format!("creating wsgi.input failed: {}", error.text()));
            Outcome {
                status: 500,
                keep_conn: false,
                aborted: true,
            }
        })
    }

    /// Calls the application, sends what it returns, and always calls `close()`.
    fn call_app<'py>(
        &self,
        gil: Gil<'py>,
        environ: &PyRef<'py>,
        start_response: &PyRef<'py>,
        response: &Response,
    ) {
        let request = || describe_request(environ);
        let result = match self.app.callable.bind(gil).call2(environ, start_response) {
            Ok(result) => result,
            Err(error) => return self.fail(gil, response, &request(), Failure::Python(error)),
        };
        if let Err(failure) = self.send_body(gil, &result, response) {
            self.fail(gil, response, &request(), failure);
        }
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

    fn send_body<'py>(
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
        // A one-item list or tuple: the whole body is known, so it gets a Content-Length.
        if matches!(result.kind(), Kind::List | Kind::Tuple) && result.len()? == 1 {
            let item = result.get_index(0)?;
            let bytes = item.as_bytes().ok_or_else(|| not_bytes(&item))?;
            return Ok(response.send(gil, bytes, true)?);
        }
        let iterator = result.iter()?;
        while let Some(item) = iterator.next()? {
            let bytes = item.as_bytes().ok_or_else(|| not_bytes(&item))?;
            if bytes.is_empty() && response.headers_sent() && !response.client_connected() {
                return Err(Failure::Aborted("the client disconnected".into()));
            }
            response.send(gil, bytes, false)?;
        }
        Ok(response.send(gil, b"", true)?)
    }

    /// Reports a failed request: a 500 page if nothing was sent yet, else a closed connection.
    fn fail<'py>(&self, gil: Gil<'py>, response: &Response, request: &str, failure: Failure<'py>) {
        let detail = match &failure {
            Failure::Python(error) => error.text(),
            Failure::Protocol(message) => message.clone(),
            Failure::Aborted(message) => {
                log::line(&format!("{request}: response aborted: {message}"));
                return;
            }
        };
        if response.headers_sent() {
            log::line(&format!(
                "{request}: the application failed after the headers were sent; closing the connection:\n{detail}"
            ));
            response.abort();
            return;
        }
        log::line(&format!("{request}: the application failed:\n{detail}"));
        let page = error_page(self.app.debug.then_some(detail.as_str()));
        if let Err(SendError::Aborted(message)) | Err(SendError::Application(message)) =
            response.send_error_page(gil, "500 Internal Server Error", &page)
        {
            log::line(&format!(
                "{request}: the error page could not be sent: {message}"
            ));
        }
    }
}

/// What went wrong while answering.
enum Failure<'py> {
    /// The application raised.
    Python(PyErr<'py>),
    /// The application broke PEP 3333 (e.g. yielded str).
    Protocol(String),
    /// The client went away, or the framing broke.
    Aborted(String),
}

impl From<SendError> for Failure<'_> {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Application(message) => Failure::Protocol(message),
            SendError::Aborted(message) => Failure::Aborted(message),
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

/// `GET /path` for log lines.
fn describe_request(environ: &PyRef<'_>) -> String {
    let gil = environ.gil();
    let get = |key: &str| {
        gil.str(key)
            .ok()
            .and_then(|key| environ.get_item(&key))
            .map(|v| v.text())
            .unwrap_or_default()
    };
    format!(
        "{} {}{}",
        get("REQUEST_METHOD"),
        get("SCRIPT_NAME"),
        get("PATH_INFO")
    )
}

/// The 500 page; `detail` (a traceback) only with `debug = true`.
pub fn error_page(detail: Option<&str>) -> Vec<u8> {
    internal_error_page("The application failed to answer this request.", detail)
}

/// The page every request gets when the application could not be started.
pub fn startup_failure_page(detail: Option<&str>) -> Vec<u8> {
    internal_error_page("The application failed to start.", detail)
}

/// A "500 Internal Server Error" page saying `what` went wrong, with `detail` (escaped) below.
fn internal_error_page(what: &str, detail: Option<&str>) -> Vec<u8> {
    let mut page = format!(
        "<!doctype html><meta charset=utf-8><title>500 Internal Server Error</title>\
         <h1>Internal Server Error</h1><p>{what} \
         The details are in the server's log.</p>",
    );
    if let Some(detail) = detail {
        page.push_str("<pre>");
        page.push_str(&escape_html(detail));
        page.push_str("</pre>");
    }
    page.into_bytes()
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
