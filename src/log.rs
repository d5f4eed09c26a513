//! One log for the extension's own messages and the applications' `wsgi.errors`.
//!
//! Until [`configure`] runs (at `GetExtensionVersion`), and when no file is configured,
//! lines go to stderr: under `isapi-host` that is the terminal. Under IIS there is no
//! console, so the default there is a file next to the library (see `config.rs`). Every line
//! of ours starts with a UTC timestamp and `isapi_wsgi:`; text from `wsgi.errors` is written
//! as the application wrote it. Writes are serialised by a mutex and never fail loudly: a
//! log that cannot be written must not take a request down with it.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

enum Sink {
    Stderr,
    File(File),
}

static SINK: Mutex<Sink> = Mutex::new(Sink::Stderr);

/// Our own lines also go to stderr when they go to a file (the check mode, `crate::check`).
static TEE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sends our own lines to stderr too, whatever the log is (`isapi-host --check`).
pub fn tee_to_stderr() {
    TEE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Sends the log to `path` (appending), or to stderr for None.
pub fn configure(path: Option<&Path>) -> Result<(), String> {
    let sink = match path {
        None => Sink::Stderr,
        Some(path) => {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))?;
            Sink::File(file)
        }
    };
    *SINK.lock().unwrap_or_else(|poison| poison.into_inner()) = sink;
    Ok(())
}

/// Writes one message of ours (it may span several lines).
pub fn line(message: &str) {
    let text = format!("{} isapi_wsgi: {}\n", timestamp(), message.trim_end());
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
    let _ = match &mut *sink {
        Sink::Stderr => std::io::stderr().write_all(bytes),
        Sink::File(file) => file.write_all(bytes),
    };
}

/// Flushes buffered output (stderr and files are unbuffered here; kept for wsgi.errors.flush).
pub fn flush() {
    let mut sink = SINK.lock().unwrap_or_else(|poison| poison.into_inner());
    let _ = match &mut *sink {
        Sink::Stderr => std::io::stderr().flush(),
        Sink::File(file) => file.flush(),
    };
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
