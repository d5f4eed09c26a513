//! Build script: turns our two C headers into Rust with bindgen.
//!
//! * `headers/httpext.h` -> `$OUT_DIR/httpext.rs`: the ISAPI contract (structs, callbacks,
//!   constants). Fixed-width types, so the result describes the Windows x64 ABI everywhere.
//! * `headers/python.h`  -> `$OUT_DIR/python.rs`: CPython's stable ABI (Py_LIMITED_API 3.8)
//!   as function-pointer types, plus `$OUT_DIR/python_names.rs`, the list of names the
//!   run-time loader resolves (read from the `PY_FUNCTIONS`/`PY_DATA` lists in the header).
//!
//! Python.h comes from the interpreter found at build time: `$ISAPI_WSGI_PYTHON` if set,
//! else `python3` on PATH. For a Windows target its Linux `pyconfig.h` is replaced by
//! `headers/windows/pyconfig.h` (see that file). The interpreter's prefix and library are
//! recorded as the default Python for Linux builds (`ISAPI_WSGI_BUILD_PYTHON_*`).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target = env::var("TARGET").expect("TARGET");
    let windows = target.contains("windows");
    for f in [
        "headers/httpext.h",
        "headers/python.h",
        "headers/windows/pyconfig.h",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-env-changed=ISAPI_WSGI_PYTHON");

    let system_headers = foreign_msvc_headers(&target);
    isapi_bindings(&out, &system_headers);
    let python = BuildPython::find();
    python_bindings(&out, &python, windows, &system_headers);
    python_names(&out);
    println!(
        "cargo:rustc-env=ISAPI_WSGI_BUILD_PYTHON_HOME={}",
        python.prefix
    );
    println!(
        "cargo:rustc-env=ISAPI_WSGI_BUILD_PYTHON_LIBRARY={}",
        python.library
    );
}

/// The ISAPI header: everything in it is ours, so allow all of it.
fn isapi_bindings(out: &Path, system_headers: &[String]) {
    bindgen::Builder::default()
        .clang_args(system_headers)
        .header("headers/httpext.h")
        .allowlist_file(".*httpext\\.h")
        .derive_default(true)
        .layout_tests(false) // tests/layout.rs pins the Windows x64 layout explicitly
        .generate()
        .expect("bindgen failed on headers/httpext.h")
        .write_to_file(out.join("httpext.rs"))
        .expect("writing httpext.rs");
}

/// What we learn from the build machine's Python.
struct BuildPython {
    include: String,
    prefix: String,
    library: String,
}

impl BuildPython {
    fn find() -> BuildPython {
        let exe = env::var("ISAPI_WSGI_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let script = "import sysconfig, sys, os\n\
            v = sysconfig.get_config_var\n\
            print(sysconfig.get_paths()['include'])\n\
            print(sys.base_prefix)\n\
            print(os.path.join(v('LIBDIR') or '', v('LDLIBRARY') or ''))";
        let output = Command::new(&exe)
            .args(["-c", script])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {exe} to find Python.h ({e}); set ISAPI_WSGI_PYTHON")
            });
        assert!(
            output.status.success(),
            "{exe} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("utf-8 from python");
        let mut lines = text.lines().map(str::to_string);
        let (include, prefix, library) = (lines.next(), lines.next(), lines.next());
        BuildPython {
            include: include.expect("include dir"),
            prefix: prefix.expect("prefix"),
            library: library.expect("library"),
        }
    }
}

/// Python.h under the limited API. For Windows, a copy of the include directory with our
/// Windows pyconfig.h in place of the build machine's.
fn python_bindings(out: &Path, python: &BuildPython, windows: bool, system_headers: &[String]) {
    let include = if windows {
        let copy = out.join("python-include-windows");
        copy_dir(Path::new(&python.include), &copy);
        fs::copy("headers/windows/pyconfig.h", copy.join("pyconfig.h")).expect("copy pyconfig.h");
        copy
    } else {
        PathBuf::from(&python.include)
    };
    let mut builder = bindgen::Builder::default();
    if !system_headers.is_empty() {
        builder = builder.clang_args(system_headers);
    } else if windows {
        // mingw-w64's C headers include compiler headers (mm_malloc.h, ...) that libclang
        // does not always find for a foreign target: borrow the cross compiler's.
        if let Some(dir) = cross_compiler_include() {
            builder = builder.clang_arg(format!("-idirafter{dir}"));
        }
    }
    builder
        .header("headers/python.h")
        .clang_arg(format!("-I{}", include.display()))
        .clang_arg("-Wno-deprecated-declarations")
        .allowlist_type("pfn_.*")
        .allowlist_type("PyObject|PyType_Spec|PyType_Slot|PyMethodDef|PyGILState_STATE|Py_ssize_t|PyCFunction")
        .allowlist_var("Py_tp_.*|Py_nb_.*|Py_sq_.*|METH_.*|Py_TPFLAGS_DEFAULT|Py_TPFLAGS_BASETYPE|Py_file_input|Py_eval_input|Py_single_input|PY_VECTORCALL.*")
        .opaque_type("PyObject|PyTypeObject|_object|_typeobject|PyThreadState|_ts")
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on headers/python.h")
        .write_to_file(out.join("python.rs"))
        .expect("writing python.rs");
}

/// Writes `python_table! { functions: [Name: pfn_Name, ..], data: [..] }` from the header's two
/// lists (each function with its bindgen type, as macro_rules cannot paste `pfn_` on), so
/// src/python/api.rs resolves exactly the names the header declares types for.
fn python_names(out: &Path) {
    let header = fs::read_to_string("headers/python.h").expect("read python.h");
    let list = |marker: &str| -> Vec<String> {
        let start = header
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} not in python.h"));
        let body: String = header[start + marker.len()..]
            .lines()
            .take_while(|l| l.trim_end().ends_with('\\') || !l.trim().is_empty())
            .take_while(|l| !l.starts_with("#define PY_DECLARE"))
            .collect::<Vec<_>>()
            .join("\n");
        body.split("X(")
            .skip(1)
            .filter_map(|s| s.split(')').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let functions = list("#define PY_FUNCTIONS(X)");
    let data = list("#define PY_DATA(X)");
    let text = format!(
        "python_table! {{\n    functions: [{}],\n    data: [{}],\n}}\n",
        functions
            .iter()
            .map(|f| format!("{f}: pfn_{f}"))
            .collect::<Vec<_>>()
            .join(", "),
        data.join(", ")
    );
    fs::write(out.join("python_names.rs"), text).expect("write python_names.rs");
}

/// Checking for `*-windows-msvc` on a non-Windows machine (`cargo check --target
/// x86_64-pc-windows-msvc` on Linux): libclang would look for the MSVC / Windows SDK C
/// headers (`stdint.h`, `stdlib.h`, ...), which only exist on Windows, and mingw-w64's
/// headers do not parse in clang's MSVC mode (their attribute macros expand to
/// `__declspec(...)` after declarators: "expected ';' after top level declarator" in
/// stdlib.h). So the headers are parsed as for `x86_64-pc-windows-gnu` instead (the last
/// `--target` wins over bindgen's own): the same x64 Windows ABI (LLP64, 16-bit wchar_t,
/// same struct layout rules, one calling convention) for everything our two headers
/// declare. On Windows, clang finds MSVC's own headers and nothing is changed.
fn foreign_msvc_headers(target: &str) -> Vec<String> {
    let host = env::var("HOST").unwrap_or_default();
    if !target.ends_with("-windows-msvc") || host.contains("windows") {
        return Vec::new();
    }
    let arch = target.split('-').next().unwrap_or("x86_64");
    let mut args = vec![format!("--target={arch}-pc-windows-gnu")];
    if let Some(dir) = cross_compiler_include() {
        args.push(format!("-idirafter{dir}"));
    }
    args
}

/// The include directory of mingw-w64's gcc, if it is installed.
fn cross_compiler_include() -> Option<String> {
    let out = Command::new("x86_64-w64-mingw32-gcc")
        .arg("-print-file-name=include")
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    Path::new(&dir).is_dir().then_some(dir)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for entry in fs::read_dir(from).expect("read include dir") {
        let entry = entry.expect("dir entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).expect("copy header");
        }
    }
}
