//! Python types whose behaviour is written in safe Rust: `wsgi.input`, `wsgi.errors`,
//! `start_response`, `isapi.server_variable`.
//!
//! A [`Native`] implementation says what the type is called, which methods it has (each a
//! [`Method`]: the Python name and the Rust function that runs it, side by side), and
//! whether it is callable or an iterator; [`NativeType::new`] turns it into a real Python
//! type with `PyType_FromSpec` (once, at start-up). Instances do not own their Rust value:
//! they *borrow* it. [`NativeType::lend`] makes an instance pointing at a value the caller
//! keeps (the per-request state, on the handler's stack) for the duration of a closure;
//! when the closure ends, the instance forgets the value. An application that keeps
//! `start_response` or `wsgi.input` after its request ended gets a `ValueError`, never a
//! dangling pointer. An instance nobody kept (its reference count back to 1 when the loan
//! ends) is kept as the type's spare and lent again by the next loan, so that a request
//! makes no new objects; a kept one never is.
//!
//! The C side: each instance is a `PyObject` header followed by two words of ours, the
//! value pointer (NULL once the loan ended) and a count of the calls into it still running
//! (`BASICSIZE`). A method may release the GIL (a blocking read or write), so another
//! Python thread can be inside one when the loan ends: ending a loan waits (with the GIL
//! released) until those calls have returned, so the lender's value, and the request behind
//! it, outlive every use. Each method of each type gets its own monomorphised `extern "C"`
//! trampoline, which checks the pointer, builds a [`Gil`] token, catches panics (a panic must
//! never unwind into Python) and turns `Err` into a raised exception.
//!
//! That layout is computed here, not read from Python.h (the limited API keeps PyObject
//! opaque): it holds for CPython's default builds, where the header is `ob_refcnt` and
//! `ob_type`. It does not hold for a free-threaded build (3.13t: a larger header) or a
//! `Py_TRACE_REFS` build (two list pointers in front); neither supports the stable ABI, and
//! the runtime must refuse them at start-up.
use std::ffi::{CStr, c_int, c_void};
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::null_mut;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, Ordering};

use super::api::{Api, Exception, PyObject, ffi};
use super::object::{Gil, HeldScope, PyErr, PyRef, PyResult, PyStatic};

/// The API table for trampolines, which C calls without any context of ours.
static API: OnceLock<&'static Api> = OnceLock::new();

/// Most methods a native type may have (one trampoline is generated per position).
const MAX_METHODS: usize = 6;

/// The Rust side of a method: `instance.<name>(*args)` runs `body(value, gil, args,
/// instance)`, where `value` is what the instance was lent.
pub type MethodBody<T> =
    for<'py> fn(&T, Gil<'py>, Args<'py>, &PyRef<'py>) -> PyResult<'py, PyRef<'py>>;

/// One method of a [`Native`] type: its Python name and the function that runs it, in one
/// value, so that no list or index can pair a name with another method's body.
pub struct Method<T: ?Sized + 'static> {
    /// The attribute name, e.g. `c"read"`.
    pub name: &'static CStr,
    /// What calling it does.
    pub body: MethodBody<T>,
}

/// The positional arguments of a call.
pub struct Args<'py> {
    tuple: Option<PyRef<'py>>,
    length: usize,
    keywords: Option<PyRef<'py>>,
}

impl<'py> Args<'py> {
    /// How many positional arguments were passed.
    pub fn len(&self) -> usize {
        self.length
    }

    fn new(tuple: Option<PyRef<'py>>, keywords: Option<PyRef<'py>>) -> Args<'py> {
        let length = tuple.as_ref().map_or(0, PyRef::tuple_len);
        Args {
            tuple,
            length,
            keywords,
        }
    }

    /// Whether no positional argument was passed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positional argument `index`, if passed.
    pub fn get(&self, index: usize) -> Option<PyRef<'py>> {
        let tuple = self.tuple.as_ref()?;
        (index < self.length)
            .then(|| tuple.tuple_item(index))
            .flatten()
    }

    /// Keyword argument `name`, if passed.
    pub fn keyword(&self, name: &CStr) -> Option<PyRef<'py>> {
        let keywords = self.keywords.as_ref()?;
        let key = keywords.gil().str(name.to_str().ok()?).ok()?;
        keywords.get_item(&key)
    }

    /// Whether keyword arguments other than `allowed` were passed.
    pub fn has_keywords_besides(&self, allowed: &[&CStr]) -> bool {
        let Some(keywords) = &self.keywords else {
            return false;
        };
        let passed = keywords.len().unwrap_or(0);
        let known = allowed
            .iter()
            .filter(|name| self.keyword(name).is_some())
            .count();
        passed > known
    }
}

/// A Rust type that Python code can use as an object.
pub trait Native: Sync + 'static {
    /// The type's qualified name, e.g. `c"isapi_wsgi.Input"`.
    const NAME: &'static CStr;
    /// The type's methods (at most `MAX_METHODS`, 6).
    const METHODS: &'static [Method<Self>] = &[];
    /// Whether instances are callable (`call`).
    const CALLABLE: bool = false;
    /// Whether instances are iterators (`__iter__` returns self, `next`).
    const ITERATOR: bool = false;

    /// `instance(*args, **kwargs)`.
    fn call<'py>(
        &self,
        gil: Gil<'py>,
        args: Args<'py>,
        this: &PyRef<'py>,
    ) -> PyResult<'py, PyRef<'py>> {
        let _ = (args, this);
        Err(PyErr::new(
            gil,
            Exception::TypeError,
            "object is not callable",
        ))
    }

    /// `next(instance)`: `Ok(None)` ends the iteration.
    fn next<'py>(&self, gil: Gil<'py>) -> PyResult<'py, Option<PyRef<'py>>> {
        Err(PyErr::new(
            gil,
            Exception::TypeError,
            "object is not an iterator",
        ))
    }
}

/// A Python type made from a [`Native`] implementation.
pub struct NativeType<T: Native> {
    type_object: PyStatic,
    /// One instance nobody holds any more, kept for the next loan (a strong reference of
    /// ours, or NULL): a request then makes no new object (see [`NativeType::lend`]).
    spare: AtomicPtr<PyObject>,
    _value: PhantomData<fn(&T)>,
}

/// Clears an instance's value pointer when dropped (also on unwind). Only `lend` makes one,
/// for the instance it just made (its Drop relies on that: see `slot`).
struct EndLoan<'a, 'py>(&'a PyRef<'py>);

impl Drop for EndLoan<'_, '_> {
    fn drop(&mut self) {
        let object = self.0.as_ptr();
        // SAFETY: the object is an instance of a NativeType (`lend` made it; see BASICSIZE)
        // and the GIL is held (the PyRef proves it), which every access to the slot needs.
        unsafe { *slot(object) = null_mut() };
        // New calls now get a ValueError; wait for those already inside (they run on other
        // threads, which need the GIL to return). The count is only touched with the GIL.
        // SAFETY: as above; the count is only ever touched with the GIL held, which
        // `allow_threads` lets the calls inside take back to count themselves out.
        while unsafe { *calls(object) } > 0 {
            self.0
                .gil()
                .allow_threads(|| std::thread::sleep(std::time::Duration::from_millis(1)));
        }
    }
}

/// The address of an instance's count of calls in progress, the word after the value pointer.
///
/// # Safety
/// `object` must be a live instance of a type created by [`NativeType::new`]. The count may
/// only be read or written with the GIL held.
unsafe fn calls(object: *mut PyObject) -> *mut usize {
    // SAFETY: the instance is BASICSIZE bytes (the caller guarantees it is one of ours), and
    // the count's word, HEADER + one pointer in, lies inside them; pointer-aligned, as
    // Python's allocator aligns objects to at least 8 bytes and HEADER is two words.
    unsafe { slot(object).add(1).cast::<usize>() }
}

/// The address of an instance's value pointer, just after the PyObject header.
///
/// # Safety
/// `object` must be a live instance of a type created by [`NativeType::new`]. The slot may
/// only be read or written with the GIL held.
unsafe fn slot(object: *mut PyObject) -> *mut *const c_void {
    // SAFETY: the instance is BASICSIZE bytes (the caller guarantees it is one of ours), so
    // the word at HEADER is inside it, and pointer-aligned (see `calls`).
    unsafe { object.cast::<u8>().add(HEADER).cast::<*const c_void>() }
}

/// sizeof(PyObject) in CPython's default builds: `ob_refcnt` and `ob_type`, one word each
/// (not in a free-threaded or Py_TRACE_REFS build: see the module documentation).
const HEADER: usize = 2 * size_of::<usize>();

/// `tp_basicsize` of our types: the header, the value pointer ([`slot`]) and the count of
/// calls in progress ([`calls`]). No `tp_itemsize`, no `__dict__`, no weak references, and
/// the types cannot be subclassed (no Py_TPFLAGS_BASETYPE), so every instance has exactly
/// this layout; `__class__` assignment between two of them is refused too (CPython only
/// allows it between types whose extra slots it knows, and ours are opaque to it).
const BASICSIZE: usize = HEADER + size_of::<*const c_void>() + size_of::<usize>();

impl<T: Native> NativeType<T> {
    /// Creates the Python type (once per process).
    pub fn new(gil: Gil<'_>) -> PyResult<'_, NativeType<T>> {
        let api = gil.api();
        let _ = API.set(api);
        assert!(T::METHODS.len() <= MAX_METHODS, "raise MAX_METHODS");
        // The method table, the slots and the spec must outlive the type: leak them (once).
        // The trampoline at position I runs the body of T::METHODS[I], whose name it is
        // registered under here: one entry gives both.
        let trampolines = method_trampolines::<T>();
        let mut methods: Vec<ffi::PyMethodDef> = T::METHODS
            .iter()
            .zip(trampolines)
            .map(|(method, function)| ffi::PyMethodDef {
                ml_name: method.name.as_ptr(),
                // SAFETY: only the pointee type's name differs (bindgen's opaque `PyObject`
                // alias versus `_object`); both are the same C `PyObject *`.
                ml_meth: Some(unsafe {
                    std::mem::transmute::<
                        MethodFn,
                        unsafe extern "C" fn(
                            *mut ffi::PyObject,
                            *mut ffi::PyObject,
                        ) -> *mut ffi::PyObject,
                    >(function)
                }),
                ml_flags: ffi::METH_VARARGS as c_int,
                ml_doc: null_mut(),
            })
            .collect();
        methods.push(ffi::PyMethodDef {
            ml_name: null_mut(),
            ml_meth: None,
            ml_flags: 0,
            ml_doc: null_mut(),
        });
        let methods: &'static mut [ffi::PyMethodDef] = Box::leak(methods.into_boxed_slice());
        let mut slots = vec![
            slot_entry(ffi::Py_tp_dealloc, dealloc as *mut c_void),
            slot_entry(ffi::Py_tp_methods, methods.as_mut_ptr().cast()),
        ];
        if T::CALLABLE {
            slots.push(slot_entry(ffi::Py_tp_call, call::<T> as *mut c_void));
        }
        if T::ITERATOR {
            slots.push(slot_entry(ffi::Py_tp_iter, iter_self as *mut c_void));
            slots.push(slot_entry(
                ffi::Py_tp_iternext,
                iter_next::<T> as *mut c_void,
            ));
        }
        slots.push(ffi::PyType_Slot {
            slot: 0,
            pfunc: null_mut(),
        });
        let slots: &'static mut [ffi::PyType_Slot] = Box::leak(slots.into_boxed_slice());
        let spec = Box::leak(Box::new(ffi::PyType_Spec {
            name: T::NAME.as_ptr(),
            basicsize: BASICSIZE as c_int,
            itemsize: 0,
            flags: ffi::Py_TPFLAGS_DEFAULT,
            slots: slots.as_mut_ptr(),
        }));
        // SAFETY: a complete spec whose strings and arrays are leaked, hence 'static, as
        // PyType_FromSpec requires (the type keeps pointers into them); it returns a new
        // reference to the type or NULL with an exception set.
        let type_object = unsafe { gil.own((api.PyType_FromSpec)(spec)) }?;
        Ok(NativeType {
            type_object: type_object.into_static(),
            spare: AtomicPtr::new(null_mut()),
            _value: PhantomData,
        })
    }

    /// Runs `f` with an instance that uses `value`; when `f` returns (or unwinds) the
    /// instance forgets `value`, whoever still holds it. The instance is the spare one when
    /// there is one (the last loan's, which nobody kept), else a new one.
    pub fn lend<'py, R>(
        &self,
        gil: Gil<'py>,
        value: &T,
        f: impl FnOnce(&PyRef<'py>) -> R,
    ) -> PyResult<'py, R> {
        let value = value as *const T as *const c_void;
        let object = match self.take_spare(gil) {
            Some(object) => {
                // SAFETY: an instance of this type (only `keep_spare` puts one there), held
                // by us alone, with the GIL; `_end` below clears the pointer again before
                // the borrow of `value` ends.
                unsafe { *slot(object.as_ptr()) = value };
                object
            }
            // SAFETY: `value` outlives the loan: `_end` clears the instance's pointer (and
            // waits for the calls inside) before this function returns and the borrow of
            // `value` ends.
            None => unsafe { self.instance(gil, value) }?,
        };
        let end = EndLoan(&object);
        let result = f(&object);
        drop(end);
        self.keep_spare(object);
        Ok(result)
    }

    /// The spare instance, if there is one (it becomes the caller's).
    fn take_spare<'py>(&self, gil: Gil<'py>) -> Option<PyRef<'py>> {
        let spare = self.spare.swap(null_mut(), Ordering::Acquire);
        // SAFETY: a non-NULL spare is a strong reference of ours (see `keep_spare`), handed
        // over by the swap: owning it now is ours alone.
        (!spare.is_null())
            .then(|| unsafe { gil.own(spare) }.ok())
            .flatten()
    }

    /// Keeps `object`, whose loan has ended, as the spare instance if nobody else holds it
    /// (a kept `start_response` must stay the finished request's) and there is none yet.
    fn keep_spare(&self, object: PyRef<'_>) {
        // SAFETY: a live object's first word is its reference count in the builds we accept
        // (see the module documentation); read with the GIL held (the PyRef proves it), so
        // nobody changes it meanwhile. Our instances are not tracked by the garbage
        // collector and take no weak references: 1 means only `object` holds it.
        let alone = unsafe { *object.as_ptr().cast::<isize>() } == 1;
        if !alone {
            return;
        }
        let gil = object.gil();
        let pointer = object.into_ptr();
        if self
            .spare
            .compare_exchange(null_mut(), pointer, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // A spare is there already (another thread's loan ended first): released.
            // SAFETY: `into_ptr` handed us its reference; the GIL is still held.
            drop(unsafe { gil.own(pointer) });
        }
    }

    /// A new instance that uses `value` for ever (e.g. the shared `wsgi.errors`).
    pub fn forever<'py>(&self, gil: Gil<'py>, value: &'static T) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: a 'static value is valid for as long as any instance can live.
        unsafe { self.instance(gil, value as *const T as *const c_void) }
    }

    /// A new instance whose methods use the `T` at `value`.
    ///
    /// # Safety
    /// `value` must point to a `T` that stays valid until the instance's pointer is cleared
    /// (`EndLoan`), or for ever if it never is: the trampolines turn it into a `&T`.
    unsafe fn instance<'py>(
        &self,
        gil: Gil<'py>,
        value: *const c_void,
    ) -> PyResult<'py, PyRef<'py>> {
        let api = gil.api();
        let type_object = self.type_object.as_ptr(gil);
        // SAFETY: `type_object` is a live heap type; Py_tp_alloc is always filled in (inherited
        // PyType_GenericAlloc), so the slot is a valid allocfunc.
        let object = unsafe {
            let alloc = (api.PyType_GetSlot)(type_object.cast(), ffi::Py_tp_alloc as c_int);
            let alloc: unsafe extern "C" fn(*mut ffi::_typeobject, isize) -> *mut PyObject =
                std::mem::transmute(alloc);
            alloc(type_object.cast(), 0)
        };
        // SAFETY: tp_alloc returns a new reference or NULL with an exception set (MemoryError).
        let object = unsafe { gil.own(object) }?;
        // SAFETY: a fresh instance of our type (basicsize covers the slot, see `slot`),
        // zero-initialised by tp_alloc; nobody else has seen it yet.
        unsafe { *slot(object.as_ptr()) = value };
        Ok(object)
    }
}

fn slot_entry(slot: u32, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot {
        slot: slot as c_int,
        pfunc,
    }
}

type MethodFn = unsafe extern "C" fn(*mut PyObject, *mut PyObject) -> *mut PyObject;

fn method_trampolines<T: Native>() -> [MethodFn; MAX_METHODS] {
    [
        method::<T, 0>,
        method::<T, 1>,
        method::<T, 2>,
        method::<T, 3>,
        method::<T, 4>,
        method::<T, 5>,
    ]
}

/// Runs `body` for a C entry point: with the GIL token, the instance's value (or a
/// ValueError if its loan ended), panics caught; returns the new reference or NULL.
///
/// # Safety
/// `this` must be a live instance of a `NativeType<T>`, and the GIL held (Python calls our
/// slots only with the GIL).
unsafe fn enter<T: Native>(
    this: *mut PyObject,
    body: impl for<'py> FnOnce(Gil<'py>, &T, PyRef<'py>) -> PyResult<'py, Option<PyRef<'py>>>,
) -> *mut PyObject {
    let Some(api) = API.get().copied() else {
        return null_mut();
    };
    // SAFETY: Python holds the GIL while calling a slot.
    let gil = unsafe { Gil::assume(api) };
    let _held = HeldScope::enter(); // the GIL is ours until we return to Python
    // SAFETY: `this` is a live instance of our type (the caller's promise), and the GIL is
    // held.
    let value = unsafe { *slot(this) } as *const T;
    if value.is_null() {
        let message = format!(
            "{} is no longer usable: its request has finished",
            T::NAME.to_string_lossy()
        );
        PyErr::new(gil, Exception::ValueError, &message).restore();
        return null_mut();
    }
    // SAFETY: a non-NULL pointer is a value whose loan has not ended (`EndLoan` clears it,
    // then waits for the count of calls to drop to zero, before the lender's borrow ends) or
    // a 'static value; T: Sync allows the shared access.
    let value = unsafe { &*value };
    // SAFETY: `this` is an instance of our type, and the GIL is held.
    unsafe { *calls(this) += 1 };
    /// Counts the call out when it returns or unwinds (the GIL is held again by then).
    struct Leave(*mut PyObject);
    impl Drop for Leave {
        fn drop(&mut self) {
            // SAFETY: the instance is alive (Python holds it for the call) and the GIL is held.
            unsafe { *calls(self.0) -= 1 };
        }
    }
    let _leave = Leave(this);
    // SAFETY: `this` is live for the duration of the call.
    let this = unsafe { gil.borrowed(this) };
    match catch_unwind(AssertUnwindSafe(|| body(gil, value, this))) {
        Ok(Ok(Some(result))) => result.into_ptr(),
        Ok(Ok(None)) => null_mut(),
        Ok(Err(error)) => {
            error.restore();
            null_mut()
        }
        Err(_) => {
            PyErr::new(
                gil,
                Exception::RuntimeError,
                "internal error in isapi_wsgi (a Rust panic); see the log",
            )
            .restore();
            null_mut()
        }
    }
}

/// The C entry point of `T::METHODS[I]` (registered under that entry's name).
unsafe extern "C" fn method<T: Native, const I: usize>(
    this: *mut PyObject,
    args: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: Python calls a method only on instances of the type whose method table holds
    // it (method descriptors check `self`'s type), with the GIL held; `args` is the
    // positional tuple of a METH_VARARGS call, live for the call.
    unsafe {
        enter::<T>(this, |gil, value, this| {
            let args = Args::new((!args.is_null()).then(|| gil.borrowed(args)), None);
            let Some(method) = T::METHODS.get(I) else {
                return Err(PyErr::new(gil, Exception::TypeError, "no such method"));
            };
            (method.body)(value, gil, args, &this).map(Some)
        })
    }
}

unsafe extern "C" fn call<T: Native>(
    this: *mut PyObject,
    args: *mut PyObject,
    kwargs: *mut PyObject,
) -> *mut PyObject {
    // SAFETY: Python calls tp_call on instances of the type, with the GIL.
    unsafe {
        enter::<T>(this, |gil, value, this| {
            let args = Args::new(
                (!args.is_null()).then(|| gil.borrowed(args)),
                (!kwargs.is_null()).then(|| gil.borrowed(kwargs)),
            );
            value.call(gil, args, &this).map(Some)
        })
    }
}

unsafe extern "C" fn iter_next<T: Native>(this: *mut PyObject) -> *mut PyObject {
    // SAFETY: Python calls tp_iternext on instances of the type, with the GIL. Returning NULL
    // without an exception set ends the iteration.
    unsafe { enter::<T>(this, |gil, value, _| value.next(gil)) }
}

unsafe extern "C" fn iter_self(this: *mut PyObject) -> *mut PyObject {
    let Some(api) = API.get() else {
        return null_mut();
    };
    // SAFETY: a live object, with the GIL: return a new reference to it.
    unsafe { (api.Py_IncRef)(this) };
    this
}

unsafe extern "C" fn dealloc(this: *mut PyObject) {
    let Some(api) = API.get() else { return };
    // SAFETY: called once when the last reference goes, with the GIL. Instances own nothing
    // of ours (the value is borrowed), so freeing the memory with the type's tp_free and
    // dropping the reference every heap-type instance holds on its type is all there is.
    unsafe {
        let kind = (api.PyObject_Type)(this);
        let free = (api.PyType_GetSlot)(kind.cast(), ffi::Py_tp_free as c_int);
        let free: unsafe extern "C" fn(*mut c_void) = std::mem::transmute(free);
        free(this.cast());
        (api.Py_DecRef)(kind); // the reference PyObject_Type returned
        (api.Py_DecRef)(kind); // the instance's own reference to its heap type
    }
}
