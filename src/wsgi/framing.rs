//! What goes on the wire for a response, decided in plain Rust (no Python, no I/O), so that
//! every rule here is unit-tested on its own.
//!
//! * [`status_code`] and [`HeaderBlock`] check what the application passes to
//!   `start_response`: a status like `200 OK`, header names that are tokens, values with no
//!   control characters but HTAB (RFC 9110 §5.5), no hop-by-hop headers (PEP 3333), one
//!   Content-Length.
//! * [`Framing::choose`] decides, when the headers go out, how the body is delimited:
//!   - no body for HEAD, 204 and 304 (and no Content-Length on 204/304, RFC 9110 §8.6);
//!   - the application's own Content-Length is honoured;
//!   - when the whole body is known at that moment (a one-item list), Content-Length is
//!     added;
//!   - otherwise HTTP/1.1 clients get `Transfer-Encoding: chunked`, HTTP/1.0 clients the
//!     body followed by a closed connection.
//! * [`Body`] frames each piece and watches the declared length. PEP 3333 forbids sending
//!   more than Content-Length: a longer body is cut at the declared length (the response is
//!   complete and correct as framed, so the connection is kept and the rest dropped); a
//!   shorter body still goes out, and the connection is closed so that the client sees the
//!   truncation. Either way the mismatch is reported for the log.
//!
//! A final status of 1xx is refused: an interim status as the whole answer would leave the
//! client, or a proxy in front of IIS, waiting for the real response on a kept connection.
use super::spare;
use crate::isapi::decimal::decimal;
use crate::isapi::token::is_token_byte;
use std::borrow::Cow;

/// Headers only the server may set (PEP 3333: hop-by-hop headers).
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
];

/// The code of a status line such as `200 OK` (latin-1 bytes), or why it is refused.
pub fn status_code(status: &[u8]) -> Result<u16, StatusError> {
    let valid = status.len() >= 5
        && status[..3].iter().all(u8::is_ascii_digit)
        && status[0] != b'0'
        && status[3] == b' '
        && status[4..].iter().all(|&b| b >= 0x20 && b != 0x7f);
    if !valid {
        return Err(StatusError::Malformed);
    }
    let code = status[..3]
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    if code < 200 {
        return Err(StatusError::Interim(code));
    }
    Ok(code)
}

/// Why a status is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum StatusError {
    /// Not a 3-digit code, a space and a reason phrase.
    Malformed,
    /// A 1xx status, which cannot be a final response.
    Interim(u16),
}

/// What a header block gets when its first line goes in.
const HEADER_BLOCK_ROOM: usize = 256;

thread_local! {
    /// The thread's slots for a response's status line and header block (spare.rs): the
    /// next response's are written into the buffers of the last one whose [`Head`] was
    /// dropped on the thread, two allocations and frees fewer per response.
    static STATUS: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    static LINES: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty buffer for a status line of `length` bytes and its NUL: the thread's spare
/// when it has one.
pub fn status_buffer(length: usize) -> Vec<u8> {
    let mut buffer = spare::take(&STATUS);
    buffer.reserve(length + 1);
    buffer
}

/// A response's status line and header block as they go to the server, each with its NUL
/// (in the buffers they were built in: a `CString` would shrink them to size). Dropped, it
/// gives its buffers back to the thread for the next response.
pub struct Head {
    status: Vec<u8>,
    headers: Vec<u8>,
}

impl Head {
    /// `status` and `headers` as validated (no NUL in them), NUL-terminated here.
    pub fn new(mut status: Vec<u8>, mut headers: Vec<u8>) -> Head {
        status.push(0);
        headers.push(0);
        Head { status, headers }
    }

    pub fn status(&self) -> &std::ffi::CStr {
        std::ffi::CStr::from_bytes_with_nul(&self.status).unwrap_or_default()
    }

    pub fn headers(&self) -> &std::ffi::CStr {
        std::ffi::CStr::from_bytes_with_nul(&self.headers).unwrap_or_default()
    }
}

impl Drop for Head {
    fn drop(&mut self) {
        spare::give(&STATUS, std::mem::take(&mut self.status));
        spare::give(&LINES, std::mem::take(&mut self.headers));
    }
}

/// The application's headers as `Name: value\r\n` lines, checked one by one. The
/// Content-Length is kept aside: [`Framing::choose`] writes the one line the response gets.
#[derive(Default, Debug)]
pub struct HeaderBlock {
    lines: Vec<u8>,
    content_length: Option<u64>,
}

/// Why a response header is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// The name is empty or has a byte that is not a token character.
    Name,
    /// The value has a control character other than HTAB (CR and LF among them).
    Control,
    /// A hop-by-hop header, which only the server may set.
    HopByHop,
    /// Content-Length is not a decimal number.
    Length,
    /// A second Content-Length with another value.
    SecondLength,
}

impl HeaderBlock {
    /// Adds one header (latin-1 bytes, as PEP 3333's native strings encode).
    pub fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), HeaderError> {
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return Err(HeaderError::Name);
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HeaderError::Control);
        }
        if HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name)) {
            return Err(HeaderError::HopByHop);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let digits = value.trim_ascii();
            let length = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<u64>().ok())
                .ok_or(HeaderError::Length)?;
            if self.content_length.is_some_and(|earlier| earlier != length) {
                return Err(HeaderError::SecondLength);
            }
            self.content_length = Some(length);
            return Ok(());
        }
        // Room for a usual response's whole block at once (with the lines Framing::choose
        // adds), instead of growing it header by header.
        if self.lines.capacity() == 0 {
            self.lines = spare::take(&LINES);
            self.lines.reserve(HEADER_BLOCK_ROOM);
        }
        self.lines.reserve(name.len() + value.len() + 4);
        self.lines.extend_from_slice(name);
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// Adds a header the server makes itself, known to be valid (no checks).
    pub fn add_own(&mut self, name: &[u8], value: &[u8]) {
        debug_assert!(HeaderBlock::default().add(name, value).is_ok());
        self.lines.reserve(name.len() + value.len() + 4);
        self.lines.extend_from_slice(name);
        self.lines.extend_from_slice(b": ");
        self.lines.extend_from_slice(value);
        self.lines.extend_from_slice(b"\r\n");
    }

    /// The Content-Length the application declared.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Whether a header named `name` (any case) is in the block.
    pub fn has(&self, name: &[u8]) -> bool {
        self.lines.split(|&b| b == b'\n').any(|line| {
            line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name)
                && line[name.len()] == b':'
        })
    }
}

/// What the request allows the response to be.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// A HEAD request: headers only.
    pub head: bool,
    /// The client speaks HTTP/1.1 (chunked encoding available).
    pub http11: bool,
}

/// How the body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body is sent (HEAD, 204, 304).
    NoBody,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body ends when the connection closes (HTTP/1.0 without a length).
    UntilClose,
}

/// The decision made when the headers go out.
#[derive(Debug)]
pub struct Plan {
    /// The complete header block, ending with the blank line.
    pub headers: Vec<u8>,
    /// How the body is framed.
    pub body: Body,
    /// The connection may stay open after this response.
    pub keep_conn: bool,
    /// Each write must reach the client at once (IIS's flush flag): more body will follow
    /// later, or the connection closes right after this one.
    pub flush_each_write: bool,
}

impl Framing {
    /// Chooses the framing for a response with status `code` and the application's
    /// `headers`; `whole_body` is the body's length when all of it is known now.
    pub fn choose(
        request: Request,
        code: u16,
        headers: HeaderBlock,
        whole_body: Option<u64>,
    ) -> Plan {
        let HeaderBlock {
            lines: mut block,
            content_length: declared,
        } = headers;
        let bodiless = code == 204 || code == 304;
        let announced = if bodiless {
            None
        } else {
            declared.or(whole_body)
        };
        let framing = match announced {
            _ if bodiless => Framing::NoBody,
            Some(length) => Framing::Length(length),
            None if request.head => Framing::NoBody,
            None if request.http11 => Framing::Chunked,
            None => Framing::UntilClose,
        };
        if let Some(length) = announced {
            block.extend_from_slice(b"Content-Length: ");
            block.extend_from_slice(decimal(length, &mut [0; 20]));
            block.extend_from_slice(b"\r\n");
        }
        if framing == Framing::Chunked {
            block.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        block.extend_from_slice(b"\r\n");
        block.reserve_exact(1); // room for the NUL the ECB's C string needs
        // HEAD: the length the body would have had is announced; no byte of it is sent.
        let wire = if request.head {
            Framing::NoBody
        } else {
            framing
        };
        // A body known to be short is sent, then the connection closes: the client must
        // not wait for bytes that will never come, nor take the next response for them.
        // IIS would drop a buffered response on that close, so it is flushed like a stream.
        let short = wire != Framing::NoBody
            && matches!((declared, whole_body), (Some(d), Some(w)) if w < d);
        Plan {
            headers: block,
            flush_each_write: (whole_body.is_none() || short) && wire != Framing::NoBody,
            keep_conn: framing != Framing::UntilClose && !short,
            body: Body {
                framing: wire,
                sent: 0,
                complete: false,
                overrun: false,
            },
        }
    }
}

/// The body as it goes out: frames each piece, counts what was sent.
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    /// Body bytes the application produced (all of them, also those cut off).
    sent: u64,
    /// The declared length has been reached: later pieces are dropped.
    complete: bool,
    /// The application gave more than the declared length (reported once).
    overrun: bool,
}

/// A piece of the body that the server sends from a file: [`Body::range`].
#[derive(Debug, PartialEq, Eq)]
pub struct Range {
    /// File bytes to send (0: none, e.g. for HEAD).
    pub send: u64,
    /// Body bytes the piece stands for (HEAD counts what it would have sent).
    counted: u64,
    /// Sent before the file's bytes: a chunk's size line.
    pub head: Vec<u8>,
    /// Sent after them: a chunk's CRLF.
    pub tail: &'static [u8],
}

/// A body that broke its declared Content-Length.
#[derive(Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The application produced more than `declared` bytes; the rest was not sent.
    Longer { declared: u64 },
    /// The body ended after `sent` of `declared` bytes.
    Shorter { sent: u64, declared: u64 },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Longer { declared } => write!(
                f,
                "the application sent more than its Content-Length of {declared} bytes; \
                 the rest was not sent"
            ),
            Mismatch::Shorter { sent, declared } => write!(
                f,
                "the application's body ended after {sent} of the {declared} bytes its \
                 Content-Length announced; the connection is closed"
            ),
        }
    }
}

impl Body {
    /// The bytes to write for `data`, and a mismatch the first time the body overruns its
    /// declared length.
    pub fn frame<'d>(&mut self, data: &'d [u8]) -> (Cow<'d, [u8]>, Option<Mismatch>) {
        let before = self.sent;
        self.sent += data.len() as u64;
        match self.framing {
            Framing::NoBody => (Cow::Borrowed(&[]), None),
            Framing::UntilClose => (Cow::Borrowed(data), None),
            Framing::Chunked if data.is_empty() => (Cow::Borrowed(&[]), None),
            Framing::Chunked => {
                let mut chunk = Vec::with_capacity(data.len() + 12);
                chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                chunk.extend_from_slice(data);
                chunk.extend_from_slice(b"\r\n");
                (Cow::Owned(chunk), None)
            }
            Framing::Length(declared) => {
                let room = declared.saturating_sub(before);
                if data.len() as u64 <= room {
                    self.complete = self.sent == declared;
                    return (Cow::Borrowed(data), None);
                }
                self.complete = true;
                let cut = &data[..room as usize];
                let first = !std::mem::replace(&mut self.overrun, true);
                (
                    Cow::Borrowed(cut),
                    first.then_some(Mismatch::Longer { declared }),
                )
            }
        }
    }

    /// How `length` bytes that the server sends from a file (wsgi.file_wrapper) go out as
    /// the next piece: how many of them (never more than a declared Content-Length leaves
    /// room for: the application asked for exactly that many, so the rest is not an
    /// overrun) and the framing around them. Nothing is counted until [`commit`](Body::commit).
    pub fn range(&self, length: u64) -> Range {
        let (send, counted) = match self.framing {
            Framing::NoBody => (0, length),
            Framing::Length(declared) => {
                let send = length.min(declared.saturating_sub(self.sent));
                (send, send)
            }
            Framing::Chunked | Framing::UntilClose => (length, length),
        };
        let chunked = self.framing == Framing::Chunked && send > 0;
        Range {
            send,
            counted,
            head: if chunked {
                format!("{send:x}\r\n").into_bytes()
            } else {
                Vec::new()
            },
            tail: if chunked { b"\r\n" } else { b"" },
        }
    }

    /// Counts a range sent by the server.
    pub fn commit(&mut self, range: &Range) {
        self.sent += range.counted;
        if let Framing::Length(declared) = self.framing {
            self.complete = self.sent >= declared;
        }
    }

    /// The bytes that end the body (the chunked terminator), and a mismatch if it fell
    /// short of its declared length.
    pub fn finish(&mut self) -> (&'static [u8], Option<Mismatch>) {
        match self.framing {
            Framing::Chunked => (b"0\r\n\r\n", None),
            Framing::Length(declared) if self.sent < declared => (
                b"",
                Some(Mismatch::Shorter {
                    sent: self.sent,
                    declared,
                }),
            ),
            _ => (b"", None),
        }
    }

    /// Whether the declared length was reached (later pieces would be dropped).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// Whether the application gave more than the declared length: the rest of the body
    /// would only be dropped.
    pub fn overrun(&self) -> bool {
        self.overrun
    }

    /// How the body is framed on the wire.
    pub fn framing(&self) -> Framing {
        self.framing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_built_in_a_previous_responses_buffers_has_only_its_own_lines() {
        let mut first = HeaderBlock::default();
        first.add(b"X-Long", "a".repeat(300).as_bytes()).unwrap();
        first.add(b"Set-Cookie", b"k=v").unwrap();
        let mut status = status_buffer(24);
        status.extend_from_slice(b"404 Not Found, and more");
        let head = Head::new(status, first.lines);
        let capacity = head.headers.capacity();
        drop(head);
        // The same thread: the next response's buffers are the first one's, emptied.
        let mut second = HeaderBlock::default();
        second.add(b"Content-Type", b"text/plain").unwrap();
        assert_eq!(second.lines.capacity(), capacity);
        let mut status = status_buffer(6);
        status.extend_from_slice(b"200 OK");
        let head = Head::new(status, second.lines);
        assert_eq!(head.status(), c"200 OK");
        assert_eq!(head.headers(), c"Content-Type: text/plain\r\n");
    }

    const GET11: Request = Request {
        head: false,
        http11: true,
    };

    fn block(headers: &[(&str, &str)]) -> HeaderBlock {
        let mut block = HeaderBlock::default();
        for (name, value) in headers {
            block.add(name.as_bytes(), value.as_bytes()).unwrap();
        }
        block
    }

    fn text(plan: &Plan) -> &str {
        std::str::from_utf8(&plan.headers).unwrap()
    }

    #[test]
    fn a_file_range_is_cut_to_the_declared_length_and_chunked_when_streamed() {
        // Content-Length declared: exactly that many bytes of a longer file, no overrun.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "10")]), Some(100));
        let range = plan.body.range(100);
        assert_eq!(
            (range.send, &range.head[..], range.tail),
            (10, &b""[..], &b""[..])
        );
        plan.body.commit(&range);
        assert!(plan.body.complete() && !plan.body.overrun());
        assert_eq!(plan.body.finish(), (&b""[..], None));
        // A shorter file: all of it, and the body is short.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "10")]), Some(4));
        let range = plan.body.range(4);
        plan.body.commit(&range);
        assert_eq!(
            plan.body.finish().1,
            Some(Mismatch::Shorter {
                sent: 4,
                declared: 10
            })
        );
        // After write() started a chunked body: one chunk around the file.
        let mut plan = Framing::choose(GET11, 200, HeaderBlock::default(), None);
        let _ = plan.body.frame(b"abc");
        let range = plan.body.range(300);
        assert_eq!(
            (range.send, &range.head[..], range.tail),
            (300, &b"12c\r\n"[..], &b"\r\n"[..])
        );
        // HEAD: nothing of the file goes out.
        let head = Request {
            head: true,
            http11: true,
        };
        let plan = Framing::choose(head, 200, HeaderBlock::default(), Some(50));
        assert!(text(&plan).contains("Content-Length: 50"));
        assert_eq!(plan.body.range(50).send, 0);
    }

    #[test]
    fn statuses() {
        assert_eq!(status_code(b"200 OK"), Ok(200));
        assert_eq!(status_code(b"599 Whatever it is"), Ok(599));
        for bad in [
            &b"OK"[..],
            b"200",
            b"200OK",
            b"2000 OK",
            b"020 OK",
            b"200 O\x7f",
            b"200 \rK",
        ] {
            assert_eq!(status_code(bad), Err(StatusError::Malformed), "{bad:?}");
        }
        assert_eq!(status_code(b"100 Continue"), Err(StatusError::Interim(100)));
        assert_eq!(
            status_code(b"101 Switching Protocols"),
            Err(StatusError::Interim(101))
        );
        assert_eq!(
            status_code(b"103 Early Hints"),
            Err(StatusError::Interim(103))
        );
    }

    #[test]
    fn header_values_allow_htab_and_obs_text_but_no_other_control() {
        let mut headers = HeaderBlock::default();
        assert_eq!(headers.add(b"X-Tab", b"a\tb"), Ok(()));
        assert_eq!(headers.add(b"X-Latin", b"caf\xe9"), Ok(()));
        for byte in (0u8..0x20).filter(|&b| b != b'\t').chain([0x7f]) {
            assert_eq!(
                headers.add(b"X-Bad", &[b'a', byte, b'b']),
                Err(HeaderError::Control),
                "byte {byte:#x}"
            );
        }
        assert_eq!(headers.add(b"", b"x"), Err(HeaderError::Name));
        assert_eq!(headers.add(b"X Y", b"x"), Err(HeaderError::Name));
        assert_eq!(headers.add(b"X:Y", b"x"), Err(HeaderError::Name));
        assert_eq!(
            headers.add(b"Transfer-Encoding", b"x"),
            Err(HeaderError::HopByHop)
        );
        assert_eq!(
            headers.add(b"connection", b"close"),
            Err(HeaderError::HopByHop)
        );
        assert_eq!(&headers.lines, b"X-Tab: a\tb\r\nX-Latin: caf\xe9\r\n");
        assert!(headers.has(b"x-latin") && headers.has(b"X-Tab") && !headers.has(b"X-T"));
    }

    #[test]
    fn one_content_length_line_however_often_the_app_gave_it() {
        let headers = block(&[
            ("Content-Length", "3"),
            ("X-A", "1"),
            ("content-length", " 3 "),
        ]);
        let plan = Framing::choose(GET11, 200, headers, None);
        assert_eq!(text(&plan), "X-A: 1\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(plan.body.framing(), Framing::Length(3));
        assert!(plan.keep_conn && plan.flush_each_write);

        let mut headers = block(&[("Content-Length", "3")]);
        assert_eq!(
            headers.add(b"Content-Length", b"4"),
            Err(HeaderError::SecondLength)
        );
        assert_eq!(
            headers.add(b"Content-Length", b"-1"),
            Err(HeaderError::Length)
        );
        assert_eq!(
            headers.add(b"Content-Length", b"0x3"),
            Err(HeaderError::Length)
        );
        assert_eq!(
            headers.add(b"Content-Length", b""),
            Err(HeaderError::Length)
        );
    }

    #[test]
    fn no_body_and_no_content_length_on_204_and_304() {
        for code in [204, 304] {
            let headers = block(&[("Content-Length", "5"), ("ETag", "\"x\"")]);
            let mut plan = Framing::choose(GET11, code, headers, Some(5));
            assert_eq!(text(&plan), "ETag: \"x\"\r\n\r\n", "{code}");
            assert_eq!(plan.body.framing(), Framing::NoBody);
            assert!(plan.keep_conn && !plan.flush_each_write);
            assert_eq!(plan.body.frame(b"hello").0.as_ref(), b"");
            assert_eq!(plan.body.finish(), (&b""[..], None));
        }
    }

    #[test]
    fn the_framing_follows_what_is_known() {
        // The whole body known: its length.
        let plan = Framing::choose(GET11, 200, block(&[]), Some(13));
        assert_eq!(text(&plan), "Content-Length: 13\r\n\r\n");
        assert!(plan.keep_conn && !plan.flush_each_write);
        // Streamed to an HTTP/1.1 client: chunked.
        let mut plan = Framing::choose(GET11, 200, block(&[]), None);
        assert_eq!(text(&plan), "Transfer-Encoding: chunked\r\n\r\n");
        assert!(plan.keep_conn && plan.flush_each_write);
        assert_eq!(plan.body.frame(b"hello").0.as_ref(), b"5\r\nhello\r\n");
        assert_eq!(plan.body.frame(b"").0.as_ref(), b"");
        assert_eq!(plan.body.finish(), (&b"0\r\n\r\n"[..], None));
        // Streamed to an HTTP/1.0 client: until the connection closes.
        let http10 = Request {
            head: false,
            http11: false,
        };
        let mut plan = Framing::choose(http10, 200, block(&[]), None);
        assert_eq!(text(&plan), "\r\n");
        assert!(!plan.keep_conn && plan.flush_each_write);
        assert_eq!(plan.body.frame(b"hello").0.as_ref(), b"hello");
    }

    #[test]
    fn head_announces_the_length_and_sends_nothing() {
        let head = Request {
            head: true,
            http11: true,
        };
        let mut plan = Framing::choose(head, 200, block(&[]), Some(13));
        assert_eq!(text(&plan), "Content-Length: 13\r\n\r\n");
        assert!(plan.keep_conn && !plan.flush_each_write);
        assert_eq!(plan.body.frame(b"Hello, World!").0.as_ref(), b"");
        // Without a length, HEAD gets neither a length nor chunked framing.
        let plan = Framing::choose(head, 200, block(&[]), None);
        assert_eq!(text(&plan), "\r\n");
        assert!(plan.keep_conn && !plan.flush_each_write);
    }

    #[test]
    fn a_longer_body_is_cut_at_the_declared_length_and_the_connection_kept() {
        // Known at once (declares 1, returns a whole file).
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "1")]), Some(9));
        assert!(plan.keep_conn);
        let (bytes, mismatch) = plan.body.frame(b"123456789");
        assert_eq!(bytes.as_ref(), b"1");
        assert_eq!(mismatch, Some(Mismatch::Longer { declared: 1 }));
        assert!(plan.body.complete());
        assert_eq!(plan.body.finish(), (&b""[..], None));
        // Streamed: the piece that overruns is cut, later pieces dropped, reported once.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "3")]), None);
        assert_eq!(plan.body.frame(b"12").0.as_ref(), b"12");
        let (bytes, mismatch) = plan.body.frame(b"3456");
        assert_eq!(
            (bytes.as_ref(), mismatch),
            (&b"3"[..], Some(Mismatch::Longer { declared: 3 }))
        );
        assert!(plan.body.overrun());
        assert_eq!(plan.body.frame(b"789"), (Cow::Borrowed(&b""[..]), None));
        // Reaching the length exactly is not an overrun; the next non-empty piece is.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "3")]), None);
        assert_eq!(plan.body.frame(b"123"), (Cow::Borrowed(&b"123"[..]), None));
        assert!(plan.body.complete() && !plan.body.overrun());
        assert_eq!(plan.body.frame(b""), (Cow::Borrowed(&b""[..]), None));
        assert!(!plan.body.overrun());
        let (bytes, mismatch) = plan.body.frame(b"4");
        assert_eq!(
            (bytes.as_ref(), mismatch),
            (&b""[..], Some(Mismatch::Longer { declared: 3 }))
        );
        assert_eq!(plan.body.finish(), (&b""[..], None));
    }

    #[test]
    fn a_shorter_body_goes_out_and_the_connection_closes() {
        // Known at once: the connection is not kept.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "10")]), Some(9));
        assert_eq!(text(&plan), "Content-Length: 10\r\n\r\n");
        assert!(!plan.keep_conn && plan.flush_each_write);
        assert_eq!(plan.body.frame(b"123456789").0.as_ref(), b"123456789");
        assert_eq!(
            plan.body.finish().1,
            Some(Mismatch::Shorter {
                sent: 9,
                declared: 10
            })
        );
        // Streamed: found at the end.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "10")]), None);
        assert!(plan.keep_conn);
        assert_eq!(plan.body.frame(b"12345").0.as_ref(), b"12345");
        assert_eq!(
            plan.body.finish().1,
            Some(Mismatch::Shorter {
                sent: 5,
                declared: 10
            })
        );
        // Exactly the declared length: nothing to report.
        let mut plan = Framing::choose(GET11, 200, block(&[("Content-Length", "5")]), None);
        assert_eq!(plan.body.frame(b"12345").1, None);
        assert!(plan.body.complete());
        assert_eq!(plan.body.finish(), (&b""[..], None));
    }
}
