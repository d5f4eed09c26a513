//! Shared helpers for the integration tests: start the real `isapi-host` on a free
//! loopback port, talk to it with real clients (raw TCP, curl, Python's http.client), and
//! stop it with SIGTERM to collect its exit status and everything it printed.
//!
//! Any test file can use it with `mod common;`. The usual shape:
//!
//! ```ignore
//! let host = common::Host::start(&common::test_extension(), &["--strict"]);
//! let response = common::get(host.addr, "/hello");
//! assert_eq!(response.status, 200);
//! let stopped = host.stop();
//! assert!(stopped.status.success(), "{}", stopped.stderr);
//! ```
//!
//! The WSGI bridge's tests pass their own extension (the built `isapi_wsgi` library, see
//! [`bridge_library`]) and `--config FILE` instead.
#![allow(dead_code)]

pub mod hostile;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `isapi-host` binary cargo built for this test run.
pub fn host_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_isapi-host"))
}

/// `target/<profile>`, derived from the test binary (`target/<profile>/deps/NAME-HASH`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf()
}

/// The Rust test extension (`examples/test-extension`), which `cargo test` builds.
pub fn test_extension() -> PathBuf {
    let name = if cfg!(windows) {
        "test_extension.dll"
    } else {
        "libtest_extension.so"
    };
    let path = target_dir().join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test` (it builds examples)",
        path.display()
    );
    path
}

/// The repository's tests/apps directory: the WSGI apps the bridge's tests serve.
pub fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("apps")
}

/// A new directory `isapi-wsgi-{label}-{pid}-{n}` in the temp directory, where `n` counts
/// the calls in this process: each call gets its own.
pub fn scratch_dir(label: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("isapi-wsgi-{label}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The test venv with the frameworks and applications the tests serve (Flask, Django,
/// Trac, Mercurial), made by `.ci/setup`: `$ISAPI_WSGI_TEST_VENV`, else target/test-venv.
pub fn test_venv() -> PathBuf {
    let venv = std::env::var_os("ISAPI_WSGI_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("test-venv")
        });
    assert!(
        venv.join("bin").join("python").exists(),
        "no test venv at {}: run `bash .ci/setup`",
        venv.display()
    );
    venv
}

/// The isapi_wsgi library built next to the host (the host's default EXTENSION).
///
/// `cargo test` builds the library into `target/<profile>/deps/` but, unlike `cargo build`,
/// does not copy it next to the host; without this step a plain `cargo test` would run the
/// host tests against whatever an earlier `cargo build` left there. So the newer build is
/// copied up first (once per test binary; through a temporary name, so a host that loads
/// the library never sees half a file).
pub fn bridge_library() -> PathBuf {
    static FRESH: std::sync::Once = std::sync::Once::new();
    let name = if cfg!(windows) {
        "isapi_wsgi.dll"
    } else {
        "libisapi_wsgi.so"
    };
    let library = target_dir().join(name);
    let built = target_dir().join("deps").join(name);
    FRESH.call_once(|| {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        if let Some(built_at) = modified(&built)
            && modified(&library).is_none_or(|at| at < built_at)
        {
            let partial = library.with_extension(format!("partial-{}", std::process::id()));
            std::fs::copy(&built, &partial).expect("copy the library next to the host");
            std::fs::rename(&partial, &library).expect("rename the copied library");
        }
    });
    library
}

/// How to run the host: the `isapi-host` cargo built for this test run (the default), or
/// another build of it, e.g. the Windows one under wine ([`Launch::wine`]).
#[derive(Clone, Debug)]
pub struct Launch {
    /// The program and its leading arguments; the host's options follow.
    pub command: Vec<std::ffi::OsString>,
    /// What [`Host::stop`] sends (wine turns SIGINT into a console Ctrl-C event).
    #[cfg(unix)]
    pub stop_signal: i32,
    /// How long to wait for the host to listen (wine's first start creates its prefix).
    pub startup: Duration,
}

impl Launch {
    pub fn native() -> Launch {
        Launch {
            command: vec![host_binary().into()],
            #[cfg(unix)]
            stop_signal: libc::SIGTERM,
            startup: Duration::from_secs(20),
        }
    }

    /// The Windows build `exe` (isapi-host.exe) under wine; stopped with Ctrl-C.
    #[cfg(unix)]
    pub fn wine(exe: &Path) -> Launch {
        Launch {
            command: vec!["wine".into(), exe.into()],
            stop_signal: libc::SIGINT,
            startup: Duration::from_secs(180),
        }
    }

    /// The native host, stopped with SIGINT (Ctrl-C) instead of SIGTERM.
    #[cfg(unix)]
    pub fn native_ctrl_c() -> Launch {
        Launch {
            stop_signal: libc::SIGINT,
            ..Launch::native()
        }
    }
}

/// A running `isapi-host`. Dropping it kills the process; [`Host::stop`] ends it properly.
pub struct Host {
    child: Option<Child>,
    launch: Launch,
    /// Where it listens (127.0.0.1 and a free port).
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

/// How the host ended.
pub struct Stopped {
    pub status: ExitStatus,
    /// Everything it wrote to stderr (and stdout): log lines, traces, violations.
    pub stderr: String,
}

impl Stopped {
    /// Asserts a clean end: exit status 0 and the host's closing line
    /// `stopped; 0 contract violation(s)`.
    pub fn assert_clean(&self) {
        assert!(
            self.status.success(),
            "isapi-host failed ({}):\n{}",
            self.status,
            self.stderr
        );
        assert!(
            self.stderr.contains("stopped; 0 contract violation(s)"),
            "{}",
            self.stderr
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind :0")
        .local_addr()
        .expect("local addr")
        .port()
}

impl Host {
    /// Starts `isapi-host ARGS... EXTENSION` on a free loopback port and waits until it
    /// accepts connections. Panics (with the host's output) if it does not start.
    pub fn start(extension: &Path, args: &[&str]) -> Host {
        Host::start_with_env(extension, args, &[])
    }

    /// As [`Host::start`], with extra environment variables for the host process.
    pub fn start_with_env(extension: &Path, args: &[&str], env: &[(&str, &str)]) -> Host {
        Host::launch(&Launch::native(), extension, args, env)
    }

    /// Starts the host as `launch` says, with `args`, EXTENSION and extra environment.
    pub fn launch(launch: &Launch, extension: &Path, args: &[&str], env: &[(&str, &str)]) -> Host {
        for _ in 0..3 {
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut command = Command::new(&launch.command[0]);
            command
                .args(&launch.command[1..])
                .arg("--listen")
                .arg(addr.to_string())
                .args(args)
                .arg(extension)
                .envs(env.iter().copied());
            if let Some(host) = Host::spawn(launch, addr, command) {
                return host;
            }
        }
        panic!("could not find a free port for isapi-host");
    }

    /// Starts the native host with exactly `args`: no EXTENSION and no `--listen` are
    /// added, so the host's defaults apply. It must come to listen on `addr`. `env_remove`
    /// names variables taken out of its environment.
    pub fn start_exact(args: &[&str], addr: SocketAddr, env_remove: &[&str]) -> Host {
        let launch = Launch::native();
        let mut command = Command::new(&launch.command[0]);
        command.args(&launch.command[1..]).args(args);
        for name in env_remove {
            command.env_remove(name);
        }
        Host::spawn(&launch, addr, command)
            .unwrap_or_else(|| panic!("isapi-host cannot listen on {addr}: is it taken?"))
    }

    /// Runs `command` and waits until it serves on `addr`. None if it exited because the
    /// port was taken meanwhile; panics (with its output) on any other failure.
    ///
    /// Its own announcement (`serving ... on http://ADDR`, printed once it holds the
    /// socket) is what counts, not a successful connect: when two tests race for the same
    /// free port, the loser's connect would reach the winner's host.
    fn spawn(launch: &Launch, addr: SocketAddr, mut command: Command) -> Option<Host> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn isapi-host");
        let output = Arc::new(Mutex::new(String::new()));
        let reader = collect(&mut child, output.clone());
        let mut host = Host {
            child: Some(child),
            launch: launch.clone(),
            addr,
            output,
            reader: Some(reader),
        };
        let deadline = Instant::now() + launch.startup;
        let serving = format!(" on http://{addr}/");
        loop {
            if host.output().contains(&serving) {
                return Some(host);
            }
            if let Some(status) = host.child.as_mut().unwrap().try_wait().unwrap() {
                let text = host.wait_output();
                if text.contains("cannot listen") {
                    return None; // the port was taken meanwhile
                }
                panic!("isapi-host exited with {status} before listening:\n{text}");
            }
            if Instant::now() > deadline {
                panic!(
                    "isapi-host did not listen on {addr} within {:?}:\n{}",
                    launch.startup,
                    host.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the host with ARGS and EXTENSION expecting it to fail at start-up; returns how.
    pub fn fail_to_start(extension: &Path, args: &[&str], env: &[(&str, &str)]) -> Stopped {
        let output = Command::new(host_binary())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", free_port()))
            .args(args)
            .arg(extension)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("run isapi-host");
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Stopped {
            status: output.status,
            stderr: text,
        }
    }

    /// The host's process id (e.g. to sample its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `http://127.0.0.1:PORT` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the host has printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the host's output contains `needle` (up to 10 s); false if it never does.
    pub fn wait_for_output(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn wait_output(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.output()
    }

    /// Waits up to `timeout` for the host to exit by itself (`--exit-on-unhealthy`); kills
    /// it and panics with its output if it does not.
    pub fn wait_exit(mut self, timeout: Duration) -> Stopped {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "isapi-host did not exit by itself within {timeout:?}:\n{}",
                    self.wait_output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Stopped {
            status,
            stderr: self.wait_output(),
        }
    }

    /// Sends SIGTERM (or the launch's stop signal), waits up to 30 s for the exit, returns
    /// the exit status and the whole output.
    pub fn stop(mut self) -> Stopped {
        let mut child = self.child.take().expect("running");
        terminate(&child, &self.launch);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().expect("wait after kill");
                panic!(
                    "isapi-host did not stop within 30 s of SIGTERM ({status}):\n{}",
                    self.wait_output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Stopped {
            status,
            stderr: self.wait_output(),
        }
    }
}

/// Stops a host serving the test extension and asserts a clean end (see
/// [`Stopped::assert_clean`]) in which the extension was told `TerminateExtension(2)`
/// (HSE_TERM_MUST_UNLOAD). Returns everything the host printed.
pub fn stop_clean(host: Host) -> String {
    let stopped = host.stop();
    stopped.assert_clean();
    assert!(
        stopped
            .stderr
            .contains("test extension: TerminateExtension(2)"),
        "{}",
        stopped.stderr
    );
    stopped.stderr
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(unix)]
fn terminate(child: &Child, launch: &Launch) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as libc::pid_t, launch.stop_signal);
    }
}

#[cfg(windows)]
fn terminate(child: &Child, _launch: &Launch) {
    // No console signal can be aimed at one child process here; end it.
    let _ = Command::new("taskkill")
        .args(["/PID", &child.id().to_string()])
        .status();
}

/// Reads the child's stdout and stderr into `sink` until both close.
fn collect(child: &mut Child, sink: Arc<Mutex<String>>) -> JoinHandle<()> {
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let sink2 = sink.clone();
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink2
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let _ = out.join();
    })
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Parses one response from the front of `data` (Content-Length, chunked or until the
/// end of `data`). Returns it and the bytes it used, or None if `data` is incomplete.
pub fn parse_response(data: &[u8], head_request: bool) -> Option<(Response, usize)> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some((
            Response {
                status,
                headers,
                body: Vec::new(),
            },
            end,
        ));
    }
    if let Some(len) = get("content-length") {
        let len: usize = len.parse().ok()?;
        if data.len() < end + len {
            return None;
        }
        return Some((
            Response {
                status,
                headers,
                body: data[end..end + len].to_vec(),
            },
            end + len,
        ));
    }
    if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = end;
        loop {
            let line_end = data[pos..].windows(2).position(|w| w == b"\r\n")? + pos;
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&data[pos..line_end]).trim(), 16)
                    .ok()?;
            pos = line_end + 2;
            if size == 0 {
                if data.len() < pos + 2 {
                    return None;
                }
                return Some((
                    Response {
                        status,
                        headers,
                        body,
                    },
                    pos + 2,
                ));
            }
            if data.len() < pos + size + 2 {
                return None;
            }
            body.extend_from_slice(&data[pos..pos + size]);
            pos += size + 2;
        }
    }
    Some((
        Response {
            status,
            headers,
            body: data[end..].to_vec(),
        },
        data.len(),
    ))
}

/// Sends `request` on a new connection, half-closes, and reads until the server closes
/// (or 10 s pass). Returns every byte received.
pub fn raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(Shutdown::Write);
    read_to_close(&mut s)
}

/// Reads until EOF, an error, or the socket's read timeout.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A keep-alive connection that reads responses one at a time, keeping any bytes of the
/// next (pipelined) response for the next call.
pub struct Client {
    pub stream: TcpStream,
    pending: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next response (`head_request`: it answers a HEAD, so it has no body).
    pub fn response(&mut self, head_request: bool) -> Response {
        let mut buf = [0u8; 65536];
        loop {
            if let Some((r, used)) = parse_response(&self.pending, head_request) {
                let unframed = !head_request
                    && r.header("content-length").is_none()
                    && r.header("transfer-encoding").is_none();
                if !unframed {
                    self.pending.drain(..used);
                    return r;
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => {
                    let (r, _) = parse_response(&self.pending, head_request)
                        .expect("connection closed mid-response");
                    self.pending.clear();
                    return r;
                }
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) => panic!(
                    "read failed waiting for a response: {e}; have {:?}",
                    String::from_utf8_lossy(&self.pending)
                ),
            }
        }
    }
}

/// Reads `count` responses (none to a HEAD) from a fresh reader on `s`. Bytes after the
/// last one are dropped: use [`Client`] to read more from the same connection.
pub fn read_responses(s: &mut TcpStream, count: usize, head_request: bool) -> Vec<Response> {
    let mut client = Client {
        stream: s.try_clone().expect("clone"),
        pending: Vec::new(),
    };
    (0..count).map(|_| client.response(head_request)).collect()
}

/// A GET with `Connection: close` over a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let data = raw(addr, request.as_bytes());
    parse_response(&data, false)
        .unwrap_or_else(|| {
            panic!(
                "no complete response to GET {path}: {:?}",
                String::from_utf8_lossy(&data)
            )
        })
        .0
}

/// Asks `host` for `/` twice with curl: each answer must be the extension's 500 page for
/// an application that failed to start (`label` names the case in a failure).
pub fn assert_startup_failure_pages(host: &Host, label: &str) {
    for _ in 0..2 {
        let (ok, body, _) = curl(&["-i", &host.url("/")]);
        let response = String::from_utf8_lossy(&body).into_owned();
        assert!(
            ok && response.starts_with("HTTP/1.1 500"),
            "{label}: {response}"
        );
        assert!(
            response.contains("The application failed to start"),
            "{label}: {response}"
        );
    }
}

/// Runs curl with ARGS; returns (exit success, stdout bytes, stderr text).
pub fn curl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A Django form round trip with curl, as a browser does it: GET `url` (keeping the CSRF
/// cookie in the curl cookie `jar`), POST `name=Ann Lee` with the page's hidden
/// `csrfmiddlewaretoken`, and POST once more without it.
pub struct DjangoForm {
    /// The form page.
    pub page: String,
    /// The answer to the POST with the token.
    pub answer: String,
    /// The HTTP status of the POST without it (Django refuses it: 403).
    pub without_token: String,
}

pub fn django_form(jar: &str, url: &str) -> DjangoForm {
    let utf8 = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let page = utf8(curl(&["-c", jar, url]).1);
    let token = page
        .split("name=\"csrfmiddlewaretoken\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no CSRF token in the form page:\n{page}"))
        .to_string();
    let form = format!("csrfmiddlewaretoken={token}&name=Ann+Lee");
    let answer = utf8(curl(&["-b", jar, "--data", &form, url]).1);
    let without_token = utf8(
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            "name=Eve",
            url,
        ])
        .1,
    );
    DjangoForm {
        page,
        answer,
        without_token,
    }
}

/// Runs a Python 3 script (Python's own http.client is the client); returns stdout.
/// Panics with stderr if the script fails.
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A site for the WSGI bridge: a scratch directory with an ini file, served by the built
/// library in the real host with `--strict`.
pub struct Site {
    pub dir: PathBuf,
    pub ini: PathBuf,
    pub log: PathBuf,
}

impl Site {
    /// Writes `ini` to `site.ini` in a new scratch directory, with `{apps}` (tests/apps) and
    /// `{log}` (`wsgi.log` in that directory) replaced.
    pub fn new(name: &str, ini: &str) -> Site {
        let dir = scratch_dir(&format!("host-{name}"));
        let log = dir.join("wsgi.log");
        let text = ini
            .replace("{apps}", &apps_dir().display().to_string())
            .replace("{log}", &log.display().to_string());
        let ini = dir.join("site.ini");
        std::fs::write(&ini, text).unwrap();
        Site { dir, ini, log }
    }

    /// `isapi-host --strict --config site.ini ARGS... <bridge library>`.
    pub fn start(&self, args: &[&str]) -> Host {
        self.launch(&Launch::native(), args, &[])
    }

    /// As [`Site::start`], with extra environment variables for the host.
    pub fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Host {
        self.launch(&Launch::native(), args, env)
    }

    /// As [`Site::start`], run as `launch` says.
    pub fn launch(&self, launch: &Launch, args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut all = vec!["--strict", "--config", self.ini.to_str().unwrap()];
        all.extend_from_slice(args);
        Host::launch(launch, &bridge_library(), &all, env)
    }

    /// The log file so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` (up to 10 s); false if it never does.
    pub fn wait_for_log(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops the host: it must exit cleanly with zero contract violations, and no validator
    /// complaint may be in the log or on the host's stderr (where Python reports an
    /// exception it had to ignore, e.g. the validator's check when an iterator is
    /// garbage-collected unclosed). Removes the directory; returns the host's output.
    pub fn finish(&self, host: Host) -> String {
        self.finish_with_log(host).0
    }

    /// As [`Site::finish`]; returns the host's output and the log, read before the
    /// directory is removed.
    pub fn finish_with_log(&self, host: Host) -> (String, String) {
        let stopped = host.stop();
        stopped.assert_clean();
        let log = self.log();
        // The validator reports with `assert_` (AssertionError) or a WSGIWarning (an error
        // here: the apps turn warnings into errors).
        for text in [&log, &stopped.stderr] {
            assert!(
                !text.contains("in assert_") && !text.contains("WSGIWarning"),
                "validator complaint:\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        (stopped.stderr, log)
    }
}
