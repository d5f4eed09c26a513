//! The contract checker: every rule of the ISAPI contract the host can observe, and the
//! count of violations `--strict` turns into a non-zero exit status.
//!
//! The rules themselves are checked where the calls arrive (`callbacks.rs`, `exchange.rs`); this
//! module reports them in one format and validates the status line and header block an
//! extension sends (CRLF lines, `Name: value`, no bare CR or LF, a blank line at the end).
use isapi_wsgi::isapi::token::is_token_byte;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts and reports contract violations.
#[derive(Default)]
pub struct Checker {
    count: AtomicUsize,
}

impl Checker {
    /// Reports one violation by the extension while serving `request` ("#12 GET /x").
    pub fn violation(&self, request: &str, what: &str) {
        self.count.fetch_add(1, Ordering::SeqCst);
        eprintln!("isapi-host: CONTRACT VIOLATION: {request}: {what}");
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// A status line such as `200 OK`: three digits, then a space and a reason (may be empty).
pub fn check_status(status: &[u8]) -> Result<u16, String> {
    // Shown only in a problem report: formatting it for every call costs an allocation.
    let shown = || String::from_utf8_lossy(status);
    if status.len() < 3 || !status[..3].iter().all(u8::is_ascii_digit) {
        return Err(format!(
            "status {:?} does not start with a 3-digit code",
            shown()
        ));
    }
    if status.len() > 3 && status[3] != b' ' {
        return Err(format!(
            "status {:?}: the code must be followed by a space and a reason",
            shown()
        ));
    }
    if status.iter().copied().any(is_control) {
        return Err(format!(
            "status {:?} contains a control character (CR/LF belong in the headers)",
            shown()
        ));
    }
    let code = (status[0] - b'0') as u16 * 100
        + (status[1] - b'0') as u16 * 10
        + (status[2] - b'0') as u16;
    if !(100..=999).contains(&code) {
        return Err(format!("status code {code} is out of range"));
    }
    Ok(code)
}

/// One item of a header block: a readable line's name and value (the one space after the
/// colon dropped), or the problem found with a line.
pub type HeaderLine<'a> = Result<(&'a [u8], &'a [u8]), String>;

/// Checks a header block (`Name: value\r\n` lines, then `\r\n`) line by line, borrowing
/// from it: yields the lines it can read and the problems it finds, in order. The host sends
/// the readable lines in canonical form either way, so one bad header cannot corrupt the
/// response on the wire. Only a problem's text is allocated.
pub fn header_lines(block: &[u8]) -> HeaderLines<'_> {
    HeaderLines {
        rest: block,
        saw_blank: false,
        done: block.is_empty(),
        second: None,
    }
}

/// The iterator of [`header_lines`].
pub struct HeaderLines<'a> {
    rest: &'a [u8],
    /// The blank line that ends the block has been read.
    saw_blank: bool,
    /// Nothing more to yield.
    done: bool,
    /// A line's own item, due after the problem with its line ending.
    second: Option<HeaderLine<'a>>,
}

impl<'a> Iterator for HeaderLines<'a> {
    type Item = HeaderLine<'a>;

    fn next(&mut self) -> Option<HeaderLine<'a>> {
        if let Some(item) = self.second.take() {
            return Some(item);
        }
        if self.done {
            return None;
        }
        if !self.saw_blank
            && let Some((name, value, rest)) = well_formed_line(self.rest)
        {
            self.rest = rest;
            return Some(Ok((name, value)));
        }
        if self.rest.is_empty() {
            self.done = true;
            let problem = "the header block does not end with a blank line (\\r\\n\\r\\n)";
            return (!self.saw_blank).then(|| Err(problem.to_string()));
        }
        let (line, next, terminator) = match self.rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..], true),
            None => (self.rest, &self.rest[self.rest.len()..], false),
        };
        self.rest = next;
        let crlf = line.last() == Some(&b'\r');
        let line = if crlf { &line[..line.len() - 1] } else { line };
        let shown = || String::from_utf8_lossy(line);
        if self.saw_blank {
            self.done = true;
            return Some(Err(format!(
                "text after the blank line that ends the headers: {:?}",
                shown()
            )));
        }
        let ending = ending_problem(line, terminator, crlf);
        let own = if line.is_empty() {
            self.saw_blank = true;
            None
        } else {
            Some(check_header_line(line))
        };
        match (ending, own) {
            (Some(problem), own) => {
                self.second = own;
                Some(Err(problem))
            }
            (None, Some(own)) => Some(own),
            (None, None) => self.next(), // the blank line
        }
    }
}

/// The usual case, read in one pass: a well-formed `Name: value\r\n` line at the start of
/// `block`, as its name, its value and what follows it. None for anything else (the blank
/// line, a problem), which [`HeaderLines::next`] then takes apart line by line.
fn well_formed_line(block: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let name_len = block.iter().position(|&b| !is_token_byte(b))?;
    if name_len == 0 || block[name_len] != b':' {
        return None;
    }
    let value_start = name_len + 1 + usize::from(block.get(name_len + 1) == Some(&b' '));
    // The first control character must be the CR of the line's CRLF.
    let end = value_start + block[value_start..].iter().position(|&b| is_control(b))?;
    block[end..].starts_with(b"\r\n").then(|| {
        (
            &block[..name_len],
            &block[value_start..end],
            &block[end + 2..],
        )
    })
}

/// The problem with how a header line (shown without its ending) ends, if any: `terminator`,
/// it ends with LF; `crlf`, with CRLF.
fn ending_problem(line: &[u8], terminator: bool, crlf: bool) -> Option<String> {
    let shown = || String::from_utf8_lossy(line);
    if !terminator {
        Some(format!("header line {:?} does not end with CRLF", shown()))
    } else if !crlf {
        Some(format!(
            "header line {:?} ends with a bare LF, not CRLF",
            shown()
        ))
    } else {
        None
    }
}

/// One header line without its line ending: `Name: value`, a token name, no control
/// characters. The usual case, a good line, is read in one pass; a line it refuses is
/// looked at again to say what is wrong with it.
fn check_header_line(line: &[u8]) -> HeaderLine<'_> {
    let name_len = line
        .iter()
        .position(|&b| !is_token_byte(b))
        .unwrap_or(line.len());
    if name_len > 0 && line.get(name_len) == Some(&b':') {
        let value = &line[name_len + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if !value.iter().copied().any(is_control) {
            return Ok((&line[..name_len], value));
        }
    }
    Err(line_problem(line))
}

/// What is wrong with a header line [`check_header_line`] refused, the first problem in the
/// order they are checked: a bare CR, no colon, an invalid name, a control character.
fn line_problem(line: &[u8]) -> String {
    let shown = String::from_utf8_lossy(line);
    if line.contains(&b'\r') {
        return format!("bare CR inside header line {shown:?}");
    }
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return format!("header line {shown:?} has no colon");
    };
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return format!("invalid header name in {shown:?}");
    }
    format!("control character in the value of {shown:?}")
}

/// A control character a header value may not contain (tab is allowed).
fn is_control(b: u8) -> bool {
    b < 0x20 && b != b'\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(check_status(b"200 OK"), Ok(200));
        assert_eq!(check_status(b"404"), Ok(404));
        assert!(check_status(b"OK").is_err());
        assert!(check_status(b"200OK").is_err());
        assert!(check_status(b"200 OK\r\n").is_err());
        assert!(check_status(b"099 x").is_err());
    }

    /// The readable lines and the problems of a block.
    fn parse(block: &[u8]) -> (Vec<HeaderLine<'_>>, Vec<String>) {
        let (lines, problems) = header_lines(block).partition(Result::is_ok);
        (
            lines,
            problems.into_iter().filter_map(Result::err).collect(),
        )
    }

    #[test]
    fn header_blocks() {
        let (h, p) = parse(b"Content-Type: text/plain\r\nX-A:b\r\n\r\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            h,
            [
                Ok((&b"Content-Type"[..], &b"text/plain"[..])),
                Ok((b"X-A", b"b"))
            ]
        );
        assert!(parse(b"").1.is_empty());
        assert!(parse(b"\r\n").1.is_empty());
        assert_eq!(parse(b"A: b\r\n").1.len(), 1);
        assert_eq!(parse(b"A: b\n\r\n").1.len(), 1);
        assert_eq!(parse(b"A: b\rc\r\n\r\n").1.len(), 1);
        assert_eq!(parse(b"A b\r\n\r\n").1.len(), 1);
        let (h, p) = parse(b"A: 1\r\n\r\nbody");
        assert_eq!((h.len(), p.len()), (1, 1));
        // Each line's first problem, in the order they are checked; a tab is allowed.
        let problem = |line: &[u8]| parse(&[line, b"\r\n\r\n"].concat()).1;
        assert_eq!(problem(b"A b"), ["header line \"A b\" has no colon"]);
        assert_eq!(
            problem(b"A\rb: c"),
            ["bare CR inside header line \"A\\rb: c\""]
        );
        assert_eq!(
            problem(b"A: b\x01\rc"),
            ["bare CR inside header line \"A: b\\u{1}\\rc\""]
        );
        assert_eq!(problem(b"A b: c"), ["invalid header name in \"A b: c\""]);
        assert_eq!(problem(b": c"), ["invalid header name in \": c\""]);
        assert_eq!(
            problem(b"A: b\x01"),
            ["control character in the value of \"A: b\\u{1}\""]
        );
        assert_eq!(
            parse(b"A-b_~: \tb\tc \r\n\r\n").0,
            [Ok((&b"A-b_~"[..], &b"\tb\tc "[..]))]
        );
        // A line with two problems (its ending and its content), each reported in order;
        // a line with only a bad ending is still read.
        let (h, p) = parse(b"A: 1\nB c");
        assert_eq!(h, [Ok((&b"A"[..], &b"1"[..]))]);
        assert_eq!(
            p,
            [
                "header line \"A: 1\" ends with a bare LF, not CRLF",
                "header line \"B c\" does not end with CRLF",
                "header line \"B c\" has no colon",
                "the header block does not end with a blank line (\\r\\n\\r\\n)",
            ]
        );
    }
}
