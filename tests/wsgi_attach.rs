//! Python already running in the process (started by someone else, as another extension or
//! the host application might): the extension attaches to it instead of starting a second
//! interpreter, and serves requests as usual.
#[path = "support/synthetic.rs"]
mod synthetic;

use isapi_wsgi::python::Api;
use isapi_wsgi::sys::{Library, Visibility};
use synthetic::{Request, send};

#[test]
fn attaches_to_a_running_interpreter() {
    // Start Python ourselves first, from the same library the extension will use.
    let library = Library::open(
        std::path::Path::new(env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY")),
        Visibility::Global,
    )
    .unwrap();
    let api = Api::load(&library).unwrap();
    // SAFETY: Python is not running in this fresh test process; after initialising, this
    // thread holds the GIL, which PyEval_SaveThread gives up.
    unsafe {
        assert_eq!((api.Py_IsInitialized)(), 0);
        (api.Py_InitializeEx)(0);
        (api.PyEval_SaveThread)();
    }
    std::mem::forget(library);

    let dir = synthetic::start_once("attach", |dir| {
        format!(
            "[python]\npath = {}\n[wsgi]\napp = testapp:application\nlog = {}\n",
            synthetic::apps_dir().display(),
            dir.join("wsgi.log").display()
        )
    });
    let log = std::fs::read_to_string(dir.join("wsgi.log")).unwrap();
    assert!(log.contains("serving testapp:application"), "{log}");
    assert_eq!(send(&Request::get("/hello")).text(), "Hello, World!");
    assert_eq!(
        send(&Request::post("/echo", "text/plain", b"attached")).text(),
        "attached"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
