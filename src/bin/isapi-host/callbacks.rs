//! The four callbacks in every ECB (GetServerVariable, WriteClient, ReadClient,
//! ServerSupportFunction), and one small function per `HSE_REQ_*` code, in the order of
//! the [`SUPPORT`] table, so that the second half of this file reads as the documentation
//! of ServerSupportFunction.
//!
//! * A callback gets an HCONN and finds its request in the [`exchange`] registry; a call
//!   for a request that has ended (or that never existed) is a contract violation.
//! * Every callback catches panics (none may cross the `extern` boundary), reports the
//!   Win32 error code through [`crate::os::set_last_error`], and traces itself.
use crate::conn::BodyError;
use crate::exchange::{self, Callbacks, Completion, Exchange, Stale, State};
use crate::host::{Host, host};
use crate::http::BodyOut;
use crate::os::set_last_error;
use crate::poller::Work;
use isapi_wsgi::isapi::ffi::*;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

const TRUE: BOOL = 1;
const FALSE: BOOL = 0;

/// The callbacks for every ECB the host builds.
pub const TABLE: Callbacks = Callbacks {
    get_server_variable: Some(get_server_variable),
    write_client: Some(write_client),
    read_client: Some(read_client),
    server_support_function: Some(server_support_function),
};

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
    match exchange::registry().get(hconn as usize) {
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
        let call = || format!("GetServerVariable({:?})", String::from_utf8_lossy(name));
        if size.is_null() {
            return fail(host, ex.id, call, ERROR_INVALID_PARAMETER);
        }
        // SAFETY: size is non-NULL and points to the caller's DWORD.
        let capacity = unsafe { *size } as usize;
        WIRE.with_borrow_mut(|wire| {
            wire.clear();
            let Some(wide) = ex.info.write_wire(name, wire) else {
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
                format!(
                    "{} -> TRUE {} ({} bytes with NUL)",
                    call(),
                    shown(wire, wide),
                    wire.len()
                )
            });
            TRUE
        })
    })
}

thread_local! {
    /// The answer GetServerVariable is building, kept between calls so that a call does
    /// not allocate (a server variable is at most the request head's size).
    static WIRE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server variable's bytes (NUL included) as a trace shows them.
fn shown(wire: &[u8], wide: bool) -> String {
    if wide {
        let units: Vec<u16> = wire
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        format!("L{:?}", String::from_utf16_lossy(&units[..units.len() - 1]))
    } else {
        show(&wire[..wire.len() - 1])
    }
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
    let State {
        conn,
        response,
        final_sent: state_final_sent,
        ..
    } = state;
    let Some(conn) = conn.as_mut().filter(|c| !c.closed) else {
        return false;
    };
    if *state_final_sent {
        ex.violation(
            host,
            "response data after HSE_REQ_VECTOR_SEND with HSE_IO_FINAL_SEND",
        );
    }
    if !response.started() {
        ex.violation(host, "WriteClient before any response header (sent raw, as IIS 6 did; the connection will close)");
        return response.write_raw(&mut conn.out(), data, stopping).is_ok();
    }
    match response.write_body(&mut conn.out(), data, stopping) {
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
    override_callback: Option<Completion>,
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
    override_callback: Option<Completion>,
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
            .out()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_err()
        {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        conn.start_body(); // the body's pace starts now that the client may send it
    }
    match crate::conn::read_body(conn, body, out) {
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
    let (code, status) = match crate::checker::check_status(status) {
        Ok(code) => (code, status),
        Err(problem) => {
            ex.violation(host, &problem);
            (500, &b"500 Internal Server Error"[..])
        }
    };
    // Each problem is reported as the checker meets it; the readable lines go into the head.
    let headers = crate::checker::header_lines(block)
        .filter_map(|line| line.map_err(|problem| ex.violation(host, &problem)).ok());
    state.response.set_headers(code, status, headers, keep_conn);
    if in_call {
        // Asynchronously, the ECB is the extension's to use meanwhile: leave it alone.
        ex.set_status_code(&mut state, code);
    }
    if state.response.flush_each_write {
        let stopping = host.stopping();
        let State { conn, response, .. } = &mut *state;
        if let Some(conn) = conn.as_mut().filter(|c| !c.closed) {
            response
                .flush(&mut conn.out(), stopping)
                .map_err(|_| ERROR_CONNECTION_ABORTED)?;
        }
    }
    Ok(())
}

// ---- ServerSupportFunction -------------------------------------------------------------
//
// One function per HSE_REQ_* code, in the order of the table below; each says what its
// three pointer arguments are for that code. Codes the host does not implement
// (HSE_REQ_SEND_URL, HSE_REQ_EXEC_URL, and any number it does not
// know) fail with ERROR_INVALID_PARAMETER, as IIS answers unknown codes.

/// One ServerSupportFunction call: the request it is for, and its name for traces.
struct Support<'a> {
    host: &'static Host,
    ex: &'a Arc<Exchange>,
    call: &'a str,
    /// lpvBuffer, lpdwSize, lpdwDataType as the extension passed them.
    buffer: *mut c_void,
    size: *mut DWORD,
    data_type: *mut DWORD,
}

impl Support<'_> {
    /// Succeeds: traces `<call><detail> -> TRUE`.
    fn ok(&self, detail: impl FnOnce() -> String) -> BOOL {
        self.host
            .trace(self.ex.id, || format!("{}{} -> TRUE", self.call, detail()));
        TRUE
    }

    /// Fails with `error`: traces `<call><detail> -> FALSE, error ...`.
    fn fail_with(&self, detail: impl Fn() -> String, error: u32) -> BOOL {
        fail(
            self.host,
            self.ex.id,
            || format!("{}{}", self.call, detail()),
            error,
        )
    }

    /// Fails with ERROR_INVALID_PARAMETER (a NULL argument the code needs, an unknown code).
    fn invalid(&self) -> BOOL {
        self.fail_with(String::new, ERROR_INVALID_PARAMETER)
    }

    fn violation(&self, what: &str) {
        self.ex.violation(self.host, what);
    }
}

/// The handler of one HSE_REQ_* code.
///
/// # Safety
/// The `Support` arguments are what the extension passed, and by calling
/// ServerSupportFunction with this code it promises they mean what ISAPI defines for it
/// (each handler checks for NULL itself).
type Handler = unsafe fn(&Support) -> BOOL;

/// Every code the host knows by name, with its handler.
const SUPPORT: &[(u32, &str, Handler)] = &[
    (
        HSE_REQ_SEND_URL_REDIRECT_RESP,
        "ServerSupportFunction(HSE_REQ_SEND_URL_REDIRECT_RESP)",
        send_url_redirect_resp,
    ),
    (
        HSE_REQ_SEND_URL,
        "ServerSupportFunction(HSE_REQ_SEND_URL)",
        not_supported,
    ),
    (
        HSE_REQ_SEND_RESPONSE_HEADER,
        "ServerSupportFunction(HSE_REQ_SEND_RESPONSE_HEADER)",
        send_response_header,
    ),
    (
        HSE_REQ_DONE_WITH_SESSION,
        "ServerSupportFunction(HSE_REQ_DONE_WITH_SESSION)",
        done_with_session,
    ),
    (
        HSE_REQ_MAP_URL_TO_PATH,
        "ServerSupportFunction(HSE_REQ_MAP_URL_TO_PATH)",
        map_url_to_path,
    ),
    (
        HSE_APPEND_LOG_PARAMETER,
        "ServerSupportFunction(HSE_APPEND_LOG_PARAMETER)",
        append_log_parameter,
    ),
    (
        HSE_REQ_IO_COMPLETION,
        "ServerSupportFunction(HSE_REQ_IO_COMPLETION)",
        io_completion,
    ),
    (
        HSE_REQ_TRANSMIT_FILE,
        "ServerSupportFunction(HSE_REQ_TRANSMIT_FILE)",
        transmit_file,
    ),
    (
        HSE_REQ_IS_KEEP_CONN,
        "ServerSupportFunction(HSE_REQ_IS_KEEP_CONN)",
        is_keep_conn,
    ),
    (
        HSE_REQ_ASYNC_READ_CLIENT,
        "ServerSupportFunction(HSE_REQ_ASYNC_READ_CLIENT)",
        async_read_client,
    ),
    (
        HSE_REQ_GET_IMPERSONATION_TOKEN,
        "ServerSupportFunction(HSE_REQ_GET_IMPERSONATION_TOKEN)",
        get_impersonation_token,
    ),
    (
        HSE_REQ_MAP_URL_TO_PATH_EX,
        "ServerSupportFunction(HSE_REQ_MAP_URL_TO_PATH_EX)",
        map_url_to_path_ex,
    ),
    (
        HSE_REQ_SEND_RESPONSE_HEADER_EX,
        "ServerSupportFunction(HSE_REQ_SEND_RESPONSE_HEADER_EX)",
        send_response_header_ex,
    ),
    (
        HSE_REQ_CLOSE_CONNECTION,
        "ServerSupportFunction(HSE_REQ_CLOSE_CONNECTION)",
        close_connection,
    ),
    (
        HSE_REQ_IS_CONNECTED,
        "ServerSupportFunction(HSE_REQ_IS_CONNECTED)",
        is_connected,
    ),
    (
        HSE_REQ_REPORT_UNHEALTHY,
        "ServerSupportFunction(HSE_REQ_REPORT_UNHEALTHY)",
        report_unhealthy,
    ),
    (
        HSE_REQ_SET_FLUSH_FLAG,
        "ServerSupportFunction(HSE_REQ_SET_FLUSH_FLAG)",
        set_flush_flag,
    ),
    (
        HSE_REQ_VECTOR_SEND,
        "ServerSupportFunction(HSE_REQ_VECTOR_SEND)",
        vector_send,
    ),
    (
        HSE_REQ_EXEC_URL,
        "ServerSupportFunction(HSE_REQ_EXEC_URL)",
        not_supported,
    ),
];

unsafe extern "C" fn server_support_function(
    hconn: HCONN,
    request: DWORD,
    buffer: *mut c_void,
    size: *mut DWORD,
    data_type: *mut DWORD,
) -> BOOL {
    guarded("ServerSupportFunction", || {
        let host = host();
        let known = SUPPORT.iter().find(|(code, _, _)| *code == request);
        let call: std::borrow::Cow<'static, str> = match known {
            Some((_, name, _)) => (*name).into(),
            None => format!("ServerSupportFunction({request})").into(),
        };
        let Some(ex) = exchange_for(host, hconn, || call.to_string()) else {
            return FALSE;
        };
        let handler = known.map_or(not_supported as Handler, |(_, _, h)| *h);
        let support = Support {
            host,
            ex: &ex,
            call: &call,
            buffer,
            size,
            data_type,
        };
        // SAFETY: these are the extension's own arguments, passed on unchanged, and by
        // calling ServerSupportFunction it promises they mean what ISAPI defines for
        // `request`, which is all a `Handler` requires (it checks for NULL itself).
        unsafe { handler(&support) }
    })
}

/// Any code the host does not implement: FALSE with ERROR_INVALID_PARAMETER.
///
/// # Safety
/// None needed (see [`Handler`]); the arguments are not touched.
unsafe fn not_supported(s: &Support) -> BOOL {
    s.invalid()
}

/// HSE_REQ_SEND_RESPONSE_HEADER_EX: lpvBuffer is an HSE_SEND_HEADER_EX_INFO (status,
/// header block, their lengths, fKeepConn).
///
/// # Safety
/// See [`Handler`].
unsafe fn send_response_header_ex(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    // SAFETY: buffer points to an HSE_SEND_HEADER_EX_INFO (contract).
    let info = unsafe { *(s.buffer as *const HSE_SEND_HEADER_EX_INFO) };
    // SAFETY: pszStatus / pszHeader are NUL-terminated strings or NULL.
    let status = unsafe { c_str(info.pszStatus) }.unwrap_or(b"200 OK");
    // SAFETY: as above.
    let block = unsafe { c_str(info.pszHeader) }.unwrap_or(b"");
    if !info.pszStatus.is_null() && info.cchStatus as usize != status.len() {
        s.violation(&format!(
            "cchStatus is {} but the status string has {} characters",
            info.cchStatus,
            status.len()
        ));
    }
    if !info.pszHeader.is_null() && info.cchHeader as usize != block.len() {
        s.violation(&format!(
            "cchHeader is {} but the header string has {} characters",
            info.cchHeader,
            block.len()
        ));
    }
    let detail = || {
        let (status, n, keep) = (show(status), block.len(), info.fKeepConn);
        format!("({status}, {n} header bytes, fKeepConn {keep})")
    };
    match send_headers(s.host, s.ex, status, block, info.fKeepConn != 0, true) {
        Ok(()) => s.ok(detail),
        Err(e) => s.fail_with(detail, e),
    }
}

/// HSE_REQ_SEND_RESPONSE_HEADER (the old form): lpvBuffer is the status string (NULL:
/// "200 OK"), lpdwDataType, by an old convention, the header block; never keep-alive.
///
/// # Safety
/// See [`Handler`].
unsafe fn send_response_header(s: &Support) -> BOOL {
    // SAFETY: buffer is the status string or NULL (contract).
    let status = unsafe { c_str(s.buffer as *const c_char) }.unwrap_or(b"200 OK");
    // SAFETY: data_type is the header string cast to LPDWORD, or NULL (contract).
    let block = unsafe { c_str(s.data_type as *const c_char) }.unwrap_or(b"");
    let detail = || format!("({}, {} header bytes)", show(status), block.len());
    match send_headers(s.host, s.ex, status, block, false, true) {
        Ok(()) => s.ok(detail),
        Err(e) => s.fail_with(detail, e),
    }
}

/// HSE_REQ_DONE_WITH_SESSION: lpvBuffer is NULL or a DWORD status
/// (HSE_STATUS_SUCCESS_AND_KEEP_CONN, HSE_STATUS_ERROR, ...). Ends a PENDING request
/// ([`exchange::done_with_session`]).
///
/// # Safety
/// See [`Handler`].
unsafe fn done_with_session(s: &Support) -> BOOL {
    // SAFETY: buffer is NULL or points to a DWORD status (contract).
    let status = (!s.buffer.is_null()).then(|| unsafe { *(s.buffer as *const u32) });
    let traced = || {
        s.host
            .trace(s.ex.id, || format!("{}(status {status:?}) -> TRUE", s.call))
    };
    match exchange::done_with_session(s.host, s.ex, status, traced) {
        Ok(()) => TRUE,
        Err(()) => s.invalid(),
    }
}

/// HSE_REQ_IO_COMPLETION: lpvBuffer is the PFN_HSE_IO_COMPLETION (NULL unregisters),
/// lpdwDataType its context.
///
/// # Safety
/// See [`Handler`].
unsafe fn io_completion(s: &Support) -> BOOL {
    let mut state = s.ex.lock();
    state.io_completion = if s.buffer.is_null() {
        None
    } else {
        // SAFETY: buffer is non-NULL (this branch) and, by the contract, a
        // PFN_HSE_IO_COMPLETION (data and function pointers have the same size).
        let f = unsafe {
            std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(*mut EXTENSION_CONTROL_BLOCK, *mut c_void, u32, u32),
            >(s.buffer)
        };
        Some((f, s.data_type as usize))
    };
    drop(state);
    s.ok(|| {
        if s.buffer.is_null() {
            "(NULL: unregister)".into()
        } else {
            String::new()
        }
    })
}

/// HSE_REQ_IS_KEEP_CONN: writes to the BOOL at lpvBuffer whether the connection may be
/// kept open after this response (the client's wish, and the host not stopping).
///
/// # Safety
/// See [`Handler`].
unsafe fn is_keep_conn(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    let keep = s.ex.info.head.keep_alive && !s.host.stopping();
    // SAFETY: buffer points to a BOOL (contract).
    unsafe { *(s.buffer as *mut BOOL) = keep as BOOL };
    s.ok(|| format!(" = {keep}"))
}

/// HSE_REQ_IS_CONNECTED: writes to the BOOL at lpvBuffer whether the client is still
/// there (the socket has not seen its end of stream or an error).
///
/// # Safety
/// See [`Handler`].
unsafe fn is_connected(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    let connected = {
        let state = s.ex.lock();
        state
            .conn
            .as_ref()
            .is_some_and(|c| !c.closed && c.is_connected())
    };
    // SAFETY: buffer points to a BOOL (contract).
    unsafe { *(s.buffer as *mut BOOL) = connected as BOOL };
    s.ok(|| format!(" = {connected}"))
}

/// HSE_REQ_CLOSE_CONNECTION: shuts the socket down at once (no arguments).
///
/// # Safety
/// See [`Handler`].
unsafe fn close_connection(s: &Support) -> BOOL {
    if let Some(conn) = s.ex.lock().conn.as_mut() {
        conn.shut_down();
    }
    s.ok(String::new)
}

/// HSE_REQ_SET_FLUSH_FLAG: lpvBuffer non-NULL turns write-through on (output buffered
/// so far is sent now), NULL turns it off.
///
/// # Safety
/// See [`Handler`].
unsafe fn set_flush_flag(s: &Support) -> BOOL {
    let on = !s.buffer.is_null();
    let mut state = s.ex.lock();
    state.response.flush_each_write = on;
    if on && state.response.started() {
        let stopping = s.host.stopping();
        let State { conn, response, .. } = &mut *state;
        if let Some(conn) = conn.as_mut().filter(|c| !c.closed) {
            let _ = response.flush(&mut conn.out(), stopping);
        }
    }
    drop(state);
    s.ok(|| format!("({on})"))
}

/// HSE_APPEND_LOG_PARAMETER: lpvBuffer is a string appended to the request's access-log
/// line.
///
/// # Safety
/// See [`Handler`].
unsafe fn append_log_parameter(s: &Support) -> BOOL {
    // SAFETY: buffer is a NUL-terminated string or NULL (contract).
    let text = unsafe { c_str(s.buffer as *const c_char) }.unwrap_or(b"");
    // (`from_utf8` first: its ASCII path is many times faster than the lossy decoder's.)
    let text_str = std::str::from_utf8(text)
        .map(Cow::Borrowed)
        .unwrap_or_else(|_| String::from_utf8_lossy(text));
    s.ex.lock().log_params.push_str(&text_str);
    s.ok(|| format!("({})", show(text)))
}

/// HSE_REQ_REPORT_UNHEALTHY: lpvBuffer is the reason (a string or NULL). IIS writes it
/// to the Application event log (W3SVC-WP event 2262, W3_EVENT_UNHEALTHY_ISAPI) and
/// recycles the worker process at its next health ping; the host prints it the same way,
/// and with `--exit-on-unhealthy` stops as the old worker process of a recycle does.
///
/// # Safety
/// See [`Handler`].
unsafe fn report_unhealthy(s: &Support) -> BOOL {
    // SAFETY: buffer is a NUL-terminated reason or NULL (contract).
    let reason = unsafe { c_str(s.buffer as *const c_char) }.unwrap_or(b"");
    eprintln!(
        "isapi-host: {}: event 2262: ISAPI '{}' reported itself as unhealthy for the following reason: '{}'.",
        s.ex.label(),
        s.host.extension.path().display(),
        String::from_utf8_lossy(reason)
    );
    if s.host.options.exit_on_unhealthy && !s.host.stopping() {
        eprintln!(
            "isapi-host: --exit-on-unhealthy: recycling: stopping as IIS stops the old worker process"
        );
        crate::os::request_stop();
    }
    s.ok(|| format!("({})", show(reason)))
}

/// HSE_REQ_GET_IMPERSONATION_TOKEN: writes the request's token to the HANDLE at
/// lpvBuffer (`--impersonation-token`).
///
/// # Safety
/// See [`Handler`].
unsafe fn get_impersonation_token(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    // NULL means "the process's own identity" (SetThreadToken(NULL, NULL) reverts to
    // exactly that); `--impersonation-token self` hands a real token instead.
    let token = s.host.impersonation_token.handle();
    // SAFETY: buffer points to a HANDLE (contract).
    unsafe { *(s.buffer as *mut HANDLE) = token as HANDLE };
    if token.is_null() {
        s.ok(|| " = NULL (the host's own identity)".into())
    } else {
        s.ok(|| format!(" = {token:p} (a duplicate of the host's own token)"))
    }
}

/// The URL at lpvBuffer (a NUL-terminated string) mapped to its physical path, in the
/// ANSI code page.
///
/// # Safety
/// `s.buffer` is non-NULL and points to a NUL-terminated string.
unsafe fn mapped_url(s: &Support) -> (String, Vec<u8>) {
    // SAFETY: the caller's promise.
    let raw = unsafe { c_str(s.buffer as *const c_char) };
    let url = String::from_utf8_lossy(raw.unwrap_or(b"")).into_owned();
    let path = crate::vars::ansi(&s.ex.info.map_url(&url));
    (url, path)
}

/// HSE_REQ_MAP_URL_TO_PATH: lpvBuffer holds a URL and receives its physical path, in a
/// buffer of *lpdwSize bytes (ERROR_INSUFFICIENT_BUFFER with the size needed).
///
/// # Safety
/// See [`Handler`].
unsafe fn map_url_to_path(s: &Support) -> BOOL {
    if s.buffer.is_null() || s.size.is_null() {
        return s.invalid();
    }
    // SAFETY: buffer holds a NUL-terminated URL (contract).
    let (url, path) = unsafe { mapped_url(s) };
    // SAFETY: size is non-NULL.
    let capacity = unsafe { *s.size } as usize;
    if capacity < path.len() + 1 {
        // SAFETY: as above.
        unsafe { *s.size = path.len() as u32 + 1 };
        return s.fail_with(|| format!("({url:?})"), ERROR_INSUFFICIENT_BUFFER);
    }
    // SAFETY: the buffer has room for path and its NUL (checked).
    unsafe {
        std::ptr::copy_nonoverlapping(path.as_ptr(), s.buffer.cast::<u8>(), path.len());
        *s.buffer.cast::<u8>().add(path.len()) = 0;
        *s.size = path.len() as u32 + 1;
    }
    s.ok(|| format!("({url:?}) = {}", show(&path)))
}

/// HSE_REQ_MAP_URL_TO_PATH_EX: lpvBuffer is a URL, lpdwDataType an HSE_URL_MAPEX_INFO
/// that receives the path (MAX_PATH), flags and matching lengths; lpdwSize (optional)
/// the path's size.
///
/// # Safety
/// See [`Handler`].
unsafe fn map_url_to_path_ex(s: &Support) -> BOOL {
    if s.buffer.is_null() || s.data_type.is_null() {
        return s.invalid();
    }
    // SAFETY: buffer is a NUL-terminated URL (contract).
    let (url, path) = unsafe { mapped_url(s) };
    if path.len() + 1 > 260 {
        return s.fail_with(|| format!("({url:?})"), ERROR_INSUFFICIENT_BUFFER);
    }
    let mut physical = [0 as c_char; 260];
    for (d, s) in physical.iter_mut().zip(&path) {
        *d = *s as c_char;
    }
    let site = s.ex.info.site();
    let matching_url = if site.vdir == "/" {
        0
    } else {
        site.vdir.len() as u32
    };
    let info = s.data_type.cast::<HSE_URL_MAPEX_INFO>();
    // SAFETY: data_type is non-NULL (checked) and, by the contract, points to the
    // caller's HSE_URL_MAPEX_INFO (an LPDWORD, so aligned for its DWORDs). It may be
    // uninitialised, so it is only written, field by field through the raw pointer,
    // and no reference to it is made; the reserved fields are left as they are.
    unsafe {
        (&raw mut (*info).lpszPath).write(physical);
        (&raw mut (*info).dwFlags)
            .write(HSE_URL_FLAGS_READ | HSE_URL_FLAGS_SCRIPT | HSE_URL_FLAGS_EXECUTE);
        (&raw mut (*info).cchMatchingPath).write(site.physical_path.len() as u32);
        (&raw mut (*info).cchMatchingURL).write(matching_url);
    }
    if !s.size.is_null() {
        // SAFETY: size is non-NULL.
        unsafe { *s.size = path.len() as u32 + 1 };
    }
    s.ok(|| format!("({url:?}) = {}", show(&path)))
}

/// HSE_REQ_SEND_URL_REDIRECT_RESP: lpvBuffer is the target URL; the host answers
/// `302 Object Moved` with a Location header and a small HTML body, as IIS does.
///
/// # Safety
/// See [`Handler`].
unsafe fn send_url_redirect_resp(s: &Support) -> BOOL {
    // SAFETY: buffer is the NUL-terminated target URL (contract).
    let Some(url) = (unsafe { c_str(s.buffer as *const c_char) }) else {
        return s.invalid();
    };
    if url.iter().any(|&b| b < 0x20) {
        s.violation("redirect URL contains a control character");
        return s.invalid();
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
    if let Err(e) = send_headers(s.host, s.ex, b"302 Object Moved", &block, true, true) {
        return s.fail_with(String::new, e);
    }
    let mut state = s.ex.lock();
    write_body(s.host, s.ex, &mut state, body.as_bytes());
    drop(state);
    s.ok(|| format!("({})", show(url)))
}

/// HSE_REQ_TRANSMIT_FILE: lpvBuffer is an HSE_TF_INFO (file, range, head and tail
/// buffers, optional status and callback, flags); synchronous, or with HSE_IO_ASYNC
/// completed on a worker ([`transmit`] does the sending).
///
/// # Safety
/// See [`Handler`].
unsafe fn transmit_file(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    // SAFETY: buffer points to an HSE_TF_INFO (contract); copied at once.
    let tf = unsafe { *(s.buffer as *const HSE_TF_INFO) };
    let callback = tf.pfnHseIO.map(|f| (f, tf.pContext as usize));
    let detail = || {
        format!(
            "(hFile {:p}, offset {}, {} bytes, flags {:#x})",
            tf.hFile, tf.Offset, tf.BytesToWrite, tf.dwFlags
        )
    };
    if tf.dwFlags & HSE_IO_ASYNC == 0 {
        return match transmit(s.host, s.ex, &tf) {
            Ok(n) => s.ok(|| format!("{} = {n} bytes", detail())),
            Err(e) => s.fail_with(detail, e),
        };
    }
    let mut state = s.ex.lock();
    if callback.is_none() && state.io_completion.is_none() {
        drop(state);
        s.violation("HSE_REQ_TRANSMIT_FILE with HSE_IO_ASYNC but no completion callback");
        return s.fail_with(detail, ERROR_INVALID_PARAMETER);
    }
    if state.async_outstanding {
        s.violation("HSE_REQ_TRANSMIT_FILE while another asynchronous operation is outstanding");
    }
    state.async_outstanding = true;
    drop(state);
    let (host, ex) = (s.host, s.ex.clone());
    let tf_copy = TfInfo(tf);
    host.poller.submit(Work::Task(Box::new(move || {
        let tf = tf_copy;
        let (bytes, error) = match transmit(host, &ex, &tf.0) {
            Ok(n) => (n, 0),
            Err(e) => (0, e),
        };
        run_completion(host, &ex, callback, bytes, error);
    })));
    s.ok(|| format!("{} (completion queued)", detail()))
}

/// HSE_REQ_ASYNC_READ_CLIENT: lpvBuffer receives up to *lpdwSize body bytes, on a
/// worker; lpdwDataType holds the flags (HSE_IO_ASYNC required); the registered
/// IO_COMPLETION callback gets the count.
///
/// # Safety
/// See [`Handler`].
unsafe fn async_read_client(s: &Support) -> BOOL {
    if s.buffer.is_null() || s.size.is_null() || s.data_type.is_null() {
        return s.invalid();
    }
    // SAFETY: size and data_type are non-NULL DWORD pointers (contract).
    let (capacity, flags) = unsafe { (*s.size as usize, *s.data_type) };
    let mut state = s.ex.lock();
    if state.io_completion.is_none() || flags & HSE_IO_ASYNC == 0 {
        drop(state);
        s.violation(
            "HSE_REQ_ASYNC_READ_CLIENT without an IO_COMPLETION callback or without HSE_IO_ASYNC",
        );
        return s.invalid();
    }
    if state.async_outstanding {
        s.violation(
            "HSE_REQ_ASYNC_READ_CLIENT while another asynchronous operation is outstanding",
        );
    }
    state.async_outstanding = true;
    drop(state);
    let (host, ex) = (s.host, s.ex.clone());
    let address = s.buffer as usize;
    host.poller.submit(Work::Task(Box::new(move || {
        // SAFETY: buffer was checked non-NULL; the extension's `capacity` (*lpdwSize)
        // bytes there, initialised or not, stay valid and are left alone until its
        // completion callback runs (the buffer belongs to the pending read, as with
        // any overlapped I/O), which `run_completion` calls only after this read.
        let out = unsafe { BodyOut::from_raw(address as *mut u8, capacity) };
        let (bytes, error) = match read_into(&ex, out) {
            Ok(n) => (n as u32, 0),
            Err(e) => (0, e),
        };
        run_completion(host, &ex, None, bytes, error);
    })));
    s.ok(|| format!("({capacity} bytes, completion queued)"))
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
    let offset = tf.Offset as u64;
    let left = if tf.BytesToWrite == 0 {
        u64::MAX
    } else {
        tf.BytesToWrite as u64
    };
    let first = left.min(chunk.len() as u64) as usize;
    let n = crate::os::read_file_at(tf.hFile, offset, &mut chunk[..first])
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
    sent += copy_file(
        host,
        ex,
        &mut state,
        tf.hFile,
        (offset, left),
        &mut chunk,
        n,
    )?;
    if !tail.is_empty() {
        if !write_body(host, ex, &mut state, tail) {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        sent += tail.len() as u64;
    }
    Ok(sent.min(u32::MAX as u64) as u32)
}

/// HSE_REQ_VECTOR_SEND: lpvBuffer is an HSE_RESPONSE_VECTOR. With HSE_IO_SEND_HEADERS,
/// its status and header block (both non-NULL; without the flag both NULL, as IIS
/// requires), then its elements in order: memory buffers (cbSize > 0 bytes from
/// pvContext + cbOffset) and file ranges (a HANDLE, cbOffset, cbSize; 0: to the end of the
/// file). So one call sends what SEND_RESPONSE_HEADER_EX and WriteClient calls would, and
/// the status line, headers and a small body leave in one write (the response buffer).
/// HSE_IO_DISCONNECT_AFTER_SEND closes the connection after the response;
/// HSE_IO_FINAL_SEND says no more response data follows (a later write is a violation).
/// With HSE_IO_ASYNC the data is taken during the call and the IO_COMPLETION callback
/// gets the body byte count on a worker, as for WriteClient. Everything is checked before
/// anything is sent: a bad element fails the call and leaves the response untouched.
///
/// # Safety
/// See [`Handler`].
unsafe fn vector_send(s: &Support) -> BOOL {
    if s.buffer.is_null() {
        return s.invalid();
    }
    // SAFETY: buffer points to an HSE_RESPONSE_VECTOR (contract); copied at once.
    let v = unsafe { *(s.buffer as *const HSE_RESPONSE_VECTOR) };
    let detail = || format!("({} elements, flags {:#x})", v.nElementCount, v.dwFlags);
    let refuse = |what: &str| {
        s.violation(&format!("HSE_REQ_VECTOR_SEND: {what}"));
        s.fail_with(detail, ERROR_INVALID_PARAMETER)
    };
    let with_headers = v.dwFlags & HSE_IO_SEND_HEADERS != 0;
    if with_headers == v.pszStatus.is_null() || with_headers == v.pszHeaders.is_null() {
        return refuse(
            "pszStatus and pszHeaders must both be set with HSE_IO_SEND_HEADERS, and both NULL without it",
        );
    }
    let elements: &[HSE_VECTOR_ELEMENT] = match (v.nElementCount, v.lpElementArray.is_null()) {
        (0, _) => &[],
        (_, true) => return refuse("nElementCount is not 0 but lpElementArray is NULL"),
        // SAFETY: lpElementArray is non-NULL and points to nElementCount elements, which
        // the extension leaves alone until the call returns (contract).
        (n, false) => unsafe { std::slice::from_raw_parts(v.lpElementArray, n as usize) },
    };
    // The checked elements: on the stack for the usual few (a response's body is one or
    // two), so that the call allocates nothing; in a Vec beyond that.
    let mut few = [const { VectorPart::Memory(&[]) }; FEW_PARTS];
    let mut many = Vec::new();
    for (i, element) in elements.iter().enumerate() {
        // SAFETY: the element is the extension's, as the contract describes it.
        let part = match unsafe { VectorPart::of(element) } {
            Ok(part) => part,
            Err(Ok(what)) => return refuse(&what),
            Err(Err(error)) => return s.fail_with(detail, error),
        };
        if elements.len() <= FEW_PARTS {
            few[i] = part;
        } else {
            many.push(part);
        }
    }
    let parts = if elements.len() <= FEW_PARTS {
        &few[..elements.len()]
    } else {
        &many[..]
    };
    let is_async = v.dwFlags & HSE_IO_ASYNC != 0;
    if is_async {
        let state = s.ex.lock();
        if state.io_completion.is_none() {
            drop(state);
            return refuse("HSE_IO_ASYNC without an HSE_REQ_IO_COMPLETION callback");
        }
        if state.async_outstanding {
            s.violation("HSE_REQ_VECTOR_SEND while another asynchronous operation is outstanding");
        }
    }
    let result = send_vector(s.host, s.ex, &v, parts);
    if is_async {
        let (sent, error) = match result {
            Ok(n) => (n, 0),
            Err(e) => (0, e),
        };
        s.ex.lock().async_outstanding = true;
        complete_async(s.host, s.ex.clone(), None, sent, error);
        return s.ok(|| format!("{} (completion queued)", detail()));
    }
    match result {
        Ok(n) => s.ok(|| format!("{} = {n} body bytes", detail())),
        Err(e) => s.fail_with(detail, e),
    }
}

/// How many elements of an HSE_REQ_VECTOR_SEND are checked into an array on the stack.
const FEW_PARTS: usize = 4;

/// One element of an HSE_REQ_VECTOR_SEND, checked.
enum VectorPart<'a> {
    Memory(&'a [u8]),
    /// A file handle, the offset, and the bytes to send (u64::MAX: to the end).
    File(*mut c_void, u64, u64),
}

impl VectorPart<'_> {
    /// Checks one element: Err(Ok(violation)) for one the contract forbids, Err(Err(code))
    /// for a file that cannot be read at its offset (as TRANSMIT_FILE fails).
    ///
    /// # Safety
    /// A memory element's pvContext + cbOffset points to cbSize readable bytes that stay
    /// unchanged until the call returns (the contract).
    unsafe fn of(e: &HSE_VECTOR_ELEMENT) -> Result<VectorPart<'_>, Result<String, u32>> {
        match e.ElementType {
            HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER => {
                if e.pvContext.is_null() || e.cbSize == 0 {
                    return Err(Ok(
                        "a memory element with a NULL buffer or a cbSize of 0".to_string()
                    ));
                }
                // SAFETY: non-NULL; the extension vouches for cbSize bytes from cbOffset.
                let data = unsafe {
                    std::slice::from_raw_parts(
                        e.pvContext.cast::<u8>().add(e.cbOffset as usize),
                        e.cbSize as usize,
                    )
                };
                Ok(VectorPart::Memory(data))
            }
            HSE_VECTOR_ELEMENT_TYPE_FILE_HANDLE => {
                let mut probe = [0u8; 1];
                let n = crate::os::read_file_at(e.pvContext, e.cbOffset, &mut probe)
                    .map_err(|_| Err(ERROR_INVALID_PARAMETER))?;
                if n == 0 && e.cbOffset > 0 {
                    return Err(Err(WSAEINVAL));
                }
                let left = if e.cbSize == 0 { u64::MAX } else { e.cbSize };
                Ok(VectorPart::File(e.pvContext, e.cbOffset, left))
            }
            other => Err(Ok(format!("unknown ElementType {other}"))),
        }
    }
}

/// Sends a checked HSE_REQ_VECTOR_SEND: headers, then each part. Returns the body bytes.
fn send_vector(
    host: &'static Host,
    ex: &Exchange,
    v: &HSE_RESPONSE_VECTOR,
    parts: &[VectorPart],
) -> Result<u32, u32> {
    if v.dwFlags & HSE_IO_DISCONNECT_AFTER_SEND != 0 {
        let mut state = ex.lock();
        state.close_after = true;
        state.response.close_after();
    }
    if v.dwFlags & HSE_IO_SEND_HEADERS != 0 {
        // SAFETY: both are non-NULL NUL-terminated strings (checked, and the contract).
        let (status, block) = unsafe { (c_str(v.pszStatus), c_str(v.pszHeaders)) };
        let (status, block) = (status.unwrap_or(b""), block.unwrap_or(b""));
        send_headers(host, ex, status, block, true, true)?;
    }
    let mut state = ex.lock();
    let mut sent = 0u64;
    let mut chunk = Vec::new();
    for part in parts {
        match *part {
            VectorPart::Memory(data) => {
                if !write_body(host, ex, &mut state, data) {
                    return Err(ERROR_CONNECTION_ABORTED);
                }
                sent += data.len() as u64;
            }
            VectorPart::File(file, offset, left) => {
                chunk.resize(64 * 1024, 0);
                let first = left.min(chunk.len() as u64) as usize;
                let n = crate::os::read_file_at(file, offset, &mut chunk[..first])
                    .map_err(|_| ERROR_INVALID_PARAMETER)?;
                sent += copy_file(host, ex, &mut state, file, (offset, left), &mut chunk, n)?;
            }
        }
    }
    if v.dwFlags & HSE_IO_FINAL_SEND != 0 {
        state.final_sent = true;
    }
    Ok(sent.min(u32::MAX as u64) as u32)
}

/// Sends a file range (`offset`, then `left` bytes or up to the end of the file) as body
/// bytes, for TRANSMIT_FILE and VECTOR_SEND: `chunk[..n]` already holds its first bytes
/// (read by the caller, which checked the handle and the offset with it). Returns the
/// bytes sent.
fn copy_file(
    host: &'static Host,
    ex: &Exchange,
    state: &mut State,
    file: *mut c_void,
    (mut offset, mut left): (u64, u64),
    chunk: &mut [u8],
    mut n: usize,
) -> Result<u64, u32> {
    let mut sent = 0u64;
    while n > 0 {
        if !write_body(host, ex, state, &chunk[..n]) {
            return Err(ERROR_CONNECTION_ABORTED);
        }
        sent += n as u64;
        offset += n as u64;
        left = left.saturating_sub(n as u64);
        #[cfg(target_os = "linux")]
        {
            let streamed = send_file(host, state, file, offset, left)?;
            sent += streamed;
            offset += streamed;
            left -= streamed;
        }
        if left == 0 {
            break;
        }
        let want = left.min(chunk.len() as u64) as usize;
        n = crate::os::read_file_at(file, offset, &mut chunk[..want])
            .map_err(|_| ERROR_INVALID_PARAMETER)?;
    }
    Ok(sent)
}

/// The part of a TRANSMIT_FILE range that may go straight from the file to the socket
/// (sendfile, as TransmitFile does: no copy through the host), up to `left` bytes or the end
/// of the file. Returns the bytes sent; whatever is left (none may bypass the response
/// buffer, or past a declared Content-Length) the caller copies through `write_body`.
#[cfg(target_os = "linux")]
fn send_file(
    host: &'static Host,
    state: &mut State,
    file: *mut c_void,
    mut offset: u64,
    left: u64,
) -> Result<u64, u32> {
    let stopping = host.stopping();
    let State { conn, response, .. } = state;
    let Some(conn) = conn.as_mut().filter(|c| !c.closed) else {
        return Err(ERROR_CONNECTION_ABORTED);
    };
    let mut out = conn.out();
    let room = response
        .file_room(&mut out, stopping)
        .map_err(|_| ERROR_CONNECTION_ABORTED)?;
    let mut want = left.min(room);
    let mut sent = 0;
    while want > 0 {
        let count = want.min(1 << 30) as usize;
        let n = match out.send_file(file, offset, count) {
            Ok(n) => n as u64,
            Err(_) => {
                response.failed = true; // the client went away (or was too slow)
                return Err(ERROR_CONNECTION_ABORTED);
            }
        };
        if n == 0 {
            break; // the end of the file
        }
        response.sent_from_file(n);
        sent += n;
        offset += n;
        want -= n;
    }
    Ok(sent)
}
