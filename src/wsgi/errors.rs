//! `wsgi.errors`: a text stream into the extension's log.
//!
//! One object serves every request (it has no per-request state), so it lives in the
//! environ template. `write(str)`, `writelines(iterable of str)` and `flush()`, as PEP 3333
//! asks; the text goes to the log exactly as written, UTF-8 encoded.
use crate::log;
use crate::python::{Args, Exception, Gil, Kind, Native, PyErr, PyRef, PyResult};

/// The `wsgi.errors` stream.
pub struct Errors;

impl Native for Errors {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.Errors";
    const METHODS: &'static [&'static std::ffi::CStr] = &[c"write", c"writelines", c"flush"];

    fn method<'py>(
        &self,
        gil: Gil<'py>,
        index: usize,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        match index {
            0 => {
                let text = args
                    .get(0)
                    .ok_or_else(|| PyErr::new(gil, Exception::TypeError, "write() takes a str"))?;
                write(gil, &text)?;
                Ok(gil.none())
            }
            1 => {
                let lines = args.get(0).ok_or_else(|| {
                    PyErr::new(gil, Exception::TypeError, "writelines() takes an iterable")
                })?;
                let lines = lines.iter()?;
                while let Some(text) = lines.next()? {
                    write(gil, &text)?;
                }
                Ok(gil.none())
            }
            _ => {
                log::flush();
                Ok(gil.none())
            }
        }
    }
}

fn write<'py>(gil: Gil<'py>, text: &PyRef<'py>) -> PyResult<'py, ()> {
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
