//! What differs between operating systems, behind one small interface.
//!
//! * [`Library`]: a shared library loaded at run time (dlopen / LoadLibraryExW) and the
//!   addresses of its exports. The host loads ISAPI extensions with it; the bridge loads
//!   CPython with it. [`Library::unload`] and [`is_loaded`] are for the host's `--unload`.
//! * [`own_module_path`]: where the library holding this code lives (the bridge finds its
//!   ini next to it); [`pin_own_module`]: keep that library loaded until the process ends,
//!   whatever the host does (`GetExtensionVersion` calls it first).
//! * [`open_log`]: the log file, opened so that others may read, append and rename it
//!   while it is open (Windows share modes).
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

// ---------------------------------------------------------------------------------------
// Windows specifics with a do-nothing Unix twin (owned by the Windows workstream):
// `registered_pythons()` (PEP 514), `report_to_admin()`, `impersonate()` / `Impersonation`.
// The data type they share is defined once, here.

/// A CPython installation registered in the Windows registry as PEP 514 describes
/// (`Software\Python\PythonCore\<tag>\InstallPath`). Only installations of the bitness of
/// this process are listed: a 64-bit IIS worker cannot load a 32-bit python3X.dll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredPython {
    /// The registry tag, such as `3.12` (or `3.12-32` for a per-user 32-bit install).
    pub tag: String,
    /// Major and minor version, from `SysVersion` or else from the tag.
    pub version: (u32, u32),
    /// The `InstallPath` default value: the directory that holds `python3X.dll`.
    pub home: std::path::PathBuf,
    /// Where it was found: `HKEY_CURRENT_USER` or `HKEY_LOCAL_MACHINE`.
    pub hive: &'static str,
}

impl RegisteredPython {
    /// The versioned DLL in [`home`](Self::home), e.g. `python312.dll`.
    pub fn library(&self) -> std::path::PathBuf {
        self.home
            .join(format!("python{}{}.dll", self.version.0, self.version.1))
    }
}
