//! The access log: one line per request (client, request line, status, bytes, duration).
//!
//! A request thread writes its line into one shared buffer, under a lock held only for
//! that; a writer thread takes the whole buffer and writes it out. While lines keep
//! coming, the writer lets them gather for [`GATHER`] before it takes them, so a busy host
//! makes one write and wakes the writer once per [`GATHER`], not once per request (a
//! channel with a record per request woke it about every other request: 7 µs of CPU per
//! request, a quarter of the host's, docs/host.md). An idle host never wakes it.
use crate::cli::AccessLog as Destination;
use isapi_wsgi::isapi::decimal::{decimal, push_ipv4};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long lines gather before the writer takes them, while they keep coming.
const GATHER: Duration = Duration::from_millis(20);

/// The writer takes the lines at once when this much is waiting.
const BATCH: usize = 64 * 1024;

/// At most this much waits for a destination that does not keep up (a full pipe nobody
/// reads), besides the batch being written; lines beyond it are counted, not kept, and the
/// count is logged.
const MAX_WAITING: usize = 16 << 20;

/// How long [`AccessLog::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// The sending side; cheap to use from any thread.
pub struct AccessLog {
    shared: Option<Arc<Shared>>,
}

struct Shared {
    lines: Mutex<Lines>,
    /// Signalled when a line goes into an empty buffer, when the buffer reaches [`BATCH`],
    /// and by a flush.
    wake: Condvar,
    /// Signalled when the writer has written what it took.
    written: Condvar,
}

#[derive(Default)]
struct Lines {
    text: Vec<u8>,
    /// Lines left out since the last write because [`MAX_WAITING`] was waiting.
    dropped: u64,
    /// Flushes asked for ([`AccessLog::flush`]), and the last one the writer has done.
    flushes_asked: u64,
    flushes_done: u64,
}

impl AccessLog {
    /// Starts the writer thread for `destination` (none for `off`).
    pub fn start(destination: &Destination) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match destination {
            Destination::Off => return Ok(AccessLog { shared: None }),
            Destination::Stderr => Box::new(io::stderr()),
            Destination::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("--access-log {}: {e}", path.display()))
                    })?,
            ),
        };
        let shared = Arc::new(Shared {
            lines: Mutex::new(Lines::default()),
            wake: Condvar::new(),
            written: Condvar::new(),
        });
        let writer = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(&writer, out))?;
        Ok(AccessLog {
            shared: Some(shared),
        })
    }

    /// Logs one request. `request` is "#id METHOD target".
    pub fn log(
        &self,
        remote: SocketAddr,
        request: &str,
        status: u16,
        bytes: u64,
        started: Instant,
        note: &str,
    ) {
        let Some(shared) = &self.shared else { return };
        let duration = started.elapsed();
        let mut lines = lock(&shared.lines);
        let before = lines.text.len();
        if before >= MAX_WAITING {
            lines.dropped += 1;
            return;
        }
        append_line(
            &mut lines.text,
            remote,
            request,
            status,
            bytes,
            duration,
            note,
        );
        let after = lines.text.len();
        drop(lines);
        // A signal is a system call even when nobody waits: only the first line of a batch
        // and the one that fills it signal.
        if before == 0 || (before < BATCH && after >= BATCH) {
            shared.wake.notify_one();
        }
    }

    /// Logs a request the parser rejected before it had a request line, answered with
    /// `bytes` bytes.
    pub fn log_error(&self, remote: SocketAddr, status: u16, bytes: u64) {
        self.log(
            remote,
            "(unparsable request)",
            status,
            bytes,
            Instant::now(),
            "",
        );
    }

    /// Has the writer write everything logged so far now, and waits until it has (at most
    /// [`FLUSH_WAIT`]: a destination that blocks does not hold up the shutdown).
    pub fn flush(&self) {
        let Some(shared) = &self.shared else { return };
        let mut lines = lock(&shared.lines);
        lines.flushes_asked += 1;
        let asked = lines.flushes_asked;
        shared.wake.notify_one();
        let waited = shared
            .written
            .wait_timeout_while(lines, FLUSH_WAIT, |lines| lines.flushes_done < asked);
        drop(waited);
    }
}

/// The writer thread: takes what has gathered and writes it, for the host's life.
fn write_lines(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut taken = Vec::with_capacity(BATCH);
    let mut lines = lock(&shared.lines);
    loop {
        // Nothing to write: wait for the next line, without a timeout.
        lines = shared
            .wake
            .wait_while(lines, |lines| {
                lines.text.is_empty() && lines.dropped == 0 && !flush_asked(lines)
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Let the lines of the next moments join these, unless a batch is full or a flush
        // waits.
        lines = match shared.wake.wait_timeout_while(lines, GATHER, |lines| {
            lines.text.len() < BATCH && !flush_asked(lines)
        }) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
        std::mem::swap(&mut lines.text, &mut taken);
        let dropped = std::mem::take(&mut lines.dropped);
        let flush = lines.flushes_asked;
        drop(lines);
        if dropped > 0 {
            let note = format!(
                "access: ({dropped} line(s) left out: the log's destination did not keep up)\n"
            );
            taken.extend_from_slice(note.as_bytes());
        }
        let _ = out.write_all(&taken).and_then(|()| out.flush());
        taken.clear();
        if taken.capacity() > 4 * BATCH {
            taken = Vec::with_capacity(BATCH); // after a burst, not kept at its size
        }
        lines = lock(&shared.lines);
        // Only a flush waits for `written` (a signal is a system call even unheard).
        if lines.flushes_done != flush {
            lines.flushes_done = flush;
            shared.written.notify_all();
        }
    }
}

fn flush_asked(lines: &Lines) -> bool {
    lines.flushes_done < lines.flushes_asked
}

/// `access: <client> "<request>" <status> <bytes> <duration>ms[ <note>]`, written by hand
/// (`write!` of these fields cost more than the rest of the line's work); the same text
/// as the `writeln!` it replaces but for the duration's rounding at an exact half
/// microsecond.
fn append_line(
    out: &mut Vec<u8>,
    remote: SocketAddr,
    request: &str,
    status: u16,
    bytes: u64,
    duration: Duration,
    note: &str,
) {
    out.extend_from_slice(b"access: ");
    match remote {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            out.push(b':');
            out.extend_from_slice(decimal(v4.port().into(), &mut [0; 20]));
        }
        // Writing to a Vec cannot fail.
        SocketAddr::V6(v6) => drop(write!(out, "{v6}")),
    }
    out.extend_from_slice(b" \"");
    out.extend_from_slice(request.as_bytes());
    out.extend_from_slice(b"\" ");
    out.extend_from_slice(decimal(status.into(), &mut [0; 20]));
    out.push(b' ');
    out.extend_from_slice(decimal(bytes, &mut [0; 20]));
    out.push(b' ');
    // Milliseconds with three decimals, rounded to the nearest microsecond (half up; the
    // float formatting this replaces rounded an exact half either way).
    let micros = (duration.as_nanos() + 500) / 1000;
    let micros = u64::try_from(micros).unwrap_or(u64::MAX);
    out.extend_from_slice(decimal(micros / 1000, &mut [0; 20]));
    out.push(b'.');
    let mut digits = [0; 20];
    let fraction = decimal(micros % 1000 + 1000, &mut digits);
    out.extend_from_slice(&fraction[1..]); // "1042" -> "042"
    out.extend_from_slice(b"ms");
    if !note.is_empty() {
        out.push(b' ');
        out.extend_from_slice(note.as_bytes());
    }
    out.push(b'\n');
}

/// The lock is never held while anything can panic, so a poisoned one is still whole.
fn lock(lines: &Mutex<Lines>) -> MutexGuard<'_, Lines> {
    lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(remote: &str, micros: u64, note: &str) -> String {
        let mut out = Vec::new();
        let duration = Duration::from_micros(micros);
        append_line(
            &mut out,
            remote.parse().unwrap(),
            "#7 GET /a?b",
            200,
            162,
            duration,
            note,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_line_reads_as_the_formatted_one_did_to_the_microsecond() {
        for (remote, micros, note) in [
            ("127.0.0.1:50000", 1042, ""),
            ("10.0.0.255:1", 0, "StaticFile"),
            ("[::1]:8080", 123_456_789, ""),
            ("[fe80::1%3]:80", 7, "x=y"),
        ] {
            let remote: SocketAddr = remote.parse().unwrap();
            let ms = Duration::from_micros(micros).as_secs_f64() * 1000.0;
            let space = if note.is_empty() { "" } else { " " };
            let formatted =
                format!("access: {remote} \"#7 GET /a?b\" 200 162 {ms:.3}ms{space}{note}\n");
            assert_eq!(line(&remote.to_string(), micros, note), formatted);
        }
    }
}
