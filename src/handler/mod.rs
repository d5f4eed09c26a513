//! Handlers: who runs a request, and on which thread.
//!
//! * [`simple`]: on the IIS thread that called `HttpExtensionProc`; the request is finished
//!   when the call returns.
//! * `threadpool` (issue 4, next): queued to our own workers; `HttpExtensionProc` returns
//!   `HSE_STATUS_PENDING` and a worker ends the request with `HSE_REQ_DONE_WITH_SESSION`.
//!
//! Both take the request as an owned [`Ecb`](crate::isapi::ecb::Ecb) and use the same
//! [`Bridge::serve`](crate::wsgi::Bridge::serve) (which works from any thread), turning its
//! [`Outcome`](crate::wsgi::response::Outcome) into the status IIS expects.
pub mod simple;

use crate::isapi::ffi::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS, HSE_STATUS_SUCCESS_AND_KEEP_CONN};
use crate::wsgi::response::Outcome;

// The threadpool handler moves requests to its workers and shares the bridge between them.
const _: () = {
    const fn send<T: Send>() {}
    const fn shared<T: Send + Sync>() {}
    send::<crate::isapi::ecb::Ecb>();
    shared::<crate::wsgi::Bridge>();
};

/// The HSE_STATUS_* for a finished request.
pub fn status_for(outcome: Outcome) -> u32 {
    if outcome.aborted {
        HSE_STATUS_ERROR
    } else if outcome.keep_conn {
        HSE_STATUS_SUCCESS_AND_KEEP_CONN
    } else {
        HSE_STATUS_SUCCESS
    }
}

/// Answers with a fixed HTML page and no Python (e.g. when the application failed to start).
pub fn answer_page(ecb: &crate::isapi::ecb::Ecb, status: &str, page: &[u8]) -> u32 {
    let headers = format!(
        "Content-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        page.len()
    );
    let (Ok(status_z), Ok(headers)) = (
        std::ffi::CString::new(status),
        std::ffi::CString::new(headers),
    ) else {
        return HSE_STATUS_ERROR;
    };
    ecb.set_status_code(status[..3].parse().unwrap_or(500));
    let head = ecb.method().eq_ignore_ascii_case(b"HEAD");
    match ecb.send_headers(&status_z, &headers, true) {
        Ok(()) if head => HSE_STATUS_SUCCESS_AND_KEEP_CONN,
        Ok(()) => match ecb.write(page) {
            Ok(()) => HSE_STATUS_SUCCESS_AND_KEEP_CONN,
            Err(_) => HSE_STATUS_ERROR,
        },
        Err(_) => HSE_STATUS_ERROR,
    }
}
