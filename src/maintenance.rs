//! Maintenance mode: while a file named `app_offline.htm` is in the application's physical
//! path (the server variable `APPL_PHYSICAL_PATH`), every request is answered with its
//! contents, `503 Service Unavailable` and `Retry-After`, without calling the application,
//! as ASP.NET Core's module does. Deleting the file ends it. `[wsgi] app_offline = false`
//! turns the check off.
//!
//! It is on by default, unlike the other operations features, because nothing happens
//! until an administrator puts the file there (the physical path is theirs: the pool
//! identity only reads it), and because that is what IIS administrators know from ASP.NET
//! Core: dropping `app_offline.htm` in the site's folder takes the site offline.
//!
//! Cheap: the file is looked for at most once a second ([`CHECK_EVERY`]), by whichever
//! request comes first after that second; every other request reads one atomic flag. The
//! physical path is taken from the first request (one DLL serves one application: each has
//! its own ini). The page is read when the file appears or changes, and kept in memory; it
//! is sent as `text/html`, as the file is, and its requests are counted as 503s.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::isapi::ecb::Ecb;
use crate::log;
use crate::page::{Body, Page};

/// The file's name, as ASP.NET Core's module has it.
pub const FILE_NAME: &str = "app_offline.htm";
/// How often the file is looked for, at most.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// `Retry-After` of the maintenance page, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 30;

/// The page as last read, and the file's modification time then.
type Seen = (Arc<Vec<u8>>, Option<SystemTime>);

/// The maintenance check of one application.
pub struct Maintenance {
    /// The file, once the first request told the physical path.
    file: OnceLock<Option<PathBuf>>,
    /// Milliseconds since `epoch` when the file is next looked for.
    next_check: AtomicU64,
    epoch: Instant,
    /// Whether the file was there at the last look.
    offline: AtomicBool,
    /// Its contents then, and when it was last changed (to reread a changed file only).
    page: RwLock<Option<Seen>>,
    /// Serialises the look itself (a request that finds it taken goes on with the old answer).
    looking: Mutex<()>,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance::new()
    }
}

impl Maintenance {
    pub fn new() -> Maintenance {
        Maintenance {
            file: OnceLock::new(),
            next_check: AtomicU64::new(0),
            epoch: Instant::now(),
            offline: AtomicBool::new(false),
            page: RwLock::new(None),
            looking: Mutex::new(()),
        }
    }

    /// Answers the request with the maintenance page while `app_offline.htm` exists; None
    /// otherwise (the request goes on as usual).
    pub fn answer(&self, ecb: &Ecb) -> Option<u32> {
        self.refresh(ecb);
        if !self.offline.load(Ordering::Relaxed) {
            return None;
        }
        let bytes = self
            .page
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(bytes, _)| bytes.clone())?;
        let mut page = Page::with_body(
            "503 Service Unavailable",
            Body {
                content_type: "text/html",
                bytes: bytes.to_vec(),
                no_store: true,
            },
        );
        page.retry = Some(RETRY_AFTER_SECONDS);
        Some(page.answer(ecb))
    }

    /// Whether the last look found the file (for the health page).
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }

    /// Looks for the file if the last look is more than [`CHECK_EVERY`] old.
    fn refresh(&self, ecb: &Ecb) {
        let now = self.epoch.elapsed().as_millis() as u64;
        let due = self.next_check.load(Ordering::Relaxed);
        if now < due {
            return;
        }
        let Ok(_looking) = self.looking.try_lock() else {
            return;
        };
        if self.next_check.load(Ordering::Relaxed) != due {
            return; // another request looked meanwhile
        }
        self.next_check
            .store(now + CHECK_EVERY.as_millis() as u64, Ordering::Relaxed);
        let Some(file) = self.file.get_or_init(|| physical_file(ecb)) else {
            return;
        };
        self.look(file);
    }

    fn look(&self, file: &PathBuf) {
        let modified = match std::fs::metadata(file) {
            Ok(meta) if meta.is_file() => meta.modified().ok(),
            _ => {
                if self.offline.swap(false, Ordering::Relaxed) {
                    log::line(&format!(
                        "{} is gone: the application serves again",
                        file.display()
                    ));
                }
                return;
            }
        };
        let mut page = self.page.write().unwrap_or_else(|p| p.into_inner());
        let unchanged = page
            .as_ref()
            .is_some_and(|(_, seen)| modified.is_some() && *seen == modified);
        if !unchanged {
            match std::fs::read(file) {
                Ok(bytes) => *page = Some((Arc::new(bytes), modified)),
                Err(error) => {
                    // Still being written, or unreadable: keep the previous state.
                    log::line(&format!(
                        "cannot read {} ({error}); looking again in a second",
                        file.display()
                    ));
                    return;
                }
            }
        }
        drop(page);
        if !self.offline.swap(true, Ordering::Relaxed) {
            log::line(&format!(
                "{} is there: every request gets it with 503 until it is removed",
                file.display()
            ));
        }
    }
}

/// `<APPL_PHYSICAL_PATH>/app_offline.htm`; None when the server does not say.
fn physical_file(ecb: &Ecb) -> Option<PathBuf> {
    let mut path = Vec::new();
    if !matches!(
        ecb.server_variable(c"APPL_PHYSICAL_PATH", &mut path),
        Ok(true)
    ) || path.is_empty()
    {
        return None;
    }
    // IIS gives the path in the system's ANSI code page; ASCII paths (the usual case) are
    // the same in UTF-8.
    let text = String::from_utf8_lossy(&path).into_owned();
    Some(PathBuf::from(text).join(FILE_NAME))
}
