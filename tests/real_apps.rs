//! Real applications through the real host with `--strict`, each example of examples/ as a
//! deployer sets it up (copied to a scratch directory, then the application's own tools:
//! Django's manage.py, trac-admin, hg), served by the built library with both handlers:
//!
//! - examples/django-vdir: a Django project below the nested application /Deep/Nested: a
//!   non-ASCII URL routes and reverses with the prefix, the static files (Django's admin's
//!   among them) come from IIS's StaticFile handler as the example's web.config maps it
//!   (emulated by `isapi-host --static`, for the locations the test reads out of that
//!   web.config after checking their handler order), and `--user` reaches `request.user`
//!   through RemoteUserMiddleware and RemoteUserBackend;
//! - examples/trac: Trac over `--https` makes https links, redirects and Secure cookies
//!   below its prefix, and logs in the user IIS authenticated (REMOTE_USER);
//! - examples/hgweb: Mercurial's hgwebdir, with a real `hg clone` and `hg push`: refused
//!   over plain http, refused over https without a user, accepted over https for `alice`.
//!
//! Trac and Mercurial come from the test venv (`.ci/setup` installs them).
mod common;

use common::{Host, Launch, Response};
use std::path::{Path, PathBuf};
use std::process::Command;

const HANDLERS: [&str; 2] = ["simple", "threadpool"];

/// An example directory copied to a scratch directory, with the test venv in place of
/// its `.venv`.
struct Example {
    dir: PathBuf,
    venv: PathBuf,
}

impl Example {
    fn copy(name: &str) -> Example {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        let dir = common::scratch_dir(name);
        copy_tree(&source, &dir);
        Example {
            dir,
            venv: common::test_venv(),
        }
    }

    /// Runs the venv's `program` (python, trac-admin, hg) in the example's directory; returns
    /// its output. Panics with the output if it fails.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let (ok, output) = self.try_run(program, args, &self.dir);
        assert!(ok, "{program} {args:?} failed:\n{output}");
        output
    }

    /// Runs the venv's `program` in `cwd`; returns whether it succeeded, and stdout + stderr.
    fn try_run(&self, program: &str, args: &[&str], cwd: &Path) -> (bool, String) {
        let out = Command::new(self.venv.join("bin").join(program))
            .args(args)
            .current_dir(cwd)
            // Mercurial: no user or system configuration, plain output, a commit author.
            .env("HGRCPATH", "")
            .env("HGPLAIN", "1")
            .env("HGUSER", "test <test@example.com>")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The example's isapi_wsgi.ini with the test venv, `handler` and a log file. The
    /// simple handler serves the application wrapped in wsgiref.validate.validator, with
    /// its warnings as errors (tests/apps/validated.py; the applications' own warnings,
    /// such as Mercurial's ResourceWarning for a file it leaves open, stay warnings); the
    /// threadpool handler serves it as the example's file says. Returns the file and the environment for the host.
    fn ini(&self, handler: &str) -> (PathBuf, Vec<(&'static str, String)>) {
        let text = std::fs::read_to_string(self.dir.join("isapi_wsgi.ini")).unwrap();
        let last_section = text.trim_end().rsplit('[').next().unwrap();
        assert!(
            text.contains("\npath = .\n")
                && text.contains("\nvenv = .venv\n")
                && last_section.starts_with("wsgi]"),
            "the example's ini uses . and .venv, and ends with its [wsgi] section:\n{text}"
        );
        let app = text
            .lines()
            .find_map(|line| line.strip_prefix("app = "))
            .expect("app =")
            .to_string();
        let mut text = text.replace("venv = .venv", &format!("venv = {}", self.venv.display()));
        let mut env = Vec::new();
        if handler == "simple" {
            let apps = common::apps_dir();
            text = text
                .replace("\npath = .\n", &format!("\npath = .;{}\n", apps.display()))
                .replace(&format!("app = {app}"), "app = validated:application");
            env.push(("VALIDATED_APP", app));
            env.push(("VALIDATED_ERRORS", "wsgi".into()));
        }
        let ini = self.dir.join(format!("test-{handler}.ini"));
        let log = self.log(handler);
        std::fs::write(
            &ini,
            format!("{text}handler = {handler}\nlog = {}\n", log.display()),
        )
        .unwrap();
        (ini, env)
    }

    fn log(&self, handler: &str) -> PathBuf {
        self.dir.join(format!("wsgi-{handler}.log"))
    }

    /// `isapi-host --strict --config <ini for handler> --physical-path <dir> ARGS...`.
    fn start(&self, handler: &str, args: &[&str]) -> Host {
        let (ini, env) = self.ini(handler);
        let mut all = vec![
            "--strict",
            "--config",
            ini.to_str().unwrap(),
            "--physical-path",
            self.dir.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Host::launch(&Launch::native(), &common::bridge_library(), &all, &env)
    }

    /// Stops the host: a clean exit with no contract violation, and no Python traceback
    /// (a validator's complaint included) in the application's log or on the host's stderr.
    /// Returns the host's output.
    fn finish(&self, host: Host, handler: &str) -> String {
        let stopped = host.stop();
        stopped.assert_clean();
        let log = std::fs::read_to_string(self.log(handler)).unwrap_or_default();
        for text in [&log, &stopped.stderr] {
            assert!(
                !text.contains("Traceback") && !text.contains("WSGIWarning"),
                "{handler}: a traceback was logged:\n{text}"
            );
        }
        if handler == "simple" {
            assert!(log.contains("serving validated:application"), "{log}");
        }
        stopped.stderr
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Copies the files of `from` into `to`, leaving out what a reader's own set-up leaves
/// there (`.venv`, byte code, Django's and Trac's generated files).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if [".venv", "__pycache__", "static", "env", "db.sqlite3"].contains(&name.as_ref())
            || name.starts_with("test-")
        {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// One request over a fresh connection (raw TCP), with extra header lines.
fn request(host: &Host, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", host.addr);
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        text.push_str("Content-Length: 0\r\n");
    }
    text.push_str("Connection: close\r\n\r\n");
    let data = common::raw(host.addr, text.as_bytes());
    common::parse_response(&data, method == "HEAD")
        .unwrap_or_else(|| {
            panic!(
                "no complete response to {method} {target}: {:?}",
                String::from_utf8_lossy(&data)
            )
        })
        .0
}

fn get(host: &Host, target: &str) -> Response {
    request(host, "GET", target, &[])
}

/// The values of `attribute="..."` in `html`, in order.
fn attributes<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.split(needle.as_str())
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect()
}

/// The access-log line of the request `"METHOD target"`, once the host has written it.
fn access_line(host: &Host, request: &str) -> String {
    let quoted = format!("\"{request}\" ");
    assert!(
        host.wait_for_output(&quoted),
        "no access line for {request}:\n{}",
        host.output()
    );
    host.output()
        .lines()
        .find(|line| line.contains(&quoted))
        .unwrap()
        .to_string()
}

/// The `<location path>`s of examples/django-vdir/web.config that map only StaticFile (the
/// list cleared first), after checking that the application's own list maps isapi-wsgi to
/// `*`: exactly what `isapi-host --static` emulates. Python's xml.etree reads the file.
fn static_locations(web_config: &Path) -> Vec<String> {
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
app = list(root.find("system.webServer/handlers"))
assert [(e.tag, e.get("path"), e.get("modules")) for e in app] == [("add", "*", "IsapiModule")], app
for location in root.findall("location"):
    handlers = list(location.find("system.webServer/handlers"))
    assert handlers[0].tag == "clear", "the list must be cleared, or the inherited * mapping wins"
    assert [(e.tag, e.get("modules")) for e in handlers[1:]] == [("add", "StaticFileModule")], handlers
    assert handlers[1].get("resourceType") == "File" and handlers[1].get("verb") == "GET,HEAD"
    print(location.get("path"))
"#;
    common::python(script, &[web_config.to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn django_below_a_nested_vdir_with_iis_static_files_and_remote_user() {
    let app = Example::copy("django-vdir");
    app.run("python", &["manage.py", "migrate", "--verbosity", "0"]);
    app.run(
        "python",
        &[
            "manage.py",
            "collectstatic",
            "--noinput",
            "--verbosity",
            "0",
        ],
    );
    let locations = static_locations(&app.dir.join("web.config"));
    assert_eq!(
        locations,
        ["static"],
        "web.config maps StaticFile for static/"
    );
    let static_arg = format!("/Deep/Nested/{}", locations[0]);
    // A symbolic link out of static/ must not lead the StaticFile handler anywhere else.
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        app.dir.join("vdirsite").join("settings.py"),
        app.dir.join("static").join("settings.css"),
    )
    .unwrap();
    for handler in HANDLERS {
        let host = app.start(
            handler,
            &[
                "--vdir",
                "/Deep/Nested",
                "--static",
                &static_arg,
                "--user",
                r"EXAMPLE\alice",
            ],
        );
        django_pages(&app, &host, handler);
        app.finish(host, handler);
    }
    // The user RemoteUserBackend created on first sight is in Django's database.
    let users = app.run(
        "python",
        &[
            "manage.py",
            "shell",
            "--verbosity",
            "0",
            "-c",
            "from django.contrib.auth.models import User; print(list(User.objects.values_list('username', flat=True)))",
        ],
    );
    assert_eq!(users.trim(), r"['EXAMPLE\\alice']");
    // Without Windows authentication nobody is logged in.
    let host = app.start(
        "simple",
        &["--vdir", "/Deep/Nested", "--static", &static_arg],
    );
    let whoami = get(&host, "/Deep/Nested/whoami").text();
    assert!(
        whoami.contains(r#""remote_user": null"#) && whoami.contains(r#""authenticated": false"#),
        "{whoami}"
    );
    app.finish(host, "simple");
}

fn django_pages(app: &Example, host: &Host, handler: &str) {
    let index = get(host, "/Deep/Nested/");
    assert_eq!(index.status, 200, "{handler}: {}", index.text());
    let html = index.text();
    assert!(
        html.contains("<h1>Django below /Deep/Nested</h1>"),
        "{html}"
    );
    let links = attributes(&html, "href");
    assert_eq!(
        links,
        [
            "/Deep/Nested/static/site.css",
            "/Deep/Nested/gr%C3%BC%C3%9Fe/Zo%C3%AB/",
            "/Deep/Nested/whoami",
            "/Deep/Nested/admin/",
        ],
        "{handler}: every link has the prefix"
    );

    // The non-ASCII URL Django reversed routes back to its view, which reverses it again.
    let greeting = get(host, links[1]);
    assert_eq!(greeting.status, 200, "{}", greeting.text());
    let json = greeting.text();
    for expected in [
        r#""greeting": "Grüße, Zoë!""#,
        r#""path": "/Deep/Nested/grüße/Zoë/""#,
        r#""path_info": "/grüße/Zoë/""#,
        r#""reversed": "/Deep/Nested/gr%C3%BC%C3%9Fe/Zo%C3%AB/""#,
        &format!(
            r#""absolute": "http://{}/Deep/Nested/gr%C3%BC%C3%9Fe/Zo%C3%AB/""#,
            host.addr
        ),
    ] {
        assert!(
            json.contains(expected),
            "{handler}: {expected} not in {json}"
        );
    }

    // The style sheet comes from static/, by the StaticFile handler: the extension never
    // sees the request (its access line has no #id and names the handler).
    let css = get(host, links[0]);
    assert_eq!(css.status, 200, "{}", css.text());
    assert_eq!(css.header("Content-Type"), Some("text/css"));
    assert_eq!(
        css.body,
        std::fs::read(app.dir.join("assets").join("site.css")).unwrap()
    );
    let line = access_line(host, "GET /Deep/Nested/static/site.css");
    assert!(
        line.ends_with(" StaticFile") && !line.contains('#'),
        "{line}"
    );

    // The admin (a redirect to its login page, with the prefix) and its own style sheets,
    // which collectstatic put in static/: the classic "admin without CSS" is not here.
    let admin = get(host, "/Deep/Nested/admin/");
    assert_eq!(admin.status, 302);
    assert_eq!(
        admin.header("Location"),
        Some("/Deep/Nested/admin/login/?next=/Deep/Nested/admin/")
    );
    let login = get(host, "/Deep/Nested/admin/login/?next=/Deep/Nested/admin/");
    assert_eq!(login.status, 200, "{}", login.text());
    let login_html = login.text();
    let sheets: Vec<&str> = attributes(&login_html, "href")
        .into_iter()
        .filter(|href| href.ends_with(".css"))
        .collect();
    assert!(
        sheets.contains(&"/Deep/Nested/static/admin/css/base.css"),
        "{sheets:?}"
    );
    for sheet in sheets {
        let response = get(host, sheet);
        assert_eq!(response.status, 200, "{sheet}");
        assert_eq!(response.header("Content-Type"), Some("text/css"), "{sheet}");
        let file = sheet.trim_start_matches("/Deep/Nested/");
        assert_eq!(
            response.body,
            std::fs::read(app.dir.join(file)).unwrap(),
            "{sheet}"
        );
    }

    // What IIS answers itself below static/, not Django: another verb, a missing file, a
    // symbolic link out of the directory.
    let post = request(host, "POST", "/Deep/Nested/static/site.css", &[]);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("Allow"), Some("GET, HEAD"));
    let head = request(host, "HEAD", "/Deep/Nested/static/site.css", &[]);
    assert_eq!(
        (head.status, head.header("Content-Length")),
        (200, Some(css.body.len().to_string().as_str()))
    );
    for missing in [
        "/Deep/Nested/static/missing.css",
        "/Deep/Nested/static/settings.css",
    ] {
        let response = get(host, missing);
        assert_eq!(response.status, 404, "{missing}");
        assert_eq!(
            response.text(),
            "404 Not Found: no such file\r\n",
            "{missing}"
        );
    }
    // Dot-segments and encoded separators are resolved before the handler is chosen: these
    // leave static/ and reach Django (its 404), never a file of the project.
    for escape in [
        "/Deep/Nested/static/..%2Fmanage.py",
        "/Deep/Nested/static/%2e%2e/vdirsite/settings.py",
        "/Deep/Nested/static/..%5Cvdirsite%5Csettings.py",
    ] {
        let response = get(host, escape);
        assert_eq!(response.status, 404, "{escape}");
        let text = response.text();
        assert!(
            text.contains("<h1>Not Found</h1>"),
            "{escape}: Django's 404: {text}"
        );
        assert!(!text.contains("SECRET_KEY") && !text.contains("execute_from_command_line"));
    }

    // Windows authentication's user, through RemoteUserMiddleware and RemoteUserBackend.
    let whoami = get(host, "/Deep/Nested/whoami").text();
    for expected in [
        r#""remote_user": "EXAMPLE\\alice""#,
        r#""authenticated": true"#,
        r#""username": "EXAMPLE\\alice""#,
        r#""backend": "django.contrib.auth.backends.RemoteUserBackend""#,
    ] {
        assert!(
            whoami.contains(expected),
            "{handler}: {expected} not in {whoami}"
        );
    }
}

#[test]
fn trac_over_https_logs_in_the_remote_user() {
    let app = Example::copy("trac");
    app.run(
        "trac-admin",
        &["env", "initenv", "Demo", "sqlite:db/trac.db"],
    );
    app.run(
        "trac-admin",
        &["env", "config", "set", "trac", "secure_cookies", "true"],
    );
    app.run(
        "trac-admin",
        &["env", "permission", "add", "alice", "TRAC_ADMIN"],
    );
    for handler in HANDLERS {
        let anonymous = app.start(handler, &["--vdir", "/trac", "--https"]);
        let windows_auth = app.start(handler, &["--vdir", "/trac", "--https", "--user", "alice"]);
        trac_pages(&anonymous, &windows_auth, handler);
        app.finish(windows_auth, handler);
        app.finish(anonymous, handler);
    }
    // The scheme comes from the request: the same site over plain http links to http://.
    let plain = app.start("simple", &["--vdir", "/trac", "--user", "alice"]);
    let login = get(&plain, "/trac/login");
    assert_eq!(
        login.header("Location"),
        Some(format!("http://{}/trac", plain.addr).as_str())
    );
    app.finish(plain, "simple");
}

fn trac_pages(anonymous: &Host, windows_auth: &Host, handler: &str) {
    let base = format!("https://{}/trac", anonymous.addr);
    let timeline = get(anonymous, "/trac/timeline");
    assert_eq!(timeline.status, 200, "{handler}: {}", timeline.text());
    let html = timeline.text();
    let links = attributes(&html, "href");
    for expected in ["/trac/wiki", "/trac/login", "/trac/timeline"] {
        assert!(
            links.contains(&expected),
            "{handler}: no link {expected} in {links:?}"
        );
    }
    let local: Vec<&&str> = links.iter().filter(|l| l.starts_with('/')).collect();
    assert!(
        local.iter().all(|l| l.starts_with("/trac/")),
        "{handler}: {local:?}"
    );
    assert!(
        !html.contains(&format!("http://{}", anonymous.addr)),
        "{html}"
    );
    // Absolute links (the RSS feed's, the OpenSearch template) say https and the prefix.
    let rss = get(anonymous, "/trac/timeline?format=rss&daysback=90&wiki=on").text();
    assert!(
        rss.contains(&format!("<link>{base}/timeline</link>")),
        "{handler}: {rss}"
    );
    assert!(
        rss.contains(&format!("<link>{base}/wiki/WikiStart")),
        "{handler}: {rss}"
    );
    let opensearch = get(anonymous, "/trac/search/opensearch").text();
    assert!(
        opensearch.contains(&format!("template=\"{base}/search?")),
        "{opensearch}"
    );
    for text in [&rss, &opensearch] {
        assert!(!text.contains("http://127.0.0.1"), "{handler}: {text}");
    }

    let wiki = get(anonymous, "/trac/wiki").text();
    assert!(
        wiki.contains("href=\"/trac/login\"") && !wiki.contains("logged in as"),
        "{wiki}"
    );
    // /login without an authenticated user: Trac says so, and sets no cookie.
    let refused = get(anonymous, "/trac/login");
    assert!(
        refused
            .text()
            .contains("Authentication information not available"),
        "{}",
        refused.text()
    );
    assert!(
        refused
            .header("Set-Cookie")
            .is_none_or(|c| !c.contains("trac_auth"))
    );

    // Login where IIS authenticated alice: Trac's cookie (Secure, below the prefix) and a
    // redirect to the https address of the project.
    let login = get(windows_auth, "/trac/login");
    assert_eq!(login.status, 302, "{handler}: {}", login.text());
    assert_eq!(
        login.header("Location"),
        Some(format!("https://{}/trac", windows_auth.addr).as_str())
    );
    let cookie = login
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("Set-Cookie"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with("trac_auth="))
        .unwrap_or_else(|| panic!("{handler}: no trac_auth cookie: {:?}", login.headers));
    for attribute in ["; Secure", "; HttpOnly", "; Path=/trac"] {
        assert!(cookie.contains(attribute), "{handler}: {cookie}");
    }
    let pair = cookie.split(';').next().unwrap();

    // The cookie alone says who it is, even where nobody is authenticated.
    let wiki = request(anonymous, "GET", "/trac/wiki", &[("Cookie", pair)]).text();
    assert!(wiki.contains("logged in as"), "{handler}: {wiki}");
    assert!(wiki.contains(">alice<"), "{handler}: {wiki}");
    // alice is TRAC_ADMIN; to anybody else Trac has no admin pages.
    assert_eq!(
        request(anonymous, "GET", "/trac/admin", &[("Cookie", pair)]).status,
        200
    );
    assert_eq!(get(anonymous, "/trac/admin").status, 404);
}

#[test]
fn hgweb_push_only_over_https_for_an_authenticated_user() {
    let app = Example::copy("hgweb");
    let repo = app.dir.join("repos").join("demo");
    app.run("hg", &["init", repo.to_str().unwrap()]);
    std::fs::write(repo.join("README"), "first\n").unwrap();
    app.run(
        "hg",
        &["-R", repo.to_str().unwrap(), "commit", "-A", "-m", "first"],
    );
    let mut pushed = 0;
    for handler in HANDLERS {
        // Plain http, even for an authenticated user: "ssl required" (403).
        let host = app.start(handler, &["--vdir", "/hg", "--user", "alice"]);
        let (ok, output) = clone_and_push(&app, &host, &format!("{handler}-http"));
        assert!(
            !ok && output.contains("ssl required"),
            "{handler}: {output}"
        );
        app.finish(host, handler);

        // https without a user: "push not authorized" (401; hg cannot ask for a password).
        let host = app.start(handler, &["--vdir", "/hg", "--https"]);
        let (ok, output) = clone_and_push(&app, &host, &format!("{handler}-anonymous"));
        assert!(
            !ok && output.contains("authorization"),
            "{handler}: {output}"
        );
        app.finish(host, handler);

        // https with alice: accepted, and the server's repository has the changeset.
        let host = app.start(handler, &["--vdir", "/hg", "--https", "--user", "alice"]);
        let (ok, output) = clone_and_push(&app, &host, &format!("{handler}-alice"));
        assert!(ok, "{handler}: the push failed:\n{output}");
        pushed += 1;
        app.finish(host, handler);
    }
    let log = app.run(
        "hg",
        &["-R", repo.to_str().unwrap(), "log", "-T", "{desc}\n"],
    );
    let descriptions: Vec<&str> = log.lines().collect();
    assert_eq!(descriptions.len(), 1 + pushed, "{log}");
    for handler in HANDLERS {
        assert!(
            descriptions.contains(&format!("from {handler}-alice").as_str()),
            "{log}"
        );
    }
}

/// `hg clone` of /hg/demo from `host` (must work: reading is open to all), a commit, and
/// `hg push` back; returns whether the push succeeded, and hg's output.
fn clone_and_push(app: &Example, host: &Host, label: &str) -> (bool, String) {
    let url = host.url("/hg/demo");
    let clone = app.dir.join(format!("clone-{label}"));
    let clone_path = clone.to_str().unwrap();
    app.run("hg", &["clone", "--noninteractive", &url, clone_path]);
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "first\n"
    );
    std::fs::write(clone.join(format!("{label}.txt")), label).unwrap();
    app.run(
        "hg",
        &[
            "-R",
            clone_path,
            "commit",
            "-A",
            "-m",
            &format!("from {label}"),
        ],
    );
    app.try_run(
        "hg",
        &["-R", clone_path, "push", "--noninteractive", &url],
        &app.dir,
    )
}
