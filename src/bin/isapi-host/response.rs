//! The response side of one request: headers as the extension gave them, the response
//! buffer, and the framing decision IIS 7+ makes.
//!
//! * IIS never chunks an extension's output. If the headers carry neither Content-Length
//!   nor `Transfer-Encoding: chunked` (and the response can have a body), the host sends
//!   `Connection: close` and ends the body by closing (facts §4.2). `--buffered-content-length`
//!   instead adds a Content-Length when the whole response is still in the buffer at the
//!   end (IIS's behaviour there is unconfirmed).
//! * Output is buffered up to `--response-buffer` bytes unless the extension has set
//!   HSE_REQ_SET_FLUSH_FLAG; the status line and headers go out with the first flush.
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
    /// Status and parsed header lines from the extension, once sent.
    status: Option<(u16, Vec<u8>)>,
    headers: Vec<(String, Vec<u8>)>,
    /// fKeepConn (HSE_SEND_HEADER_EX_INFO) or false for the old SEND_RESPONSE_HEADER.
    keep_conn_requested: bool,
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
            headers: Vec::new(),
            keep_conn_requested: false,
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

    /// Whether the extension has sent its headers (or written raw output).
    pub fn started(&self) -> bool {
        self.status.is_some() || self.raw
    }

    pub fn status_code(&self) -> Option<u16> {
        self.status.as_ref().map(|(c, _)| *c)
    }

    /// Records the extension's status line and headers.
    pub fn set_headers(
        &mut self,
        code: u16,
        status: &[u8],
        headers: Vec<(String, Vec<u8>)>,
        keep_conn: bool,
    ) {
        let no_body = self.head_request || (100..200).contains(&code) || code == 204 || code == 304;
        let mut framing = Framing::UntilClose;
        for (name, value) in &headers {
            if name.eq_ignore_ascii_case("content-length") {
                if let Some(n) = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    framing = Framing::Length { declared: n };
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.to_ascii_lowercase().ends_with(b"chunked")
            {
                framing = Framing::Chunked;
            }
        }
        self.framing = if no_body { Framing::NoBody } else { framing };
        self.status = Some((code, status.to_vec()));
        self.headers = headers;
        self.keep_conn_requested = keep_conn;
    }

    /// The connection will close after this response: headers not yet sent get
    /// `Connection: close`.
    pub fn close_after(&mut self) {
        self.closing = true;
        self.keep = false;
    }

    /// Puts the status line and headers at the front of the output, deciding keep-alive.
    fn commit(&mut self, stopping: bool) {
        if self.committed || self.raw {
            return;
        }
        self.committed = true;
        let extension_says_close = self
            .headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case(b"close"));
        self.keep = self.client_keep_alive
            && self.keep_conn_requested
            && !extension_says_close
            && !stopping
            && !self.closing
            && self.framing != Framing::UntilClose;
        let (_, status) = self.status.as_ref().expect("commit after set_headers");
        let mut head = Vec::with_capacity(
            160 + self
                .headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
        );
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(status);
        head.extend_from_slice(b"\r\n");
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        if !has("server") {
            head.extend_from_slice(b"Server: ");
            head.extend_from_slice(self.server.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if !has("date") {
            head.extend_from_slice(b"Date: ");
            append_http_date(&mut head);
            head.extend_from_slice(b"\r\n");
        }
        for (name, value) in &self.headers {
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        if !self.keep {
            head.extend_from_slice(b"Connection: close\r\n");
        } else if self.version == Version::Http10 {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        head.extend_from_slice(b"\r\n");
        // Headers go before any body bytes already buffered.
        head.extend_from_slice(&self.out);
        self.out = head;
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
        if self.flush_each_write || self.out.len() >= self.limit {
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
            let result = w.write_all(&self.out);
            self.bytes_sent += self.out.len() as u64;
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
            let length = body.len().to_string().into_bytes();
            let mut headers = vec![("Content-Length".to_string(), length)];
            if !body.is_empty() {
                headers.push(("Content-Type".to_string(), b"text/plain".to_vec()));
            }
            self.set_headers(code, status, headers, !error);
            self.write_body(w, body, stopping)?;
        }
        if self.add_length_when_buffered && !self.committed && self.framing == Framing::UntilClose {
            let n = self.out.len() as u64;
            self.headers
                .push(("Content-Length".to_string(), n.to_string().into_bytes()));
            self.framing = Framing::Length { declared: n };
        }
        self.flush(w, stopping)
    }

    /// The request has ended: frees the buffer of bytes waiting to be written (nothing
    /// more is sent). The ended exchange stays in its registry slot until the slot is
    /// reused (up to `--max-requests` of them), and each kept buffer would hold as much as
    /// the request's largest write.
    pub fn free_buffer(&mut self) {
        self.out = Vec::new();
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
        let (headers, problems) = crate::checker::parse_header_block(block);
        assert!(problems.len() <= 1, "{problems:?}");
        r.set_headers(200, b"200 OK", headers, true);
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
        let (headers, _) = crate::checker::parse_header_block(
            b"Content-Length: 5\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        );
        r.set_headers(200, b"200 OK", headers, true);
        assert_eq!(r.framing, Framing::Chunked);
        let (headers, _) = crate::checker::parse_header_block(
            b"Transfer-Encoding: chunked\r\nContent-Length: x\r\nContent-Length: +7\r\n\r\n",
        );
        let mut r2 = Response::new(Http11, true, false, 1 << 20, "S", false);
        r2.set_headers(200, b"200 OK", headers, true);
        assert_eq!(r2.framing, Framing::Length { declared: 7 });
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep);
    }

    #[test]
    fn framing_decides_keep_alive() {
        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", false);
        r.set_headers(
            200,
            b"200 OK",
            vec![("Content-Length".into(), b"2".to_vec())],
            true,
        );
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
        r.set_headers(200, b"200 OK", vec![], true);
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(!r.keep);
        assert!(text(&out).contains("Connection: close\r\n"));

        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", true);
        r.set_headers(200, b"200 OK", vec![], true);
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep);
        assert!(text(&out).contains("Content-Length: 3\r\n"));

        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, true, 1 << 20, "S", false);
        r.set_headers(
            200,
            b"200 OK",
            vec![("Content-Length".into(), b"3".to_vec())],
            true,
        );
        r.write_body(&mut out, b"abc", false).unwrap();
        r.finish(&mut out, false, false).unwrap();
        assert!(r.keep && text(&out).ends_with("\r\n\r\n"));

        // HSE_IO_DISCONNECT_AFTER_SEND: framed, but closing, and the headers say so.
        let mut out = Vec::new();
        let mut r = Response::new(Version::Http11, true, false, 1 << 20, "S", false);
        r.set_headers(
            200,
            b"200 OK",
            vec![("Content-Length".into(), b"1".to_vec())],
            true,
        );
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
