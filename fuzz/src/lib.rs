//! What the fuzz targets test: the host's HTTP parser, and a second reading of RFC 9112 to
//! compare it with.
//!
//! The host is a binary, so there is no library to depend on; its parser, `http.rs`, is
//! uses std, `isapi_wsgi`'s token rule and, of the host's own modules, only `leftovers` (the
//! take/keep functions for its thread's spare header buffers), so the two are compiled here
//! a second time as modules, straight from the host's source. Nothing in the host changes for the fuzzer.

#[allow(dead_code)]
#[path = "../../src/bin/isapi-host/http.rs"]
pub mod http;

#[path = "../../src/bin/isapi-host/leftovers.rs"]
mod leftovers;

pub mod reference;
