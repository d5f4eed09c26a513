//! The request's headers as the client sent them: read once, parsed once.
//!
//! IIS gives them all in one server variable, `ALL_RAW`: `Name: value\r\n` lines, names
//! and values as they came. (A server without ALL_RAW gets them rebuilt from `ALL_HTTP`.)
//! They are parsed into `(name, value)` pairs without copying, and a name sent more than
//! once becomes one pair: the values joined with `,` as RFC 9110 §5.3 allows (`; ` for
//! Cookie, RFC 6265 §5.4).
//!
//! Two steps of a request read them, so they are read before either: the request id
//! (the client's `X-Request-Id`, request_id.rs), given before the GIL is taken, and the
//! environ's `HTTP_*` entries (environ.rs). [`Bridge::serve`](super::Bridge::serve) reads
//! them into a [`HeaderBuffer`], one per thread, reused from request to request.
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;

use super::spare;
use crate::isapi::ecb::Ecb;

/// A thread's buffer for a request's headers: the bytes, and where each header is in them.
/// Given back to the thread when dropped, so that a request allocates nothing here.
pub struct HeaderBuffer {
    raw: Vec<u8>,
    lines: Vec<Span>,
}

/// Where one header's name and value are in [`HeaderBuffer::raw`] (start, end).
#[derive(Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

thread_local! {
    /// The thread's slots for the two vectors of its [`HeaderBuffer`] (spare.rs).
    static RAW: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static LINES: Cell<Vec<Span>> = const { Cell::new(Vec::new()) };
}

impl HeaderBuffer {
    /// The thread's buffer (a new one if it is taken or the thread is ending).
    pub fn take() -> HeaderBuffer {
        HeaderBuffer {
            raw: spare::take(&RAW),
            lines: spare::take(&LINES),
        }
    }
}

impl Drop for HeaderBuffer {
    fn drop(&mut self) {
        spare::give(&RAW, std::mem::take(&mut self.raw));
        spare::give(&LINES, std::mem::take(&mut self.lines));
    }
}

/// One request's headers, borrowing a [`HeaderBuffer`].
pub struct Headers<'a> {
    raw: &'a [u8],
    /// They came from ALL_RAW, so every header the client sent is here (rebuilt from
    /// ALL_HTTP, a header the server would not confirm may be missing).
    all_raw: bool,
    lines: &'a [Span],
    /// The headers with repeated names merged; None when no name repeats (the usual case:
    /// then `lines` is used as it is).
    merged: Option<Vec<Merged<'a>>>,
}

impl<'a> Headers<'a> {
    /// Reads the headers of the request `ecb` into `buffer` and parses them.
    pub fn read(ecb: &Ecb, buffer: &'a mut HeaderBuffer) -> Headers<'a> {
        buffer.raw.clear();
        buffer.raw.reserve(1024);
        let all_raw = matches!(ecb.server_variable(c"ALL_RAW", &mut buffer.raw), Ok(true));
        if !all_raw {
            buffer.raw = raw_from_all_http(ecb);
        }
        Headers {
            all_raw,
            ..Headers::parse(buffer)
        }
    }

    /// The headers in `buffer.raw` (ALL_RAW's form).
    fn parse(buffer: &'a mut HeaderBuffer) -> Headers<'a> {
        let HeaderBuffer { raw, lines } = buffer;
        lines.clear();
        parse_raw_headers(raw, lines);
        let (raw, lines): (&'a [u8], &'a [Span]) = (raw, lines);
        let merged = merge_duplicates(lines.len(), |i| pair(raw, lines[i]));
        Headers {
            raw,
            all_raw: true,
            lines,
            merged,
        }
    }

    /// Whether these are all the headers the client sent (the server gave ALL_RAW).
    pub fn complete(&self) -> bool {
        self.all_raw
    }

    /// Each header once, as `(name, value)`, in the order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &[u8])> {
        let (merged, lines): (&[Merged<'a>], &[Span]) = match &self.merged {
            Some(merged) => (merged, &[]),
            None => (&[], self.lines),
        };
        let raw = self.raw;
        let merged = merged.iter().map(|(name, value)| (*name, value.as_ref()));
        merged.chain(lines.iter().map(move |&span| pair(raw, span)))
    }

    /// The value of the header `name` (compared without regard to case, as HTTP does).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
    }
}

/// The name and value `span` points at in `raw`.
fn pair(raw: &[u8], span: Span) -> (&[u8], &[u8]) {
    (
        &raw[span.name.0..span.name.1],
        &raw[span.value.0..span.value.1],
    )
}

/// Headers sent more than once, as one: the later values joined to the first with `,`
/// (`; ` for Cookie, RFC 6265 §5.4), in the order of their first appearance. `line(i)` is
/// the `i`th of `count` headers. Names are compared as HTTP does, without regard to case.
/// None when no name repeats (found by comparing the few dozen names a request usually
/// has: at most 496 comparisons), so the usual request allocates nothing here. Linear in
/// the number of headers: beyond a few dozen, a hash map finds the earlier ones (about
/// 4 000 headers fit in IIS's 16 KiB).
fn merge_duplicates<'a>(
    count: usize,
    line: impl Fn(usize) -> (&'a [u8], &'a [u8]),
) -> Option<Vec<Merged<'a>>> {
    const SCAN: usize = 32;
    let repeats = |index: usize| {
        let name = line(index).0;
        (0..index).any(|earlier| line(earlier).0.eq_ignore_ascii_case(name))
    };
    if count <= SCAN && !(0..count).any(repeats) {
        return None;
    }
    let mut merged: Vec<Merged<'a>> = Vec::with_capacity(count);
    let mut index: HashMap<NoCase<'a>, usize, BuildFnv> = HashMap::with_hasher(BuildFnv);
    for (name, value) in (0..count).map(line) {
        let earlier = if count <= SCAN {
            merged
                .iter()
                .position(|(kept, _)| kept.eq_ignore_ascii_case(name))
        } else {
            index.get(&NoCase(name)).copied()
        };
        match earlier {
            Some(at) => {
                let separator: &[u8] = if name.eq_ignore_ascii_case(b"cookie") {
                    b"; "
                } else {
                    b","
                };
                let joined = merged[at].1.to_mut();
                joined.extend_from_slice(separator);
                joined.extend_from_slice(value);
            }
            None => {
                if count > SCAN {
                    index.insert(NoCase(name), merged.len());
                }
                merged.push((name, Cow::Borrowed(value)));
            }
        }
    }
    Some(merged)
}

/// A header and its value, later values of the same name joined to it.
type Merged<'a> = (&'a [u8], Cow<'a, [u8]>);

/// A header name as a hash key that ignores ASCII case.
struct NoCase<'a>(&'a [u8]);

impl std::hash::Hash for NoCase<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for byte in self.0 {
            state.write_u8(byte.to_ascii_lowercase());
        }
    }
}

impl PartialEq for NoCase<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for NoCase<'_> {}

/// Where the `Name: value` pairs of ALL_RAW are (`Name: value\r\n` lines; LF alone
/// accepted), names and values without the blanks around them.
fn parse_raw_headers(raw: &[u8], lines: &mut Vec<Span>) {
    let mut start = 0;
    while start < raw.len() {
        let end = raw[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| start + i);
        let line = &raw[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = trimmed(raw, start, start + colon);
            if name.0 < name.1 {
                let value = trimmed(raw, start + colon + 1, start + line.len());
                lines.push(Span { name, value });
            }
        }
        start = end + 1;
    }
}

/// Where `raw[from..to]` is without the ASCII blanks at either end.
fn trimmed(raw: &[u8], mut from: usize, mut to: usize) -> (usize, usize) {
    while from < to && raw[from].is_ascii_whitespace() {
        from += 1;
    }
    while to > from && raw[to - 1].is_ascii_whitespace() {
        to -= 1;
    }
    (from, to)
}

/// The headers as ALL_RAW lines, for a server that has no ALL_RAW, from ALL_HTTP
/// (`HTTP_NAME:value` lines). ALL_HTTP has already turned `-` into `_`, so `X_Auth` and
/// `X-Auth` look the same there (CVE-2015-0219). A name without `_` is taken as it is; one
/// with `_` only when the server confirms that the client sent it with dashes
/// (`HEADER_X-Auth`, IIS 7+), with the value the server gives for that exact name; the
/// others are dropped, as a header with `_` is dropped from ALL_RAW.
fn raw_from_all_http(ecb: &Ecb) -> Vec<u8> {
    let mut all = Vec::new();
    let _ = ecb.server_variable(c"ALL_HTTP", &mut all);
    let mut raw = Vec::with_capacity(all.len());
    let mut asked: Vec<&[u8]> = Vec::new();
    for (name, value) in all_http_lines(&all) {
        if !name.contains(&b'_') {
            raw.extend_from_slice(name);
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(value);
            raw.extend_from_slice(b"\r\n");
            continue;
        }
        // `X-Auth` and `X_Auth` share a line name: ask once for the dashed one.
        if asked.contains(&name) {
            continue;
        }
        asked.push(name);
        let dashed: Vec<u8> = name
            .iter()
            .map(|&b| if b == b'_' { b'-' } else { b })
            .collect();
        let Ok(variable) = std::ffi::CString::new([&b"HEADER_"[..], &dashed].concat()) else {
            continue;
        };
        let start = raw.len();
        raw.extend_from_slice(&dashed);
        raw.extend_from_slice(b": ");
        if matches!(ecb.server_variable(&variable, &mut raw), Ok(true)) {
            raw.extend_from_slice(b"\r\n");
        } else {
            raw.truncate(start);
        }
    }
    raw
}

/// The `(NAME, value)` pairs of ALL_HTTP, `HTTP_` taken off the names.
fn all_http_lines(all: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    all.split(|&b| b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].strip_prefix(b"HTTP_")?;
        Some((name, line[colon + 1..].trim_ascii()))
    })
}

/// FNV-1a for header names: short, and chosen by the client, but the tables that use it are
/// bounded or linear anyway, so a fast non-keyed hash is fine (tests/support/synthetic.rs,
/// the in-process tests' stand-in for IIS, uses it for its variable table too).
#[derive(Default, Clone, Copy)]
pub struct BuildFnv;

pub struct Fnv(u64);

impl std::hash::BuildHasher for BuildFnv {
    type Hasher = Fnv;
    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer holding `raw` as the server's ALL_RAW.
    fn buffer(raw: &[u8]) -> HeaderBuffer {
        HeaderBuffer {
            raw: raw.to_vec(),
            lines: Vec::new(),
        }
    }

    fn merge<'a>(lines: &[(&'a [u8], &'a [u8])]) -> Option<Vec<Merged<'a>>> {
        merge_duplicates(lines.len(), |i| lines[i])
    }

    #[test]
    fn a_header_is_found_by_name_whatever_its_case_and_repeats_come_joined() {
        let raw = b"Host: h\r\nX-Request-Id: abc\r\nAccept: a\r\naccept: b\r\n\r\n";
        let mut raw = buffer(raw);
        let headers = Headers::parse(&mut raw);
        assert_eq!(headers.get(b"x-request-id"), Some(&b"abc"[..]));
        assert_eq!(headers.get(b"ACCEPT"), Some(&b"a,b"[..]));
        assert_eq!(headers.get(b"Cookie"), None);
        let all: Vec<(&[u8], &[u8])> = headers.iter().collect();
        assert_eq!(
            all,
            vec![
                (&b"Host"[..], &b"h"[..]),
                (b"X-Request-Id", b"abc"),
                (b"Accept", b"a,b")
            ]
        );
        // Without repeats the parsed lines are used as they are.
        let mut one = buffer(b"X-Request-Id: one\r\n");
        let single = Headers::parse(&mut one);
        assert!(single.merged.is_none());
        assert_eq!(single.get(b"X-REQUEST-ID"), Some(&b"one"[..]));
    }

    #[test]
    fn a_thread_gets_its_buffer_back_for_the_next_request() {
        let mut buffer = HeaderBuffer::take();
        buffer.raw.extend_from_slice(b"Host: h\r\n");
        let at = buffer.raw.as_ptr();
        drop(buffer);
        let again = HeaderBuffer::take();
        assert_eq!(again.raw.as_ptr(), at, "the same allocation");
        // While it is taken, another buffer is a new one.
        let other = HeaderBuffer::take();
        assert_eq!(other.raw.capacity(), 0);
    }

    #[test]
    fn duplicates_merge_in_first_seen_order_whatever_their_case() {
        let lines: Vec<(&[u8], &[u8])> = vec![
            (b"Accept", b"a"),
            (b"Cookie", b"x=1"),
            (b"X-Dup", b"one"),
            (b"cookie", b"y=2"),
            (b"x-DUP", b"two"),
            (b"Host", b"h"),
        ];
        let merged = merge(&lines).expect("names repeat");
        let merged: Vec<(&[u8], &[u8])> = merged.iter().map(|(n, v)| (*n, v.as_ref())).collect();
        assert_eq!(
            merged,
            vec![
                (&b"Accept"[..], &b"a"[..]),
                (b"Cookie", b"x=1; y=2"),
                (b"X-Dup", b"one,two"),
                (b"Host", b"h"),
            ]
        );
    }

    #[test]
    fn no_repeated_name_no_new_list() {
        let lines: Vec<(&[u8], &[u8])> = vec![(b"Accept", b"a"), (b"Host", b"h")];
        assert!(merge(&lines).is_none());
    }

    #[test]
    fn thousands_of_headers_merge_in_linear_time() {
        // 4 000 distinct names, each twice: a quadratic merge would compare 32 million
        // pairs; this one hashes 8 000 names.
        let names: Vec<String> = (0..4000).map(|n| format!("X-H{n}")).collect();
        let mut lines: Vec<(&[u8], &[u8])> = Vec::new();
        for name in &names {
            lines.push((name.as_bytes(), b"1"));
        }
        for name in &names {
            lines.push((name.as_bytes(), b"2"));
        }
        let merged = merge(&lines).expect("names repeat");
        assert_eq!(merged.len(), 4000);
        assert!(merged.iter().all(|(_, value)| value.as_ref() == b"1,2"));
        assert_eq!(merged[3999].0, b"X-H3999");
    }

    #[test]
    fn all_http_lines_lose_their_prefix() {
        let all = b"HTTP_HOST:h\nHTTP_USER_AGENT:ua 1\r\nCONTENT_TYPE:x\nHTTP_X:\n";
        let lines: Vec<(&[u8], &[u8])> = all_http_lines(all).collect();
        assert_eq!(
            lines,
            vec![
                (&b"HOST"[..], &b"h"[..]),
                (b"USER_AGENT", b"ua 1"),
                (b"X", b"")
            ]
        );
    }

    #[test]
    fn forty_headers_parse_in_order() {
        let raw: Vec<u8> = (0..40)
            .flat_map(|n| format!("X-{n}: {n}\r\n").into_bytes())
            .collect();
        let mut raw = buffer(&raw);
        let headers = Headers::parse(&mut raw);
        let parsed: Vec<(&[u8], &[u8])> = headers.iter().collect();
        assert_eq!(parsed.len(), 40);
        assert_eq!(parsed[39], (&b"X-39"[..], &b"39"[..]));
        assert_eq!(parsed[0], (&b"X-0"[..], &b"0"[..]));
    }

    #[test]
    fn lines_are_trimmed_and_kept_in_order() {
        let raw = b"Host: a\r\nX-A:  1 \r\nX-A: 2\r\n\t: no name\r\nbare\nX-B:\tb \n\r\n";
        let mut lines = Vec::new();
        parse_raw_headers(raw, &mut lines);
        let parsed: Vec<(&[u8], &[u8])> = lines.iter().map(|&span| pair(raw, span)).collect();
        assert_eq!(
            parsed,
            vec![
                (&b"Host"[..], &b"a"[..]),
                (b"X-A", b"1"),
                (b"X-A", b"2"),
                (b"X-B", b"b")
            ]
        );
    }
}
