//! `environ['isapi.server_variable']`: any IIS server variable of this request, read on
//! demand.
//!
//! The environ carries what PEP 3333 and CGI name; IIS knows much more about a request
//! (`CERT_SUBJECT` and the other client-certificate fields, `HTTPS_KEYSIZE`, `LOCAL_ADDR`,
//! `INSTANCE_ID`, `APP_POOL_ID`, ...). Reading them all for every request would cost every
//! request; instead the application calls `server_variable(name)` for the few it wants:
//!
//! * `name` must be a `str` of token characters (RFC 9110 §5.6.2: letters, digits and
//!   ``!#$%&'*+-.^_`|~``), as every server variable name is (`HEADER_X-Auth` included);
//!   anything else raises `TypeError` (not a `str`) or `ValueError`;
//! * the answer is the value as a native string (its bytes decoded as latin-1, like every
//!   environ value), or `None` when the server has no such variable or no value for it;
//! * `UNICODE_*` names are refused with `ValueError`: their values are UTF-16, and the
//!   narrow name gives the same variable. (What needs the exact bytes of the URL is in the
//!   environ already: `PATH_INFO`, `REQUEST_URI`.)
//!
//! The object is lent for the request, like `wsgi.input` and `start_response`
//! ([`NativeType::lend`](crate::python::NativeType::lend)): kept and called after its request
//! ended, it raises `ValueError`; the ECB behind it is never touched then.
use std::ffi::CString;
use std::sync::Arc;

use crate::isapi::ecb::Ecb;
use crate::isapi::token::is_token_byte;
use crate::python::{Args, Exception, Gil, Kind, Native, PyErr, PyRef, PyResult};

/// The request's server variables, for Python.
pub struct ServerVariables {
    ecb: Arc<Ecb>,
}

impl ServerVariables {
    /// The server variables of the request `ecb`.
    pub fn new(ecb: Arc<Ecb>) -> ServerVariables {
        ServerVariables { ecb }
    }
}

/// Longest name accepted (IIS's own are far shorter; `HEADER_<name>` is bounded by the
/// request's header size anyway).
const NAME_MAX: usize = 1024;

/// Why `name` is not a server variable name we look up, or None if it is one.
pub fn name_problem(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a server variable name cannot be empty");
    }
    if name.len() > NAME_MAX {
        return Some("the server variable name is too long");
    }
    if !name.iter().all(|&b| is_token_byte(b)) {
        return Some(
            "a server variable name is made of token characters (letters, digits, -_.!#$%&'*+^`|~)",
        );
    }
    if name.len() >= 8 && name[..8].eq_ignore_ascii_case(b"UNICODE_") {
        return Some(
            "UNICODE_ server variables are not available; ask for the name without UNICODE_",
        );
    }
    None
}

impl ServerVariables {
    /// `server_variable(name)`.
    fn lookup<'py>(&self, gil: Gil<'py>, args: &Args<'py>) -> PyResult<'py, PyRef<'py>> {
        let type_error = |message: &str| PyErr::new(gil, Exception::TypeError, message);
        if args.len() != 1 || args.has_keywords_besides(&[]) {
            return Err(type_error(
                "server_variable() takes exactly one argument, the variable's name",
            ));
        }
        let name = args.get(0).expect("one argument");
        if name.kind() != Kind::Str {
            return Err(type_error("server_variable() name must be a str"));
        }
        // A str with a character beyond latin-1 has no token bytes: the same ValueError.
        let bytes = name.latin1_bytes().unwrap_or_else(|_| vec![0]);
        if let Some(problem) = name_problem(&bytes) {
            return Err(PyErr::new(gil, Exception::ValueError, problem));
        }
        let name = CString::new(bytes).expect("token bytes have no NUL");
        let mut value = Vec::new();
        match self.ecb.server_variable(&name, &mut value) {
            Ok(true) => gil.latin1(&value),
            Ok(false) => Ok(gil.none()),
            Err(error) => Err(PyErr::new(
                gil,
                Exception::OSError,
                &format!(
                    "reading the server variable {} failed ({error})",
                    name.to_string_lossy()
                ),
            )),
        }
    }
}

impl Native for ServerVariables {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.ServerVariable";
    const CALLABLE: bool = true;

    fn call<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        self.lookup(gil, &args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_tokens_and_not_unicode() {
        assert_eq!(name_problem(b"LOCAL_ADDR"), None);
        assert_eq!(name_problem(b"HEADER_X-Auth"), None);
        assert_eq!(name_problem(b"CERT_SUBJECT"), None);
        assert!(name_problem(b"").is_some());
        assert!(name_problem(b"HTTP HOST").is_some());
        assert!(name_problem(b"A\0B").is_some());
        assert!(name_problem(b"caf\xe9").is_some());
        assert!(name_problem(b"UNICODE_URL").is_some());
        assert!(name_problem(b"unicode_url").is_some());
        assert!(name_problem(&[b'A'; NAME_MAX + 1]).is_some());
    }
}
