//! Finding, loading and starting CPython.
//!
//! [`start`] is called once, from `GetExtensionVersion`:
//!
//! 1. find the library ([`locate`]): `[python] library`, else the versioned library in
//!    `[python] home`, else the default (below). A home is looked through the way CPython
//!    lays itself out (its sysconfig `LIBDIR`): on Linux `lib/<multiarch>/` (Debian, Ubuntu:
//!    `/usr/lib/x86_64-linux-gnu/libpython3.X.so.1.0`), `lib64/` (Fedora, openSUSE) and
//!    `lib/` (a source build, pyenv); on Windows the home itself (`python3X.dll`, never the
//!    `python3.dll` forwarder). A home holding `pyvenv.cfg` is a virtual environment: its
//!    base installation (the file's `home =`) is the one looked through. `[python] version`
//!    picks one when a home holds several (Debian's `/usr` can hold 3.13 and 3.14), else
//!    the newest wins. The default is the interpreter the extension was built with, else
//!    `python3` on PATH as its sysconfig describes it (Linux), or the newest CPython
//!    registered per PEP 514 (Windows); the log says which one was chosen;
//! 2. load it (Linux: RTLD_GLOBAL, so C extension modules resolve against it), refuse a
//!    build whose objects or ABI differ from the regular one ([`unsupported_build`]:
//!    free-threaded, debug, `Py_TRACE_REFS` before 3.13), and resolve the [`Api`] table;
//! 3. if Python already runs in this process, attach to it; otherwise check that the home
//!    (derived from `[python] library` when that is set: the library wins, see
//!    [`library_home`]) holds a standard library (`lib/python3.X/os.py` or
//!    `lib64/python3.X/os.py`; Windows: `Lib\os.py` or `python3X.zip`): a wrong home makes
//!    `Py_InitializeEx` abort the process, so we refuse it first; set it, and start Python
//!    with `Py_InitializeEx(0)` (the host owns signals);
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
/// The file the API table was loaded from.
static LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// Where Python lives: what the configuration says, with defaults filled in.
#[derive(Clone, Debug, Default)]
pub struct PythonLocation {
    pub home: Option<PathBuf>,
    pub library: Option<PathBuf>,
    /// `[python] version`: the minor version X of 3.X to look for in a home or on PATH.
    pub version: Option<u32>,
}

/// What [`locate`] found: the library to load and the home that goes with it.
#[derive(Clone, Debug, PartialEq)]
struct Located {
    library: PathBuf,
    home: PathBuf,
    /// How it was chosen, for the log, when the configuration did not name it.
    chosen: Option<String>,
}

/// Starts (or attaches to) Python and runs `setup` with the GIL held; the GIL is released
/// when this returns. Errors are complete sentences for the log.
pub fn start<R>(
    location: &PythonLocation,
    setup: impl for<'py> FnOnce(Gil<'py>) -> R,
) -> Result<R, String> {
    let located = locate(location)?;
    if let Some(chosen) = &located.chosen {
        crate::log::line(chosen);
    }
    let api = load(&located.library)?;
    // SAFETY: no preconditions.
    if unsafe { (api.Py_IsInitialized)() } != 0 {
        // Someone (another extension, or an earlier start) already runs Python here.
        let _ = RUNNING.set(api);
        return Ok(Gil::acquire(api, setup));
    }
    let home = located.home;
    check_home(&home, &located.library)?;
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

/// The libpython / python3X.dll that was loaded (None before [`start`] found one).
pub fn library_path() -> Option<&'static Path> {
    LIBRARY.get().map(PathBuf::as_path)
}

fn load(path: &Path) -> Result<&'static Api, String> {
    if let Some(api) = API.get() {
        return Ok(api);
    }
    let library =
        Library::open(path, Visibility::Global).map_err(|e| format!("cannot load Python: {e}"))?;
    // Before anything else touches it: no object may be made by an interpreter whose
    // object header is not the one our types are laid out for.
    if let Some(refusal) = unsupported_build(&library) {
        return Err(refusal);
    }
    let api = Api::load(&library)?;
    let _ = LIBRARY.set(path.to_path_buf());
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

/// The library to load and its home, as the configuration says (see the module docs).
fn locate(location: &PythonLocation) -> Result<Located, String> {
    if let Some(library) = &location.library {
        refuse_forwarder(library)?;
        if !library.is_file() {
            return Err(format!(
                "[python] library {} does not exist",
                library.display()
            ));
        }
        return Ok(Located {
            library: library.clone(),
            home: library_home(library),
            chosen: None,
        });
    }
    match &location.home {
        Some(home) => {
            let Some((base, library)) = venv_base(home)? else {
                return Ok(Located {
                    library: find_library(home, location.version)?,
                    home: home.clone(),
                    chosen: None,
                });
            };
            Ok(Located {
                chosen: Some(format!(
                    "[python] home {} is a virtual environment: using its base CPython {} ({})",
                    home.display(),
                    base.display(),
                    library.display()
                )),
                library,
                home: base,
            })
        }
        None => default_location(location.version),
    }
}

/// The base installation of a virtual environment `home` and the library in it of the
/// venv's version (its `pyvenv.cfg` names the directory of the base interpreter: `bin/` on
/// Linux, the installation itself on Windows); None if `home` is no virtual environment.
fn venv_base(home: &Path) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let cfg = home.join("pyvenv.cfg");
    let Ok(text) = std::fs::read_to_string(&cfg) else {
        return Ok(None);
    };
    let value = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let Some(bin) = value("home") else {
        return Err(format!("{} has no `home =` line", cfg.display()));
    };
    let minor = value("version")
        .or_else(|| value("version_info"))
        .as_deref()
        .and_then(version_minor);
    // CPython finds the base prefix from the interpreter's directory: the directory itself
    // (Windows) or its parent (`<prefix>/bin`), whichever holds the library. No further up:
    // `/` of a `/nowhere/bin` would find the system's Python.
    let bin = PathBuf::from(bin);
    let mut errors = Vec::new();
    for candidate in bin.ancestors().take(2) {
        match find_library(candidate, minor) {
            Ok(library) => return Ok(Some((candidate.to_path_buf(), library))),
            Err(error) => errors.push(error),
        }
    }
    Err(format!(
        "[python] home {} is a virtual environment whose base CPython ({} in {}) was not found: {}",
        home.display(),
        bin.display(),
        cfg.display(),
        errors.join("; ")
    ))
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

/// Linux, no `[python] home` or `library`: the CPython the extension was built with if it
/// is still there (and of `version`, if that is set), else `python3` (`python3.X`) on PATH,
/// whose sysconfig names its library (`LIBDIR`/`INSTSONAME`) and prefix (`base_prefix`).
#[cfg(not(windows))]
fn default_location(version: Option<u32>) -> Result<Located, String> {
    let built = PathBuf::from(env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY"));
    let built_minor = built
        .file_name()
        .and_then(|n| library_minor(&n.to_string_lossy()));
    if built.is_file() && (version.is_none() || version == built_minor) {
        return Ok(Located {
            chosen: Some(format!(
                "no [python] home or library: using the CPython isapi-wsgi was built with, {}",
                built.display()
            )),
            library: built,
            home: PathBuf::from(env!("ISAPI_WSGI_BUILD_PYTHON_HOME")),
        });
    }
    let program = version.map_or_else(|| "python3".to_string(), |m| format!("python3.{m}"));
    let not_built = if built.is_file() {
        format!(
            "the one isapi-wsgi was built with, {}, is not 3.{}",
            built.display(),
            version.unwrap_or(0)
        )
    } else {
        format!(
            "the one isapi-wsgi was built with, {}, is gone",
            built.display()
        )
    };
    let (library, home) = sysconfig_library(&program).map_err(|why| {
        format!(
            "no [python] home or library, and no default CPython: {not_built}, and {program} on PATH {why}; \
             set [python] home (the prefix holding lib/libpython3.X.so) or library"
        )
    })?;
    Ok(Located {
        chosen: Some(format!(
            "no [python] home or library: using {program} on PATH, {} (home {}); {not_built}",
            library.display(),
            home.display()
        )),
        library,
        home,
    })
}

/// The shared library and prefix of the interpreter `program` (on PATH), from its sysconfig.
#[cfg(not(windows))]
fn sysconfig_library(program: &str) -> Result<(PathBuf, PathBuf), String> {
    let script = "import os, sys, sysconfig\n\
        v = sysconfig.get_config_var\n\
        print(sys.base_prefix)\n\
        print(v('Py_ENABLE_SHARED') or 0)\n\
        print(os.path.join(v('LIBDIR') or '', v('INSTSONAME') or ''))\n\
        print(os.path.join(v('LIBDIR') or '', v('LDLIBRARY') or ''))";
    let output = std::process::Command::new(program)
        .args(["-I", "-c", script])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot be run ({e})"))?;
    if !output.status.success() {
        return Err(format!(
            "failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let [prefix, shared, soname, ldlibrary, ..] = lines.as_slice() else {
        return Err(format!("printed no sysconfig: {text:?}"));
    };
    if *shared != "1" {
        return Err(format!(
            "(prefix {prefix}) was built without a shared libpython (Py_ENABLE_SHARED = {shared})"
        ));
    }
    [soname, ldlibrary]
        .into_iter()
        .map(PathBuf::from)
        .find(|library| library.is_file())
        .map(|library| (library, PathBuf::from(prefix)))
        .ok_or_else(|| {
            format!("(prefix {prefix}) names no library that exists ({soname}, {ldlibrary})")
        })
}

/// Windows: a CPython 3.8+ registered per PEP 514, of this process's bitness, whose
/// python3X.dll exists: the machine's newest, else this user's newest (see
/// `sys::registered_pythons` for why the machine's come first).
#[cfg(windows)]
fn default_location(version: Option<u32>) -> Result<Located, String> {
    let library = crate::sys::registered_pythons()
        .into_iter()
        .filter(|python| python.version >= (3, 8))
        .filter(|python| version.is_none_or(|m| python.version == (3, m)))
        .map(|python| python.library())
        .find(|library| library.is_file())
        .ok_or_else(|| {
            "no Python configured and none registered (PEP 514): set [python] home to a CPython 3.8+ \
             installation (the directory holding python3X.dll)"
                .to_string()
        })?;
    Ok(Located {
        chosen: Some(format!(
            "no [python] home or library: using the CPython registered per PEP 514, {}",
            library.display()
        )),
        home: library_home(&library),
        library,
    })
}

/// The Debian multiarch tuple of this build (CPython's `MULTIARCH`, from
/// `$CC --print-multiarch`): Debian and Ubuntu put libpython in `<prefix>/lib/<tuple>/`.
/// Only a library of our own architecture can be loaded, so only our own tuple matters.
const MULTIARCH: Option<&str> = if cfg!(not(all(target_os = "linux", target_env = "gnu"))) {
    None
} else if cfg!(target_arch = "x86_64") {
    Some("x86_64-linux-gnu")
} else if cfg!(target_arch = "aarch64") {
    Some("aarch64-linux-gnu")
} else if cfg!(target_arch = "x86") {
    Some("i386-linux-gnu")
} else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
    Some("powerpc64le-linux-gnu")
} else if cfg!(target_arch = "s390x") {
    Some("s390x-linux-gnu")
} else if cfg!(target_arch = "riscv64") {
    Some("riscv64-linux-gnu")
} else {
    None
};

/// Where CPython installs its shared library under a prefix (its sysconfig `LIBDIR`), in
/// the order they are searched: `lib/<multiarch>` (Debian, Ubuntu), `lib64` (Fedora,
/// openSUSE: `--with-platlibdir=lib64`), `lib` (the default: a source build, pyenv).
/// Windows: the home itself.
fn library_dirs(home: &Path) -> Vec<PathBuf> {
    if cfg!(windows) {
        return vec![home.to_path_buf()];
    }
    let mut dirs = Vec::new();
    if let Some(tuple) = MULTIARCH {
        dirs.push(home.join("lib").join(tuple));
    }
    dirs.push(home.join("lib64"));
    dirs.push(home.join("lib"));
    dirs
}

/// The home (prefix) of a library file: the inverse of [`library_dirs`]. Linux:
/// `<home>/lib/libpython3.X.so`, `<home>/lib64/...`, `<home>/lib/<multiarch>/...`, and
/// `<home>/lib/python3.X/config-3.X-<multiarch>/libpython3.X.so` (where Debian's -dev
/// package links it); any other folder's parent. Windows: the DLL's folder.
fn library_home(library: &Path) -> PathBuf {
    let dir = library.parent().unwrap_or(Path::new("."));
    if cfg!(windows) {
        return dir.to_path_buf();
    }
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let lib = match name(dir) {
        Some(n) if n.starts_with("config-3.") => dir.parent().and_then(Path::parent),
        Some(n)
            if Some(n.as_str()) == MULTIARCH
                && name(dir.parent().unwrap_or(dir)).as_deref() == Some("lib") =>
        {
            dir.parent()
        }
        _ => Some(dir),
    };
    lib.and_then(Path::parent)
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// The versioned CPython library inside `home` (3.`version` if given, else the newest).
fn find_library(home: &Path, version: Option<u32>) -> Result<PathBuf, String> {
    let dirs = library_dirs(home);
    let what = match (cfg!(windows), version) {
        (true, None) => "python3X.dll".to_string(),
        (true, Some(m)) => format!("python3{m}.dll"),
        (false, None) => "libpython3.X.so".to_string(),
        (false, Some(m)) => format!("libpython3.{m}.so"),
    };
    // The home itself must be there: say so rather than list folders under nothing.
    if let Err(e) = std::fs::read_dir(home) {
        return Err(format!(
            "[python] home {}: cannot read {}: {e}",
            home.display(),
            home.display()
        ));
    }
    let mut found: Vec<(bool, u32, usize, PathBuf)> = Vec::new();
    for (index, directory) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(directory) else {
            continue;
        };
        found.extend(entries.filter_map(Result::ok).filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let (minor, flags) = library_name(&name)?;
            (version.is_none_or(|v| v == minor) && entry.path().is_file())
                .then(|| (!flags.is_empty(), minor, index, entry.path()))
        }));
    }
    // Regular builds before free-threaded or debug ones (which are only found to be refused
    // by name), then the newest minor version, then the folder searched first; for one
    // version prefer the shortest name (the .so itself).
    found.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(b.1.cmp(&a.1))
            .then(a.2.cmp(&b.2))
            .then(a.3.as_os_str().len().cmp(&b.3.as_os_str().len()))
    });
    found
        .into_iter()
        .next()
        .map(|(_, _, _, path)| path)
        .ok_or_else(|| {
            let looked = dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if cfg!(windows) {
                format!(
                    "[python] home {} has no {what} (CPython 3.8 or newer)",
                    home.display()
                )
            } else {
                format!(
                    "[python] home {} has no {what} (CPython 3.8 or newer; looked in {looked})",
                    home.display()
                )
            }
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
        // sysconfig's stdlib is <prefix>/<platlibdir>/python3.X: lib, or lib64 (Fedora).
        ["lib", "lib64"]
            .iter()
            .map(|lib| home.join(lib).join(&minor).join("os.py"))
            .collect()
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

    /// A scratch prefix with these (empty) files: the search looks at names and places only.
    #[cfg(not(windows))]
    fn prefix(label: &str, files: &[&str]) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("isapi-wsgi-layout-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for file in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"").unwrap();
        }
        dir
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu", target_arch = "x86_64"))]
    fn every_common_linux_layout_is_found_from_its_home_and_from_its_library() {
        use super::{check_home, find_library, library_home};
        // Debian/Ubuntu: LIBDIR /usr/lib/<multiarch>, stdlib /usr/lib/python3.X; two versions.
        let debian = prefix(
            "debian",
            &[
                "lib/x86_64-linux-gnu/libpython3.14.so.1.0",
                "lib/x86_64-linux-gnu/libpython3.15.so.1.0",
                "lib/python3.14/config-3.14-x86_64-linux-gnu/libpython3.14.so",
                "lib/python3.14/os.py",
                "lib/python3.15/os.py",
            ],
        );
        let newest = find_library(&debian, None).unwrap();
        assert_eq!(
            newest,
            debian.join("lib/x86_64-linux-gnu/libpython3.15.so.1.0")
        );
        let older = find_library(&debian, Some(14)).unwrap();
        assert_eq!(
            older,
            debian.join("lib/x86_64-linux-gnu/libpython3.14.so.1.0")
        );
        assert_eq!(library_home(&older), debian);
        let dev = debian.join("lib/python3.14/config-3.14-x86_64-linux-gnu/libpython3.14.so");
        assert_eq!(library_home(&dev), debian);
        check_home(&debian, &older).unwrap();
        // Fedora/openSUSE: LIBDIR and stdlib in lib64.
        let fedora = prefix(
            "fedora",
            &[
                "lib64/libpython3.13.so.1.0",
                "lib64/python3.13/os.py",
                "lib/python3.13/site-packages/x",
            ],
        );
        let library = find_library(&fedora, None).unwrap();
        assert_eq!(library, fedora.join("lib64/libpython3.13.so.1.0"));
        assert_eq!(library_home(&library), fedora);
        check_home(&fedora, &library).unwrap();
        // A source build or pyenv: lib/.
        let pyenv = prefix(
            "pyenv",
            &[
                "lib/libpython3.12.so.1.0",
                "lib/libpython3.12.so",
                "lib/python3.12/os.py",
            ],
        );
        assert_eq!(
            find_library(&pyenv, None).unwrap(),
            pyenv.join("lib/libpython3.12.so")
        );
        assert_eq!(library_home(&pyenv.join("lib/libpython3.12.so.1.0")), pyenv);
        // What was looked for is named.
        let error = find_library(&pyenv, Some(14)).unwrap_err();
        assert!(
            error.contains("has no libpython3.14.so (CPython 3.8 or newer; looked in ")
                && error.contains(&format!("{}/lib/x86_64-linux-gnu, ", pyenv.display()))
                && error.contains(&format!("{}/lib64, ", pyenv.display())),
            "{error}"
        );
        let error = check_home(&fedora, &older).unwrap_err();
        assert!(
            error.contains(&format!(
                "{}/lib/python3.14/os.py, {}/lib64/python3.14/os.py",
                fedora.display(),
                fedora.display()
            )),
            "{error}"
        );
        for dir in [debian, fedora, pyenv] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    #[cfg(not(windows))]
    fn a_home_that_is_a_venv_means_its_base_installation() {
        use super::venv_base;
        let base = prefix(
            "venv-base",
            &[
                "lib/libpython3.11.so.1.0",
                "lib/libpython3.12.so.1.0",
                "bin/python3.11",
            ],
        );
        let venv = prefix("venv", &["lib/python3.11/site-packages/x"]);
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!(
                "home = {}\ninclude-system-site-packages = false\nversion = 3.11.7\n",
                base.join("bin").display()
            ),
        )
        .unwrap();
        assert_eq!(
            venv_base(&venv).unwrap(),
            Some((base.clone(), base.join("lib/libpython3.11.so.1.0")))
        );
        assert_eq!(venv_base(&base).unwrap(), None);
        std::fs::write(
            venv.join("pyvenv.cfg"),
            "home = /nowhere/bin\nversion = 3.11.7\n",
        )
        .unwrap();
        let error = venv_base(&venv).unwrap_err();
        assert!(
            error.contains("is a virtual environment whose base CPython (/nowhere/bin in "),
            "{error}"
        );
        std::fs::remove_dir_all(base).unwrap();
        std::fs::remove_dir_all(venv).unwrap();
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
