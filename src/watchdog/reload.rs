//! `[wsgi] reload_on`: the files whose change asks IIS for a recycle.
//!
//! Each pattern is a path whose file name may hold `*` (any run of characters) and `?`
//! (one character); a pattern without them is one file, which need not exist yet (creating
//! it is a change). A check lists the matching files with their size and modification
//! time: one `stat` per literal pattern, one directory listing per wildcard pattern. The
//! watchdog checks at most once a second.
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The watched files, as last seen.
pub struct Reload {
    patterns: Vec<PathBuf>,
    seen: Vec<Seen>,
}

/// One file as a check saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Seen {
    path: PathBuf,
    modified: Option<SystemTime>,
    size: u64,
}

impl Reload {
    /// Takes the first look at the files (what later checks compare with).
    pub fn new(patterns: &[PathBuf]) -> Reload {
        Reload {
            patterns: patterns.to_vec(),
            seen: look(patterns),
        }
    }

    /// The first file that appeared, disappeared, or changed size or modification time
    /// since the last check; None if nothing did.
    pub fn changed(&mut self) -> Option<PathBuf> {
        let now = look(&self.patterns);
        let changed = now
            .iter()
            .find(|file| !self.seen.contains(file))
            .or_else(|| self.seen.iter().find(|file| !now.contains(file)))
            .map(|file| file.path.clone());
        self.seen = now;
        changed
    }
}

/// Every file the patterns match now, in a stable order.
fn look(patterns: &[PathBuf]) -> Vec<Seen> {
    let mut files = Vec::new();
    for pattern in patterns {
        let name = pattern
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.contains(['*', '?']) {
            files.extend(stat(pattern));
            continue;
        }
        let dir = pattern.parent().unwrap_or(Path::new("."));
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if matches(
                name.as_bytes(),
                entry.file_name().to_string_lossy().as_bytes(),
            ) {
                files.extend(stat(&entry.path()));
            }
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup();
    files
}

fn stat(path: &Path) -> Option<Seen> {
    let metadata = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some(Seen {
        path: path.to_path_buf(),
        modified: metadata.modified().ok(),
        size: metadata.len(),
    })
}

/// Whether `name` matches `pattern` (`*`: any run of bytes, `?`: one byte). Case matters
/// (as on Linux; Windows file names differ in case rarely enough for a watch list).
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| matches(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
        Some((byte, rest)) => name.first() == Some(byte) && matches(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(matches(b"*.py", b"app.py"));
        assert!(matches(b"*.py", b".py"));
        assert!(!matches(b"*.py", b"app.pyc"));
        assert!(matches(b"restart.txt", b"restart.txt"));
        assert!(!matches(b"restart.txt", b"restart.txt~"));
        assert!(matches(b"a?c*", b"abcdef"));
        assert!(!matches(b"a?c", b"ac"));
        assert!(matches(b"*", b""));
        assert!(matches(b"**x", b"yyx"));
    }

    #[test]
    fn a_file_that_appears_changes_or_goes_is_a_change() {
        let dir = std::env::temp_dir().join(format!("isapi-wsgi-reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.py"), "x = 1\n").unwrap();
        let mut reload = Reload::new(&[dir.join("restart.txt"), dir.join("*.py")]);
        assert_eq!(reload.changed(), None);
        std::fs::write(dir.join("notes.txt"), "not watched").unwrap();
        assert_eq!(reload.changed(), None);
        std::fs::write(dir.join("restart.txt"), "").unwrap();
        assert_eq!(reload.changed(), Some(dir.join("restart.txt")));
        assert_eq!(reload.changed(), None);
        std::fs::write(dir.join("app.py"), "x = 22\n").unwrap();
        assert_eq!(reload.changed(), Some(dir.join("app.py")));
        std::fs::write(dir.join("other.py"), "").unwrap();
        assert_eq!(reload.changed(), Some(dir.join("other.py")));
        std::fs::remove_file(dir.join("restart.txt")).unwrap();
        assert_eq!(reload.changed(), Some(dir.join("restart.txt")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
