//! The shipped Windows DLL, as IIS will see it: `isapi_wsgi.dll` cross-built in release mode
//! for x86_64-pc-windows-gnu must
//!
//! * export exactly `GetExtensionVersion`, `HttpExtensionProc` and `TerminateExtension`
//!   (nothing of Rust's std or of mingw's runtime leaks out);
//! * import only DLLs that every Windows 10+ / Server 2016+ has in System32: in particular
//!   no `python3X.dll` (Python is loaded at run time from the configured home) and no mingw
//!   runtime DLL (`libgcc_s_seh-1.dll`, `libwinpthread-1.dll`) that a server would lack.
//!
//! The test builds the DLL itself (`cargo build --release --lib --target
//! x86_64-pc-windows-gnu`, a no-op when it is up to date) and reads its tables with
//! mingw-w64's `objdump -p`. It prints the DLL's size.
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-pc-windows-gnu";
const EXPORTS: [&str; 3] = [
    "GetExtensionVersion",
    "HttpExtensionProc",
    "TerminateExtension",
];

/// DLLs of Windows itself. `api-ms-win-*` are API sets, resolved by the loader to System32
/// DLLs; `bcryptprimitives.dll` is where Rust's std gets random numbers (Windows 10+).
fn is_system_dll(name: &str) -> bool {
    const SYSTEM: &[&str] = &[
        "kernel32.dll",
        "advapi32.dll",
        "ntdll.dll",
        "msvcrt.dll",
        "userenv.dll",
        "ws2_32.dll",
        "bcryptprimitives.dll",
        "bcrypt.dll",
        "shell32.dll",
        "ole32.dll",
        "secur32.dll",
        "user32.dll",
    ];
    let name = name.to_ascii_lowercase();
    SYSTEM.contains(&name.as_str()) || (name.starts_with("api-ms-win-") && name.ends_with(".dll"))
}

fn build_release_dll() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--lib", "--target", TARGET])
        .status()
        .expect("running cargo");
    assert!(
        status.success(),
        "cargo build --release --target {TARGET} failed (rustup target add {TARGET}?)"
    );
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    target_dir
        .join(TARGET)
        .join("release")
        .join("isapi_wsgi.dll")
}

fn objdump(dll: &Path) -> String {
    let output = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-p")
        .arg(dll)
        .output()
        .expect("cannot run x86_64-w64-mingw32-objdump: install mingw-w64 (.ci/setup does)");
    assert!(
        output.status.success(),
        "objdump -p {} failed",
        dll.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The names in the export table: the lines `[   0] Name` after `[Ordinal/Name Pointer] Table`.
fn exports(dump: &str) -> Vec<String> {
    dump.lines()
        .skip_while(|l| !l.contains("[Ordinal/Name Pointer] Table"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| {
            l.trim()
                .split_once(']')
                .map(|(_, name)| name.trim().to_string())
        })
        .collect()
}

fn imports(dump: &str) -> Vec<String> {
    dump.lines()
        .filter_map(|l| l.trim().strip_prefix("DLL Name:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn release_dll_exports_the_three_entry_points_and_imports_only_windows() {
    let dll = build_release_dll();
    let size = std::fs::metadata(&dll)
        .unwrap_or_else(|e| panic!("{}: {e}", dll.display()))
        .len();
    eprintln!("{}: {size} bytes ({} KiB)", dll.display(), size / 1024);
    let dump = objdump(&dll);

    let mut found = exports(&dump);
    found.sort();
    assert_eq!(found, EXPORTS, "exports of {}", dll.display());

    let imported = imports(&dump);
    eprintln!("imports: {}", imported.join(", "));
    assert!(
        imported
            .iter()
            .any(|n| n.eq_ignore_ascii_case("kernel32.dll")),
        "no kernel32.dll import found: {imported:?}"
    );
    let foreign: Vec<&String> = imported.iter().filter(|n| !is_system_dll(n)).collect();
    assert!(
        foreign.is_empty(),
        "{} imports non-system DLLs: {foreign:?}",
        dll.display()
    );
    assert!(
        !imported
            .iter()
            .any(|n| n.to_ascii_lowercase().starts_with("python"))
    );

    // Stripped (`strip = true` in the release profile): no debug sections, no symbol table.
    let headers = Command::new("x86_64-w64-mingw32-objdump")
        .arg("-h")
        .arg(&dll)
        .output()
        .expect("objdump -h");
    let sections = String::from_utf8_lossy(&headers.stdout);
    assert!(
        !sections.contains(".debug_"),
        "{} has debug sections:\n{sections}",
        dll.display()
    );
    let symbols = Command::new("x86_64-w64-mingw32-nm")
        .arg(&dll)
        .output()
        .expect("nm");
    assert!(
        String::from_utf8_lossy(&symbols.stderr).contains("no symbols")
            || symbols.stdout.is_empty(),
        "{} still has a symbol table",
        dll.display()
    );
}
