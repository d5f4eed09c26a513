//! The response side of one request: the head (status line and headers) the host writes
//! from the extension's, the response buffer, and the framing decision IIS 7+ makes.
//!
//! * IIS never chunks an extension's output. If the headers carry neither Content-Length
//!   nor `Transfer-Encoding: chunked` (and the response can have a body), the host sends
//!   `Connection: close` and ends the body by closing (facts §4.2). `--buffered-content-length`
//!   instead adds a Content-Length when the whole response is still in the buffer at the
//!   end (IIS's behaviour there is unconfirmed).
//! * Output is buffered up to `--response-buffer` bytes unless the extension has set
//!   HSE_REQ_SET_FLUSH_FLAG; the status line and headers go out with the first flush. They
//!   are written at the front of the buffer when the extension sends them (the body follows
//!   them there, copied once); only their end, the keep-alive decision, is settled at the
//!   first flush.
//! * The host adds `Server`, `Date` and the `Connection` header; an extension's own
//!   `Connection` header is replaced by the host's decision.
//! * HEAD responses and 1xx/204/304 carry no body: bytes written for them are counted and
//!   dropped, as http.sys does.
//! * The host's own answers (400, 404, 414, 431, 501, 503, 505: [`host_answer`]) carry
//!   `Date` and `Server` too, `Server: Microsoft-HTTPAPI/2.0` for those http.sys itself
//!   would send ([`HTTP_API_SERVER`]).
use crate::http::Version;
use std::io::{self, Write};

/// The `Server` header of the responses http.sys writes itself (bad requests, a full
/// queue), before IIS or an extension sees the request.
pub const HTTP_API_SERVER: &str = "Microsoft-HTTPAPI/2.0";

/// A whole response the host answers itself, the extension never called: `<code>
/// <reason>` with `Server: server`, `Date`, a plain-text body `<code> <reason>:
/// <message>` and `Connection: close` (the connection is closed after it).
pub fn host_answer(code: u16, reason: &str, message: &str, server: &str) -> Vec<u8> {
    let body = format!("{code} {reason}: {message}\r\n");
    let mut out = Vec::with_capacity(200 + body.len());
    out.extend_from_slice(
        format!("HTTP/1.1 {code} {reason}\r\nServer: {server}\r\nDate: ").as_bytes(),
    );
    append_http_date(&mut out);
    out.extend_from_slice(
        format!(
            "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    out
}

/// How the body the extension writes is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Content-Length from the extension: `remaining` body bytes expected.
    Length { declared: u64 },
    /// `Transfer-Encoding: chunked` from the extension, which writes the chunks itself.
    Chunked,
    /// The response has no body (HEAD, 1xx, 204, 304).
    NoBody,
    /// Neither: the body ends when the connection closes.
    UntilClose,
}

/// Everything known about the response so far.
pub struct Response {
    /// The request allows keep-alive (client's wish and host not stopping).
    client_keep_alive: bool,
    version: Version,
    head_request: bool,
    /// The status code from the extension, once it has sent its headers.
    status: Option<u16>,
    /// fKeepConn (HSE_SEND_HEADER_EX_INFO) or false for the old SEND_RESPONSE_HEADER.
    keep_conn_requested: bool,
    /// The extension's headers include `Connection: close`.
    extension_says_close: bool,
    /// The status line and headers waiting at the front of `out`: their length (0 when
    /// there are none, or they are committed).
    head_len: usize,
    /// The keep-alive decision the waiting head ends with ([`head_end`]); [`commit`]
    /// rewrites that end if the decision changed since.
    ///
    /// [`commit`]: Response::commit
    head_says_keep: bool,
    pub framing: Framing,
    /// The status line and headers are in `out` (or already on the wire).
    committed: bool,
    /// Bytes waiting to be written (headers and body).
    out: Vec<u8>,
    /// HSE_REQ_SET_FLUSH_FLAG: write through on every WriteClient.
    pub flush_each_write: bool,
    limit: usize,
    /// Body bytes the extension wrote (including any that HEAD discarded).
    pub body_written: u64,
    /// Bytes put on the wire (status line, headers, body).
    pub bytes_sent: u64,
    /// A write to the client failed (it went away, or was too slow): nothing more goes
    /// out, and the connection closes.
    pub failed: bool,
    /// The extension wrote body bytes before sending any headers (IIS 6 "raw" mode).
    pub raw: bool,
    /// Keep the connection open after this response (decided when headers are committed).
    pub keep: bool,
    /// The connection closes after this response whatever the framing
    /// (HSE_IO_DISCONNECT_AFTER_SEND); said with `Connection: close` if still possible.
    closing: bool,
    server: &'static str,
    add_length_when_buffered: bool,
}

impl Response {
    pub fn new(
        version: Version,
        client_keep_alive: bool,
        head_request: bool,
        limit: usize,
        server: &'static str,
        add_length_when_buffered: bool,
    ) -> Response {
        Response {
            client_keep_alive,
            version,
            head_request,
            status: None,
            keep_conn_requested: false,
            extension_says_close: false,
            head_len: 0,
            head_says_keep: false,
            framing: Framing::UntilClose,
            committed: false,
            out: Vec::new(),
            flush_each_write: false,
            limit,
            body_written: 0,
            bytes_sent: 0,
            failed: false,
            raw: false,
            keep: false,
            closing: false,
            server,
            add_length_when_buffered,
        }
    }

    /// The response writes into `out` (emptied; the connection's previous response's
    /// buffer, [`Conn::keep_out_buffer`](crate::conn::Conn::keep_out_buffer)) rather than
    /// into a buffer of its own.
    pub fn writing_into(mut self, out: Vec<u8>) -> Response {
        debug_assert!(out.is_empty(), "a kept buffer is emptied when it is kept");
        self.out = out;
        self
    }

    /// Whether the extension has sent its headers (or written raw output).
    pub fn started(&self) -> bool {
        self.status.is_some() || self.raw
    }

    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// Records the extension's status line and headers (the readable lines of its block,
    /// see [`header_lines`](crate::checker::header_lines)): writes the head into the empty
    /// output buffer as it will go out, the host's `Server` and `Date` first unless the
    /// extension has its own, and ending with the keep-alive decision as far as it is known.
    pub fn set_headers<'h>(
        &mut self,
        code: u16,
        status: &[u8],
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
        keep_conn: bool,
    ) {
        debug_assert!(self.out.is_empty(), "headers come before any output");
        // One allocation for a typical head and a small body.
        self.out.reserve(1024);
        self.out.extend_from_slice(b"HTTP/1.1 ");
        self.out.extend_from_slice(status);
        self.out.extend_from_slice(b"\r\n");
        let framing = self.append_headers(headers);
        let no_body = self.head_request || (100..200).contains(&code) || code == 204 || code == 304;
        self.framing = if no_body { Framing::NoBody } else { framing };
        self.status = Some(code);
        self.keep_conn_requested = keep_conn;
        self.head_says_keep = self.keeps_alive(false);
        self.out
            .extend_from_slice(head_end(self.head_says_keep, self.version));
        self.head_len = self.out.len();
    }

    /// Appends the host's `Server` and `Date` unless the extension has its own, then the
    /// extension's lines in canonical form but for `Connection`. Returns the framing they
    /// declare (the last Content-Length or chunked Transfer-Encoding).
    fn append_headers<'h>(
        &mut self,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Framing {
        let out = &mut self.out;
        // Written in advance and taken out again if the extension has its own (rarely).
        let server = out.len();
        append_header(out, b"Server", self.server.as_bytes());
        let date = out.len();
        out.extend_from_slice(b"Date: ");
        append_http_date(out);
        out.extend_from_slice(b"\r\n");
        let lines = out.len();
        let (mut framing, mut has_server, mut has_date) = (Framing::UntilClose, false, false);
        for (name, value) in headers {
            if name.eq_ignore_ascii_case(b"connection") {
                // Replaced by the host's decision.
                self.extension_says_close |= value.eq_ignore_ascii_case(b"close");
                continue;
            }
            framing = declared_framing(name, value).unwrap_or(framing);
            has_server |= name.eq_ignore_ascii_case(b"server");
            has_date |= name.eq_ignore_ascii_case(b"date");
            append_header(out, name, value);
        }
        if has_date {
            out.drain(date..lines);
        }
        if has_server {
            out.drain(server..date);
        }
        framing
    }

    /// The connection will close after this response: headers not yet sent get
    /// `Connection: close`.
    pub fn close_after(&mut self) {
        self.closing = true;
        self.keep = false;
    }

    /// Whether the connection may stay open after this response, as far as known now.
    fn keeps_alive(&self, stopping: bool) -> bool {
        self.client_keep_alive
            && self.keep_conn_requested
            && !self.extension_says_close
            && !stopping
            && !self.closing
            && self.framing != Framing::UntilClose
    }

    /// The body bytes waiting in `out` (behind the head, if that is waiting too).
    fn buffered_body(&self) -> usize {
        self.out.len() - self.head_len
    }

    /// Inserts one header line into the waiting head, before its end.
    fn insert_header(&mut self, name: &[u8], value: &[u8]) {
        let at = self.head_len - head_end(self.head_says_keep, self.version).len();
        let mut line = Vec::with_capacity(name.len() + value.len() + 4);
        append_header(&mut line, name, value);
        self.head_len += line.len();
        self.out.splice(at..at, line);
    }

    /// Makes the head at the front of the output final, deciding keep-alive: its end is
    /// rewritten if the decision changed since the headers were set (the host is stopping,
    /// the connection closes after this response, a Content-Length was added).
    fn commit(&mut self, stopping: bool) {
        if self.committed || self.raw {
            return;
        }
        self.committed = true;
        self.keep = self.keeps_alive(stopping);
        if self.keep != self.head_says_keep {
            let said = head_end(self.head_says_keep, self.version);
            let end = self.head_len - said.len()..self.head_len;
            let decided = head_end(self.keep, self.version);
            self.out.splice(end, decided.iter().copied());
        }
        self.head_len = 0;
    }

    /// Body bytes from WriteClient (or TRANSMIT_FILE). Returns how many bytes beyond a
    /// declared Content-Length were dropped (the caller reports that as a violation).
    pub fn write_body(
        &mut self,
        w: &mut impl Write,
        data: &[u8],
        stopping: bool,
    ) -> io::Result<u64> {
        self.body_written += data.len() as u64;
        let mut keep = data;
        let mut dropped = 0;
        match self.framing {
            Framing::NoBody if !self.raw => keep = &[],
            Framing::Length { declared } if !self.raw => {
                let before = self.body_written - data.len() as u64;
                let room = declared.saturating_sub(before).min(data.len() as u64) as usize;
                dropped = (data.len() - room) as u64;
                keep = &data[..room];
            }
            _ => {}
        }
        self.out.extend_from_slice(keep);
        if self.flush_each_write || self.buffered_body() >= self.limit {
            self.flush(w, stopping)?;
        }
        Ok(dropped)
    }

    /// How many body bytes from a file (TRANSMIT_FILE) may now go straight to the socket,
    /// past this buffer: none unless the headers are out, every write is flushed anyway
    /// (HSE_REQ_SET_FLUSH_FLAG) and the framing passes them through; at most what a declared
    /// Content-Length leaves room for (the rest goes through [`write_body`](Response::write_body),
    /// which drops and reports it). What is buffered is flushed first.
    #[cfg(target_os = "linux")]
    pub fn file_room(&mut self, w: &mut impl Write, stopping: bool) -> io::Result<u64> {
        if !self.started() || !self.flush_each_write || self.raw {
            return Ok(0);
        }
        let room = match self.framing {
            Framing::NoBody => 0,
            Framing::Length { declared } => declared.saturating_sub(self.body_written),
            Framing::Chunked | Framing::UntilClose => u64::MAX,
        };
        if room > 0 {
            self.flush(w, stopping)?;
        }
        Ok(room)
    }

    /// Counts `n` body bytes sent straight from a file (after [`file_room`](Response::file_room)).
    #[cfg(target_os = "linux")]
    pub fn sent_from_file(&mut self, n: u64) {
        self.body_written += n;
        self.bytes_sent += n;
    }

    /// Raw output before any headers (IIS 6 passed it through unchanged). The connection
    /// is closed afterwards since the host cannot know the framing.
    pub fn write_raw(&mut self, w: &mut impl Write, data: &[u8], stopping: bool) -> io::Result<()> {
        self.raw = true;
        self.keep = false;
        self.committed = true;
        self.write_body(w, data, stopping).map(|_| ())
    }

    /// Sends everything buffered (committing the headers first).
    pub fn flush(&mut self, w: &mut impl Write, stopping: bool) -> io::Result<()> {
        if self.status.is_some() {
            self.commit(stopping);
        }
        if !self.out.is_empty() {
            let (sent, result) = write_counted(w, &self.out);
            self.bytes_sent += sent;
            self.out.clear();
            if result.is_err() {
                self.failed = true;
            }
            result?;
        }
        Ok(())
    }

    /// Ends the response: a default one if the extension sent nothing, the optional
    /// Content-Length for a fully buffered unframed response, then the final flush.
    pub fn finish(&mut self, w: &mut impl Write, error: bool, stopping: bool) -> io::Result<()> {
        self.end(w, error, stopping)?;
        self.flush(w, stopping)
    }

    /// [`finish`](Response::finish) but for the final flush: what is left to write is then
    /// written by [`flush`](Response::flush) or taken by [`take_unsent`](Response::take_unsent).
    pub fn end(&mut self, w: &mut impl Write, error: bool, stopping: bool) -> io::Result<()> {
        if !self.started() {
            let (code, status, body): (u16, &[u8], &[u8]) = if error {
                (
                    500,
                    b"500 Internal Server Error",
                    b"The ISAPI extension returned HSE_STATUS_ERROR.\r\n",
                )
            } else {
                (200, b"200 OK", b"")
            };
            let length = body.len().to_string();
            let mut headers = vec![(&b"Content-Length"[..], length.as_bytes())];
            if !body.is_empty() {
                headers.push((b"Content-Type", b"text/plain"));
            }
            self.set_headers(code, status, headers, !error);
            self.write_body(w, body, stopping)?;
        }
        if self.add_length_when_buffered && !self.committed && self.framing == Framing::UntilClose {
            let n = self.buffered_body() as u64;
            self.insert_header(b"Content-Length", n.to_string().as_bytes());
            self.framing = Framing::Length { declared: n };
        }
        // The head is final now: the keep-alive decision is known before the last write.
        if self.status.is_some() {
            self.commit(stopping);
        }
        Ok(())
    }

    /// The bytes waiting to be written (the head, if it is waiting too, and body).
    pub fn unsent_len(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes the final flush would write, for the caller to write later (and to
    /// count what of them goes out).
    pub fn take_unsent(&mut self, stopping: bool) -> Vec<u8> {
        if self.status.is_some() {
            self.commit(stopping);
        }
        std::mem::take(&mut self.out)
    }

    /// The request has ended: gives up the buffer of bytes waiting to be written (nothing
    /// more is sent), for the connection's next response. The ended exchange stays in its
    /// registry slot until the slot is reused (up to `--max-requests` of them), and each
    /// buffer kept there would hold as much as the request's largest write.
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.head_len = 0;
        self.committed = true;
        std::mem::take(&mut self.out)
    }

    /// Whether the extension stopped short of its declared Content-Length (the response
    /// is cut short). Not when a write failed first: then the client went away, and the
    /// extension could not have sent the rest.
    pub fn short_by(&self) -> Option<u64> {
        match self.framing {
            Framing::Length { declared }
                if !self.raw && !self.failed && self.body_written < declared =>
            {
                Some(declared - self.body_written)
            }
            _ => None,
        }
    }
}

/// Writes all of `data` as `write_all` does, and says how much of it went out before an
/// error: the access log counts the bytes put on the wire, not those that were ready.
pub fn write_counted(w: &mut impl Write, data: &[u8]) -> (u64, io::Result<()>) {
    let mut sent = 0;
    while sent < data.len() {
        match w.write(&data[sent..]) {
            Ok(0) => return (sent as u64, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (sent as u64, Err(e)),
        }
    }
    (sent as u64, Ok(()))
}

/// The end of a head: the host's `Connection` header (an extension's own is left out), then
/// the blank line. HTTP/1.1 keeps the connection open unless told; HTTP/1.0 closes it unless told.
fn head_end(keep: bool, version: Version) -> &'static [u8] {
    match (keep, version) {
        (false, _) => b"Connection: close\r\n\r\n",
        (true, Version::Http10) => b"Connection: keep-alive\r\n\r\n",
        (true, Version::Http11) => b"\r\n",
    }
}

/// Appends `name: value` and CRLF.
fn append_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The framing one header declares: a Content-Length that parses, or a Transfer-Encoding
/// ending with `chunked`.
fn declared_framing(name: &[u8], value: &[u8]) -> Option<Framing> {
    if name.eq_ignore_ascii_case(b"content-length") {
        let length = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
        Some(Framing::Length { declared: length })
    } else if name.eq_ignore_ascii_case(b"transfer-encoding")
        && value.len() >= 7
        && value[value.len() - 7..].eq_ignore_ascii_case(b"chunked")
    {
        Some(Framing::Chunked)
    } else {
        None
    }
}

/// Appends the current time as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted
/// at most once per second per thread.
pub fn append_http_date(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (secs, format_http_date(secs));
        }
        out.extend_from_slice(cache.1.as_bytes());
    })
}

fn format_http_date(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let (h, m, s) = ((secs % 86400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(month - 1) as usize],
        year,
        h,
        m,
        s
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn host_answers() {
        let a = String::from_utf8(host_answer(400, "Bad Request", "why", HTTP_API_SERVER)).unwrap();
        let (head, body) = a.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(
            lines[..2],
            ["HTTP/1.1 400 Bad Request", "Server: Microsoft-HTTPAPI/2.0"]
        );
        assert!(
            lines[2].starts_with("Date: ") && lines[2].ends_with(" GMT"),
            "{a}"
        );
        assert_eq!(lines[2].len(), "Date: ".len() + 29, "{a}");
        assert_eq!(
            lines[3..],
            [
                "Content-Type: text/plain; charset=utf-8",
                "Content-Length: 22",
                "Connection: close"
            ]
        );
        assert_eq!(body, "400 Bad Request: why\r\n");
    }

    /// The readable lines of a header block.
    fn readable(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
        crate::checker::header_lines(block).flatten()
    }

    fn text(v: &[u8]) -> String {
        String::from_utf8_lossy(v).into_owned()
    }

    /// The bytes on the wire for one response: `block` as the extension sent it, `body`
    /// written and the response finished; `late` runs between the headers and the body. The
    /// host's Date (a fresh one) is shown as `<date>`.
    fn wire(
        version: Version,
        keep_alive: bool,
        block: &[u8],
        body: &[u8],
        late: impl FnOnce(&mut Response),
        stopping: bool,
    ) -> String {
        let mut out = Vec::new();
        let mut r = Response::new(version, keep_alive, false, 1 << 20, "S", true);
        let (headers, problems): (Vec<_>, Vec<_>) =
            crate::checker::header_lines(block).partition(Result::is_ok);
        assert!(problems.len() <= 1, "{problems:?}");
        r.set_headers(200, b"200 OK", headers.into_iter().flatten(), true);
        late(&mut r);
        r.write_body(&mut out, body, stopping).unwrap();
        r.finish(&mut out, false, stopping).unwrap();
        let text = text(&out);
        let Some(start) = text.find("\r\nDate: ").map(|i| i + 8) else {
            return text;
        };
        let date = &text[start..start + 29];
        if date == "Sun, 06 Nov 1994 08:49:37 GMT" {
            return text;
        }
        assert!(
            date.ends_with(" GMT") && date.as_bytes()[3] == b',',
            "{text}"
        );
        format!("{}<date>{}", &text[..start], &text[start + 29..])
    }

    #[test]
    fn committed_heads() {
        use Version::{Http10, Http11};
        let none = |_: &mut Response| {};
        let case = |version, keep_alive, block: &[u8], stopping| {
            wire(version, keep_alive, block, b"hello", none, stopping)
        };
        let plain = b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\n";
        // Server and Date added before the extension's headers; keep-alive says nothing.
        assert_eq!(
            case(Http11, true, plain, false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        );
        // The extension's own Server and Date stay (neither added), in canonical form.
        assert_eq!(
            case(
                Http11,
                true,
                b"Server:Mine\r\nContent-Length: 5\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\nServer: Mine\r\nContent-Length: 5\r\n\
             Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nhello"
        );
        // Only a Server of its own: the host adds the Date.
        assert_eq!(
            case(
                Http11,
                true,
                b"SERVER: Mine\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\nDate: <date>\r\nSERVER: Mine\r\nContent-Length: 5\r\n\r\nhello"
        );
        // The extension's Connection: close ends keep-alive; its line is replaced by the host's.
        assert_eq!(
            case(
                Http11,
                true,
                b"Connection: close\r\nContent-Length: 5\r\nX-A:  b\r\n\r\n",
                false
            ),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\
             X-A:  b\r\nConnection: close\r\n\r\nhello"
        );
        // Its Connection: keep-alive is dropped; HTTP/1.0 keep-alive is said by the host.
        let keep = b"connection: keep-alive\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(
            case(Http11, true, keep, false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert_eq!(
            case(Http10, true, keep, false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\
             Connection: keep-alive\r\n\r\nhello"
        );
        assert_eq!(
            case(Http10, false, keep, false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello"
        );
        // Decided late: the host stopping, or a close after the headers were set.
        assert_eq!(
            case(Http10, true, keep, true),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\
             Connection: close\r\n\r\nhello"
        );
        assert_eq!(
            wire(Http11, true, plain, b"hello", Response::close_after, false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        );
        // Unframed: the buffered body's length added after the extension's headers.
        assert_eq!(
            case(Http10, true, b"X-A: 1\r\n\r\n", false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nX-A: 1\r\n\
             Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
        );
        // A line the checker refuses is left out; no block at all is a valid one.
        assert_eq!(
            case(Http11, true, b"X-Bad\r\nContent-Length: 5\r\n\r\n", false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert_eq!(
            case(Http11, true, b"", false),
            "HTTP/1.1 200 OK\r\nServer: S\r\nDate: <date>\r\nContent-Length: 5\r\n\r\nhello"
        );
        // The last of Content-Length and chunked decides the framing.
        let mut out = Vec::new();
        let mut r = Response::new(Http11, true, false, 1 << 20, "S", false);
        let headers = readable(b"Content-Length: 5\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
        r.set_headers(200, b"200 OK", headers, true);
        assert_eq!(r.framing, Framing::Chunked);
        let headers = readable(
            b"Transfer-Encoding: chunked\r\nContent-Length: x\r\nContent-Length: +7\r\n\r\n",
        );
        let mut r2 = Response::new(Http11, true, false, 1 << 20, "S", false);
        r2.set_headers(200, b"200 OK", headers, true);
        assert_eq!(r2.framing, Framing::Length { declared: 7 });
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep);
        // The response buffer counts body bytes only; the head goes out with the first flush,
        // decided then (the host stopping here), and later writes follow it.
        let mut out = Vec::new();
        let mut r = Response::new(Http11, true, false, 6, "S", false);
        r.set_headers(
            200,
            b"200 OK",
            readable(b"Content-Length: 10\r\n\r\n"),
            true,
        );
        r.write_body(&mut out, b"hello", true).unwrap();
        assert!(out.is_empty());
        r.write_body(&mut out, b"!", true).unwrap();
        r.write_body(&mut out, b"more", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(!r.keep);
        assert!(
            text(&out).ends_with("\r\nContent-Length: 10\r\nConnection: close\r\n\r\nhello!more"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn framing_decides_keep_alive() {
        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", false);
        r.set_headers(200, b"200 OK", [(&b"Content-Length"[..], &b"2"[..])], true);
        assert_eq!(r.write_body(&mut out, b"abc", false).unwrap(), 1);
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep);
        assert!(
            text(&out).ends_with("Content-Length: 2\r\n\r\nab"),
            "{}",
            text(&out)
        );

        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", false);
        r.set_headers(200, b"200 OK", [], true);
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(!r.keep);
        assert!(text(&out).contains("Connection: close\r\n"));

        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", true);
        r.set_headers(200, b"200 OK", [], true);
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep);
        assert!(text(&out).contains("Content-Length: 3\r\n"));

        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, true, 1 << 20, "S", false);
        r.set_headers(200, b"200 OK", [(&b"Content-Length"[..], &b"3"[..])], true);
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep && text(&out).ends_with("\r\n\r\n"));

        // HSE_IO_DISCONNECT_AFTER_SEND: framed, but closing, and the headers say so.
        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", false);
        r.set_headers(200, b"200 OK", [(&b"Content-Length"[..], &b"1"[..])], true);
        r.close_after();
        r.write_body(&mut out, b"a", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(!r.keep);
        assert!(
            text(&out).ends_with("Content-Length: 1\r\nConnection: close\r\n\r\na"),
            "{}",
            text(&out)
        );
    }
}
