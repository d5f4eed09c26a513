//! The pages the extension answers by itself, never the application: 500 when the
//! application failed (to start, or to answer), 503 when the server is busy or stopping
//! or under maintenance (`app_offline.htm`), 413 when a request's body is larger than
//! `[wsgi] max_body`, 404 for a request under no mount when there is no `[wsgi] app`, 404
//! for the health page to a client it does not answer, the health page itself, and the
//! demo's refusal for clients that are not on this machine. One builder for all of them,
//! so they look alike and their text is always escaped.
//!
//! A [`Page`] is sent either without Python ([`Page::answer`], straight to the ECB, on the
//! thread IIS called us on: it gives the request its [`RequestId`], which the page names,
//! and counts the answer in [`STATS`]), or by the bridge through its normal response path
//! (so that HEAD, keep-alive and the log see it like any other response).
use std::ffi::CString;

use crate::isapi::ecb::Ecb;
use crate::isapi::ffi::{HSE_STATUS_ERROR, HSE_STATUS_SUCCESS, HSE_STATUS_SUCCESS_AND_KEEP_CONN};
use crate::request_id::{self, RequestId};
use crate::stats::STATS;

/// How long a client refused with 503 is asked to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// A page of our own: a status, a sentence, and optional detail (a traceback).
pub struct Page {
    /// The status line, like `500 Internal Server Error`.
    pub status: &'static str,
    /// What went wrong, one sentence of plain text.
    pub message: String,
    /// More text shown below it (escaped), e.g. a traceback with `debug = true`.
    pub detail: Option<String>,
    /// Ask the client to retry after this many seconds (`Retry-After`).
    pub retry: Option<u32>,
    /// Close the connection after the page (the request's body was left unread).
    pub close: bool,
    /// A body of its own instead of the HTML page (the health page's JSON, the contents of
    /// `app_offline.htm`).
    pub body: Option<Body>,
    /// The request's id, named in the HTML page.
    pub request_id: Option<String>,
}

/// A page's own body and its media type.
pub struct Body {
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    /// `Cache-Control: no-store` (the health page changes from one request to the next).
    pub no_store: bool,
}

impl Page {
    /// `500 Internal Server Error`: `what` failed; the details are in the log.
    pub fn internal_error(what: &str, detail: Option<&str>) -> Page {
        Page {
            status: "500 Internal Server Error",
            message: format!("{what} The details are in the server's log."),
            detail: detail.map(str::to_owned),
            retry: None,
            close: false,
            body: None,
            request_id: None,
        }
    }

    /// The page every request gets when the application could not be started.
    pub fn startup_failure(detail: Option<&str>) -> Page {
        Page::internal_error("The application failed to start.", detail)
    }

    /// The page a request gets when the application failed to answer it.
    pub fn application_failure(detail: Option<&str>) -> Page {
        Page::internal_error("The application failed to answer this request.", detail)
    }

    /// The built-in demo's answer to a client that is not on this machine: with no
    /// application configured, a server must not show its insides to the network.
    pub fn not_configured() -> Page {
        Page::internal_error("No application is configured on this server.", None)
    }

    /// `404 Not Found`: the request is under no mount, and there is no `[wsgi] app`.
    pub fn no_application() -> Page {
        Page {
            message: "No application is served at this address.".to_string(),
            ..Page::not_found()
        }
    }

    /// `503 Service Unavailable` with `Retry-After`.
    pub fn busy(reason: &str) -> Page {
        Page {
            status: "503 Service Unavailable",
            message: format!("{reason}; please retry in a moment."),
            detail: None,
            retry: Some(RETRY_AFTER_SECONDS),
            close: false,
            body: None,
            request_id: None,
        }
    }

    /// `404 Not Found`, e.g. the health page for a client that may not see it.
    pub fn not_found() -> Page {
        Page {
            status: "404 Not Found",
            message: "The requested URL was not found on this server.".into(),
            detail: None,
            retry: None,
            close: false,
            body: None,
            request_id: None,
        }
    }

    /// A page whose body is given: `status` with `body`.
    pub fn with_body(status: &'static str, body: Body) -> Page {
        Page {
            status,
            message: String::new(),
            detail: None,
            retry: None,
            close: false,
            body: Some(body),
            request_id: None,
        }
    }

    /// `413 Content Too Large`: the body's declared length is over `limit` bytes. The body
    /// is never read, so the connection closes after the page: what the client sends
    /// next would be taken as the next request.
    pub fn too_large(length: u64, limit: u64) -> Page {
        Page {
            status: "413 Content Too Large",
            message: format!(
                "The request body ({length} bytes) is larger than this server accepts ({limit} bytes)."
            ),
            detail: None,
            retry: None,
            close: true,
            body: None,
            request_id: None,
        }
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.status[..3].parse().unwrap_or(500)
    }

    /// The body: the HTML page (naming the request id, when it is set), or the page's own.
    pub fn html(&self) -> Vec<u8> {
        if let Some(body) = &self.body {
            return body.bytes.clone();
        }
        let title = escape_html(self.status);
        let heading = escape_html(&self.status[4..]);
        let mut page = format!(
            "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{heading}</h1><p>{}</p>",
            escape_html(&self.message)
        );
        if let Some(detail) = &self.detail {
            page.push_str("<pre>");
            page.push_str(&escape_html(detail));
            page.push_str("</pre>");
        }
        if let Some(id) = &self.request_id {
            page.push_str("<p>Request id: <code>");
            page.push_str(&escape_html(id));
            page.push_str("</code></p>");
        }
        page.into_bytes()
    }

    /// The header lines besides Content-Length, each ending in CRLF.
    pub fn headers(&self) -> String {
        let content_type = match &self.body {
            Some(body) => body.content_type,
            None => "text/html; charset=utf-8",
        };
        let mut headers = format!("Content-Type: {content_type}\r\n");
        if self.body.as_ref().is_some_and(|body| body.no_store) {
            headers.push_str("Cache-Control: no-store\r\n");
        }
        if let Some(seconds) = self.retry {
            headers.push_str(&format!("Retry-After: {seconds}\r\n"));
        }
        headers
    }

    /// Answers the request with this page, on the calling thread, without Python: gives
    /// the request its id (named in the page and, unless switched off, in `X-Request-Id`)
    /// and counts the answer. Returns the final HSE_STATUS_* for `HttpExtensionProc` (or
    /// DONE_WITH_SESSION).
    pub fn answer(self, ecb: &Ecb) -> u32 {
        let id = RequestId::assign(ecb);
        self.answer_as(ecb, &id)
    }

    /// As [`answer`](Page::answer), for a request whose id is already assigned.
    pub fn answer_as(mut self, ecb: &Ecb, id: &RequestId) -> u32 {
        STATS.answered(self.code());
        self.request_id = Some(id.to_string());
        self.send(ecb, id)
    }

    /// Sends the page as the answer to a request whose id is `id`, without counting it.
    pub fn send(&self, ecb: &Ecb, id: &RequestId) -> u32 {
        let body = self.html();
        let mut headers = self.headers();
        if request_id::header_enabled() {
            headers.push_str(&format!("X-Request-Id: {id}\r\n"));
        }
        let headers = format!("{headers}Content-Length: {}\r\n\r\n", body.len());
        let (Ok(status), Ok(headers)) = (CString::new(self.status), CString::new(headers)) else {
            return HSE_STATUS_ERROR;
        };
        ecb.set_status_code(self.code());
        let sent = ecb
            .send_headers(&status, &headers, !self.close)
            .and_then(|()| {
                if ecb.is_head() {
                    Ok(())
                } else {
                    ecb.write(&body)
                }
            });
        match sent {
            Ok(()) if self.close => HSE_STATUS_SUCCESS,
            Ok(()) => HSE_STATUS_SUCCESS_AND_KEEP_CONN,
            Err(_) => HSE_STATUS_ERROR,
        }
    }
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_their_text() {
        let page = Page::application_failure(Some("KeyError: '<script>' & more"));
        let html = String::from_utf8(page.html()).unwrap();
        assert!(
            html.contains("<title>500 Internal Server Error</title><h1>Internal Server Error</h1>")
        );
        assert!(html.contains("<pre>KeyError: '&lt;script&gt;' &amp; more</pre>"));
        assert_eq!(page.code(), 500);
        assert_eq!(page.headers(), "Content-Type: text/html; charset=utf-8\r\n");
        let busy = Page::busy("the server is busy");
        assert_eq!(busy.code(), 503);
        assert!(busy.headers().ends_with("Retry-After: 1\r\n"));
        assert!(
            String::from_utf8(busy.html())
                .unwrap()
                .contains("<p>the server is busy; please retry")
        );
        let large = Page::too_large(2000, 1024);
        assert_eq!((large.code(), large.close), (413, true));
        assert!(
            String::from_utf8(large.html())
                .unwrap()
                .contains("<h1>Content Too Large</h1><p>The request body (2000 bytes) is larger")
        );
    }
}
