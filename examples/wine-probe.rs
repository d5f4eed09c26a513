//! wine-probe: starts an embedded CPython the way the extension will, and prints what it
//! sees. It is how we learned what the official Windows embeddable distribution needs
//! (findings in docs/windows.md), and how you check a Python home on a real server:
//!
//! ```text
//! cargo build --example wine-probe --target x86_64-pc-windows-gnu
//! wine target/x86_64-pc-windows-gnu/debug/examples/wine-probe.exe C:\Python312\python312.dll
//! wine-probe.exe DLL [--home DIR] [--python3-first] [--code PYTHON]
//! wine-probe.exe --registry          # the PEP 514 registrations, newest first
//! wine-probe.exe --report MESSAGE     # sys::report_to_admin(MESSAGE)
//! wine-probe.exe --impersonate        # sys::impersonate: applied, seen, reverted
//! ```
//!
//! Works on Linux too, with a `libpython3.X.so` in place of the DLL.
use isapi_wsgi::sys::{self, Library, Visibility};
use std::ffi::{CString, c_char, c_int, c_void};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DEFAULT_CODE: &str = "\
import sys, os
print('probe: version', sys.version.split()[0], sys.platform)
print('probe: prefix', sys.prefix)
print('probe: executable', repr(sys.executable))
print('probe: no_site', sys.flags.no_site, 'isolated', sys.flags.isolated, 'site imported', 'site' in sys.modules)
print('probe: path', sys.path)
import site
print('probe: import site ok; user site', site.ENABLE_USER_SITE)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--registry") {
        let found = sys::registered_pythons();
        println!("probe: {} registered", found.len());
        for python in found {
            println!(
                "probe: registered {} {}.{} {} {} (library exists: {})",
                python.hive,
                python.version.0,
                python.version.1,
                python.tag,
                python.home.display(),
                python.library().is_file()
            );
        }
        return ExitCode::SUCCESS;
    }
    if args.first().map(String::as_str) == Some("--report") {
        let message = args
            .get(1)
            .map(String::as_str)
            .unwrap_or("wine-probe: a test message");
        sys::report_to_admin(message);
        println!("probe: reported");
        return ExitCode::SUCCESS;
    }
    #[cfg(windows)]
    if args.first().map(String::as_str) == Some("--impersonate") {
        return match token::check_impersonation() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                println!("probe: impersonation: {error}");
                ExitCode::from(1)
            }
        };
    }
    let Some(dll) = args.first().map(PathBuf::from) else {
        eprintln!(
            "usage: wine-probe DLL [--home DIR] [--python3-first] [--code PYTHON] | --registry"
        );
        return ExitCode::from(2);
    };
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let python3_first = args.iter().any(|a| a == "--python3-first");

    if python3_first {
        probe_python3_dll(&dll);
    }
    let library = match Library::open(&dll, Visibility::Global) {
        Ok(library) => library,
        Err(error) => {
            println!("probe: load failed: {error}");
            return ExitCode::from(1);
        }
    };
    println!("probe: loaded {}", library.path().display());
    match run(&library, option("--home"), option("--code")) {
        Ok(status) => {
            println!("probe: code returned {status}");
            if status == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(error) => {
            println!("probe: {error}");
            ExitCode::from(1)
        }
    }
}

/// Loads python3.dll (the stable-ABI forwarder) from the same directory and tries to
/// resolve a function through it, before python3X.dll itself is loaded.
fn probe_python3_dll(dll: &Path) {
    let forwarder = dll.with_file_name(if cfg!(windows) {
        "python3.dll"
    } else {
        "libpython3.so"
    });
    match Library::open(&forwarder, Visibility::Global) {
        Ok(library) => println!(
            "probe: {} loaded; Py_InitializeEx through it: {}",
            forwarder.display(),
            if library.symbol("Py_InitializeEx").is_some() {
                "resolved"
            } else {
                "NOT resolved"
            }
        ),
        Err(error) => println!("probe: {error}"),
    }
}

type InitializeEx = unsafe extern "C" fn(c_int);
type SetPythonHome = unsafe extern "C" fn(*const WideChar);
type RunSimpleString = unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int;
type GilEnsure = unsafe extern "C" fn() -> c_int;
#[cfg(windows)]
type WideChar = u16;
#[cfg(not(windows))]
type WideChar = u32;

fn run(library: &Library, home: Option<String>, code: Option<String>) -> Result<c_int, String> {
    let find = |name: &str| {
        library
            .symbol(name)
            .ok_or_else(|| format!("symbol {name} not found"))
    };
    let initialize = find("Py_InitializeEx")?;
    let set_home = find("Py_SetPythonHome")?;
    let run_string = find("PyRun_SimpleStringFlags")?;
    let ensure = find("PyGILState_Ensure")?;
    if let Some(home) = home {
        #[cfg(windows)]
        let wide: Vec<WideChar> = home.encode_utf16().chain(Some(0)).collect();
        #[cfg(not(windows))]
        let wide: Vec<WideChar> = home.chars().map(|c| c as u32).chain(Some(0)).collect();
        // Python keeps the pointer: the string must live as long as the process.
        let wide: &'static [WideChar] = Vec::leak(wide);
        // SAFETY: the symbol is Py_SetPythonHome(const wchar_t *), called before start-up
        // with a NUL-terminated wide string that is never freed.
        unsafe { std::mem::transmute::<*mut c_void, SetPythonHome>(set_home)(wide.as_ptr()) };
        println!("probe: Py_SetPythonHome({home})");
    }
    // SAFETY: Py_InitializeEx(int) with 0: do not install signal handlers.
    unsafe { std::mem::transmute::<*mut c_void, InitializeEx>(initialize)(0) };
    // SAFETY: Python is initialized and this thread holds the GIL after start-up.
    unsafe { std::mem::transmute::<*mut c_void, GilEnsure>(ensure)() };
    let source = CString::new(code.unwrap_or_else(|| DEFAULT_CODE.to_string()))
        .map_err(|_| "NUL in code")?;
    // SAFETY: PyRun_SimpleStringFlags(const char *, PyCompilerFlags *) with a valid C string
    // and no flags, called with the GIL held.
    let status = unsafe {
        std::mem::transmute::<*mut c_void, RunSimpleString>(run_string)(
            source.as_ptr(),
            std::ptr::null_mut(),
        )
    };
    Ok(status)
}

/// `--impersonate`: a thread token set by `sys::impersonate` is visible to the thread while
/// the guard lives and gone after it is dropped; a bad token is reported, not applied.
#[cfg(windows)]
mod token {
    use isapi_wsgi::sys;
    use std::ffi::c_void;

    type Handle = *mut c_void;
    const TOKEN_QUERY: u32 = 0x0008;
    const ERROR_NO_TOKEN: u32 = 1008;

    #[link(name = "advapi32")]
    unsafe extern "system" {
        fn OpenThreadToken(
            thread: Handle,
            access: u32,
            open_as_self: i32,
            token: *mut Handle,
        ) -> i32;
    }
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn GetCurrentThread() -> Handle;
        fn GetLastError() -> u32;
        fn CloseHandle(handle: Handle) -> i32;
    }

    /// Ok(()) if this thread has an impersonation token, else the Windows error.
    fn thread_token() -> Result<(), u32> {
        let mut token: Handle = std::ptr::null_mut();
        // SAFETY: pseudo-handle of this thread; token is a valid out-pointer.
        if unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) } != 0 {
            // SAFETY: token was just opened and is closed once.
            unsafe { CloseHandle(token) };
            Ok(())
        } else {
            // SAFETY: no preconditions.
            Err(unsafe { GetLastError() })
        }
    }

    pub fn check_impersonation() -> Result<(), String> {
        if thread_token() != Err(ERROR_NO_TOKEN) {
            return Err(format!(
                "the thread impersonates before we start: {:?}",
                thread_token()
            ));
        }
        let duplicate = sys::duplicate_own_token()
            .map_err(|e| format!("cannot make an impersonation token: error {e}"))?;
        {
            let guard = sys::impersonate(duplicate);
            guard
                .applied()
                .map_err(|e| format!("SetThreadToken failed: error {e}"))?;
            thread_token()
                .map_err(|e| format!("no thread token while impersonating: error {e}"))?;
            println!("probe: impersonating: thread token present");
        }
        match thread_token() {
            Err(ERROR_NO_TOKEN) => println!("probe: reverted: no thread token"),
            other => return Err(format!("not reverted after drop: {other:?}")),
        }
        let null = sys::impersonate(std::ptr::null_mut());
        if null.applied().is_err() || thread_token() != Err(ERROR_NO_TOKEN) {
            return Err("a null token changed the thread".into());
        }
        drop(null);
        let bogus = sys::impersonate(0x1234 as Handle);
        match bogus.applied() {
            Err(code) => println!("probe: bogus token refused with error {code}"),
            Ok(()) => return Err("a bogus token was accepted".into()),
        }
        drop(bogus);
        // SAFETY: the duplicate is ours and closed once.
        unsafe { CloseHandle(duplicate) };
        println!("probe: impersonation ok");
        Ok(())
    }
}
