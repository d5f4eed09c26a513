//! Unix implementation of the `sys` layer (dlopen and friends).
use std::ffi::{CStr, CString, c_void};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A loaded shared library. Dropping it does not unload it: an ISAPI extension and an
/// embedded interpreter both live until the process ends, and unloading either is unsafe.
/// Only [`Library::unload`] unloads, for a host that wants to do what IIS may do.
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

    /// Unloads the library (`dlclose`), as IIS may `FreeLibrary` an extension after
    /// `TerminateExtension`. The loader may keep it mapped all the same (another handle to
    /// it, `RTLD_NODELETE`, a pinned module): [`is_loaded`] tells.
    ///
    /// # Safety
    /// Nothing may use an address from this library afterwards, unless the library is still
    /// loaded: no call through a function pointer looked up with [`Library::symbol`], and no
    /// thread may be running its code. (A library that pinned itself, as ours does, stays
    /// valid; that is what the host's `--unload` checks.)
    pub unsafe fn unload(self) -> Result<(), String> {
        // SAFETY: handle came from a successful dlopen and is closed once (self is consumed);
        // the caller promises that nothing uses the library's code afterwards.
        if unsafe { libc::dlclose(self.handle) } == 0 {
            Ok(())
        } else {
            Err(format!(
                "{}: dlclose: {}",
                self.path.display(),
                last_dl_error()
            ))
        }
    }
}

/// Whether the library at `path` is loaded in this process now (a `dlopen` with
/// `RTLD_NOLOAD`, whose reference is given back at once).
pub fn is_loaded(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c_path is NUL-terminated; RTLD_NOLOAD never loads anything: it returns a new
    // reference to a library that is already loaded, or NULL.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return false;
    }
    // SAFETY: gives back the reference the dlopen above took; the library stays loaded by
    // whoever loaded it first.
    unsafe { libc::dlclose(handle) };
    true
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

/// Makes the library that contains this code stay loaded until the process ends, even if
/// its host unloads it: `dlopen(own path, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE)`.
///
/// Why: our code keeps running after `TerminateExtension`, when IIS may `FreeLibrary` us
/// (docs/bridge.md, "Code that outlives the library"): the thread-state reaper, threadpool
/// workers still finishing a request, and Python itself, which holds our types (their
/// slots point at our functions) and whatever objects an application kept (start_response,
/// wsgi.input, wsgi.errors). Unmapped code under any of them crashes the process.
/// `RTLD_NODELETE` on a library that is already loaded marks it as never to be unloaded;
/// `RTLD_NOLOAD` makes sure this call loads nothing. The reference it takes is never given
/// back. Code linked into the main program (the in-process tests) cannot be unloaded: Ok.
pub fn pin_own_module() -> Result<(), String> {
    let mut info: libc::Dl_info = empty_dl_info();
    let address = pin_own_module as *const c_void;
    // SAFETY: `address` is inside this module; dladdr fills `info` and returns 0 on failure.
    let found = unsafe { libc::dladdr(address, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("dladdr cannot name the library that contains this code".into());
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the loader, valid while the module
    // is loaded; it is used (not kept) before this function returns.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
    let same = |a: &Path, b: &Path| {
        std::fs::canonicalize(a)
            .ok()
            .is_some_and(|a| Some(a) == std::fs::canonicalize(b).ok())
    };
    let main_program =
        name.to_bytes().is_empty() || std::env::current_exe().is_ok_and(|exe| same(&exe, &path));
    if main_program {
        return Ok(());
    }
    // SAFETY: `name` is the loader's own NUL-terminated name of a library that is loaded
    // (it contains this function); with RTLD_NOLOAD dlopen loads nothing and runs no
    // initialiser, it only takes a reference and, with RTLD_NODELETE, marks it permanent.
    let handle = unsafe {
        libc::dlopen(
            name.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        )
    };
    if handle.is_null() {
        return Err(format!(
            "dlopen({}, RTLD_NOLOAD | RTLD_NODELETE): {}",
            path.display(),
            last_dl_error()
        ));
    }
    // The reference is deliberately never given back (no dlclose).
    Ok(())
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

/// Whether requests carry Windows access tokens (never, off Windows).
pub const HAS_TOKENS: bool = false;

/// Windows only: there are no tokens on Unix.
pub fn token_user_sid(_token: *mut c_void) -> Result<String, u32> {
    Err(50) // ERROR_NOT_SUPPORTED
}

/// Windows only: there are no tokens on Unix.
pub fn token_groups(_token: *mut c_void) -> Result<Vec<String>, u32> {
    Err(50) // ERROR_NOT_SUPPORTED
}

/// Opens the log file for appending (Unix has no share modes: anyone allowed may read it,
/// append to it, or rename it while it is open).
pub fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
