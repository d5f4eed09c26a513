//! The HTTP/1.1 request parser: bytes from the client in, a [`RequestHead`] or an error
//! status out.
//!
//! This is the part of http.sys the host reproduces: it reads the request line and the
//! header block, applies the size limits (414 for an oversized request line, 431 for an
//! oversized header block, 400 for anything malformed), and decodes chunked request
//! bodies ([`ChunkedDecoder`], strictly: loose chunk framing is how requests are smuggled
//! past a proxy). It never panics and never allocates more than the limits
//! allow, whatever the input; a fuzz test in `tests/host_malformed.rs`, the unit tests
//! below and the cargo-fuzz targets in `fuzz/` (which compile this file with leftovers.rs
//! beside it and no other host module, so it must use no other `crate::` path) hold it
//! to that.

use crate::leftovers;
use isapi_wsgi::isapi::token::is_token_byte;
use std::borrow::Cow;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Size limits applied while parsing (command-line options `--max-request-line` and
/// `--max-header-bytes`).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The longest accepted request line, in bytes, CRLF excluded.
    pub request_line: usize,
    /// The largest accepted header block (all header lines together), in bytes.
    pub header_bytes: usize,
}

/// HTTP/1.0 or HTTP/1.1 (the only versions this server speaks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the request body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request line and header block.
#[derive(Clone, Debug)]
pub struct RequestHead {
    /// The method as sent (methods are case-sensitive); the usual ones cost no allocation.
    pub method: Cow<'static, str>,
    /// The request target exactly as sent (origin form `/path?query`, or `*`); of an
    /// absolute-form target (`http://host/path?query`) only the path and query.
    pub target: String,
    /// The authority of an absolute-form target, which wins over the Host header (RFC 9112
    /// §3.2.2); validated like Host.
    pub authority: Option<String>,
    pub version: Version,
    /// Header names as sent, values with surrounding whitespace removed, in order.
    pub headers: HeaderFields,
    pub body: BodyKind,
    /// Whether the client allows the connection to stay open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent (HTTP/1.1 only).
    pub expect_continue: bool,
}

/// A request's header lines, in order: the names as sent (token characters, hence ASCII)
/// one after the other in one string, the values (surrounding whitespace removed) in one
/// byte buffer, and where each ends: three allocations for any number of headers, where a
/// name and a value each would take two per header.
#[derive(Clone, Debug, Default)]
pub struct HeaderFields {
    names: String,
    values: Vec<u8>,
    /// Where each field's name ends in `names` and its value in `values`.
    ends: Vec<(u32, u32)>,
}

/// The buffers of a [`HeaderFields`] that was dropped, emptied, for the next request head
/// parsed on the same thread.
type SpareFields = (String, Vec<u8>, Vec<(u32, u32)>);

thread_local! {
    /// The header buffers of requests that ended on this thread ([`SPARES_KEPT`] at most,
    /// taken and kept through leftovers.rs): a keep-alive connection's next head is parsed into its predecessor's
    /// buffers, three allocations and three frees fewer per request.
    static SPARE_FIELDS: RefCell<Vec<SpareFields>> = const { RefCell::new(Vec::new()) };
}

/// How many emptied buffer sets a thread keeps (the next head may be parsed before the last
/// one is dropped), and the largest buffer of a set kept (a head with unusually large or many
/// headers does not pin its memory to the thread).
const SPARES_KEPT: usize = 4;
const SPARE_BYTES_LIMIT: usize = 8 * 1024;

impl HeaderFields {
    /// Room for a usual request's header lines, so that they do not grow line by line: a
    /// spare set of this thread's, or new buffers.
    fn with_room() -> HeaderFields {
        match leftovers::take(&SPARE_FIELDS) {
            Some((names, values, ends)) => HeaderFields {
                names,
                values,
                ends,
            },
            None => HeaderFields {
                names: String::with_capacity(160),
                values: Vec::with_capacity(512),
                ends: Vec::with_capacity(16),
            },
        }
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        // The head is at most `--max-header-bytes` long, far below 4 GiB.
        self.ends
            .push((self.names.len() as u32, self.values.len() as u32));
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The fields in order: (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> + '_ {
        let mut start = (0, 0);
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (name_start, value_start) = std::mem::replace(&mut start, (name_end, value_end));
            (
                &self.names[name_start as usize..name_end as usize],
                &self.values[value_start as usize..value_end as usize],
            )
        })
    }
}

impl RequestHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The host the request is for, `host[:port]` (valid by RFC 3986): an absolute-form
    /// target's authority, else the Host header (possibly empty), else None (HTTP/1.0).
    pub fn host(&self) -> Option<&[u8]> {
        match &self.authority {
            Some(a) => Some(a.as_bytes()),
            None => self.header("host"),
        }
    }

    /// The target's path part (before `?`).
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(p, _)| p)
    }

    /// The target's query part (after the first `?`, not decoded), or "".
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

impl Drop for HeaderFields {
    /// Gives the buffers, emptied, to this thread's spares (see [`HeaderFields::with_room`]).
    fn drop(&mut self) {
        let largest = (self.names.capacity())
            .max(self.values.capacity())
            .max(self.ends.capacity() * std::mem::size_of::<(u32, u32)>());
        if self.values.capacity() == 0 || largest > SPARE_BYTES_LIMIT {
            return;
        }
        let mut spare = (
            std::mem::take(&mut self.names),
            std::mem::take(&mut self.values),
            std::mem::take(&mut self.ends),
        );
        spare.0.clear();
        spare.1.clear();
        spare.2.clear();
        leftovers::keep(&SPARE_FIELDS, spare, SPARES_KEPT);
    }
}

/// Why a request cannot be served; each maps to the status the host answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// 400: malformed syntax; the message says what.
    BadRequest(&'static str),
    /// 414: the request line is longer than [`Limits::request_line`].
    UriTooLong,
    /// 431: the header block is larger than [`Limits::header_bytes`].
    HeadersTooLarge,
    /// 501: a transfer coding other than `chunked`.
    NotImplemented(&'static str),
    /// 505: not HTTP/1.0 or HTTP/1.1.
    VersionNotSupported,
}

impl HttpError {
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            HttpError::BadRequest(_) => (400, "Bad Request"),
            HttpError::UriTooLong => (414, "URI Too Long"),
            HttpError::HeadersTooLarge => (431, "Request Header Fields Too Large"),
            HttpError::NotImplemented(_) => (501, "Not Implemented"),
            HttpError::VersionNotSupported => (505, "HTTP Version Not Supported"),
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            HttpError::BadRequest(m) | HttpError::NotImplemented(m) => m,
            HttpError::UriTooLong => "request line too long",
            HttpError::HeadersTooLarge => "request header block too large",
            HttpError::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are supported",
        }
    }
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug)]
pub enum Parsed {
    /// A whole request head, and how many bytes of the input it used.
    Complete(RequestHead, usize),
    /// Not enough bytes yet (and no limit exceeded): read more.
    Incomplete,
}

/// Finds the end of the line starting at `from`: returns (end of content, start of next
/// line). Accepts CRLF and a bare LF (RFC 9112 §2.2 allows a recipient to).
fn line_end(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let lf = buf[from..].iter().position(|&b| b == b'\n')? + from;
    let end = if lf > from && buf[lf - 1] == b'\r' {
        lf - 1
    } else {
        lf
    };
    Some((end, lf + 1))
}

/// Parses one request head from the start of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Parsed, HttpError> {
    // Empty lines before a request line are ignored (RFC 9112 §2.2), within reason.
    let mut start = 0;
    while start < buf.len() && (buf[start] == b'\r' || buf[start] == b'\n') {
        start += 1;
        if start > 64 {
            return Err(HttpError::BadRequest(
                "too many empty lines before the request",
            ));
        }
    }
    let Some((line_stop, mut pos)) = line_end(buf, start) else {
        // A CR received last may be the start of the line's CRLF: it is not part of the
        // line, whose length the limit is about (else a head that arrives in pieces could
        // be refused where the same head in one piece is not).
        let line = &buf[start..];
        let received = line.len() - usize::from(line.ends_with(b"\r"));
        if received > limits.request_line {
            return Err(HttpError::UriTooLong);
        }
        return Ok(Parsed::Incomplete);
    };
    if line_stop - start > limits.request_line {
        return Err(HttpError::UriTooLong);
    }
    let (method, target, authority, version) = parse_request_line(&buf[start..line_stop])?;

    let mut headers = HeaderFields::with_room();
    let header_start = pos;
    loop {
        let Some((stop, next)) = line_end(buf, pos) else {
            if buf.len() - header_start > limits.header_bytes {
                return Err(HttpError::HeadersTooLarge);
            }
            return Ok(Parsed::Incomplete);
        };
        if next - header_start > limits.header_bytes {
            return Err(HttpError::HeadersTooLarge);
        }
        let line = &buf[pos..stop];
        pos = next;
        if line.is_empty() {
            break;
        }
        if line.contains(&b'\r') {
            return Err(HttpError::BadRequest("bare CR in a header line"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(HttpError::BadRequest("obsolete header line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(HttpError::BadRequest("header line without a colon"))?;
        let name = &line[..colon];
        // Token characters are ASCII, so a valid name is a str.
        let name = match std::str::from_utf8(name) {
            Ok(name) if !name.is_empty() && name.bytes().all(is_token_byte) => name,
            _ => return Err(HttpError::BadRequest("invalid header name")),
        };
        let value = trim_ows(&line[colon + 1..]);
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(HttpError::BadRequest("control character in a header value"));
        }
        if headers.len() >= 1000 {
            return Err(HttpError::HeadersTooLarge);
        }
        headers.push(name, value);
    }

    let mut head = interpret(method, target, version, headers)?;
    head.authority = authority;
    Ok(Parsed::Complete(head, pos))
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The request line's method, target (of an absolute-form target its path and query),
/// the absolute form's authority, and version.
#[allow(clippy::type_complexity)]
fn parse_request_line(
    line: &[u8],
) -> Result<(Cow<'static, str>, String, Option<String>, Version), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest(
            "request line is not METHOD SP TARGET SP VERSION",
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(HttpError::BadRequest("invalid method"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        v if v.len() == 8
            && v.starts_with(b"HTTP/")
            && v[5].is_ascii_digit()
            && v[6] == b'.'
            && v[7].is_ascii_digit() =>
        {
            return Err(HttpError::VersionNotSupported);
        }
        _ => return Err(HttpError::BadRequest("invalid HTTP version")),
    };
    if target.is_empty() || target.iter().any(|&b| b <= 0x20 || b >= 0x7f) {
        return Err(HttpError::BadRequest("invalid request target"));
    }
    let mut authority = None;
    let target = if target[0] == b'/' || target == b"*" {
        target.to_vec()
    } else if let Some(rest) = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
    {
        // Absolute form (sent to proxies): the authority, then the path and query (no
        // fragment: `#` is not allowed in a request target).
        let end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?' || b == b'#')
            .unwrap_or(rest.len());
        let (host, path) = rest.split_at(end);
        // An http(s) URI has a non-empty host (RFC 9110 §4.2.1) and no userinfo (§4.2.4:
        // `@` is no authority byte here).
        if matches!(host.first(), None | Some(b':')) || !is_valid_authority(host) {
            return Err(HttpError::BadRequest(INVALID_HOSTNAME));
        }
        authority = Some(String::from_utf8_lossy(host).into_owned());
        match path.first() {
            Some(b'/') => path.to_vec(),
            Some(b'?') => [b"/".as_slice(), path].concat(),
            Some(_) => return Err(HttpError::BadRequest("invalid request target")),
            None => b"/".to_vec(),
        }
    } else {
        return Err(HttpError::BadRequest("invalid request target"));
    };
    // Both are ASCII by the checks above.
    Ok((method_name(method), owned_text(target), authority, version))
}

/// A request's method as text: one of the usual ones without an allocation.
fn method_name(method: &[u8]) -> Cow<'static, str> {
    const USUAL: [&str; 8] = [
        "GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
    ];
    match USUAL.iter().find(|usual| usual.as_bytes() == method) {
        Some(usual) => Cow::Borrowed(usual),
        None => Cow::Owned(owned_text(method.to_vec())),
    }
}

/// Bytes as a String: without a copy when they are UTF-8 (ASCII, as the request line's
/// checks make them, is), else each byte its own character (Latin-1).
pub fn owned_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|e| e.as_bytes().iter().map(|&b| char::from(b)).collect())
}

/// What http.sys says about a bad Host header (`400 Bad Request - Invalid Hostname`).
const INVALID_HOSTNAME: &str = "Invalid Hostname";

/// Whether `a` is `uri-host [ ":" port ]` (RFC 9112 §3.2, RFC 3986 §3.2.2-3.2.3): an
/// IP-literal (`[` IPv6address or IPvFuture `]`), or a reg-name (unreserved, sub-delims,
/// pct-encoded; IPv4 addresses are reg-names too), then an optional `:` and digits. An
/// empty host is allowed, as RFC 9112 allows an empty Host; userinfo is not.
pub fn is_valid_authority(a: &[u8]) -> bool {
    let (host, port) = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &a[1..close];
        let ok = match literal.first() {
            Some(b'v' | b'V') => is_ipv_future(literal),
            _ => {
                std::str::from_utf8(literal).is_ok_and(|s| s.parse::<std::net::Ipv6Addr>().is_ok())
            }
        };
        if !ok {
            return false;
        }
        match &a[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match a.iter().position(|&b| b == b':') {
            Some(i) => (&a[..i], &a[i + 1..]),
            None => (a, &[][..]),
        }
    };
    is_reg_name(host) && port.iter().all(u8::is_ascii_digit)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

fn is_sub_delim(b: u8) -> bool {
    b"!$&'()*+,;=".contains(&b)
}

/// reg-name = *( unreserved / pct-encoded / sub-delims )
fn is_reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            if !(i + 2 < s.len() && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if is_unreserved(s[i]) || is_sub_delim(s[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// IPvFuture = "v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )
fn is_ipv_future(s: &[u8]) -> bool {
    let Some(dot) = s.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (version, rest) = (&s[1..dot], &s[dot + 1..]);
    !version.is_empty()
        && version.iter().all(u8::is_ascii_hexdigit)
        && !rest.is_empty()
        && rest
            .iter()
            .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// Applies the header semantics that decide framing and connection handling.
fn interpret(
    method: Cow<'static, str>,
    target: String,
    version: Version,
    headers: HeaderFields,
) -> Result<RequestHead, HttpError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut host_count = 0;
    for (name, value) in headers.iter() {
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err(HttpError::BadRequest("invalid Content-Length"));
            }
            let n: u64 = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HttpError::BadRequest("invalid Content-Length"))?;
            if length.is_some_and(|old| old != n) {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            for coding in value
                .split(|&b| b == b',')
                .map(trim_ows)
                .filter(|c| !c.is_empty())
            {
                if chunked {
                    return Err(HttpError::BadRequest(
                        "chunked must be the last transfer coding",
                    ));
                }
                if coding.eq_ignore_ascii_case(b"chunked") {
                    chunked = true;
                } else {
                    return Err(HttpError::NotImplemented(
                        "only the chunked transfer coding is supported",
                    ));
                }
            }
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case(b"100-continue") {
                expect_continue = version == Version::Http11;
            } else {
                return Err(HttpError::BadRequest("unsupported Expect value"));
            }
        } else if name.eq_ignore_ascii_case("host") {
            host_count += 1;
            if !is_valid_authority(value) {
                return Err(HttpError::BadRequest(INVALID_HOSTNAME));
            }
        }
    }
    // Empty list elements do not count (RFC 9110 §5.6.1), across all the field lines: a
    // Transfer-Encoding line with none is fine if another says chunked (found by the
    // differential fuzz target, fuzz/).
    if transfer_encoding && !chunked {
        return Err(HttpError::BadRequest("empty Transfer-Encoding"));
    }
    if chunked && length.is_some() {
        // RFC 9112 §6.1 allows dropping Content-Length; refusing is the safe choice
        // against request smuggling, and what http.sys does.
        return Err(HttpError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if chunked && version == Version::Http10 {
        return Err(HttpError::BadRequest(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if host_count > 1 || (version == Version::Http11 && host_count == 0) {
        return Err(HttpError::BadRequest(
            "an HTTP/1.1 request needs exactly one Host header",
        ));
    }
    if target == "*" && method != "OPTIONS" {
        return Err(HttpError::BadRequest(
            "'*' target is only valid for OPTIONS",
        ));
    }
    let body = match (chunked, length) {
        (true, _) => BodyKind::Chunked,
        (false, Some(0)) | (false, None) => BodyKind::None,
        (false, Some(n)) => BodyKind::Length(n),
    };
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep_alive_token && !close,
    };
    Ok(RequestHead {
        method,
        target,
        authority: None,
        version,
        headers,
        body,
        keep_alive,
        expect_continue: expect_continue && body != BodyKind::None,
    })
}

/// Where request body bytes go: a byte buffer that need not be initialised, such as the
/// one an extension hands to ReadClient (C code mallocs it). A `&mut [u8]` may not point
/// to uninitialised bytes, so this holds `MaybeUninit<u8>`s and only ever writes
/// initialised bytes into them, never reads them.
pub struct BodyOut<'a>(&'a mut [MaybeUninit<u8>]);

impl<'a> BodyOut<'a> {
    /// The `len` bytes at `ptr`, initialised or not.
    ///
    /// # Safety
    /// `ptr` must be non-NULL and valid for writes of `len` bytes for `'a`, and nothing
    /// else may access those bytes meanwhile.
    pub unsafe fn from_raw(ptr: *mut u8, len: usize) -> BodyOut<'a> {
        // SAFETY: the caller vouches for the pointer, the length and the exclusive access;
        // a MaybeUninit<u8> may hold any byte or none, so the bytes need not be initialised.
        BodyOut(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<MaybeUninit<u8>>(), len) })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Copies `bytes` in at offset `at` (which, plus their length, must fit).
    pub fn put(&mut self, at: usize, bytes: &[u8]) {
        self.0[at..at + bytes.len()].write_copy_of_slice(bytes);
    }
}

impl<'a> From<&'a mut [u8]> for BodyOut<'a> {
    fn from(buffer: &'a mut [u8]) -> BodyOut<'a> {
        // SAFETY: the borrow gives exclusive access to buffer.len() writable bytes at a
        // non-NULL pointer for 'a; BodyOut writes only initialised bytes, so the buffer is
        // still a valid [u8] when the borrow ends.
        unsafe { BodyOut::from_raw(buffer.as_mut_ptr(), buffer.len()) }
    }
}

/// The most chunk-extension bytes accepted in one request body, all chunks together
/// (everything between a chunk size and its CRLF). Extensions carry nothing the host or
/// an extension can use; the bound keeps a client from streaming them forever for free
/// (Go CVE-2023-39326 was the same unbounded overhead).
pub const MAX_CHUNK_EXT_BYTES: usize = 4096;

/// The most trailer field lines accepted after the last chunk.
pub const MAX_TRAILER_LINES: usize = 64;

/// The most trailer bytes accepted (field lines with their CRLFs, the final CRLF excluded).
pub const MAX_TRAILER_BYTES: usize = 8192;

/// The most hex digits in a chunk size: 16 hold any u64, so a size can never wrap.
const MAX_CHUNK_SIZE_DIGITS: u32 = 16;

/// Decodes a `Transfer-Encoding: chunked` body incrementally: feed it whatever bytes have
/// arrived, get the payload bytes out. Chunk extensions and trailers are checked and
/// dropped.
///
/// The framing is read strictly by RFC 9112 §7.1, since two parsers that disagree about
/// where a chunked body ends let a client smuggle a second request past the first:
///
/// ```text
/// chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-val  = token / quoted-string
/// trailer-section = *( field-line CRLF ) CRLF
/// ```
///
/// * after the size only whitespace then `;` (or the CRLF) may follow: `5 xyz` is a 400;
/// * an extension is `name[=value]`, the value a token or a quoted-string: `a=` is a 400
///   (h11 CVE-2025-43859 and Go CVE-2025-22871 accepted malformed extension and line
///   endings that a front end read differently);
/// * every line ends in CRLF: a bare LF or CR anywhere in the framing is a 400 (Kestrel
///   CVE-2025-55315 accepted a bare LF inside an extension);
/// * extensions are bounded per request ([`MAX_CHUNK_EXT_BYTES`]), the trailer by lines
///   and bytes ([`MAX_TRAILER_LINES`], [`MAX_TRAILER_BYTES`]) (Go CVE-2023-39326);
/// * a chunk size has at most 16 hex digits, so it never overflows.
///
/// Whitespace before the size line's CRLF (`5 \r\n`) is accepted, as h11 and Go accept it:
/// it cannot change where the chunk ends.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
    /// The size of the chunk whose size line is being read.
    size: u64,
    /// Hex digits of that size read so far.
    digits: u32,
    /// Chunk-extension bytes seen so far in this body (bounded).
    ext_bytes: usize,
    /// Trailer field lines and bytes seen so far (bounded).
    trailer_lines: usize,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of the size.
    Size,
    /// Whitespace after the size or after an extension value: `;` or CR must follow.
    SizeWs,
    /// After `;`: optional whitespace, then an extension name.
    ExtPreName,
    /// Inside an extension name.
    ExtName,
    /// Whitespace after an extension name: `=`, `;` or CR must follow.
    ExtAfterName,
    /// After `=`: optional whitespace, then a token or a quoted-string.
    ExtPreValue,
    /// Inside a token value.
    ExtToken,
    /// Inside a quoted-string value; `ExtQuotedPair` after a backslash.
    ExtQuoted,
    ExtQuotedPair,
    /// Saw CR at the end of the size line.
    SizeLf,
    /// Inside chunk data, `remaining` bytes to go.
    Data {
        remaining: u64,
    },
    /// After the data: expect CR then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line: a field name, or CR for the end of the body.
    TrailerStart,
    /// Inside a trailer field name, then its value, then the CR seen at its end.
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// Saw the CR of the final empty line.
    EndLf,
    Done,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
            size: 0,
            digits: 0,
            ext_bytes: 0,
            trailer_lines: 0,
            trailer_bytes: 0,
        }
    }
}

/// Bytes allowed in a quoted-string: qdtext, and what may follow a backslash (RFC 9110
/// §5.6.4), with obs-text (0x80-0xFF) in both.
fn is_qdtext(b: u8) -> bool {
    b == b'\t'
        || b == b' '
        || b == 0x21
        || (0x23..=0x5b).contains(&b)
        || (0x5d..=0x7e).contains(&b)
        || b >= 0x80
}

fn is_quoted_pair_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

impl ChunkedDecoder {
    /// True once the terminating chunk and trailer have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input` into `out`. Returns (bytes of input consumed, bytes of payload
    /// written). Stops when `out` is full, the input is used up, or the body ends.
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut BodyOut<'_>,
    ) -> Result<(usize, usize), HttpError> {
        use ChunkState::*;
        let (mut i, mut o) = (0, 0);
        while i < input.len() {
            let b = input[i];
            let ws = b == b' ' || b == b'\t';
            if matches!(
                self.state,
                SizeWs
                    | ExtPreName
                    | ExtName
                    | ExtAfterName
                    | ExtPreValue
                    | ExtToken
                    | ExtQuoted
                    | ExtQuotedPair
            ) || (self.state == Size && self.digits > 0 && !b.is_ascii_hexdigit())
            {
                // Everything between the size and its CR counts as extension bytes.
                if b != b'\r' {
                    self.ext_bytes += 1;
                    if self.ext_bytes > MAX_CHUNK_EXT_BYTES {
                        return Err(bad("chunk extensions too long"));
                    }
                }
            }
            if matches!(self.state, TrailerName | TrailerValue | TrailerLf)
                || (self.state == TrailerStart && b != b'\r')
            {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILER_BYTES {
                    return Err(bad("trailer section too large"));
                }
            }
            self.state = match self.state {
                Size => {
                    if let Some(d) = (b as char).to_digit(16) {
                        if self.digits >= MAX_CHUNK_SIZE_DIGITS {
                            return Err(bad("chunk size too large"));
                        }
                        self.digits += 1;
                        // Cannot overflow with at most 16 digits; checked all the same.
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d as u64))
                            .ok_or(bad("chunk size too large"))?;
                        Size
                    } else if self.digits == 0 {
                        return Err(bad("invalid chunk size"));
                    } else if ws {
                        SizeWs
                    } else if b == b';' {
                        ExtPreName
                    } else if b == b'\r' {
                        SizeLf
                    } else if b == b'\n' {
                        return Err(bad("bare LF after the chunk size"));
                    } else {
                        return Err(bad("invalid character after the chunk size"));
                    }
                }
                SizeWs => match b {
                    b' ' | b'\t' => SizeWs,
                    b';' => ExtPreName,
                    b'\r' => SizeLf,
                    _ => return Err(bad("invalid chunk extension")),
                },
                ExtPreName if ws => ExtPreName,
                ExtPreName | ExtName if is_token_byte(b) => ExtName,
                ExtPreName => return Err(bad("chunk extension without a name")),
                ExtName | ExtAfterName => match b {
                    b' ' | b'\t' => ExtAfterName,
                    b'=' => ExtPreValue,
                    b';' => ExtPreName,
                    b'\r' => SizeLf,
                    _ => return Err(bad("invalid chunk extension name")),
                },
                ExtPreValue if ws => ExtPreValue,
                ExtPreValue | ExtToken if is_token_byte(b) => ExtToken,
                ExtPreValue if b == b'"' => ExtQuoted,
                ExtPreValue => return Err(bad("chunk extension '=' without a value")),
                ExtToken => match b {
                    b' ' | b'\t' => SizeWs,
                    b';' => ExtPreName,
                    b'\r' => SizeLf,
                    _ => return Err(bad("invalid chunk extension value")),
                },
                ExtQuoted => match b {
                    b'"' => SizeWs,
                    b'\\' => ExtQuotedPair,
                    b if is_qdtext(b) => ExtQuoted,
                    _ => return Err(bad("invalid quoted chunk extension value")),
                },
                ExtQuotedPair if is_quoted_pair_byte(b) => ExtQuoted,
                ExtQuotedPair => return Err(bad("invalid quoted chunk extension value")),
                SizeLf => {
                    if b != b'\n' {
                        return Err(bad("CR without LF after the chunk size"));
                    }
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 {
                        TrailerStart
                    } else {
                        Data { remaining: size }
                    }
                }
                Data { remaining } => {
                    if o == out.len() {
                        break;
                    }
                    let n = (input.len() - i)
                        .min(out.len() - o)
                        .min(remaining.min(usize::MAX as u64) as usize);
                    out.put(o, &input[i..i + n]);
                    i += n;
                    o += n;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        DataCr
                    } else {
                        Data { remaining: left }
                    };
                    continue;
                }
                DataCr => match b {
                    b'\r' => DataLf,
                    b'\n' => return Err(bad("bare LF after chunk data")),
                    _ => return Err(bad("chunk data longer than its size")),
                },
                DataLf if b == b'\n' => Size,
                DataLf => return Err(bad("CR without LF after chunk data")),
                TrailerStart => {
                    if b == b'\r' {
                        EndLf
                    } else if ws {
                        return Err(bad("obsolete line folding in the trailer"));
                    } else if !is_token_byte(b) {
                        return Err(bad("invalid trailer field name"));
                    } else if self.trailer_lines == MAX_TRAILER_LINES {
                        return Err(bad("too many trailer fields"));
                    } else {
                        self.trailer_lines += 1;
                        TrailerName
                    }
                }
                TrailerName if is_token_byte(b) => TrailerName,
                TrailerName if b == b':' => TrailerValue,
                TrailerName => return Err(bad("invalid trailer field name")),
                TrailerValue => match b {
                    b'\r' => TrailerLf,
                    b'\n' => return Err(bad("bare LF in the trailer")),
                    b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                        return Err(bad("control character in a trailer"));
                    }
                    _ => TrailerValue,
                },
                TrailerLf if b == b'\n' => TrailerStart,
                TrailerLf => return Err(bad("CR without LF in the trailer")),
                EndLf if b == b'\n' => Done,
                EndLf => return Err(bad("CR without LF at the end of the chunked body")),
                Done => break,
            };
            i += 1;
        }
        Ok((i, o))
    }
}

fn bad(message: &'static str) -> HttpError {
    HttpError::BadRequest(message)
}

/// Percent-decodes `s` to bytes. Invalid escapes are an error (http.sys answers 400).
pub fn percent_decode(s: &str) -> Result<Vec<u8>, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(HttpError::BadRequest("invalid percent-escape in the URL")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_parsed_into_a_predecessors_buffers_has_only_its_own_fields() {
        let limits = Limits {
            request_line: 8192,
            header_bytes: 16384,
        };
        let parse = |bytes: &[u8]| match parse_request(bytes, &limits) {
            Ok(Parsed::Complete(head, _)) => head,
            other => panic!("{other:?}"),
        };
        // Values longer than a new buffer's room (512 bytes), so that it grew.
        let long = "a".repeat(700);
        let first = parse(
            format!("GET /a HTTP/1.1\r\nHost: one\r\nX-Long: {long}\r\nCookie: c=1\r\n\r\n")
                .as_bytes(),
        );
        let capacity = first.headers.values.capacity();
        assert!(capacity > 512);
        drop(first);
        // The same thread: the next head reuses the buffers the first one gave back.
        let second = parse(b"GET /b HTTP/1.1\r\nHost: two\r\n\r\n");
        assert_eq!(second.headers.values.capacity(), capacity);
        let fields: Vec<(&str, &[u8])> = second.headers.iter().collect();
        assert_eq!(fields, [("Host", &b"two"[..])]);
        assert_eq!(second.header("cookie"), None);
    }

    #[test]
    fn a_request_line_at_its_limit_is_not_refused_while_its_crlf_arrives() {
        // Found by fuzz/ (request_head): the line is exactly at the limit, and the piece
        // that has arrived ends with the CR of its CRLF.
        let limits = Limits {
            request_line: 22,
            header_bytes: 58,
        };
        let whole = b"\n\rT2 /eHTTP/1.1 HTTP/1.1\r\nHost: xxx&_n-ku__x~1\r\n\r\nxx\r";
        assert!(matches!(
            parse_request(whole, &limits),
            Ok(Parsed::Complete(_, 50))
        ));
        for cut in [24, 25] {
            assert!(
                matches!(
                    parse_request(&whole[..cut], &limits),
                    Ok(Parsed::Incomplete)
                ),
                "{cut} bytes"
            );
        }
        // Nothing but empty lines so far, the last one cut after its CR: still waiting.
        for cut in 1..=10 {
            let blank = &b"\n\n\r\r\r\n\n\r\r\r"[..cut];
            assert!(
                matches!(parse_request(blank, &limits), Ok(Parsed::Incomplete)),
                "{blank:?}"
            );
        }
        // One byte more than the limit is still refused, with or without its CR.
        let long = b"GET /abcdefghijklmnop HTTP/1.1\r";
        let limits = Limits {
            request_line: 20,
            header_bytes: 58,
        };
        assert!(matches!(
            parse_request(long, &limits),
            Err(HttpError::UriTooLong)
        ));
    }

    const LIMITS: Limits = Limits {
        request_line: 100,
        header_bytes: 200,
    };

    fn parse(s: &[u8]) -> Result<Parsed, HttpError> {
        parse_request(s, &LIMITS)
    }

    fn complete(s: &[u8]) -> (RequestHead, usize) {
        match parse(s) {
            Ok(Parsed::Complete(h, n)) => (h, n),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    #[test]
    fn simple_get() {
        let (h, n) = complete(b"GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  v v \r\n\r\nrest");
        assert_eq!(n, 46);
        assert_eq!((&*h.method, h.path(), h.query()), ("GET", "/a/b", "x=1"));
        assert_eq!(h.header("x-a"), Some(&b"v v"[..]));
        assert!(h.keep_alive);
        assert_eq!(h.body, BodyKind::None);
    }

    /// The usual methods come without an allocation; any other token, and a usual one in
    /// another case (methods are case-sensitive), is kept exactly as sent.
    #[test]
    fn methods_are_kept_as_sent() {
        for method in ["GET", "POST", "HEAD", "PROPFIND", "get", "Head", "M-SEARCH"] {
            let request = format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
            let (h, _) = complete(request.as_bytes());
            assert_eq!(&*h.method, method);
            let usual = ["GET", "POST", "HEAD"].contains(&method);
            assert_eq!(matches!(h.method, Cow::Borrowed(_)), usual, "{method}");
        }
    }

    #[test]
    fn incomplete_until_blank_line() {
        let full = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n";
        for cut in 0..full.len() {
            assert!(
                matches!(parse(&full[..cut]), Ok(Parsed::Incomplete)),
                "cut {cut}"
            );
        }
        let (h, _) = complete(full);
        assert_eq!(h.body, BodyKind::Length(3));
    }

    #[test]
    fn limits_give_414_and_431() {
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(200));
        assert_eq!(parse(long.as_bytes()).unwrap_err(), HttpError::UriTooLong);
        assert_eq!(
            parse(&long.as_bytes()[..150]).unwrap_err(),
            HttpError::UriTooLong
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "b".repeat(300)
        );
        assert_eq!(
            parse(big.as_bytes()).unwrap_err(),
            HttpError::HeadersTooLarge
        );
        assert_eq!(
            parse(&big.as_bytes()[..250]).unwrap_err(),
            HttpError::HeadersTooLarge
        );
    }

    #[test]
    fn malformed_requests_are_400() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\n Folded: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
            b"GET \x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n",
            b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTQ/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HttpError::BadRequest(_))),
                "{:?} gave {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            HttpError::VersionNotSupported
        );
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(HttpError::NotImplemented(_))
        ));
    }

    #[test]
    fn connection_semantics() {
        assert!(
            !complete(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!complete(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            complete(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .0
                .keep_alive
        );
        let (h, _) = complete(
            b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        );
        assert!(h.expect_continue);
        let (h, _) = complete(b"GET http://example.com:80/p?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.target, "/p?q");
        let (h, _) = complete(b"\r\n\r\nGET / HTTP/1.1\nHost: h\n\n");
        assert_eq!(h.path(), "/");
    }

    #[test]
    fn host_is_an_authority() {
        for good in [
            "h",
            "",
            "h:",
            "h:8080",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
            "[v1.x:y]",
            "[::ffff:1.2.3.4]",
            "xn--bcher-kva.example",
            "%41b",
            "a_b~c!$&'()*+,;=",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
            let (h, _) = complete(req.as_bytes());
            assert_eq!(h.host(), Some(good.as_bytes()));
        }
        for bad in [
            "a b",
            "a/b",
            "u@h",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "[::1%25eth0]",
            "[1.2.3.4]",
            "[v.x]",
            "[v1.]",
            "h:80x",
            "h:8:0",
            "%zz",
            "%4",
            "\"h\"",
            "h#",
            "h?",
            "\u{e9}",
        ] {
            let req = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
            assert_eq!(
                parse(req.as_bytes()).unwrap_err(),
                HttpError::BadRequest(INVALID_HOSTNAME),
                "{bad:?}"
            );
        }
        // HTTP/1.0 needs no Host, but one it sends is checked, and two are one too many.
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").0.host(), None);
        assert!(parse(b"GET / HTTP/1.0\r\nHost: a b\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n").is_err());
        // An absolute-form target's authority wins over Host, and is checked the same way.
        let (h, _) = complete(b"GET http://Target.example:81?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (h.target.as_str(), h.host()),
            ("/?q", Some(&b"Target.example:81"[..]))
        );
        let (h, _) = complete(b"GET https://[::1]/p HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.target.as_str(), h.host()), ("/p", Some(&b"[::1]"[..])));
        for bad in [
            &b"GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET http:///p HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://:80/p HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h:x/p HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h#f HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(HttpError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn dechunk(input: &[u8], out_size: usize) -> Result<(Vec<u8>, bool), HttpError> {
        let mut d = ChunkedDecoder::default();
        let mut out = vec![0; out_size];
        let mut all = Vec::new();
        let mut pos = 0;
        // Feed one byte at a time to exercise every state boundary.
        while pos < input.len() && !d.is_done() {
            let (used, made) = d.decode(&input[pos..pos + 1], &mut (&mut out[..]).into())?;
            all.extend_from_slice(&out[..made]);
            pos += used;
            if used == 0 {
                break;
            }
        }
        Ok((all, d.is_done()))
    }

    #[test]
    fn chunked_bodies() {
        let (body, done) = dechunk(
            b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
            4,
        )
        .unwrap();
        assert_eq!(body, b"hello world");
        assert!(done);
        let (body, done) = dechunk(b"3\r\nabc\r\n", 10).unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], false));
        assert!(dechunk(b"zz\r\n", 4).is_err());
        assert!(dechunk(b"3\r\nabcd\r\n", 4).is_err());
        assert!(dechunk(b"ffffffffffffffffff\r\n", 4).is_err());
        // Extensions (token and quoted values, whitespace around `;` and `=`) and
        // trailers are read and dropped.
        let (body, done) = dechunk(
            b"3 ; a ; b = 1 ;c=\"x\\\"y\" \r\nabc\r\n0;last\r\nT-1: v\r\nT-2:\r\n\r\n",
            2,
        )
        .unwrap();
        assert_eq!((body.as_slice(), done), (&b"abc"[..], true));
        assert!(dechunk(b"0000000000000000\r\n\r\n", 1).unwrap().1);
        let mut d = ChunkedDecoder::default();
        let mut out = [0u8; 64];
        assert_eq!(
            d.decode(b"2\r\nab\r\n0\r\n\r\nNEXT", &mut (&mut out[..]).into())
                .unwrap(),
            (12, 2)
        );
        assert!(d.is_done());
    }

    #[test]
    fn chunked_framing_is_strict() {
        let long_ext = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_CHUNK_EXT_BYTES));
        let many_ext = "1;abcdefghijklmnopqrstuvwxyz\r\na\r\n".repeat(200) + "0\r\n\r\n";
        let many_trailers = format!("0\r\n{}\r\n", "T: v\r\n".repeat(MAX_TRAILER_LINES + 1));
        let big_trailer = format!("0\r\nT: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES));
        for bad in [
            &b"5 xyz\r\nhello\r\n0\r\n\r\n"[..],
            b"5xyz\r\nhello\r\n0\r\n\r\n",
            b"20;invalid=\r\n",
            b"5;=1\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
            b"5;a=b c\r\nhello\r\n0\r\n\r\n",
            b"5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            b"5;a\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\rhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhello\r\n0\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\r\n0\r\nT: v\n\r\n",
            b"5\r\nhello\r\n0\r\n T: v\r\n\r\n",
            b"5\r\nhello\r\n0\r\nNoColon\r\n\r\n",
            b"5\r\nhello\r\n0\r\nBad Name: v\r\n\r\n",
            b"10000000000000000\r\n",
            b" 5\r\nhello\r\n",
            b";a\r\n",
            long_ext.as_bytes(),
            many_ext.as_bytes(),
            many_trailers.as_bytes(),
            big_trailer.as_bytes(),
        ] {
            assert!(
                matches!(dechunk(bad, 7), Err(HttpError::BadRequest(_))),
                "{:?} gave {:?}",
                String::from_utf8_lossy(&bad[..bad.len().min(60)]),
                dechunk(bad, 7)
            );
        }
        // Right at the bounds is fine.
        let ext = format!(
            "1;{}\r\na\r\n0\r\n\r\n",
            "x".repeat(MAX_CHUNK_EXT_BYTES - 1)
        );
        assert!(dechunk(ext.as_bytes(), 7).unwrap().1);
        let trailers = format!("0\r\n{}\r\n", "T: v\r\n".repeat(MAX_TRAILER_LINES));
        assert!(dechunk(trailers.as_bytes(), 7).unwrap().1);
        let trailer = format!("0\r\nT: {}\r\n\r\n", "v".repeat(MAX_TRAILER_BYTES - 5));
        assert!(dechunk(trailer.as_bytes(), 7).unwrap().1);
        assert_eq!(
            dechunk(b"ffffffffffffffff\r\n", 7).unwrap(),
            (Vec::new(), false)
        );
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b%2F").unwrap(), b"/a b/");
        assert!(percent_decode("/%zz").is_err());
        assert!(percent_decode("/%2").is_err());
    }

    /// A small deterministic fuzz: random bytes and mutations of a valid request must
    /// never panic, and a Complete result must never claim more bytes than given.
    #[test]
    fn parser_never_panics() {
        let seed_request = b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let alphabet =
            b"GETPOST /HTTP1.0\r\n:;%-_*?=chunkedHostContent-Length0123456789abcdef\t \x00\x7f\xff";
        for round in 0..20000 {
            let mut input: Vec<u8> = if round % 2 == 0 {
                (0..next() % 200)
                    .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                    .collect()
            } else {
                seed_request.to_vec()
            };
            for _ in 0..(next() % 6) {
                if input.is_empty() {
                    break;
                }
                let at = (next() % input.len() as u64) as usize;
                match next() % 3 {
                    0 => input[at] = (next() & 0xff) as u8,
                    1 => {
                        input.remove(at);
                    }
                    _ => input.insert(at, alphabet[(next() % alphabet.len() as u64) as usize]),
                }
            }
            if let Ok(Parsed::Complete(head, used)) = parse(&input) {
                assert!(used <= input.len());
                if head.body == BodyKind::Chunked {
                    let mut d = ChunkedDecoder::default();
                    let mut out = [0u8; 16];
                    let _ = d.decode(&input[used..], &mut (&mut out[..]).into());
                }
            }
        }
    }
}
