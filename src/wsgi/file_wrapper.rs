//! `wsgi.file_wrapper`: a regular file the application returns wrapped is sent by the
//! server itself (HSE_REQ_TRANSMIT_FILE), without passing through Python.
//!
//! The wrapper class is Python (`isapi_wsgi.FileWrapper`, in `app.rs`'s support code): it
//! iterates in `blksize` blocks like any iterable, and its `_transmittable()` says whether
//! the server can send the file instead: a file-like object with a `fileno()` that is a
//! regular file (not a pipe, a socket, a text stream), and where it stands (`tell()`). On
//! Windows the descriptor becomes the Win32 `HANDLE` through the loaded Python's own
//! `msvcrt.get_osfhandle` (the C runtime's descriptor table is the interpreter's, not ours).
//!
//! [`transmittable`] is asked only for instances of that class, exactly as PEP 3333 puts it
//! ("the server should check whether the returned object is an instance of the wrapper
//! class"): a middleware that wraps the iterable (wsgiref's validator does) hides the file,
//! which is then iterated. The bridge then sends the range (`Response::transmit`), and
//! `close()` is called as for any iterable.
use crate::python::{PyRef, PyResult};

/// The part of an open file that is to be the (rest of the) body.
#[derive(Clone, Copy, Debug)]
pub struct FileRange {
    /// The Win32 HANDLE on Windows, the descriptor elsewhere: the application's, never
    /// closed by us.
    pub handle: usize,
    /// Where the file stands (`tell()`): the first byte to send.
    pub offset: u64,
    /// The bytes from there to the end of the file.
    pub length: u64,
}

/// The file behind `result` if it is a wrapped regular file the server can send; None for
/// every other iterable.
pub fn transmittable<'py>(
    result: &PyRef<'py>,
    wrapper_class: &PyRef<'py>,
) -> PyResult<'py, Option<FileRange>> {
    // Lists and tuples (most bodies) are never the wrapper: no isinstance call for them.
    if result.is_plain_sequence() || !result.is_instance(wrapper_class)? {
        return Ok(None);
    }
    let found = result.call_method(c"_transmittable", &[])?;
    if found.is_none() {
        return Ok(None);
    }
    let field = |index| {
        found
            .get_index(index)
            .and_then(|item| item.to_i64())
            .map(|value| u64::try_from(value).ok())
    };
    Ok(match (field(0)?, field(1)?, field(2)?) {
        (Some(handle), Some(offset), Some(length)) => Some(FileRange {
            handle: handle as usize,
            offset,
            length,
        }),
        // A negative handle: not an open file after all (msvcrt gives -1 for none).
        _ => None,
    })
}
