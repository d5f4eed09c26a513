//! The simple handler: the WSGI application runs on the IIS thread that called
//! `HttpExtensionProc`, and the request ends when that call returns its status. No
//! DONE_WITH_SESSION is ever sent (that is only for requests answered with
//! HSE_STATUS_PENDING; the old isapi-wsgi sent it here and then returned SUCCESS).
use std::sync::Arc;

use super::status_for;
use crate::isapi::ecb::Ecb;
use crate::wsgi::Bridge;
use crate::wsgi::mounts::Routed;

/// Answers the request on this thread and returns the HSE_STATUS_* for HttpExtensionProc.
pub fn handle(bridge: &Bridge, ecb: Ecb, routed: &Routed) -> u32 {
    // IIS's threads are pooled and serve many requests: each keeps its Python thread state.
    bridge.keep_thread_state();
    let ecb = Arc::new(ecb);
    status_for(bridge.serve(&ecb, routed))
}
