//! The request's Windows identity, for applications that authorise by it:
//!
//! * `isapi.logon_user`: the `LOGON_USER` server variable, the Windows account the request
//!   runs as (after IIS mapped the authenticated user; environ.rs sets it, beside
//!   `REMOTE_USER`, only for authenticated requests);
//! * `isapi.user_sid`: that account's SID (`S-1-5-21-…`), from the request's impersonation
//!   token (`HSE_REQ_GET_IMPERSONATION_TOKEN`, `GetTokenInformation(TokenUser)`);
//! * `isapi.groups`: a callable; `groups()` returns the names of the token's groups
//!   (`DOMAIN\Name`, or the SID string for one without a name), read when called, since
//!   naming a domain group may ask a domain controller. Only groups that count for access
//!   are listed: enabled, not deny-only, and not the logon session's SID.
//!
//! So an application can check an AD group without an LDAP round trip:
//! `"CORP\\Web Editors" in environ["isapi.groups"]()`.
//!
//! The two token entries exist only on Windows, and only when the server gives a token
//! (IIS always does: the authenticated user's, or the anonymous account's); off Windows
//! there are no tokens, and the keys are absent. `isapi.groups` is lent for the request,
//! like `isapi.server_variable`: kept and called after its request ended, it raises
//! `ValueError` (the token is the server's, valid only until the request ends).
use std::sync::Arc;

use crate::isapi::ecb::Ecb;
use crate::python::{Args, Exception, Gil, Native, PyErr, PyRef, PyResult};
use crate::sys;

/// The identity of one request: its token's user SID, and its groups on demand.
pub struct Identity {
    ecb: Arc<Ecb>,
    /// The user's SID as a string.
    pub user_sid: String,
}

impl Identity {
    /// The identity of `ecb`'s request; None off Windows, and when the server gives no
    /// token or its user cannot be read.
    pub fn of(ecb: &Arc<Ecb>) -> Option<Identity> {
        if !sys::HAS_TOKENS {
            return None;
        }
        let token = ecb.impersonation_token();
        if token.is_null() {
            return None;
        }
        let user_sid = sys::token_user_sid(token).ok()?;
        Some(Identity {
            ecb: ecb.clone(),
            user_sid,
        })
    }

    /// `groups()`: the token's group names, as a list.
    fn groups<'py>(&self, gil: Gil<'py>, args: &Args<'py>) -> PyResult<'py, PyRef<'py>> {
        if !args.is_empty() || args.has_keywords_besides(&[]) {
            return Err(PyErr::new(
                gil,
                Exception::TypeError,
                "groups() takes no arguments",
            ));
        }
        let names = sys::token_groups(self.ecb.impersonation_token()).map_err(|code| {
            PyErr::new(
                gil,
                Exception::OSError,
                &format!("reading the request's groups failed (Windows error {code})"),
            )
        })?;
        let list = gil.list()?;
        for name in &names {
            list.list_append(&gil.str(name)?)?;
        }
        Ok(list)
    }
}

impl Native for Identity {
    const NAME: &'static std::ffi::CStr = c"isapi_wsgi.Groups";
    const CALLABLE: bool = true;

    fn call<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        _this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        self.groups(gil, &args)
    }
}
