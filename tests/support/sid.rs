//! The Debian sid root that `.ci/sid-root` builds (`target/sid-root`, or
//! `$ISAPI_WSGI_SID_ROOT`): CPython 3.14 and 3.15 exactly as Debian installs them (libpython in
//! `/usr/lib/x86_64-linux-gnu`, the standard library in `/usr/lib/python3.X`), for the tests
//! that serve Pythons pyenv cannot install here.
//!
//! A program runs in it with [`command`]: `unshare --mount` gives it a private mount
//! namespace in which this repository and the target directory are bind-mounted at the same
//! paths inside the root and `/proc` is mounted, then `chroot` runs the program (each step
//! `exec`s the next, so the process id is the program's own and a signal reaches it). The
//! mounts end with the process: nothing stays mounted under `target/`. Our binaries need
//! nothing newer than the build machine's glibc, and sid's is newer.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The root, if it is built. If not: in CI (`CI=true`) a panic that says how to build it
/// (the tests that need it fail there, they do not skip); elsewhere a note on stderr and None.
pub fn root() -> Option<PathBuf> {
    let root = std::env::var_os("ISAPI_WSGI_SID_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_root().join("sid-root"));
    if root.join(".isapi-wsgi-packages").is_file() {
        return Some(root);
    }
    let message = format!(
        "the Debian sid root {} with CPython 3.14 and 3.15 is not built: `bash .ci/sid-root` \
         builds it (.ci/test runs it first; it needs Debian's archive: see {}/sid-root.log)",
        root.display(),
        root.parent().unwrap_or(Path::new(".")).display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("SKIPPED (not in CI): {message}");
    None
}

/// `target/` (the parent of `target/<profile>`, where the test binary is).
fn target_root() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/NAME")
        .to_path_buf()
}

/// The directories bind-mounted into the root at their own paths: the repository (the
/// sources, tests/apps) and the target directory (the binaries) if it is elsewhere.
fn binds() -> Vec<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = target_root();
    let mut binds = vec![manifest.clone()];
    if !target.starts_with(&manifest) {
        binds.push(target);
    }
    binds
}

/// The command that runs `program` (a path that is the same inside the root) in `root`;
/// the program's arguments follow.
pub fn command(root: &Path, program: &Path) -> Vec<OsString> {
    // $0 = the root, $1 = how many binds, then the binds, then the program and its arguments.
    let script = r#"root=$0; n=$1; shift
while [ "$n" -gt 0 ]; do
  mkdir -p "$root$1" && mount --bind "$1" "$root$1" || exit 111
  shift; n=$((n - 1))
done
mount -t proc proc "$root/proc" || exit 111
exec chroot "$root" "$@""#;
    let binds = binds();
    let mut command: Vec<OsString> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
    ]
    .iter()
    .map(OsString::from)
    .collect();
    command.push(root.into());
    command.push(binds.len().to_string().into());
    command.extend(binds.into_iter().map(OsString::from));
    command.push(program.into());
    command
}

/// A new scratch directory that has the same path inside the root as outside (it is under
/// the target directory, which is bind-mounted): `target/sid-sites/{label}-{pid}-{n}`.
pub fn scratch_dir(label: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = target_root()
        .join("sid-sites")
        .join(format!("{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Debian's CPython versions in the root: (minor, Debian's library).
pub fn pythons(root: &Path) -> Vec<(u32, PathBuf)> {
    [14, 15]
        .into_iter()
        .map(|minor| {
            let library = PathBuf::from(format!(
                "/usr/lib/x86_64-linux-gnu/libpython3.{minor}.so.1.0"
            ));
            let outside = root.join(library.strip_prefix("/").unwrap());
            assert!(
                outside.is_file(),
                "{} is missing: rebuild it with `bash .ci/sid-root`",
                outside.display()
            );
            (minor, library)
        })
        .collect()
}
