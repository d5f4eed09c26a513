//! `[python] home` naming a virtual environment: the bridge starts the venv's base CPython
//! (its `pyvenv.cfg` says where that is) and adds the venv's site-packages, where the app is.
//! A real venv of a pyenv CPython, served by the real host (`--strict`). Debian's layout
//! (`home = /usr`) is tested in tests/sid_pythons.rs.
#![cfg(unix)]
mod common;

use std::process::Command;

use common::{Site, curl};

#[test]
fn a_home_that_is_a_venv_serves_its_base_python_and_its_packages() {
    let prefix = Command::new("pyenv")
        .args(["prefix", "3.12.1"])
        .output()
        .unwrap();
    let prefix = String::from_utf8_lossy(&prefix.stdout).trim().to_string();
    assert!(!prefix.is_empty(), "pyenv must have CPython 3.12.1");
    let site = Site::new(
        "venv-home",
        "[python]\nhome = {venv}\n[wsgi]\napp = venvapp:application\nlog = {log}\n",
    );
    let venv = site.dir.join("venv");
    let made = Command::new(format!("{prefix}/bin/python3.12"))
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        venv.join("lib/python3.12/site-packages/venvapp.py"),
        "import sys\n\ndef application(environ, start_response):\n    \
         start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
         return [('%s %s' % (sys.version_info[:2], __file__)).encode()]\n",
    )
    .unwrap();
    let ini = std::fs::read_to_string(&site.ini).unwrap();
    std::fs::write(
        &site.ini,
        ini.replace("{venv}", &venv.display().to_string()),
    )
    .unwrap();
    let host = site.start(&[]);
    let body = String::from_utf8_lossy(&curl(&[&host.url("/")]).1).into_owned();
    let expected = format!(
        "(3, 12) {}/lib/python3.12/site-packages/venvapp.py",
        venv.display()
    );
    assert_eq!(body, expected, "{}", site.log());
    let log = site.log();
    let chosen = format!(
        "[python] home {} is a virtual environment: using its base CPython {prefix} ({prefix}/lib/libpython3.12.so",
        venv.display()
    );
    assert!(log.contains(&chosen), "{chosen:?} not in\n{log}");
    site.finish(host);
}
