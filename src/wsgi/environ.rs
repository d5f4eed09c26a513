//! Building the WSGI `environ` dict from a request.
//!
//! Speed matters here (it is most of the bridge's per-request cost), so:
//! * the keys are interned `str` objects made once ([`Keys`]), header keys are cached;
//! * entries that never change (`wsgi.version`, `wsgi.errors`, ...) sit in a template dict
//!   that is copied (`PyDict_Copy`) per request;
//! * the request headers come parsed, from one read of `ALL_RAW` (headers.rs);
//! * values that repeat from request to request (a header's, the client's address, the
//!   paths of a URL asked for again) reuse the `str` made for the last one.
//!
//! What goes in, and from where (see docs/bridge.md for the reasoning):
//! * The paths come from a [`Target`], read before the mount is chosen (mounts.rs):
//!   `PATH_INFO` from the raw URL (`HTTP_URL`, cut at `?`, percent-decoded to bytes, then
//!   made canonical as http.sys does: `\` as `/`, dot-segments removed; without `HTTP_URL`,
//!   the server's own PATH_INFO, made canonical the same way), and
//!   `SCRIPT_NAME` from where the application is mounted: the part of `APPL_MD_PATH` after
//!   `/ROOT` (compared case-insensitively), or, for an extension mapping such as `*.wsgi`,
//!   the path up to and including the mapped script. Both as latin-1-decoded bytes, as
//!   PEP 3333 wants.
//! * `REQUEST_URI` and `RAW_URI` (one `str`): the raw request target, `HTTP_URL`, query
//!   included, never decoded. `PATH_TRANSLATED` IIS's, only when there is a `PATH_INFO`.
//!   `REMOTE_HOST` IIS's (the address unless reverse lookups are on).
//! * `HTTP_*` from the headers as the client sent them; a header whose name contains `_` is
//!   dropped (it could pose as another header once `-` becomes `_`), duplicates are joined
//!   with `,` (`; ` for Cookie), Content-Type and Content-Length only appear as
//!   `CONTENT_TYPE`/`CONTENT_LENGTH`.
//! * `wsgi.url_scheme` is `https` when the server variable `HTTPS` is `on`.
//! * `REMOTE_USER`/`AUTH_TYPE`, and `isapi.logon_user` (`LOGON_USER`), only when IIS
//!   authenticated the request.
//!
//! * `isapi.server_variable`: a callable for any other server variable (server_variables.rs).
//! * `isapi.user_sid`, `isapi.groups`: the request's Windows token (identity.rs).
//! * `isapi.request_id`: the request's id (request_id.rs).
//!
//! The process environment is never copied in.
use std::cell::Cell;
use std::collections::HashMap;

use std::sync::{Mutex, MutexGuard};

use super::Lent;
use super::framing::Request;
use super::headers::{BuildFnv, Headers};
use super::proxy::{self, Cidr};
use super::spare;
use crate::isapi::decimal::decimal;
use crate::isapi::ecb::Ecb;
use crate::python::{Gil, PyRef, PyResult, PyStatic};
use crate::request_id::RequestId;

/// Most distinct header names kept in the cache (hostile clients may invent many).
const HEADER_KEY_CACHE: usize = 512;

macro_rules! keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        /// The interned environ keys and constant values, made once.
        pub struct Keys { $(pub $field: PyStatic,)* }
        impl Keys {
            pub fn new(gil: Gil<'_>) -> PyResult<'_, Keys> {
                Ok(Keys { $($field: gil.interned($text)?.into_static(),)* })
            }
        }
    };
}

keys! {
    request_method = c"REQUEST_METHOD",
    script_name = c"SCRIPT_NAME",
    path_info = c"PATH_INFO",
    query_string = c"QUERY_STRING",
    content_type = c"CONTENT_TYPE",
    content_length = c"CONTENT_LENGTH",
    server_name = c"SERVER_NAME",
    server_port = c"SERVER_PORT",
    server_protocol = c"SERVER_PROTOCOL",
    remote_addr = c"REMOTE_ADDR",
    remote_port = c"REMOTE_PORT",
    remote_host = c"REMOTE_HOST",
    path_translated = c"PATH_TRANSLATED",
    request_uri = c"REQUEST_URI",
    raw_uri = c"RAW_URI",
    remote_user = c"REMOTE_USER",
    auth_type = c"AUTH_TYPE",
    https = c"HTTPS",
    url_scheme = c"wsgi.url_scheme",
    input = c"wsgi.input",
    input_terminated = c"wsgi.input_terminated",
    server_variable = c"isapi.server_variable",
    logon_user = c"isapi.logon_user",
    user_sid = c"isapi.user_sid",
    groups = c"isapi.groups",
    request_id = c"isapi.request_id",
    http_host = c"HTTP_HOST",
    forwarded_for = c"HTTP_X_FORWARDED_FOR",
    forwarded_proto = c"HTTP_X_FORWARDED_PROTO",
    forwarded_host = c"HTTP_X_FORWARDED_HOST",
    original_remote_addr = c"isapi.original_remote_addr",
    original_url_scheme = c"isapi.original_url_scheme",
    original_http_host = c"isapi.original_http_host",
    http = c"http",
    https_value = c"https",
    on = c"on",
    get = c"GET",
    post = c"POST",
    http11 = c"HTTP/1.1",
    empty = c"",
}

/// Makes environ dicts: the keys, the template, the header key cache.
pub struct EnvironBuilder {
    keys: Keys,
    template: PyStatic,
    header_keys: Mutex<HeaderKeys>,
    /// Values that usually repeat from one request to the next (the mount point, the
    /// server's name and port, the client's address and port, and, while the same URL is
    /// asked for again, the request target, PATH_INFO and PATH_TRANSLATED): the last one of
    /// at most [`RECENT_VALUE_MAX`] bytes seen per slot is kept as a `str` and reused while
    /// the bytes match, which saves making a string per request. The slots are numbered in
    /// [`Filling`]'s methods.
    recent: Mutex<[Recent; RECENT_SLOTS]>,
    /// Templates with the common entries of recent requests in (see [`Common`]).
    usual: Mutex<UsualTemplates>,
    /// `[wsgi] trusted_proxies`.
    trusted_proxies: Vec<Cidr>,
}

/// The entries most of a site's requests share, as one request has them: its method,
/// SCRIPT_NAME, SERVER_NAME, SERVER_PORT, SERVER_PROTOCOL and HTTPS. A request whose are
/// those of one of the last few different requests starts from a copy of the template with
/// them in ([`UsualTemplates`]): that saves setting six entries, about 200 instructions
/// each.
#[derive(Clone, Default, PartialEq, Eq)]
struct Common {
    /// The values one after the other; `ends[i]` is where value `i` ends.
    bytes: Vec<u8>,
    ends: [usize; 6],
}

impl Common {
    const METHOD: usize = 0;
    const SCRIPT_NAME: usize = 1;
    const SERVER_NAME: usize = 2;
    const SERVER_PORT: usize = 3;
    const PROTOCOL: usize = 4;
    /// `on` or empty.
    const HTTPS: usize = 5;

    /// The common entries of the request `ecb`, whose SCRIPT_NAME is `script_name`.
    fn read(&mut self, ecb: &Ecb, request: Request, script_name: &[u8]) {
        self.bytes.clear();
        self.bytes.reserve(128);
        self.bytes.extend_from_slice(ecb.method());
        self.ends[Self::METHOD] = self.bytes.len();
        self.bytes.extend_from_slice(script_name);
        self.ends[Self::SCRIPT_NAME] = self.bytes.len();
        let _ = ecb.server_variable(c"SERVER_NAME", &mut self.bytes);
        self.ends[Self::SERVER_NAME] = self.bytes.len();
        let _ = ecb.server_variable(c"SERVER_PORT", &mut self.bytes);
        self.ends[Self::SERVER_PORT] = self.bytes.len();
        if request.http11 {
            self.bytes.extend_from_slice(b"HTTP/1.1");
        } else {
            let _ = ecb.server_variable(c"SERVER_PROTOCOL", &mut self.bytes);
        }
        self.ends[Self::PROTOCOL] = self.bytes.len();
        let at = self.bytes.len();
        let _ = ecb.server_variable(c"HTTPS", &mut self.bytes);
        let https = self.bytes[at..].eq_ignore_ascii_case(b"on");
        self.bytes.truncate(at);
        if https {
            self.bytes.extend_from_slice(b"on");
        }
        self.ends[Self::HTTPS] = self.bytes.len();
    }

    /// Value `i`.
    fn field(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// The template with one [`Common`]'s entries in.
struct Usual {
    common: Common,
    template: PyStatic,
}

/// A few [`Usual`] templates (a site with GET and POST requests, or several mounts, has
/// several usual sets of entries); a new one replaces the oldest.
#[derive(Default)]
struct UsualTemplates {
    entries: [Option<Usual>; 4],
    /// The entry the next new template replaces.
    next: usize,
}

impl UsualTemplates {
    /// A new reference to the template for `common`, if there is one.
    fn find<'py>(&self, gil: Gil<'py>, common: &Common) -> Option<PyRef<'py>> {
        self.entries
            .iter()
            .flatten()
            .find(|usual| usual.common == *common)
            .map(|usual| usual.template.bind(gil))
    }

    /// Keeps `usual`; returns the template it replaces, for the caller to release.
    fn insert(&mut self, usual: Usual) -> Option<Usual> {
        let replaced = self.entries[self.next].replace(usual);
        self.next = (self.next + 1) % self.entries.len();
        replaced
    }
}

/// A value seen last time (as bytes) and its `str`.
type Recent = Option<(Vec<u8>, PyStatic)>;

/// Keeps `value` (the `str` of `bytes`) as the slot's last value, reusing its buffer.
fn remember(slot: &mut Recent, gil: Gil<'_>, bytes: &[u8], value: &PyRef<'_>) {
    match slot {
        Some((seen, kept)) => {
            seen.clear();
            seen.extend_from_slice(bytes);
            std::mem::replace(kept, value.clone().into_static()).release(gil);
        }
        None => *slot = Some((bytes.to_vec(), value.clone().into_static())),
    }
}

/// The header key cache: each CGI name seen (`HTTP_USER_AGENT`) and where its slot is.
#[derive(Default)]
struct HeaderKeys {
    index: HashMap<Vec<u8>, usize, BuildFnv>,
    slots: Vec<HeaderSlot>,
}

impl HeaderKeys {
    /// The slot for the CGI name `name` (one hash look-up), made for a name not seen
    /// before while there is room; None when the cache is full.
    fn slot<'py>(&mut self, gil: Gil<'py>, name: &[u8]) -> PyResult<'py, Option<&mut HeaderSlot>> {
        let at = match self.index.get(name) {
            Some(&at) => at,
            None if self.slots.len() < HEADER_KEY_CACHE => {
                let key = gil.latin1(name)?.into_static();
                self.slots.push(HeaderSlot { key, last: None });
                self.index.insert(name.to_vec(), self.slots.len() - 1);
                self.slots.len() - 1
            }
            None => return Ok(None),
        };
        Ok(self.slots.get_mut(at))
    }
}

/// A header's environ key, and the last value seen for it (as bytes and as a `str`).
struct HeaderSlot {
    key: PyStatic,
    last: Option<(Vec<u8>, PyStatic)>,
}

/// Longer values (cookies, tokens, long URLs) are not kept between requests.
const RECENT_VALUE_MAX: usize = 256;

/// How many values [`EnvironBuilder::recent`] keeps (slots 0-7, see [`Filling`]).
const RECENT_SLOTS: usize = 8;

/// One request's environ while [`EnvironBuilder::build`] fills it, one group of entries at a
/// time, with the values kept from recent requests (locked for that time).
struct Filling<'b, 'py> {
    gil: Gil<'py>,
    keys: &'b Keys,
    environ: &'b PyRef<'py>,
    recent: MutexGuard<'b, [Recent; RECENT_SLOTS]>,
}

impl<'py> Filling<'_, 'py> {
    fn set(&self, key: &PyStatic, value: &PyRef<'py>) -> PyResult<'py, ()> {
        self.environ.set_kept_key(key, value)
    }

    fn kept(&self, key: &PyStatic, value: &PyStatic) -> PyResult<'py, ()> {
        self.environ.set_kept(key, value)
    }

    /// `key` = the latin-1 text `bytes` (the one empty `str` for no bytes).
    fn text(&self, key: &PyStatic, bytes: &[u8]) -> PyResult<'py, ()> {
        if bytes.is_empty() {
            self.kept(key, &self.keys.empty)
        } else {
            self.set(key, &self.gil.latin1(bytes)?)
        }
    }

    /// [`text`](Self::text), reusing the `str` of recent slot `slot` while the bytes are
    /// the same.
    fn recent(&mut self, slot: usize, key: &PyStatic, bytes: &[u8]) -> PyResult<'py, ()> {
        match self.seen(slot, bytes) {
            Some(value) => self.kept(key, value),
            None => {
                let value = self.make_and_keep(slot, bytes)?;
                self.set(key, &value)
            }
        }
    }

    /// The `str` of `bytes`: recent slot `slot`'s while the bytes are the same, else a new
    /// one (as [`recent`](Self::recent), for a value used further).
    fn recent_str(&mut self, slot: usize, bytes: &[u8]) -> PyResult<'py, PyRef<'py>> {
        match self.seen(slot, bytes) {
            Some(value) => Ok(value.bind(self.gil)),
            None => self.make_and_keep(slot, bytes),
        }
    }

    /// Recent slot `slot`'s `str`, if it was made of the same bytes.
    fn seen(&self, slot: usize, bytes: &[u8]) -> Option<&PyStatic> {
        match &self.recent[slot] {
            Some((bytes_seen, value)) if bytes_seen.as_slice() == bytes => Some(value),
            _ => None,
        }
    }

    /// A new `str` of `bytes`, kept in recent slot `slot` when it is short (a long URL is
    /// not copied for a next time).
    fn make_and_keep(&mut self, slot: usize, bytes: &[u8]) -> PyResult<'py, PyRef<'py>> {
        let value = self.gil.latin1(bytes)?;
        if bytes.len() <= RECENT_VALUE_MAX {
            remember(&mut self.recent[slot], self.gil, bytes, &value);
        }
        Ok(value)
    }

    /// The common entries (see [`Common`]), for a request whose are not in a usual template.
    fn common(&mut self, common: &Common) -> PyResult<'py, ()> {
        let k = self.keys;
        match common.field(Common::METHOD) {
            b"GET" => self.kept(&k.request_method, &k.get)?,
            b"POST" => self.kept(&k.request_method, &k.post)?,
            other => self.text(&k.request_method, other)?,
        }
        self.recent(0, &k.script_name, common.field(Common::SCRIPT_NAME))?;
        self.recent(1, &k.server_name, common.field(Common::SERVER_NAME))?;
        self.recent(2, &k.server_port, common.field(Common::SERVER_PORT))?;
        match common.field(Common::PROTOCOL) {
            b"HTTP/1.1" => self.kept(&k.server_protocol, &k.http11)?,
            other => self.text(&k.server_protocol, other)?,
        }
        if common.field(Common::HTTPS) == b"on" {
            self.kept(&k.https, &k.on)?;
            self.kept(&k.url_scheme, &k.https_value)
        } else {
            self.kept(&k.url_scheme, &k.http)
        }
    }

    /// QUERY_STRING, CONTENT_TYPE and CONTENT_LENGTH (or `wsgi.input_terminated`).
    fn body(&self, ecb: &Ecb) -> PyResult<'py, ()> {
        let k = self.keys;
        self.text(&k.query_string, ecb.query_string())?;
        let content_type = ecb.content_type();
        if !content_type.is_empty() {
            self.text(&k.content_type, content_type)?;
        }
        match ecb.total_bytes() {
            Some(0) => Ok(()),
            Some(length) => self.text(&k.content_length, decimal(length, &mut [0; 20])),
            // A body of unknown length (chunked): no CONTENT_LENGTH, and the stream tells the
            // application it may read to the end (the wsgi.input_terminated convention).
            None => self.set(&k.input_terminated, &self.gil.bool(true)),
        }
    }

    /// The request target as the client sent it (REQUEST_URI, RAW_URI), PATH_INFO, and
    /// PATH_TRANSLATED only with a PATH_INFO (RFC 3875 §4.1.6), as IIS mapped it.
    /// (Recent slots 5, 6 and 7: a client asking for the same URL again gets the same
    /// `str`s.)
    fn paths(&mut self, ecb: &Ecb, target: &Target) -> PyResult<'py, ()> {
        let k = self.keys;
        if let Some(raw) = &target.raw {
            let raw = self.recent_str(5, raw)?;
            self.set(&k.request_uri, &raw)?;
            self.set(&k.raw_uri, &raw)?;
        }
        let path_info = target.path_info();
        if path_info.is_empty() {
            self.kept(&k.path_info, &k.empty)?;
        } else {
            let value = self.recent_str(6, path_info)?;
            self.set(&k.path_info, &value)?;
        }
        // The ECB's field, not a server-variable call: the same value, one call fewer.
        let path_translated = ecb.path_translated();
        if !path_info.is_empty() && !path_translated.is_empty() {
            let value = self.recent_str(7, path_translated)?;
            self.set(&k.path_translated, &value)?;
        }
        Ok(())
    }

    /// REMOTE_ADDR, REMOTE_PORT and REMOTE_HOST: values that usually repeat from one
    /// request to the next.
    fn client(&mut self, ecb: &Ecb, scratch: &mut Vec<u8>) -> PyResult<'py, ()> {
        let k = self.keys;
        scratch.clear();
        let _ = ecb.server_variable(c"REMOTE_ADDR", scratch);
        let address = self.recent_str(3, scratch)?;
        self.set(&k.remote_addr, &address)?;
        let address_len = scratch.len();
        let _ = ecb.server_variable(c"REMOTE_PORT", scratch);
        self.recent(4, &k.remote_port, &scratch[address_len..])?;
        scratch.truncate(address_len);
        // REMOTE_HOST: IIS gives the address unless reverse lookups are on; a server without
        // it gets the address (RFC 3875 §4.1.9). Usually the same bytes: the same str.
        let _ = ecb.server_variable(c"REMOTE_HOST", scratch);
        let (address_bytes, host) = scratch.split_at(address_len);
        if host.is_empty() || host == address_bytes {
            self.set(&k.remote_host, &address)
        } else {
            self.text(&k.remote_host, host)
        }
    }

    /// REMOTE_USER, AUTH_TYPE and `isapi.logon_user`, only when IIS authenticated the
    /// request (AUTH_TYPE is empty for anonymous requests, so the others are only asked for
    /// then).
    fn authentication(&self, ecb: &Ecb, scratch: &mut Vec<u8>) -> PyResult<'py, ()> {
        let k = self.keys;
        scratch.clear();
        if !matches!(ecb.server_variable(c"AUTH_TYPE", scratch), Ok(true)) || scratch.is_empty() {
            return Ok(());
        }
        self.text(&k.auth_type, scratch)?;
        scratch.clear();
        if matches!(ecb.server_variable(c"REMOTE_USER", scratch), Ok(true)) && !scratch.is_empty() {
            self.text(&k.remote_user, scratch)?;
        }
        // The Windows account the request runs as, after IIS's mapping (identity.rs).
        scratch.clear();
        if matches!(ecb.server_variable(c"LOGON_USER", scratch), Ok(true)) && !scratch.is_empty() {
            self.text(&k.logon_user, scratch)?;
        }
        Ok(())
    }
}

impl EnvironBuilder {
    /// `template` holds the constant entries (see app.rs).
    /// `trusted_proxies`: whose X-Forwarded-* headers to believe (see proxy.rs).
    pub fn new<'py>(
        gil: Gil<'py>,
        template: PyRef<'py>,
        trusted_proxies: Vec<Cidr>,
    ) -> PyResult<'py, EnvironBuilder> {
        let keys = Keys::new(gil)?;
        // Placeholders for the keys every request sets: the per-request copy of the template
        // then already has room for them (replacing a value is cheaper than growing the dict).
        let k = &keys;
        for key in [
            &k.request_method,
            &k.query_string,
            &k.script_name,
            &k.path_info,
            &k.server_name,
            &k.server_port,
            &k.server_protocol,
            &k.remote_addr,
            &k.remote_port,
            &k.remote_host,
            &k.url_scheme,
            &k.input,
            &k.server_variable,
            &k.request_id,
        ] {
            template.set_item(&key.bind(gil), &k.empty.bind(gil))?;
        }
        // Room for the per-request entries: grow the template's table with keys that are
        // deleted again. CPython copies a dict that is at least 2/3 full by cloning its
        // table, so each request's copy starts with this room instead of resizing while the
        // headers go in. (An optimisation only: any CPython gives the same dict.)
        let used = template.len()?;
        let spare: Vec<PyRef<'py>> = (0..used / 2)
            .map(|n| gil.str(&format!("isapi_wsgi.room.{n}")))
            .collect::<Result<_, _>>()?;
        for key in &spare {
            template.set_item(key, &k.empty.bind(gil))?;
        }
        for key in &spare {
            template.del_item(key)?;
        }
        Ok(EnvironBuilder {
            keys,
            template: template.into_static(),
            header_keys: Mutex::new(HeaderKeys::default()),
            recent: Mutex::new(Default::default()),
            usual: Mutex::new(UsualTemplates::default()),
            trusted_proxies,
        })
    }

    /// The environ for the request `ecb` whose paths are `target`, with the request's lent
    /// objects (`wsgi.input`, `isapi.server_variable`, `isapi.groups`) and its id.
    pub fn build<'py>(
        &self,
        gil: Gil<'py>,
        ecb: &Ecb,
        headers: &Headers<'_>,
        request: Request,
        target: &Target,
        lent: &Lent<'_, 'py>,
        id: &RequestId,
    ) -> PyResult<'py, PyRef<'py>> {
        let k = &self.keys;
        // Buffers per thread, reused request after request: the common entries, server
        // variables, header names.
        thread_local!(static SCRATCH: Cell<(Common, Vec<u8>, Vec<u8>)> = Cell::default());
        let (mut common, mut scratch, mut name) = SCRATCH.take();
        scratch.reserve(256);
        // The entries most requests share, read first: when they are a recent request's, the
        // dict starts from a copy of the template that has them already. (No lock of ours
        // is held while a dict is copied: a copy may run the garbage collector, and a
        // finalizer may release the GIL.)
        common.read(ecb, request, target.script_name());
        let usual = self
            .usual
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .find(gil, &common);
        let environ = usual
            .as_ref()
            .unwrap_or(&self.template.bind(gil))
            .dict_copy()?;
        let mut filling = Filling {
            gil,
            keys: k,
            environ: &environ,
            recent: self
                .recent
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        };
        if usual.is_none() {
            filling.common(&common)?;
        }
        filling.body(ecb)?;
        filling.paths(ecb, target)?;
        filling.client(ecb, &mut scratch)?;
        filling.authentication(ecb, &mut scratch)?;
        drop(filling); // the recent values' lock
        if usual.is_none() {
            self.remember_usual(gil, &environ, &common)?;
        }
        let headers = self.headers(gil, headers, &environ, &mut name);
        if scratch.capacity() <= 64 * 1024 {
            SCRATCH.set((common, scratch, name));
        }
        headers?;
        self.forwarding(gil, &environ)?;
        // The request's own objects and its id.
        environ.set_kept_key(&k.input, lent.input)?;
        environ.set_kept_key(&k.server_variable, lent.server_variable)?;
        if let Some(sid) = lent.user_sid {
            environ.set_kept_key(&k.user_sid, &gil.str(sid)?)?;
        }
        if let Some(groups) = lent.groups {
            environ.set_kept_key(&k.groups, groups)?;
        }
        environ.set_kept_key(&k.request_id, &gil.str(id.as_str())?)?;
        Ok(environ)
    }

    /// Makes `common`'s entries, as `environ` has them, a usual set: a copy of the template
    /// with them in. Called with no lock of ours held (see [`EnvironBuilder::build`]).
    fn remember_usual<'py>(
        &self,
        gil: Gil<'py>,
        environ: &PyRef<'py>,
        common: &Common,
    ) -> PyResult<'py, ()> {
        let k = &self.keys;
        let template = self.template.bind(gil).dict_copy()?;
        for key in [
            &k.request_method,
            &k.script_name,
            &k.server_name,
            &k.server_port,
            &k.server_protocol,
            &k.url_scheme,
            &k.https,
        ] {
            let key = key.bind(gil);
            if let Some(value) = environ.get_item(&key) {
                template.set_item(&key, &value)?;
            }
        }
        let usual = Usual {
            common: common.clone(),
            template: template.into_static(),
        };
        let replaced = self
            .usual
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(usual);
        // Released after the lock: the old template may be freed here.
        if let Some(replaced) = replaced {
            replaced.template.release(gil);
        }
        Ok(())
    }

    /// X-Forwarded-For/-Proto/-Host applied, when the request came from a trusted proxy
    /// (proxy.rs); the values they replace are kept as `isapi.original_*`.
    fn forwarding<'py>(&self, gil: Gil<'py>, environ: &PyRef<'py>) -> PyResult<'py, ()> {
        if self.trusted_proxies.is_empty() {
            return Ok(());
        }
        let k = &self.keys;
        let get = |key: &PyStatic| environ.get_item(&key.bind(gil));
        let bytes = |key: &PyStatic| get(key).and_then(|value| value.latin1_bytes().ok());
        let set = |key: &PyStatic, value: &PyRef<'py>| environ.set_item(&key.bind(gil), value);
        let remote = bytes(&k.remote_addr).unwrap_or_default();
        let forwarded = proxy::forwarded(
            &self.trusted_proxies,
            &remote,
            bytes(&k.forwarded_for).as_deref(),
            bytes(&k.forwarded_proto).as_deref(),
            bytes(&k.forwarded_host).as_deref(),
        );
        if let Some(address) = forwarded.remote_addr {
            if let Some(original) = get(&k.remote_addr) {
                set(&k.original_remote_addr, &original)?;
            }
            let address = gil.str(&address)?;
            set(&k.remote_addr, &address)?;
            set(&k.remote_host, &address)?;
        }
        if let Some(scheme) = forwarded.scheme {
            if let Some(original) = get(&k.url_scheme) {
                set(&k.original_url_scheme, &original)?;
            }
            if scheme == "https" {
                set(&k.url_scheme, &k.https_value.bind(gil))?;
                set(&k.https, &k.on.bind(gil))?;
            } else {
                set(&k.url_scheme, &k.http.bind(gil))?;
                if get(&k.https).is_some() {
                    environ.del_item(&k.https.bind(gil))?;
                }
            }
        }
        if let Some(host) = forwarded.host {
            if let Some(original) = get(&k.http_host) {
                set(&k.original_http_host, &original)?;
            }
            set(&k.http_host, &gil.latin1(&host)?)?;
        }
        Ok(())
    }

    /// HTTP_* entries from the headers as the client sent them (headers.rs).
    fn headers<'py>(
        &self,
        gil: Gil<'py>,
        headers: &Headers<'_>,
        environ: &PyRef<'py>,
        name: &mut Vec<u8>,
    ) -> PyResult<'py, ()> {
        let mut cache = self
            .header_keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for (header, value) in headers.iter() {
            if !cgi_name(header, name) {
                continue;
            }
            let name: &[u8] = name;
            let Some(slot) = cache.slot(gil, name)? else {
                // The cache is full: a key and a value of its own.
                environ.set_item(&gil.latin1(name)?, &gil.latin1(value)?)?;
                continue;
            };
            // The same value as last time (a browser sends the same Accept, User-Agent,
            // Host... on every request): reuse its str.
            if let Some((seen, object)) = &slot.last
                && seen.as_slice() == value
            {
                environ.set_kept(&slot.key, object)?;
                continue;
            }
            let object = gil.latin1(value)?;
            if value.len() <= RECENT_VALUE_MAX {
                remember(&mut slot.last, gil, value, &object);
            }
            environ.set_kept_key(&slot.key, &object)?;
        }
        Ok(())
    }
}

/// Where the request goes, as the environ shows it: the raw request target, and the
/// canonical path with the point where SCRIPT_NAME ends and PATH_INFO begins. Read once per
/// request, on the thread IIS called us on, so that the mount is chosen before the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `HTTP_URL`, query included, never decoded (REQUEST_URI, RAW_URI); None if the
    /// server has none that starts with `/`.
    pub raw: Option<Vec<u8>>,
    /// The canonical path: SCRIPT_NAME followed by PATH_INFO, as bytes.
    pub path: Vec<u8>,
    /// Where SCRIPT_NAME ends in `path`.
    pub script_end: usize,
}

thread_local! {
    /// The thread's slots for a [`Target`]'s two buffers (spare.rs). A request that runs on
    /// the thread that read its target (the simple handler; the combining handler's own)
    /// allocates nothing here; one that runs on another thread (a pool worker, the combining
    /// handler's running thread) leaves its buffers to that thread, and the reading thread
    /// allocates new ones.
    static RAW_URL: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
    static PATH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

impl Drop for Target {
    /// Gives the buffers back to the thread.
    fn drop(&mut self) {
        spare::give(&RAW_URL, self.raw.take().unwrap_or_default());
        spare::give(&PATH, std::mem::take(&mut self.path));
    }
}

impl Target {
    /// SCRIPT_NAME and PATH_INFO from the raw URL (`HTTP_URL`) if there is one, else from
    /// the ECB's PATH_INFO; the split from APPL_MD_PATH and IIS's SCRIPT_NAME.
    pub fn read(ecb: &Ecb) -> Target {
        // One buffer: HTTP_URL, then APPL_MD_PATH and SCRIPT_NAME after it (cut off again);
        // and one for the path. Both the thread's from its previous request, if it has them.
        let (mut buffer, mut path) = (spare::take(&RAW_URL), spare::take(&PATH));
        let has_url = matches!(ecb.server_variable(c"HTTP_URL", &mut buffer), Ok(true))
            && buffer.starts_with(b"/");
        if !has_url {
            buffer.clear();
        }
        let url_end = buffer.len();
        let path = if has_url {
            let raw_path = buffer.split(|&b| b == b'?').next().unwrap_or_default();
            percent_decode_into(raw_path, &mut path);
            canonical_path(path)
        } else {
            // The server's own PATH_INFO: canonical from IIS, made so for any other server.
            path.extend_from_slice(ecb.path_info());
            canonical_path(path)
        };
        let _ = ecb.server_variable(c"APPL_MD_PATH", &mut buffer);
        let md_path_end = buffer.len();
        let _ = ecb.server_variable(c"SCRIPT_NAME", &mut buffer);
        let md_path = &buffer[url_end..md_path_end];
        let script = &buffer[md_path_end..];
        let script_end = split_point(&path, mount_point(md_path), script, ecb.path_info());
        buffer.truncate(url_end);
        let raw = if has_url {
            Some(buffer)
        } else {
            spare::give(&RAW_URL, buffer);
            None
        };
        Target {
            raw,
            path,
            script_end,
        }
    }

    /// SCRIPT_NAME: the path up to where PATH_INFO begins.
    pub fn script_name(&self) -> &[u8] {
        &self.path[..self.script_end]
    }

    /// PATH_INFO: the path after SCRIPT_NAME.
    pub fn path_info(&self) -> &[u8] {
        &self.path[self.script_end..]
    }
}

/// `HTTP_<NAME>` for a header name, into `out`; false for names to drop: `_` in the raw
/// name (CVE-2015-0219: `X_Auth` would pose as `X-Auth`), non-token characters, and
/// Content-Type/Content-Length (they are CONTENT_TYPE/CONTENT_LENGTH).
fn cgi_name(header: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.extend_from_slice(b"HTTP_");
    for &b in header {
        match CGI_BYTE[b as usize] {
            0 => return false,
            mapped => out.push(mapped),
        }
    }
    !(out == b"HTTP_CONTENT_TYPE" || out == b"HTTP_CONTENT_LENGTH" || out.len() == 5)
}

/// Each byte of a header name as it appears in the CGI name (upper case, `-` -> `_`), or 0
/// for bytes that make us drop the header (`_`, and anything that is not a token byte).
const CGI_BYTE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = match b {
            b'-' => b'_',
            b'a'..=b'z' => b.to_ascii_uppercase(),
            b'A'..=b'Z' | b'0'..=b'9' => b,
            b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'.' | b'^' | b'`' | b'|'
            | b'~' => b,
            _ => 0,
        };
        byte += 1;
    }
    table
};

/// `%XX` sequences to bytes; anything malformed stays as it is.
#[cfg(test)]
fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    percent_decode_into(raw, &mut out);
    out
}

/// `%XX` sequences of `raw` to bytes, appended to `out`; anything malformed stays as it is.
fn percent_decode_into(raw: &[u8], out: &mut Vec<u8>) {
    out.reserve(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let byte = raw[index];
        if byte == b'%'
            && index + 2 < raw.len()
            && let (Some(high), Some(low)) = (hex(raw[index + 1]), hex(raw[index + 2]))
        {
            out.push(high << 4 | low);
            index += 3;
            continue;
        }
        out.push(byte);
        index += 1;
    }
}

/// The path IIS routed, authorised and filtered, from the percent-decoded raw path: what
/// http.sys does to the URL before IIS sees it. It decodes first (so `%2F` is `/`, `%2E%2E`
/// is `..`), then turns `\` into `/` (`%5C` too, being decoded by then), then removes the
/// dot-segments (RFC 3986 §5.2.4; `..` never climbs above the root). Empty segments stay.
/// A path with nothing to change is returned as it is.
pub fn canonical_path(mut path: Vec<u8>) -> Vec<u8> {
    for byte in path.iter_mut().filter(|byte| **byte == b'\\') {
        *byte = b'/';
    }
    let dotted = path
        .split(|&b| b == b'/')
        .any(|segment| segment == b"." || segment == b"..");
    if !dotted || !path.starts_with(b"/") {
        return path;
    }
    let segments: Vec<&[u8]> = path[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut kept: Vec<&[u8]> = Vec::with_capacity(segments.len());
    for (index, &segment) in segments.iter().enumerate() {
        match segment {
            b"." | b".." => {
                if segment == b".." {
                    kept.pop();
                }
                // `/a/b/.` and `/a/b/..` end in a directory: keep the trailing slash.
                if index == last {
                    kept.push(b"");
                }
            }
            other => kept.push(other),
        }
    }
    let mut canonical = Vec::with_capacity(path.len());
    for segment in kept {
        canonical.push(b'/');
        canonical.extend_from_slice(segment);
    }
    if canonical.is_empty() {
        canonical.push(b'/');
    }
    canonical
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

/// The PATH_INFO the application would see for `ecb` (the path below where it is mounted
/// in IIS, before any `[mount]`), without Python: for the pages the extension answers itself
/// (the health page).
pub fn path_below_application(ecb: &Ecb) -> Vec<u8> {
    let target = Target::read(ecb);
    target.path_info().to_vec()
}

/// The application's mount point from APPL_MD_PATH: what follows `/ROOT` (any case), e.g.
/// `/LM/W3SVC/1/ROOT/app` -> `/app`, `/LM/W3SVC/1/Root` -> ``.
pub fn mount_point(appl_md_path: &[u8]) -> &[u8] {
    let is_root = |w: &[u8]| w[0] == b'/' && w.eq_ignore_ascii_case(b"/root");
    let mut search = 0;
    while let Some(found) = appl_md_path[search..].windows(5).position(is_root) {
        let end = search + found + 5;
        if end == appl_md_path.len() || appl_md_path[end] == b'/' {
            return trim_trailing_slash(&appl_md_path[end..]);
        }
        search = end;
    }
    b""
}

fn trim_trailing_slash(path: &[u8]) -> &[u8] {
    path.strip_suffix(b"/").unwrap_or(path)
}

/// Whether `path` is `prefix` or below it (`/app` takes `/app` and `/app/x`, not
/// `/apple`), without regard to ASCII case, as IIS compares URLs.
pub fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    path.len() >= prefix.len()
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
        && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Where the decoded request path splits into SCRIPT_NAME and PATH_INFO.
///
/// * Extension mapping (`*.wsgi`): IIS's SCRIPT_NAME is the mapped script and differs from
///   its PATH_INFO; the script is SCRIPT_NAME, the rest PATH_INFO.
/// * Wildcard mapping (`*`): IIS reports SCRIPT_NAME == PATH_INFO == the whole path; the
///   application's mount point is SCRIPT_NAME.
///
/// Prefixes compare case-insensitively (IIS URLs are); the bytes kept are the client's.
pub fn split_point(path: &[u8], mount: &[u8], iis_script: &[u8], iis_path_info: &[u8]) -> usize {
    let prefix_of = |prefix: &[u8]| is_under(path, prefix);
    let extension_mapped =
        !iis_script.is_empty() && iis_script != iis_path_info && iis_script.len() > mount.len();
    if extension_mapped && prefix_of(iis_script) {
        iis_script.len()
    } else if prefix_of(mount) {
        mount.len()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points() {
        assert_eq!(mount_point(b"/LM/W3SVC/1/ROOT"), b"");
        assert_eq!(mount_point(b"/LM/W3SVC/1/Root/app"), b"/app");
        assert_eq!(mount_point(b"/LM/W3SVC/1/root/a/b/"), b"/a/b");
        assert_eq!(mount_point(b"/LM/W3SVC/1/ROOTS/x/ROOT/y"), b"/y");
        assert_eq!(mount_point(b""), b"");
    }

    fn split_path(
        path: &[u8],
        mount: &[u8],
        script: &[u8],
        path_info: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let cut = split_point(path, mount, script, path_info);
        (path[..cut].to_vec(), path[cut..].to_vec())
    }

    #[test]
    fn paths_for_each_mapping() {
        // Extension map in /app (allowPathInfo false: IIS's PATH_INFO is the whole path).
        assert_eq!(
            split_path(
                b"/app/run.wsgi/a/b",
                b"/app",
                b"/app/run.wsgi",
                b"/app/run.wsgi/a/b"
            ),
            (b"/app/run.wsgi".to_vec(), b"/a/b".to_vec())
        );
        // Extension map at the site root, deeper folder.
        assert_eq!(
            split_path(b"/x/run.wsgi/a", b"", b"/x/run.wsgi", b"/a"),
            (b"/x/run.wsgi".to_vec(), b"/a".to_vec())
        );
        // Wildcard in /app, with the URL in another case.
        assert_eq!(
            split_path(b"/APP/a/b", b"/app", b"/APP/a/b", b"/APP/a/b"),
            (b"/APP".to_vec(), b"/a/b".to_vec())
        );
        // Wildcard at the root.
        assert_eq!(
            split_path(b"/a/b", b"", b"/a/b", b"/a/b"),
            (b"".to_vec(), b"/a/b".to_vec())
        );
        // The mount only matches whole segments.
        assert_eq!(
            split_path(b"/apple", b"/app", b"/apple", b"/apple"),
            (b"".to_vec(), b"/apple".to_vec())
        );
        assert_eq!(
            split_path(b"/app", b"/app", b"/app", b"/app"),
            (b"/app".to_vec(), b"".to_vec())
        );
    }

    fn canonical(path: &str) -> String {
        String::from_utf8(canonical_path(path.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn canonical_paths_lose_their_dot_segments_as_iis_routed_them() {
        // RFC 3986 §5.2.4's examples, and the ones that matter behind IIS's authorisation.
        assert_eq!(canonical("/a/b/c/./../../g"), "/a/g");
        assert_eq!(canonical("/app/admin/../public"), "/app/public");
        assert_eq!(canonical("/app/./x"), "/app/x");
        assert_eq!(canonical("/a/b/."), "/a/b/");
        assert_eq!(canonical("/a/b/.."), "/a/");
        assert_eq!(canonical("/a/.."), "/");
        assert_eq!(canonical("/.."), "/");
        assert_eq!(canonical("/../../etc"), "/etc");
        assert_eq!(canonical("/a//../b"), "/a/b");
        // Backslashes are slashes (http.sys); decoded %2F and %5C are too.
        assert_eq!(canonical("/app\\admin\\..\\public"), "/app/public");
        assert_eq!(
            String::from_utf8(canonical_path(percent_decode(b"/app/x%2F..%5C..%2Fadmin"))).unwrap(),
            "/admin"
        );
        assert_eq!(
            String::from_utf8(canonical_path(percent_decode(b"/app/%2E%2E/admin"))).unwrap(),
            "/admin"
        );
        // Nothing to change: the same bytes; dots inside names are names.
        assert_eq!(canonical("/a/b/"), "/a/b/");
        assert_eq!(canonical("/a//b"), "/a//b");
        assert_eq!(
            canonical("/.well-known/x..y/.../z."),
            "/.well-known/x..y/.../z."
        );
        assert_eq!(canonical(""), "");
    }

    #[test]
    fn decoding_and_header_names() {
        assert_eq!(
            percent_decode(b"/caf%C3%A9/%zz%4"),
            b"/caf\xc3\xa9/%zz%4".to_vec()
        );
        let mut name = Vec::new();
        assert!(cgi_name(b"User-Agent", &mut name) && name == b"HTTP_USER_AGENT");
        assert!(!cgi_name(b"X_Forwarded_For", &mut name));
        assert!(!cgi_name(b"Content-Type", &mut name));
        assert!(!cgi_name(b"content-length", &mut name));
        assert!(!cgi_name(b"Bad Name", &mut name));
    }
}
