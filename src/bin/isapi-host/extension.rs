//! Loading an ISAPI extension the way IIS does: load the library by full path, look up the
//! three entry points by name, call `GetExtensionVersion` once.
//!
//! The [`Extension`] is the only place the host holds the extension's function pointers;
//! `TerminateExtension` is called through a safe method, `HttpExtensionProc` through an
//! `unsafe` one whose caller vouches for the ECB.
//!
//! With `--unload`, [`Extension::unload`] frees the library after `TerminateExtension`, as
//! IIS may. Afterwards the host calls nothing of it any more: `HttpExtensionProc` is
//! refused, and the library is not freed while a host thread is inside it.
use isapi_wsgi::isapi::ffi::{
    EXTENSION_CONTROL_BLOCK, HSE_STATUS_ERROR, HSE_TERM_MUST_UNLOAD, HSE_VERSION_INFO,
};
use isapi_wsgi::sys::{self, Library, Visibility};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

type GetExtensionVersionFn = unsafe extern "system" fn(*mut HSE_VERSION_INFO) -> i32;
type HttpExtensionProcFn = unsafe extern "system" fn(*mut EXTENSION_CONTROL_BLOCK) -> u32;
type TerminateExtensionFn = unsafe extern "system" fn(u32) -> i32;

/// A loaded, initialised extension.
pub struct Extension {
    /// None once [`Extension::unload`] has freed it.
    library: Mutex<Option<Library>>,
    path: PathBuf,
    http_extension_proc: HttpExtensionProcFn,
    terminate_extension: Option<TerminateExtensionFn>,
    /// What GetExtensionVersion reported.
    pub version: u32,
    pub description: String,
    /// Host threads inside `HttpExtensionProc` right now.
    inside: AtomicUsize,
    /// Set by [`Extension::unload`]: no more calls.
    unloading: AtomicBool,
}

/// What [`Extension::unload`] did.
pub enum Unloaded {
    /// The library was freed and is no longer in the process.
    Gone,
    /// The library was freed, but the loader keeps it (the extension pinned itself, or
    /// something else holds a reference).
    StillLoaded,
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
        // so a library exporting them promises them. They stay valid while the library is
        // loaded: until `unload`, after which the host calls none of them.
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
            path: library.path().to_path_buf(),
            library: Mutex::new(Some(library)),
            http_extension_proc,
            terminate_extension,
            version: info.dwExtensionVersion,
            description: String::from_utf8_lossy(&desc).into_owned(),
            inside: AtomicUsize::new(0),
            unloading: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `HttpExtensionProc(ecb)` and returns its HSE_STATUS_* value (or whatever else
    /// the extension returned). Once the extension is being unloaded, answers
    /// HSE_STATUS_ERROR without calling it.
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
        // Count ourselves in first, then look at the flag; unload() sets the flag first,
        // then looks at the count (both SeqCst): one of the two sees the other.
        self.inside.fetch_add(1, Ordering::SeqCst);
        let status = if self.unloading.load(Ordering::SeqCst) {
            eprintln!("isapi-host: HttpExtensionProc refused: the extension was unloaded");
            HSE_STATUS_ERROR
        } else {
            // SAFETY: the `HttpExtensionProc` export of our library, with the signature
            // ISAPI fixes; the library stays loaded while `inside` counts this call; the
            // caller vouches for `ecb` as the contract requires.
            unsafe { (self.http_extension_proc)(ecb) }
        };
        self.inside.fetch_sub(1, Ordering::SeqCst);
        status
    }

    /// `--unload`: frees the library (`FreeLibrary` / `dlclose`) as IIS may after
    /// `TerminateExtension`, and says whether the loader really let it go. No further call
    /// reaches it. Refused while a host thread is inside `HttpExtensionProc` (a request that
    /// outlived the shutdown wait): that would crash the host's own thread, which tests
    /// nothing about the extension. Threads of the extension's own, and Python calling
    /// into it, are what this exposes. (I/O completion callbacks are not counted: the host
    /// runs none after its shutdown wait unless a request is still open.)
    pub fn unload(&self) -> Result<Unloaded, String> {
        self.unloading.store(true, Ordering::SeqCst);
        let inside = self.inside.load(Ordering::SeqCst);
        if inside > 0 {
            return Err(format!(
                "not unloading {}: {inside} host thread(s) still inside HttpExtensionProc",
                self.path.display()
            ));
        }
        let library = self
            .library
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| format!("{} was already unloaded", self.path.display()))?;
        // SAFETY: no host thread is inside HttpExtensionProc and none can enter it (the
        // flag is set); TerminateExtension has returned and is never called again (terminate
        // checks the flag too). What the extension still runs on its own threads, or from
        // Python, is its own affair: exposing that is what --unload is for.
        unsafe { library.unload()? };
        Ok(if sys::is_loaded(&self.path) {
            Unloaded::StillLoaded
        } else {
            Unloaded::Gone
        })
    }

    /// Calls `TerminateExtension(HSE_TERM_MUST_UNLOAD)` if the extension exports it.
    /// Returns None if it does not.
    pub fn terminate(&self) -> Option<bool> {
        let terminate = self.terminate_extension?;
        if self.unloading.load(Ordering::SeqCst) {
            return Some(false);
        }
        // SAFETY: the `TerminateExtension` export of our library (not unloaded: `unload`
        // sets the flag checked above first), with the signature ISAPI fixes; it takes a
        // DWORD by value, so there is nothing else to vouch for. The host calls it once, at
        // shutdown, as IIS does.
        Some(unsafe { terminate(HSE_TERM_MUST_UNLOAD) } != 0)
    }
}
