//! Unix implementation of the `sys` layer (dlopen and friends).
use std::ffi::{CStr, CString, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A loaded shared library. It is never unloaded: an ISAPI extension and an embedded
/// interpreter both live until the process ends, and unloading either is unsafe.
#[derive(Debug)]
pub struct Library {
    handle: *mut c_void,
    path: PathBuf,
}

// SAFETY: a dlopen handle may be used from any thread; dlsym is thread-safe.
unsafe impl Send for Library {}
// SAFETY: see Send; the handle is never mutated after open.
unsafe impl Sync for Library {}

/// How symbols of a loaded library are made visible to libraries loaded later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// RTLD_LOCAL: the usual choice for a plug-in such as an ISAPI extension.
    Local,
    /// RTLD_GLOBAL: needed for libpython, so that C extension modules it imports later
    /// resolve their `Py*` symbols against it.
    Global,
}

impl Library {
    /// Loads the library at `path` (a full path; no search), resolving all symbols now.
    pub fn open(path: &Path, visibility: Visibility) -> Result<Library, String> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| format!("{}: path contains a NUL byte", path.display()))?;
        let flags = libc::RTLD_NOW
            | match visibility {
                Visibility::Local => libc::RTLD_LOCAL,
                Visibility::Global => libc::RTLD_GLOBAL,
            };
        // SAFETY: c_path is a valid NUL-terminated string; dlopen has no other preconditions.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), flags) };
        if handle.is_null() {
            return Err(format!("{}: {}", path.display(), last_dl_error()));
        }
        Ok(Library {
            handle,
            path: path.to_path_buf(),
        })
    }

    /// The address of the export `name`, or None if the library has no such export.
    pub fn symbol(&self, name: &str) -> Option<*mut c_void> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: handle came from a successful dlopen and is never closed.
        let address = unsafe { libc::dlsym(self.handle, c_name.as_ptr()) };
        (!address.is_null()).then_some(address)
    }

    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl* call
    // on this thread; we copy it at once.
    unsafe {
        let message = libc::dlerror();
        if message.is_null() {
            "unknown dlopen error".to_string()
        } else {
            CStr::from_ptr(message).to_string_lossy().into_owned()
        }
    }
}

/// The path of the shared library (or executable) that contains this code: the extension
/// finds its `<stem>.ini` next to itself. None if the loader cannot tell.
pub fn own_module_path() -> Option<PathBuf> {
    let mut info: libc::Dl_info = empty_dl_info();
    let address = own_module_path as *const c_void;
    // SAFETY: `address` is inside this module; dladdr fills `info` and returns 0 on failure.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader, valid while the module
    // is loaded (for ever, here); we copy it at once.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}

// ---------------------------------------------------------------------------------------
// Windows specifics (owned by the Windows workstream): their Unix twins do nothing, so
// that callers need no `cfg`. See `windows.rs` for what they do there.

/// PEP 514 is a Windows registry convention: there is nothing to find on Unix.
pub fn registered_pythons() -> Vec<super::RegisteredPython> {
    Vec::new()
}

/// On Windows this reaches the Event Log and a debugger; on Unix the extension's own log
/// (stderr under the host) is where an administrator looks, so there is nothing more to do.
pub fn report_to_admin(_message: &str) {}

/// A thread's borrowed identity. On Unix there is no per-thread token: a no-op guard.
#[derive(Debug)]
pub struct Impersonation {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Impersonation {
    /// Always `Ok`: there was nothing to apply.
    pub fn applied(&self) -> Result<(), u32> {
        Ok(())
    }
}

/// No-op on Unix; see the Windows version.
pub fn impersonate(_token: *mut c_void) -> Impersonation {
    Impersonation {
        _not_send: std::marker::PhantomData,
    }
}

/// Windows only: there are no tokens on Unix.
pub fn duplicate_own_token() -> Result<*mut c_void, u32> {
    Err(50) // ERROR_NOT_SUPPORTED
}
