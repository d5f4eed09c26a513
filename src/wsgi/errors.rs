//! `wsgi.errors`: a text stream into the extension's log.
//!
//! One object serves every request (it has no per-request state), so it lives in the
//! environ template. `write(str)`, `writelines(iterable of str)` and `flush()`, as PEP 3333
//! asks; the text goes to the log exactly as written, UTF-8 encoded.
use crate::log;
use crate::python::{Args, Exception, Gil, Kind, Method, Native, PyErr, PyRef, PyResult};

/// The `wsgi.errors` stream.
pub struct Errors;

impl Native for Errors {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.Errors";
    const METHODS: &'static [Method<Self>] = &[
        Method {
            name: c"write",
            body: Errors::write,
        },
        Method {
            name: c"writelines",
            body: Errors::writelines,
        },
        Method {
            name: c"flush",
            body: Errors::flush,
        },
    ];
}

impl Errors {
    /// `write(str)`.
    fn write<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let text = args
            .get(0)
            .ok_or_else(|| PyErr::new(gil, Exception::TypeError, "write() takes a str"))?;
        log_text(gil, &text)?;
        Ok(gil.none())
    }

    /// `writelines(iterable of str)`.
    fn writelines<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let lines = args.get(0).ok_or_else(|| {
            PyErr::new(gil, Exception::TypeError, "writelines() takes an iterable")
        })?;
        let lines = lines.iter()?;
        while let Some(text) = lines.next()? {
            log_text(gil, &text)?;
        }
        Ok(gil.none())
    }

    /// `flush()`.
    fn flush<'py>(
        &self,
        gil: Gil<'py>,
        _args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        log::flush();
        Ok(gil.none())
    }
}

fn log_text<'py>(gil: Gil<'py>, text: &PyRef<'py>) -> PyResult<'py, ()> {
    if text.kind() != Kind::Str {
        return Err(PyErr::new(
            gil,
            Exception::TypeError,
            "wsgi.errors.write() takes a str",
        ));
    }
    log::raw(text.text().as_bytes());
    Ok(())
}
