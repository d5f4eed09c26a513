//! `[wsgi] traceback_limit`: the same failure's traceback is logged at most N times a
//! minute; past that, each failed request gets one short line that counts the repeats.
//!
//! A page that fails for every request under load would otherwise write thousands of
//! identical tracebacks a minute, fill the disk and bury everything else. "The same" is
//! the same exception type raised at the same place: the last line of the traceback up to
//! its first `:` (`KeyError`, `ValueError`), and the last `File "…", line N` line above it
//! (where it was raised). The message after the type is left out, as it often holds
//! per-request data (an id, a key).
//!
//! Plain Rust over the traceback's text; a mutex held only to count.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the limit counts in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// At most this many kinds of failure are remembered (a flood of different failures is
/// then counted as one), so the table cannot grow without end.
const MOST_KINDS: usize = 256;

/// What to log for one failure.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The whole traceback.
    Full,
    /// Only a line: this failure's traceback was logged `limit` times in the window
    /// already; `repeats` is how many times it has been left out since.
    Repeated { kind: String, repeats: u64 },
}

/// The failures seen in the current windows.
pub struct Repeats {
    limit: Option<usize>,
    seen: Mutex<HashMap<String, Window>>,
}

struct Window {
    started: Instant,
    logged: usize,
    left_out: u64,
}

impl Repeats {
    /// `limit`: tracebacks of one kind per [`WINDOW`]; None: no limit.
    pub fn new(limit: Option<usize>) -> Repeats {
        Repeats {
            limit,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The limit per window; None: none.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// Counts one failure whose traceback (or message) is `detail`.
    pub fn note(&self, detail: &str) -> Verdict {
        self.note_at(detail, Instant::now())
    }

    fn note_at(&self, detail: &str, now: Instant) -> Verdict {
        let Some(limit) = self.limit else {
            return Verdict::Full;
        };
        let kind = kind_of(detail);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= MOST_KINDS && !seen.contains_key(&kind) {
            seen.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
        let key = if seen.len() >= MOST_KINDS && !seen.contains_key(&kind) {
            "(many different failures)".to_string()
        } else {
            kind.clone()
        };
        let window = seen.entry(key).or_insert(Window {
            started: now,
            logged: 0,
            left_out: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                logged: 0,
                left_out: 0,
            };
        }
        if window.logged < limit {
            window.logged += 1;
            return Verdict::Full;
        }
        window.left_out += 1;
        Verdict::Repeated {
            kind,
            repeats: window.left_out,
        }
    }
}

/// `KeyError at app.py, line 12`: the exception's type and where it was raised.
pub fn kind_of(detail: &str) -> String {
    let lines: Vec<&str> = detail.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.last().map(|l| l.trim()).unwrap_or("");
    let exception = last.split(':').next().unwrap_or(last).trim();
    let place = lines
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| l.starts_with("File \""))
        .map(|l| l.trim_start_matches("File ").replace('"', ""));
    match place {
        Some(place) => {
            let place = place.split(", in ").next().unwrap_or(&place).to_string();
            format!("{exception} at {place}")
        }
        None => exception.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/srv/app.py\", line 12, in view\n    x = d[key]\nKeyError: 'user-17'\n";

    #[test]
    fn the_kind_is_the_type_and_the_place() {
        assert_eq!(kind_of(TRACEBACK), "KeyError at /srv/app.py, line 12");
        let other_key = TRACEBACK.replace("user-17", "user-99");
        assert_eq!(kind_of(&other_key), kind_of(TRACEBACK));
        assert_eq!(
            kind_of("the application's body must be an iterable of bytes; it yielded str"),
            "the application's body must be an iterable of bytes; it yielded str"
        );
    }

    #[test]
    fn at_most_limit_a_window_then_counted() {
        let repeats = Repeats::new(Some(2));
        let start = Instant::now();
        assert_eq!(repeats.note_at(TRACEBACK, start), Verdict::Full);
        assert_eq!(repeats.note_at(TRACEBACK, start), Verdict::Full);
        let kind = kind_of(TRACEBACK);
        for n in 1..=3 {
            assert_eq!(
                repeats.note_at(TRACEBACK, start + Duration::from_secs(n)),
                Verdict::Repeated {
                    kind: kind.clone(),
                    repeats: n
                }
            );
        }
        // Another failure has its own count; a new window starts afresh.
        assert_eq!(repeats.note_at("ValueError: x", start), Verdict::Full);
        assert_eq!(repeats.note_at(TRACEBACK, start + WINDOW), Verdict::Full);
        let unlimited = Repeats::new(None);
        for _ in 0..100 {
            assert_eq!(unlimited.note(TRACEBACK), Verdict::Full);
        }
    }
}
