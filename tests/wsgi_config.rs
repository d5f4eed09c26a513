//! Bad configurations (and none at all): each gives the documented log line, the library
//! still loads (GetExtensionVersion returns TRUE), and every request gets the 500 page "the
//! application failed to start" (with details only when debug = true). Each case runs in a
//! child process: a process can only start Python once.
#[path = "support/synthetic.rs"]
mod synthetic;

use synthetic::{Request, send};

const CASE_ENV: &str = "ISAPI_WSGI_CONFIG_CASE";

struct Case {
    name: &'static str,
    /// The ini text (`{apps}` and `{dir}` are replaced); None: no configuration at all.
    ini: Option<&'static str>,
    /// What the log must say.
    log: &'static [&'static str],
    status: u16,
    /// What the page must (and must not) contain.
    page: &'static [&'static str],
    page_not: &'static [&'static str],
}

const STARTUP_PAGE: &str = "The application failed to start";

const CASES: &[Case] = &[
    Case {
        name: "unknown_key",
        ini: Some("[wsgi]\napp = testapp:application\nthreads = 2\nworkers = 4\n"),
        log: &[
            "configuration error, the application is not started",
            "line 4: unknown key `workers` in [wsgi]; valid keys: app, handler, debug, log, threads, queue, shutdown_timeout, max_body",
        ],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &["workers"],
    },
    Case {
        name: "unknown_section",
        ini: Some("[server]\nport = 80\n"),
        log: &["unknown section [server]; valid sections: [python], [wsgi], [health]"],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "no_python_at_home",
        ini: Some("[python]\nhome = {dir}/no-such-python\n[wsgi]\napp = testapp:application\n"),
        log: &[
            "the application failed to start; every request gets a 500 page",
            "no-such-python: cannot read",
        ],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "no_such_library",
        ini: Some("[python]\nlibrary = {dir}/libpython3.99.so\n"),
        log: &["[python] library", "libpython3.99.so does not exist"],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "import_error_with_debug",
        ini: Some(
            "[python]\npath = {apps}\n[wsgi]\napp = no_such_module:application\ndebug = true\n",
        ),
        log: &[
            "the application failed to load:",
            "Traceback (most recent call last)",
            "ModuleNotFoundError: No module named 'no_such_module'",
        ],
        status: 500,
        page: &[
            STARTUP_PAGE,
            "ModuleNotFoundError: No module named 'no_such_module'",
        ],
        page_not: &[],
    },
    Case {
        name: "import_error_without_debug",
        ini: Some("[python]\npath = {apps}\n[wsgi]\napp = no_such_module:application\n"),
        log: &["ModuleNotFoundError: No module named 'no_such_module'"],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &["ModuleNotFoundError"],
    },
    Case {
        name: "not_callable",
        ini: Some("[python]\npath = {apps}\n[wsgi]\napp = testapp:CLOSED\n"),
        log: &["TypeError: [wsgi] app: testapp:CLOSED is a list, not a WSGI callable"],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "missing_path",
        ini: Some("[python]\npath = {dir}/nowhere\n[wsgi]\napp = testapp:application\n"),
        log: &[
            "FileNotFoundError: [python] path: ",
            "/nowhere is not a directory",
        ],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "bad_venv",
        ini: Some("[python]\nvenv = {dir}\n[wsgi]\napp = testapp:application\n"),
        log: &[
            "[python] venv: ",
            "is it a virtual environment for Python 3.",
        ],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "bad_app_spec",
        ini: Some("[wsgi]\napp = testapp.application\n"),
        log: &["line 2: [wsgi] app: `testapp.application` is not `module:attribute`"],
        status: 500,
        page: &[STARTUP_PAGE],
        page_not: &[],
    },
    Case {
        name: "factory",
        ini: Some("[python]\npath = {apps}\n[wsgi]\napp = factory:create_app()\n"),
        log: &["serving factory:create_app() with Python 3."],
        status: 200,
        page: &["made by create_app"],
        page_not: &[],
    },
    Case {
        name: "no_configuration_serves_the_demo",
        ini: None,
        log: &["no configuration file", "serving the built-in demo app"],
        status: 200,
        page: &["Hello from isapi-wsgi", "PATH_INFO"],
        page_not: &[],
    },
];

#[test]
fn each_bad_configuration_is_logged_and_answered_with_500() {
    let mut failures = Vec::new();
    for case in CASES {
        let output = synthetic::child_test("config_child")
            .env(CASE_ENV, case.name)
            .env_remove("ISAPI_WSGI_CONFIG")
            .output()
            .unwrap();
        // The child prints the log file; a file that cannot be parsed cannot name a log, so
        // those lines go to the default log, stderr: look in both.
        let text = synthetic::child_text(&output);
        let missing: Vec<&&str> = case
            .log
            .iter()
            .filter(|expected| !text.contains(**expected))
            .collect();
        if !output.status.success() || !missing.is_empty() {
            failures.push(format!("{}: log lacks {missing:?}\n{text}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "run by each_bad_configuration_is_logged_and_answered_with_500, once per case"]
fn config_child() {
    let name = std::env::var(CASE_ENV).expect("run by the parent test");
    let case = CASES.iter().find(|c| c.name == name).unwrap();
    let dir = synthetic::scratch_dir(&format!("config-{name}"));
    let log = dir.join("wsgi.log");
    match case.ini {
        Some(text) => {
            let text = text
                .replace("{apps}", &synthetic::apps_dir().display().to_string())
                .replace("{dir}", &dir.display().to_string());
            let ini = dir.join("site.ini");
            // Every case logs to a file (a last section, so line numbers stay as written).
            let text = format!("{text}[wsgi]\nlog = {}\n", log.display());
            std::fs::write(&ini, text).unwrap();
            synthetic::start(&ini);
        }
        None => start_without_configuration(),
    }
    let reply = send(&Request::get("/hello"));
    let page = reply.text();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    println!("status {}\npage {page}\nlog {log_text}", reply.status);
    assert_eq!(reply.code(), case.status, "status");
    for expected in case.page {
        assert!(page.contains(expected), "page lacks {expected:?}:\n{page}");
    }
    for unexpected in case.page_not {
        assert!(
            !page.contains(unexpected),
            "page shows {unexpected:?}:\n{page}"
        );
    }
    // The extension keeps answering.
    assert_eq!(send(&Request::get("/hello")).code(), case.status);
    let _ = std::fs::remove_dir_all(&dir);
}

fn start_without_configuration() {
    let mut info = isapi_wsgi::isapi::ffi::HSE_VERSION_INFO {
        dwExtensionVersion: 0,
        lpszExtensionDesc: [0; 256],
    };
    // SAFETY: a valid, writable HSE_VERSION_INFO.
    assert_eq!(unsafe { isapi_wsgi::GetExtensionVersion(&mut info) }, 1);
}
