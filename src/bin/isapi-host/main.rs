//! `isapi-host`: loads an ISAPI extension exactly as IIS does and serves it over HTTP/1.1,
//! checking the ISAPI contract as it goes.
//!
//! How a request flows, module by module:
//!
//! 1. [`server`] accepts connections; worker threads take ready ones from the [`poller`]
//!    and read request heads off them ([`conn`], parsed by [`http`]); [`workers`] keeps
//!    `--threads` of them free while others wait for slow clients inside a call.
//! 2. [`exchange`] maps each request onto the site ([`vars`]), pre-reads the body, builds
//!    the ECB, and calls the [`extension`]'s `HttpExtensionProc`; a URL in a `--static`
//!    location is answered by [`staticfile`] instead, as IIS's StaticFile handler would.
//! 3. The extension calls back through the ECB ([`callbacks`]): server variables
//!    ([`vars`]), body reads, writes and headers ([`response`]), ServerSupportFunction.
//! 4. The request ends on return, or on `HSE_REQ_DONE_WITH_SESSION` after
//!    `HSE_STATUS_PENDING` ([`exchange`]); [`checker`] reports every broken rule,
//!    [`accesslog`] logs it. Its header buffers, and the retained part of an older request
//!    that its slot lets go of, are kept on the thread for its next request ([`leftovers`]).
//!
//! The edges run one way: `server -> exchange -> {conn, response, vars, staticfile}`,
//! `callbacks -> exchange`, `vars -> staticfile -> response`, `{http, exchange} ->
//! leftovers`; all of them share the [`host`] state.
//!
//! The host depends on `isapi_wsgi::isapi` (the contract, and its token rule) and
//! `isapi_wsgi::sys` (loading libraries) only, never on the Python bridge: it loads any
//! ISAPI extension.
mod accesslog;
mod callbacks;
mod checker;
mod cli;
mod conn;
mod exchange;
mod extension;
mod host;
mod http;
mod leftovers;
mod os;
mod poller;
mod response;
mod server;
mod staticfile;
mod vars;
mod workers;

use std::process::ExitCode;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Run(o)) => *o,
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("isapi-host: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(config) = &options.config {
        if !config.is_file() {
            eprintln!("isapi-host: --config {}: no such file", config.display());
            return ExitCode::from(2);
        }
        let absolute = std::path::absolute(config).unwrap_or_else(|_| config.clone());
        // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
        unsafe { std::env::set_var("ISAPI_WSGI_CONFIG", absolute) };
    }
    if options.check {
        return check(&options.extension);
    }
    let extension = match extension::Extension::load(&options.extension) {
        Ok(e) => e,
        Err(message) => {
            eprintln!("isapi-host: {message}");
            return ExitCode::from(1);
        }
    };
    match server::run(options, extension) {
        Ok(status) => ExitCode::from(status as u8),
        Err(e) => {
            eprintln!("isapi-host: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--check`: loads the extension in its check mode (`ISAPI_WSGI_CHECK=1`, read by the
/// extension in GetExtensionVersion; an ISAPI extension has no other way in), lets it report,
/// calls TerminateExtension, and exits 0 if GetExtensionVersion returned TRUE, else 1.
fn check(path: &std::path::Path) -> ExitCode {
    // SAFETY: no other thread exists yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("ISAPI_WSGI_CHECK", "1") };
    match extension::Extension::load(path) {
        Ok(extension) => {
            extension.terminate();
            eprintln!(
                "isapi-host: --check: {} started; GetExtensionVersion returned TRUE",
                extension.path().display()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("isapi-host: --check: {message}");
            ExitCode::from(1)
        }
    }
}
