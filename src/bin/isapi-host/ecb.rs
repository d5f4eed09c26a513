//! The EXTENSION_CONTROL_BLOCK the host hands to `HttpExtensionProc`, and the four
//! callbacks in it (GetServerVariable, WriteClient, ReadClient, ServerSupportFunction).
//!
//! * An [`Exchange`] is one request in flight: the ECB (at a fixed address until the
//!   request ends), the strings it points to, and the mutable [`State`] (connection, body,
//!   response, completion flags) behind a mutex, since callbacks may come from any thread.
//!   The ECB is the one part shared without that mutex, since the extension owns it while
//!   the request runs; `EcbCell` says why sharing it is sound.
//! * `HCONN` is not a pointer: it is a slot number plus a generation in the [`Registry`].
//!   A call with the HCONN of a request that has ended finds a newer generation (or an
//!   empty slot) and is reported as a contract violation instead of touching freed memory.
//! * Every callback catches panics (none may cross the `extern` boundary), reports the
//!   Win32 error code through [`crate::os::set_last_error`], and traces itself.
use crate::conn::{self, BodyError, BodyReader, Conn};
use crate::http::BodyOut;
use crate::os::set_last_error;
use crate::poller::Work;
use crate::response::Response;
use crate::server::{Host, host};
use crate::vars::RequestInfo;
use isapi_wsgi::isapi::ffi::*;
use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ffi::{CStr, c_char, c_void};
use std::net::Shutdown;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

const TRUE: BOOL = 1;
const FALSE: BOOL = 0;

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
    io_completion: Option<(
        unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
        usize,
    )>,
    /// An HSE_IO_ASYNC operation has not completed yet.
    async_outstanding: bool,
    /// HSE_APPEND_LOG_PARAMETER text, for the access log.
    pub log_params: String,
    /// Close the connection after this response (HSE_IO_DISCONNECT_AFTER_SEND).
    pub close_after: bool,
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
    pub info: RequestInfo,
    /// "GET /path?query", for logs.
    pub label: String,
    /// DONE_WITH_SESSION has been called (mirrors `State::done_with_session`, readable
    /// without the lock, so that checking every callback never waits on a blocked read).
    ended: AtomicBool,
    pub started: Instant,
    ecb: Box<EcbCell>,
    /// The strings the ECB points to, never written by the host after they are built (a
    /// Vec for the reason given at `State::preread`).
    _strings: Vec<u8>,
    state: Mutex<State>,
}

/// The ECB the extension is handed, at a fixed address (boxed, inside the Exchange's
/// `Arc`) until the Exchange is dropped. The only part of an [`Exchange`] that is not
/// `Send` and `Sync` by itself (raw pointers, `UnsafeCell`); everything else is checked
/// by the compiler. The host reaches it only through `Exchange::ecb_ptr`,
/// `set_status_code`, `release_body` and `status_for_log`.
struct EcbCell(UnsafeCell<EXTENSION_CONTROL_BLOCK>);

// SAFETY: the ECB holds integers, the lpszLogData array, ConnID (an HCONN number, not a
// pointer), function pointers to the host's own callbacks, and six data pointers: the five
// strings point into the Exchange's `_strings`, lpbData into its `State::preread` (or is
// NULL). Both are heap buffers owned by the same Exchange, not any thread's stack or
// thread-local data, and dropping the ECB frees nothing through its pointers. So it may be
// dropped or used on any thread.
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

impl Exchange {
    /// Builds the ECB for `info` and registers the request. If no slot is free, answers
    /// 503 and returns None.
    pub fn register(
        host: &'static Host,
        info: RequestInfo,
        label: String,
        started: Instant,
        total_bytes: u32,
        preread: Vec<u8>,
        state: State,
    ) -> Option<Arc<Exchange>> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let label = format!("#{id} {label}");
        let mut text = Vec::with_capacity(256);
        let offsets = info.write_ecb_strings(&mut text);
        let mut strings = text;
        let base = strings.as_mut_ptr();
        // SAFETY: each offset is that of a string write_ecb_strings appended, NUL included,
        // so it is inside the buffer `base` points to.
        let at = |i: usize| unsafe { base.add(offsets[i]) }.cast::<c_char>();
        let mut preread = preread;
        let available = (preread.len() - 1) as u32;
        let mut state = Some(state);
        let registered = host.registry.insert(|hconn| {
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
                lpbData: preread.as_mut_ptr(),
                lpszContentType: at(4),
                GetServerVariable: Some(get_server_variable),
                WriteClient: Some(write_client),
                ReadClient: Some(read_client),
                ServerSupportFunction: Some(server_support_function),
            };
            Arc::new(Exchange {
                id,
                hconn,
                info,
                label,
                ended: AtomicBool::new(false),
                started,
                ecb: Box::new(EcbCell(UnsafeCell::new(ecb))),
                _strings: strings,
                state: Mutex::new(State {
                    preread: std::mem::take(&mut preread),
                    ..state.take().expect("insert calls this once")
                }),
            })
        });
        if registered.is_none()
            && let Some(conn) = state.and_then(|mut s| s.conn.take())
        {
            conn::refuse(conn);
        }
        registered
    }

    /// The ECB, for the extension (HttpExtensionProc, completion callbacks).
    pub fn ecb_ptr(&self) -> *mut EXTENSION_CONTROL_BLOCK {
        self.ecb.0.get()
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn violation(&self, host: &Host, what: &str) {
        host.checker.violation(&self.label, what);
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
    fn set_status_code(&self, _locked: &mut State, code: u16) {
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
    /// The request of the previous generation, kept until the slot is reused: a late call
    /// with its HCONN is then reported with its name, and a misbehaving extension that
    /// still reads its ECB after DONE_WITH_SESSION reads stale data, not freed memory.
    previous: Option<Arc<Exchange>>,
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
        let (index, generation) = self.decode(hconn).ok_or(Stale::Unknown)?;
        let slot = self.slot(index);
        match &slot.live {
            Some(e) if slot.generation == generation => Ok(e.clone()),
            _ if slot.generation == generation.wrapping_add(1) => Err(Stale::Ended(
                slot.previous
                    .as_ref()
                    .map(|e| e.label.clone())
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
        slot.previous = slot.live.take();
        slot.generation = slot.generation.wrapping_add(1);
        drop(slot);
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(index as u32);
        self.active.fetch_sub(1, Ordering::SeqCst);
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

// ---- the callbacks ---------------------------------------------------------------------

/// Runs a callback body: no panic leaves it, and a panic answers FALSE.
fn guarded(name: &str, body: impl FnOnce() -> BOOL) -> BOOL {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|_| {
        eprintln!("isapi-host: internal error (panic) in {name}; answering FALSE");
        set_last_error(ERROR_INVALID_PARAMETER);
        FALSE
    })
}

/// Fails a call: sets the last error, traces, returns FALSE.
fn fail(host: &Host, id: u64, call: impl Fn() -> String, error: u32) -> BOOL {
    host.trace(id, || {
        format!("{} -> FALSE, error {}", call(), error_name(error))
    });
    set_last_error(error);
    FALSE
}

/// Reads the byte count WriteClient / ReadClient receive by pointer, checking the pair:
/// a NULL count, or a NULL buffer with a non-zero count, fails the call `name` with
/// ERROR_INVALID_PARAMETER (the `Err` is the FALSE to return).
///
/// # Safety
/// `size` is NULL or points to a readable DWORD.
unsafe fn caller_size(
    host: &Host,
    id: u64,
    name: &str,
    buffer: *mut c_void,
    size: *mut DWORD,
) -> Result<usize, BOOL> {
    if size.is_null() {
        let call = || format!("{name}(size NULL)");
        return Err(fail(host, id, call, ERROR_INVALID_PARAMETER));
    }
    // SAFETY: size is non-NULL and, by this function's contract, points to a DWORD.
    let len = unsafe { *size } as usize;
    if buffer.is_null() && len > 0 {
        let call = || format!("{name}(NULL buffer)");
        return Err(fail(host, id, call, ERROR_INVALID_PARAMETER));
    }
    Ok(len)
}

fn error_name(code: u32) -> String {
    let name = match code {
        ERROR_INVALID_PARAMETER => "ERROR_INVALID_PARAMETER",
        ERROR_INSUFFICIENT_BUFFER => "ERROR_INSUFFICIENT_BUFFER",
        ERROR_INVALID_INDEX => "ERROR_INVALID_INDEX",
        ERROR_CONNECTION_ABORTED => "ERROR_CONNECTION_ABORTED",
        ERROR_NO_DATA => "ERROR_NO_DATA",
        WSAEINVAL => "WSAEINVAL",
        _ => return code.to_string(),
    };
    format!("{name} ({code})")
}

/// Finds the live request for `hconn`, reporting a violation (and failing the call) if
/// it has ended or never existed.
/// `call` names the call for messages; it is only formatted when one is printed.
fn exchange_for(
    host: &'static Host,
    hconn: HCONN,
    call: impl Fn() -> String,
) -> Option<Arc<Exchange>> {
    match host.registry.get(hconn as usize) {
        Ok(exchange) => {
            if exchange.ended.load(Ordering::SeqCst) {
                let call = call();
                if call != "ServerSupportFunction(HSE_REQ_DONE_WITH_SESSION)" {
                    exchange.violation(host, &format!("{call} after HSE_REQ_DONE_WITH_SESSION"));
                }
            }
            Some(exchange)
        }
        Err(Stale::Ended(label)) => {
            let call = call();
            let what = if call.contains("DONE_WITH_SESSION") {
                "HSE_REQ_DONE_WITH_SESSION called twice, or after the request had ended".to_string()
            } else {
                format!(
                    "{call} with the HCONN of a request that has already ended (after DONE_WITH_SESSION or a non-PENDING return)"
                )
            };
            host.checker.violation(&label, &what);
            set_last_error(ERROR_INVALID_PARAMETER);
            None
        }
        Err(Stale::Unknown) => {
            let call = call();
            host.checker.violation(
                "(unknown request)",
                &format!("{call} with an invalid HCONN {hconn:p}"),
            );
            set_last_error(ERROR_INVALID_PARAMETER);
            None
        }
    }
}

/// The C string at `p` (NULL: None), without its NUL.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that stays valid and unchanged
/// for `'a` (in practice: the callback that received it).
unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: p is non-NULL, and the caller vouches for the string and its lifetime.
    Some(unsafe { CStr::from_ptr(p) }.to_bytes())
}

fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 80 {
        format!("{:?}...", &s[..s.floor_char_boundary(80)])
    } else {
        format!("{s:?}")
    }
}

unsafe extern "C" fn get_server_variable(
    hconn: HCONN,
    name: *mut c_char,
    buffer: *mut c_void,
    size: *mut DWORD,
) -> BOOL {
    guarded("GetServerVariable", || {
        let host = host();
        let Some(ex) = exchange_for(host, hconn, || "GetServerVariable".to_string()) else {
            return FALSE;
        };
        // SAFETY: the contract makes name a NUL-terminated string (or NULL, refused).
        let Some(name) = (unsafe { c_str(name) }) else {
            return fail(
                host,
                ex.id,
                || "GetServerVariable(NULL)".to_string(),
                ERROR_INVALID_PARAMETER,
            );
        };
        let name = String::from_utf8_lossy(name);
        let call = || format!("GetServerVariable({name:?})");
        if size.is_null() {
            return fail(host, ex.id, call, ERROR_INVALID_PARAMETER);
        }
        // SAFETY: size is non-NULL and points to the caller's DWORD.
        let capacity = unsafe { *size } as usize;
        let Some((wire, wide)) = ex.info.lookup_wire(&name) else {
            return fail(host, ex.id, call, ERROR_INVALID_INDEX);
        };
        if buffer.is_null() || capacity < wire.len() {
            // SAFETY: see above.
            unsafe { *size = wire.len() as u32 };
            host.trace(ex.id, || {
                format!(
                    "{}, buffer {capacity} bytes -> needs {} bytes",
                    call(),
                    wire.len()
                )
            });
            set_last_error(ERROR_INSUFFICIENT_BUFFER);
            return FALSE;
        }
        // SAFETY: buffer is non-NULL (checked above) and the caller's *size = capacity >=
        // wire.len() bytes are writable there (the contract); wire is the host's own Vec,
        // so the two do not overlap; size is non-NULL (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(wire.as_ptr(), buffer.cast::<u8>(), wire.len());
            *size = wire.len() as u32;
        }
        host.trace(ex.id, || {
            let shown = if wide {
                let units: Vec<u16> = wire
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                format!("L{:?}", String::from_utf16_lossy(&units[..units.len() - 1]))
            } else {
                show(&wire[..wire.len() - 1])
            };
            format!("{} -> TRUE {shown} ({} bytes with NUL)", call(), wire.len())
        });
        TRUE
    })
}

unsafe extern "C" fn write_client(
    hconn: HCONN,
    buffer: *mut c_void,
    bytes: *mut DWORD,
    flags: DWORD,
) -> BOOL {
    guarded("WriteClient", || {
        let host = host();
        let Some(ex) = exchange_for(host, hconn, || "WriteClient".to_string()) else {
            return FALSE;
        };
        // SAFETY: WriteClient's contract: bytes is NULL or points to the caller's DWORD.
        let len = match unsafe { caller_size(host, ex.id, "WriteClient", buffer, bytes) } {
            Ok(len) => len,
            Err(failed) => return failed,
        };
        let data: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: buffer is non-NULL (caller_size refuses NULL with a non-zero size) and
            // WriteClient's caller provides `len` bytes of data there, left alone until the
            // call returns (the data is copied before then, for HSE_IO_ASYNC too).
            unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) }
        };
        let is_async = flags & HSE_IO_ASYNC != 0;
        let call = || {
            let mode = if is_async {
                "HSE_IO_ASYNC"
            } else {
                "HSE_IO_SYNC"
            };
            format!("WriteClient({len} bytes, {mode})")
        };
        let mut state = ex.lock();
        if is_async {
            if state.io_completion.is_none() {
                drop(state);
                ex.violation(
                    host,
                    "WriteClient(HSE_IO_ASYNC) without an HSE_REQ_IO_COMPLETION callback",
                );
                return fail(host, ex.id, call, ERROR_INVALID_PARAMETER);
            }
            if state.async_outstanding {
                ex.violation(
                    host,
                    "WriteClient(HSE_IO_ASYNC) while another asynchronous operation is outstanding",
                );
            }
        }
        let result = write_body(host, &ex, &mut state, data);
        if is_async {
            state.async_outstanding = true;
            let error = if result { 0 } else { ERROR_CONNECTION_ABORTED };
            let sent = if result { len as u32 } else { 0 };
            drop(state);
            host.trace(ex.id, || format!("{} -> TRUE (completion queued)", call()));
            complete_async(host, ex, None, sent, error);
            return TRUE;
        }
        drop(state);
        if !result {
            return fail(host, ex.id, call, ERROR_CONNECTION_ABORTED);
        }
        host.trace(ex.id, || format!("{} -> TRUE", call()));
        TRUE
    })
}

/// Sends body bytes (or raw bytes before any header). False if the client is gone.
fn write_body(host: &'static Host, ex: &Exchange, state: &mut State, data: &[u8]) -> bool {
    let stopping = host.stopping();
    let State { conn, response, .. } = state;
    let Some(conn) = conn.as_mut().filter(|c| !c.closed) else {
        return false;
    };
    if !response.started() {
        ex.violation(host, "WriteClient before any response header (sent raw, as IIS 6 did; the connection will close)");
        return response.write_raw(&mut conn.stream, data, stopping).is_ok();
    }
    match response.write_body(&mut conn.stream, data, stopping) {
        Ok(0) => true,
        Ok(dropped) => {
            ex.violation(
                host,
                &format!("wrote {dropped} bytes beyond the Content-Length it declared (dropped)"),
            );
            true
        }
        Err(_) => false,
    }
}

/// Queues an I/O completion callback to run on a worker thread, as IIS does.
fn complete_async(
    host: &'static Host,
    ex: Arc<Exchange>,
    override_callback: Option<(
        unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
        usize,
    )>,
    bytes: u32,
    error: u32,
) {
    host.poller.submit(Work::Task(Box::new(move || {
        run_completion(host, &ex, override_callback, bytes, error)
    })));
}

fn run_completion(
    host: &'static Host,
    ex: &Arc<Exchange>,
    override_callback: Option<(
        unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
        usize,
    )>,
    bytes: u32,
    error: u32,
) {
    let callback = {
        let mut state = ex.lock();
        state.async_outstanding = false;
        if state.finished {
            drop(state);
            ex.violation(host, "the request ended while an asynchronous operation was outstanding; its completion is dropped");
            return;
        }
        override_callback.or(state.io_completion)
    };
    let Some((callback, context)) = callback else {
        return;
    };
    host.trace(ex.id, || {
        format!("I/O completion callback(cbIO {bytes}, dwError {error}) called")
    });
    let ecb = ex.ecb_ptr();
    // SAFETY: the extension gave this function as a PFN_HSE_IO_COMPLETION for this request
    // (HSE_REQ_IO_COMPLETION, or pfnHseIO), with this context. The request had not ended
    // when checked under the lock, and the ECB stays alive whatever happens now (`ex`
    // holds the Exchange). No host lock is held, so the callback may call back in.
    unsafe { callback(ecb, context as *mut c_void, bytes, error) };
    host.trace(ex.id, || "I/O completion callback returned".to_string());
}

unsafe extern "C" fn read_client(hconn: HCONN, buffer: *mut c_void, size: *mut DWORD) -> BOOL {
    guarded("ReadClient", || {
        let host = host();
        let Some(ex) = exchange_for(host, hconn, || "ReadClient".to_string()) else {
            return FALSE;
        };
        // SAFETY: ReadClient's contract: size is NULL or points to the caller's DWORD.
        let capacity = match unsafe { caller_size(host, ex.id, "ReadClient", buffer, size) } {
            Ok(capacity) => capacity,
            Err(failed) => return failed,
        };
        let out = if capacity == 0 {
            BodyOut::from(&mut [][..])
        } else {
            // SAFETY: buffer is non-NULL (caller_size refuses NULL with a non-zero size) and
            // ReadClient's caller provides `capacity` writable bytes there, initialised or
            // not, which it leaves alone until the call returns.
            unsafe { BodyOut::from_raw(buffer.cast::<u8>(), capacity) }
        };
        let call = || format!("ReadClient({capacity} bytes)");
        match read_into(&ex, out) {
            Ok(n) => {
                // SAFETY: see above.
                unsafe { *size = n as u32 };
                host.trace(ex.id, || format!("{} -> TRUE, {n} bytes", call()));
                TRUE
            }
            Err(error) => {
                // SAFETY: see above.
                unsafe { *size = 0 };
                fail(host, ex.id, call, error)
            }
        }
    })
}

/// Reads request body bytes for ReadClient / ASYNC_READ_CLIENT. Ok(0) at the end.
fn read_into(ex: &Exchange, out: BodyOut<'_>) -> Result<usize, u32> {
    let mut state = ex.lock();
    let State {
        conn,
        body,
        response,
        continue_pending,
        ..
    } = &mut *state;
    let Some(conn) = conn.as_mut().filter(|c| !c.closed) else {
        return Err(ERROR_CONNECTION_ABORTED);
    };
    if std::mem::take(continue_pending) && !body.finished() && !response.started() {
        // The extension wants the body: now the client may send it. (Never after the
        // final response's headers: an interim response there would corrupt the reply.)
        use std::io::Write;
        if conn
            .stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_err()
        {
            return Err(ERROR_CONNECTION_ABORTED);
        }
    }
    match conn::read_body(conn, body, out) {
        Ok(n) => Ok(n),
        // The client closed the connection: IIS 4-6 documented TRUE with 0 bytes; IIS 7+
        // may fail instead (--read-client-on-disconnect error).
        Err(BodyError::Truncated) if host().options.read_error_on_disconnect => {
            Err(ERROR_CONNECTION_ABORTED)
        }
        Err(BodyError::Truncated) => Ok(0),
        Err(BodyError::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut =>
        {
            Err(ERROR_CONNECTION_ABORTED)
        }
        Err(BodyError::Io(_)) => Err(ERROR_CONNECTION_ABORTED),
        Err(BodyError::Malformed(_)) => Err(ERROR_INVALID_PARAMETER),
    }
}

/// `ServerSupportFunction(HSE_REQ_...)` for the requests the host knows by name.
fn request_name(request: u32) -> Option<&'static str> {
    match request {
        HSE_REQ_SEND_URL_REDIRECT_RESP => {
            Some("ServerSupportFunction(HSE_REQ_SEND_URL_REDIRECT_RESP)")
        }
        HSE_REQ_SEND_URL => Some("ServerSupportFunction(HSE_REQ_SEND_URL)"),
        HSE_REQ_SEND_RESPONSE_HEADER => Some("ServerSupportFunction(HSE_REQ_SEND_RESPONSE_HEADER)"),
        HSE_REQ_DONE_WITH_SESSION => Some("ServerSupportFunction(HSE_REQ_DONE_WITH_SESSION)"),
        HSE_REQ_MAP_URL_TO_PATH => Some("ServerSupportFunction(HSE_REQ_MAP_URL_TO_PATH)"),
        HSE_APPEND_LOG_PARAMETER => Some("ServerSupportFunction(HSE_APPEND_LOG_PARAMETER)"),
        HSE_REQ_IO_COMPLETION => Some("ServerSupportFunction(HSE_REQ_IO_COMPLETION)"),
        HSE_REQ_TRANSMIT_FILE => Some("ServerSupportFunction(HSE_REQ_TRANSMIT_FILE)"),
        HSE_REQ_IS_KEEP_CONN => Some("ServerSupportFunction(HSE_REQ_IS_KEEP_CONN)"),
        HSE_REQ_ASYNC_READ_CLIENT => Some("ServerSupportFunction(HSE_REQ_ASYNC_READ_CLIENT)"),
        HSE_REQ_GET_IMPERSONATION_TOKEN => {
            Some("ServerSupportFunction(HSE_REQ_GET_IMPERSONATION_TOKEN)")
        }
        HSE_REQ_MAP_URL_TO_PATH_EX => Some("ServerSupportFunction(HSE_REQ_MAP_URL_TO_PATH_EX)"),
        HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            Some("ServerSupportFunction(HSE_REQ_SEND_RESPONSE_HEADER_EX)")
        }
        HSE_REQ_CLOSE_CONNECTION => Some("ServerSupportFunction(HSE_REQ_CLOSE_CONNECTION)"),
        HSE_REQ_IS_CONNECTED => Some("ServerSupportFunction(HSE_REQ_IS_CONNECTED)"),
        HSE_REQ_REPORT_UNHEALTHY => Some("ServerSupportFunction(HSE_REQ_REPORT_UNHEALTHY)"),
        HSE_REQ_SET_FLUSH_FLAG => Some("ServerSupportFunction(HSE_REQ_SET_FLUSH_FLAG)"),
        HSE_REQ_VECTOR_SEND => Some("ServerSupportFunction(HSE_REQ_VECTOR_SEND)"),
        HSE_REQ_EXEC_URL => Some("ServerSupportFunction(HSE_REQ_EXEC_URL)"),
        _ => None,
    }
}

unsafe extern "C" fn server_support_function(
    hconn: HCONN,
    request: DWORD,
    buffer: *mut c_void,
    size: *mut DWORD,
    data_type: *mut DWORD,
) -> BOOL {
    guarded("ServerSupportFunction", || {
        let host = host();
        let call: std::borrow::Cow<'static, str> = match request_name(request) {
            Some(name) => name.into(),
            None => format!("ServerSupportFunction({request})").into(),
        };
        let Some(ex) = exchange_for(host, hconn, || call.to_string()) else {
            return FALSE;
        };
        // SAFETY: these are the extension's own arguments, passed on unchanged, and by
        // calling ServerSupportFunction it promises they mean what ISAPI defines for
        // `request`, which is all `support` requires (it checks for NULL itself).
        unsafe { support(host, &ex, &call, request, buffer, size, data_type) }
    })
}

/// Sends the extension's status and headers (SEND_RESPONSE_HEADER and _EX, TRANSMIT_FILE).
/// `in_call`: the extension is making this call now, on its thread (not an HSE_IO_ASYNC
/// operation running on a worker), so dwHttpStatusCode may be set from the status.
fn send_headers(
    host: &'static Host,
    ex: &Exchange,
    status: &[u8],
    block: &[u8],
    keep_conn: bool,
    in_call: bool,
) -> Result<(), u32> {
    let mut state = ex.lock();
    if state.response.started() {
        drop(state);
        ex.violation(
            host,
            "response headers sent more than once (or after raw WriteClient output)",
        );
        return Err(ERROR_INVALID_PARAMETER);
    }
    let code = match crate::checker::check_status(status) {
        Ok(code) => code,
        Err(problem) => {
            ex.violation(host, &problem);
            500
        }
    };
    let (headers, problems) = crate::checker::parse_header_block(block);
    for problem in problems {
        ex.violation(host, &problem);
    }
    let status = if crate::checker::check_status(status).is_ok() {
        status.to_vec()
    } else {
        b"500 Internal Server Error".to_vec()
    };
    state
        .response
        .set_headers(code, &status, headers, keep_conn);
    if in_call {
        // Asynchronously, the ECB is the extension's to use meanwhile: leave it alone.
        ex.set_status_code(&mut state, code);
    }
    if state.response.flush_each_write {
        let stopping = host.stopping();
        let State { conn, response, .. } = &mut *state;
        if let Some(conn) = conn.as_mut().filter(|c| !c.closed) {
            response
                .flush(&mut conn.stream, stopping)
                .map_err(|_| ERROR_CONNECTION_ABORTED)?;
        }
    }
    Ok(())
}

/// The body of ServerSupportFunction.
///
/// # Safety
/// The arguments must follow the contract for `request` (checked for NULL here).
unsafe fn support(
    host: &'static Host,
    ex: &Arc<Exchange>,
    call: &str,
    request: u32,
    buffer: *mut c_void,
    size: *mut DWORD,
    data_type: *mut DWORD,
) -> BOOL {
    let ok = |detail: &dyn Fn() -> String| {
        host.trace(ex.id, || format!("{call}{} -> TRUE", detail()));
        TRUE
    };
    match request {
        HSE_REQ_SEND_RESPONSE_HEADER_EX => {
            if buffer.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // SAFETY: buffer points to an HSE_SEND_HEADER_EX_INFO (contract).
            let info = unsafe { *(buffer as *const HSE_SEND_HEADER_EX_INFO) };
            // SAFETY: pszStatus / pszHeader are NUL-terminated strings or NULL.
            let status = unsafe { c_str(info.pszStatus) }.unwrap_or(b"200 OK");
            // SAFETY: as above.
            let block = unsafe { c_str(info.pszHeader) }.unwrap_or(b"");
            if !info.pszStatus.is_null() && info.cchStatus as usize != status.len() {
                ex.violation(
                    host,
                    &format!(
                        "cchStatus is {} but the status string has {} characters",
                        info.cchStatus,
                        status.len()
                    ),
                );
            }
            if !info.pszHeader.is_null() && info.cchHeader as usize != block.len() {
                ex.violation(
                    host,
                    &format!(
                        "cchHeader is {} but the header string has {} characters",
                        info.cchHeader,
                        block.len()
                    ),
                );
            }
            let detail = || {
                let (status, n, keep) = (show(status), block.len(), info.fKeepConn);
                format!("({status}, {n} header bytes, fKeepConn {keep})")
            };
            match send_headers(host, ex, status, block, info.fKeepConn != 0, true) {
                Ok(()) => ok(&detail),
                Err(e) => fail(host, ex.id, || format!("{call}{}", detail()), e),
            }
        }
        HSE_REQ_SEND_RESPONSE_HEADER => {
            // SAFETY: buffer is the status string (or NULL: "200 OK"); data_type is, by an
            // old convention, the header string cast to LPDWORD.
            let status = unsafe { c_str(buffer as *const c_char) }.unwrap_or(b"200 OK");
            // SAFETY: as above.
            let block = unsafe { c_str(data_type as *const c_char) }.unwrap_or(b"");
            let detail = || format!("({}, {} header bytes)", show(status), block.len());
            match send_headers(host, ex, status, block, false, true) {
                Ok(()) => ok(&detail),
                Err(e) => fail(host, ex.id, || format!("{call}{}", detail()), e),
            }
        }
        HSE_REQ_DONE_WITH_SESSION => {
            // SAFETY: buffer is NULL or points to a DWORD status.
            let status = (!buffer.is_null()).then(|| unsafe { *(buffer as *const u32) });
            let mut state = ex.lock();
            if state.done_with_session {
                drop(state);
                ex.violation(host, "HSE_REQ_DONE_WITH_SESSION called twice");
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
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
            host.trace(ex.id, || format!("{call}(status {status:?}) -> TRUE"));
            if state.returned == Some(HSE_STATUS_PENDING) {
                // HttpExtensionProc has returned: this thread ends the request.
                if let Some(conn) = conn::finish(host, ex, &mut state) {
                    drop(state);
                    conn::resume_elsewhere(host, conn);
                }
            }
            TRUE
        }
        HSE_REQ_IO_COMPLETION => {
            let mut state = ex.lock();
            state.io_completion = if buffer.is_null() {
                None
            } else {
                // SAFETY: buffer is non-NULL (this branch) and, by the contract, a
                // PFN_HSE_IO_COMPLETION (data and function pointers have the same size).
                let f = unsafe {
                    std::mem::transmute::<
                        *mut c_void,
                        unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
                    >(buffer)
                };
                Some((f, data_type as usize))
            };
            drop(state);
            ok(&|| {
                if buffer.is_null() {
                    "(NULL: unregister)".into()
                } else {
                    String::new()
                }
            })
        }
        HSE_REQ_IS_KEEP_CONN => {
            if buffer.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            let keep = ex.info.head.keep_alive && !host.stopping();
            // SAFETY: buffer points to a BOOL.
            unsafe { *(buffer as *mut BOOL) = keep as BOOL };
            ok(&|| format!(" = {keep}"))
        }
        HSE_REQ_IS_CONNECTED => {
            if buffer.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            let connected = {
                let state = ex.lock();
                state
                    .conn
                    .as_ref()
                    .is_some_and(|c| !c.closed && is_connected(&c.stream))
            };
            // SAFETY: buffer points to a BOOL.
            unsafe { *(buffer as *mut BOOL) = connected as BOOL };
            ok(&|| format!(" = {connected}"))
        }
        HSE_REQ_CLOSE_CONNECTION => {
            let mut state = ex.lock();
            if let Some(conn) = state.conn.as_mut() {
                let _ = conn.stream.shutdown(Shutdown::Both);
                conn.closed = true;
            }
            drop(state);
            ok(&|| String::new())
        }
        HSE_REQ_SET_FLUSH_FLAG => {
            let on = !buffer.is_null();
            let mut state = ex.lock();
            state.response.flush_each_write = on;
            if on && state.response.started() {
                let stopping = host.stopping();
                let State { conn, response, .. } = &mut *state;
                if let Some(conn) = conn.as_mut().filter(|c| !c.closed) {
                    let _ = response.flush(&mut conn.stream, stopping);
                }
            }
            drop(state);
            ok(&|| format!("({on})"))
        }
        HSE_APPEND_LOG_PARAMETER => {
            // SAFETY: buffer is a NUL-terminated string or NULL.
            let text = unsafe { c_str(buffer as *const c_char) }.unwrap_or(b"");
            ex.lock()
                .log_params
                .push_str(&String::from_utf8_lossy(text));
            ok(&|| format!("({})", show(text)))
        }
        HSE_REQ_REPORT_UNHEALTHY => {
            // SAFETY: buffer is a NUL-terminated reason or NULL.
            let reason = unsafe { c_str(buffer as *const c_char) }.unwrap_or(b"");
            eprintln!(
                "isapi-host: {}: the extension reports itself unhealthy: {} (IIS would recycle the worker process)",
                ex.label,
                String::from_utf8_lossy(reason)
            );
            ok(&|| format!("({})", show(reason)))
        }
        HSE_REQ_GET_IMPERSONATION_TOKEN => {
            if buffer.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // NULL means "the process's own identity" (SetThreadToken(NULL, NULL) reverts
            // to exactly that); `--impersonation-token self` hands a real token instead.
            let token = host.impersonation_token.handle();
            // SAFETY: buffer points to a HANDLE.
            unsafe { *(buffer as *mut HANDLE) = token as HANDLE };
            if token.is_null() {
                ok(&|| " = NULL (the host's own identity)".into())
            } else {
                ok(&|| format!(" = {token:p} (a duplicate of the host's own token)"))
            }
        }
        HSE_REQ_MAP_URL_TO_PATH => {
            if buffer.is_null() || size.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // SAFETY: buffer holds a NUL-terminated URL in a buffer of *size bytes.
            let raw = unsafe { c_str(buffer as *const c_char) };
            let url = String::from_utf8_lossy(raw.unwrap_or(b"")).into_owned();
            let path = crate::vars::ansi(&ex.info.map_url(&url));
            // SAFETY: size is non-NULL.
            let capacity = unsafe { *size } as usize;
            if capacity < path.len() + 1 {
                // SAFETY: as above.
                unsafe { *size = path.len() as u32 + 1 };
                return fail(
                    host,
                    ex.id,
                    || format!("{call}({url:?})"),
                    ERROR_INSUFFICIENT_BUFFER,
                );
            }
            // SAFETY: the buffer has room for path and its NUL (checked).
            unsafe {
                std::ptr::copy_nonoverlapping(path.as_ptr(), buffer.cast::<u8>(), path.len());
                *buffer.cast::<u8>().add(path.len()) = 0;
                *size = path.len() as u32 + 1;
            }
            ok(&|| format!("({url:?}) = {}", show(&path)))
        }
        HSE_REQ_MAP_URL_TO_PATH_EX => {
            if buffer.is_null() || data_type.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // SAFETY: buffer is a NUL-terminated URL.
            let raw = unsafe { c_str(buffer as *const c_char) };
            let url = String::from_utf8_lossy(raw.unwrap_or(b"")).into_owned();
            let path = crate::vars::ansi(&ex.info.map_url(&url));
            if path.len() + 1 > 260 {
                return fail(
                    host,
                    ex.id,
                    || format!("{call}({url:?})"),
                    ERROR_INSUFFICIENT_BUFFER,
                );
            }
            let mut physical = [0 as c_char; 260];
            for (d, s) in physical.iter_mut().zip(&path) {
                *d = *s as c_char;
            }
            let matching_url = if ex.info.site().vdir == "/" {
                0
            } else {
                ex.info.site().vdir.len() as u32
            };
            let info = data_type.cast::<HSE_URL_MAPEX_INFO>();
            // SAFETY: data_type is non-NULL (checked) and, by the contract, points to the
            // caller's HSE_URL_MAPEX_INFO (an LPDWORD, so aligned for its DWORDs). It may be
            // uninitialised, so it is only written, field by field through the raw pointer,
            // and no reference to it is made; the reserved fields are left as they are.
            unsafe {
                (&raw mut (*info).lpszPath).write(physical);
                (&raw mut (*info).dwFlags)
                    .write(HSE_URL_FLAGS_READ | HSE_URL_FLAGS_SCRIPT | HSE_URL_FLAGS_EXECUTE);
                (&raw mut (*info).cchMatchingPath).write(ex.info.site().physical_path.len() as u32);
                (&raw mut (*info).cchMatchingURL).write(matching_url);
            }
            if !size.is_null() {
                // SAFETY: size is non-NULL.
                unsafe { *size = path.len() as u32 + 1 };
            }
            ok(&|| format!("({url:?}) = {}", show(&path)))
        }
        HSE_REQ_SEND_URL_REDIRECT_RESP => {
            // SAFETY: buffer is the NUL-terminated target URL.
            let Some(url) = (unsafe { c_str(buffer as *const c_char) }) else {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            };
            if url.iter().any(|&b| b < 0x20) {
                ex.violation(host, "redirect URL contains a control character");
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            let body = format!(
                "<head><title>Object moved</title></head><body><h1>Object Moved</h1>This object may be found <a HREF=\"{}\">here</a>.</body>",
                String::from_utf8_lossy(url)
            );
            let block = [
                b"Location: ".as_slice(),
                url,
                b"\r\nContent-Type: text/html\r\nContent-Length: ",
                body.len().to_string().as_bytes(),
                b"\r\n\r\n",
            ]
            .concat();
            if let Err(e) = send_headers(host, ex, b"302 Object Moved", &block, true, true) {
                return fail(host, ex.id, || call.to_string(), e);
            }
            let mut state = ex.lock();
            write_body(host, ex, &mut state, body.as_bytes());
            drop(state);
            ok(&|| format!("({})", show(url)))
        }
        HSE_REQ_TRANSMIT_FILE => {
            if buffer.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // SAFETY: buffer points to an HSE_TF_INFO (contract); copied at once.
            let tf = unsafe { *(buffer as *const HSE_TF_INFO) };
            let callback = tf.pfnHseIO.map(|f| (f, tf.pContext as usize));
            let is_async = tf.dwFlags & HSE_IO_ASYNC != 0;
            let detail = format!(
                "(hFile {:p}, offset {}, {} bytes, flags {:#x})",
                tf.hFile, tf.Offset, tf.BytesToWrite, tf.dwFlags
            );
            if is_async {
                let mut state = ex.lock();
                if callback.is_none() && state.io_completion.is_none() {
                    drop(state);
                    ex.violation(
                        host,
                        "HSE_REQ_TRANSMIT_FILE with HSE_IO_ASYNC but no completion callback",
                    );
                    return fail(
                        host,
                        ex.id,
                        || format!("{call}{detail}"),
                        ERROR_INVALID_PARAMETER,
                    );
                }
                if state.async_outstanding {
                    ex.violation(
                        host,
                        "HSE_REQ_TRANSMIT_FILE while another asynchronous operation is outstanding",
                    );
                }
                state.async_outstanding = true;
                drop(state);
                let ex2 = ex.clone();
                let tf_addr = TfInfo(tf);
                host.poller.submit(Work::Task(Box::new(move || {
                    let tf = tf_addr;
                    let (bytes, error) = match transmit(host, &ex2, &tf.0) {
                        Ok(n) => (n, 0),
                        Err(e) => (0, e),
                    };
                    run_completion(host, &ex2, callback, bytes, error);
                })));
                ok(&|| format!("{detail} (completion queued)"))
            } else {
                match transmit(host, ex, &tf) {
                    Ok(n) => ok(&|| format!("{detail} = {n} bytes")),
                    Err(e) => fail(host, ex.id, || format!("{call}{detail}"), e),
                }
            }
        }
        HSE_REQ_ASYNC_READ_CLIENT => {
            if buffer.is_null() || size.is_null() || data_type.is_null() {
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            // SAFETY: size and data_type are non-NULL DWORD pointers.
            let (capacity, flags) = unsafe { (*size as usize, *data_type) };
            let mut state = ex.lock();
            if state.io_completion.is_none() || flags & HSE_IO_ASYNC == 0 {
                drop(state);
                ex.violation(host, "HSE_REQ_ASYNC_READ_CLIENT without an IO_COMPLETION callback or without HSE_IO_ASYNC");
                return fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER);
            }
            if state.async_outstanding {
                ex.violation(
                    host,
                    "HSE_REQ_ASYNC_READ_CLIENT while another asynchronous operation is outstanding",
                );
            }
            state.async_outstanding = true;
            drop(state);
            let ex2 = ex.clone();
            let address = buffer as usize;
            host.poller.submit(Work::Task(Box::new(move || {
                // SAFETY: buffer was checked non-NULL; the extension's `capacity` (*lpdwSize)
                // bytes there, initialised or not, stay valid and are left alone until its
                // completion callback runs (the buffer belongs to the pending read, as with
                // any overlapped I/O), which `run_completion` calls only after this read.
                let out = unsafe { BodyOut::from_raw(address as *mut u8, capacity) };
                let (bytes, error) = match read_into(&ex2, out) {
                    Ok(n) => (n as u32, 0),
                    Err(e) => (0, e),
                };
                run_completion(host, &ex2, None, bytes, error);
            })));
            ok(&|| format!("({capacity} bytes, completion queued)"))
        }
        _ => {
            // Anything else: FALSE with ERROR_INVALID_PARAMETER, as IIS answers unknown codes.
            fail(host, ex.id, || call.to_string(), ERROR_INVALID_PARAMETER)
        }
    }
}

/// A copy of an HSE_TF_INFO, moved to the worker that runs an HSE_IO_ASYNC TRANSMIT_FILE.
struct TfInfo(HSE_TF_INFO);
// SAFETY: the raw pointers in it are the extension's, and nothing about them is tied to
// the thread that called: pHead/pTail (HeadLength/TailLength bytes) and pszStatusCode are
// only read, by `transmit`; hFile is only read from, with positioned reads (pread /
// ReadFile at an explicit offset) that do not depend on the calling thread or move a
// shared file position, and is never closed here; pContext is never dereferenced, only
// handed back to the completion callback (pfnHseIO is a plain function pointer). For an
// asynchronous TransmitFile, as for any overlapped I/O, the extension must keep the
// buffers, the string and the handle valid and unchanged until its completion callback
// runs, and `run_completion` is called only after `transmit` has returned. The copy
// reaches the worker through the poller's queue (a mutex), so what the extension wrote
// before the call is visible there.
unsafe impl Send for TfInfo {}

/// Sends head, file range and tail for HSE_REQ_TRANSMIT_FILE. Returns the bytes sent.
fn transmit(host: &'static Host, ex: &Exchange, tf: &HSE_TF_INFO) -> Result<u32, u32> {
    let head: &[u8] = if tf.pHead.is_null() || tf.HeadLength == 0 {
        &[]
    } else {
        // SAFETY: pHead is non-NULL and points to HeadLength bytes the extension keeps valid
        // and unchanged until the call returns, or for HSE_IO_ASYNC its completion (TfInfo).
        unsafe { std::slice::from_raw_parts(tf.pHead.cast::<u8>(), tf.HeadLength as usize) }
    };
    let tail: &[u8] = if tf.pTail.is_null() || tf.TailLength == 0 {
        &[]
    } else {
        // SAFETY: as for pHead, with TailLength bytes.
        unsafe { std::slice::from_raw_parts(tf.pTail.cast::<u8>(), tf.TailLength as usize) }
    };
    // Check the file and the offset before anything is sent: an offset past the end fails
    // with WSAEINVAL (as TransmitFile does), an unreadable handle with
    // ERROR_INVALID_PARAMETER, and the response is still untouched for the extension.
    let mut chunk = vec![0u8; 64 * 1024];
    let mut offset = tf.Offset as u64;
    let mut left = if tf.BytesToWrite == 0 {
        u64::MAX
    } else {
        tf.BytesToWrite as u64
    };
    let first = left.min(chunk.len() as u64) as usize;
    let mut n = crate::os::read_file_at(tf.hFile, offset, &mut chunk[..first])
        .map_err(|_| ERROR_INVALID_PARAMETER)?;
    if n == 0 && tf.Offset > 0 {
        return Err(WSAEINVAL);
    }
    if tf.dwFlags & HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        // Closed when the request ends (DONE_WITH_SESSION, or the return for a synchronous
        // call); headers not yet on the wire say so.
        let mut state = ex.lock();
        state.close_after = true;
        state.response.close_after();
    }
    if tf.dwFlags & HSE_IO_SEND_HEADERS != 0 {
        // SAFETY: pszStatusCode is NULL or a NUL-terminated string, valid as long as pHead.
        let status = unsafe { c_str(tf.pszStatusCode) }.unwrap_or(b"200 OK");
        let block = head.split(|&b| b == 0).next().unwrap_or(b"");
        let in_call = tf.dwFlags & HSE_IO_ASYNC == 0;
        send_headers(host, ex, status, block, true, in_call)?;
    }
    let mut state = ex.lock();
    let mut sent = 0u64;
    if tf.dwFlags & HSE_IO_SEND_HEADERS == 0 && !head.is_empty() {
        if !write_body(host, ex, &mut state, head) {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        sent += head.len() as u64;
    }
    while n > 0 {
        if !write_body(host, ex, &mut state, &chunk[..n]) {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        sent += n as u64;
        offset += n as u64;
        left = left.saturating_sub(n as u64);
        if left == 0 {
            break;
        }
        let want = left.min(chunk.len() as u64) as usize;
        n = crate::os::read_file_at(tf.hFile, offset, &mut chunk[..want])
            .map_err(|_| ERROR_INVALID_PARAMETER)?;
    }
    if !tail.is_empty() {
        if !write_body(host, ex, &mut state, tail) {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        sent += tail.len() as u64;
    }
    Ok(sent.min(u32::MAX as u64) as u32)
}

/// HSE_REQ_IS_CONNECTED: the socket has not seen the client's end of stream or an error.
fn is_connected(stream: &std::net::TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let connected = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    connected
}
