//! Server variables: what `GetServerVariable` answers for a request, in IIS's formats.
//!
//! A [`Site`] is the IIS configuration the request meets (virtual directory, handler
//! mapping, physical path, TLS, authentication). [`RequestInfo`] combines it with one
//! parsed request and the connection's addresses, computes the paths IIS derives
//! (SCRIPT_NAME, PATH_INFO, URL, PATH_TRANSLATED), and answers [`RequestInfo::write_wire`]
//! for every variable name: the documented ones, `HTTP_<NAME>`, `HEADER_<Name>` and the
//! `UNICODE_` forms (UTF-16). The names and formats are those of Microsoft's "IIS Server
//! Variables" reference (and the ISAPI `GetServerVariable` page); where IIS's documentation
//! is unclear, `docs/host.md` gives the choice made and why.
use crate::cli::{Options, ScriptMap};
use crate::http::{HttpError, RequestHead, owned_text, percent_decode};
use crate::staticfile::StaticRequest;
use isapi_wsgi::isapi::decimal::{decimal, push_ipv4};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The site and application configuration, fixed for the host's lifetime.
#[derive(Debug, Clone)]
pub struct Site {
    /// The virtual directory of the application: "/" or "/app" (no trailing slash).
    pub vdir: String,
    /// APPL_MD_PATH: `--appl-md-path` as given, else made from the vdir
    /// ([`default_appl_md_path`]).
    pub appl_md_path: String,
    pub script_map: ScriptMap,
    pub allow_path_info: bool,
    /// The application's physical directory, without a trailing separator.
    pub physical_path: String,
    pub https: bool,
    pub user: Option<String>,
    /// `--remote-addr`: the client address shown in REMOTE_ADDR / REMOTE_HOST.
    pub remote_addr: Option<IpAddr>,
    pub server_name: Option<String>,
    pub server_software: String,
    pub all_http_eol: &'static str,
    /// Leave Content-Length and Content-Type out of ALL_HTTP.
    pub all_http_omit_content: bool,
    /// `--static`: URL paths below the vdir that IIS's StaticFile handler answers.
    pub static_locations: Vec<String>,
}

/// The metabase path of the application in the vdir `vdir`, as IIS's default site has it.
pub fn default_appl_md_path(vdir: &str) -> String {
    if vdir == "/" {
        "/LM/W3SVC/1/ROOT".into()
    } else {
        format!("/LM/W3SVC/1/ROOT{vdir}")
    }
}

impl Site {
    pub fn from_options(o: &Options) -> Site {
        let physical = o.physical_path.to_string_lossy().into_owned();
        let trimmed = physical.trim_end_matches(['/', '\\']);
        Site {
            vdir: o.vdir.clone(),
            appl_md_path: o
                .appl_md_path
                .clone()
                .unwrap_or_else(|| default_appl_md_path(&o.vdir)),
            script_map: o.script_map.clone(),
            allow_path_info: o.allow_path_info,
            physical_path: if trimmed.is_empty() {
                physical.clone()
            } else {
                trimmed.to_string()
            },
            https: o.https,
            user: o.user.clone(),
            remote_addr: o.remote_addr,
            server_name: o.server_name.clone(),
            server_software: o.server_software.clone(),
            all_http_eol: if o.all_http_crlf { "\r\n" } else { "\n" },
            all_http_omit_content: o.all_http_omit_content,
            static_locations: o.static_locations.clone(),
        }
    }

    /// The part of `path` below the vdir, or None if `path` is outside it. IIS compares
    /// URL paths case-insensitively.
    fn below_vdir<'a>(&self, path: &'a str) -> Option<&'a str> {
        if self.vdir == "/" {
            return Some(path);
        }
        let n = self.vdir.len();
        let head = path.get(..n)?;
        if !head.eq_ignore_ascii_case(&self.vdir) {
            return None;
        }
        let rest = &path[n..];
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// The `--static` location `path` is in (whole segments, letter case ignored), as the
    /// request the StaticFile handler answers.
    fn static_request(&self, path: &str) -> Option<StaticRequest> {
        self.static_locations.iter().find_map(|location| {
            let head = path.get(..location.len())?;
            let below = &path[location.len()..];
            (head.eq_ignore_ascii_case(location) && (below.is_empty() || below.starts_with('/')))
                .then(|| StaticRequest {
                    directory: PathBuf::from(self.translate(location)),
                    below: below.to_string(),
                })
        })
    }

    /// Maps a URL path below the vdir to a physical path, with the OS's separator.
    fn translate(&self, url_path: &str) -> String {
        let below = self.below_vdir(url_path).unwrap_or(url_path);
        // Sized once: the path grows by at most a separator per segment, and one at the end.
        let mut out = String::with_capacity(self.physical_path.len() + below.len() + 1);
        out.push_str(&self.physical_path);
        for segment in below.split('/').filter(|s| !s.is_empty()) {
            out.push(std::path::MAIN_SEPARATOR);
            out.push_str(segment);
        }
        if below.ends_with('/') || below.is_empty() {
            out.push(std::path::MAIN_SEPARATOR);
        }
        out
    }
}

/// Why a request does not reach the extension.
#[derive(Debug)]
pub enum Unmapped {
    /// The URL is bad (400 and friends).
    Http(HttpError),
    /// The URL is outside the vdir or does not match the script map: 404.
    NotFound,
    /// The URL is in a `--static` location: the StaticFile handler answers it.
    Static(Box<RequestHead>, StaticRequest),
}

/// One request as the extension sees it.
#[derive(Debug)]
pub struct RequestInfo {
    pub head: RequestHead,
    /// The client's real address: REMOTE_PORT and the access log use it, REMOTE_ADDR too
    /// unless the site says otherwise (`--remote-addr`).
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// The decoded, normalised URL path: SCRIPT_NAME, PATH_INFO and URL are parts of it
    /// ([`script_name`](Self::script_name), [`path_info`](Self::path_info), [`url`](Self::url)).
    path: String,
    /// Where SCRIPT_NAME (and URL) ends in `path`.
    script_end: usize,
    /// Where PATH_INFO starts in `path`.
    info_start: usize,
    pub path_translated: String,
    /// With `--chunked-known-length`: the de-chunked length, shown as CONTENT_LENGTH.
    pub synthetic_length: Option<u32>,
    site: std::sync::Arc<Site>,
}

/// A variable's value without its NUL (what the unit tests compare).
#[cfg(test)]
#[derive(Debug, PartialEq, Eq)]
pub enum Value {
    /// A narrow (ANSI code page) string.
    Bytes(Vec<u8>),
    /// A `UNICODE_` variable, as UTF-16 code units.
    Wide(Vec<u16>),
}

/// Text of a known variable: a Unicode string, raw bytes from the wire, or something
/// written straight into the answer ([`RequestInfo::write_narrow`]) without a string of
/// its own: a number, an address, the header lists.
enum Text<'a> {
    Str(Cow<'a, str>),
    Raw(Cow<'a, [u8]>),
    Number(u64),
    Address(IpAddr),
    AllHttp,
    AllRaw,
}

/// The system ANSI code page as the host models it: Latin-1, with `?` for characters it
/// cannot represent (as the real conversion does for characters outside the code page).
pub fn ansi(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    push_ansi(&mut out, s);
    out
}

/// Appends `s` in the ANSI code page (see [`ansi`]) to `out`. ASCII, the usual case, is
/// the same bytes, copied at once (a character at a time cost about 4 instructions a byte
/// on every request's PATH_INFO and PATH_TRANSLATED).
fn push_ansi(out: &mut Vec<u8>, s: &str) {
    if s.is_ascii() {
        out.extend_from_slice(s.as_bytes());
    } else {
        out.extend(s.chars().map(ansi_char));
    }
}

fn ansi_char(c: char) -> u8 {
    if (c as u32) < 0x100 {
        c as u32 as u8
    } else {
        b'?'
    }
}

/// Bytes from the wire as text: UTF-8 if they are, else Latin-1.
fn bytes_to_string(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(owned_text(b.to_vec())),
    }
}

/// Where the host name of `host[:port]` (or `[v6]:port`) ends.
fn host_name_end(host: &[u8]) -> usize {
    if host.starts_with(b"[") {
        host.iter()
            .position(|&b| b == b']')
            .map_or(host.len(), |i| i + 1)
    } else {
        host.iter().rposition(|&b| b == b':').unwrap_or(host.len())
    }
}

/// Removes `.` and `..` segments; `..` above the root is an error.
fn normalise(path: String) -> Result<String, HttpError> {
    if !path.contains("/.") {
        return Ok(path);
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.pop().is_none() {
                    return Err(HttpError::BadRequest("URL path goes above the root"));
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

impl RequestInfo {
    /// Applies the site's mapping to a parsed request.
    pub fn new(
        head: RequestHead,
        remote: SocketAddr,
        local: SocketAddr,
        site: std::sync::Arc<Site>,
    ) -> Result<RequestInfo, Unmapped> {
        let raw_path = if head.target == "*" { "/" } else { head.path() };
        let decoded = percent_decode(raw_path).map_err(Unmapped::Http)?;
        if decoded.contains(&0) {
            return Err(Unmapped::Http(HttpError::BadRequest("NUL in the URL path")));
        }
        // http.sys treats `\` (and a decoded `%5C`) as `/` before it removes dot segments.
        let text = owned_text(decoded);
        let slashed = if text.contains('\\') {
            text.replace('\\', "/")
        } else {
            text
        };
        let path = normalise(slashed).map_err(Unmapped::Http)?;
        let below = site.below_vdir(&path).ok_or(Unmapped::NotFound)?;
        if let Some(request) = site.static_request(&path) {
            return Err(Unmapped::Static(Box::new(head), request));
        }
        let (script_end, info_start) = match &site.script_map {
            ScriptMap::Wildcard => (path.len(), 0),
            ScriptMap::Extension(ext) => {
                // The first segment below the vdir that ends with the extension.
                let base = path.len() - below.len();
                let mut end = None;
                let mut offset = 0;
                for segment in below.split('/') {
                    offset += segment.len();
                    if segment.len() > ext.len()
                        && segment
                            .get(segment.len() - ext.len()..)
                            .is_some_and(|e| e.eq_ignore_ascii_case(ext))
                    {
                        end = Some(base + offset);
                        break;
                    }
                    offset += 1;
                }
                let end = end.ok_or(Unmapped::NotFound)?;
                (end, if site.allow_path_info { end } else { 0 })
            }
        };
        let path_translated = site.translate(&path[info_start..]);
        Ok(RequestInfo {
            head,
            remote,
            local,
            path,
            script_end,
            info_start,
            path_translated,
            synthetic_length: None,
            site,
        })
    }

    pub fn site(&self) -> &Site {
        &self.site
    }

    /// SERVER_NAME: the configured name, else the request's host (an absolute-form target's
    /// authority, else the Host header) without its port, else the local address.
    pub fn server_name(&self) -> Cow<'_, str> {
        if let Some(n) = &self.site.server_name {
            return Cow::Borrowed(n);
        }
        if let Some(host) = self.head.host().filter(|h| !h.is_empty() && h[0] != b':') {
            return bytes_to_string(&host[..host_name_end(host)]);
        }
        Cow::Owned(self.local.ip().to_string())
    }

    /// SCRIPT_NAME: the whole path with a wildcard mapping, else up to the end of the
    /// mapped extension.
    pub fn script_name(&self) -> &str {
        &self.path[..self.script_end]
    }

    /// PATH_INFO: what follows SCRIPT_NAME with `allowPathInfo`, else the whole path (as
    /// IIS gives it by default).
    pub fn path_info(&self) -> &str {
        &self.path[self.info_start..]
    }

    /// URL: the same as SCRIPT_NAME.
    pub fn url(&self) -> &str {
        self.script_name()
    }

    /// The client's address as the extension sees it: `--remote-addr`, else the peer's.
    fn client_ip(&self) -> IpAddr {
        self.site.remote_addr.unwrap_or(self.remote.ip())
    }

    /// Appends the values of the headers whose names match, joined by `, `; false (and
    /// nothing appended) if there are none.
    fn joined_headers(&self, matches: impl Fn(&str) -> bool, out: &mut Vec<u8>) -> bool {
        let mut found = false;
        for (name, value) in self.head.headers.iter() {
            if matches(name) {
                if found {
                    out.extend_from_slice(b", ");
                }
                out.extend_from_slice(value);
                found = true;
            }
        }
        found
    }

    /// `HTTP_<NAME>`: upper-case, `-` as `_`; a header whose real name has `_` is unreachable.
    fn http_header(&self, upper: &[u8], out: &mut Vec<u8>) -> bool {
        self.joined_headers(
            |name| {
                !name.contains('_')
                    && name.len() == upper.len()
                    && name.bytes().zip(upper.iter().copied()).all(|(a, b)| {
                        let a = if a == b'-' {
                            b'_'
                        } else {
                            a.to_ascii_uppercase()
                        };
                        a == b
                    })
            },
            out,
        )
    }

    fn all_http(&self, out: &mut Vec<u8>) {
        for (name, value) in self.head.headers.iter() {
            let content = name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("content-type");
            if name.contains('_') || (content && self.site.all_http_omit_content) {
                continue;
            }
            out.extend_from_slice(b"HTTP_");
            out.extend(name.bytes().map(|b| {
                if b == b'-' {
                    b'_'
                } else {
                    b.to_ascii_uppercase()
                }
            }));
            out.push(b':');
            out.extend_from_slice(value);
            out.extend_from_slice(self.site.all_http_eol.as_bytes());
        }
    }

    fn all_raw(&self, out: &mut Vec<u8>) {
        for (name, value) in self.head.headers.iter() {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The documented variables (those valid with the `UNICODE_` prefix too).
    fn known(&self, name: &[u8]) -> Option<Text<'_>> {
        fn s(v: &str) -> Option<Text<'_>> {
            Some(Text::Str(Cow::Borrowed(v)))
        }
        fn o(v: String) -> Option<Text<'static>> {
            Some(Text::Str(Cow::Owned(v)))
        }
        let site = &*self.site;
        let user = site.user.as_deref().unwrap_or("");
        let tls = |v: &'static str| if site.https { s(v) } else { s("") };
        match name {
            b"ALL_HTTP" => Some(Text::AllHttp),
            b"ALL_RAW" => Some(Text::AllRaw),
            b"APPL_MD_PATH" => s(&site.appl_md_path),
            b"APPL_PHYSICAL_PATH" => o(format!(
                "{}{}",
                site.physical_path,
                std::path::MAIN_SEPARATOR
            )),
            b"APP_POOL_ID" => s("DefaultAppPool"),
            b"AUTH_PASSWORD" => s(""),
            b"AUTH_TYPE" => s(if site.user.is_some() { "Negotiate" } else { "" }),
            b"AUTH_USER" | b"LOGON_USER" | b"REMOTE_USER" | b"UNMAPPED_REMOTE_USER" => s(user),
            b"CACHE_URL" => o(format!(
                "{}://{}:{}{}",
                if site.https { "https" } else { "http" },
                self.server_name(),
                self.local.port(),
                self.head.target
            )),
            b"CERT_COOKIE" | b"CERT_FLAGS" | b"CERT_ISSUER" | b"CERT_SERIALNUMBER"
            | b"CERT_SUBJECT" => s(""),
            b"CERT_KEYSIZE" | b"HTTPS_KEYSIZE" => tls("256"),
            b"CERT_SECRETKEYSIZE" | b"HTTPS_SECRETKEYSIZE" => tls("2048"),
            b"CERT_SERVER_ISSUER"
            | b"CERT_SERVER_SUBJECT"
            | b"HTTPS_SERVER_ISSUER"
            | b"HTTPS_SERVER_SUBJECT" => {
                if site.https {
                    o(format!("CN={}", self.server_name()))
                } else {
                    s("")
                }
            }
            b"CONTENT_LENGTH" if self.synthetic_length.is_some() => {
                Some(Text::Number(self.synthetic_length.unwrap_or(0).into()))
            }
            b"CONTENT_LENGTH" => match self.head.header("content-length") {
                Some(v) => Some(Text::Raw(Cow::Borrowed(v))),
                None => s("0"),
            },
            b"CONTENT_TYPE" => Some(Text::Raw(Cow::Borrowed(
                self.head.header("content-type").unwrap_or(b""),
            ))),
            b"DOCUMENT_ROOT" => s(&site.physical_path),
            b"GATEWAY_INTERFACE" => s("CGI/1.1"),
            b"HTTPS" => s(if site.https { "on" } else { "off" }),
            b"HTTP_METHOD" | b"REQUEST_METHOD" => s(&self.head.method),
            b"HTTP_URL" | b"UNENCODED_URL" | b"REQUEST_URI" => s(&self.head.target),
            b"HTTP_VERSION" | b"SERVER_PROTOCOL" => s(self.head.version.as_str()),
            b"INSTANCE_ID" => s("1"),
            b"INSTANCE_META_PATH" => s("/LM/W3SVC/1"),
            b"INSTANCE_NAME" => s("DEFAULT WEB SITE"),
            b"LOCAL_ADDR" | b"SERVER_ADDR" => Some(Text::Address(self.local.ip())),
            b"MANAGED_PIPELINE_MODE" => s("Integrated"),
            b"PATH_INFO" => s(self.path_info()),
            b"PATH_TRANSLATED" | b"REQUEST_FILENAME" => s(&self.path_translated),
            b"QUERY_STRING" => s(self.head.query()),
            // IIS has reverse lookups off by default (enableReverseDns), so REMOTE_HOST is
            // the address too. `--remote-addr` replaces the address, not the port.
            b"REMOTE_ADDR" | b"REMOTE_HOST" => Some(Text::Address(self.client_ip())),
            b"REMOTE_PORT" => Some(Text::Number(self.remote.port().into())),
            b"SCRIPT_NAME" => s(self.script_name()),
            b"SCRIPT_FILENAME" => o(site.translate(self.script_name())),
            b"SCRIPT_TRANSLATED" => {
                let p = site.translate(self.script_name());
                o(if cfg!(windows) {
                    format!("\\\\?\\{p}")
                } else {
                    p
                })
            }
            b"SERVER_NAME" => Some(Text::Str(self.server_name())),
            b"SERVER_PORT" => Some(Text::Number(self.local.port().into())),
            b"SERVER_PORT_SECURE" => s(if site.https { "1" } else { "0" }),
            b"SERVER_SOFTWARE" => s(&site.server_software),
            b"URL" => s(self.url()),
            _ => None,
        }
    }

    /// Appends GetServerVariable's answer for `name` to `out`, as the bytes it copies (NUL
    /// included), and says whether it is a UNICODE_ (UTF-16LE) value; None (and nothing
    /// appended) means ERROR_INVALID_INDEX. On every request's path: the common names
    /// allocate nothing.
    pub fn write_wire(&self, name: &[u8], out: &mut Vec<u8>) -> Option<bool> {
        if let Some(rest) = name.strip_prefix(b"UNICODE_") {
            let narrow;
            let s = match self.known(rest)? {
                Text::Str(s) => s,
                other => {
                    narrow = self.narrow(other);
                    bytes_to_string(&narrow)
                }
            };
            out.reserve(2 * s.len() + 2);
            for unit in s.encode_utf16().chain(std::iter::once(0)) {
                out.extend_from_slice(&unit.to_le_bytes());
            }
            return Some(true);
        }
        let found = if let Some(text) = self.known(name) {
            self.write_narrow(text, out);
            true
        } else if let Some(header) = name.strip_prefix(b"HEADER_") {
            self.joined_headers(|n| n.as_bytes().eq_ignore_ascii_case(header), out)
        } else if let Some(upper) = name.strip_prefix(b"HTTP_") {
            self.http_header(upper, out)
        } else {
            false
        };
        if !found {
            return None;
        }
        out.push(0);
        Some(false)
    }

    /// Appends `text` as narrow bytes: strings in the ANSI code page, the rest as they are.
    fn write_narrow(&self, text: Text<'_>, out: &mut Vec<u8>) {
        use std::io::Write;
        match text {
            Text::Str(s) => push_ansi(out, &s),
            Text::Raw(b) => out.extend_from_slice(&b),
            Text::Number(n) => out.extend_from_slice(decimal(n, &mut [0; 20])),
            Text::Address(IpAddr::V4(a)) => push_ipv4(out, a),
            // Writing to a Vec cannot fail.
            Text::Address(a) => drop(write!(out, "{a}")),
            Text::AllHttp => self.all_http(out),
            Text::AllRaw => self.all_raw(out),
        }
    }

    fn narrow(&self, text: Text<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_narrow(text, &mut out);
        out
    }

    /// [`write_wire`](Self::write_wire) into a new buffer (for tests).
    #[cfg(test)]
    pub fn lookup_wire(&self, name: &str) -> Option<(Vec<u8>, bool)> {
        let mut wire = Vec::new();
        let wide = self.write_wire(name.as_bytes(), &mut wire)?;
        Some((wire, wide))
    }

    /// [`write_wire`](Self::write_wire) without the NUL, as text (for tests).
    #[cfg(test)]
    pub fn lookup(&self, name: &str) -> Option<Value> {
        let (mut wire, wide) = self.lookup_wire(name)?;
        if wide {
            wire.truncate(wire.len() - 2);
            Some(Value::Wide(
                wire.chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ))
        } else {
            wire.pop();
            Some(Value::Bytes(wire))
        }
    }

    /// The narrow strings the ECB carries directly.
    /// Appends the narrow strings the ECB carries directly (method, query, PATH_INFO,
    /// PATH_TRANSLATED, content type), each NUL-terminated, to `out`; returns their offsets.
    pub fn write_ecb_strings(&self, out: &mut Vec<u8>) -> [usize; 5] {
        let mut offsets = [0; 5];
        let content_type = self.head.header("content-type").unwrap_or(b"");
        for (i, offset) in offsets.iter_mut().enumerate() {
            *offset = out.len();
            match i {
                0 => out.extend_from_slice(self.head.method.as_bytes()),
                1 => out.extend_from_slice(self.head.query().as_bytes()),
                2 => push_ansi(out, self.path_info()),
                3 => push_ansi(out, &self.path_translated),
                _ => out.extend(content_type.iter().map(|&b| if b == 0 { b'?' } else { b })),
            }
            out.push(0);
        }
        offsets
    }

    pub fn is_head(&self) -> bool {
        self.head.method == "HEAD"
    }

    /// The path relative to the physical directory for HSE_REQ_MAP_URL_TO_PATH.
    pub fn map_url(&self, url: &str) -> String {
        self.site.translate(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, Parsed, parse_request};
    use std::sync::Arc;

    fn site(vdir: &str, map: ScriptMap, allow: bool) -> Arc<Site> {
        Arc::new(Site {
            vdir: vdir.into(),
            appl_md_path: default_appl_md_path(vdir),
            script_map: map,
            allow_path_info: allow,
            physical_path: "/srv/app".into(),
            https: false,
            user: None,
            remote_addr: None,
            server_name: None,
            server_software: "Microsoft-IIS/10.0".into(),
            all_http_eol: "\n",
            all_http_omit_content: false,
            static_locations: Vec::new(),
        })
    }

    fn info(target: &str, site: Arc<Site>) -> Result<RequestInfo, Unmapped> {
        let req = format!(
            "GET {target} HTTP/1.1\r\nHost: example:81\r\nX-Foo: a\r\nx-foo: b\r\nMy_Header: u\r\n\r\n"
        );
        let limits = Limits {
            request_line: 1000,
            header_bytes: 1000,
        };
        let Ok(Parsed::Complete(head, _)) = parse_request(req.as_bytes(), &limits) else {
            panic!()
        };
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        RequestInfo::new(head, a, "127.0.0.1:81".parse().unwrap(), site)
    }

    fn text(i: &RequestInfo, name: &str) -> String {
        match i.lookup(name) {
            Some(Value::Bytes(b)) => String::from_utf8(b).unwrap(),
            Some(Value::Wide(w)) => String::from_utf16(&w).unwrap(),
            None => "<none>".into(),
        }
    }

    #[test]
    fn shapes_per_script_map() {
        let i = info(
            "/app/run.wsgi/a/b?x=1",
            site("/app", ScriptMap::Extension(".wsgi".into()), false),
        )
        .unwrap();
        assert_eq!(
            (i.script_name(), i.path_info(), i.url()),
            ("/app/run.wsgi", "/app/run.wsgi/a/b", "/app/run.wsgi")
        );
        let i = info(
            "/app/run.wsgi/a/b?x=1",
            site("/app", ScriptMap::Extension(".wsgi".into()), true),
        )
        .unwrap();
        assert_eq!(i.path_info(), "/a/b");
        let i = info("/app/a/%20b", site("/app", ScriptMap::Wildcard, false)).unwrap();
        assert_eq!((i.script_name(), i.path_info()), ("/app/a/ b", "/app/a/ b"));
        assert_eq!(text(&i, "APPL_MD_PATH"), "/LM/W3SVC/1/ROOT/app");
        assert_eq!(text(&i, "HTTP_URL"), "/app/a/%20b");
        assert!(matches!(
            info("/other", site("/app", ScriptMap::Wildcard, false)),
            Err(Unmapped::NotFound)
        ));
        assert!(matches!(
            info("/appx", site("/app", ScriptMap::Wildcard, false)),
            Err(Unmapped::NotFound)
        ));
        assert!(matches!(
            info(
                "/app/x",
                site("/app", ScriptMap::Extension(".wsgi".into()), false)
            ),
            Err(Unmapped::NotFound)
        ));
        assert!(matches!(
            info("/../x", site("/", ScriptMap::Wildcard, false)),
            Err(Unmapped::Http(_))
        ));
        assert_eq!(
            info("/a/./b/../c", site("/", ScriptMap::Wildcard, false))
                .unwrap()
                .url(),
            "/a/c"
        );
    }

    #[test]
    fn static_locations_take_their_urls() {
        let mut with_static = (*site("/app", ScriptMap::Extension(".wsgi".into()), false)).clone();
        with_static.static_locations = vec!["/app/static".into()];
        let with_static = Arc::new(with_static);
        for (target, below) in [
            ("/app/static/css/site.css", "/css/site.css"),
            ("/APP/Static/a.js", "/a.js"),
            ("/app/static", ""),
            ("/app/x/../static/%2E%2E/static/b.png", "/b.png"),
        ] {
            match info(target, with_static.clone()) {
                Err(Unmapped::Static(head, request)) => {
                    assert_eq!(request.below, below, "{target}");
                    assert_eq!(
                        request.directory,
                        PathBuf::from(format!("/srv/app{}static", std::path::MAIN_SEPARATOR))
                    );
                    assert_eq!(head.target, target);
                }
                other => panic!("{target}: {other:?}"),
            }
        }
        // Dot-segments and encoded slashes are resolved first: these leave the location.
        for target in [
            "/app/staticx/a.css",
            "/app/static/../run.wsgi/a.css",
            "/app/static%2F..%2Frun.wsgi",
            "/app/static%5C..%5Crun.wsgi",
        ] {
            assert!(
                !matches!(info(target, with_static.clone()), Err(Unmapped::Static(..))),
                "{target}"
            );
        }
    }

    #[test]
    fn headers_and_unicode() {
        let i = info("/caf%C3%A9%E2%82%AC", site("/", ScriptMap::Wildcard, false)).unwrap();
        assert_eq!(
            i.lookup("PATH_INFO"),
            Some(Value::Bytes(b"/caf\xe9?".to_vec()))
        );
        assert_eq!(text(&i, "UNICODE_PATH_INFO"), "/café€");
        // The ECB's lpszPathInfo is the same narrow string.
        let mut strings = Vec::new();
        let at = i.write_ecb_strings(&mut strings);
        assert_eq!(&strings[at[2]..at[3]], b"/caf\xe9?\0");
        assert_eq!(text(&i, "HTTP_X_FOO"), "a, b");
        assert_eq!(text(&i, "HEADER_X-Foo"), "a, b");
        assert_eq!(text(&i, "HEADER_My_Header"), "u");
        assert_eq!(text(&i, "HTTP_MY_HEADER"), "<none>");
        assert_eq!(text(&i, "UNICODE_HTTP_X_FOO"), "<none>");
        assert_eq!(text(&i, "NO_SUCH_VARIABLE"), "<none>");
        assert_eq!(text(&i, "SERVER_NAME"), "example");
        assert_eq!(
            text(&i, "ALL_HTTP"),
            "HTTP_HOST:example:81\nHTTP_X_FOO:a\nHTTP_X_FOO:b\n"
        );
        assert_eq!(
            i.lookup_wire("UNICODE_INSTANCE_ID"),
            Some((vec![b'1', 0, 0, 0], true))
        );
        assert_eq!(i.lookup_wire("INSTANCE_ID"), Some((vec![b'1', 0], false)));
    }

    #[test]
    fn remote_addr_replaces_the_client_address_but_not_its_port() {
        let i = info("/x", site("/", ScriptMap::Wildcard, false)).unwrap();
        assert_eq!(text(&i, "REMOTE_ADDR"), "127.0.0.1");
        assert_eq!(text(&i, "REMOTE_HOST"), "127.0.0.1");
        for shown in ["192.0.2.7", "2001:db8::7"] {
            let mut s = (*site("/", ScriptMap::Wildcard, false)).clone();
            s.remote_addr = Some(shown.parse().unwrap());
            let i = info("/x", Arc::new(s)).unwrap();
            for name in [
                "REMOTE_ADDR",
                "REMOTE_HOST",
                "UNICODE_REMOTE_ADDR",
                "UNICODE_REMOTE_HOST",
            ] {
                assert_eq!(text(&i, name), shown, "{name}");
            }
            assert_eq!(text(&i, "REMOTE_PORT"), "5000");
            assert_eq!(text(&i, "LOCAL_ADDR"), "127.0.0.1");
        }
    }
}
