//! A site moving from wfastcgi: no isapi_wsgi.ini, but a web.config with wfastcgi's
//! `<appSettings>` in the library's parent directory (the DLL in the site's `bin\`). The
//! extension serves what `WSGI_HANDLER` names, with `PYTHONPATH` and `WSGI_LOG`, and the
//! other settings in `os.environ`; through the real host with `--strict`.
mod common;

use common::{Host, bridge_library, get};
use std::path::{Path, PathBuf};

/// A site folder with `web.config`, `myapp.py` in `src/`, and a copy of the library in `bin/`.
/// Returns the site folder and the library's path.
fn site(name: &str, web_config: &str) -> (PathBuf, PathBuf) {
    let dir = common::scratch_dir(&format!("wfastcgi-{name}"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("web.config"), web_config).unwrap();
    std::fs::write(
        dir.join("src").join("myapp.py"),
        "import os, sys\n\
         def application(environ, start_response):\n\
         \x20   body = ('setting=%s first=%s' % (os.environ.get('MY_SETTING'), sys.path[0])).encode()\n\
         \x20   start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n\
         \x20   return [body]\n\
         def make_app():\n\
         \x20   return application\n",
    )
    .unwrap();
    let library = dir.join("bin").join(bridge_library().file_name().unwrap());
    std::fs::copy(bridge_library(), &library).unwrap();
    (dir, library)
}

fn web_config(handler: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <appSettings>
    <!-- as wfastcgi's README writes them -->
    <add key="WSGI_HANDLER" value="{handler}" />
    <add key="PYTHONPATH" value="src" />
    <add key="WSGI_LOG" value="wfastcgi.log" />
    <add key='MY_SETTING' value="a &amp; b" />
    <add key="WSGI_RESTART_FILE_REGEX" value=".*((\.py)|(\.config))$" />
  </appSettings>
  <system.webServer>
    <handlers><clear /></handlers>
  </system.webServer>
</configuration>
"#
    )
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("wfastcgi.log")).unwrap_or_default()
}

#[test]
fn wfastcgi_app_settings_configure_the_extension_when_there_is_no_ini() {
    for handler in ["myapp.application", "myapp.make_app()"] {
        let (dir, library) = site("app", &web_config(handler));
        let host = Host::start_with_env(&library, &["--strict"], &[]);
        let body = get(host.addr, "/").text();
        let src = dir.join("src").display().to_string();
        assert_eq!(body, format!("setting=a & b first={src}"), "{handler}");
        let stopped = host.stop();
        stopped.assert_clean();
        let log = log(&dir);
        assert!(
            log.contains(&format!(
                "configuration {} (wfastcgi's appSettings, as no isapi_wsgi.ini exists): WSGI_HANDLER {handler} as app; PYTHONPATH src as path; WSGI_LOG wfastcgi.log as log; MY_SETTING into os.environ; WSGI_RESTART_FILE_REGEX is not used",
                dir.join("web.config").display()
            )),
            "{handler}:\n{log}\n{}",
            stopped.stderr
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_ini_wins_over_the_web_config() {
    let (dir, library) = site("ini-wins", &web_config("myapp.application"));
    std::fs::write(
        library.with_file_name("isapi_wsgi.ini"),
        format!(
            "[python]\npath = {}\n[wsgi]\napp = watchdog_app:app\n",
            common::apps_dir().display()
        ),
    )
    .unwrap();
    let host = Host::start_with_env(&library, &["--strict"], &[]);
    assert_eq!(get(host.addr, "/x").text(), "done: /x");
    host.stop().assert_clean();
    assert!(log(&dir).is_empty(), "WSGI_LOG was not used");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_web_config_without_wsgi_handler_is_not_ours_and_a_broken_one_is_reported() {
    let (dir, library) = site(
        "not-ours",
        "<configuration><system.webServer/></configuration>",
    );
    let host = Host::start_with_env(&library, &["--strict"], &[]);
    let stopped = host.stop();
    assert!(
        stopped.stderr.contains("no configuration file ("),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);

    let (dir, library) = site(
        "broken",
        "<configuration>\n<appSettings>\n<add key=\"WSGI_HANDLER\" value=\"myapp.application\">\n</appSettings>\n</configuration>\n",
    );
    let host = Host::start_with_env(&library, &["--strict"], &[]);
    common::assert_startup_failure_pages(&host, "broken web.config");
    let stopped = host.stop();
    assert!(
        stopped.stderr.contains(&format!(
            "configuration error, the application is not started: {}: line 4: </appSettings> does not close <add>",
            dir.join("web.config").display()
        )),
        "{}",
        stopped.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}
