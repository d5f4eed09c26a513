//! The exceptions the bridge raises into the application when the client side of a request
//! fails, and the `isapi_wsgi` module that makes them importable.
//!
//! Both are `OSError` subclasses, so an application that catches `OSError` (as PEP 3333's
//! servers lead it to) needs no change; one that wants to tell them apart imports them:
//!
//! * `isapi_wsgi.ClientDisconnected`: the client went away. `wsgi.input` raises it when
//!   the body cannot be read to its end (a failed ReadClient, a body cut short), `write()`
//!   when the response cannot be written.
//! * `isapi_wsgi.BodyTooLarge`: a chunked request body grew past `[wsgi] max_body`.
//!
//! The classes are defined in Python (`app.rs`'s support code, which also puts
//! `FileWrapper` in the module) and registered here once at start-up.
use std::sync::OnceLock;

use crate::python::{Exception, Gil, PyErr, PyRef, PyStatic};

/// What went wrong on the client's side of the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// `isapi_wsgi.ClientDisconnected`.
    Disconnected,
    /// `isapi_wsgi.BodyTooLarge`.
    TooLarge,
}

/// The two classes, in [`ClientError`]'s order.
static CLASSES: OnceLock<[PyStatic; 2]> = OnceLock::new();

/// Records the classes the support code defined (once, at start-up).
pub fn register(disconnected: PyRef<'_>, too_large: PyRef<'_>) {
    let _ = CLASSES.set([disconnected.into_static(), too_large.into_static()]);
}

impl ClientError {
    /// The exception to raise, with `message` as its text. A plain `OSError` if the classes
    /// are not registered (they always are once an application is loaded).
    pub fn exception<'py>(self, gil: Gil<'py>, message: &str) -> PyErr<'py> {
        let Some(classes) = CLASSES.get() else {
            return PyErr::new(gil, Exception::OSError, message);
        };
        let class = classes[self as usize].bind(gil);
        let made = gil
            .str(message)
            .and_then(|text| class.call(&[&text]))
            .and_then(PyErr::from_value);
        made.unwrap_or_else(|failure| failure)
    }
}
