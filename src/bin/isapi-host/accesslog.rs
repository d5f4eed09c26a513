//! The access log: one line per request (client, request line, status, bytes, duration),
//! written by a logger thread so that request threads only send a small record down a
//! channel.
use crate::cli::AccessLog as Destination;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

struct Record {
    remote: SocketAddr,
    request: String,
    status: u16,
    bytes: u64,
    duration: Duration,
    note: String,
}

/// The sending side; cheap to use from any thread.
pub struct AccessLog {
    sender: Option<Sender<Record>>,
}

impl AccessLog {
    /// Starts the logger thread for `destination` (none for `off`).
    pub fn start(destination: &Destination) -> io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match destination {
            Destination::Off => return Ok(AccessLog { sender: None }),
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
        let (sender, receiver) = channel();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, out))?;
        Ok(AccessLog {
            sender: Some(sender),
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
        let Some(sender) = &self.sender else { return };
        let record = Record {
            remote,
            request: request.to_string(),
            status,
            bytes,
            duration: started.elapsed(),
            note: note.to_string(),
        };
        let _ = sender.send(record);
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

    /// Waits until the logger thread has written everything sent so far (it writes after
    /// 20 ms without new records).
    pub fn flush(&self) {
        if self.sender.is_some() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn write_lines(receiver: Receiver<Record>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    // Whether lines wait in `out` for the next quiet moment.
    let mut unwritten = false;
    loop {
        // Write out only after a quiet moment (or when the buffer is full), so that a busy
        // host makes a few large writes rather than one per request. With nothing to write,
        // wait for the next record without a timeout: an idle host does not wake this thread.
        let next = if unwritten {
            receiver.recv_timeout(Duration::from_millis(20))
        } else {
            receiver.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        let record = match next {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
                unwritten = false;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        };
        let _ = writeln!(
            out,
            "access: {} \"{}\" {} {} {:.3}ms{}{}",
            record.remote,
            record.request,
            record.status,
            record.bytes,
            record.duration.as_secs_f64() * 1000.0,
            if record.note.is_empty() { "" } else { " " },
            record.note
        );
        unwritten = true;
    }
}
