//! The examples/ apps, each started from its own ini file (flask and django with the test
//! venv in place of their `.venv`), in a child process each, answering a request through
//! `HttpExtensionProc` on synthetic ECBs.
#[path = "support/synthetic.rs"]
mod synthetic;

use std::path::{Path, PathBuf};

use synthetic::{Request, send};

const EXAMPLE_ENV: &str = "ISAPI_WSGI_EXAMPLE";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

#[test]
fn every_example_serves_its_page() {
    let mut failures = Vec::new();
    for example in ["hello", "environ", "echo", "flask", "django"] {
        let output = synthetic::child_test("example_child")
            .env(EXAMPLE_ENV, example)
            .output()
            .unwrap();
        if !output.status.success() {
            failures.push(format!("{example}:\n{}", synthetic::child_text(&output)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
#[ignore = "run by every_example_serves_its_page, once per example"]
fn example_child() {
    let example = std::env::var(EXAMPLE_ENV).expect("run by the parent test");
    let dir = examples_dir().join(&example);
    let mut ini = dir.join("isapi_wsgi.ini");
    let text = std::fs::read_to_string(&ini).unwrap();
    if text.contains("venv = .venv") {
        // The example's own venv is the reader's to make; the tests use theirs, and the
        // rest of the file as written (paths stay relative to the example's directory).
        let venv = std::env::var_os("ISAPI_WSGI_TEST_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target")
                    .join("test-venv")
            });
        ini = dir.join(format!("test-{}.ini", std::process::id()));
        std::fs::write(
            &ini,
            text.replace("venv = .venv", &format!("venv = {}", venv.display())),
        )
        .unwrap();
    }
    synthetic::start(&ini);
    if ini
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("test-")
    {
        let _ = std::fs::remove_file(&ini);
    }
    let (request, expected) = match example.as_str() {
        "hello" => (Request::get("/"), "Hello, World!"),
        "environ" => (Request::get("/some/path?x=1"), "PATH_INFO = '/some/path'"),
        "echo" => (
            Request::post("/", "text/plain", b"echo me\nplease\n"),
            "echo me\nplease\n",
        ),
        "flask" => (Request::get("/hello/World"), "Hello, World!"),
        "django" => (Request::get("/"), "Django under isapi-wsgi"),
        other => panic!("unknown example {other}"),
    };
    let reply = send(&request);
    assert_eq!(reply.code(), 200, "{}", reply.text());
    assert!(reply.text().contains(expected), "{}", reply.text());
}
