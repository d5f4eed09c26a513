//! One request's life, from its parsed head to its end: the [`Exchange`] (the ECB at a
//! fixed address, the strings it points to, and the mutable [`State`] behind a mutex,
//! since callbacks may come from any thread), the [`Registry`] that turns an HCONN back
//! into its exchange, calling `HttpExtensionProc`, and the two ways a request ends: a
//! return other than PENDING, or `HSE_REQ_DONE_WITH_SESSION` after PENDING
//! ([`done_with_session`]), whichever thread it comes from.
//!
//! A request goes through these states:
//!
//! 1. *started* ([`run`]): mapped onto the site, body pre-read, ECB built, registered (a
//!    URL in a `--static` location is answered by the StaticFile emulation instead, and
//!    goes no further);
//! 2. *in the extension*: `HttpExtensionProc` runs; callbacks find the exchange by HCONN;
//! 3. *returned* ([`State::returned`]): with PENDING the connection now belongs to the
//!    exchange until DONE_WITH_SESSION; with anything else the request ends at once;
//! 4. *ended* ([`finish`]): the response is completed, the unread body drained, the access
//!    log written, the slot released, and the connection handed back (to the worker that
//!    ran the request, or to the pool) or closed.
//!
//! * `HCONN` is not a pointer: it is a slot number plus a generation in the [`Registry`].
//!   A call with the HCONN of a request that has ended finds a newer generation (or an
//!   empty slot) and is reported as a contract violation instead of touching freed memory.
//! * The ECB is the one part shared without the mutex, since the extension owns it while
//!   the request runs; `EcbCell` says why sharing it is sound.
use crate::conn::{self, BodyError, BodyReader, Conn};
use crate::host::{Host, Waiting};
use crate::http::{BodyKind, RequestHead};
use crate::leftovers;
use crate::os;
use crate::response::{HTTP_API_SERVER, Response, write_counted};
use crate::staticfile::StaticRequest;
use crate::vars::{RequestInfo, Unmapped};
use isapi_wsgi::isapi::ffi::*;
use std::cell::{RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::ffi::{c_char, c_void};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

/// The four functions every ECB carries (the `callbacks` module's), handed in by the
/// server so that this module does not depend on the callbacks that depend on it.
pub struct Callbacks {
    pub get_server_variable: PFN_GETSERVERVARIABLE,
    pub write_client: PFN_WRITECLIENT,
    pub read_client: PFN_READCLIENT,
    pub server_support_function: PFN_SERVERSUPPORTFUNCTION,
}

/// An HSE_REQ_IO_COMPLETION callback and its context.
pub type Completion = (
    unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
    usize,
);

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// Creates the registry with `slots` request slots (once, before serving).
pub fn open_registry(slots: u32) {
    let _ = REGISTRY.set(Registry::new(slots));
}

/// The requests in flight, by HCONN.
pub fn registry() -> &'static Registry {
    REGISTRY
        .get()
        .expect("the registry is opened before the first request")
}

/// The mutable part of a request, shared by the callbacks.
pub struct State {
    /// The client connection; None once handed back or closed.
    pub conn: Option<Conn>,
    pub body: BodyReader,
    pub response: Response,
    /// What HttpExtensionProc returned, once it has.
    pub returned: Option<u32>,
    pub done_with_session: bool,
    /// The DWORD status passed with DONE_WITH_SESSION, if any.
    pub dws_status: Option<u32>,
    /// The request has ended (response finished, slot released).
    pub finished: bool,
    /// HSE_REQ_IO_COMPLETION: the callback and its context.
    pub io_completion: Option<Completion>,
    /// An HSE_IO_ASYNC operation has not completed yet.
    pub async_outstanding: bool,
    /// HSE_APPEND_LOG_PARAMETER text, for the access log.
    pub log_params: String,
    /// Close the connection after this response (HSE_IO_DISCONNECT_AFTER_SEND).
    pub close_after: bool,
    /// HSE_REQ_VECTOR_SEND with HSE_IO_FINAL_SEND: no more response data may follow.
    pub final_sent: bool,
    /// `--continue-on-read`: the client waits for `100 Continue`, which the first
    /// ReadClient sends.
    pub continue_pending: bool,
    /// The pre-read body bytes lpbData points to (freed when the request ends). A Vec,
    /// not a Box: lpbData is taken before the buffer moves here, and moving a Box would
    /// invalidate pointers derived from it (a Box asserts uniqueness, like `&mut`); moving a
    /// Vec leaves its buffer and the pointers into it alone.
    preread: Vec<u8>,
}

impl State {
    pub fn new(conn: Conn, body: BodyReader, response: Response) -> State {
        State {
            conn: Some(conn),
            body,
            response,
            returned: None,
            done_with_session: false,
            dws_status: None,
            finished: false,
            io_completion: None,
            async_outstanding: false,
            log_params: String::new(),
            close_after: false,
            final_sent: false,
            continue_pending: false,
            preread: Vec::new(),
        }
    }
}

/// One request in flight.
pub struct Exchange {
    /// Sequence number, for logs and traces.
    pub id: u64,
    pub hconn: usize,
    /// Boxed, as in [`Arriving`]: the request moves from step to step as a pointer.
    pub info: Box<RequestInfo>,
    /// DONE_WITH_SESSION has been called (mirrors `State::done_with_session`, readable
    /// without the lock, so that checking every callback never waits on a blocked read).
    pub ended: AtomicBool,
    /// Still live in the registry (cleared by [`Registry::remove`], under the slot's lock):
    /// what [`Registry::get`]'s per-thread shortcut checks instead of the slot.
    live: AtomicBool,
    pub started: Instant,
    retained: Arc<Retained>,
    state: Mutex<State>,
}

/// The part of a request that outlives its end for as long as its registry slot is not
/// reused ([`Registry::remove`]): the ECB and the strings it points to, so that an
/// extension that still reads its ECB after the end reads stale data, not freed memory,
/// and the label that names the request in the report of a late call. Everything else
/// (the request info, the response buffers) is freed when the request ends, on the thread
/// that ends it; keeping the whole Exchange until its slot came round again (4 096 requests
/// later by default, on whichever thread) made the allocator's frees a quarter of the
/// host's CPU time per request.
struct Retained {
    ecb: EcbCell,
    /// The strings the ECB points to, never written by the host after they are built (a
    /// Vec for the reason given at `State::preread`).
    _strings: Vec<u8>,
    /// "#12 GET /path?query", for logs and reports.
    label: String,
}

/// The largest strings buffer a thread keeps for its next request ([`Retained::stash`]).
const SPARE_STRINGS_LIMIT: usize = 8 * 1024;

thread_local! {
    /// The retained part of a request whose time was up ([`Registry::remove`]), kept for
    /// the next request this thread starts (one at most; see leftovers.rs).
    static SPARE_RETAINED: RefCell<Vec<Arc<Retained>>> = const { RefCell::new(Vec::new()) };
}

impl Retained {
    /// Keeps `older`, whose slot has let go of it, for the next request this thread
    /// registers, so that its Arc and strings buffer are written again instead of being
    /// freed now and allocated again there: a request's retained part is freed one
    /// generation later (thousands of requests later, on whichever thread), and those two
    /// allocations and frees were the most expensive ones of a request (cold memory,
    /// glibc's slow path). Only if nobody else holds it (a callback that still has its
    /// exchange), and only one: a second is freed.
    fn stash(older: Option<Arc<Retained>>) {
        let Some(mut older) = older else { return };
        let Some(unique) = Arc::get_mut(&mut older) else {
            return;
        };
        if unique._strings.capacity() > SPARE_STRINGS_LIMIT {
            return;
        }
        leftovers::keep(&SPARE_RETAINED, older, 1);
    }

    /// `retained` in `spare`'s Arc if there is one (nobody else can hold it: it was
    /// unique when stashed), else in a new one.
    fn into_spare(spare: Option<Arc<Retained>>, retained: Retained) -> Arc<Retained> {
        match spare {
            Some(mut arc) => match Arc::get_mut(&mut arc) {
                Some(old) => {
                    *old = retained;
                    arc
                }
                None => Arc::new(retained),
            },
            None => Arc::new(retained),
        }
    }

    /// What [`stash`](Retained::stash) kept on this thread, if anything.
    fn spare() -> Option<Arc<Retained>> {
        leftovers::take(&SPARE_RETAINED)
    }
}

/// The ECB the extension is handed, at a fixed address (inside the `Arc` of the
/// Exchange's [`Retained`] part) until the registry lets go of that too. The only part of an [`Exchange`] that is not
/// `Send` and `Sync` by itself (raw pointers, `UnsafeCell`); everything else is checked
/// by the compiler. The host reaches it only through `Exchange::ecb_ptr`,
/// `set_status_code`, `release_body` and `status_for_log`.
struct EcbCell(UnsafeCell<EXTENSION_CONTROL_BLOCK>);

// SAFETY: the ECB holds integers, the lpszLogData array, ConnID (an HCONN number, not a
// pointer), function pointers to the host's own callbacks, and six data pointers: the five
// strings point into `Retained::_strings` beside it, lpbData into the Exchange's
// `State::preread` (with no pre-read bytes, at the NUL that ends `_strings`; or is NULL).
// Both are heap buffers owned by the request, not any thread's stack or thread-local data,
// and dropping the ECB frees nothing through its pointers. So it may be dropped or used on
// any thread.
unsafe impl Send for EcbCell {}
// SAFETY: shared, the cell hands out nothing but the raw pointer. The host dereferences
// it in three places, each taking `&State`/`&mut State` to show that the request's
// `state` mutex is held, so host accesses never race with one another:
// `set_status_code` writes dwHttpStatusCode while the request runs, but only inside one of
// the extension's own synchronous calls (on its thread, as if it had written the field
// itself, as Apache's mod_isapi does); `release_body` (lpbData, cbAvailable) and
// `status_for_log` (reading dwHttpStatusCode) run when the request has ended, after
// HttpExtensionProc returned and after DONE_WITH_SESSION if it was PENDING, and both of
// those pass through the same mutex, so the extension's earlier writes are visible. Until
// the request ends the ECB is the extension's to read and write from any of its threads
// (ISAPI); after that it may not touch it. The host writes the buffers the pointers point
// into only before the ECB is handed out, and frees `preread` only after lpbData is NULL.
unsafe impl Sync for EcbCell {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// `#<id> <label>`, built by hand: `format!` costs about a thousand instructions, a
/// noticeable part of a small request. In `label`'s own buffer, which [`request_label`]
/// makes with room for the number.
fn numbered(id: u64, mut label: String) -> String {
    let mut digits = [0u8; 20];
    let id = isapi_wsgi::isapi::decimal::decimal(id, &mut digits);
    let mut prefix = [0u8; 22];
    prefix[0] = b'#';
    prefix[1..=id.len()].copy_from_slice(id);
    prefix[id.len() + 1] = b' ';
    // The prefix is ASCII: '#', digits, ' '.
    label.insert_str(
        0,
        std::str::from_utf8(&prefix[..id.len() + 2]).unwrap_or_default(),
    );
    label
}

/// `<method> <target>`, the request's name in logs, with room for [`numbered`]'s prefix.
fn request_label(head: &RequestHead) -> String {
    let mut label = String::with_capacity(22 + head.method.len() + 1 + head.target.len());
    label.push_str(&head.method);
    label.push(' ');
    label.push_str(&head.target);
    label
}

impl Exchange {
    /// Builds the ECB for `info` and registers the request. If no slot is free, answers
    /// 503 and returns None.
    #[allow(clippy::too_many_arguments)]
    fn register(
        host: &'static Host,
        callbacks: &Callbacks,
        info: Box<RequestInfo>,
        label: String,
        started: Instant,
        total_bytes: u32,
        preread: Vec<u8>,
        state: State,
    ) -> Option<Arc<Exchange>> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut label = Some(label);
        // The retained part of a request ended on this thread, if there is one: its memory
        // (the Arc and the strings' buffer) holds this request's instead of new allocations.
        let mut spare = Retained::spare();
        let mut text = spare
            .as_mut()
            .and_then(Arc::get_mut)
            .map(|old| std::mem::take(&mut old._strings))
            .unwrap_or_else(|| Vec::with_capacity(256));
        text.clear();
        let offsets = info.write_ecb_strings(&mut text);
        // A request without pre-read bytes gets this NUL as its lpbData (no buffer of its own).
        text.push(0);
        let no_body = text.len() - 1;
        let mut strings = text;
        let base = strings.as_mut_ptr();
        // SAFETY: each offset is that of a string write_ecb_strings appended, NUL included,
        // so it is inside the buffer `base` points to.
        let at = |i: usize| unsafe { base.add(offsets[i]) }.cast::<c_char>();
        let mut preread = preread;
        let available = preread.len().saturating_sub(1) as u32;
        let lpb_data = if preread.is_empty() {
            // SAFETY: `no_body` is the index of the byte pushed above, inside the buffer.
            unsafe { base.add(no_body) }
        } else {
            preread.as_mut_ptr()
        };
        let mut state = Some(state);
        let registered = registry().insert(|hconn| {
            let ecb = EXTENSION_CONTROL_BLOCK {
                cbSize: std::mem::size_of::<EXTENSION_CONTROL_BLOCK>() as u32,
                dwVersion: host.options.ecb_version,
                ConnID: hconn as *mut c_void,
                dwHttpStatusCode: 200,
                lpszLogData: [0; 80],
                lpszMethod: at(0),
                lpszQueryString: at(1),
                lpszPathInfo: at(2),
                lpszPathTranslated: at(3),
                cbTotalBytes: total_bytes,
                cbAvailable: available,
                lpbData: lpb_data,
                lpszContentType: at(4),
                GetServerVariable: callbacks.get_server_variable,
                WriteClient: callbacks.write_client,
                ReadClient: callbacks.read_client,
                ServerSupportFunction: callbacks.server_support_function,
            };
            let retained = Retained {
                ecb: EcbCell(UnsafeCell::new(ecb)),
                _strings: strings,
                label: numbered(id, label.take().unwrap_or_default()),
            };
            let retained = Retained::into_spare(spare.take(), retained);
            Arc::new(Exchange {
                id,
                hconn,
                info,
                ended: AtomicBool::new(false),
                live: AtomicBool::new(true),
                started,
                retained,
                state: Mutex::new(State {
                    preread: std::mem::take(&mut preread),
                    ..state.take().expect("insert calls this once")
                }),
            })
        });
        if registered.is_none()
            && let Some(conn) = state.and_then(|mut s| s.conn.take())
        {
            refuse_busy(host, conn, &label.unwrap_or_default(), started);
        }
        registered
    }

    /// The ECB, for the extension (HttpExtensionProc, completion callbacks).
    pub fn ecb_ptr(&self) -> *mut EXTENSION_CONTROL_BLOCK {
        self.retained.ecb.0.get()
    }

    /// "#12 GET /path?query", for logs and reports.
    pub fn label(&self) -> &str {
        &self.retained.label
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn violation(&self, host: &Host, what: &str) {
        host.checker.violation(self.label(), what);
    }

    /// Frees the pre-read body when the request has ended (`state` is this request's,
    /// locked); lpbData becomes NULL first.
    pub fn release_body(&self, state: &mut State) {
        // SAFETY: the ECB is alive (self owns it); the lock is held and the request has
        // ended, so neither the host nor a correct extension accesses it meanwhile (see
        // `EcbCell`'s Sync impl).
        unsafe {
            (*self.ecb_ptr()).lpbData = std::ptr::null_mut();
            (*self.ecb_ptr()).cbAvailable = 0;
        }
        state.preread = Vec::new();
    }

    /// Records the status sent in dwHttpStatusCode. Only for a call the extension is
    /// making (on its thread), with this request's `state` locked.
    pub fn set_status_code(&self, _locked: &mut State, code: u16) {
        // SAFETY: the ECB is alive (self owns it); the lock serializes this with the
        // host's other accesses, and the extension is inside its own call, so this is the
        // write it asked for (see `EcbCell`'s Sync impl).
        unsafe { (*self.ecb_ptr()).dwHttpStatusCode = u32::from(code) };
    }

    /// dwHttpStatusCode as the extension left it (used when it sent no headers), read
    /// when the request has ended, with this request's `state` locked.
    pub fn status_for_log(&self, _locked: &State) -> u16 {
        // SAFETY: the ECB is alive (self owns it); the request has ended and the lock is
        // held, so nothing writes it meanwhile (see `EcbCell`'s Sync impl).
        let code = unsafe { (*self.ecb_ptr()).dwHttpStatusCode };
        u16::try_from(code).unwrap_or(0)
    }
}

/// What happens to the connection after a request.
pub enum Next {
    /// Go on with the next request on this connection, on this thread.
    Continue(Conn),
    /// The connection is someone else's now: the exchange's (the extension returned
    /// PENDING), the readiness loop's (waiting for the pre-read, a drain, a close), or
    /// it is closed.
    Elsewhere,
}

/// Answers a request for a `--static` location as IIS's StaticFile handler does, without
/// the extension. The connection stays open only for a keep-alive request without a body.
fn serve_static(
    host: &'static Host,
    mut conn: Conn,
    head: &RequestHead,
    request: &StaticRequest,
    label: &str,
    started: Instant,
) -> Next {
    let answer = request.answer(&head.method);
    let code = answer.status();
    let keep = head.keep_alive && head.body == BodyKind::None && !host.stopping();
    let written = answer.write_to(
        &mut conn.out(),
        &host.site.server_software,
        head.method == "HEAD",
        keep,
    );
    let sent = written.as_ref().map_or(0, |n| *n);
    host.access
        .log(conn.remote, label, code, sent, started, "StaticFile");
    if keep && written.is_ok() {
        Next::Continue(conn)
    } else {
        host.close(conn);
        Next::Elsewhere
    }
}

/// A request whose head has arrived, on its way to HttpExtensionProc.
struct Arriving {
    callbacks: &'static Callbacks,
    /// Boxed: an `Arriving` is moved from step to step (run, preread, call, register) and
    /// into its `Exchange`, and the 300-odd bytes of a `RequestInfo` were copied at every
    /// move (about 600 instructions a request, more than the allocation costs).
    info: Box<RequestInfo>,
    /// "GET /path?query", for logs.
    label: String,
    started: Instant,
    body: BodyReader,
    /// The pre-read buffer: `want` bytes and a NUL; `got` of them read so far.
    preread: Vec<u8>,
    got: usize,
    want: usize,
    /// cbTotalBytes.
    total: u32,
    /// `--continue-on-read`: the first ReadClient sends 100 Continue.
    continue_on_read: bool,
}

/// Starts one request: maps it onto the site, sends 100 Continue if the client waits for
/// it, and pre-reads the body ([`preread`]), which may wait in the readiness loop.
pub fn run(
    host: &'static Host,
    callbacks: &'static Callbacks,
    mut conn: Conn,
    head: RequestHead,
) -> Next {
    let started = Instant::now();
    let label = request_label(&head);
    let info = match RequestInfo::new(head, conn.remote, conn.local, host.site.clone()) {
        Ok(info) => Box::new(info),
        Err(Unmapped::Http(e)) => {
            // URL canonicalisation fails in http.sys, before IIS sees the request.
            let remote = conn.remote;
            let sent = host.refuse(conn, e.status(), e.message(), HTTP_API_SERVER);
            host.access
                .log(remote, &label, e.status().0, sent, started, "");
            return Next::Elsewhere;
        }
        Err(Unmapped::NotFound) => {
            // IIS's own 404, with IIS's Server header.
            let remote = conn.remote;
            let (status, why) = ((404, "Not Found"), "no handler mapping for this URL");
            let sent = host.refuse(conn, status, why, &host.site.server_software);
            host.access.log(remote, &label, 404, sent, started, "");
            return Next::Elsewhere;
        }
        Err(Unmapped::Static(head, request)) => {
            return serve_static(host, conn, &head, &request, &label, started);
        }
    };
    let body = BodyReader::new(info.head.body);
    if !body.finished() {
        conn.start_body();
    }
    // The client waits for 100 Continue before it sends the body. http.sys sends it before
    // the read-ahead; with --continue-on-read the host reads nothing ahead and leaves it to
    // the extension's first ReadClient.
    let continue_on_read =
        info.head.expect_continue && conn.input.is_empty() && host.options.continue_on_read;
    if info.head.expect_continue
        && !continue_on_read
        && conn.input.is_empty()
        && conn
            .out()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_err()
    {
        return Next::Elsewhere;
    }
    let (total, want) = match info.head.body {
        BodyKind::None => (0u32, 0usize),
        BodyKind::Length(n) => (
            n.min(u32::MAX as u64) as u32,
            n.min(host.options.read_ahead as u64) as usize,
        ),
        BodyKind::Chunked => (u32::MAX, host.options.read_ahead),
    };
    let want = if continue_on_read { 0 } else { want };
    let request = Arriving {
        callbacks,
        info,
        label,
        started,
        body,
        // +1: a NUL after the data, as IIS seems to (with no data, Exchange::register points
        // lpbData at a NUL of its own).
        preread: if want == 0 {
            Vec::new()
        } else {
            vec![0u8; want + 1]
        },
        got: 0,
        want,
        total,
        continue_on_read,
    };
    preread(host, conn, request)
}

/// The pre-read (IIS's UploadReadAheadSize): lpbData holds the first `want` bytes of the
/// body. Takes what has arrived; if more is due, parks the request in the readiness loop
/// ([`Prereading`]) instead of waiting on this thread; else calls the extension.
fn preread(host: &'static Host, mut conn: Conn, mut request: Arriving) -> Next {
    let r = &mut request;
    while r.got < r.want {
        let out = (&mut r.preread[r.got..r.want]).into();
        match conn::take_body(&mut conn, &mut r.body, &mut { out }) {
            Ok(0) => break,
            Ok(n) => r.got += n,
            Err(BodyError::Malformed(e)) => {
                let remote = conn.remote;
                let sent = host.refuse(conn, e.status(), e.message(), HTTP_API_SERVER);
                host.access.log(remote, &r.label, 400, sent, r.started, "");
                return Next::Elsewhere;
            }
            Err(_) => unreachable!("take_body fails only on malformed framing"),
        }
    }
    if r.got < r.want && !r.body.finished() {
        let deadline = conn.wait_deadline();
        host.poller
            .arm(Box::new(Prereading { conn, request }), deadline);
        return Next::Elsewhere;
    }
    call(host, conn, request)
}

/// A request waiting in the readiness loop for its pre-read body bytes.
struct Prereading {
    conn: Conn,
    request: Arriving,
}

impl Waiting for Prereading {
    fn socket(&self) -> os::RawSocket {
        self.conn.socket()
    }

    fn serial(&self) -> u64 {
        self.conn.serial()
    }

    fn ready(self: Box<Self>, host: &'static Host) {
        let Prereading { mut conn, request } = *self;
        match conn.fill() {
            Ok(n) if n > 0 => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let deadline = conn.wait_deadline();
                return host
                    .poller
                    .arm(Box::new(Prereading { conn, request }), deadline);
            }
            _ => {
                let why = "client closed during the body";
                let r = &request;
                return host
                    .access
                    .log(conn.remote, &r.label, 400, 0, r.started, why);
            }
        }
        if let Next::Continue(conn) = preread(host, conn, request) {
            host.resume_here(conn);
        }
    }

    /// Too slow (`--min-receive-rate`, or the idle timeout): 408.
    fn expired(self: Box<Self>, host: &'static Host) {
        let Prereading { conn, request } = *self;
        if host.stopping() {
            return host.cut_while_arriving();
        }
        let remote = conn.remote;
        let why = "the request body did not arrive in time";
        let sent = host.refuse(conn, (408, "Request Timeout"), why, HTTP_API_SERVER);
        let r = &request;
        host.access
            .log(remote, &r.label, 408, sent, r.started, "body too slow");
    }
}

/// The pre-read is done: builds and registers the exchange and calls HttpExtensionProc.
fn call(host: &'static Host, mut conn: Conn, request: Arriving) -> Next {
    let Arriving {
        callbacks,
        mut info,
        label,
        started,
        body,
        mut preread,
        got,
        total,
        continue_on_read,
        ..
    } = request;
    if !preread.is_empty() {
        preread.truncate(got + 1);
        preread[got] = 0;
    }
    let total = if host.options.chunked_known_length
        && info.head.body == BodyKind::Chunked
        && body.finished()
    {
        // The whole chunked body arrived within the read-ahead: present its real length.
        info.synthetic_length = Some(got as u32);
        got as u32
    } else {
        total
    };
    let keep_alive = info.head.keep_alive && !host.stopping();
    let response = Response::new(
        info.head.version,
        keep_alive,
        info.is_head(),
        host.options.response_buffer,
        &host.site.server_software,
        host.options.buffered_content_length,
    )
    .writing_into(conn.take_out_buffer());
    let mut state = State::new(conn, body, response);
    state.continue_pending = continue_on_read;
    let Some(exchange) =
        Exchange::register(host, callbacks, info, label, started, total, preread, state)
    else {
        return Next::Elsewhere; // Exchange::register answered 503
    };
    host.trace(exchange.id, || {
        format!(
            "HttpExtensionProc({}) called",
            exchange.label().split_once(' ').map_or("", |(_, l)| l)
        )
    });
    let status = Calling::with(&exchange, || {
        // SAFETY: `Exchange::register` built the whole ECB (strings and pre-read body owned
        // by the exchange, ConnID its registry HCONN, the four callbacks, which find the
        // `Host` already set); the registry keeps the exchange, and so the ECB at this
        // address, until `finish` ends the request, which happens only after a non-PENDING
        // return (`after_return`) or DONE_WITH_SESSION; no Rust reference to the ECB exists
        // (the host reaches it only through `Exchange`'s raw-pointer accessors).
        unsafe { host.extension.http_extension_proc(exchange.ecb_ptr()) }
    });
    host.trace(exchange.id, || {
        format!("HttpExtensionProc -> {}", status_name(status))
    });
    after_return(host, &exchange, status)
}

pub fn status_name(status: u32) -> String {
    match status {
        1 => "HSE_STATUS_SUCCESS".into(),
        2 => "HSE_STATUS_SUCCESS_AND_KEEP_CONN".into(),
        3 => "HSE_STATUS_PENDING".into(),
        4 => "HSE_STATUS_ERROR".into(),
        n => format!("{n} (not an HSE_STATUS_* value)"),
    }
}

/// HttpExtensionProc has returned `status`: end the request now, or leave it to
/// DONE_WITH_SESSION.
fn after_return(host: &'static Host, exchange: &Arc<Exchange>, status: u32) -> Next {
    let mut state = exchange.lock();
    state.returned = Some(status);
    if !(1..=4).contains(&status) {
        exchange.violation(
            host,
            &format!("HttpExtensionProc returned {status}, which is not an HSE_STATUS_* value"),
        );
    }
    if status == HSE_STATUS_PENDING {
        if !state.done_with_session {
            if let Some(conn) = state.conn.as_mut() {
                conn.pending_on = host.poller.hold(conn.socket(), conn.serial());
            }
            return Next::Elsewhere;
        }
    } else if state.done_with_session {
        exchange.violation(
            host,
            "HSE_REQ_DONE_WITH_SESSION was called but HttpExtensionProc did not return HSE_STATUS_PENDING",
        );
    }
    match finish(host, exchange, &mut state, Ender::Return) {
        Some(conn) => Next::Continue(conn),
        None => Next::Elsewhere,
    }
}

/// What ended a request, which decides whether its response's last bytes may wait.
#[derive(Clone, Copy, PartialEq)]
pub enum Ender {
    /// HttpExtensionProc's return, on the worker that called it: the worker is back in its
    /// readiness loop, where it writes what waits ([`Unsent`]) after its other ready work.
    Return,
    /// HSE_REQ_DONE_WITH_SESSION, on any thread: the extension's own (written at once, as
    /// nobody would write it later), or a worker inside another call (the combining
    /// handler runs up to 64 queued requests in one call): what it kept back would wait
    /// for the whole call, or for the rescuer (10-15 ms). Written at once, the batch's
    /// Flask requests/s were the same (docs/host.md).
    DoneWithSession,
}

/// A response's last bytes up to this size may wait for the worker's other ready
/// connections ([`Unsent`]); a larger one is written at once.
const UNSENT_MAX: usize = 64 * 1024;

/// A kept connection whose response is complete but not yet written: the worker that ended
/// it writes it when it has no other connection ready, or a millisecond later
/// ([`Poller::later`](crate::poller::Poller::later)), then goes on with the connection.
/// So the responses to the requests one readiness report found go out together, as
/// bjoern's and nginx's do. A write wakes the client's thread; on one machine (a load
/// generator beside the server) that wake-up is paid by the writer, and when the client
/// thread is asleep, as it is after each response spread out over a slow application's
/// calls, it took 14 of the 104 us that a Flask request cost (docs/host.md).
struct Unsent {
    conn: Conn,
    bytes: Vec<u8>,
    /// What the request's access-log and `--trace` lines say, written once these bytes are
    /// (or could not be).
    ended: Ended,
}

/// A request that has left the registry but whose access-log line is not written yet
/// (its last bytes may still be going out): the shutdown waits for these too
/// ([`ending`]), so that no line is lost.
struct Ending;

static ENDING: AtomicUsize = AtomicUsize::new(0);

impl Ending {
    fn begin() -> Ending {
        ENDING.fetch_add(1, Ordering::SeqCst);
        Ending
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        ENDING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many ended requests have yet to write their access-log line.
pub fn ending() -> usize {
    ENDING.load(Ordering::SeqCst)
}

/// The end of a request as its access-log and `--trace` lines tell it.
struct Ended {
    /// Held until the lines are written.
    _ending: Ending,
    exchange: Arc<Exchange>,
    code: u16,
    /// Bytes on the wire so far.
    sent: u64,
    log_params: String,
}

impl Ended {
    /// Writes the lines, `more` bytes after those counted so far; the request has then
    /// ended for the shutdown's count too.
    fn report(self, host: &Host, more: u64, kept: bool) {
        let sent = self.sent + more;
        report_end(
            host,
            &self.exchange,
            self.code,
            sent,
            &self.log_params,
            kept,
        );
    }
}

/// A request's access-log line and its `--trace` line "request ended".
fn report_end(host: &Host, exchange: &Exchange, code: u16, sent: u64, params: &str, kept: bool) {
    let info = &exchange.info;
    let label = exchange.label();
    host.access
        .log(info.remote, label, code, sent, exchange.started, params);
    host.trace(exchange.id, || {
        let connection = if kept { "kept alive" } else { "closed" };
        format!("request ended: status {code}, {sent} bytes sent, connection {connection}")
    });
}

impl Waiting for Unsent {
    fn socket(&self) -> os::RawSocket {
        self.conn.socket()
    }

    fn serial(&self) -> u64 {
        self.conn.serial()
    }

    fn ready(self: Box<Self>, host: &'static Host) {
        let Unsent {
            mut conn,
            bytes,
            ended,
        } = *self;
        let (sent, written) = write_counted(&mut conn.out(), &bytes);
        ended.report(host, sent, written.is_ok());
        if written.is_err() {
            return host.close(conn);
        }
        conn.keep_out_buffer(bytes);
        host.resume_here(conn)
    }
}

/// Ends a request: final response bytes, framing checks, body drain, access log, registry
/// release. Returns the connection if it can serve another request now (None: closed, or
/// draining the rest of an unread body in the readiness loop).
pub fn finish(
    host: &'static Host,
    exchange: &Arc<Exchange>,
    state: &mut State,
    ender: Ender,
) -> Option<Conn> {
    if state.finished {
        return None;
    }
    state.finished = true;
    let ending = Ending::begin();
    registry().remove(exchange.hconn);
    exchange.release_body(state);
    let error =
        state.returned == Some(HSE_STATUS_ERROR) || state.dws_status == Some(HSE_STATUS_ERROR);
    let stopping = host.stopping();
    let mut conn = state.conn.take();
    let mut keep = false;
    let mut draining = None;
    // Back in a worker's readiness loop, the last bytes of a small response may wait (see
    // `Unsent`). Only where the poller keeps it: run at once, the item would nest the next
    // pipelined request's call inside this one (one worker).
    let later = ender == Ender::Return
        && host.poller.keeps_later()
        && !stopping
        && state.response.unsent_len() <= UNSENT_MAX;
    let mut unsent = Vec::new();
    if let Some(c) = conn.as_mut().filter(|c| !c.closed) {
        let error_page = error && !state.response.started();
        let written = if later {
            state.response.end(&mut c.out(), error_page, stopping)
        } else {
            state.response.finish(&mut c.out(), error_page, stopping)
        };
        keep = written.is_ok()
            && !state.response.failed
            && state.response.keep
            && !error
            && !state.close_after;
        if let Some(short) = state.response.short_by() {
            exchange.violation(
                host,
                &format!("the response ended {short} bytes short of its Content-Length; the connection is closed"),
            );
            keep = false;
        }
        if state.continue_pending && !state.body.finished() {
            // The client was never told to send its body: it may send it now, or never.
            // Neither can be told from the next request, so the connection closes.
            keep = false;
        }
        if keep && !state.body.finished() {
            // Unread request body: drain a little so the connection stays usable.
            let mut body = std::mem::replace(&mut state.body, BodyReader::Done);
            let mut left = DRAIN_BYTES;
            match drain(c, &mut body, &mut left) {
                Drained::Done => {}
                Drained::More => draining = Some((body, left)),
                Drained::Failed => keep = false,
            }
        }
        if draining.is_none() {
            c.receiving = None; // a drain keeps to the body's pace
        }
        if later && keep && draining.is_none() {
            unsent = state.response.take_unsent(stopping);
        } else if later {
            let _ = state.response.flush(&mut c.out(), stopping);
        }
    }
    let buffer = state.response.take_buffer();
    if let Some(c) = conn.as_mut() {
        c.keep_out_buffer(buffer);
    }
    let code = state
        .response
        .status_code()
        .unwrap_or(if state.response.raw {
            200
        } else {
            exchange.status_for_log(state)
        });
    let sent = state.response.bytes_sent;
    if !unsent.is_empty()
        && let Some(conn) = conn.take()
    {
        // Told once the last bytes are written (or not).
        let ended = Ended {
            _ending: ending,
            exchange: Arc::clone(exchange),
            code,
            sent,
            log_params: std::mem::take(&mut state.log_params),
        };
        host.later(Box::new(Unsent {
            conn,
            bytes: unsent,
            ended,
        }));
        return None;
    }
    report_end(host, exchange, code, sent, &state.log_params, keep);
    drop(ending);
    let mut conn = conn?;
    if !keep || stopping {
        host.close(conn);
        None
    } else if let Some((body, left)) = draining {
        host.release_hold(&mut conn);
        let deadline = conn.wait_deadline();
        host.poller
            .arm(Box::new(Draining { conn, body, left }), deadline);
        None
    } else {
        Some(conn)
    }
}

/// How much of an unread request body the host reads and drops after the response to
/// keep the connection (more: it is closed).
const DRAIN_BYTES: usize = 64 * 1024;

/// Where draining an unread body stands.
enum Drained {
    /// The body has ended: the connection can serve its next request.
    Done,
    /// More is due and nothing more has arrived: wait in the readiness loop.
    More,
    /// Over the limit, malformed, or the client is gone: close.
    Failed,
}

/// Drops what has arrived of an unread body, reading the socket only as far as it has
/// data already.
fn drain(conn: &mut Conn, body: &mut BodyReader, left: &mut usize) -> Drained {
    loop {
        match conn::skip_body(conn, body, left) {
            Ok(true) => return Drained::Done,
            Ok(false) if *left == 0 => return Drained::Failed,
            Ok(false) => {}
            Err(_) => return Drained::Failed,
        }
        match conn.fill_now() {
            Ok(Some(n)) if n > 0 => {}
            Ok(None) => return Drained::More,
            _ => return Drained::Failed,
        }
    }
}

/// A connection draining the rest of an unread request body in the readiness loop.
struct Draining {
    conn: Conn,
    body: BodyReader,
    left: usize,
}

impl Waiting for Draining {
    fn socket(&self) -> os::RawSocket {
        self.conn.socket()
    }

    fn serial(&self) -> u64 {
        self.conn.serial()
    }

    fn ready(mut self: Box<Self>, host: &'static Host) {
        let Draining { conn, body, left } = &mut *self;
        match drain(conn, body, left) {
            Drained::Done => {
                let Draining { mut conn, .. } = *self;
                conn.receiving = None;
                host.resume_here(conn)
            }
            Drained::More => {
                let deadline = self.conn.wait_deadline();
                host.poller.arm(self, deadline)
            }
            Drained::Failed => host.close(self.conn),
        }
    }

    fn expired(self: Box<Self>, host: &'static Host) {
        host.close(self.conn);
    }
}

/// Answers 503 when no request slot is free (`--max-requests`), and logs it.
fn refuse_busy(host: &Host, conn: Conn, label: &str, started: Instant) {
    let remote = conn.remote;
    let why = "too many requests in flight";
    let sent = host.refuse(conn, (503, "Service Unavailable"), why, HTTP_API_SERVER);
    host.access.log(remote, label, 503, sent, started, "");
}

/// HSE_REQ_DONE_WITH_SESSION (with its optional DWORD status): the extension is done with
/// a PENDING request. If HttpExtensionProc has returned, this thread ends the request now
/// (`trace` is called first, so the call's trace line comes before the end's); otherwise
/// the return will. Err if it was already called.
pub fn done_with_session(
    host: &'static Host,
    ex: &Arc<Exchange>,
    status: Option<u32>,
    trace: impl FnOnce(),
) -> Result<(), ()> {
    let mut state = ex.lock();
    if state.done_with_session {
        drop(state);
        ex.violation(host, "HSE_REQ_DONE_WITH_SESSION called twice");
        return Err(());
    }
    state.done_with_session = true;
    ex.ended.store(true, Ordering::SeqCst);
    state.dws_status = status;
    if state.async_outstanding {
        ex.violation(
            host,
            "HSE_REQ_DONE_WITH_SESSION while an asynchronous operation is outstanding",
        );
    }
    trace();
    if state.returned == Some(HSE_STATUS_PENDING) {
        // HttpExtensionProc has returned: this thread ends the request.
        if let Some(conn) = finish(host, ex, &mut state, Ender::DoneWithSession) {
            drop(state);
            host.resume_elsewhere(conn);
        }
    }
    Ok(())
}

/// At shutdown: reports every request still in flight as a violation.
pub fn report_unfinished(host: &'static Host) {
    for exchange in registry().live() {
        let state = exchange.lock();
        let what = if state.returned == Some(HSE_STATUS_PENDING) {
            "HttpExtensionProc returned HSE_STATUS_PENDING but HSE_REQ_DONE_WITH_SESSION never came"
        } else if state.returned.is_none() {
            "HttpExtensionProc had not returned when the shutdown wait ended"
        } else {
            "the request had not ended when the shutdown wait ended"
        };
        drop(state);
        exchange.violation(host, what);
    }
}

/// Requests in flight, addressed by HCONN = (generation << 32) | (slot + 1).
pub struct Registry {
    slots: Box<[Mutex<Slot>]>,
    /// Free slots, oldest first (FIFO, so an ended request's slot is reused late).
    free: Mutex<VecDeque<u32>>,
    active: AtomicUsize,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    live: Option<Arc<Exchange>>,
    /// What is kept of the request of the previous generation until the slot is reused
    /// ([`Retained`]): a late call with its HCONN is then reported with its name, and a
    /// misbehaving extension that still reads its ECB after DONE_WITH_SESSION reads stale
    /// data, not freed memory.
    previous: Option<Arc<Retained>>,
}

/// The request whose HttpExtensionProc the calling thread is in. Most callbacks come from
/// that thread during that call, for that request: [`Registry::get`] then finds it here,
/// without the slot's lock (17 look-ups for a usual request through the bridge).
struct Calling;

thread_local! {
    static CALLING: std::cell::RefCell<Option<Arc<Exchange>>> = const { std::cell::RefCell::new(None) };
}

impl Calling {
    /// Runs `call` (HttpExtensionProc) with `exchange` as the thread's current request.
    fn with<R>(exchange: &Arc<Exchange>, call: impl FnOnce() -> R) -> R {
        let before = CALLING.with_borrow_mut(|current| current.replace(exchange.clone()));
        let result = call();
        CALLING.with_borrow_mut(|current| *current = before);
        result
    }

    /// The thread's current request, if it is `hconn`'s and still live in the registry.
    fn current(hconn: usize) -> Option<Arc<Exchange>> {
        CALLING.with_borrow(|current| {
            current
                .as_ref()
                .filter(|e| e.hconn == hconn && e.live.load(Ordering::SeqCst))
                .cloned()
        })
    }
}

/// What a lookup found for an HCONN that is not live.
pub enum Stale {
    /// The request has ended.
    Ended(String),
    /// Not an HCONN this host ever gave out (or a very old one).
    Unknown,
}

impl Registry {
    pub fn new(capacity: u32) -> Registry {
        Registry {
            slots: (0..capacity).map(|_| Mutex::new(Slot::default())).collect(),
            free: Mutex::new((0..capacity).collect()),
            active: AtomicUsize::new(0),
        }
    }

    fn slot(&self, i: usize) -> MutexGuard<'_, Slot> {
        self.slots[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, make: impl FnOnce(usize) -> Arc<Exchange>) -> Option<Arc<Exchange>> {
        let index = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()?;
        let mut slot = self.slot(index as usize);
        let hconn = ((slot.generation as u64) << 32 | (index as u64 + 1)) as usize;
        let exchange = make(hconn);
        slot.live = Some(exchange.clone());
        self.active.fetch_add(1, Ordering::SeqCst);
        Some(exchange)
    }

    fn decode(&self, hconn: usize) -> Option<(usize, u32)> {
        let h = hconn as u64;
        let index = (h & 0xffff_ffff) as usize;
        (index >= 1 && index <= self.slots.len()).then_some((index - 1, (h >> 32) as u32))
    }

    pub fn get(&self, hconn: usize) -> Result<Arc<Exchange>, Stale> {
        if let Some(exchange) = Calling::current(hconn) {
            return Ok(exchange);
        }
        let (index, generation) = self.decode(hconn).ok_or(Stale::Unknown)?;
        let slot = self.slot(index);
        match &slot.live {
            Some(e) if slot.generation == generation => Ok(e.clone()),
            _ if slot.generation == generation.wrapping_add(1) => Err(Stale::Ended(
                slot.previous
                    .as_ref()
                    .map(|r| r.label.clone())
                    .unwrap_or_default(),
            )),
            _ => Err(Stale::Unknown),
        }
    }

    pub fn remove(&self, hconn: usize) {
        let Some((index, generation)) = self.decode(hconn) else {
            return;
        };
        let mut slot = self.slot(index);
        if slot.generation != generation || slot.live.is_none() {
            return;
        }
        let ended = slot.live.take();
        if let Some(exchange) = &ended {
            exchange.live.store(false, Ordering::SeqCst);
        }
        let older = std::mem::replace(
            &mut slot.previous,
            ended.as_ref().map(|e| e.retained.clone()),
        );
        slot.generation = slot.generation.wrapping_add(1);
        drop(slot);
        // Outside the slot's lock: the retained part of the slot's request before this one
        // is kept for this thread's next request, and (unless a callback still holds it)
        // this one's Exchange is freed.
        Retained::stash(older);
        drop(ended);
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(index as u32);
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// The count of requests in flight itself (for the crash report).
    pub fn active_counter(&self) -> &AtomicUsize {
        &self.active
    }

    /// How many requests are in flight.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// The requests in flight (for the shutdown report).
    pub fn live(&self) -> Vec<Arc<Exchange>> {
        self.slots
            .iter()
            .filter_map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).live.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_numbered() {
        let numbered = |id, label: &str| super::numbered(id, label.to_string());
        assert_eq!(numbered(0, "GET /"), "#0 GET /");
        assert_eq!(numbered(1234567, "GET /x?y"), "#1234567 GET /x?y");
        assert_eq!(numbered(u64::MAX, ""), format!("#{} ", u64::MAX));
    }
}
