//! What differs between operating systems, behind one small interface.
//!
//! * [`Library`]: a shared library loaded at run time (dlopen / LoadLibraryExW) and the
//!   addresses of its exports. The host loads ISAPI extensions with it; the bridge loads
//!   CPython with it.
//!
//! Everything here is a thin, `unsafe`-containing layer; callers above it stay safe.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use unix::*;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;
