//! One log for the extension's own messages and the applications' `wsgi.errors`.
//!
//! Until [`configure`] runs (at `GetExtensionVersion`), and when no file is configured,
//! lines go to stderr: under `isapi-host` that is the terminal. Under IIS there is no
//! console, so the default there is a file next to the library (see `config.rs`). Every line
//! of ours starts with a UTC timestamp, the process id in brackets and `isapi_wsgi:`
//! (`2026-01-31T12:00:00Z [4242] isapi_wsgi: …`: the worker processes of a web garden, or
//! the old and new ones of an overlapped recycle, may share one file); text from
//! `wsgi.errors` is written as the application wrote it. Writes are serialised by a mutex
//! and never fail loudly: a log that cannot be written must not take a request down with it.
//!
//! The file is opened so that an administrator can read it while IIS runs, and other
//! processes append to it ([`crate::sys::open_log`]). With `[wsgi] log_max`, it is rotated
//! when a write takes it past that size: `wsgi.log.N-1` becomes `wsgi.log.N` … `wsgi.log`
//! becomes `wsgi.log.1` (the oldest beyond `log_keep` is deleted), and a new `wsgi.log` is
//! started. Each process counts the bytes it wrote; when its count says the file is full,
//! it looks at the file's real size first: a file smaller than that means another process
//! of the pool rotated already, and this one only reopens it. A rotation that fails (on
//! Windows: a reader holds the file without sharing delete access) is logged and tried
//! again a minute later; lines keep going to the current file meanwhile.
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a failed rotation waits before it is tried again.
const ROTATION_RETRY: Duration = Duration::from_secs(60);

enum Sink {
    Stderr,
    File(LogFile),
}

/// The open log file and what its rotation needs.
struct LogFile {
    file: File,
    path: PathBuf,
    /// `[wsgi] log_max`: rotate past this size; None: never.
    max: Option<u64>,
    /// `[wsgi] log_keep`: rotated files kept.
    keep: usize,
    /// The file's size as this process knows it (its size at opening plus our writes).
    size: u64,
    /// No rotation is tried before this (after one failed).
    not_before: Option<Instant>,
}

/// How the log file is rotated (`[wsgi] log_max`, `log_keep`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate when the file would grow past this many bytes; None: never.
    pub max: Option<u64>,
    /// How many rotated files are kept.
    pub keep: usize,
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr);

/// Our own lines also go to stderr when they go to a file (the check mode, `crate::check`).
static TEE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends our own lines to stderr too, whatever the log is (`isapi-host --check`).
pub fn tee_to_stderr() {
    TEE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Sends the log to `path` (appending), or to stderr for None.
pub fn configure(path: Option<&Path>, rotation: Rotation) -> Result<(), String> {
    let sink = match path {
        None => Sink::Stderr,
        Some(path) => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let file = crate::sys::open_log(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            Sink::File(LogFile {
                file,
                path: path.to_path_buf(),
                max: rotation.max,
                keep: rotation.keep.max(1),
                size,
                not_before: None,
            })
        }
    };
    *SINK.lock().unwrap_or_else(|poison| poison.into_inner()) = sink;
    Ok(())
}

/// Writes one message of ours (it may span several lines).
pub fn line(message: &str) {
    let text = format!(
        "{} [{}] isapi_wsgi: {}\n",
        timestamp(),
        std::process::id(),
        message.trim_end()
    );
    let tee = TEE.load(std::sync::atomic::Ordering::SeqCst);
    if tee
        && !matches!(
            *SINK.lock().unwrap_or_else(|p| p.into_inner()),
            Sink::Stderr
        )
    {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    raw(text.as_bytes());
}

/// Request data (a method, a path) made safe for a log line: printable ASCII stays, every
/// other byte (CR, LF, other control characters, non-ASCII) becomes `\xNN`, so a client
/// cannot forge or split lines in the log.
pub fn escape(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for &byte in bytes {
        if (0x20..0x7f).contains(&byte) && byte != b'\\' {
            text.push(byte as char);
        } else {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// Writes text exactly as given (what the application sends to `wsgi.errors`).
pub fn raw(bytes: &[u8]) {
    let mut sink = SINK.lock().unwrap_or_else(|poison| poison.into_inner());
    match &mut *sink {
        Sink::Stderr => {
            let _ = std::io::stderr().write_all(bytes);
        }
        Sink::File(log) => {
            let note = log.make_room(bytes.len() as u64);
            if let Some(note) = note {
                let text = format!(
                    "{} [{}] isapi_wsgi: {note}\n",
                    timestamp(),
                    std::process::id()
                );
                log.append(text.as_bytes());
            }
            log.append(bytes);
        }
    }
}

/// Flushes buffered output (stderr and files are unbuffered here; kept for wsgi.errors.flush).
pub fn flush() {
    let mut sink = SINK.lock().unwrap_or_else(|poison| poison.into_inner());
    let _ = match &mut *sink {
        Sink::Stderr => std::io::stderr().flush(),
        Sink::File(log) => log.file.flush(),
    };
}

impl LogFile {
    fn append(&mut self, bytes: &[u8]) {
        if self.file.write_all(bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    /// Rotates the file if `incoming` more bytes would take it past `max`. Returns a line to
    /// log about it when the rotation failed.
    fn make_room(&mut self, incoming: u64) -> Option<String> {
        let max = self.max?;
        if self.size == 0 || self.size + incoming <= max {
            return None;
        }
        if self.not_before.is_some_and(|at| Instant::now() < at) {
            return None;
        }
        // Another process of the pool may have rotated already: then only follow it.
        let real = std::fs::metadata(&self.path).map(|m| m.len()).ok();
        if real.is_some_and(|real| real + incoming <= max) {
            return self.reopen().err();
        }
        match rotate(&self.path, self.keep) {
            Ok(()) => self.reopen().err(),
            Err(error) => {
                if !self.path.exists() {
                    // Moved aside, but not all the way to .1: start the new file anyway.
                    let _ = self.reopen();
                }
                self.not_before = Some(Instant::now() + ROTATION_RETRY);
                Some(format!(
                    "cannot rotate the log file {} ({error}); trying again in {} s",
                    self.path.display(),
                    ROTATION_RETRY.as_secs()
                ))
            }
        }
    }

    fn reopen(&mut self) -> Result<(), String> {
        let file = crate::sys::open_log(&self.path).map_err(|error| {
            self.not_before = Some(Instant::now() + ROTATION_RETRY);
            format!(
                "cannot open the log file {} after rotating it ({error}); writing to the rotated file",
                self.path.display()
            )
        })?;
        self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
        self.file = file;
        self.not_before = None;
        Ok(())
    }
}

/// `path.N-1` → `path.N` for N = keep…2 (the oldest replaced), then `path` → `path.1`.
/// The live file is moved aside first: if that fails (held by a reader that does not share
/// delete access), nothing has changed.
fn rotate(path: &Path, keep: usize) -> std::io::Result<()> {
    let numbered = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let staged = numbered(".rotating");
    std::fs::rename(path, &staged)?;
    let _ = std::fs::remove_file(numbered(&format!(".{keep}")));
    let mut shifted = Ok(());
    for n in (1..keep).rev() {
        let from = numbered(&format!(".{n}"));
        if from.exists() {
            shifted = shifted.and(std::fs::rename(&from, numbered(&format!(".{}", n + 1))));
        }
    }
    std::fs::rename(&staged, numbered(".1")).and(shifted)
}

/// An event that can come in floods (a full queue, clients leaving mid-response): counted
/// always, written at most once per `interval`, each line saying how many happened since
/// the one before, so that a flood does not also flood the log.
pub struct RateLimit {
    interval: Duration,
    total: AtomicU64,
    /// When the last line was written, and how many events it did not report yet.
    logged: Mutex<Option<(Instant, u64)>>,
}

impl RateLimit {
    pub const fn new(interval: Duration) -> RateLimit {
        RateLimit {
            interval,
            total: AtomicU64::new(0),
            logged: Mutex::new(None),
        }
    }

    /// Counts one event. When a line is due, returns (events since the last line, this
    /// one included; events in all) for the caller to write it.
    pub fn count(&self) -> Option<(u64, u64)> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match &mut *logged {
            Some((at, unreported)) if now.duration_since(*at) < self.interval => {
                *unreported += 1;
                None
            }
            state => {
                let since = state.map(|(_, n)| n).unwrap_or(0) + 1;
                *state = Some((now, 0));
                Some((since, total))
            }
        }
    }

    /// Events counted since start-up.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for now, in UTC.
fn timestamp() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}
