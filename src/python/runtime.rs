//! Finding, loading and starting CPython.
//!
//! [`start`] is called once, from `GetExtensionVersion`:
//!
//! 1. find the library: `[python] library`, else the versioned library in `[python] home`
//!    (Linux: `lib/libpython3.X.so*`; Windows: `python3X.dll`, never the `python3.dll`
//!    forwarder), else the interpreter the extension was built with (Linux) or the newest
//!    CPython registered per PEP 514 (Windows);
//! 2. load it (Linux: RTLD_GLOBAL, so C extension modules resolve against it), refuse a
//!    build whose objects or ABI differ from the regular one ([`unsupported_build`]:
//!    free-threaded, debug, `Py_TRACE_REFS` before 3.13), and resolve the [`Api`] table;
//! 3. if Python already runs in this process, attach to it; otherwise check that the home
//!    (derived from `[python] library` when that is set: the library wins) holds a standard
//!    library (a wrong home makes `Py_InitializeEx` abort the process, so
//!    we refuse it first), set it, and start Python with `Py_InitializeEx(0)` (the host
//!    owns signals);
//! 4. hand over to the caller with the GIL held, then release it for good.
#[cfg(not(windows))]
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::api::Api;
use super::object::Gil;
use crate::sys::{Library, Visibility};

/// The one interpreter of this process (its table, loaded; maybe not yet initialised).
static API: OnceLock<Api> = OnceLock::new();
/// `API`, once Python is initialised: the only way out of this module (see [`api`]).
static RUNNING: OnceLock<&'static Api> = OnceLock::new();

/// Where Python lives: what the configuration says, with defaults filled in.
#[derive(Clone, Debug, Default)]
pub struct PythonLocation {
    pub home: Option<PathBuf>,
    pub library: Option<PathBuf>,
}

/// Starts (or attaches to) Python and runs `setup` with the GIL held; the GIL is released
/// when this returns. Errors are complete sentences for the log.
pub fn start<R>(
    location: &PythonLocation,
    setup: impl for<'py> FnOnce(Gil<'py>) -> R,
) -> Result<R, String> {
    let api = load(location)?;
    // SAFETY: no preconditions.
    if unsafe { (api.Py_IsInitialized)() } != 0 {
        // Someone (another extension, or an earlier start) already runs Python here.
        let _ = RUNNING.set(api);
        return Ok(Gil::acquire(api, setup));
    }
    let home = home_for(location)?;
    check_home(&home, &location_library(location)?)?;
    // Linux: libpython cannot tell where its standard library is (it would search from the
    // host executable), so we name the home. Windows: python3X.dll finds its home from its
    // own location, and naming it would make 3.11+ ignore the embeddable package's `._pth`
    // file (isolation off, the w3wp.exe directory on sys.path): see docs/windows.md.
    #[cfg(not(windows))]
    set_home(api, &home)?;
    // SAFETY: Python is not initialised (checked above); 0 = do not install signal handlers.
    unsafe { (api.Py_InitializeEx)(0) };
    // SAFETY: no preconditions.
    if unsafe { (api.Py_IsInitialized)() } == 0 {
        return Err(format!(
            "Py_InitializeEx failed with home {}",
            home.display()
        ));
    }
    let _ = RUNNING.set(api);
    // SAFETY: Py_InitializeEx returns with the GIL held by this thread.
    let result = setup(unsafe { Gil::assume(api) });
    // Release the GIL for good: requests take it with PyGILState_Ensure. The thread state
    // stays with the main interpreter; it is never restored or freed.
    // SAFETY: this thread holds the GIL (since Py_InitializeEx).
    unsafe { (api.PyEval_SaveThread)() };
    Ok(result)
}

/// The API table, once [`start`] has initialised Python (or found it running); None before,
/// and after a start that failed, even if the library was loaded. Holding the result is what
/// lets [`Gil::acquire`] and the other safe functions that take it call into Python.
pub fn api() -> Option<&'static Api> {
    RUNNING.get().copied()
}

fn load(location: &PythonLocation) -> Result<&'static Api, String> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let path = location_library(location)?;
    let library =
        Library::open(&path, Visibility::Global).map_err(|e| format!("cannot load Python: {e}"))?;
    // Before anything else touches it: no object may be made by an interpreter whose
    // object header is not the one our types are laid out for.
    if let Some(refusal) = unsupported_build(&library) {
        return Err(refusal);
    }
    let api = Api::load(&library)?;
    // The library is never unloaded: keep it alive for ever along with the table.
    std::mem::forget(library);
    Ok(API.get_or_init(|| api))
}

/// What sets a CPython build apart, read from the symbols its library exports (and
/// `Py_GetVersion`, which needs no interpreter). Each marker is a function that CPython's
/// own headers call from inline code in that build only, so every such build of 3.8-3.15
/// exports it (on Windows too: `PyAPI_FUNC`) and no regular build does (checked with
/// `nm -D` on the regular 3.8-3.13 builds here):
///
/// * free-threaded (`Py_GIL_DISABLED`, 3.13+ `python3.13t`): `_Py_MergeZeroLocalRefcount` and
///   `_Py_DecRefShared` (Py_DECREF's slow paths; Include/object.h in 3.13, refcount.h in
///   3.14+). The object header is different (thread id, split local/shared refcount), so
///   every object we read or make would be misread. (`PyMutex_Lock` is no marker: every
///   3.13 build exports it.)
/// * debug (`Py_DEBUG`, which implies `Py_REF_DEBUG`, e.g. Debian's `libpython3.11d.so`):
///   `_Py_NegativeRefcount` (Py_DECREF's check, declared under `Py_REF_DEBUG` in every
///   version). CPython declares the limited API incompatible with it up to 3.9; from 3.10
///   it is meant to work, but we have not tested it, so it is refused as well.
/// * `Py_TRACE_REFS` up to 3.12: `_Py_ForgetReference` (declared under `Py_TRACE_REFS`).
///   Every object then starts with two more pointers (`_ob_next`, `_ob_prev`), so our
///   header size is wrong; CPython declares the limited API incompatible with it. From 3.13
///   the build keeps the regular header (a hash table instead), so it is not refused there.
struct BuildMarkers {
    free_threaded: bool,
    debug: bool,
    trace_refs: bool,
}

/// Why `library` is a CPython build we cannot drive, as one sentence for the log; None for
/// a regular build.
fn unsupported_build(library: &Library) -> Option<String> {
    let has = |name: &str| library.symbol(name).is_some();
    let version = build_version(library);
    let minor = version.as_deref().and_then(version_minor).or_else(|| {
        library
            .path()
            .file_name()
            .and_then(|n| library_name(&n.to_string_lossy()))
            .map(|(minor, _)| minor)
    });
    let markers = BuildMarkers {
        free_threaded: has("_Py_MergeZeroLocalRefcount") || has("_Py_DecRefShared"),
        debug: has("_Py_NegativeRefcount"),
        // Unknown version: assume the old layout (refusing is the safe side).
        trace_refs: has("_Py_ForgetReference") && minor.is_none_or(|m| m <= 12),
    };
    describe_unsupported(&library.path().display().to_string(), minor, &markers)
}

/// The refusal sentence for `path` with these markers (None if there is none).
fn describe_unsupported(path: &str, minor: Option<u32>, markers: &BuildMarkers) -> Option<String> {
    let version = minor.map_or_else(|| "3.x".to_string(), |m| format!("3.{m}"));
    let flags = format!(
        "{version}{}{}",
        if markers.free_threaded { "t" } else { "" },
        if markers.debug { "d" } else { "" }
    );
    let mut kinds = Vec::new();
    if markers.free_threaded {
        kinds.push("free-threaded");
    }
    if markers.debug {
        kinds.push("debug");
    }
    if markers.trace_refs {
        kinds.push("Py_TRACE_REFS");
    }
    if kinds.is_empty() {
        return None;
    }
    let what = match kinds.as_slice() {
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} ({})", rest.join(", ")),
        [] => unreachable!(),
    };
    let advice = match (markers.free_threaded, cfg!(windows)) {
        (true, false) => format!(
            "isapi-wsgi needs a regular (GIL) build: install python{version} (not \
             python{version}t) and point [python] home or library at it"
        ),
        (true, true) => format!(
            "isapi-wsgi needs a regular (GIL) build: use {} from the same installation, not \
             the free-threaded DLL",
            windows_dll(minor)
        ),
        (false, false) => format!(
            "isapi-wsgi needs a regular release build: use CPython {version} configured \
             without --with-pydebug or --with-trace-refs (on Debian: libpython{version}, not \
             libpython{version}-dbg)"
        ),
        (false, true) => format!(
            "isapi-wsgi needs a regular release build: use {} from the same installation, not \
             the debug DLL",
            windows_dll(minor)
        ),
    };
    Some(format!(
        "{path} is a {what} build of CPython ({flags}); {advice}"
    ))
}

/// `python3X.dll` for minor version X (`python3X.dll` if unknown).
fn windows_dll(minor: Option<u32>) -> String {
    minor.map_or_else(|| "python3X.dll".to_string(), |m| format!("python3{m}.dll"))
}

/// `Py_GetVersion()` of a loaded library, e.g. "3.14.0 free-threading build (main, ...)".
/// CPython documents it as safe to call before the interpreter is initialised: it formats
/// compile-time constants into a static buffer.
fn build_version(library: &Library) -> Option<String> {
    let address = library.symbol("Py_GetVersion")?;
    // SAFETY: the export `Py_GetVersion` of a CPython library has the C signature
    // `const char *Py_GetVersion(void)`; function and data pointers have the same size here.
    let get_version = unsafe {
        std::mem::transmute::<
            *mut std::ffi::c_void,
            unsafe extern "C" fn() -> *const std::ffi::c_char,
        >(address)
    };
    // SAFETY: no preconditions (see above); it returns NULL or a static NUL-terminated string.
    let text = unsafe { get_version() };
    if text.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated string in static storage; copied at once.
    Some(
        unsafe { std::ffi::CStr::from_ptr(text) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The minor version at the start of a `Py_GetVersion` text: 14 for "3.14.0 ...".
fn version_minor(version: &str) -> Option<u32> {
    let rest = version.strip_prefix("3.")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The library to load.
fn location_library(location: &PythonLocation) -> Result<PathBuf, String> {
    if let Some(library) = &location.library {
        refuse_forwarder(library)?;
        return if library.is_file() {
            Ok(library.clone())
        } else {
            Err(format!(
                "[python] library {} does not exist",
                library.display()
            ))
        };
    }
    match &location.home {
        Some(home) => find_library(home),
        None => default_library(),
    }
}

/// `python3.dll` holds no code of its own: it forwards each stable-ABI name to
/// `python3X.dll`, and not every loader resolves those forwarders from the home directory
/// (under wine GetProcAddress fails with error 127). Name the versioned DLL instead.
fn refuse_forwarder(library: &Path) -> Result<(), String> {
    let name = library
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase());
    if name.as_deref() != Some("python3.dll") {
        return Ok(());
    }
    let folder = library.parent().unwrap_or(Path::new("."));
    let versioned: Vec<String> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    let lower = n.to_ascii_lowercase();
                    lower.starts_with("python3")
                        && lower.ends_with(".dll")
                        && lower[7..lower.len() - 4]
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                        && lower.len() > "python3.dll".len()
                })
                .collect()
        })
        .unwrap_or_default();
    let suggestion = match versioned.as_slice() {
        [] => "set library to the versioned python3X.dll, or home to its folder".to_string(),
        found => format!(
            "use {} from the same folder (or set home to the folder)",
            found.join(" or ")
        ),
    };
    Err(format!(
        "[python] library {} is the stable-ABI forwarder, which is not loaded directly: {suggestion}",
        library.display()
    ))
}

#[cfg(not(windows))]
fn default_library() -> Result<PathBuf, String> {
    Ok(PathBuf::from(env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY")))
}

/// Windows: a CPython 3.8+ registered per PEP 514, of this process's bitness, whose
/// python3X.dll exists: the machine's newest, else this user's newest (see
/// `sys::registered_pythons` for why the machine's come first).
#[cfg(windows)]
fn default_library() -> Result<PathBuf, String> {
    crate::sys::registered_pythons()
        .into_iter()
        .filter(|python| python.version >= (3, 8))
        .map(|python| python.library())
        .find(|library| library.is_file())
        .ok_or_else(|| {
            "no Python configured and none registered (PEP 514): set [python] home to a CPython 3.8+ \
             installation (the directory holding python3X.dll)"
                .to_string()
        })
}

/// The home to give Python: derived from the library's place when a library is configured
/// (it wins over `home`, which may belong to another Python), else the configured home.
fn home_for(location: &PythonLocation) -> Result<PathBuf, String> {
    match (&location.library, &location.home) {
        // Linux: <prefix>/lib/libpython3.X.so; Windows: <home>/python3X.dll.
        (Some(library), _) if cfg!(windows) => {
            Ok(library.parent().unwrap_or(Path::new(".")).to_path_buf())
        }
        (Some(library), _) => Ok(library
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_path_buf()),
        (None, Some(home)) => Ok(home.clone()),
        (None, None) if cfg!(windows) => Ok(default_library()?
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf()),
        (None, None) => Ok(PathBuf::from(env!("ISAPI_WSGI_BUILD_PYTHON_HOME"))),
    }
}

/// The versioned CPython library inside `home`, newest first.
fn find_library(home: &Path) -> Result<PathBuf, String> {
    let (directory, what) = if cfg!(windows) {
        (home.to_path_buf(), "python3X.dll")
    } else {
        (home.join("lib"), "lib/libpython3.X.so")
    };
    let entries = std::fs::read_dir(&directory).map_err(|e| {
        format!(
            "[python] home {}: cannot read {}: {e}",
            home.display(),
            directory.display()
        )
    })?;
    let mut found: Vec<(bool, u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            library_name(&name).map(|(minor, flags)| (!flags.is_empty(), minor, entry.path()))
        })
        .collect();
    // Regular builds before free-threaded or debug ones (which are only found to be refused
    // by name), then the newest minor version; for one version prefer the shortest name
    // (the .so itself).
    found.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.as_os_str().len().cmp(&b.2.as_os_str().len()))
    });
    found
        .into_iter()
        .next()
        .map(|(_, _, path)| path)
        .ok_or_else(|| {
            format!(
                "[python] home {} has no {what} (CPython 3.8 or newer)",
                home.display()
            )
        })
}

/// The minor version of a regular CPython 3 library file name we can load, e.g. 12 for
/// `libpython3.12.so.1.0` or `python312.dll`.
fn library_minor(name: &str) -> Option<u32> {
    library_name(name).and_then(|(minor, flags)| flags.is_empty().then_some(minor))
}

/// The minor version and ABI flags of a CPython 3.8+ library file name: (12, "") for
/// `libpython3.12.so.1.0` or `python312.dll`, (13, "t") for `libpython3.13t.so` or
/// `python313t.dll` (free-threaded), (11, "d") for `libpython3.11d.so` or `python311_d.dll`
/// (debug). Flagged libraries are found only so that they can be refused by name.
fn library_name(name: &str) -> Option<(u32, String)> {
    let version = if cfg!(windows) {
        let lower = name.to_ascii_lowercase();
        lower
            .strip_prefix("python3")?
            .strip_suffix(".dll")?
            .replace("_d", "d")
    } else {
        let rest = name.strip_prefix("libpython3.")?;
        let (version, suffix) = rest.split_once(".so")?;
        if !(suffix.is_empty() || suffix.starts_with('.')) {
            return None;
        }
        version.to_string()
    };
    let split = version
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version.len());
    let (digits, flags) = version.split_at(split);
    if !flags.chars().all(|c| matches!(c, 't' | 'd')) || flags.len() > 2 {
        return None;
    }
    let minor: u32 = digits.parse().ok()?;
    (minor >= 8).then(|| (minor, flags.to_string()))
}

/// Refuses a home without a standard library: Py_InitializeEx would abort the process.
fn check_home(home: &Path, library: &Path) -> Result<(), String> {
    let name = library
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let landmarks: Vec<PathBuf> = if cfg!(windows) {
        let stem = name
            .to_ascii_lowercase()
            .trim_end_matches(".dll")
            .to_string();
        vec![
            home.join("Lib").join("os.py"),
            home.join(format!("{stem}.zip")),
        ]
    } else {
        let minor = library_minor(&name)
            .map(|m| format!("python3.{m}"))
            .unwrap_or_else(|| "python3".into());
        vec![home.join("lib").join(&minor).join("os.py")]
    };
    if landmarks.iter().any(|landmark| landmark.exists()) {
        Ok(())
    } else {
        Err(format!(
            "[python] home {} has no standard library for {} (looked for {})",
            home.display(),
            library.display(),
            landmarks
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Py_SetPythonHome with a string that lives for ever, as Python requires (Unix only).
#[cfg(not(windows))]
fn set_home(api: &'static Api, home: &Path) -> Result<(), String> {
    let wide = {
        use std::os::unix::ffi::OsStrExt;
        let bytes = CString::new(home.as_os_str().as_bytes())
            .map_err(|_| "NUL in [python] home".to_string())?;
        // SAFETY: a NUL-terminated string; Py_DecodeLocale may be called before
        // Py_Initialize and returns a PyMem_RawMalloc'ed wide string, which we never free.
        let wide = unsafe { (api.Py_DecodeLocale)(bytes.as_ptr(), std::ptr::null_mut()) };
        if wide.is_null() {
            return Err(format!("cannot decode [python] home {}", home.display()));
        }
        wide
    };
    // SAFETY: `wide` is a NUL-terminated wide string that is never freed.
    unsafe { (api.Py_SetPythonHome)(wide.cast()) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{
        BuildMarkers, describe_unsupported, library_minor, library_name, refuse_forwarder,
        version_minor,
    };
    use std::path::Path;

    fn markers(free_threaded: bool, debug: bool, trace_refs: bool) -> BuildMarkers {
        BuildMarkers {
            free_threaded,
            debug,
            trace_refs,
        }
    }

    #[test]
    fn unsupported_builds_are_named() {
        assert_eq!(
            describe_unsupported("/p/lib.so", Some(12), &markers(false, false, false)),
            None
        );
        let text = describe_unsupported(
            "/p/libpython3.14t.so",
            Some(14),
            &markers(true, false, false),
        )
        .unwrap();
        assert!(
            text.starts_with(
                "/p/libpython3.14t.so is a free-threaded build of CPython (3.14t); \
                 isapi-wsgi needs a regular (GIL) build"
            ),
            "{text}"
        );
        let text = describe_unsupported("/d.so", Some(11), &markers(false, true, false)).unwrap();
        assert!(
            text.starts_with("/d.so is a debug build of CPython (3.11d); "),
            "{text}"
        );
        let text = describe_unsupported("/d.so", Some(12), &markers(false, true, true)).unwrap();
        assert!(
            text.starts_with("/d.so is a debug (Py_TRACE_REFS) build of CPython (3.12d); "),
            "{text}"
        );
        let text = describe_unsupported("/r.so", None, &markers(false, false, true)).unwrap();
        assert!(
            text.starts_with("/r.so is a Py_TRACE_REFS build of CPython (3.x); "),
            "{text}"
        );
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn version_text() {
        assert_eq!(
            version_minor("3.14.0 free-threading build (main)"),
            Some(14)
        );
        assert_eq!(version_minor("3.8.18 (default, ...)"), Some(8));
        assert_eq!(version_minor("2.7.18"), None);
    }

    #[test]
    fn python3_dll_is_refused_with_the_versioned_dll_named() {
        let dir = std::env::temp_dir().join(format!("isapi-wsgi-forwarder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["python3.dll", "python312.dll", "python312_d.dll"] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let error = refuse_forwarder(&dir.join("Python3.DLL")).unwrap_err();
        assert!(error.contains("stable-ABI forwarder"), "{error}");
        assert!(
            error.contains("use python312.dll from the same folder"),
            "{error}"
        );
        let error = refuse_forwarder(Path::new("/nowhere/python3.dll")).unwrap_err();
        assert!(
            error.contains("set library to the versioned python3X.dll"),
            "{error}"
        );
        assert!(refuse_forwarder(&dir.join("python312.dll")).is_ok());
        assert!(refuse_forwarder(Path::new("/usr/lib/libpython3.12.so.1.0")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    #[cfg(windows)]
    fn library_names() {
        assert_eq!(library_name("python313t.dll"), Some((13, "t".into())));
        assert_eq!(library_name("python311_d.dll"), Some((11, "d".into())));
        assert_eq!(library_name("python313t_d.dll"), Some((13, "td".into())));
        assert_eq!(library_minor("python313t.dll"), None);
        assert_eq!(library_minor("python312.dll"), Some(12));
        assert_eq!(library_minor("Python38.DLL"), Some(8));
        assert_eq!(library_minor("python3.dll"), None);
        assert_eq!(library_minor("python27.dll"), None);
    }

    #[test]
    #[cfg(not(windows))]
    fn library_names() {
        assert_eq!(library_name("libpython3.14t.so"), Some((14, "t".into())));
        assert_eq!(
            library_name("libpython3.11d.so.1.0"),
            Some((11, "d".into()))
        );
        assert_eq!(library_name("libpython3.13td.so"), Some((13, "td".into())));
        assert_eq!(library_name("libpython3.13x.so"), None);
        assert_eq!(library_minor("libpython3.14t.so"), None);
        assert_eq!(library_minor("libpython3.12.so.1.0"), Some(12));
        assert_eq!(library_minor("libpython3.8.so"), Some(8));
        assert_eq!(library_minor("libpython3.so"), None);
        assert_eq!(library_minor("libpython3.7m.so"), None);
        assert_eq!(library_minor("libpython3.11.a"), None);
    }
}
