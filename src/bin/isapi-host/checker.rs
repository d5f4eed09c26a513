//! The contract checker: every rule of the ISAPI contract the host can observe, and the
//! count of violations `--strict` turns into a non-zero exit status.
//!
//! The rules themselves are checked where the calls arrive (`callbacks.rs`, `exchange.rs`); this
//! module reports them in one format and validates the status line and header block an
//! extension sends (CRLF lines, `Name: value`, no bare CR or LF, a blank line at the end).
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
    if status.iter().any(|&b| b < 0x20 && b != b'\t') {
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

/// Parses a header block (`Name: value\r\n` lines, then `\r\n`). Always returns the lines
/// it could read, plus the list of problems found; the host sends the readable lines in
/// canonical form either way, so one bad header cannot corrupt the response on the wire.
pub fn parse_header_block(block: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut headers = Vec::new();
    let mut problems = Vec::new();
    if block.is_empty() {
        return (headers, problems);
    }
    let mut rest = block;
    let mut saw_blank = false;
    while !rest.is_empty() {
        let (line, next, terminator) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..], true),
            None => (rest, &rest[rest.len()..], false),
        };
        rest = next;
        let crlf = line.last() == Some(&b'\r');
        let line = if crlf { &line[..line.len() - 1] } else { line };
        let shown = || String::from_utf8_lossy(line);
        if saw_blank {
            problems.push(format!(
                "text after the blank line that ends the headers: {:?}",
                shown()
            ));
            break;
        }
        if !terminator {
            problems.push(format!("header line {:?} does not end with CRLF", shown()));
        } else if !crlf {
            problems.push(format!(
                "header line {:?} ends with a bare LF, not CRLF",
                shown()
            ));
        }
        if line.is_empty() {
            saw_blank = true;
            continue;
        }
        if line.contains(&b'\r') {
            problems.push(format!("bare CR inside header line {:?}", shown()));
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            problems.push(format!("header line {:?} has no colon", shown()));
            continue;
        };
        let name = &line[..colon];
        if name.is_empty()
            || !name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            problems.push(format!("invalid header name in {:?}", shown()));
            continue;
        }
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if value.iter().any(|&b| b < 0x20 && b != b'\t') {
            problems.push(format!("control character in the value of {:?}", shown()));
            continue;
        }
        // The name is checked to be token characters (ASCII) above.
        let name = name.iter().map(|&b| b as char).collect();
        headers.push((name, value.to_vec()));
    }
    if !saw_blank {
        problems.push("the header block does not end with a blank line (\\r\\n\\r\\n)".to_string());
    }
    (headers, problems)
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

    #[test]
    fn header_blocks() {
        let (h, p) = parse_header_block(b"Content-Type: text/plain\r\nX-A:b\r\n\r\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(
            h,
            vec![
                ("Content-Type".into(), b"text/plain".to_vec()),
                ("X-A".into(), b"b".to_vec())
            ]
        );
        assert!(parse_header_block(b"").1.is_empty());
        assert!(parse_header_block(b"\r\n").1.is_empty());
        assert_eq!(parse_header_block(b"A: b\r\n").1.len(), 1);
        assert_eq!(parse_header_block(b"A: b\n\r\n").1.len(), 1);
        assert_eq!(parse_header_block(b"A: b\rc\r\n\r\n").1.len(), 1);
        assert_eq!(parse_header_block(b"A b\r\n\r\n").1.len(), 1);
        let (h, p) = parse_header_block(b"A: 1\r\n\r\nbody");
        assert_eq!((h.len(), p.len()), (1, 1));
    }
}
