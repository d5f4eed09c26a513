//! The configuration file, `isapi_wsgi.ini`: where it is, what it may say, and its defaults.
//!
//! ```ini
//! [python]
//! home = C:\Python312        ; Linux: the prefix holding lib/libpython3.X.so; Windows: the dir with python3X.dll
//! library = /usr/lib/libpython3.12.so.1.0   ; optional, wins over home
//! version = 3.12              ; optional: which CPython in home (or on PATH) when there are several
//! path = src;lib              # prepended to sys.path (';'-separated), relative to this file
//! venv = .venv                ; its site-packages is added with site.addsitedir
//! [wsgi]
//! app = mysite.wsgi:application   ; module:attribute, or module:factory() called once
//! handler = combining         ; combining | simple | threadpool
//! debug = false               ; true: tracebacks in 500 pages
//! log = logs/wsgi.log         ; default: stderr (isapi-host), <library stem>.log (IIS)
//! threads = 8                 ; threadpool (and combining, for slow requests): worker threads
//! queue = 1000                ; threadpool and combining: requests waiting at most
//! shutdown_timeout = 30       ; threadpool and combining: seconds to drain on shutdown
//! max_body = 100M             ; the largest request body (K, M, G: 1024, 1024², 1024³); 0: no limit
//! trusted_proxies = 10.0.0.0/8, ::1   ; believe X-Forwarded-* from these only (default: none)
//! request_timeout = 60        ; log a request running longer, with its Python stack (0: off)
//! unhealthy_after = 4         ; that many such requests at once: ask IIS to recycle (0: off)
//! gil_stall = 30              ; the GIL held that long without a release: recycle (0: off)
//! reload_on = restart.txt, src/*.py   ; a change to one of these files: recycle (default: none)
//! request_id_header = true    ; responses carry X-Request-Id
//! app_offline = true          ; app_offline.htm in the physical path: 503 with its contents
//! log_max = 10M               ; rotate the log at this size (default 0: never)
//! log_keep = 5                ; rotated logs kept (wsgi.log.1 … wsgi.log.5)
//! traceback_limit = 10        ; the same error's traceback at most 10 times a minute (0: always)
//! [health]
//! path = /_isapi/health       ; the extension's status page (default: none)
//! allow = 127.0.0.1, ::1      ; who may see it (the default)
//! [mount /blog]               ; another application, answering /blog and /blog/...
//! app = blog.wsgi:application
//! handler = threadpool        ; optional: default [wsgi] handler
//! debug = true                ; optional: default [wsgi] debug
//! ```
//!
//! Mount paths are canonical paths, written decoded (`/café`, not `/caf%C3%A9`): they start
//! with `/`, have no trailing `/`, no empty, `.` or `..` segments, no `\`, `%`, `?`, `#`,
//! spaces or control characters; two mounts may not name the same path (compared, like
//! IIS's URLs, without regard to ASCII case). With mounts and no `[wsgi] app`, requests
//! under no mount get 404 (the built-in demo serves only a file with neither).
//!
//! The file is `<library stem>.ini` next to the library (`isapi_wsgi.dll` reads
//! `isapi_wsgi.ini`), unless the environment variable `ISAPI_WSGI_CONFIG` names another
//! (`isapi-host --config FILE` sets it). Relative paths are relative to the file. Comments
//! start with `;` or `#` at the beginning of a line, or after whitespace; in `path`, where
//! `;` separates entries, only `#` starts a comment. Unknown sections and keys are errors
//! that list the valid ones. Without any file the extension serves a built-in demo app.
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "ISAPI_WSGI_CONFIG";

/// Which handler runs requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerKind {
    /// The default: the IIS thread that finds Python free runs its request and those queued
    /// meanwhile; the others return HSE_STATUS_PENDING at once (handler/combining.rs).
    Combining,
    /// On the IIS thread that called HttpExtensionProc.
    Simple,
    /// On our own worker threads (HSE_STATUS_PENDING, then DONE_WITH_SESSION).
    Threadpool,
}

/// Which WSGI application to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSpec {
    /// The built-in demo (hello and the environ).
    Demo,
    /// `module:attribute`, or `module:factory()` when `call` is set.
    Named {
        module: String,
        attribute: String,
        call: bool,
    },
}

/// `[mount /path]`: an application of its own under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount path as written (`/blog`, `/api/v1`): whole segments, no trailing `/`.
    pub path: String,
    pub app: AppSpec,
    /// `handler =`, else `[wsgi] handler`.
    pub handler: HandlerKind,
    /// `debug =`, else `[wsgi] debug`.
    pub debug: bool,
}

impl std::fmt::Display for AppSpec {
    /// As the ini writes it (`module:attribute`, `module:factory()`), or `demo`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppSpec::Demo => f.write_str("demo"),
            AppSpec::Named {
                module,
                attribute,
                call,
            } => write!(f, "{module}:{attribute}{}", if *call { "()" } else { "" }),
        }
    }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from; None for the built-in defaults.
    pub file: Option<PathBuf>,
    pub python_home: Option<PathBuf>,
    pub python_library: Option<PathBuf>,
    /// `[python] version = 3.X`: X.
    pub python_version: Option<u32>,
    pub python_path: Vec<PathBuf>,
    pub venv: Option<PathBuf>,
    pub app: AppSpec,
    pub handler: HandlerKind,
    pub debug: bool,
    pub log: Option<PathBuf>,
    pub threads: usize,
    pub queue: usize,
    pub shutdown_timeout: Duration,
    /// `[wsgi] max_body`: the largest request body in bytes; None for no limit.
    pub max_body: Option<u64>,
    /// `[wsgi] trusted_proxies`: whose X-Forwarded-* headers are believed (none by default).
    pub trusted_proxies: Vec<crate::wsgi::proxy::Cidr>,
    /// `[wsgi] request_timeout`: a request running longer is logged with its stack (None: off).
    pub request_timeout: Option<Duration>,
    /// `[wsgi] unhealthy_after`: this many requests over `request_timeout` at once make the
    /// extension report itself unhealthy (None: off).
    pub unhealthy_after: Option<usize>,
    /// `[wsgi] gil_stall`: the GIL not released for this long makes the extension report
    /// itself unhealthy (None: off).
    pub gil_stall: Option<Duration>,
    /// `[wsgi] reload_on`: file patterns (absolute; `*` and `?` in the last component) whose
    /// change makes the extension report itself unhealthy, so IIS recycles it.
    pub reload_on: Vec<PathBuf>,
    /// Environment variables set in `os.environ` before the application is imported (from a
    /// wfastcgi web.config's other appSettings; no ini key sets them).
    pub environment: Vec<(String, String)>,
    /// `[wsgi] request_id_header`: responses carry `X-Request-Id` (default true).
    pub request_id_header: bool,
    /// `[wsgi] app_offline`: `app_offline.htm` puts the site in maintenance (default true).
    pub app_offline: bool,
    /// `[wsgi] log_max`: rotate the log file at this size in bytes; None: never (default).
    pub log_max: Option<u64>,
    /// `[wsgi] log_keep`: how many rotated files are kept (default 5).
    pub log_keep: usize,
    /// `[wsgi] traceback_limit`: the same error's traceback is logged at most this many
    /// times a minute; None: every time.
    pub traceback_limit: Option<usize>,
    /// `[health]`: the status page, when `path` is set.
    pub health: Option<crate::health::HealthConfig>,
    /// `[mount /path]` sections, in the order of the file.
    pub mounts: Vec<Mount>,
}

const DEFAULT_THREADS: usize = 8;
/// Requests that may wait for a worker: as deep as IIS's own application-pool queue
/// (`queueLength`, 1 000 by default), so that ordinary load waits its turn as it would
/// under IIS, instead of getting 503s that IIS would not have sent.
const DEFAULT_QUEUE: usize = 1000;
const DEFAULT_SHUTDOWN_SECONDS: u64 = 30;
/// 100 MiB: far more than a form or an API call sends, little enough that a `read()` of a
/// whole body cannot take the server's memory.
const DEFAULT_MAX_BODY: u64 = 100 * 1024 * 1024;

const DEFAULT_LOG_KEEP: usize = 5;
/// Ten of the same traceback a minute tell all there is to tell; a broken page under load
/// would otherwise write thousands.
const DEFAULT_TRACEBACK_LIMIT: usize = 10;

const PYTHON_KEYS: &[&str] = &["home", "library", "version", "path", "venv"];
const MOUNT_KEYS: &[&str] = &["app", "handler", "debug"];
const HEALTH_KEYS: &[&str] = &["path", "allow"];
const WSGI_KEYS: &[&str] = &[
    "app",
    "handler",
    "debug",
    "log",
    "threads",
    "queue",
    "shutdown_timeout",
    "max_body",
    "trusted_proxies",
    "request_timeout",
    "unhealthy_after",
    "gil_stall",
    "reload_on",
    "request_id_header",
    "app_offline",
    "log_max",
    "log_keep",
    "traceback_limit",
];

impl Default for Config {
    fn default() -> Config {
        Config {
            file: None,
            python_home: None,
            python_library: None,
            python_version: None,
            python_path: Vec::new(),
            venv: None,
            app: AppSpec::Demo,
            handler: HandlerKind::Combining,
            debug: false,
            log: None,
            threads: DEFAULT_THREADS,
            queue: DEFAULT_QUEUE,
            shutdown_timeout: Duration::from_secs(DEFAULT_SHUTDOWN_SECONDS),
            max_body: Some(DEFAULT_MAX_BODY),
            trusted_proxies: Vec::new(),
            request_timeout: None,
            unhealthy_after: None,
            gil_stall: None,
            reload_on: Vec::new(),
            environment: Vec::new(),
            request_id_header: true,
            app_offline: true,
            log_max: None,
            log_keep: DEFAULT_LOG_KEEP,
            traceback_limit: Some(DEFAULT_TRACEBACK_LIMIT),
            health: None,
            mounts: Vec::new(),
        }
    }
}

impl Config {
    /// Where the configuration file is: `$ISAPI_WSGI_CONFIG`, else `<stem>.ini` next to the
    /// library if that exists, else None (built-in defaults).
    pub fn locate(library: Option<&Path>) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|value| !value.is_empty()) {
            return Some(PathBuf::from(path));
        }
        Config::candidates(library?)
            .into_iter()
            .find(|candidate| candidate.is_file())
    }

    /// The files looked for next to the library: `<stem>.ini`, and on Unix, where shared
    /// libraries carry a `lib` prefix, also the name without it (`libisapi_wsgi.so` reads
    /// `libisapi_wsgi.ini`, else `isapi_wsgi.ini`).
    pub fn candidates(library: &Path) -> Vec<PathBuf> {
        let mut candidates = vec![library.with_extension("ini")];
        let stem = library
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(bare) = stem
            .strip_prefix("lib")
            .filter(|bare| cfg!(unix) && !bare.is_empty())
        {
            candidates.push(library.with_file_name(format!("{bare}.ini")));
        }
        candidates
    }

    /// Reads and validates the file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Config::parse(&text, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of a file that lives at `path` (relative paths resolve against it).
    pub fn parse(text: &str, path: &Path) -> Result<Config, String> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config {
            file: Some(path.to_path_buf()),
            ..Config::default()
        };
        let mut drafts: Vec<MountDraft> = Vec::new();
        let mut section: Option<Section> = None;
        let mut health_path: Option<String> = None;
        let mut health_allow: Option<(usize, Vec<crate::wsgi::proxy::Cidr>)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
                continue;
            }
            if let Some(name) = trimmed.strip_prefix('[') {
                section = Some(Section::parse(name, number, &mut drafts)?);
                continue;
            }
            let (key, value) = trimmed.split_once('=').ok_or_else(|| {
                format!("line {number}: expected `key = value`, found `{trimmed}`")
            })?;
            let key = key.trim();
            let Some(section) = section else {
                return Err(format!(
                    "line {number}: `{key}` is outside any section; start with [python], [wsgi], [health] or [mount /path]"
                ));
            };
            let comments = if section == Section::Python && key == "path" {
                "#"
            } else {
                "#;"
            };
            let value = strip_comment(value, comments).trim();
            let name = section.name(&drafts);
            let at = |message: String| format!("line {number}: [{name}] {key}: {message}");
            let unknown = |valid: &[&str]| {
                format!(
                    "line {number}: unknown key `{key}` in [{name}]; valid keys: {}",
                    valid.join(", ")
                )
            };
            match (section, key) {
                (Section::Mount(index), _) => {
                    let draft = &mut drafts[index];
                    match key {
                        "app" => draft.app = Some(parse_app(value).map_err(at)?),
                        "handler" => draft.handler = Some(parse_handler(value).map_err(at)?),
                        "debug" => draft.debug = Some(parse_bool(value).map_err(at)?),
                        _ => return Err(unknown(MOUNT_KEYS)),
                    }
                }
                (Section::Python, "home") => config.python_home = Some(resolve(base, value)),
                (Section::Python, "library") => config.python_library = Some(resolve(base, value)),
                (Section::Python, "version") => {
                    config.python_version = Some(parse_version(value).map_err(at)?)
                }
                (Section::Python, "path") => {
                    config.python_path = value
                        .split(';')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| resolve(base, p))
                        .collect()
                }
                (Section::Python, "venv") => config.venv = Some(resolve(base, value)),
                (Section::Python, _) => return Err(unknown(PYTHON_KEYS)),
                (Section::Wsgi, "app") => config.app = parse_app(value).map_err(at)?,
                (Section::Wsgi, "handler") => config.handler = parse_handler(value).map_err(at)?,
                (Section::Wsgi, "debug") => config.debug = parse_bool(value).map_err(at)?,
                (Section::Wsgi, "log") => {
                    config.log = (!value.is_empty()).then(|| resolve(base, value))
                }
                (Section::Wsgi, "threads") => {
                    config.threads = parse_count(value, 1, 1024).map_err(at)?
                }
                (Section::Wsgi, "queue") => {
                    config.queue = parse_count(value, 0, 1_000_000).map_err(at)?;
                }
                (Section::Wsgi, "shutdown_timeout") => {
                    config.shutdown_timeout =
                        Duration::from_secs(parse_count(value, 0, 3600).map_err(at)? as u64)
                }
                (Section::Wsgi, "max_body") => config.max_body = parse_size(value).map_err(at)?,
                (Section::Wsgi, "trusted_proxies") => {
                    config.trusted_proxies =
                        crate::wsgi::proxy::parse_networks(value).map_err(at)?
                }
                (Section::Wsgi, "request_timeout") => {
                    config.request_timeout = parse_seconds_or_off(value, 86_400).map_err(at)?
                }
                (Section::Wsgi, "unhealthy_after") => {
                    config.unhealthy_after =
                        Some(parse_count(value, 0, 100_000).map_err(at)?).filter(|&n| n > 0)
                }
                (Section::Wsgi, "gil_stall") => {
                    config.gil_stall = parse_seconds_or_off(value, 3600).map_err(at)?
                }
                (Section::Wsgi, "reload_on") => {
                    config.reload_on = parse_patterns(base, value).map_err(at)?
                }
                (Section::Wsgi, "request_id_header") => {
                    config.request_id_header = parse_bool(value).map_err(at)?
                }
                (Section::Wsgi, "app_offline") => {
                    config.app_offline = parse_bool(value).map_err(at)?
                }
                (Section::Wsgi, "log_max") => config.log_max = parse_log_max(value).map_err(at)?,
                (Section::Wsgi, "log_keep") => {
                    config.log_keep = parse_count(value, 1, 100).map_err(at)?
                }
                (Section::Wsgi, "traceback_limit") => {
                    let limit = parse_count(value, 0, 1_000_000).map_err(at)?;
                    config.traceback_limit = (limit > 0).then_some(limit);
                }
                (Section::Wsgi, _) => return Err(unknown(WSGI_KEYS)),
                (Section::Health, "path") => {
                    health_path = Some(crate::health::HealthConfig::parse_path(value).map_err(at)?)
                }
                (Section::Health, "allow") => {
                    health_allow = Some((
                        number,
                        crate::health::HealthConfig::parse_allow(value).map_err(at)?,
                    ))
                }
                (Section::Health, _) => return Err(unknown(HEALTH_KEYS)),
            }
        }
        if config.unhealthy_after.is_some() && config.request_timeout.is_none() {
            return Err(
                "[wsgi] unhealthy_after counts requests running longer than request_timeout: \
                 set request_timeout too"
                    .into(),
            );
        }
        config.health = match (health_path, health_allow) {
            (Some(path), allow) => Some(crate::health::HealthConfig {
                path,
                allow: match allow {
                    Some((_, allow)) => allow,
                    None => crate::health::HealthConfig::parse_allow(crate::health::DEFAULT_ALLOW)?,
                },
            }),
            (None, Some((number, _))) => {
                return Err(format!(
                    "line {number}: [health] allow: there is no health page without [health] path"
                ));
            }
            (None, None) => None,
        };
        // The mounts take [wsgi]'s handler and debug unless they say otherwise (wherever
        // [wsgi] is in the file).
        config.mounts = drafts
            .into_iter()
            .map(|draft| draft.finish(&config))
            .collect::<Result<_, _>>()?;
        // A home that is a virtual environment is also the venv (its site-packages are the
        // point of naming it); the runtime starts the venv's base CPython.
        if config.venv.is_none() {
            config.venv = config
                .python_home
                .clone()
                .filter(|home| home.join("pyvenv.cfg").is_file());
        }
        Ok(config)
    }

    /// What answers requests under no mount: `[wsgi] app`; without it, the built-in demo
    /// if there are no mounts either, else nothing (those requests get 404).
    pub fn root_app(&self) -> Option<&AppSpec> {
        match &self.app {
            AppSpec::Demo if !self.mounts.is_empty() => None,
            app => Some(app),
        }
    }
}

/// The section a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Section {
    Python,
    Wsgi,
    Health,
    /// `[mount /path]`: an index into the mounts read so far.
    Mount(usize),
}

impl Section {
    /// The section header after its `[`, on line `number`; a mount is added to `drafts`.
    fn parse(header: &str, number: usize, drafts: &mut Vec<MountDraft>) -> Result<Section, String> {
        let name = strip_comment(header, "#;").trim();
        let name = name
            .strip_suffix(']')
            .ok_or_else(|| format!("line {number}: a section header must look like [name]"))?
            .trim();
        let mount = name
            .strip_prefix("mount")
            .filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace));
        match (name, mount) {
            ("python", _) => Ok(Section::Python),
            ("wsgi", _) => Ok(Section::Wsgi),
            ("health", _) => Ok(Section::Health),
            (_, Some(path)) => {
                let path = path.trim();
                mount_path_problem(path).map_or(Ok(()), |problem| {
                    Err(format!("line {number}: [mount {path}]: {problem}"))
                })?;
                if let Some(earlier) = drafts.iter().find(|d| d.path.eq_ignore_ascii_case(path)) {
                    return Err(format!(
                        "line {number}: [mount {path}] repeats [mount {}] of line {}",
                        earlier.path, earlier.line
                    ));
                }
                drafts.push(MountDraft {
                    path: path.to_string(),
                    line: number,
                    app: None,
                    handler: None,
                    debug: None,
                });
                Ok(Section::Mount(drafts.len() - 1))
            }
            (other, None) => Err(format!(
                "line {number}: unknown section [{other}]; valid sections: [python], [wsgi], [health], [mount /path]"
            )),
        }
    }

    /// The section's name for messages: `python`, `wsgi`, `mount /blog`.
    fn name(self, drafts: &[MountDraft]) -> String {
        match self {
            Section::Python => "python".into(),
            Section::Wsgi => "wsgi".into(),
            Section::Health => "health".into(),
            Section::Mount(index) => format!("mount {}", drafts[index].path),
        }
    }
}

/// A `[mount]` section as read so far.
struct MountDraft {
    path: String,
    line: usize,
    app: Option<AppSpec>,
    handler: Option<HandlerKind>,
    debug: Option<bool>,
}

impl MountDraft {
    fn finish(self, config: &Config) -> Result<Mount, String> {
        let app = self.app.ok_or_else(|| {
            format!(
                "line {}: [mount {}] has no `app = module:callable`",
                self.line, self.path
            )
        })?;
        Ok(Mount {
            path: self.path,
            app,
            handler: self.handler.unwrap_or(config.handler),
            debug: self.debug.unwrap_or(config.debug),
        })
    }
}

/// Why `path` cannot be a mount path, or None if it can. Mounts match the canonical path
/// (decoded, `\` as `/`, no dot-segments), so a path that no canonical path can start
/// with is refused rather than never matched.
fn mount_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("a mount needs a path, e.g. [mount /blog]");
    }
    if !path.starts_with('/') {
        return Some("a mount path starts with `/`, e.g. [mount /blog]");
    }
    if path == "/" {
        return Some("`/` would take every request: that is [wsgi] app");
    }
    if path.ends_with('/') {
        return Some(
            "write the mount path without a trailing `/` (it answers both /blog and /blog/...)",
        );
    }
    if path.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Some("a mount path has no spaces or control characters");
    }
    if path.contains(['\\', '%', '?', '#']) {
        return Some(
            "write the mount path decoded, with `/` between segments: no `\\`, `%`, `?` or `#`",
        );
    }
    if path[1..]
        .split('/')
        .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return Some("a mount path has no empty, `.` or `..` segments");
    }
    None
}

fn parse_handler(value: &str) -> Result<HandlerKind, String> {
    match value {
        "combining" => Ok(HandlerKind::Combining),
        "simple" => Ok(HandlerKind::Simple),
        "threadpool" => Ok(HandlerKind::Threadpool),
        other => Err(format!(
            "`{other}` is not a handler; valid: combining, simple, threadpool"
        )),
    }
}

/// Cuts a trailing comment: one of `markers` at the start or after whitespace.
fn strip_comment<'a>(value: &'a str, markers: &str) -> &'a str {
    let bytes = value.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if markers.as_bytes().contains(&byte)
            && (index == 0 || bytes[index - 1].is_ascii_whitespace())
        {
            return &value[..index];
        }
    }
    value
}

fn resolve(base: &Path, value: &str) -> PathBuf {
    let path = Path::new(value);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

pub(crate) fn parse_app(value: &str) -> Result<AppSpec, String> {
    let explain = || {
        format!(
            "`{value}` is not `module:attribute` (e.g. mysite.wsgi:application or app:create_app())"
        )
    };
    let (module, attribute) = value.split_once(':').ok_or_else(explain)?;
    let (attribute, call) = match attribute.trim().strip_suffix("()") {
        Some(factory) => (factory, true),
        None => (attribute.trim(), false),
    };
    let module = module.trim();
    let dotted = |name: &str| {
        !name.is_empty()
            && name.split('.').all(|part| {
                part.chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
                    && part.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    if !dotted(module) || !dotted(attribute) {
        return Err(explain());
    }
    Ok(AppSpec::Named {
        module: module.to_string(),
        attribute: attribute.to_string(),
        call,
    })
}

/// `3.X` (3.8 or newer) as X.
fn parse_version(value: &str) -> Result<u32, String> {
    value
        .strip_prefix("3.")
        .and_then(|minor| minor.parse::<u32>().ok())
        .filter(|minor| *minor >= 8)
        .ok_or_else(|| format!("`{value}` is not a CPython version 3.8 or newer (write it as 3.X)"))
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!("`{value}` is not a boolean; use true or false")),
    }
}

fn parse_count(value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(count) if (min..=max).contains(&count) => Ok(count),
        _ => Err(format!(
            "`{value}` is not a whole number from {min} to {max}"
        )),
    }
}

/// Whole seconds from 0 to `max`; 0 means off (None).
fn parse_seconds_or_off(value: &str, max: usize) -> Result<Option<Duration>, String> {
    let seconds = parse_count(value, 0, max).map_err(|e| format!("{e} (seconds; 0: off)"))?;
    Ok((seconds > 0).then(|| Duration::from_secs(seconds as u64)))
}

/// `reload_on`: comma-separated file patterns, relative to the ini's directory. `*` (any
/// run of characters) and `?` (one character) may appear in the file name only, so that a
/// check stays one directory listing per pattern.
fn parse_patterns(base: &Path, value: &str) -> Result<Vec<PathBuf>, String> {
    let mut patterns = Vec::new();
    for pattern in value.split(',').map(str::trim) {
        if pattern.is_empty() {
            return Err(format!(
                "`{value}` has an empty entry; list file patterns separated by commas (e.g. restart.txt, *.py)"
            ));
        }
        let path = resolve(base, pattern);
        let wild = |text: &str| text.contains(['*', '?']);
        if path
            .parent()
            .is_some_and(|dir| wild(&dir.to_string_lossy()))
        {
            return Err(format!(
                "`{pattern}`: `*` and `?` may only appear in the file name, not in its directories"
            ));
        }
        if path.file_name().is_none() {
            return Err(format!("`{pattern}` names no file"));
        }
        patterns.push(path);
    }
    Ok(patterns)
}

/// A size in bytes, with an optional K, M or G suffix (1024, 1024², 1024³); `0` means no
/// limit (None). For `max_body` and `log_max`.
fn parse_size(value: &str) -> Result<Option<u64>, String> {
    let explain = || {
        format!("`{value}` is not a size in bytes (e.g. 100M, 512K, 2G, 1048576; 0 for no limit)")
    };
    let (digits, unit) = match value.char_indices().last() {
        Some((at, suffix)) if suffix.is_ascii_alphabetic() => {
            let unit: u64 = match suffix.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(explain()),
            };
            (&value[..at], unit)
        }
        _ => (value, 1),
    };
    let number = digits
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|_| digits.trim().chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(explain)?;
    let bytes = number.checked_mul(unit).ok_or_else(explain)?;
    Ok((bytes > 0).then_some(bytes))
}

/// `log_max`: a size of at least 1K (a smaller file would rotate at every line), or 0.
fn parse_log_max(value: &str) -> Result<Option<u64>, String> {
    match parse_size(value)? {
        Some(bytes) if bytes < 1024 => Err(format!(
            "`{value}` is less than 1K: the log would rotate at nearly every line (0 turns rotation off)"
        )),
        size => Ok(size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/srv/site/isapi_wsgi.ini"))
    }

    #[test]
    fn full_file_with_comments_and_relative_paths() {
        let config = parse(
            "; a comment\n[python]\nhome = /opt/py ; the prefix\npath = src ; lib   # two entries\nvenv = .venv\n\
             [wsgi]\napp = mysite.wsgi:application\nhandler = threadpool\ndebug = yes\nlog = logs/w.log\nthreads = 3\n",
        )
        .unwrap();
        assert_eq!(config.python_home, Some(PathBuf::from("/opt/py")));
        assert_eq!(
            config.python_path,
            vec![
                PathBuf::from("/srv/site/src"),
                PathBuf::from("/srv/site/lib")
            ]
        );
        assert_eq!(config.venv, Some(PathBuf::from("/srv/site/.venv")));
        assert_eq!(
            config.app,
            AppSpec::Named {
                module: "mysite.wsgi".into(),
                attribute: "application".into(),
                call: false
            }
        );
        assert_eq!(config.handler, HandlerKind::Threadpool);
        assert!(config.debug);
        assert_eq!(config.log, Some(PathBuf::from("/srv/site/logs/w.log")));
        assert_eq!((config.threads, config.queue), (3, 1000));
    }

    #[test]
    fn version_is_3_x_from_3_8() {
        let at = Path::new("/srv/site/isapi_wsgi.ini");
        let config = Config::parse("[python]\nhome = /usr\nversion = 3.14\n", at).unwrap();
        assert_eq!(config.python_version, Some(14));
        let error = Config::parse("[python]\nversion = 3.7\n", at).unwrap_err();
        assert_eq!(
            error,
            "line 2: [python] version: `3.7` is not a CPython version 3.8 or newer (write it as 3.X)"
        );
        assert!(Config::parse("[python]\nversion = 314\n", at).is_err());
    }

    #[test]
    #[cfg(unix)]
    fn files_looked_for_next_to_the_library() {
        let candidates = Config::candidates(Path::new("/srv/bin/libisapi_wsgi.so"));
        assert_eq!(
            candidates,
            vec![
                PathBuf::from("/srv/bin/libisapi_wsgi.ini"),
                PathBuf::from("/srv/bin/isapi_wsgi.ini")
            ]
        );
        assert_eq!(
            Config::candidates(Path::new("/srv/mysite.so")),
            vec![PathBuf::from("/srv/mysite.ini")]
        );
    }

    #[test]
    fn max_body_takes_k_m_g_suffixes_and_0_for_no_limit() {
        assert_eq!(parse("").unwrap().max_body, Some(100 << 20));
        let max_body =
            |value: &str| parse(&format!("[wsgi]\nmax_body = {value}\n")).map(|c| c.max_body);
        assert_eq!(max_body("1048576"), Ok(Some(1 << 20)));
        assert_eq!(max_body("512K"), Ok(Some(512 << 10)));
        assert_eq!(max_body("100m"), Ok(Some(100 << 20)));
        assert_eq!(max_body("2G ; two"), Ok(Some(2 << 30)));
        assert_eq!(max_body("0"), Ok(None));
        for bad in ["", "10X", "-1", "1.5M", "M", "+5", "99999999999999999999G"] {
            let error = max_body(bad).unwrap_err();
            assert!(
                error.starts_with("line 2: [wsgi] max_body: ") && error.contains("not a size"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_off_unless_listed() {
        assert!(parse("[wsgi]\n").unwrap().trusted_proxies.is_empty());
        let config = parse("[wsgi]\ntrusted_proxies = 10.0.0.0/8, ::1\n").unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        let error = parse("[wsgi]\ntrusted_proxies = 10.0.0.0/40\n").unwrap_err();
        assert!(error.contains("prefix length"), "{error}");
    }

    #[test]
    fn watchdog_keys_are_off_by_default_and_validated() {
        let config = parse("[wsgi]\n").unwrap();
        assert_eq!(
            (
                config.request_timeout,
                config.unhealthy_after,
                config.gil_stall
            ),
            (None, None, None)
        );
        assert!(config.reload_on.is_empty());
        let config = parse(
            "[wsgi]\nrequest_timeout = 60\nunhealthy_after = 4\ngil_stall = 30\nreload_on = restart.txt, src/*.py\n",
        )
        .unwrap();
        assert_eq!(config.request_timeout, Some(Duration::from_secs(60)));
        assert_eq!(config.unhealthy_after, Some(4));
        assert_eq!(config.gil_stall, Some(Duration::from_secs(30)));
        assert_eq!(
            config.reload_on,
            vec![
                PathBuf::from("/srv/site/restart.txt"),
                PathBuf::from("/srv/site/src/*.py")
            ]
        );
        let config = parse("[wsgi]\nrequest_timeout = 0\ngil_stall = 0\n").unwrap();
        assert_eq!((config.request_timeout, config.gil_stall), (None, None));
        let error = parse("[wsgi]\nunhealthy_after = 3\n").unwrap_err();
        assert!(error.contains("set request_timeout too"), "{error}");
        let error = parse("[wsgi]\nrequest_timeout = 1.5\n").unwrap_err();
        assert!(
            error.contains("request_timeout") && error.contains("seconds"),
            "{error}"
        );
        let error = parse("[wsgi]\nreload_on = */restart.txt\n").unwrap_err();
        assert!(error.contains("only appear in the file name"), "{error}");
        let error = parse("[wsgi]\nreload_on = a.txt,,b.txt\n").unwrap_err();
        assert!(error.contains("empty entry"), "{error}");
    }

    #[test]
    fn mounts_take_wsgi_defaults_unless_they_say_otherwise() {
        let config = parse(
            "[mount /blog]\napp = blog:app\n[wsgi]\nhandler = threadpool\ndebug = true\n\
             [mount /api/v1] ; the API\napp = api:make()\nhandler = simple\ndebug = no\n[mount /café]\napp = c:app\n",
        )
        .unwrap();
        let summary: Vec<(&str, HandlerKind, bool)> = config
            .mounts
            .iter()
            .map(|m| (m.path.as_str(), m.handler, m.debug))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("/blog", HandlerKind::Threadpool, true),
                ("/api/v1", HandlerKind::Simple, false),
                ("/café", HandlerKind::Threadpool, true),
            ]
        );
        assert_eq!(
            config.mounts[1].app,
            AppSpec::Named {
                module: "api".into(),
                attribute: "make".into(),
                call: true
            }
        );
        // Mounts and no [wsgi] app: nothing answers the rest (404), not the demo.
        assert_eq!(config.root_app(), None);
        assert_eq!(parse("").unwrap().root_app(), Some(&AppSpec::Demo));
        let both = parse("[wsgi]\napp = a:b\n[mount /x]\napp = c:d\n").unwrap();
        assert!(matches!(both.root_app(), Some(AppSpec::Named { module, .. }) if module == "a"));
    }

    #[test]
    fn bad_mounts_are_configuration_errors() {
        let error = |text: &str| parse(text).unwrap_err();
        for (path, expected) in [
            ("blog", "starts with `/`"),
            ("/", "that is [wsgi] app"),
            ("/blog/", "trailing `/`"),
            ("/a//b", "no empty, `.` or `..` segments"),
            ("/a/../b", "no empty, `.` or `..` segments"),
            ("/a/.", "no empty, `.` or `..` segments"),
            ("/caf%C3%A9", "decoded"),
            ("/a\\b", "decoded"),
            ("/a?b", "decoded"),
            ("/a b", "no spaces"),
            ("", "needs a path"),
        ] {
            let message = error(&format!("[mount {path}]\napp = a:b\n"));
            assert!(
                message.starts_with("line 1: [mount ") && message.contains(expected),
                "{path:?}: {message}"
            );
        }
        let message = error("[mount /blog]\napp = a:b\n[mount /Blog]\napp = c:d\n");
        assert_eq!(
            message,
            "line 3: [mount /Blog] repeats [mount /blog] of line 1"
        );
        let message = error("[mount /blog]\napp = a:b\nthreads = 4\n");
        assert_eq!(
            message,
            "line 3: unknown key `threads` in [mount /blog]; valid keys: app, handler, debug"
        );
        let message = error("[mount /blog]\nhandler = simple\n");
        assert_eq!(
            message,
            "line 1: [mount /blog] has no `app = module:callable`"
        );
        let message = error("[mount /blog]\napp = a:b\nhandler = fast\n");
        assert!(
            message.starts_with("line 3: [mount /blog] handler: `fast` is not a handler"),
            "{message}"
        );
        let message = error("[mountain]\n");
        assert!(
            message.contains("unknown section [mountain]") && message.contains("[mount /path]"),
            "{message}"
        );
    }

    #[test]
    fn operations_keys_their_defaults_and_their_errors() {
        let config = parse("").unwrap();
        assert!(config.request_id_header && config.app_offline && config.health.is_none());
        assert_eq!((config.log_max, config.log_keep), (None, 5));
        assert_eq!(config.traceback_limit, Some(10));
        let config = parse(
            "[wsgi]\nrequest_id_header = false\napp_offline = no\nlog_max = 10M\nlog_keep = 3\n\
             traceback_limit = 0\n[health]\npath = /_isapi/health\n",
        )
        .unwrap();
        assert!(!config.request_id_header && !config.app_offline);
        assert_eq!((config.log_max, config.log_keep), (Some(10 << 20), 3));
        assert_eq!(config.traceback_limit, None);
        let health = config.health.unwrap();
        assert_eq!(health.path, "/_isapi/health");
        let inside = |a: &str| health.allow.iter().any(|n| n.contains(a.parse().unwrap()));
        assert!(inside("127.0.0.1") && inside("::1") && !inside("10.0.0.1"));
        let health = parse("[health]\npath = /h\nallow = 10.0.0.0/8\n")
            .unwrap()
            .health
            .unwrap();
        assert_eq!(health.allow.len(), 1);
        for (text, message) in [
            ("[wsgi]\nlog_max = ten\n", "not a size"),
            ("[wsgi]\nlog_max = 100\n", "less than 1K"),
            ("[wsgi]\nlog_keep = 0\n", "from 1 to 100"),
            ("[wsgi]\napp_offline = maybe\n", "not a boolean"),
            ("[wsgi]\ntraceback_limit = -1\n", "whole number"),
            ("[health]\npath = health\n", "not a URL path"),
            ("[health]\npath = /h\nallow = \n", "at least one address"),
            (
                "[health]\npath = /h\nallow = 10.0.0.0/33\n",
                "prefix length",
            ),
            (
                "[health]\nallow = 10.0.0.1\n",
                "line 2: [health] allow: there is no health page without [health] path",
            ),
            (
                "[health]\nport = 8\n",
                "unknown key `port` in [health]; valid keys: path, allow",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn factory_apps() {
        let config = parse("[wsgi]\napp = pkg.app:create_app()\n").unwrap();
        assert_eq!(
            config.app,
            AppSpec::Named {
                module: "pkg.app".into(),
                attribute: "create_app".into(),
                call: true
            }
        );
    }

    #[test]
    fn errors_name_the_line_and_the_valid_choices() {
        let error = parse("[wsgi]\napps = x:y\n").unwrap_err();
        assert!(
            error.contains("line 2")
                && error.contains("unknown key `apps`")
                && error.contains("app, handler"),
            "{error}"
        );
        let error = parse("[server]\n").unwrap_err();
        assert!(
            error.contains("unknown section [server]") && error.contains("[python], [wsgi]"),
            "{error}"
        );
        let error = parse("[wsgi]\nhandler = fast\n").unwrap_err();
        assert!(
            error.contains("valid: combining, simple, threadpool"),
            "{error}"
        );
        let error = parse("[wsgi]\napp = notanapp\n").unwrap_err();
        assert!(error.contains("module:attribute"), "{error}");
        let error = parse("[wsgi]\nthreads = 0\n").unwrap_err();
        assert!(error.contains("from 1 to 1024"), "{error}");
        let error = parse("app = x:y\n").unwrap_err();
        assert!(error.contains("outside any section"), "{error}");
    }

    #[test]
    fn the_default_handler_is_combining_and_each_name_parses() {
        assert_eq!(parse("").unwrap().handler, HandlerKind::Combining);
        for (name, kind) in [
            ("combining", HandlerKind::Combining),
            ("simple", HandlerKind::Simple),
            ("threadpool", HandlerKind::Threadpool),
        ] {
            let config = parse(&format!(
                "[wsgi]\nhandler = {name}\n[mount /a]\napp = a:b\n"
            ))
            .unwrap();
            assert_eq!(config.handler, kind, "{name}");
            assert_eq!(
                config.mounts[0].handler, kind,
                "a mount takes [wsgi]'s: {name}"
            );
        }
    }
}
