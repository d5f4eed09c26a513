//! Windows implementation of the `sys` layer (LoadLibraryExW and friends).
//!
//! The few Win32 functions we need are declared here by hand: they are stable, documented
//! kernel32 exports, and a bindings crate would be a dependency to audit for five lines.
use std::ffi::{CString, c_void};
use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};

type Hmodule = *mut c_void;
const LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR: u32 = 0x0000_0100;
const LOAD_LIBRARY_SEARCH_DEFAULT_DIRS: u32 = 0x0000_1000;

#[link(name = "kernel32")]
unsafe extern "system" {
    fn LoadLibraryExW(name: *const u16, file: *mut c_void, flags: u32) -> Hmodule;
    fn GetProcAddress(module: Hmodule, name: *const i8) -> *mut c_void;
    fn GetLastError() -> u32;
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
