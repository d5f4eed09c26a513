//! `[health] path`: a status page answered by the extension itself, for load balancers and
//! monitoring. Off unless `path` is set.
//!
//! ```ini
//! [health]
//! path = /_isapi/health     ; below the application, as its PATH_INFO would be
//! allow = 127.0.0.1, ::1    ; who may ask (addresses or networks); the default
//! ```
//!
//! The page is answered on the thread IIS called us on, before the handler, without calling
//! the application and without the GIL: everything in it comes from [`crate::stats`] and
//! from what start-up recorded. So it answers while every worker is busy, while a request
//! holds the GIL, and when the application failed to start. A client outside `allow`
//! (judged by REMOTE_ADDR, the connection's own address: `X-Forwarded-For` is not believed
//! here) gets a plain 404, as if there were no such page.
//!
//! The answer is JSON, `200 OK` when the status is `ok` and no `app_offline.htm` is up,
//! else `503 Service Unavailable` (so a load balancer takes the server out of rotation):
//!
//! ```json
//! {"status":"ok","maintenance":false,"uptime_seconds":3600,"requests_served":1234,
//!  "in_flight":2,"queued":0,"errors_5xx":1,"python":"3.12.1","app":"mysite.wsgi:application",
//!  "handler":"threadpool","pid":4242}
//! ```
//!
//! Matching costs nothing for other requests: the page's path is compared with the end of
//! the ECB's PATH_INFO first, and only a request whose path ends so is looked at closely
//! (the same SCRIPT_NAME/PATH_INFO split as the environ's).
use std::net::IpAddr;

use crate::isapi::ecb::Ecb;
use crate::page::{Body, Page};
use crate::request_id::RequestId;
use crate::stats::{Phase, STATS};
use crate::wsgi::environ;
use crate::wsgi::proxy::{Cidr, parse_networks};

/// The default of `[health] allow`: this machine only.
pub const DEFAULT_ALLOW: &str = "127.0.0.1, ::1";

/// The `[health]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// The page's path below the application, e.g. `/_isapi/health`.
    pub path: String,
    /// Who may see it.
    pub allow: Vec<Cidr>,
}

impl HealthConfig {
    /// `path`: starts with `/`, printable ASCII without spaces, `?` or `#`.
    pub fn parse_path(value: &str) -> Result<String, String> {
        let fine = value.starts_with('/')
            && value.len() > 1
            && value
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#');
        if fine {
            Ok(value.to_string())
        } else {
            Err(format!(
                "`{value}` is not a URL path (e.g. /_isapi/health: a `/`, then printable ASCII without spaces, ? or #)"
            ))
        }
    }

    /// `allow`: a list of addresses or networks, not empty.
    pub fn parse_allow(value: &str) -> Result<Vec<Cidr>, String> {
        let allow = parse_networks(value)?;
        if allow.is_empty() {
            return Err("give at least one address or network (e.g. 127.0.0.1, ::1)".into());
        }
        Ok(allow)
    }
}

/// The health page, with what start-up learnt.
pub struct Health {
    config: HealthConfig,
    /// `module:attribute`, or `demo`.
    app: String,
    handler: &'static str,
    /// `3.12.1`; None when Python did not start.
    python: Option<String>,
}

impl Health {
    pub fn new(
        config: HealthConfig,
        app: String,
        handler: &'static str,
        python: Option<String>,
    ) -> Health {
        Health {
            config,
            app,
            handler,
            python,
        }
    }

    /// Answers the request if it asks for the health page; None for every other request.
    /// `queued` and `maintenance` are read by the caller (they belong to the handler and to
    /// [`crate::maintenance`]).
    pub fn answer(&self, ecb: &Ecb, maintenance: bool) -> Option<u32> {
        if !self.asks_for_it(ecb) {
            return None;
        }
        let id = RequestId::assign(ecb);
        if !self.allowed(ecb) {
            let mut page = Page::not_found();
            page.request_id = Some(id.to_string());
            return Some(page.send(ecb, &id));
        }
        let snapshot = STATS.snapshot();
        let healthy = snapshot.phase == Phase::Ok && !maintenance;
        let json = format!(
            "{{\"status\":\"{}\",\"maintenance\":{maintenance},\"uptime_seconds\":{},\
             \"requests_served\":{},\"in_flight\":{},\"queued\":{},\"errors_5xx\":{},\
             \"python\":{},\"app\":{},\"handler\":\"{}\",\"pid\":{}}}\n",
            snapshot.phase.name(),
            snapshot.uptime.as_secs(),
            snapshot.served,
            snapshot.in_flight,
            snapshot.queued,
            snapshot.server_errors,
            self.python.as_deref().map_or("null".into(), json_string),
            json_string(&self.app),
            self.handler,
            std::process::id(),
        );
        let status = if healthy {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        let body = Body {
            content_type: "application/json",
            bytes: json.into_bytes(),
            no_store: true,
        };
        Some(Page::with_body(status, body).send(ecb, &id))
    }

    /// Whether the request's path below the application is the page's path (ASCII case
    /// ignored, as IIS does for URLs).
    fn asks_for_it(&self, ecb: &Ecb) -> bool {
        let wanted = self.config.path.as_bytes();
        let info = ecb.path_info();
        let ends_so = info.len() >= wanted.len()
            && info[info.len() - wanted.len()..].eq_ignore_ascii_case(wanted);
        ends_so && environ::path_below_application(ecb).eq_ignore_ascii_case(wanted)
    }

    fn allowed(&self, ecb: &Ecb) -> bool {
        let mut address = Vec::with_capacity(48);
        if !matches!(ecb.server_variable(c"REMOTE_ADDR", &mut address), Ok(true)) {
            return false;
        }
        let parsed = std::str::from_utf8(&address)
            .ok()
            .and_then(|text| text.parse::<IpAddr>().ok());
        parsed.is_some_and(|address| self.config.allow.iter().any(|n| n.contains(address)))
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_allow_lists() {
        assert_eq!(
            HealthConfig::parse_path("/_isapi/health"),
            Ok("/_isapi/health".into())
        );
        for bad in ["", "/", "health", "/a b", "/a?b", "/caf\u{e9}"] {
            assert!(HealthConfig::parse_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(HealthConfig::parse_allow(DEFAULT_ALLOW).unwrap().len(), 2);
        assert!(HealthConfig::parse_allow(" ").is_err());
        assert!(HealthConfig::parse_allow("10.0.0.0/99").is_err());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
