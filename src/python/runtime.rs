//! Finding, loading and starting CPython.
//!
//! [`start`] is called once, from `GetExtensionVersion`:
//!
//! 1. find the library: `[python] library`, else the versioned library in `[python] home`
//!    (Linux: `lib/libpython3.X.so*`; Windows: `python3X.dll`, never the `python3.dll`
//!    forwarder), else the interpreter the extension was built with (Linux) or the newest
//!    CPython registered per PEP 514 (Windows);
//! 2. load it (Linux: RTLD_GLOBAL, so C extension modules resolve against it) and resolve
//!    the [`Api`] table;
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
    let api = Api::load(&library)?;
    // The library is never unloaded: keep it alive for ever along with the table.
    std::mem::forget(library);
    Ok(API.get_or_init(|| api))
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

/// Windows: the newest CPython 3.8+ registered per PEP 514 (this user's, then the machine's,
/// of this process's bitness) whose python3X.dll exists.
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
    let mut found: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            library_minor(&name).map(|minor| (minor, entry.path()))
        })
        .collect();
    // Newest minor version first; for one version prefer the shortest name (the .so itself).
    found.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(a.1.as_os_str().len().cmp(&b.1.as_os_str().len()))
    });
    found
        .into_iter()
        .next()
        .map(|(_, path)| path)
        .ok_or_else(|| {
            format!(
                "[python] home {} has no {what} (CPython 3.8 or newer)",
                home.display()
            )
        })
}

/// The minor version of a CPython 3 library file name we can load, e.g. 12 for
/// `libpython3.12.so.1.0` or `python312.dll`.
fn library_minor(name: &str) -> Option<u32> {
    let digits = if cfg!(windows) {
        let lower = name.to_ascii_lowercase();
        lower
            .strip_prefix("python3")?
            .strip_suffix(".dll")?
            .to_string()
    } else {
        let rest = name.strip_prefix("libpython3.")?;
        let (minor, suffix) = rest.split_once(".so")?;
        if !(suffix.is_empty() || suffix.starts_with('.')) {
            return None;
        }
        minor.to_string()
    };
    let minor: u32 = digits.parse().ok()?;
    (minor >= 8).then_some(minor)
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
    use super::{library_minor, refuse_forwarder};
    use std::path::Path;

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
        assert_eq!(library_minor("python312.dll"), Some(12));
        assert_eq!(library_minor("Python38.DLL"), Some(8));
        assert_eq!(library_minor("python3.dll"), None);
        assert_eq!(library_minor("python27.dll"), None);
    }

    #[test]
    #[cfg(not(windows))]
    fn library_names() {
        assert_eq!(library_minor("libpython3.12.so.1.0"), Some(12));
        assert_eq!(library_minor("libpython3.8.so"), Some(8));
        assert_eq!(library_minor("libpython3.so"), None);
        assert_eq!(library_minor("libpython3.7m.so"), None);
        assert_eq!(library_minor("libpython3.11.a"), None);
    }
}
