//! [`Ecb`]: one request, as IIS hands it to the extension, behind a safe interface.
//!
//! IIS passes `HttpExtensionProc` an `EXTENSION_CONTROL_BLOCK`: a few request fields
//! (method, query string, the first bytes of the body) and four callbacks through which the
//! extension asks for everything else (GetServerVariable), reads the rest of the body
//! (ReadClient), writes the response (WriteClient) and talks to the server
//! (ServerSupportFunction: send the headers, ask if the client is still there, finish a
//! pending request...). This module wraps each of them in a method with Rust types and
//! `Result`s, and knows nothing of Python.
//!
//! Validity: an ECB stays valid until the request is finished: `HttpExtensionProc` returned
//! a final status, or, after `HSE_STATUS_PENDING`, `HSE_REQ_DONE_WITH_SESSION` was sent.
//! [`Ecb::from_raw`] is the one `unsafe` promise; [`Ecb::done`] consumes the handle, so
//! nothing can use it afterwards.
use std::ffi::{CStr, c_char, c_void};
use std::ptr::{NonNull, null_mut};

use super::ffi::{
    ERROR_INSUFFICIENT_BUFFER, ERROR_INVALID_INDEX, ERROR_NO_DATA, EXTENSION_CONTROL_BLOCK,
    HSE_APPEND_LOG_PARAMETER, HSE_IO_FINAL_SEND, HSE_IO_SEND_HEADERS, HSE_IO_SYNC,
    HSE_REQ_CLOSE_CONNECTION, HSE_REQ_DONE_WITH_SESSION, HSE_REQ_GET_IMPERSONATION_TOKEN,
    HSE_REQ_IS_CONNECTED, HSE_REQ_REPORT_UNHEALTHY, HSE_REQ_SEND_RESPONSE_HEADER_EX,
    HSE_REQ_SET_FLUSH_FLAG, HSE_REQ_TRANSMIT_FILE, HSE_REQ_VECTOR_SEND, HSE_RESPONSE_VECTOR,
    HSE_SEND_HEADER_EX_INFO, HSE_TF_INFO, HSE_VECTOR_ELEMENT,
    HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER,
};

/// A Win32 error code reported by a failing callback (GetLastError, or errno off Windows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError(pub u32);

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "error {}", self.0)
    }
}

/// The request IIS is asking the extension to answer.
pub struct Ecb {
    raw: NonNull<EXTENSION_CONTROL_BLOCK>,
}

// SAFETY: ISAPI lets an extension use an ECB from any thread (that is what HSE_STATUS_PENDING
// is for: the threadpool handler moves each request to one of its workers). The pointer
// stays valid until the request is finished, and the request is finished only through this
// handle: `HttpExtensionProc` returning a final status while it still owns the Ecb, or
// [`Ecb::done`], which consumes it. So wherever the Ecb moves, it never outlives its ECB.
// The handle is never used by two threads at once for writing, and the fields we read are
// not changed by the server while the request runs.
unsafe impl Send for Ecb {}
// SAFETY: shared use only reads fields and calls the server's callbacks, which IIS allows
// from any thread; the one field we write (dwHttpStatusCode/log data) is only written by
// the thread running the request.
unsafe impl Sync for Ecb {}

impl Ecb {
    /// Wraps the pointer IIS passed to `HttpExtensionProc`; None for NULL.
    ///
    /// # Safety
    /// `raw` must be a valid ECB that stays valid until the returned handle is dropped or
    /// [`done`](Ecb::done) is called.
    pub unsafe fn from_raw(raw: *mut EXTENSION_CONTROL_BLOCK) -> Option<Ecb> {
        NonNull::new(raw).map(|raw| Ecb { raw })
    }

    fn block(&self) -> &EXTENSION_CONTROL_BLOCK {
        // SAFETY: valid for the life of `self` (the from_raw contract).
        unsafe { self.raw.as_ref() }
    }

    fn text(&self, pointer: *mut c_char) -> &[u8] {
        if pointer.is_null() {
            return b"";
        }
        // SAFETY: the ECB's string fields are NUL-terminated and live as long as the ECB.
        unsafe { CStr::from_ptr(pointer) }.to_bytes()
    }

    /// The raw pointer (for the host's bookkeeping and logs).
    pub fn as_ptr(&self) -> *mut EXTENSION_CONTROL_BLOCK {
        self.raw.as_ptr()
    }

    /// The server's ISAPI version: (major, minor).
    pub fn version(&self) -> (u16, u16) {
        let version = self.block().dwVersion;
        ((version >> 16) as u16, version as u16)
    }

    /// REQUEST_METHOD, e.g. `GET`.
    pub fn method(&self) -> &[u8] {
        self.text(self.block().lpszMethod)
    }

    /// QUERY_STRING: the text after `?`, still percent-encoded.
    pub fn query_string(&self) -> &[u8] {
        self.text(self.block().lpszQueryString)
    }

    /// PATH_INFO as IIS computed it (decoded, in the ANSI code page; see docs/bridge.md).
    pub fn path_info(&self) -> &[u8] {
        self.text(self.block().lpszPathInfo)
    }

    /// PATH_TRANSLATED: PATH_INFO mapped to a physical path, as IIS computed it (the same
    /// value as the server variable, which IIS fills this field from).
    pub fn path_translated(&self) -> &[u8] {
        self.text(self.block().lpszPathTranslated)
    }

    /// CONTENT_TYPE of the request body.
    pub fn content_type(&self) -> &[u8] {
        self.text(self.block().lpszContentType)
    }

    /// The body's length, or None when unknown (chunked request or 4 GiB and more).
    pub fn total_bytes(&self) -> Option<u64> {
        match self.block().cbTotalBytes {
            u32::MAX => None,
            total => Some(u64::from(total)),
        }
    }

    /// The first bytes of the body, which IIS read before calling the extension.
    pub fn preread(&self) -> &[u8] {
        let block = self.block();
        if block.lpbData.is_null() || block.cbAvailable == 0 {
            return b"";
        }
        // SAFETY: lpbData holds cbAvailable bytes for the life of the ECB.
        unsafe { std::slice::from_raw_parts(block.lpbData, block.cbAvailable as usize) }
    }

    /// Appends the server variable `name` to `out` (without its NUL). `Ok(false)` if the
    /// server does not know it or has no value for it.
    pub fn server_variable(&self, name: &CStr, out: &mut Vec<u8>) -> Result<bool, IoError> {
        let Some(get) = self.block().GetServerVariable else {
            return Err(IoError(0));
        };
        let start = out.len();
        // The room the buffer has left, if that is enough for a usual variable: appending to
        // a buffer that has room must not grow it (the server says when it needs more).
        let spare = out.capacity() - start;
        let mut room = if spare >= 64 { spare } else { 256 };
        for _ in 0..4 {
            out.reserve(room);
            let mut size = room as u32;
            // SAFETY: `reserve` made room for `size` bytes after `start`; the server writes at
            // most `size` bytes there. ConnID and name are as IIS expects.
            let ok = unsafe {
                get(
                    self.block().ConnID,
                    name.as_ptr() as *mut c_char,
                    out.as_mut_ptr().add(start).cast(),
                    &mut size,
                )
            };
            if ok != 0 {
                // `size` counts the terminating NUL; never trust it beyond the room we gave.
                let written = (size as usize).min(room);
                // SAFETY: the server initialised `written` bytes after `start`.
                unsafe { out.set_len(start + written) };
                // The value ends at its NUL (the standard library searches a word at a time).
                match CStr::from_bytes_until_nul(&out[start..]) {
                    Ok(value) => out.truncate(start + value.to_bytes().len()),
                    // No NUL in all the room: the value may go on past it; ask with more.
                    Err(_) if written == room => {
                        out.truncate(start);
                        room *= 4;
                        continue;
                    }
                    Err(_) => {}
                }
                return Ok(true);
            }
            let error = last_error();
            match error {
                ERROR_INSUFFICIENT_BUFFER => {
                    // IIS 5 reported -1 here: never trust a size that does not grow.
                    room = if (size as usize) > room && size != u32::MAX {
                        size as usize
                    } else {
                        room * 4
                    };
                }
                ERROR_INVALID_INDEX | ERROR_NO_DATA => return Ok(false),
                other => return Err(IoError(other)),
            }
        }
        Err(IoError(ERROR_INSUFFICIENT_BUFFER))
    }

    /// Whether the server variable `name` is exactly `expected` (at most 31 bytes), asked
    /// without allocating.
    pub fn server_variable_is(&self, name: &CStr, expected: &[u8]) -> bool {
        let mut buffer = [0u8; 32];
        self.server_variable_in(name, &mut buffer) == Some(expected)
    }

    /// The server variable `name` read into `buffer` (no allocation), without its NUL;
    /// None when it is unset or does not fit.
    pub fn server_variable_in<'b>(&self, name: &CStr, buffer: &'b mut [u8]) -> Option<&'b [u8]> {
        let get = self.block().GetServerVariable?;
        let mut size = buffer.len().min(u32::MAX as usize) as u32;
        // SAFETY: `buffer` has `size` writable bytes; ConnID and name are as IIS expects.
        let ok = unsafe {
            get(
                self.block().ConnID,
                name.as_ptr() as *mut c_char,
                buffer.as_mut_ptr().cast(),
                &mut size,
            )
        };
        if ok == 0 {
            return None;
        }
        let written = &buffer[..(size as usize).min(buffer.len())];
        match CStr::from_bytes_until_nul(written) {
            Ok(value) => Some(value.to_bytes()),
            // No NUL in a full buffer: the value may go on past it.
            Err(_) if written.len() == buffer.len() => None,
            Err(_) => Some(written),
        }
    }

    /// Whether this is a HEAD request (methods are case-sensitive: `head` is not HEAD).
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }

    /// Whether REMOTE_ADDR is on this machine: 127.0.0.0/8 or ::1 (also as an IPv4-mapped
    /// IPv6 address).
    pub fn client_is_loopback(&self) -> bool {
        let mut address = Vec::with_capacity(48);
        if !matches!(self.server_variable(c"REMOTE_ADDR", &mut address), Ok(true)) {
            return false;
        }
        let parsed = std::str::from_utf8(&address)
            .ok()
            .and_then(|text| text.parse::<std::net::IpAddr>().ok());
        match parsed {
            Some(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
            Some(std::net::IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            None => false,
        }
    }

    /// Reads more of the body (after [`preread`](Ecb::preread)) into `buffer`; blocks until
    /// some data arrives. `Ok(0)` means the body ended or the client closed the connection.
    pub fn read(&self, buffer: &mut [u8]) -> Result<usize, IoError> {
        let Some(read) = self.block().ReadClient else {
            return Err(IoError(0));
        };
        let mut size = buffer.len().min(u32::MAX as usize) as u32;
        // SAFETY: `buffer` has `size` writable bytes.
        let ok = unsafe { read(self.block().ConnID, buffer.as_mut_ptr().cast(), &mut size) };
        if ok == 0 {
            return Err(IoError(last_error()));
        }
        Ok((size as usize).min(buffer.len()))
    }

    /// Writes all of `data` to the client (synchronously).
    pub fn write(&self, mut data: &[u8]) -> Result<(), IoError> {
        let Some(write) = self.block().WriteClient else {
            return Err(IoError(0));
        };
        while !data.is_empty() {
            let mut size = data.len().min(u32::MAX as usize) as u32;
            // SAFETY: `data` has `size` readable bytes; IIS does not write to the buffer.
            let ok = unsafe {
                write(
                    self.block().ConnID,
                    data.as_ptr() as *mut c_void,
                    &mut size,
                    HSE_IO_SYNC,
                )
            };
            if ok == 0 {
                return Err(IoError(last_error()));
            }
            if size == 0 {
                return Err(IoError(super::ffi::ERROR_CONNECTION_ABORTED));
            }
            data = &data[(size as usize).min(data.len())..];
        }
        Ok(())
    }

    /// Sends the status line and headers (HSE_REQ_SEND_RESPONSE_HEADER_EX). `status` is like
    /// `200 OK`; `headers` is `Name: value\r\n` lines followed by a final `\r\n`.
    /// `keep_conn` says whether the connection may stay open after this response.
    pub fn send_headers(
        &self,
        status: &CStr,
        headers: &CStr,
        keep_conn: bool,
    ) -> Result<(), IoError> {
        let mut info = HSE_SEND_HEADER_EX_INFO {
            pszStatus: status.as_ptr(),
            pszHeader: headers.as_ptr(),
            cchStatus: status.count_bytes() as u32,
            cchHeader: headers.count_bytes() as u32,
            fKeepConn: i32::from(keep_conn),
        };
        self.support(
            HSE_REQ_SEND_RESPONSE_HEADER_EX,
            (&mut info as *mut HSE_SEND_HEADER_EX_INFO).cast(),
            null_mut(),
        )
    }

    /// Sends the status line, the headers and the body `pieces` in one call
    /// (HSE_REQ_VECTOR_SEND with HSE_IO_SEND_HEADERS, synchronous) instead of
    /// SEND_RESPONSE_HEADER_EX and WriteClient: for a small response known whole. The
    /// connection stays open as the response's framing allows (there is no fKeepConn: the
    /// caller uses this only when it would pass TRUE). `last` promises that nothing more of
    /// the response follows (HSE_IO_FINAL_SEND). A server without the call (IIS before 6,
    /// or another ISAPI host) refuses it with ERROR_INVALID_PARAMETER, having sent nothing.
    pub fn send_response(
        &self,
        status: &CStr,
        headers: &CStr,
        pieces: [&[u8]; 2],
        last: bool,
    ) -> Result<(), IoError> {
        // The non-empty pieces, in order (a server may refuse an empty memory element).
        let element = |piece: &[u8]| HSE_VECTOR_ELEMENT {
            ElementType: HSE_VECTOR_ELEMENT_TYPE_MEMORY_BUFFER,
            pvContext: piece.as_ptr() as *mut c_void,
            cbOffset: 0,
            cbSize: piece.len() as u64,
        };
        let mut elements = [element(&[]), element(&[])];
        let mut count = 0;
        for piece in pieces.into_iter().filter(|piece| !piece.is_empty()) {
            elements[count] = element(piece);
            count += 1;
        }
        let final_send = if last { HSE_IO_FINAL_SEND } else { 0 };
        let mut vector = HSE_RESPONSE_VECTOR {
            dwFlags: HSE_IO_SYNC | HSE_IO_SEND_HEADERS | final_send,
            pszStatus: status.as_ptr() as *mut c_char,
            pszHeaders: headers.as_ptr() as *mut c_char,
            nElementCount: count as u32,
            lpElementArray: if count == 0 {
                null_mut()
            } else {
                elements.as_mut_ptr()
            },
        };
        self.support(
            HSE_REQ_VECTOR_SEND,
            (&mut vector as *mut HSE_RESPONSE_VECTOR).cast(),
            null_mut(),
        )
    }

    /// Sends `length` bytes of an open file from `offset`, with `head` before and `tail`
    /// after them (HSE_REQ_TRANSMIT_FILE, synchronous; the headers must be sent already).
    /// `file` is a Win32 `HANDLE` on Windows, a file descriptor elsewhere; the server only
    /// reads from it and does not close it. An offset or a length past 4 GiB (HSE_TF_INFO's
    /// fields are 32-bit) and a `length` of 0 (which would mean "to the end") are refused
    /// with ERROR_INVALID_PARAMETER before anything is sent, as a server that does not
    /// offer this call refuses it.
    pub fn transmit_file(
        &self,
        file: usize,
        offset: u64,
        length: u64,
        head: &[u8],
        tail: &[u8],
    ) -> Result<(), IoError> {
        let (Ok(offset), Ok(length)) = (u32::try_from(offset), u32::try_from(length)) else {
            return Err(IoError(super::ffi::ERROR_INVALID_PARAMETER));
        };
        if length == 0 {
            return Err(IoError(super::ffi::ERROR_INVALID_PARAMETER));
        }
        let mut info = HSE_TF_INFO {
            pfnHseIO: None,
            pContext: null_mut(),
            hFile: file as *mut c_void,
            pszStatusCode: std::ptr::null(),
            BytesToWrite: length,
            Offset: offset,
            pHead: optional(head),
            HeadLength: head.len() as u32,
            pTail: optional(tail),
            TailLength: tail.len() as u32,
            dwFlags: HSE_IO_SYNC,
        };
        // The server reads `head` and `tail` (HeadLength / TailLength bytes) and the file
        // only during this synchronous call; the slices outlive it.
        self.support(
            HSE_REQ_TRANSMIT_FILE,
            (&mut info as *mut HSE_TF_INFO).cast(),
            null_mut(),
        )
    }

    /// Records the HTTP status for the server's log (dwHttpStatusCode).
    pub fn set_status_code(&self, code: u16) {
        // SAFETY: the extension owns this field of a live ECB; only the request's thread
        // writes it.
        unsafe { (*self.raw.as_ptr()).dwHttpStatusCode = u32::from(code) };
    }

    /// Asks IIS to send each later write at once instead of buffering the response
    /// (HSE_REQ_SET_FLUSH_FLAG, IIS 7+). Returns whether the server accepted it.
    pub fn set_flush(&self, on: bool) -> bool {
        // The flag travels in the buffer pointer itself.
        self.support(
            HSE_REQ_SET_FLUSH_FLAG,
            on as usize as *mut c_void,
            null_mut(),
        )
        .is_ok()
    }

    /// Whether the client is still connected (HSE_REQ_IS_CONNECTED). True if the server
    /// cannot tell.
    pub fn is_connected(&self) -> bool {
        let mut connected: i32 = 1;
        match self.support(
            HSE_REQ_IS_CONNECTED,
            (&mut connected as *mut i32).cast(),
            null_mut(),
        ) {
            Ok(()) => connected != 0,
            Err(_) => true,
        }
    }

    /// Appends `text` to IIS's log line for this request (HSE_APPEND_LOG_PARAMETER: IIS adds
    /// it to the W3C log's `cs-uri-query` field).
    pub fn append_log_parameter(&self, text: &CStr) {
        // IIS reads the NUL-terminated string during the call and does not keep the pointer.
        let _ = self.support(
            HSE_APPEND_LOG_PARAMETER,
            text.as_ptr() as *mut c_void,
            null_mut(),
        );
    }

    /// Closes the client connection now (after a response whose framing went wrong).
    pub fn close_connection(&self) {
        let _ = self.support(HSE_REQ_CLOSE_CONNECTION, null_mut(), null_mut());
    }

    /// The Windows access token of the request's user (HSE_REQ_GET_IMPERSONATION_TOKEN):
    /// the identity IIS's own thread would have while running the request. NULL when the
    /// server has none to give. The token belongs to the server and is valid until the
    /// request is finished; it must not be closed.
    pub fn impersonation_token(&self) -> *mut c_void {
        let mut token: *mut c_void = null_mut();
        match self.support(
            HSE_REQ_GET_IMPERSONATION_TOKEN,
            (&mut token as *mut *mut c_void).cast(),
            null_mut(),
        ) {
            Ok(()) => token,
            Err(_) => null_mut(),
        }
    }

    /// Tells IIS that the extension is unhealthy (HSE_REQ_REPORT_UNHEALTHY), with a reason
    /// that IIS writes to the Application event log (event 2262). IIS then recycles the
    /// worker process at its next health ping, if pinging is enabled for the pool. The
    /// reason travels as a NUL-terminated string in the buffer pointer itself (as in
    /// Microsoft's own samples; the IIS 6 reference page's example passes its address,
    /// which contradicts its own parameter description). A NUL inside `reason` ends it there.
    pub fn report_unhealthy(&self, reason: &str) -> bool {
        let mut text: Vec<u8> = reason.bytes().take_while(|&b| b != 0).collect();
        text.push(0);
        self.support(
            HSE_REQ_REPORT_UNHEALTHY,
            text.as_mut_ptr().cast(),
            null_mut(),
        )
        .is_ok()
    }

    /// Finishes a request for which `HttpExtensionProc` returned `HSE_STATUS_PENDING`
    /// (HSE_REQ_DONE_WITH_SESSION with `status`). The ECB is dead afterwards.
    pub fn done(self, status: u32) {
        let mut status = status;
        let _ = self.support(
            HSE_REQ_DONE_WITH_SESSION,
            (&mut status as *mut u32).cast(),
            null_mut(),
        );
    }

    fn support(&self, request: u32, buffer: *mut c_void, size: *mut u32) -> Result<(), IoError> {
        let Some(support) = self.block().ServerSupportFunction else {
            return Err(IoError(0));
        };
        // SAFETY: each caller passes the buffer the request code documents; size and data
        // type may be NULL for the requests we use.
        let ok = unsafe { support(self.block().ConnID, request, buffer, size, null_mut()) };
        if ok == 0 {
            Err(IoError(last_error()))
        } else {
            Ok(())
        }
    }
}

/// A buffer for the server to read, NULL when empty.
fn optional(bytes: &[u8]) -> *mut c_void {
    if bytes.is_empty() {
        null_mut()
    } else {
        bytes.as_ptr() as *mut c_void
    }
}

/// The calling thread's last OS error (GetLastError on Windows).
fn last_error() -> u32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isapi::ffi::{EXTENSION_CONTROL_BLOCK, HCONN};

    /// 100 bytes and a NUL.
    const LONG: &[u8; 101] = &{
        let mut value = [b'x'; 101];
        value[100] = 0;
        value
    };

    /// A server whose variable `LONG` is [`LONG`] and every other `HTTP/1.1` (with its NUL
    /// when there is room for it), as a server that does not say when a value does not fit
    /// might answer.
    unsafe extern "C" fn sloppy(
        _: HCONN,
        name: *mut c_char,
        buffer: *mut c_void,
        size: *mut u32,
    ) -> i32 {
        // SAFETY: the caller passes a NUL-terminated name and `*size` writable bytes at
        // `buffer`.
        unsafe {
            let value: &[u8] = if CStr::from_ptr(name) == c"LONG" {
                LONG
            } else {
                b"HTTP/1.1\0"
            };
            let n = (*size as usize).min(value.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), buffer.cast::<u8>(), n);
            *size = n as u32;
        }
        1
    }

    /// A value read into a buffer too small for it is not taken for the whole value: no
    /// value from a fixed buffer, another try with more room from a growing one.
    #[test]
    fn a_value_cut_by_a_full_buffer_is_not_taken_for_the_value() {
        let mut block = EXTENSION_CONTROL_BLOCK {
            GetServerVariable: Some(sloppy),
            ..Default::default()
        };
        // SAFETY: `block` outlives `ecb`; only GetServerVariable is called.
        let ecb = unsafe { Ecb::from_raw(&mut block) }.unwrap();
        assert_eq!(
            ecb.server_variable_in(c"SERVER_PROTOCOL", &mut [0; 32]),
            Some(&b"HTTP/1.1"[..])
        );
        assert_eq!(
            ecb.server_variable_in(c"SERVER_PROTOCOL", &mut [0; 9]),
            Some(&b"HTTP/1.1"[..])
        );
        assert_eq!(
            ecb.server_variable_in(c"SERVER_PROTOCOL", &mut [0; 6]),
            None,
            "HTTP/1 taken for the value"
        );
        assert!(!ecb.server_variable_is(c"SERVER_PROTOCOL", b"HTTP/1"));
        // Into a buffer with room for 64 bytes: the first answer fills it, so it asks again.
        let mut out = Vec::with_capacity(64);
        assert!(matches!(ecb.server_variable(c"LONG", &mut out), Ok(true)));
        assert_eq!(out, LONG[..100]);
    }
}
