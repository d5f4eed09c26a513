//! The command line: every option, its default, and a clear error for bad values.
//!
//! Defaults follow IIS 7+ where its behaviour is documented; where it is not, the option
//! exists so the other behaviour can be tested too, and `docs/host.md` says why the default
//! is what it is.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
usage: isapi-host [OPTIONS] [EXTENSION]

Loads an ISAPI extension (default: the isapi_wsgi library next to this program) the way
IIS does and serves it over HTTP/1.1.

Server:
  --listen ADDR            address to listen on [127.0.0.1:8080]
  --threads N              worker threads calling HttpExtensionProc [2 per CPU, at least 4]
  --idle-timeout SECS      close idle keep-alive connections after SECS [120]
  --header-timeout SECS    a request head must arrive whole within SECS of its first
                           byte, else 408 (http.sys HeaderWait) [20]; 0 = no limit
  --min-receive-rate N     a request body must arrive at N bytes/s at least, after a
                           first --header-timeout SECS, else 408 / close [240]; 0 = off
  --min-send-rate N        the client must take the response at N bytes/s at least,
                           after a first --header-timeout SECS, else close (http.sys
                           MinSendRate) [240]; 0 = off
  --max-connections N      open client connections at most; one more is answered 503
                           and closed at once [10000]
  --max-requests N         requests in flight at most (HCONN slots); one more is
                           answered 503 [4096]
  --shutdown-timeout SECS  on Ctrl-C/SIGTERM, wait at most SECS for open requests [10]
  --unload                 at shutdown, after TerminateExtension, unload the library
                           (FreeLibrary/dlclose) as IIS may, then stay alive for
                           --unload-linger SECS before exiting, so that extension code
                           still running crashes the host visibly
  --unload-linger SECS     how long to stay alive after --unload [2]
  --max-request-line N     longest request line, else 414 [8192]
  --max-header-bytes N     largest header block, else 431 [16384]
  --response-buffer N      buffer up to N bytes of output per request unless the
                           extension sets HSE_REQ_SET_FLUSH_FLAG [4194304]; 0 = no buffer
  --read-ahead N           body bytes read before HttpExtensionProc (lpbData) [49152]
  --buffered-content-length
                           add Content-Length to a fully buffered response that has no
                           framing, instead of closing the connection (unconfirmed IIS)
  --config FILE            set ISAPI_WSGI_CONFIG=FILE for the extension before loading it
  --exit-on-unhealthy      when the extension calls HSE_REQ_REPORT_UNHEALTHY, stop as an IIS
                           recycle would: no new connections, drain, TerminateExtension
  --check                  load the extension with ISAPI_WSGI_CHECK=1 set, so that it checks
                           its configuration and application and prints what it found;
                           exit 0 if GetExtensionVersion returned TRUE, else 1 (no server)

Unconfirmed IIS behaviours (see docs/host.md):
  --ecb-version X.Y        ECB dwVersion [8.0]
  --chunked-known-length   a chunked body that fits in the read-ahead gets its real length
                           in cbTotalBytes (instead of 0xFFFFFFFF)
  --read-client-on-disconnect eof|error
                           ReadClient after the client went away: TRUE with 0 bytes, or
                           FALSE with ERROR_CONNECTION_ABORTED [eof]
  --all-http-omit-content  leave Content-Length/Content-Type out of ALL_HTTP
  --continue-on-read       Expect: 100-continue: no read-ahead, and 100 Continue only at the
                           extension's first ReadClient (http.sys sends it before the
                           read-ahead)

Site model (what the extension sees):
  --vdir PATH              the application's virtual directory [/]
  --appl-md-path TEXT      APPL_MD_PATH exactly as given, e.g. /LM/W3SVC/1/Root/deep/NESTED
                           (IIS writes ROOT and the vdir as they were configured, in any
                           case) [/LM/W3SVC/1/ROOT + the vdir]
  --script-map MAP         '*' (wildcard) or '.ext' (file-extension mapping) [*]
  --allow-path-info        PATH_INFO without the script part (IIS allowPathInfo=true)
  --physical-path DIR      the application's physical directory [current directory]
  --static PATH            URLs at and below PATH (inside the vdir, e.g. /app/static) are
                           answered by the host as IIS's StaticFile handler answers them,
                           from the files below --physical-path, and never reach the
                           extension: a web.config <location> that maps StaticFile there
                           (repeatable)
  --server-name NAME       SERVER_NAME [from the Host header]
  --https                  the request arrived over TLS terminated by IIS
  --user NAME              the request was authenticated (Windows auth) as NAME
  --remote-addr ADDR       requests look as if they came from ADDR (an IPv4 or IPv6
                           address): REMOTE_ADDR and REMOTE_HOST are ADDR, REMOTE_PORT
                           stays the client's port [the client's address]
  --impersonation-token none|self|invalid
                           what HSE_REQ_GET_IMPERSONATION_TOKEN hands out: NULL, or (Windows
                           only) an impersonation token duplicated from the host's own, as
                           IIS hands the authenticated user's, or a handle that is no token
                           (SetThreadToken then fails) [none]
  --server-software TEXT   SERVER_SOFTWARE [Microsoft-IIS/10.0]
  --all-http-eol lf|crlf   line end in ALL_HTTP [lf]

Diagnostics:
  --strict                 exit non-zero at shutdown if any contract violation occurred
  --trace                  print every ISAPI call and its result
  --access-log DEST        '-' (stderr), 'off', or a file [-]
  -h, --help               this text
";

/// `--unload-linger`'s default: how long the host stays alive after unloading the library.
/// Long enough for an extension's own threads and a Python thread calling into it every
/// few milliseconds to hit unmapped code many times over; short enough for a test.
pub const UNLOAD_LINGER: Duration = Duration::from_secs(2);

/// How requests are mapped to the extension (IIS handler mapping `path` attribute).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptMap {
    /// `path="*"`: every URL under the vdir.
    Wildcard,
    /// `path="*.ext"`: URLs with a path segment ending in `.ext` (stored with the dot).
    Extension(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLog {
    Stderr,
    Off,
    File(PathBuf),
}

/// What `HSE_REQ_GET_IMPERSONATION_TOKEN` hands out (`--impersonation-token`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenChoice {
    /// NULL: the process's own identity.
    None,
    /// A duplicate of the host's own token (Windows).
    Own,
    /// A handle that is not a token, so that SetThreadToken fails (Windows).
    Invalid,
}

/// Everything the command line sets.
#[derive(Clone, Debug)]
pub struct Options {
    pub extension: PathBuf,
    pub listen: SocketAddr,
    pub threads: usize,
    pub idle_timeout: Duration,
    /// `--header-timeout`: the whole request head within this of its first byte.
    pub header_timeout: Duration,
    /// `--min-receive-rate`, bytes per second (0: off).
    pub min_receive_rate: u64,
    /// `--min-send-rate`, bytes per second (0: off).
    pub min_send_rate: u64,
    pub max_connections: usize,
    pub max_requests: u32,
    pub shutdown_timeout: Duration,
    /// `--unload`: unload the library after TerminateExtension.
    pub unload: bool,
    /// `--unload-linger`: how long the process stays alive after unloading.
    pub unload_linger: Duration,
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub response_buffer: usize,
    pub read_ahead: usize,
    pub buffered_content_length: bool,
    pub ecb_version: u32,
    pub chunked_known_length: bool,
    pub read_error_on_disconnect: bool,
    pub all_http_omit_content: bool,
    /// `--continue-on-read`: 100 Continue at the first ReadClient, with no read-ahead.
    pub continue_on_read: bool,
    pub config: Option<PathBuf>,
    pub vdir: String,
    /// `--appl-md-path`: APPL_MD_PATH as given, instead of the one derived from the vdir.
    pub appl_md_path: Option<String>,
    pub script_map: ScriptMap,
    pub allow_path_info: bool,
    pub physical_path: PathBuf,
    /// `--static`: URL paths inside the vdir served by the StaticFile emulation.
    pub static_locations: Vec<String>,
    pub server_name: Option<String>,
    pub https: bool,
    pub user: Option<String>,
    /// `--remote-addr`: the client address the extension is shown instead of the real one.
    pub remote_addr: Option<IpAddr>,
    /// `--impersonation-token`: what HSE_REQ_GET_IMPERSONATION_TOKEN hands out.
    pub impersonation_token: TokenChoice,
    pub server_software: String,
    pub all_http_crlf: bool,
    pub strict: bool,
    /// `--exit-on-unhealthy`: HSE_REQ_REPORT_UNHEALTHY stops the host like a recycle.
    pub exit_on_unhealthy: bool,
    /// `--check`: only load the extension in its check mode and report.
    pub check: bool,
    pub trace: bool,
    pub access_log: AccessLog,
}

/// What the command line asks for.
pub enum Command {
    Run(Box<Options>),
    Help,
}

/// The library built next to this program: `libisapi_wsgi.so` / `isapi_wsgi.dll`.
fn default_extension() -> PathBuf {
    let name = if cfg!(windows) {
        "isapi_wsgi.dll"
    } else if cfg!(target_os = "macos") {
        "libisapi_wsgi.dylib"
    } else {
        "libisapi_wsgi.so"
    };
    let exe = std::env::current_exe().unwrap_or_default();
    let Some(dir) = exe.parent() else {
        return PathBuf::from(name);
    };
    let beside = dir.join(name);
    // `cargo run` builds the library but only copies it next to the program when it was
    // asked for (`cargo build`); otherwise it stays in target/<profile>/deps.
    let in_deps = dir.join("deps").join(name);
    if !beside.exists() && in_deps.exists() {
        in_deps
    } else {
        beside
    }
}

fn size(name: &str, v: &str) -> Result<usize, String> {
    let (digits, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, ""),
    };
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => 1024,
        "m" | "mib" => 1024 * 1024,
        _ => {
            return Err(format!(
                "{name}: '{v}' is not a size (a number, optionally with K or M)"
            ));
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{name}: '{v}' is not a size (a number, optionally with K or M)"))
}

/// A whole number, at least `min`.
fn count(name: &str, v: &str, min: u64) -> Result<u64, String> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n >= min && *n < 1 << 40)
        .ok_or_else(|| format!("{name}: '{v}' is not a whole number of at least {min}"))
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{name}: '{v}' is not a number of seconds"))
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Options {
        extension: default_extension(),
        listen: "127.0.0.1:8080".parse().expect("valid default"),
        threads: (2 * cpus).max(4),
        idle_timeout: Duration::from_secs(120),
        header_timeout: Duration::from_secs(20),
        min_receive_rate: 240,
        min_send_rate: 240,
        max_connections: 10000,
        max_requests: 4096,
        shutdown_timeout: Duration::from_secs(10),
        unload: false,
        unload_linger: UNLOAD_LINGER,
        max_request_line: 8192,
        max_header_bytes: 16384,
        response_buffer: 4 * 1024 * 1024,
        read_ahead: 49152,
        buffered_content_length: false,
        ecb_version: 0x0008_0000,
        chunked_known_length: false,
        read_error_on_disconnect: false,
        all_http_omit_content: false,
        continue_on_read: false,
        config: None,
        vdir: "/".into(),
        appl_md_path: None,
        script_map: ScriptMap::Wildcard,
        allow_path_info: false,
        physical_path: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        static_locations: Vec::new(),
        server_name: None,
        https: false,
        user: None,
        remote_addr: None,
        impersonation_token: TokenChoice::None,
        server_software: "Microsoft-IIS/10.0".into(),
        all_http_crlf: false,
        strict: false,
        exit_on_unhealthy: false,
        check: false,
        trace: false,
        access_log: AccessLog::Stderr,
    };
    let mut extension = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => {
                let v = value()?;
                o.listen = v.parse().map_err(|_| {
                    format!("--listen: '{v}' is not an address like 127.0.0.1:8080")
                })?;
            }
            "--threads" => {
                let v = value()?;
                o.threads = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| format!("--threads: '{v}' is not a number from 1 to 1024"))?;
            }
            "--idle-timeout" => o.idle_timeout = seconds("--idle-timeout", &value()?)?,
            "--header-timeout" => o.header_timeout = seconds("--header-timeout", &value()?)?,
            "--min-receive-rate" => o.min_receive_rate = count("--min-receive-rate", &value()?, 0)?,
            "--min-send-rate" => o.min_send_rate = count("--min-send-rate", &value()?, 0)?,
            "--max-connections" => {
                o.max_connections = count("--max-connections", &value()?, 1)? as usize
            }
            "--max-requests" => {
                o.max_requests = count("--max-requests", &value()?, 1)?.min(1 << 20) as u32
            }
            "--shutdown-timeout" => o.shutdown_timeout = seconds("--shutdown-timeout", &value()?)?,
            "--unload" => o.unload = true,
            "--unload-linger" => o.unload_linger = seconds("--unload-linger", &value()?)?,
            "--max-request-line" => {
                o.max_request_line = size("--max-request-line", &value()?)?.max(16)
            }
            "--max-header-bytes" => {
                o.max_header_bytes = size("--max-header-bytes", &value()?)?.max(16)
            }
            "--response-buffer" => o.response_buffer = size("--response-buffer", &value()?)?,
            "--read-ahead" => {
                o.read_ahead = size("--read-ahead", &value()?)?.min(u32::MAX as usize - 1)
            }
            "--buffered-content-length" => o.buffered_content_length = true,
            "--ecb-version" => {
                let v = value()?;
                let parsed = v.split_once('.').and_then(|(major, minor)| {
                    Some((major.parse::<u16>().ok()?, minor.parse::<u16>().ok()?))
                });
                let (major, minor) = parsed
                    .ok_or_else(|| format!("--ecb-version: '{v}' is not MAJOR.MINOR, like 8.0"))?;
                o.ecb_version = (major as u32) << 16 | minor as u32;
            }
            "--chunked-known-length" => o.chunked_known_length = true,
            "--continue-on-read" => o.continue_on_read = true,
            "--read-client-on-disconnect" => {
                o.read_error_on_disconnect = match value()?.as_str() {
                    "eof" => false,
                    "error" => true,
                    v => {
                        return Err(format!(
                            "--read-client-on-disconnect: '{v}' must be eof or error"
                        ));
                    }
                }
            }
            "--all-http-omit-content" => o.all_http_omit_content = true,
            "--config" => o.config = Some(PathBuf::from(value()?)),
            "--vdir" => o.vdir = url_path("--vdir", value()?)?,
            "--static" => o.static_locations.push(url_path("--static", value()?)?),
            "--appl-md-path" => {
                let v = value()?;
                if !v.starts_with("/LM/") || v.contains(['?', '#', '\\']) {
                    return Err(format!(
                        "--appl-md-path: '{v}' must be a metabase path like /LM/W3SVC/1/Root/app"
                    ));
                }
                o.appl_md_path = Some(v);
            }
            "--script-map" => {
                let v = value()?;
                o.script_map = match v.as_str() {
                    "*" => ScriptMap::Wildcard,
                    ext if ext.starts_with('.')
                        && ext.len() > 1
                        && !ext[1..].contains(['.', '/', '*']) =>
                    {
                        ScriptMap::Extension(ext.to_string())
                    }
                    ext if ext.starts_with("*.")
                        && ext.len() > 2
                        && !ext[2..].contains(['.', '/', '*']) =>
                    {
                        ScriptMap::Extension(ext[1..].to_string())
                    }
                    _ => {
                        return Err(format!(
                            "--script-map: '{v}' must be '*' or a file extension like .wsgi"
                        ));
                    }
                };
            }
            "--allow-path-info" => o.allow_path_info = true,
            "--physical-path" => o.physical_path = PathBuf::from(value()?),
            "--server-name" => o.server_name = Some(value()?),
            "--https" => o.https = true,
            "--user" => o.user = Some(value()?),
            "--remote-addr" => {
                let v = value()?;
                o.remote_addr = Some(v.parse().map_err(|_| {
                    format!(
                        "--remote-addr: '{v}' is not an IPv4 or IPv6 address (like 192.0.2.7 \
                         or 2001:db8::7; no port, brackets or host name)"
                    )
                })?);
            }
            "--impersonation-token" => {
                o.impersonation_token = match value()?.as_str() {
                    "none" => TokenChoice::None,
                    "self" if cfg!(windows) => TokenChoice::Own,
                    "invalid" if cfg!(windows) => TokenChoice::Invalid,
                    v @ ("self" | "invalid") => {
                        return Err(format!(
                            "--impersonation-token {v} needs Windows (there are no tokens here)"
                        ));
                    }
                    v => {
                        return Err(format!(
                            "--impersonation-token: '{v}' must be none, self or invalid"
                        ));
                    }
                }
            }
            "--server-software" => o.server_software = value()?,
            "--all-http-eol" => {
                o.all_http_crlf = match value()?.as_str() {
                    "lf" => false,
                    "crlf" => true,
                    v => return Err(format!("--all-http-eol: '{v}' must be lf or crlf")),
                }
            }
            "--strict" => o.strict = true,
            "--exit-on-unhealthy" => o.exit_on_unhealthy = true,
            "--check" => o.check = true,
            "--trace" => o.trace = true,
            "--access-log" => {
                o.access_log = match value()?.as_str() {
                    "-" => AccessLog::Stderr,
                    "off" => AccessLog::Off,
                    path => AccessLog::File(PathBuf::from(path)),
                }
            }
            f if f.starts_with('-') && f.len() > 1 => {
                return Err(format!("unknown option {f} (see --help)"));
            }
            _ => {
                if extension.replace(PathBuf::from(&arg)).is_some() {
                    return Err(format!(
                        "more than one EXTENSION given ('{arg}'); see --help"
                    ));
                }
            }
        }
    }
    if let Some(e) = extension {
        o.extension = e;
    }
    if let Some(outside) = o.static_locations.iter().find(|s| !inside(s, &o.vdir)) {
        return Err(format!(
            "--static: '{outside}' is not inside the vdir '{}'",
            o.vdir
        ));
    }
    Ok(Command::Run(Box::new(o)))
}

/// A `--vdir` or `--static` value: an absolute URL path without dot-segments, query,
/// fragment or backslash; trailing slashes removed.
fn url_path(flag: &str, v: String) -> Result<String, String> {
    if !v.starts_with('/')
        || v.contains(['?', '#', '\\'])
        || v.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(format!(
            "{flag}: '{v}' must be a URL path starting with '/', like /app"
        ));
    }
    Ok(if v.len() > 1 {
        v.trim_end_matches('/').to_string()
    } else {
        v
    })
}

/// Whether URL path `path` is strictly below `vdir` (whole segments, letter case ignored).
fn inside(path: &str, vdir: &str) -> bool {
    let prefix = vdir.trim_end_matches('/');
    path.len() > prefix.len() + 1
        && path.as_bytes()[prefix.len()] == b'/'
        && path[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Command::Run(o) => Ok(*o),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn options_parse() {
        let o = run(&[
            "--listen=127.0.0.1:9",
            "--vdir",
            "/app/",
            "--script-map",
            "*.wsgi",
            "--response-buffer",
            "64k",
            "x.so",
        ])
        .unwrap();
        assert_eq!(o.listen.port(), 9);
        assert_eq!(o.vdir, "/app");
        assert_eq!(o.script_map, ScriptMap::Extension(".wsgi".into()));
        assert_eq!(o.response_buffer, 65536);
        assert_eq!(o.extension, PathBuf::from("x.so"));
        assert!(!o.unload);
        assert_eq!(o.unload_linger, UNLOAD_LINGER);
        let o = run(&["--unload", "--unload-linger=0.5"]).unwrap();
        assert!(o.unload);
        assert_eq!(o.unload_linger, Duration::from_millis(500));
        let o = run(&[]).unwrap();
        assert_eq!(o.header_timeout, Duration::from_secs(20));
        assert_eq!((o.min_receive_rate, o.min_send_rate), (240, 240));
        assert_eq!((o.max_connections, o.max_requests), (10000, 4096));
        let o = run(&[
            "--header-timeout=1.5",
            "--min-receive-rate=0",
            "--min-send-rate=1000",
            "--max-connections=7",
            "--max-requests=3",
        ])
        .unwrap();
        assert_eq!(o.header_timeout, Duration::from_millis(1500));
        assert_eq!((o.min_receive_rate, o.min_send_rate), (0, 1000));
        assert_eq!((o.max_connections, o.max_requests), (7, 3));
    }

    #[test]
    fn bad_values_are_named() {
        assert!(run(&["--threads", "0"]).unwrap_err().contains("--threads"));
        assert!(run(&["--vdir", "app"]).unwrap_err().contains("--vdir"));
        assert!(run(&["--static", "s"]).unwrap_err().contains("--static"));
        assert!(
            run(&["--static", "/other/static", "--vdir", "/app"])
                .unwrap_err()
                .contains("--static: '/other/static' is not inside the vdir '/app'")
        );
        assert!(run(&["--vdir", "/app", "--static", "/app"]).is_err());
        assert!(run(&["--vdir", "/app", "--static", "/appx/s"]).is_err());
        assert_eq!(
            run(&["--vdir", "/Deep/Nested", "--static", "/deep/nested/static/"])
                .unwrap()
                .static_locations,
            ["/deep/nested/static"]
        );
        assert_eq!(
            run(&["--static", "/static", "--static", "/media"])
                .unwrap()
                .static_locations,
            ["/static", "/media"]
        );
        assert!(
            run(&["--appl-md-path", "ROOT/app"])
                .unwrap_err()
                .contains("--appl-md-path")
        );
        let o = run(&["--appl-md-path", "/LM/W3SVC/1/Root/Deep"]).unwrap();
        assert_eq!(o.appl_md_path.as_deref(), Some("/LM/W3SVC/1/Root/Deep"));
        assert!(
            run(&["--script-map", "wsgi"])
                .unwrap_err()
                .contains("--script-map")
        );
        assert!(run(&["--bogus"]).unwrap_err().contains("--bogus"));
        for (flag, bad) in [
            ("--max-connections", "0"),
            ("--max-requests", "-1"),
            ("--min-send-rate", "fast"),
            ("--header-timeout", "soon"),
        ] {
            let e = run(&[flag, bad]).unwrap_err();
            assert!(e.starts_with(&format!("{flag}: '{bad}'")), "{e}");
        }
        assert!(run(&["--listen"]).unwrap_err().contains("needs a value"));
        assert!(run(&["a", "b"]).unwrap_err().contains("more than one"));
        for bad in [
            "localhost",
            "192.0.2.7:80",
            "[::1]",
            "fe80::1%eth0",
            "1.2.3",
            "",
        ] {
            let e = run(&["--remote-addr", bad]).unwrap_err();
            assert!(
                e.contains(&format!(
                    "--remote-addr: '{bad}' is not an IPv4 or IPv6 address"
                )),
                "{e}"
            );
        }
        assert_eq!(
            run(&["--remote-addr", "2001:DB8:0::7"])
                .unwrap()
                .remote_addr,
            Some("2001:db8::7".parse().unwrap())
        );
        assert_eq!(run(&[]).unwrap().remote_addr, None);
        assert!(
            run(&["--impersonation-token", "user"])
                .unwrap_err()
                .contains("must be none, self or invalid")
        );
        assert_eq!(
            run(&["--impersonation-token", "none"])
                .unwrap()
                .impersonation_token,
            TokenChoice::None
        );
        for (name, choice) in [
            ("self", TokenChoice::Own),
            ("invalid", TokenChoice::Invalid),
        ] {
            if cfg!(windows) {
                assert_eq!(
                    run(&["--impersonation-token", name])
                        .unwrap()
                        .impersonation_token,
                    choice
                );
            } else {
                assert!(
                    run(&["--impersonation-token", name])
                        .unwrap_err()
                        .contains("needs Windows")
                );
            }
        }
    }
}
