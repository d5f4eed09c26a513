//! Windows implementation of the `sys` layer (LoadLibraryExW and friends).
//!
//! The few Win32 functions we need are declared here by hand: they are stable, documented
//! kernel32 exports, and a bindings crate would be a dependency to audit for five lines.
use std::ffi::{CString, c_void};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

type Hmodule = *mut c_void;
const LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: u32 = 0x0000_0100;
const LOAD_LIBRARY_SEARCH_DEFAULT_DIRS: u32 = 0x0000_1000;

#[link(name = "kernel32")]
unsafe extern "system" {
    fn LoadLibraryExW(name: *const u16, file: *mut c_void, flags: u32) -> Hmodule;
    fn GetProcAddress(module: Hmodule, name: *const i8) -> *mut c_void;
    fn GetLastError() -> u32;
    fn GetModuleHandleExW(flags: u32, address: *const u16, module: *mut Hmodule) -> i32;
    fn GetModuleFileNameW(module: Hmodule, buffer: *mut u16, size: u32) -> u32;
}

/// A loaded DLL. It is never unloaded (see the Unix twin for why).
#[derive(Debug)]
pub struct Library {
    handle: Hmodule,
    path: PathBuf,
}

// SAFETY: an HMODULE may be used from any thread; GetProcAddress is thread-safe.
unsafe impl Send for Library {}
// SAFETY: see Send; the handle is never mutated after open.
unsafe impl Sync for Library {}

/// Kept for the same call sites as on Unix; Windows DLL exports are always per-module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Local,
    Global,
}

impl Library {
    /// Loads the DLL at `path` by full path. Its own directory and the system directories
    /// are searched for its dependencies; the current directory and PATH are not.
    pub fn open(path: &Path, _visibility: Visibility) -> Result<Library, String> {
        let wide: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
        let flags = LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR | LOAD_LIBRARY_SEARCH_DEFAULT_DIRS;
        // SAFETY: wide is NUL-terminated UTF-16; the reserved argument must be NULL.
        let handle = unsafe { LoadLibraryExW(wide.as_ptr(), std::ptr::null_mut(), flags) };
        if handle.is_null() {
            // SAFETY: GetLastError has no preconditions.
            let code = unsafe { GetLastError() };
            return Err(format!(
                "{}: LoadLibraryExW failed with Windows error {code}",
                path.display()
            ));
        }
        Ok(Library {
            handle,
            path: path.to_path_buf(),
        })
    }

    /// The address of the export `name`, or None if the DLL has no such export.
    pub fn symbol(&self, name: &str) -> Option<*mut c_void> {
        let c_name = CString::new(name).ok()?;
        // SAFETY: handle came from a successful LoadLibraryExW and is never freed.
        let address = unsafe { GetProcAddress(self.handle, c_name.as_ptr()) };
        (!address.is_null()).then_some(address)
    }

    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

const GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS: u32 = 0x4;
const GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT: u32 = 0x2;

/// The path of the DLL (or executable) that contains this code: the extension finds its
/// `<stem>.ini` next to itself. IIS loads extensions through `\\?\` paths; that prefix is
/// removed. None if Windows cannot tell.
pub fn own_module_path() -> Option<PathBuf> {
    let mut module: Hmodule = std::ptr::null_mut();
    let flags =
        GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
    let address = own_module_path as *const u16;
    // SAFETY: with FROM_ADDRESS the second argument is an address inside a module (this
    // function); UNCHANGED_REFCOUNT means there is nothing to release afterwards.
    if unsafe { GetModuleHandleExW(flags, address, &mut module) } == 0 {
        return None;
    }
    let mut buffer = vec![0u16; 1024];
    loop {
        // SAFETY: `buffer` has room for `buffer.len()` UTF-16 units.
        let length = unsafe { GetModuleFileNameW(module, buffer.as_mut_ptr(), buffer.len() as u32) }
            as usize;
        if length == 0 {
            return None;
        }
        if length < buffer.len() {
            buffer.truncate(length);
            break;
        }
        // Truncated: try again with more room (long paths can reach 32767 units).
        if buffer.len() >= 32_768 {
            return None;
        }
        buffer.resize(buffer.len() * 4, 0);
    }
    let prefix: Vec<u16> = r"\\?\".encode_utf16().collect();
    let unc: Vec<u16> = r"\\?\UNC\".encode_utf16().collect();
    let path = if buffer.starts_with(&unc) {
        let mut rest: Vec<u16> = r"\\".encode_utf16().collect();
        rest.extend_from_slice(&buffer[unc.len()..]);
        rest
    } else if buffer.starts_with(&prefix) {
        buffer[prefix.len()..].to_vec()
    } else {
        buffer
    };
    Some(PathBuf::from(std::ffi::OsString::from_wide(&path)))
}

// Impersonation

#[link(name = "advapi32")]
unsafe extern "system" {
    fn SetThreadToken(thread: *mut *mut c_void, token: *mut c_void) -> i32;
}

/// Runs the current thread as a request's user until dropped (then reverts to the
/// process's identity).
#[derive(Debug)]
pub struct Impersonation {
    applied: Result<(), u32>,
    /// True if this guard changed the thread's token (and so must revert it).
    changed: bool,
    // Impersonation is per thread: the guard must be dropped on the thread that made it.
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Impersonation {
    /// Ok if the token was applied (or there was none to apply); else the Windows error
    /// from SetThreadToken, and the thread kept its own identity.
    pub fn applied(&self) -> Result<(), u32> {
        self.applied
    }
}

/// Runs the current thread as `token` until the returned guard is dropped. A null token
/// (anonymous request, or a host without one) changes nothing.
pub fn impersonate(token: *mut c_void) -> Impersonation {
    let applied = if token.is_null() {
        Ok(())
    } else {
        // SAFETY: NULL thread means the current thread; the token is only read.
        if unsafe { SetThreadToken(std::ptr::null_mut(), token) } != 0 {
            Ok(())
        } else {
            // SAFETY: GetLastError has no preconditions.
            Err(unsafe { GetLastError() })
        }
    };
    Impersonation {
        applied,
        changed: !token.is_null() && applied.is_ok(),
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for Impersonation {
    fn drop(&mut self) {
        if self.changed {
            // SAFETY: NULL thread and NULL token: the current thread stops impersonating.
            unsafe { SetThreadToken(std::ptr::null_mut(), std::ptr::null_mut()) };
        }
    }
}
