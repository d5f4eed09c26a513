//! isapi_wsgi: an ISAPI extension that runs a Python WSGI application.
pub mod isapi;
pub mod sys;
