//! Loading the applications, and what every request shares: the environ builder, our
//! Python types.
//!
//! [`Shared::load`] runs once at start-up with the GIL held: it puts the configured
//! directories on `sys.path` and the virtual environment's site-packages through
//! `site.addsitedir` (so `.pth` files work), and prepares the environ template. Then
//! [`Shared::load_app`] imports each application (`[wsgi] app` and every mount's, see
//! mounts.rs): `module:attribute`, calling it once for `module:factory()`, or the built-in
//! demo app. Any Python error comes back with its traceback, for the log.
//!
//! Then, if the application configured no logging of its own (the root logger has no
//! handler once it is imported), Python's `logging` root logger gets a handler that writes
//! to our log (the `wsgi.errors` stream, so records keep their level, `WARNING` by default,
//! and look like our lines: UTC time, `[pid]`, logger name, level), and
//! `logging.captureWarnings(True)` sends `warnings` there too. An application that set up
//! logging keeps it untouched.
use std::ffi::CStr;
use std::path::Path;

use super::environ::EnvironBuilder;
use super::errors::Errors;
use super::identity::Identity;
use super::input::Input;
use super::response::Response;
use super::server_variables::ServerVariables;
use crate::config::{AppSpec, Config};
use crate::python::{Gil, NativeType, PyRef, PyResult, PyStatic};

/// Python helpers that are clearer in Python than through the C API: path set-up, the
/// application import, the `isapi_wsgi` module (`wsgi.file_wrapper`'s class and the
/// exceptions of [`super::exceptions`]) and the demo application.
const SUPPORT: &CStr = cr#"
import os, sys

def set_environment(pairs):
    os.environ.update(pairs)

def prepend_paths(paths):
    for path in reversed(paths):
        if not os.path.isdir(path):
            raise FileNotFoundError("[python] path: %s is not a directory" % path)
        if path not in sys.path:
            sys.path.insert(0, path)

def add_venv(venv):
    import site
    if os.name == "nt":
        packages = os.path.join(venv, "Lib", "site-packages")
    else:
        packages = os.path.join(venv, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    if not os.path.isdir(packages):
        raise FileNotFoundError(
            "[python] venv: %s has no %s; is it a virtual environment for Python %d.%d?"
            % (venv, packages, sys.version_info[0], sys.version_info[1]))
    # The venv's packages come before the interpreter's own site-packages, as in the venv.
    before = list(sys.path)
    site.addsitedir(packages)
    added = [entry for entry in sys.path if entry not in before]
    sys.path[:] = added + before

def load_app(module, attribute, call):
    import importlib
    target = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    if call:
        target = target()
    if not callable(target):
        raise TypeError("[wsgi] app: %s:%s is a %s, not a WSGI callable"
                        % (module, attribute, type(target).__name__))
    return target

class ClientDisconnected(OSError):
    """The client went away: wsgi.input could not read the rest of the request body,
    or the response could not be written."""

class BodyTooLarge(OSError):
    """A chunked request body grew past [wsgi] max_body."""

def route_logging(stream):
    """Python's logging and warnings into our log, if the application set up no logging."""
    import logging, time
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(stream)
    formatter = logging.Formatter(
        "%(asctime)s [%(process)d] %(name)s %(levelname)s: %(message)s",
        "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root.addHandler(handler)
    logging.captureWarnings(True)
    return True

class FileWrapper:
    """wsgi.file_wrapper(filelike, blksize=8192).

    Returned by the application, a regular file (one with a fileno()) is sent by the server
    itself (HSE_REQ_TRANSMIT_FILE) from its current position: Content-Length bytes if the
    application set one, else the rest of the file (and that Content-Length is added).
    Anything else is read in blksize blocks. close() closes the file-like object."""
    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close
    def __iter__(self):
        return self
    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration
    def _transmittable(self):
        """(handle, offset, length) of the rest of a regular file, for the server to send
        itself (a Win32 HANDLE on Windows, the descriptor elsewhere); None for anything
        else."""
        import io, stat
        filelike = self.filelike
        if isinstance(filelike, io.TextIOBase):
            return None
        try:
            descriptor = filelike.fileno()
            offset = filelike.tell()
            info = os.fstat(descriptor)
        except (AttributeError, OSError, ValueError, TypeError):
            return None
        if not (isinstance(descriptor, int) and isinstance(offset, int)) or offset < 0:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        if os.name == "nt":
            import msvcrt
            handle = msvcrt.get_osfhandle(descriptor)
        else:
            handle = descriptor
        return handle, offset, max(info.st_size - offset, 0)

def make_module():
    """`import isapi_wsgi`: the exceptions and the file wrapper, for applications."""
    import types
    module = types.ModuleType("isapi_wsgi", "What the isapi-wsgi extension gives applications.")
    for item in (ClientDisconnected, BodyTooLarge, FileWrapper):
        item.__module__ = "isapi_wsgi"
        setattr(module, item.__name__, item)
    sys.modules["isapi_wsgi"] = module

make_module()

def demo_app(environ, start_response):
    """The page served when no application is configured: hello, and the environ."""
    from html import escape
    rows = "".join(
        "<tr><th>%s</th><td>%s</td></tr>" % (escape(key), escape(repr(value)))
        for key, value in sorted(environ.items()))
    body = (
        "<!doctype html><meta charset=utf-8><title>isapi-wsgi</title>"
        "<h1>Hello from isapi-wsgi</h1>"
        "<p>Python %s is serving this page through the ISAPI extension. "
        "Point <code>[wsgi] app</code> in isapi_wsgi.ini at your own application.</p>"
        "<h2>The WSGI environ</h2><table>%s</table>" % (escape(sys.version), rows)
    ).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                              ("Content-Length", str(len(body)))])
    return [body]

def thread_stacks(idents):
    """The Python stack of each thread (None for a thread running no Python code)."""
    import traceback
    frames = sys._current_frames()
    return ["".join(traceback.format_stack(frames[ident])).rstrip("\n") if ident in frames else None
            for ident in idents]

if not hasattr(sys, "argv"):
    sys.argv = [""]
"#;

/// The `wsgi.errors` stream shared by every request.
static ERRORS: Errors = Errors;

/// What every request of every application shares: the environ builder and our types.
pub struct Shared {
    pub(super) environ: EnvironBuilder,
    pub(super) input_type: NativeType<Input>,
    pub(super) response_type: NativeType<Response>,
    pub(super) server_variables_type: NativeType<ServerVariables>,
    /// `wsgi.file_wrapper`'s class.
    pub(super) file_wrapper: PyStatic,
    pub(super) groups_type: NativeType<Identity>,
    /// `sys.version` of the interpreter.
    pub python_version: String,
    /// The support module (its `load_app`, `demo_app`).
    support: PyStatic,
    /// `thread_stacks(idents)` from the support code, for the watchdog.
    pub(super) thread_stacks: PyStatic,
    /// `wsgi.errors` (our log), for [`Shared::route_logging`].
    errors: PyStatic,
}

/// A loaded application.
pub struct App {
    pub(super) callable: PyStatic,
    /// The built-in demo app (it answers loopback clients only).
    pub demo: bool,
    /// What was loaded, for the log (`mysite.wsgi:application`, or the demo).
    pub description: String,
}

impl Shared {
    /// Sets up the paths and the virtual environment, and prepares what requests share.
    pub fn load<'py>(gil: Gil<'py>, config: &Config) -> PyResult<'py, Shared> {
        let support = gil.run_module(c"isapi_wsgi_support", SUPPORT)?;
        let helper = |name: &str| helper(&support, name);
        if !config.environment.is_empty() {
            let pairs = gil.list()?;
            for (key, value) in &config.environment {
                pairs.list_append(&gil.tuple(&[&gil.str(key)?, &gil.str(value)?])?)?;
            }
            helper("set_environment")?.call(&[&pairs])?;
        }
        if !config.python_path.is_empty() {
            let list = gil.list()?;
            for path in &config.python_path {
                list.list_append(&path_str(gil, path)?)?;
            }
            helper("prepend_paths")?.call(&[&list])?;
        }
        if let Some(venv) = &config.venv {
            helper("add_venv")?.call(&[&path_str(gil, venv)?])?;
        }

        let errors_type = NativeType::<Errors>::new(gil)?;
        let errors = errors_type.forever(gil, &ERRORS)?;
        let template = gil.dict()?;
        let version = gil.tuple(&[&gil.int(1)?, &gil.int(0)?])?;
        let set = |key: &str, value: &PyRef<'py>| template.set_item(&gil.str(key)?, value);
        set("wsgi.version", &version)?;
        set("wsgi.errors", &errors)?;
        // IIS runs requests on many threads, and overlapping recycles run two processes.
        set("wsgi.multithread", &gil.bool(true))?;
        set("wsgi.multiprocess", &gil.bool(true))?;
        set("wsgi.run_once", &gil.bool(false))?;
        let file_wrapper = helper("FileWrapper")?;
        set("wsgi.file_wrapper", &file_wrapper)?;
        super::exceptions::register(helper("ClientDisconnected")?, helper("BodyTooLarge")?);
        set("GATEWAY_INTERFACE", &gil.str("CGI/1.1")?)?;
        set(
            "SERVER_SOFTWARE",
            &gil.str(concat!("isapi-wsgi/", env!("CARGO_PKG_VERSION")))?,
        )?;

        Ok(Shared {
            environ: EnvironBuilder::new(gil, template, config.trusted_proxies.clone())?,
            input_type: NativeType::new(gil)?,
            response_type: NativeType::new(gil)?,
            server_variables_type: NativeType::new(gil)?,
            file_wrapper: file_wrapper.into_static(),
            groups_type: NativeType::new(gil)?,
            python_version: gil.version(),
            thread_stacks: helper("thread_stacks")?.into_static(),
            support: support.into_static(),
            errors: errors.into_static(),
        })
    }

    /// Once every application is imported: if none configured logging (the root logger
    /// has no handler), routes Python's `logging` and `warnings` to our log. Whether it did.
    pub fn route_logging<'py>(&self, gil: Gil<'py>) -> PyResult<'py, bool> {
        helper(&self.support.bind(gil), "route_logging")?
            .call(&[&self.errors.bind(gil)])?
            .is_true()
    }

    /// Imports `spec` (`module:attribute`, calling it once for `module:factory()`), or
    /// takes the built-in demo app.
    pub fn load_app<'py>(&self, gil: Gil<'py>, spec: &AppSpec) -> PyResult<'py, App> {
        let support = self.support.bind(gil);
        let (callable, description) = match spec {
            AppSpec::Demo => (
                helper(&support, "demo_app")?,
                "the built-in demo app".to_string(),
            ),
            AppSpec::Named {
                module,
                attribute,
                call,
            } => {
                let app = helper(&support, "load_app")?.call(&[
                    &gil.str(module)?,
                    &gil.str(attribute)?,
                    &gil.bool(*call),
                ])?;
                (
                    app,
                    format!("{module}:{attribute}{}", if *call { "()" } else { "" }),
                )
            }
        };
        Ok(App {
            callable: callable.into_static(),
            demo: matches!(spec, AppSpec::Demo),
            description,
        })
    }
}

/// The support module's `name`.
fn helper<'py>(support: &PyRef<'py>, name: &str) -> PyResult<'py, PyRef<'py>> {
    let gil = support.gil();
    support
        .get_item(&gil.str(name)?)
        .ok_or_else(|| missing(gil, name))
}

fn missing<'py>(gil: Gil<'py>, name: &str) -> crate::python::PyErr<'py> {
    crate::python::PyErr::new(
        gil,
        crate::python::Exception::RuntimeError,
        &format!("support code lacks {name}"),
    )
}

fn path_str<'py>(gil: Gil<'py>, path: &Path) -> PyResult<'py, PyRef<'py>> {
    gil.str(&path.to_string_lossy())
}
