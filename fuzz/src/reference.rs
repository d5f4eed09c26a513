//! A second, deliberately simple reading of RFC 9112 §2-3 and §6 (and RFC 3986 §3.2 for
//! Host), written without looking at how `http.rs` is structured: the whole input is cut
//! into lines first, each rule is one small function, and nothing is incremental. The
//! differential target holds the host's parser to it.
//!
//! Where the RFCs leave a choice to the server, this follows the host's documented policy
//! (docs/host.md, "Limits and errors"):
//!
//! * up to 64 CR/LF bytes before the request line are skipped, more are an error;
//! * a line ends in LF, with one CR before it dropped (RFC 9112 §2.2 lets a recipient
//!   accept a bare LF in the head); a CR anywhere else in a line is an error;
//! * limits: the request line (without its end) at most `request_line` bytes, else 414 (a
//!   line still arriving is measured without a last CR, which may begin its CRLF)
//!   (even before its end arrives); the header block (every header line with its line
//!   end, and the empty line) at most `header_bytes` bytes, else 431; at most 1000 header
//!   lines;
//! * only HTTP/1.0 and 1.1; obs-fold, Content-Length with Transfer-Encoding, chunked in
//!   HTTP/1.0, an Expect other than 100-continue, `*` for anything but OPTIONS are errors;
//!   a transfer coding other than a final `chunked` is an error.
//!
//! Which error (400, 414, 431, 501, 505) a request gets when it breaks several rules is a
//! matter of checking order, so the comparison is on the outcome's kind and, for a
//! complete head, on every field.

/// What a request head amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Incomplete,
    /// Refused (with a 4xx or 5xx).
    Error(u16),
    Head(Head),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: Vec<u8>,
    /// Origin form or `*`; of an absolute form, its path and query (`/` if empty).
    pub target: Vec<u8>,
    pub authority: Option<Vec<u8>>,
    pub http11: bool,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// None: no body; Some(None): chunked; Some(Some(n)): n bytes (n > 0).
    pub body: Option<Option<u64>>,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// Bytes of the input the head took.
    pub used: usize,
}

fn tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_'
        | b'`' | b'|' | b'~')
}

fn token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().copied().all(tchar)
}

fn ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

fn eq_ci(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Comma-separated list elements, trimmed, empty ones dropped (RFC 9110 §5.6.1).
fn list(v: &[u8]) -> Vec<&[u8]> {
    v.split(|&b| b == b',')
        .map(trim)
        .filter(|e| !e.is_empty())
        .collect()
}

// --- RFC 3986 §3.2.2-3.2.3 ---------------------------------------------------------------

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

fn reg_name(s: &[u8]) -> bool {
    let mut rest = s;
    loop {
        match rest {
            [] => return true,
            [b'%', h, l, tail @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                rest = tail
            }
            [b, tail @ ..] if unreserved(*b) || sub_delim(*b) => rest = tail,
            _ => return false,
        }
    }
}

/// dec-octet: 0-255 without leading zeros.
fn dec_octet(s: &[u8]) -> bool {
    match s {
        [d] => d.is_ascii_digit(),
        [b'1'..=b'9', d] => d.is_ascii_digit(),
        [b'1', d, e] => d.is_ascii_digit() && e.is_ascii_digit(),
        [b'2', b'0'..=b'4', e] => e.is_ascii_digit(),
        [b'2', b'5', b'0'..=b'5'] => true,
        _ => false,
    }
}

fn ipv4(s: &[u8]) -> bool {
    let parts: Vec<&[u8]> = s.split(|&b| b == b'.').collect();
    parts.len() == 4 && parts.iter().all(|p| dec_octet(p))
}

fn h16(s: &[u8]) -> bool {
    (1..=4).contains(&s.len()) && s.iter().all(u8::is_ascii_hexdigit)
}

/// 16-bit units in a `:`-separated run of h16 (the last may be an IPv4 address if
/// `last_may_be_v4`), or None if it is not one. An empty run has none.
fn units(run: &[u8], last_may_be_v4: bool) -> Option<usize> {
    if run.is_empty() {
        return Some(0);
    }
    let pieces: Vec<&[u8]> = run.split(|&b| b == b':').collect();
    let mut n = 0;
    for (i, p) in pieces.iter().enumerate() {
        if h16(p) {
            n += 1;
        } else if i == pieces.len() - 1 && last_may_be_v4 && ipv4(p) {
            n += 2;
        } else {
            return None;
        }
    }
    Some(n)
}

/// IPv6address of RFC 3986 §3.2.2: eight 16-bit units (an IPv4 address as the last two),
/// or fewer with one `::` standing for at least one.
fn ipv6(s: &[u8]) -> bool {
    let double = s.windows(2).filter(|w| w == b"::").count();
    let at = s.windows(2).position(|w| w == b"::");
    match (double, at) {
        (0, _) => units(s, true) == Some(8),
        (1, Some(i)) => {
            let (left, right) = (&s[..i], &s[i + 2..]);
            // ":::" would leave a ':' at a run's edge, which `units` refuses.
            match (units(left, false), units(right, true)) {
                (Some(l), Some(r)) => l + r <= 7,
                _ => false,
            }
        }
        _ => false,
    }
}

fn ipv_future(s: &[u8]) -> bool {
    let Some((v, rest)) = s.split_first() else {
        return false;
    };
    if !matches!(v, b'v' | b'V') {
        return false;
    }
    let Some(dot) = rest.iter().position(|&b| b == b'.') else {
        return false;
    };
    let (hex, tail) = (&rest[..dot], &rest[dot + 1..]);
    !hex.is_empty()
        && hex.iter().all(u8::is_ascii_hexdigit)
        && !tail.is_empty()
        && tail
            .iter()
            .all(|&b| unreserved(b) || sub_delim(b) || b == b':')
}

/// uri-host [ ":" port ]: returns the host part if valid.
fn authority(s: &[u8]) -> Option<&[u8]> {
    let (host, after) = if s.first() == Some(&b'[') {
        let close = s.iter().position(|&b| b == b']')?;
        let inner = &s[1..close];
        if !(ipv6(inner) || ipv_future(inner)) {
            return None;
        }
        (&s[..=close], &s[close + 1..])
    } else {
        let end = s.iter().position(|&b| b == b':').unwrap_or(s.len());
        if !reg_name(&s[..end]) {
            return None;
        }
        (&s[..end], &s[end..])
    };
    match after {
        [] => Some(host),
        [b':', port @ ..] if port.iter().all(u8::is_ascii_digit) => Some(host),
        _ => None,
    }
}

// --- RFC 9112 ----------------------------------------------------------------------------

/// The lines of `s`: (content, length with its line end); the last is None if unfinished.
fn lines(s: &[u8]) -> (Vec<(&[u8], usize)>, bool) {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..lf];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        out.push((line, lf + 1));
        rest = &rest[lf + 1..];
    }
    (out, !rest.is_empty())
}

struct Target {
    target: Vec<u8>,
    authority: Option<Vec<u8>>,
}

fn request_target(t: &[u8]) -> Option<Target> {
    if t.is_empty() || !t.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return None;
    }
    if t == b"*" || t[0] == b'/' {
        return Some(Target {
            target: t.to_vec(),
            authority: None,
        });
    }
    let lower = t.to_ascii_lowercase();
    let skip = if lower.starts_with(b"http://") {
        7
    } else if lower.starts_with(b"https://") {
        8
    } else {
        return None;
    };
    let rest = &t[skip..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (auth, path) = rest.split_at(end);
    // http URIs: a host that is not empty (RFC 9110 §4.2.1); userinfo fails `authority`.
    let host = authority(auth)?;
    if host.is_empty() {
        return None;
    }
    let target = match path.first() {
        None => b"/".to_vec(),
        Some(b'/') => path.to_vec(),
        Some(b'?') => [&b"/"[..], path].concat(),
        Some(_) => return None, // a fragment
    };
    Some(Target {
        target,
        authority: Some(auth.to_vec()),
    })
}

/// Reads one request head from the start of `input`.
pub fn parse(input: &[u8], request_line: usize, header_bytes: usize) -> Outcome {
    let skipped = input
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if skipped > 64 {
        return Outcome::Error(400);
    }
    let (all, _) = lines(&input[skipped..]);
    let Some(&(first, first_len)) = all.first() else {
        // A last CR may yet be the start of the line's CRLF.
        let pending = &input[skipped..];
        let so_far = pending.len() - usize::from(pending.ends_with(b"\r"));
        return if so_far > request_line {
            Outcome::Error(414)
        } else {
            Outcome::Incomplete
        };
    };
    if first.len() > request_line {
        return Outcome::Error(414);
    }
    let parts: Vec<&[u8]> = first.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return Outcome::Error(400);
    };
    if !token(method) {
        return Outcome::Error(400);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Outcome::Error(505);
        }
        _ => return Outcome::Error(400),
    };
    let Some(target) = request_target(target) else {
        return Outcome::Error(400);
    };

    // The header section: complete lines up to the empty one.
    let mut headers = Vec::new();
    let mut block = 0;
    let mut ended = false;
    for &(line, len) in &all[1..] {
        block += len;
        if block > header_bytes {
            return Outcome::Error(431);
        }
        if line.is_empty() {
            ended = true;
            break;
        }
        if line.contains(&b'\r') || ows(line[0]) {
            return Outcome::Error(400);
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Outcome::Error(400);
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if !token(name) || value.iter().any(|&b| b == 0x7f || (b < 0x20 && b != b'\t')) {
            return Outcome::Error(400);
        }
        if headers.len() == 1000 {
            return Outcome::Error(431);
        }
        headers.push((name.to_vec(), value.to_vec()));
    }
    if !ended {
        let received = input.len() - skipped - first_len;
        return if received > header_bytes {
            Outcome::Error(431)
        } else {
            Outcome::Incomplete
        };
    }
    let used = skipped + first_len + block;
    semantics(method, target, http11, headers, used)
}

/// RFC 9112 §3.2 (Host), §6 (body framing), §9.3 (persistence), RFC 9110 §10.1.1 (Expect).
fn semantics(
    method: &[u8],
    target: Target,
    http11: bool,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    used: usize,
) -> Outcome {
    let named = |n: &str| -> Vec<&[u8]> {
        headers
            .iter()
            .filter(|(k, _)| eq_ci(k, n))
            .map(|(_, v)| v.as_slice())
            .collect()
    };
    let hosts = named("host");
    if hosts.len() > 1 || (http11 && hosts.is_empty()) {
        return Outcome::Error(400);
    }
    if hosts.iter().any(|h| authority(h).is_none()) {
        return Outcome::Error(400);
    }
    let mut length = None;
    for v in named("content-length") {
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Outcome::Error(400);
        }
        let n: u64 = std::str::from_utf8(v).unwrap().parse().unwrap();
        if length.is_some_and(|l| l != n) {
            return Outcome::Error(400);
        }
        length = Some(n);
    }
    let te = named("transfer-encoding");
    let codings: Vec<&[u8]> = te.iter().flat_map(|v| list(v)).collect();
    let chunked = !te.is_empty();
    if chunked {
        // Only `chunked`, once, last.
        if codings.is_empty() || codings.iter().any(|c| !eq_ci(c, "chunked")) || codings.len() > 1 {
            return Outcome::Error(400);
        }
        if length.is_some() || !http11 {
            return Outcome::Error(400);
        }
    }
    let mut expect = false;
    for v in named("expect") {
        if !eq_ci(v, "100-continue") {
            return Outcome::Error(417);
        }
        expect = http11;
    }
    if target.target == b"*" && method != b"OPTIONS" {
        return Outcome::Error(400);
    }
    let connection: Vec<&[u8]> = named("connection")
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b',').map(trim))
        .collect();
    let close = connection.iter().any(|t| eq_ci(t, "close"));
    let keep = connection.iter().any(|t| eq_ci(t, "keep-alive"));
    let body = if chunked {
        Some(None)
    } else {
        length.filter(|&n| n > 0).map(Some)
    };
    Outcome::Head(Head {
        method: method.to_vec(),
        target: target.target,
        authority: target.authority,
        http11,
        headers,
        body,
        keep_alive: if http11 { !close } else { keep && !close },
        expect_continue: expect && body.is_some(),
        used,
    })
}
