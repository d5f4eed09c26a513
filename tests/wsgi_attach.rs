//! Python already running in the process (started by someone else, as another extension or
//! the host application might): the extension attaches to it instead of starting a second
//! interpreter, and serves requests as usual.
#[path = "support/synthetic.rs"]
mod synthetic;

use std::ffi::c_void;

use isapi_wsgi::python::api::ffi;
use isapi_wsgi::sys::{Library, Visibility};
use synthetic::{Request, send};

#[test]
fn attaches_to_a_running_interpreter() {
    // Start Python ourselves first, from the same library the extension will use, with its
    // own symbols, as an embedding application would (the extension's Api table is only
    // handed out once Python runs).
    let library = Library::open(
        std::path::Path::new(env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY")),
        Visibility::Global,
    )
    .unwrap();
    let symbol = |name: &str| library.symbol(name).unwrap_or_else(|| panic!("no {name}"));
    // SAFETY: each address is the exported C function of that name, and bindgen generated
    // its `pfn_` type from the same Python.h prototype (an Option of a function pointer, the
    // size of the data pointer it is made from).
    let (is_initialized, initialize, save_thread) = unsafe {
        use std::mem::transmute;
        (
            transmute::<*mut c_void, ffi::pfn_Py_IsInitialized>(symbol("Py_IsInitialized"))
                .unwrap(),
            transmute::<*mut c_void, ffi::pfn_Py_InitializeEx>(symbol("Py_InitializeEx")).unwrap(),
            transmute::<*mut c_void, ffi::pfn_PyEval_SaveThread>(symbol("PyEval_SaveThread"))
                .unwrap(),
        )
    };
    assert!(
        isapi_wsgi::python::runtime::api().is_none(),
        "no Api before Python runs"
    );
    // SAFETY: Python is not running in this fresh test process; after initialising, this
    // thread holds the GIL, which PyEval_SaveThread gives up.
    unsafe {
        assert_eq!(is_initialized(), 0);
        initialize(0);
        save_thread();
    }
    std::mem::forget(library);

    let dir = synthetic::start_once("attach", |dir| {
        format!(
            "[python]\npath = {}\n[wsgi]\napp = testapp:application\nhandler = simple\nlog = {}\n",
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
