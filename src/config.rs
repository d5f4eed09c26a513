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
//! handler = simple            ; simple | threadpool
//! debug = false               ; true: tracebacks in 500 pages
//! log = logs/wsgi.log         ; default: stderr (isapi-host), <library stem>.log (IIS)
//! threads = 8                 ; threadpool handler: worker threads
//! queue = 1000                ; threadpool handler: requests waiting at most
//! shutdown_timeout = 30       ; threadpool handler: seconds to drain on shutdown
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
//! ```
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
            handler: HandlerKind::Simple,
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
        let mut section: Option<&str> = None;
        let mut health_path: Option<String> = None;
        let mut health_allow: Option<(usize, Vec<crate::wsgi::proxy::Cidr>)> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
                continue;
            }
            if let Some(name) = trimmed.strip_prefix('[') {
                let name = strip_comment(name, "#;").trim();
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| {
                        format!("line {number}: a section header must look like [name]")
                    })?
                    .trim();
                section = match name {
                    "python" => Some("python"),
                    "wsgi" => Some("wsgi"),
                    "health" => Some("health"),
                    other => {
                        return Err(format!(
                            "line {number}: unknown section [{other}]; valid sections: [python], [wsgi], [health]"
                        ));
                    }
                };
                continue;
            }
            let (key, value) = trimmed.split_once('=').ok_or_else(|| {
                format!("line {number}: expected `key = value`, found `{trimmed}`")
            })?;
            let key = key.trim();
            let Some(section) = section else {
                return Err(format!(
                    "line {number}: `{key}` is outside any section; start with [python], [wsgi] or [health]"
                ));
            };
            let comments = if section == "python" && key == "path" {
                "#"
            } else {
                "#;"
            };
            let value = strip_comment(value, comments).trim();
            let at = |message: String| format!("line {number}: [{section}] {key}: {message}");
            match (section, key) {
                ("python", "home") => config.python_home = Some(resolve(base, value)),
                ("python", "library") => config.python_library = Some(resolve(base, value)),
                ("python", "version") => {
                    config.python_version = Some(parse_version(value).map_err(at)?)
                }
                ("python", "path") => {
                    config.python_path = value
                        .split(';')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(|p| resolve(base, p))
                        .collect()
                }
                ("python", "venv") => config.venv = Some(resolve(base, value)),
                ("wsgi", "app") => config.app = parse_app(value).map_err(at)?,
                ("wsgi", "handler") => {
                    config.handler = match value {
                        "simple" => HandlerKind::Simple,
                        "threadpool" => HandlerKind::Threadpool,
                        other => {
                            return Err(at(format!(
                                "`{other}` is not a handler; valid: simple, threadpool"
                            )));
                        }
                    }
                }
                ("wsgi", "debug") => config.debug = parse_bool(value).map_err(at)?,
                ("wsgi", "log") => config.log = (!value.is_empty()).then(|| resolve(base, value)),
                ("wsgi", "threads") => config.threads = parse_count(value, 1, 1024).map_err(at)?,
                ("wsgi", "queue") => {
                    config.queue = parse_count(value, 0, 1_000_000).map_err(at)?;
                }
                ("wsgi", "shutdown_timeout") => {
                    config.shutdown_timeout =
                        Duration::from_secs(parse_count(value, 0, 3600).map_err(at)? as u64)
                }
                ("wsgi", "max_body") => config.max_body = parse_size(value).map_err(at)?,
                ("wsgi", "trusted_proxies") => {
                    config.trusted_proxies =
                        crate::wsgi::proxy::parse_networks(value).map_err(at)?
                }
                ("wsgi", "request_timeout") => {
                    config.request_timeout = parse_seconds_or_off(value, 86_400).map_err(at)?
                }
                ("wsgi", "unhealthy_after") => {
                    config.unhealthy_after =
                        Some(parse_count(value, 0, 100_000).map_err(at)?).filter(|&n| n > 0)
                }
                ("wsgi", "gil_stall") => {
                    config.gil_stall = parse_seconds_or_off(value, 3600).map_err(at)?
                }
                ("wsgi", "reload_on") => {
                    config.reload_on = parse_patterns(base, value).map_err(at)?
                }
                ("wsgi", "request_id_header") => {
                    config.request_id_header = parse_bool(value).map_err(at)?
                }
                ("wsgi", "app_offline") => config.app_offline = parse_bool(value).map_err(at)?,
                ("wsgi", "log_max") => config.log_max = parse_log_max(value).map_err(at)?,
                ("wsgi", "log_keep") => config.log_keep = parse_count(value, 1, 100).map_err(at)?,
                ("wsgi", "traceback_limit") => {
                    let limit = parse_count(value, 0, 1_000_000).map_err(at)?;
                    config.traceback_limit = (limit > 0).then_some(limit);
                }
                ("health", "path") => {
                    health_path = Some(crate::health::HealthConfig::parse_path(value).map_err(at)?)
                }
                ("health", "allow") => {
                    health_allow = Some((
                        number,
                        crate::health::HealthConfig::parse_allow(value).map_err(at)?,
                    ))
                }
                (section, key) => {
                    let valid = match section {
                        "python" => PYTHON_KEYS,
                        "health" => HEALTH_KEYS,
                        _ => WSGI_KEYS,
                    };
                    return Err(format!(
                        "line {number}: unknown key `{key}` in [{section}]; valid keys: {}",
                        valid.join(", ")
                    ));
                }
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
        assert!(error.contains("valid: simple, threadpool"), "{error}");
        let error = parse("[wsgi]\napp = notanapp\n").unwrap_err();
        assert!(error.contains("module:attribute"), "{error}");
        let error = parse("[wsgi]\nthreads = 0\n").unwrap_err();
        assert!(error.contains("from 1 to 1024"), "{error}");
        let error = parse("app = x:y\n").unwrap_err();
        assert!(error.contains("outside any section"), "{error}");
    }
}
