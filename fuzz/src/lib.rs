//! What the fuzz targets test: the host's HTTP parser, and a second reading of RFC 9112 to
//! compare it with.
//!
//! The host is a binary, so there is no library to depend on; its parser, `http.rs`, is
//! pure (std only, no `crate::` paths), so it is compiled here a second time as a module,
//! straight from the host's source. Nothing in the host changes for the fuzzer.

#[allow(dead_code)]
#[path = "../../src/bin/isapi-host/http.rs"]
pub mod http;

pub mod reference;
