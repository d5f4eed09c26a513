//! A start that fails after the library was loaded (here: a home without a standard library,
//! refused before Py_InitializeEx) hands out no `Api`: every safe function that takes one
//! would call PyGILState_Ensure on an interpreter that was never initialised.
#[path = "support/synthetic.rs"]
mod synthetic;

#[test]
#[cfg(unix)]
fn no_api_after_a_start_that_failed_before_initialising_python() {
    let dir = synthetic::scratch_dir("start-failed");
    // The real library, in a prefix of its own that has no lib/python3.X/os.py.
    let real = std::path::Path::new(env!("ISAPI_WSGI_BUILD_PYTHON_LIBRARY"));
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let library = lib.join(real.file_name().unwrap());
    let _ = std::fs::remove_file(&library);
    std::os::unix::fs::symlink(real, &library).unwrap();
    let log = dir.join("wsgi.log");
    let ini = dir.join("isapi_wsgi.ini");
    std::fs::write(
        &ini,
        format!(
            "[python]\nlibrary = {}\n[wsgi]\nlog = {}\n",
            library.display(),
            log.display()
        ),
    )
    .unwrap();
    synthetic::start(&ini);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("has no standard library"), "{text}");
    assert!(
        isapi_wsgi::python::runtime::api().is_none(),
        "the table was loaded, but Python does not run"
    );
    assert_eq!(synthetic::send(&synthetic::Request::get("/")).code(), 500);
    let _ = std::fs::remove_dir_all(&dir);
}
