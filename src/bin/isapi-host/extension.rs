//! Loading an ISAPI extension the way IIS does: load the library by full path, look up the
//! three entry points by name, call `GetExtensionVersion` once.
//!
//! The [`Extension`] is the only place the host holds the extension's function pointers;
//! `TerminateExtension` is called through a safe method, `HttpExtensionProc` through an
//! `unsafe` one whose caller vouches for the ECB.
use isapi_wsgi::isapi::ffi::{EXTENSION_CONTROL_BLOCK, HSE_TERM_MUST_UNLOAD, HSE_VERSION_INFO};
use isapi_wsgi::sys::{Library, Visibility};
use std::path::Path;

type GetExtensionVersionFn = unsafe extern "system" fn(*mut HSE_VERSION_INFO) -> i32;
type HttpExtensionProcFn = unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32;
type TerminateExtensionFn = unsafe extern "system" fn(u32) -> i32;

/// A loaded, initialised extension.
pub struct Extension {
    library: Library,
    http_extension_proc: HttpExtensionProcFn,
    terminate_extension: Option<TerminateExtensionFn>,
    /// What GetExtensionVersion reported.
    pub version: u32,
    pub description: String,
}

impl Extension {
    /// Loads `path` and runs `GetExtensionVersion`. The error names the file and the reason.
    pub fn load(path: &Path) -> Result<Extension, String> {
        // IIS loads by full path (scriptProcessor), and LoadLibraryExW's search flags
        // refuse a relative one.
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let path = absolute.as_path();
        let library = Library::open(path, Visibility::Local)
            .map_err(|e| format!("cannot load the extension {e}"))?;
        let missing =
            |name: &str| format!("{}: the extension does not export {name}", path.display());
        let get_version = library
            .symbol("GetExtensionVersion")
            .ok_or_else(|| missing("GetExtensionVersion"))?;
        let proc_ = library
            .symbol("HttpExtensionProc")
            .ok_or_else(|| missing("HttpExtensionProc"))?;
        let terminate = library.symbol("TerminateExtension");
        // SAFETY: each pointer is a non-NULL export of `library` (symbol() found it), and
        // data and function pointers have the same size here. The ISAPI contract fixes
        // these names' signatures (headers/httpext.h: WINAPI, which is the "system" ABI),
        // so a library exporting them promises them. They stay valid for the life of the
        // process: a `Library` is never unloaded.
        let (get_version, http_extension_proc, terminate_extension) = unsafe {
            (
                std::mem::transmute::<*mut std::ffi::c_void, GetExtensionVersionFn>(get_version),
                std::mem::transmute::<*mut std::ffi::c_void, HttpExtensionProcFn>(proc_),
                terminate
                    .map(|t| std::mem::transmute::<*mut std::ffi::c_void, TerminateExtensionFn>(t)),
            )
        };
        let mut info = HSE_VERSION_INFO::default();
        // SAFETY: the export's signature is as above; info is a valid, zeroed
        // HSE_VERSION_INFO that the extension may write during the call.
        let ok = unsafe { get_version(&mut info) };
        if ok == 0 {
            return Err(format!(
                "{}: GetExtensionVersion returned FALSE",
                path.display()
            ));
        }
        let desc: Vec<u8> = info
            .lpszExtensionDesc
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Ok(Extension {
            library,
            http_extension_proc,
            terminate_extension,
            version: info.dwExtensionVersion,
            description: String::from_utf8_lossy(&desc).into_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        self.library.path()
    }

    /// Calls `HttpExtensionProc(ecb)` and returns its HSE_STATUS_* value (or whatever else
    /// the extension returned).
    ///
    /// # Safety
    /// `ecb` must point to a fully initialised EXTENSION_CONTROL_BLOCK that stays valid,
    /// at the same address, until the request ends: the return of a status other than
    /// HSE_STATUS_PENDING, or else HSE_REQ_DONE_WITH_SESSION (which may come from any
    /// thread, before or after the return). Until then its string pointers must point to
    /// live NUL-terminated strings and `lpbData` to `cbAvailable` readable bytes, and its
    /// four callbacks must be usable with its ConnID from any thread. The extension may
    /// write the ECB (dwHttpStatusCode, lpszLogData) meanwhile, so no Rust reference to
    /// it may be held across the call.
    pub unsafe fn http_extension_proc(&self, ecb: *mut EXTENSION_CONTROL_BLOCK) -> u32 {
        // SAFETY: the `HttpExtensionProc` export of `self.library` (never unloaded), with
        // the signature ISAPI fixes; the caller vouches for `ecb` as the contract requires.
        unsafe { (self.http_extension_proc)(ecb) }
    }

    /// Calls `TerminateExtension(HSE_TERM_MUST_UNLOAD)` if the extension exports it.
    /// Returns None if it does not.
    pub fn terminate(&self) -> Option<bool> {
        let terminate = self.terminate_extension?;
        // SAFETY: the `TerminateExtension` export of `self.library` (never unloaded), with
        // the signature ISAPI fixes; it takes a DWORD by value, so there is nothing else to
        // vouch for. The host calls it once, at shutdown, as IIS does.
        Some(unsafe { terminate(HSE_TERM_MUST_UNLOAD) } != 0)
    }
}
