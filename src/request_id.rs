//! Request ids: one name for a request in every place it leaves a trace, so that an
//! administrator can follow it from IIS's log line to our log and to the page the client saw.
//!
//! Every request gets one ([`RequestId::assign`], once, by whoever answers it):
//!
//! * the client's (or a proxy's) `X-Request-Id` header, if it is a safe token: 1 to
//!   [`MAX_LEN`] characters from `A-Z a-z 0-9 - _ . : @ + = /` (nothing that could break a
//!   log line, a header or IIS's W3C log, whose fields are separated by spaces);
//! * otherwise a new one, `<process start, hex>-<pid, hex>-<counter>`, e.g.
//!   `674c9e3a-1f40-17`: unique across the worker processes of a pool and across recycles,
//!   without any random source.
//!
//! Assigning it also appends `request_id=<id>` to IIS's own log line for the request
//! (`HSE_APPEND_LOG_PARAMETER`: IIS adds the text to the W3C log's `cs-uri-query` field;
//! after a `&` when the request has a query string, so the field still reads as one).
//! The app sees it as `environ['isapi.request_id']`, the response carries it as
//! `X-Request-Id` (unless `[wsgi] request_id_header = false`), and our log lines and error
//! pages about the request name it ([`RequestId::as_str`]).
use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::isapi::decimal::decimal;
use crate::isapi::ecb::Ecb;

/// The longest client-supplied id that is kept (a longer one is replaced).
pub const MAX_LEN: usize = 64;

/// `[wsgi] request_id_header`: whether responses carry `X-Request-Id` (set at start-up).
static HEADER: AtomicBool = AtomicBool::new(true);

/// Sets `[wsgi] request_id_header` (at start-up).
pub fn set_header_enabled(on: bool) {
    HEADER.store(on, Ordering::Relaxed);
}

/// Whether responses carry `X-Request-Id`.
pub fn header_enabled() -> bool {
    HEADER.load(Ordering::Relaxed)
}

/// One request's id: at most [`MAX_LEN`] ASCII bytes, kept inline (no allocation per
/// request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId {
    bytes: [u8; MAX_LEN],
    len: u8,
}

/// `&request_id=` before the id in IIS's log line.
const LOG_KEY: &[u8] = b"&request_id=";

impl RequestId {
    /// The id for the request `ecb`: the client's `X-Request-Id` if it is a safe token,
    /// else a new one. Appends it to IIS's log line for the request.
    pub fn assign(ecb: &Ecb) -> RequestId {
        // One byte more than the longest id: a longer header does not fit, and is replaced.
        let mut header = [0u8; MAX_LEN + 1];
        let given = ecb.server_variable_in(c"HTTP_X_REQUEST_ID", &mut header);
        RequestId::assign_from_header(ecb, given)
    }

    /// [`assign`](RequestId::assign) for a caller that has read the request's headers
    /// already: `given` is its `X-Request-Id` (its values joined with `,` if it came more
    /// than once, which is then not safe), None without one.
    pub fn assign_from_header(ecb: &Ecb, given: Option<&[u8]>) -> RequestId {
        let id = match given {
            Some(given) if is_safe(given) => RequestId::from_safe(given),
            _ => RequestId::generate(),
        };
        // `request_id=<id>`, after `&` when the request has a query string, NUL-terminated.
        let key = if ecb.query_string().is_empty() {
            &LOG_KEY[1..]
        } else {
            LOG_KEY
        };
        let mut text = [0u8; LOG_KEY.len() + MAX_LEN + 1];
        let end = key.len() + id.as_bytes().len();
        text[..key.len()].copy_from_slice(key);
        text[key.len()..end].copy_from_slice(id.as_bytes());
        if let Ok(text) = std::ffi::CStr::from_bytes_with_nul(&text[..=end]) {
            ecb.append_log_parameter(text);
        }
        id
    }

    /// A new id: `<process start, hex>-<pid, hex>-<counter>`. The prefix is made once; per
    /// request only the counter's digits are written (no formatting machinery).
    pub fn generate() -> RequestId {
        static PREFIX: OnceLock<RequestId> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let prefix = PREFIX.get_or_init(|| {
            let started = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut prefix = RequestId {
                bytes: [0; MAX_LEN],
                len: 0,
            };
            let mut rest = &mut prefix.bytes[..];
            // At most 16 + 1 + 8 + 1 bytes.
            let _ = write!(rest, "{started:x}-{:x}-", std::process::id());
            prefix.len = (MAX_LEN - rest.len()) as u8;
            prefix
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut id = *prefix;
        // The counter's decimal digits, at most 20: always fits after the prefix (26 bytes).
        let mut buffer = [0u8; 20];
        let digits = decimal(n, &mut buffer);
        let len = usize::from(id.len);
        let end = len + digits.len();
        id.bytes[len..end].copy_from_slice(digits);
        id.len = end as u8;
        id
    }

    /// A token [`is_safe`] accepted.
    fn from_safe(given: &[u8]) -> RequestId {
        let mut bytes = [0u8; MAX_LEN];
        bytes[..given.len()].copy_from_slice(given);
        RequestId {
            bytes,
            len: given.len() as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Safe tokens and generated ids are ASCII.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a client's id may be used as it is.
pub fn is_safe(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-_.:@+=/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_tokens_only() {
        assert!(is_safe(b"abc-123_X.y:z@h+=/"));
        assert!(is_safe(&[b'a'; MAX_LEN]));
        assert!(!is_safe(&[b'a'; MAX_LEN + 1]));
        for bad in [
            &b""[..],
            b"a b",
            b"a\r\nb",
            b"a\"b",
            b"caf\xc3\xa9",
            b"a,b",
            b"a;b",
        ] {
            assert!(!is_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_differ_and_are_safe() {
        let (a, b) = (RequestId::generate(), RequestId::generate());
        assert_ne!(a, b);
        assert!(is_safe(a.as_str().as_bytes()), "{a}");
        let pid = format!("-{:x}-", std::process::id());
        assert!(a.as_str().contains(&pid), "{a}");
        // The counter in decimal, after the prefix.
        let counter = |id: &RequestId| id.as_str().rsplit('-').next().unwrap().parse::<u64>();
        assert!(counter(&b).unwrap() > counter(&a).unwrap(), "{a} {b}");
    }
}
