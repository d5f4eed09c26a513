//! Mounts: several applications in one extension, and which one answers a request.
//!
//! `[mount /blog]` sections (config.rs) each name an application of their own, as the old
//! isapi-wsgi's sub-applications did. A request belongs to the mount whose path is the
//! longest whole-segment prefix of its PATH_INFO: `/blog` takes `/blog` and `/blog/x`, not
//! `/blogger`; `/blog/admin` takes `/blog/admin/x` from `/blog`. Paths compare without
//! regard to ASCII case, as IIS compares URLs, on the canonical PATH_INFO (decoded, no
//! dot-segments: environ.rs), so `/blog/../admin` is `/admin` and never the blog: the path
//! a mount sees is the one IIS authorised. SCRIPT_NAME gains the mount (in the client's
//! bytes), PATH_INFO is the rest. A request under no mount goes to `[wsgi] app`, or gets
//! 404 when there is none.
//!
//! Every application is imported once, at start-up; one that fails leaves the others
//! serving, and its own requests get the start-up failure page. Each may have its own
//! `handler` and `debug`: [`Site::route`] runs on the thread IIS called us on, before any
//! handler, so that the handler can be chosen per request.
//!
//! The mount that answers is named in IIS's log: [`Site::route`] appends `|mount=/blog` to
//! the request's log entry (`HSE_APPEND_LOG_PARAMETER`: IIS writes it in the W3C log's
//! `cs-uri-query` field; `isapi-host` shows it at the end of its access-log line and in
//! `--trace`). Requests answered by `[wsgi] app` append nothing.
use std::ffi::CString;

use super::app::App;
use super::environ::{Target, is_under};
use crate::config::HandlerKind;
use crate::isapi::ecb::Ecb;
use crate::request_id::RequestId;

/// One application of the site: `[wsgi] app` (no mount) or a `[mount]`'s.
pub struct Served {
    /// The mount path (`/blog`); None for `[wsgi] app`.
    pub mount: Option<String>,
    pub handler: HandlerKind,
    pub debug: bool,
    /// The loaded application, or why it failed to start (the report for the log, shown
    /// in its 500 pages with `debug = true`).
    pub app: Result<App, String>,
}

/// The applications, and how a request finds its own.
pub struct Site {
    served: Vec<Served>,
    /// Which of `served` answers requests under no mount.
    root: Option<usize>,
}

/// Where a request goes.
pub enum Route<'a> {
    /// Under no mount, and there is no `[wsgi] app`: 404.
    NotFound,
    /// The application that would answer failed to start: the start-up failure page, with
    /// the report when that application has `debug = true`.
    Failed {
        detail: Option<&'a str>,
        /// The request's id, assigned before the mount was named in IIS's log.
        id: RequestId,
    },
    /// To a running application.
    To(Routed),
}

/// A request on its way to a running application (it travels with the request to the
/// threadpool's workers).
#[derive(Debug)]
pub struct Routed {
    /// Which application (see [`Site::served`]).
    pub index: usize,
    pub handler: HandlerKind,
    /// The paths, SCRIPT_NAME including the mount.
    pub target: Target,
}

impl Site {
    /// The site of `served`, of which `root` (if any) answers requests under no mount.
    pub fn new(served: Vec<Served>, root: Option<usize>) -> Site {
        Site { served, root }
    }

    /// Every application, `[wsgi] app` and the mounts.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Which application answers `ecb`, and the paths it sees. Names the mount in IIS's
    /// log.
    pub fn route(&self, ecb: &Ecb) -> Route<'_> {
        let mut target = Target::read(ecb);
        let mounts = self.served.iter().map(|s| s.mount.as_deref());
        let index = match longest_mount(mounts, target.path_info()) {
            Some((index, length)) => {
                target.script_end += length;
                index
            }
            None => match self.root {
                Some(root) => root,
                None => return Route::NotFound,
            },
        };
        let served = &self.served[index];
        match &served.app {
            Err(report) => {
                let id = RequestId::assign(ecb);
                append_mount(ecb, served);
                Route::Failed {
                    detail: served.debug.then_some(report.as_str()),
                    id,
                }
            }
            Ok(_) => Route::To(Routed {
                index,
                handler: served.handler,
                target,
            }),
        }
    }
}

/// Of `mounts` (None for one that is no mount), the longest that `path_info` is under: its
/// index and its length in bytes.
pub fn longest_mount<'a>(
    mounts: impl Iterator<Item = Option<&'a str>>,
    path_info: &[u8],
) -> Option<(usize, usize)> {
    mounts
        .enumerate()
        .filter_map(|(index, mount)| {
            let mount = mount?;
            is_under(path_info, mount.as_bytes()).then_some((index, mount.len()))
        })
        .max_by_key(|&(_, length)| length)
}

/// Appends the mount (if any) to the request's entry in IIS's log, after the request id
/// (`request_id=…|mount=/blog`): for a request that an application answers,
/// [`Bridge::serve`](super::Bridge::serve) calls it; for a mount that failed to start,
/// [`Site::route`].
pub fn append_mount(ecb: &Ecb, served: &Served) {
    if let Some(mount) = &served.mount {
        ecb.append_log_parameter(&log_parameter(mount));
    }
}

/// `|mount=/blog` for IIS's log: bytes outside printable ASCII, and `%`, percent-encoded
/// (a W3C log field has no spaces).
fn log_parameter(mount: &str) -> CString {
    let mut text = String::from("|mount=");
    for &byte in mount.as_bytes() {
        if byte.is_ascii_graphic() && byte != b'%' {
            text.push(byte as char);
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    CString::new(text).expect("no NUL in a mount path")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(mounts: &[Option<&str>], path: &str) -> Option<(usize, usize)> {
        longest_mount(mounts.iter().copied(), path.as_bytes())
    }

    #[test]
    fn the_longest_whole_segment_prefix_wins() {
        let mounts = [None, Some("/blog"), Some("/blog/admin"), Some("/café")];
        assert_eq!(find(&mounts, "/blog"), Some((1, 5)));
        assert_eq!(find(&mounts, "/blog/"), Some((1, 5)));
        assert_eq!(find(&mounts, "/blog/post/1"), Some((1, 5)));
        assert_eq!(find(&mounts, "/BLOG/x"), Some((1, 5)));
        assert_eq!(find(&mounts, "/blog/admin"), Some((2, 11)));
        assert_eq!(find(&mounts, "/blog/Admin/users"), Some((2, 11)));
        assert_eq!(find(&mounts, "/blog/administrator"), Some((1, 5)));
        assert_eq!(find(&mounts, "/café/x"), Some((3, 6)));
        assert_eq!(find(&mounts, "/blogger"), None);
        assert_eq!(find(&mounts, "/"), None);
        assert_eq!(find(&mounts, ""), None);
        assert_eq!(find(&mounts, "/admin"), None);
    }

    #[test]
    fn the_log_names_the_mount_without_spaces() {
        assert_eq!(log_parameter("/blog").to_bytes(), b"|mount=/blog");
        assert_eq!(log_parameter("/café").to_bytes(), b"|mount=/caf%C3%A9");
        assert_eq!(log_parameter("/100%").to_bytes(), b"|mount=/100%25");
    }
}
