//! The CPython C API as one table of function pointers, resolved at run time.
//!
//! The extension never links against Python: which interpreter it uses is a matter of
//! configuration, so the same built library serves CPython 3.8 to 3.13. At start-up
//! `Api::load` looks up every function and data symbol named in `headers/python.h` in the
//! loaded libpython (dlsym / GetProcAddress) and keeps them in [`Api`]: one typed,
//! non-optional pointer per function, with the signature bindgen read from Python.h itself.
//! A missing symbol is reported by name, so an interpreter that is too old is a clear error
//! rather than a crash on the first request.
//!
//! **An `&'static Api` means Python is running.** Only `runtime.rs` loads the table
//! (`Api::load` is private to `crate::python`, and an `Api` cannot be built field by field
//! outside this module), and it hands the table out ([`runtime::api`](super::runtime::api),
//! and through the [`Gil`](super::Gil) tokens it makes) only once `Py_InitializeEx` has
//! succeeded or Python was found running. The safe functions that take one
//! ([`Gil::acquire`](super::Gil::acquire), [`ThreadAttachment::new`](super::ThreadAttachment::new),
//! [`keep_thread_state`](super::keep_thread_state)) rely on that: PyGILState_Ensure before
//! Py_Initialize is undefined behaviour.
//!
//! This is the lowest Python layer: everything here is raw C API. Only `object.rs`, `native.rs`
//! and `runtime.rs` call into it; they wrap each call in a safe function.
use std::ffi::c_void;

use crate::sys::Library;

/// bindgen's translation of `headers/python.h`: C types, constants and `pfn_*` function types.
#[allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    dead_code,
    clippy::all
)]
pub mod ffi {
    include!(concat!(env!("OUT_DIR"), "/python.rs"));
}
/// A Python object (opaque; only ever handled by pointer).
pub use ffi::_object as PyObject;

/// The function type inside bindgen's `Option<unsafe extern "C" fn ...>`: the table stores
/// plain function pointers, because `Api::load` refuses to build one with a hole in it.
pub trait Required {
    /// The non-optional function pointer type.
    type Fn: Copy;
}
impl<F: Copy> Required for Option<F> {
    type Fn = F;
}

/// Defines [`Api`] from the list of names build.rs extracted from `headers/python.h`.
macro_rules! python_table {
    (functions: [$($name:ident: $pfn:ident),* $(,)?], data: [$($data:ident),* $(,)?] $(,)?) => {
        /// Every C API function and data symbol the extension uses, resolved in one library.
        ///
        /// Function fields carry their C name (`api.PyDict_SetItem`); data fields hold the
        /// address of the exported variable (`_Py_NoneStruct` *is* the None object, while
        /// `PyExc_TypeError` holds a pointer to the exception type: see the accessors).
        ///
        /// Only `runtime.rs` makes one, and an `&'static Api` outside it means Python is
        /// initialised (see the module documentation).
        // Not #[non_exhaustive]: that would still let any module of this crate build one.
        #[allow(non_snake_case, clippy::manual_non_exhaustive)]
        pub struct Api {
            $(pub $name: <ffi::$pfn as Required>::Fn,)*
            $(pub $data: *mut c_void,)*
            /// Functions newer than the 3.8 stable ABI, used when the interpreter has them.
            pub newer: Newer,
            /// Private, so that no code outside this module can build an `Api`.
            _only_load: (),
        }

        impl Api {
            /// Resolves every symbol in `library`; the error names the first one missing.
            ///
            /// Private to `crate::python`: the table it returns is not yet proof that Python
            /// runs, so only `runtime.rs`, which starts Python, may hold one.
            pub(super) fn load(library: &Library) -> Result<Api, String> {
                Ok(Api {
                    $($name: {
                        let address = find(library, stringify!($name))?;
                        // SAFETY: `address` is the non-null address of the exported C function
                        // `$name`, whose prototype (from the same Python.h) is exactly the
                        // function-pointer type bindgen generated as `$pfn`; data and function
                        // pointers have the same size on every platform we build for.
                        unsafe { std::mem::transmute::<*mut c_void, <ffi::$pfn as Required>::Fn>(address) }
                    },)*
                    $($data: find(library, stringify!($data))?,)*
                    newer: Newer::load(library),
                    _only_load: (),
                })
            }
        }
    };
}

include!(concat!(env!("OUT_DIR"), "/python_names.rs"));

fn find(library: &Library, name: &str) -> Result<*mut c_void, String> {
    library.symbol(name).ok_or_else(|| {
        format!(
            "{} does not export {name}: it is not a CPython 3.8+ library, or too old",
            library.path().display()
        )
    })
}

// SAFETY: the table only holds addresses inside a library that is never unloaded; calling
// through them is governed by the GIL, which the safe layers above enforce.
unsafe impl Send for Api {}
// SAFETY: the table is never mutated after `load`.
unsafe impl Sync for Api {}

impl Api {
    /// The `None` singleton (borrowed).
    pub fn none(&self) -> *mut PyObject {
        self._Py_NoneStruct.cast()
    }
    /// `True` (borrowed).
    pub fn true_(&self) -> *mut PyObject {
        self._Py_TrueStruct.cast()
    }
    /// `False` (borrowed).
    pub fn false_(&self) -> *mut PyObject {
        self._Py_FalseStruct.cast()
    }
    /// A built-in exception type, read from its exported `PyObject *` variable (borrowed).
    pub fn exception(&self, kind: Exception) -> *mut PyObject {
        let variable = match kind {
            Exception::TypeError => self.PyExc_TypeError,
            Exception::ValueError => self.PyExc_ValueError,
            Exception::RuntimeError => self.PyExc_RuntimeError,
            Exception::OSError => self.PyExc_OSError,
            Exception::AssertionError => self.PyExc_AssertionError,
        };
        // SAFETY: each PyExc_* address is that of an exported `PyObject *` variable in a
        // library that is never unloaded, so reading it is sound; CPython initialises it
        // (statically, or before Py_Initialize returns) and never changes it afterwards.
        unsafe { *variable.cast::<*mut PyObject>() }
    }
}

/// Stable-ABI functions added after 3.8: optional, with a fallback where they are used.
///
/// Python.h under `Py_LIMITED_API 3.8` does not declare them, so their types cannot come
/// from the header; each signature is copied from the CPython documentation.
#[allow(non_snake_case)]
pub struct Newer {
    /// `const char *PyUnicode_AsUTF8AndSize(PyObject *unicode, Py_ssize_t *size)`, 3.10+:
    /// the str's cached UTF-8 form, without a new object.
    pub PyUnicode_AsUTF8AndSize:
        Option<unsafe extern "C" fn(*mut PyObject, *mut isize) -> *const std::ffi::c_char>,
}

impl Newer {
    fn load(library: &Library) -> Newer {
        Newer {
            PyUnicode_AsUTF8AndSize: library.symbol("PyUnicode_AsUTF8AndSize").map(|address| {
                // SAFETY: the export has the documented signature above (stable ABI since 3.10).
                unsafe {
                    std::mem::transmute::<
                        *mut c_void,
                        unsafe extern "C" fn(*mut PyObject, *mut isize) -> *const std::ffi::c_char,
                    >(address)
                }
            }),
        }
    }
}

/// The built-in exception types the extension raises itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    TypeError,
    ValueError,
    RuntimeError,
    OSError,
    AssertionError,
}
