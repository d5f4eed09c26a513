//! Everything that speaks CPython's C API, and nothing that knows ISAPI.
//!
//! * [`api`]: the function table, resolved at run time from the configured libpython.
//! * [`object`]: safe handles: the GIL token [`Gil`], owned references [`PyRef`], errors.
//! * [`native`]: Python types implemented in Rust ([`Native`]), lent per request.
//! * [`runtime`]: finding, loading and starting the interpreter.
//!
//! All `unsafe` code that touches Python lives in these modules; the WSGI bridge above
//! them is safe Rust.
pub mod api;
pub mod native;
pub mod object;
pub mod runtime;

pub use api::{Api, Exception};
pub use native::{Args, Method, MethodBody, Native, NativeType};
pub use object::{
    Gil, Kind, PyErr, PyRef, PyResult, PyStatic, ThreadAttachment, keep_thread_state, thread_ident,
};
