//! The ISAPI contract as Rust types: bindgen's translation of `headers/httpext.h`.
//!
//! Nothing here is hand-written: structs such as [`EXTENSION_CONTROL_BLOCK`] keep their
//! C names so that they can be looked up in Microsoft's documentation. Callback types are
//! `Option<unsafe extern "C" fn ...>`; on x86_64 "C" and "system" are the same convention.
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code
)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/httpext.rs"));
