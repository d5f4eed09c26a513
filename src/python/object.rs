//! Safe handles on Python objects: the GIL token, owned references, errors.
//!
//! Three rules of the C API are turned into types here, so that code above this module
//! cannot break them:
//!
//! * **Nothing without the GIL.** [`Gil`] is a token that exists only while this thread
//!   holds the GIL ([`Gil::acquire`]); it is `Copy` but not `Send`, and every operation takes
//!   one.
//! * **Every reference is released once.** [`PyRef`] owns one strong reference and drops it
//!   with `Py_DecRef`; its lifetime is tied to the token, so it cannot outlive the GIL.
//!   Objects kept across requests (the application, interned environ keys) are [`PyStatic`]:
//!   shareable between threads, usable only through a `Gil`, and never released (the
//!   interpreter is never finalised either).
//! * **Exceptions become `Result`s.** A failing call yields a [`PyErr`] holding the exception;
//!   it can be raised again ([`PyErr::restore`]) or rendered as a traceback ([`PyErr::text`]).
use std::ffi::{CStr, CString, c_char};
use std::marker::PhantomData;
use std::ptr::{NonNull, null_mut};

use super::api::{Api, Exception, PyObject, ffi};

/// Proof that the current thread holds the GIL, for the lifetime `'py`.
#[derive(Clone, Copy)]
pub struct Gil<'py> {
    api: &'static Api,
    _not_send: PhantomData<(&'py (), *mut ())>,
}

/// The result of a Python operation.
pub type PyResult<'py, T> = Result<T, PyErr<'py>>;

thread_local! {
    /// How many of our GIL scopes are live on this thread: [`Gil::acquire`] calls and Python's
    /// calls into our types (native.rs), minus those inside [`Gil::allow_threads`]. Nonzero
    /// means this thread holds the GIL under a [`Gil`] token, which [`ThreadAttachment`] must
    /// not take away. (The start-up thread's `setup` is not counted: no attachment can exist on
    /// it, as no `Api` is handed out before Python runs, and that thread has Python's first
    /// thread state, so [`ThreadAttachment::new`] refuses there anyway.)
    ///
    /// A `const` Cell with no destructor, so it is readable even while the thread's other
    /// thread-locals are being destroyed.
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Whether this thread holds the GIL in one of our scopes (see [`HELD`]).
fn gil_held_here() -> bool {
    HELD.with(|held| held.get() > 0)
}

/// Counts one GIL scope of ours on this thread while it lives (see [`HELD`]).
pub(super) struct HeldScope(PhantomData<*mut ()>);

impl HeldScope {
    /// Call only while this thread holds the GIL, and drop before it gives the GIL up. A
    /// count too high is never unsound (attachments are then refused, or kept until the
    /// thread ends); too low, a ThreadAttachment dropped in the scope would wait for the GIL
    /// its own thread holds. So every scope that makes a `Gil` token enters one.
    pub(super) fn enter() -> HeldScope {
        HELD.with(|held| held.set(held.get() + 1));
        HeldScope(PhantomData)
    }
}

impl Drop for HeldScope {
    fn drop(&mut self) {
        HELD.with(|held| held.set(held.get() - 1));
    }
}

/// Keeps a Python thread state for the calling thread while it lives.
///
/// Without it, each [`Gil::acquire`] on a thread Python does not know creates a thread state
/// and deletes it again (PyGILState_Ensure/Release), which costs several microseconds and
/// empties the app's `threading.local` data every time. A long-lived thread of our own (a
/// threadpool worker) makes one of these when it starts and drops it before it ends;
/// `Gil::acquire` on that thread then only takes the GIL. It is not `Send`: it must be
/// dropped on the thread that made it. IIS's own threads use [`keep_thread_state`] instead.
pub struct ThreadAttachment {
    api: &'static Api,
    state: super::api::ffi::PyGILState_STATE,
    saved: *mut super::api::ffi::_ts,
}

impl ThreadAttachment {
    /// Gives this thread a Python thread state, without holding the GIL afterwards.
    ///
    /// None, and nothing done, if the thread already has a Python thread state. That covers
    /// every thread that holds the GIL (inside [`Gil::acquire`], or in a method of one of
    /// our types that Python called), where taking a state and giving up the GIL
    /// (PyEval_SaveThread) would release the GIL under a live [`Gil`] token. It also covers
    /// a thread that keeps one already ([`keep_thread_state`], an earlier attachment, the
    /// thread that started Python, a Python thread): `Gil::acquire` there uses that state,
    /// which costs no more than an attachment would.
    ///
    /// (CPython's `PyGILState_Check` would say whether the GIL is held, but it is not in the
    /// stable ABI; this check needs only `PyGILState_GetThisThreadState`, plus our own count
    /// of GIL scopes for a thread whose PyGILState slot CPython cleared.)
    pub fn new(api: &'static Api) -> Option<ThreadAttachment> {
        if gil_held_here() {
            return None;
        }
        // SAFETY: no preconditions once Python runs (an `&'static Api` proves it does);
        // reads this thread's PyGILState slot.
        if !unsafe { (api.PyGILState_GetThisThreadState)() }.is_null() {
            return None;
        }
        // SAFETY: Python runs (the `Api`), and this thread has no thread state, so it does
        // not hold the GIL: PyGILState_Ensure makes a state and takes the GIL with it, and
        // PyEval_SaveThread gives the GIL up at once, keeping the state for this thread.
        let (state, saved) = unsafe {
            let state = (api.PyGILState_Ensure)();
            (state, (api.PyEval_SaveThread)())
        };
        Some(ThreadAttachment { api, state, saved })
    }
}

impl Drop for ThreadAttachment {
    fn drop(&mut self) {
        if gil_held_here() {
            // Dropped inside a GIL scope on this thread (moved into Gil::acquire's closure,
            // say): the GIL is held with this very state, so it can neither be restored here
            // (the thread would wait for itself) nor released (the live token would lose the
            // GIL). Keep the state until the thread ends, as keep_thread_state does; the
            // scope's own PyGILState_Release then leaves it registered, without the GIL.
            // SAFETY: `saved` is this thread's own state (made by `new` on this thread: the
            // attachment is not Send), and the PyGILState_Ensure of `new` is never released.
            unsafe { keep_until_thread_exit(self.api, self.saved) };
            return;
        }
        // SAFETY: on the thread that made it (not Send), which does not hold the GIL (no scope
        // of ours is live; only our scopes run Python on a thread with an attachment): take
        // the GIL back with the saved thread state, then release the PyGILState_Ensure of
        // `new`, which deletes the state if nothing else on this thread still uses it.
        unsafe {
            (self.api.PyEval_RestoreThread)(self.saved);
            (self.api.PyGILState_Release)(self.state);
        }
    }
}

/// Hands this thread's state to the [`Reaper`] for when the thread ends (KEPT), unless it
/// keeps one already (then it is this same state). At thread exit, with KEPT gone, the
/// state is left to the interpreter (not deleted: a small leak, as for a failed reaper).
///
/// # Safety
/// `state` must be the calling thread's own Python thread state, kept alive by a
/// PyGILState_Ensure of ours that is never released, so that nobody else deletes it.
unsafe fn keep_until_thread_exit(api: &'static Api, state: *mut super::api::ffi::_ts) {
    let _ = KEPT.try_with(|kept| {
        let mut kept = kept.borrow_mut();
        if kept.is_none() {
            Reaper::start(api);
            // SAFETY: the caller's promise.
            *kept = Some(unsafe { KeptState::new(state) });
        }
    });
}

/// The calling thread's identifier as Python knows it (`threading.get_ident()`, the keys of
/// `sys._current_frames()`), read without the GIL.
// `unsigned long`: 64 bits on Linux, 32 on Windows, hence the conversion.
#[allow(clippy::useless_conversion)]
pub fn thread_ident(api: &'static Api) -> u64 {
    // SAFETY: PyThread_get_thread_ident has no preconditions: it needs neither the GIL nor a
    // thread state (it is the platform's thread id), and Python is loaded (the Api proves it).
    u64::from(unsafe { (api.PyThread_get_thread_ident)() })
}

/// Gives the calling thread, which is not ours (an IIS thread), a Python thread state that
/// it keeps until it ends, so that each request on it only takes the GIL (and the app's
/// `threading.local` data lives as long as the thread, as under any threaded server).
///
/// We cannot drop it the way [`ThreadAttachment`] does: that needs the GIL, and the only
/// hook at thread exit runs under Windows' loader lock, where waiting for the GIL can
/// deadlock (a thread holding the GIL may be waiting for the loader lock, e.g. in an
/// import). So the exit hook only hands the thread state to our reaper thread, without Python.
pub fn keep_thread_state(api: &'static Api) {
    if gil_held_here() {
        return; // it has a thread state, if CPython forgot it (see ThreadAttachment::new)
    }
    // On a thread that is ending, the thread-local may already be gone: then do nothing.
    let _ = KEPT.try_with(|kept| {
        if kept.borrow().is_some() {
            return;
        }
        // SAFETY: no preconditions once Python runs; reads this thread's PyGILState slot.
        if !unsafe { (api.PyGILState_GetThisThreadState)() }.is_null() {
            // The thread already has a state that is not ours to keep or delete (the one
            // that started Python, or a thread of Python's or of an embedding application):
            // Gil::acquire uses it as it is, which costs no more than a kept one.
            return;
        }
        Reaper::start(api);
        // SAFETY: as in ThreadAttachment::new: a thread state for this thread, the GIL
        // given up at once; the state stays registered for PyGILState_Ensure on this thread.
        let saved = unsafe {
            (api.PyGILState_Ensure)();
            (api.PyEval_SaveThread)()
        };
        // SAFETY: `saved` is this thread's new state, and that PyGILState_Ensure is never
        // released.
        *kept.borrow_mut() = Some(unsafe { KeptState::new(saved) });
    });
}

/// A kept thread state (its address; a thread state has no owner we could name in Rust).
/// Only ever stored in this thread's KEPT, so it is dropped when the thread ends.
struct KeptState(usize);

impl KeptState {
    /// # Safety
    /// `state` must be the calling thread's own thread state, which nothing but the reaper
    /// will delete (a PyGILState_Ensure of ours holds it, never released).
    unsafe fn new(state: *mut super::api::ffi::_ts) -> KeptState {
        KeptState(state as usize)
    }
}

thread_local! {
    static KEPT: std::cell::RefCell<Option<KeptState>> = const { std::cell::RefCell::new(None) };
}

impl Drop for KeptState {
    fn drop(&mut self) {
        // At thread exit (possibly under the loader lock): no Python here, only the list.
        // SAFETY: a KeptState holds its thread's own state (see `new`) and is dropped with
        // KEPT, as the thread ends: from now on the state is nobody's current one.
        unsafe { Reaper::adopt(self.0) };
    }
}

/// A thread of ours that deletes the thread states of threads that have ended.
///
/// Why a thread of its own: deleting another thread's state also clears the *deleting*
/// thread's PyGILState slot (CPython 3.12+ unbinds "the current thread's" state without
/// checking which it is). The reaper never uses PyGILState after its first call, so that
/// does not matter to it; on any other thread the next PyGILState_Release would be fatal.
struct Reaper {
    orphans: std::sync::Mutex<Vec<usize>>,
    wake: std::sync::Condvar,
}

static REAPER: Reaper = Reaper {
    orphans: std::sync::Mutex::new(Vec::new()),
    wake: std::sync::Condvar::new(),
};
static REAPER_STARTED: std::sync::Once = std::sync::Once::new();

impl Reaper {
    /// Starts the reaper once (Python is running: there is an `Api`). If the thread cannot
    /// be created, ended threads' states are not deleted (a small leak per ended thread).
    fn start(api: &'static Api) {
        REAPER_STARTED.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("python-thread-state-reaper".into())
                .spawn(move || Reaper::run(api));
        });
    }

    /// Queues a thread state to be cleared and deleted (with the GIL, on the reaper).
    ///
    /// # Safety
    /// `state` must be the address of a live thread state whose thread has ended or is
    /// ending (so no thread uses it again), and nothing else may delete it.
    unsafe fn adopt(state: usize) {
        let mut orphans = REAPER.orphans.lock().unwrap_or_else(|p| p.into_inner());
        orphans.push(state);
        REAPER.wake.notify_one();
    }

    fn run(api: &'static Api) {
        // SAFETY: a thread state for this thread (Python is running), the GIL given up at
        // once; it is only ever taken back with PyEval_RestoreThread below.
        let own = unsafe {
            (api.PyGILState_Ensure)();
            (api.PyEval_SaveThread)()
        };
        loop {
            let orphans = {
                let mut orphans = REAPER.orphans.lock().unwrap_or_else(|p| p.into_inner());
                while orphans.is_empty() {
                    orphans = REAPER.wake.wait(orphans).unwrap_or_else(|p| p.into_inner());
                }
                std::mem::take(&mut *orphans)
            };
            // SAFETY: `own` is this thread's state, so RestoreThread takes the GIL with it.
            // Each orphan belonged to a thread that has ended (nobody's current state) and is
            // cleared and deleted exactly once, with the GIL held; then the GIL is released.
            unsafe {
                (api.PyEval_RestoreThread)(own);
                for state in orphans {
                    let state = state as *mut super::api::ffi::_ts;
                    (api.PyThreadState_Clear)(state);
                    (api.PyThreadState_Delete)(state);
                }
                (api.PyEval_SaveThread)();
            }
        }
    }
}

impl<'py> Gil<'py> {
    /// Runs `f` with the GIL held by this thread (PyGILState_Ensure / Release), from any
    /// thread, whether or not it has ever run Python before.
    pub fn acquire<R>(api: &'static Api, f: impl for<'a> FnOnce(Gil<'a>) -> R) -> R {
        struct Release(&'static Api, super::api::ffi::PyGILState_STATE);
        impl Drop for Release {
            fn drop(&mut self) {
                // SAFETY: pairs with the PyGILState_Ensure below, on the same thread.
                unsafe { (self.0.PyGILState_Release)(self.1) }
            }
        }
        // SAFETY: PyGILState_Ensure may be called from any thread once Python is initialised,
        // which an `&'static Api` proves (runtime.rs hands one out only then; see api.rs).
        let state = unsafe { (api.PyGILState_Ensure)() };
        let _release = Release(api, state);
        let _held = HeldScope::enter(); // dropped first, before the GIL is released
        // SAFETY: the GIL is held until `_release` drops, after `f` and everything it made.
        f(unsafe { Gil::assume(api) })
    }

    /// A token for a thread that already holds the GIL (start-up, and C callbacks that
    /// Python calls with the GIL held).
    ///
    /// # Safety
    /// The calling thread must hold the GIL for all of `'py`.
    pub unsafe fn assume(api: &'static Api) -> Gil<'py> {
        Gil {
            api,
            _not_send: PhantomData,
        }
    }

    /// The function table (for the thin unsafe layers in this module's siblings).
    pub fn api(self) -> &'static Api {
        self.api
    }

    /// Releases the GIL while `f` runs (a blocking read or write), then takes it back.
    /// `f` must be `Send`, so it cannot capture a [`PyRef`].
    pub fn allow_threads<R>(self, f: impl FnOnce() -> R + Send) -> R {
        struct Restore(&'static Api, *mut super::api::ffi::_ts, usize);
        impl Drop for Restore {
            fn drop(&mut self) {
                // SAFETY: pairs with PyEval_SaveThread below, on the same thread.
                unsafe { (self.0.PyEval_RestoreThread)(self.1) }
                HELD.with(|held| held.set(self.2));
            }
        }
        // SAFETY: this thread holds the GIL (the token proves it); it gets it back before
        // this function returns, also on unwind, via `Restore`.
        let saved = unsafe { (self.api.PyEval_SaveThread)() };
        // While `f` runs, this thread holds no GIL: our scopes on it do not count.
        let _restore = Restore(self.api, saved, HELD.with(|held| held.replace(0)));
        f()
    }

    /// Takes ownership of a new reference returned by the C API; NULL means an exception.
    ///
    /// # Safety
    /// `pointer` must be NULL with an exception set (then the exception is taken; NULL
    /// without one becomes a RuntimeError), or a new strong reference to a live object that
    /// nobody else will release: the `PyRef` releases it when dropped. A borrowed reference
    /// (PyTuple_GetItem, PyDict_GetItem, ...) goes through [`Gil::borrowed`] instead.
    pub unsafe fn own(self, pointer: *mut PyObject) -> PyResult<'py, PyRef<'py>> {
        match NonNull::new(pointer) {
            Some(pointer) => Ok(PyRef { pointer, gil: self }),
            None => Err(PyErr::fetch(self)),
        }
    }

    /// Turns a C API status into a result: 0 is success, anything else (-1) means an
    /// exception is set.
    pub fn status(self, code: std::ffi::c_int) -> PyResult<'py, ()> {
        match code {
            0 => Ok(()),
            _ => Err(PyErr::fetch(self)),
        }
    }

    /// A new strong reference to a borrowed object.
    ///
    /// # Safety
    /// `pointer` must be a live, non-NULL object.
    pub unsafe fn borrowed(self, pointer: *mut PyObject) -> PyRef<'py> {
        // SAFETY: the caller guarantees a live object; the GIL is held.
        unsafe { (self.api.Py_IncRef)(pointer) };
        PyRef {
            pointer: NonNull::new(pointer).expect("borrowed NULL object"),
            gil: self,
        }
    }

    /// `None`.
    pub fn none(self) -> PyRef<'py> {
        // SAFETY: None is immortal and always live.
        unsafe { self.borrowed(self.api.none()) }
    }

    /// `True` or `False`.
    pub fn bool(self, value: bool) -> PyRef<'py> {
        let object = if value {
            self.api.true_()
        } else {
            self.api.false_()
        };
        // SAFETY: True and False are always live.
        unsafe { self.borrowed(object) }
    }

    /// A `str` from UTF-8 text.
    pub fn str(self, text: &str) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: pointer and length describe `text`, valid UTF-8 for the call;
        // PyUnicode_FromStringAndSize returns a new reference or NULL with an exception set.
        unsafe {
            self.own((self.api.PyUnicode_FromStringAndSize)(
                text.as_ptr().cast(),
                text.len() as _,
            ))
        }
    }

    /// A `str` whose code points are the bytes (PEP 3333's "native string").
    pub fn latin1(self, bytes: &[u8]) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: pointer and length describe `bytes` (errors = NULL: strict); the result is a
        // new reference, or NULL with an exception set (latin-1 decoding itself cannot fail,
        // but allocating the str can).
        unsafe {
            self.own((self.api.PyUnicode_DecodeLatin1)(
                bytes.as_ptr().cast(),
                bytes.len() as _,
                null_mut(),
            ))
        }
    }

    /// An interned `str`, for keys made once and kept.
    pub fn interned(self, text: &CStr) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: `text` is NUL-terminated; PyUnicode_InternFromString returns a new reference
        // or NULL with an exception set.
        unsafe { self.own((self.api.PyUnicode_InternFromString)(text.as_ptr())) }
    }

    /// A `bytes` object.
    pub fn bytes(self, bytes: &[u8]) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: pointer and length describe `bytes`, which is copied; PyBytes_FromStringAndSize
        // returns a new reference or NULL with an exception set.
        unsafe {
            self.own((self.api.PyBytes_FromStringAndSize)(
                bytes.as_ptr().cast(),
                bytes.len() as _,
            ))
        }
    }

    /// An `int`.
    pub fn int(self, value: i64) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: the GIL is held (the token); PyLong_FromSsize_t returns a new reference or
        // NULL with an exception set.
        unsafe { self.own((self.api.PyLong_FromSsize_t)(value as _)) }
    }

    /// A tuple of the given items.
    pub fn tuple(self, items: &[&PyRef<'py>]) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: the GIL is held; PyTuple_New returns a new reference or NULL with an
        // exception set.
        let tuple = unsafe { self.own((self.api.PyTuple_New)(items.len() as _)) }?;
        for (index, item) in items.iter().enumerate() {
            let item = (*item).clone();
            // SAFETY: a fresh tuple of the right size; PyTuple_SetItem steals the reference
            // we pass with `into_ptr`.
            unsafe { (self.api.PyTuple_SetItem)(tuple.as_ptr(), index as _, item.into_ptr()) };
        }
        Ok(tuple)
    }

    /// An empty list.
    pub fn list(self) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: the GIL is held; PyList_New returns a new reference or NULL with an
        // exception set.
        unsafe { self.own((self.api.PyList_New)(0)) }
    }

    /// An empty dict.
    pub fn dict(self) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: the GIL is held; PyDict_New returns a new reference or NULL with an
        // exception set.
        unsafe { self.own((self.api.PyDict_New)()) }
    }

    /// Imports a module by its dotted name.
    pub fn import(self, name: &str) -> PyResult<'py, PyRef<'py>> {
        let name = CString::new(name)
            .map_err(|_| PyErr::new(self, Exception::ValueError, "NUL in module name"))?;
        // SAFETY: `name` is NUL-terminated; PyImport_ImportModule returns a new reference or
        // NULL with an exception set.
        unsafe { self.own((self.api.PyImport_ImportModule)(name.as_ptr())) }
    }

    /// Runs Python source as a new module named `name` and returns its namespace dict.
    pub fn run_module(self, name: &CStr, source: &CStr) -> PyResult<'py, PyRef<'py>> {
        let globals = self.dict()?;
        // SAFETY: no preconditions besides the GIL; returns a borrowed dict.
        let builtins = unsafe { self.borrowed((self.api.PyEval_GetBuiltins)()) };
        globals.set_item(&self.str("__builtins__")?, &builtins)?;
        globals.set_item(
            &self.str("__name__")?,
            &self.str(name.to_str().unwrap_or("module"))?,
        )?;
        let start = ffi::Py_file_input as std::ffi::c_int;
        // SAFETY: both strings are NUL-terminated; Py_CompileString returns a new reference to
        // a code object, or NULL with an exception set.
        let code = unsafe {
            self.own((self.api.Py_CompileString)(
                source.as_ptr(),
                name.as_ptr(),
                start,
            ))
        }?;
        // SAFETY: PyEval_EvalCode does not check its first argument's type: `code` is the code
        // object Py_CompileString just made. globals is a dict (doubling as locals, as for a
        // module). It returns a new reference (the module's value, None) or NULL with an
        // exception set.
        unsafe {
            self.own((self.api.PyEval_EvalCode)(
                code.as_ptr(),
                globals.as_ptr(),
                globals.as_ptr(),
            ))
        }?;
        Ok(globals)
    }

    /// `sys.<name>` (a new reference), if it exists.
    pub fn sys(self, name: &CStr) -> Option<PyRef<'py>> {
        // SAFETY: `name` is NUL-terminated; the result is borrowed.
        let object = unsafe { (self.api.PySys_GetObject)(name.as_ptr()) };
        // SAFETY: non-NULL results of PySys_GetObject are live objects.
        (!object.is_null()).then(|| unsafe { self.borrowed(object) })
    }

    /// The running interpreter's version string (`sys.version`).
    pub fn version(self) -> String {
        // SAFETY: Py_GetVersion returns a static NUL-terminated string.
        unsafe { CStr::from_ptr((self.api.Py_GetVersion)()) }
            .to_string_lossy()
            .into_owned()
    }
}

/// An owned strong reference, valid while the GIL is held.
pub struct PyRef<'py> {
    pointer: NonNull<PyObject>,
    gil: Gil<'py>,
}

impl Drop for PyRef<'_> {
    fn drop(&mut self) {
        // SAFETY: we own one reference and the GIL is held for 'py.
        unsafe { (self.gil.api.Py_DecRef)(self.pointer.as_ptr()) }
    }
}

impl Clone for PyRef<'_> {
    fn clone(&self) -> Self {
        // SAFETY: the object is live (we hold a reference) and the GIL is held.
        unsafe { self.gil.borrowed(self.pointer.as_ptr()) }
    }
}

/// What kind of built-in object something is (checked with the type's flags, as the
/// limited API's `PyBytes_Check` and friends do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bytes,
    Str,
    List,
    Tuple,
    Dict,
    Other,
}

impl<'py> PyRef<'py> {
    /// The raw pointer (still owned by `self`).
    pub fn as_ptr(&self) -> *mut PyObject {
        self.pointer.as_ptr()
    }

    /// Gives up ownership: the caller now owns the reference (returning it to C).
    pub fn into_ptr(self) -> *mut PyObject {
        let pointer = self.pointer.as_ptr();
        std::mem::forget(self);
        pointer
    }

    /// The token this reference lives under.
    pub fn gil(&self) -> Gil<'py> {
        self.gil
    }

    /// Keeps the object for the life of the process.
    pub fn into_static(self) -> PyStatic {
        PyStatic(NonNull::new(self.into_ptr()).expect("non-null"))
    }

    /// The object's built-in kind.
    pub fn kind(&self) -> Kind {
        let flags = self.type_flags();
        const LIST: u64 = 1 << 25;
        const TUPLE: u64 = 1 << 26;
        const BYTES: u64 = 1 << 27;
        const UNICODE: u64 = 1 << 28;
        const DICT: u64 = 1 << 29;
        match flags {
            f if f & BYTES != 0 => Kind::Bytes,
            f if f & UNICODE != 0 => Kind::Str,
            f if f & LIST != 0 => Kind::List,
            f if f & TUPLE != 0 => Kind::Tuple,
            f if f & DICT != 0 => Kind::Dict,
            _ => Kind::Other,
        }
    }

    /// Whether the object is exactly a built-in list or tuple (not a subclass, which could
    /// add methods such as `close`).
    pub fn is_plain_sequence(&self) -> bool {
        const HEAPTYPE: u64 = 1 << 9;
        matches!(self.kind(), Kind::List | Kind::Tuple) && self.type_flags() & HEAPTYPE == 0
    }

    /// Whether the object is an exception instance (`PyExceptionInstance_Check`).
    fn is_exception_instance(&self) -> bool {
        const BASE_EXC_SUBCLASS: u64 = 1 << 30;
        self.type_flags() & BASE_EXC_SUBCLASS != 0
    }

    fn type_flags(&self) -> u64 {
        // SAFETY: a live object's header is `ob_refcnt` (one word) then `ob_type`, as the
        // stable ABI's Py_TYPE reads it; that holds for the builds we accept (not free-threaded
        // 3.13t, whose header is larger, and not Py_TRACE_REFS, which puts two list pointers
        // first; neither supports the stable ABI). A live object's type is live, so reading its
        // flags needs no new reference.
        unsafe {
            let kind = *self
                .as_ptr()
                .cast::<*mut super::api::ffi::_typeobject>()
                .add(1);
            // c_ulong: 64 bits on Linux, 32 on Windows.
            #[allow(clippy::useless_conversion)]
            u64::from((self.gil.api.PyType_GetFlags)(kind))
        }
    }

    /// The contents of a `bytes` object, borrowed from it; None if it is not bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        if self.kind() != Kind::Bytes {
            return None;
        }
        let mut data: *mut c_char = null_mut();
        let mut length = 0;
        // SAFETY: `self` is a bytes object; on success `data` points into it for as long as
        // the object lives, which the returned borrow of `self` guarantees.
        let status = unsafe {
            (self.gil.api.PyBytes_AsStringAndSize)(self.as_ptr(), &mut data, &mut length)
        };
        // A failure's exception is fetched (cleared) and dropped.
        self.gil.status(status).ok()?;
        // SAFETY: see above: `length` bytes at `data`, alive while `self` is.
        Some(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), length as usize) })
    }

    /// A `str` encoded as latin-1 bytes (PEP 3333's native strings). Errors for anything that
    /// is not a `str` or has a code point above U+00FF.
    pub fn latin1_bytes(&self) -> PyResult<'py, Vec<u8>> {
        self.with_latin1(<[u8]>::to_vec)
    }

    /// Runs `f` on the latin-1 bytes of a `str` (PEP 3333's native strings) without copying
    /// them when the text is ASCII and the interpreter can lend its UTF-8 form (3.10+).
    /// Errors for anything that is not a `str` or has a code point above U+00FF.
    pub fn with_latin1<R>(&self, f: impl FnOnce(&[u8]) -> R) -> PyResult<'py, R> {
        if self.kind() != Kind::Str {
            return Err(PyErr::new(self.gil, Exception::TypeError, "expected a str"));
        }
        if let Some(as_utf8) = self.gil.api.newer.PyUnicode_AsUTF8AndSize {
            let mut length = 0;
            // SAFETY: `self` is a str; the buffer belongs to it and lives as long as it does.
            let data = unsafe { as_utf8(self.as_ptr(), &mut length) };
            if !data.is_null() {
                let (start, length) = (data.cast::<u8>(), length as usize);
                // SAFETY: `length` bytes at `data`, alive while `self` is (borrowed for `f`).
                let utf8 = unsafe { std::slice::from_raw_parts(start, length) };
                if utf8.is_ascii() {
                    return Ok(f(utf8));
                }
            } else {
                PyErr::fetch(self.gil); // e.g. lone surrogates: let the latin-1 path report it
            }
        }
        // SAFETY: `self` is a live str (checked above); PyUnicode_AsLatin1String returns a new
        // bytes object or NULL with an exception set (UnicodeEncodeError above U+00FF).
        let encoded = unsafe {
            self.gil
                .own((self.gil.api.PyUnicode_AsLatin1String)(self.as_ptr()))
        }?;
        Ok(f(encoded.as_bytes().unwrap_or_default()))
    }

    /// `str(self)` as Rust text (lossy for lone surrogates).
    pub fn text(&self) -> String {
        let api = self.gil.api;
        // SAFETY: a live object and the GIL; PyObject_Str returns a new reference (CPython
        // checks that it is a str) or NULL with an exception set.
        let Ok(text) = (unsafe { self.gil.own((api.PyObject_Str)(self.as_ptr())) }) else {
            return "<str() failed>".to_string();
        };
        // SAFETY: `text` is a live str; PyUnicode_AsUTF8String returns a new bytes object, or
        // NULL with an exception set (lone surrogates).
        match unsafe { self.gil.own((api.PyUnicode_AsUTF8String)(text.as_ptr())) } {
            Ok(utf8) => String::from_utf8_lossy(utf8.as_bytes().unwrap_or_default()).into_owned(),
            Err(_) => "<unprintable>".to_string(),
        }
    }

    /// `self.<name>`.
    pub fn getattr(&self, name: &CStr) -> PyResult<'py, PyRef<'py>> {
        let get = self.gil.api.PyObject_GetAttrString;
        // SAFETY: a live object and a NUL-terminated name; PyObject_GetAttrString returns a
        // new reference or NULL with an exception set.
        unsafe { self.gil.own(get(self.as_ptr(), name.as_ptr())) }
    }

    /// `self.<name>` with the name given as a `str` object (faster for interned names).
    pub fn getattr_object(&self, name: &PyRef<'py>) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: live objects (PyObject_GetAttr raises TypeError for a name that is not a
        // str); it returns a new reference or NULL with an exception set.
        unsafe {
            self.gil.own((self.gil.api.PyObject_GetAttr)(
                self.as_ptr(),
                name.as_ptr(),
            ))
        }
    }

    /// `hasattr(self, name)`.
    pub fn hasattr(&self, name: &CStr) -> bool {
        // SAFETY: a live object and a NUL-terminated name; never raises.
        unsafe { (self.gil.api.PyObject_HasAttrString)(self.as_ptr(), name.as_ptr()) != 0 }
    }

    /// `self(*args)`.
    pub fn call(&self, args: &[&PyRef<'py>]) -> PyResult<'py, PyRef<'py>> {
        let args = self.gil.tuple(args)?;
        let call = self.gil.api.PyObject_Call;
        // SAFETY: a live object (PyObject_Call raises TypeError if it is not callable), `args`
        // a tuple as PyObject_Call requires (made just above), kwargs NULL; the result is a
        // new reference or NULL with an exception set.
        unsafe { self.gil.own(call(self.as_ptr(), args.as_ptr(), null_mut())) }
    }

    /// `self(a, b)`, without building the argument tuple ourselves.
    pub fn call2(&self, a: &PyRef<'py>, b: &PyRef<'py>) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: live objects; the variadic argument list is NULL-terminated, as
        // PyObject_CallFunctionObjArgs requires. It returns a new reference or NULL with an
        // exception set.
        unsafe {
            self.gil.own((self.gil.api.PyObject_CallFunctionObjArgs)(
                self.as_ptr(),
                a.as_ptr(),
                b.as_ptr(),
                null_mut::<PyObject>(),
            ))
        }
    }

    /// The value of an `int` (OverflowError beyond `Py_ssize_t`, TypeError for other types).
    pub fn to_i64(&self) -> PyResult<'py, i64> {
        // SAFETY: a live object; PyLong_AsSsize_t returns -1 with an exception set on failure
        // (and -1 without one for the value -1).
        let value = unsafe { (self.gil.api.PyLong_AsSsize_t)(self.as_ptr()) };
        // SAFETY: no preconditions besides the GIL.
        if value == -1 && !unsafe { (self.gil.api.PyErr_Occurred)() }.is_null() {
            return Err(PyErr::fetch(self.gil));
        }
        Ok(value)
    }

    /// `isinstance(self, class)`.
    pub fn is_instance(&self, class: &PyRef<'py>) -> PyResult<'py, bool> {
        // SAFETY: live objects; PyObject_IsInstance returns 1, 0, or -1 with an exception
        // set (a `class` that is not a class or a tuple of them raises TypeError).
        match unsafe { (self.gil.api.PyObject_IsInstance)(self.as_ptr(), class.as_ptr()) } {
            -1 => Err(PyErr::fetch(self.gil)),
            value => Ok(value != 0),
        }
    }

    /// `callable(self)` is true.
    pub fn is_callable(&self) -> bool {
        // SAFETY: a live object; never raises.
        unsafe { (self.gil.api.PyCallable_Check)(self.as_ptr()) != 0 }
    }

    /// `bool(self)`.
    pub fn is_true(&self) -> PyResult<'py, bool> {
        // SAFETY: a live object.
        match unsafe { (self.gil.api.PyObject_IsTrue)(self.as_ptr()) } {
            -1 => Err(PyErr::fetch(self.gil)),
            value => Ok(value != 0),
        }
    }

    /// `self is None`.
    pub fn is_none(&self) -> bool {
        self.as_ptr() == self.gil.api.none()
    }

    /// `len(self)`.
    #[allow(clippy::len_without_is_empty)] // a fallible len; emptiness is `len()? == 0`
    pub fn len(&self) -> PyResult<'py, usize> {
        // SAFETY: a live object.
        match unsafe { (self.gil.api.PyObject_Length)(self.as_ptr()) } {
            -1 => Err(PyErr::fetch(self.gil)),
            length => Ok(length as usize),
        }
    }

    /// `self[index]` for a sequence.
    pub fn get_index(&self, index: usize) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: a live object of any type (PySequence_GetItem raises TypeError for one that
        // is not a sequence, IndexError out of range); a new reference or NULL with an
        // exception set.
        unsafe {
            self.gil
                .own((self.gil.api.PySequence_GetItem)(self.as_ptr(), index as _))
        }
    }

    /// The length of a tuple (or tuple subclass); 0 for anything else.
    pub fn tuple_len(&self) -> usize {
        if self.kind() != Kind::Tuple {
            // PyTuple_Size would raise SystemError and leave it set.
            return 0;
        }
        // SAFETY: a live tuple (checked above), for which PyTuple_Size cannot fail.
        unsafe { (self.gil.api.PyTuple_Size)(self.as_ptr()) }.max(0) as usize
    }

    /// Item `index` of a tuple (or tuple subclass); None out of range or for anything else.
    pub fn tuple_item(&self, index: usize) -> Option<PyRef<'py>> {
        // SAFETY: a live object of any type: PyTuple_GetItem checks both the type (SystemError)
        // and the range (IndexError) and then returns NULL with the exception set, which we
        // clear. Otherwise the result is borrowed from the tuple.
        let item = unsafe { (self.gil.api.PyTuple_GetItem)(self.as_ptr(), index as _) };
        if item.is_null() {
            PyErr::fetch(self.gil);
            return None;
        }
        // SAFETY: the item is live: a tuple is immutable and `self` keeps it alive, and no
        // Python code runs before `borrowed` takes our own reference.
        Some(unsafe { self.gil.borrowed(item) })
    }

    /// `iter(self)`.
    pub fn iter(&self) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: a live object of any type; PyObject_GetIter returns a new reference to an
        // iterator (it raises TypeError if `iter()` would not give one) or NULL with an
        // exception set.
        unsafe { self.gil.own((self.gil.api.PyObject_GetIter)(self.as_ptr())) }
    }

    /// `next(self)` for an iterator (e.g. from [`iter`](PyRef::iter)): `Ok(None)` at the end;
    /// TypeError for an object that is not an iterator.
    pub fn next(&self) -> PyResult<'py, Option<PyRef<'py>>> {
        // SAFETY: a live object of any type; PyIter_Check never fails.
        if unsafe { (self.gil.api.PyIter_Check)(self.as_ptr()) } == 0 {
            return Err(PyErr::new(
                self.gil,
                Exception::TypeError,
                "next() on an object that is not an iterator",
            ));
        }
        // SAFETY: PyIter_Next calls the type's tp_iternext without checking that there is one:
        // `self` is an iterator (checked just above, so there is).
        let item = unsafe { (self.gil.api.PyIter_Next)(self.as_ptr()) };
        if item.is_null() {
            // SAFETY: no preconditions besides the GIL.
            if unsafe { (self.gil.api.PyErr_Occurred)() }.is_null() {
                Ok(None)
            } else {
                Err(PyErr::fetch(self.gil))
            }
        } else {
            // SAFETY: a non-NULL result of PyIter_Next is a new reference.
            unsafe { self.gil.own(item) }.map(Some)
        }
    }

    /// `self[key] = value` for a dict.
    pub fn set_item(&self, key: &PyRef<'py>, value: &PyRef<'py>) -> PyResult<'py, ()> {
        // SAFETY: live objects of any type: PyDict_SetItem raises SystemError when `self` is
        // not a dict, TypeError for an unhashable key; it does not steal either reference.
        let code =
            unsafe { (self.gil.api.PyDict_SetItem)(self.as_ptr(), key.as_ptr(), value.as_ptr()) };
        self.gil.status(code)
    }

    /// `self[key] = value` for a dict whose key is kept for ever (an interned environ key):
    /// as [`set_item`](PyRef::set_item), without taking a reference to the key for the call.
    pub fn set_kept_key(&self, key: &PyStatic, value: &PyRef<'py>) -> PyResult<'py, ()> {
        self.set_raw(key.as_ptr(self.gil), value.as_ptr())
    }

    /// `self[key] = value` for a dict, both kept for ever (a constant environ value).
    pub fn set_kept(&self, key: &PyStatic, value: &PyStatic) -> PyResult<'py, ()> {
        self.set_raw(key.as_ptr(self.gil), value.as_ptr(self.gil))
    }

    fn set_raw(&self, key: *mut PyObject, value: *mut PyObject) -> PyResult<'py, ()> {
        // SAFETY: both are live objects (a PyRef's or a PyStatic's, held across the call) and
        // the GIL is held; as in `set_item`, PyDict_SetItem takes its own references.
        let code = unsafe { (self.gil.api.PyDict_SetItem)(self.as_ptr(), key, value) };
        self.gil.status(code)
    }

    /// `del self[key]` for a dict.
    pub fn del_item(&self, key: &PyRef<'py>) -> PyResult<'py, ()> {
        // SAFETY: live objects of any type: PyDict_DelItem raises SystemError when `self` is
        // not a dict, KeyError for a missing key.
        let code = unsafe { (self.gil.api.PyDict_DelItem)(self.as_ptr(), key.as_ptr()) };
        self.gil.status(code)
    }

    /// `self.get(key)` for a dict (never raises).
    pub fn get_item(&self, key: &PyRef<'py>) -> Option<PyRef<'py>> {
        // SAFETY: live objects of any type: PyDict_GetItem returns NULL (no exception) when
        // `self` is not a dict, and clears any error from hashing or comparing the key; a
        // non-NULL result is borrowed from the dict.
        let value = unsafe { (self.gil.api.PyDict_GetItem)(self.as_ptr(), key.as_ptr()) };
        // SAFETY: a non-NULL result is live (the dict holds it), and no Python code runs
        // before `borrowed` takes our own reference.
        (!value.is_null()).then(|| unsafe { self.gil.borrowed(value) })
    }

    /// A shallow copy of a dict.
    pub fn dict_copy(&self) -> PyResult<'py, PyRef<'py>> {
        // SAFETY: a live object of any type (PyDict_Copy raises SystemError for one that is
        // not a dict); a new reference or NULL with an exception set.
        unsafe { self.gil.own((self.gil.api.PyDict_Copy)(self.as_ptr())) }
    }

    /// `self.insert(index, item)` for a list.
    pub fn list_insert(&self, index: usize, item: &PyRef<'py>) -> PyResult<'py, ()> {
        // SAFETY: live objects of any type (PyList_Insert raises SystemError when `self` is
        // not a list); it does not steal `item`.
        let code =
            unsafe { (self.gil.api.PyList_Insert)(self.as_ptr(), index as _, item.as_ptr()) };
        self.gil.status(code)
    }

    /// `self.append(item)` for a list.
    pub fn list_append(&self, item: &PyRef<'py>) -> PyResult<'py, ()> {
        // SAFETY: live objects of any type (PyList_Append raises SystemError when `self` is
        // not a list); it does not steal `item`.
        let code = unsafe { (self.gil.api.PyList_Append)(self.as_ptr(), item.as_ptr()) };
        self.gil.status(code)
    }

    /// `self.<name>(*args)`.
    pub fn call_method(&self, name: &CStr, args: &[&PyRef<'py>]) -> PyResult<'py, PyRef<'py>> {
        self.getattr(name)?.call(args)
    }
}

/// A strong reference kept for the life of the process (the app, interned keys, our types).
/// It can be shared between threads but only used through a [`Gil`]. It is never released:
/// the interpreter is never finalised.
pub struct PyStatic(NonNull<PyObject>);

// SAFETY: the pointer is only dereferenced through `bind`/`as_ptr`, which need a Gil.
unsafe impl Send for PyStatic {}
// SAFETY: as for Send.
unsafe impl Sync for PyStatic {}

impl PyStatic {
    /// A new owned reference to the object.
    pub fn bind<'py>(&self, gil: Gil<'py>) -> PyRef<'py> {
        // SAFETY: the object is kept alive by our never-released reference.
        unsafe { gil.borrowed(self.0.as_ptr()) }
    }

    /// Gives the reference back (for a kept object that is being replaced).
    pub fn release(self, gil: Gil<'_>) {
        // SAFETY: we own one reference and the GIL is held.
        unsafe { (gil.api.Py_DecRef)(self.0.as_ptr()) }
    }

    /// The raw pointer, borrowed, while the GIL is held.
    pub fn as_ptr(&self, _gil: Gil<'_>) -> *mut PyObject {
        self.0.as_ptr()
    }
}

/// A Python exception, taken out of the interpreter's error indicator.
pub struct PyErr<'py> {
    kind: Option<PyRef<'py>>,
    value: Option<PyRef<'py>>,
    traceback: Option<PyRef<'py>>,
    gil: Gil<'py>,
}

impl<'py> PyErr<'py> {
    /// Takes the current exception (PyErr_Fetch). If none is set, a RuntimeError stands in.
    pub fn fetch(gil: Gil<'py>) -> PyErr<'py> {
        let (mut kind, mut value, mut traceback) = (null_mut(), null_mut(), null_mut());
        // SAFETY: out-pointers to locals. PyErr_Fetch hands us the three references (each may
        // be NULL), PyErr_NormalizeException replaces them with new ones; `own` below makes
        // each non-NULL one a PyRef, released once.
        unsafe {
            (gil.api.PyErr_Fetch)(&mut kind, &mut value, &mut traceback);
            (gil.api.PyErr_NormalizeException)(&mut kind, &mut value, &mut traceback);
        }
        if kind.is_null() {
            return PyErr::new(
                gil,
                Exception::RuntimeError,
                "a Python call failed without an exception",
            );
        }
        let own =
            |pointer: *mut PyObject| NonNull::new(pointer).map(|pointer| PyRef { pointer, gil });
        PyErr {
            kind: own(kind),
            value: own(value),
            traceback: own(traceback),
            gil,
        }
    }

    /// A new exception of a built-in type with a message.
    pub fn new(gil: Gil<'py>, kind: Exception, message: &str) -> PyErr<'py> {
        let message = CString::new(message.replace('\0', "\\0")).expect("no NUL");
        // SAFETY: a valid exception type and a NUL-terminated message.
        unsafe { (gil.api.PyErr_SetString)(gil.api.exception(kind), message.as_ptr()) };
        PyErr::fetch(gil)
    }

    /// The exception of an `exc_info` triple `(type, value, traceback)` as `sys.exc_info()`
    /// returns it, to be raised again (`raise value.with_traceback(traceback)`).
    ///
    /// The triple comes from the application, and [`restore`](PyErr::restore) hands it to
    /// PyErr_Restore, which trusts it: CPython later writes the traceback into the value as
    /// into an exception object, whatever it is. So it is rebuilt from the part that can be
    /// checked: the value must be an exception instance (else TypeError), the traceback is
    /// set on it by PyException_SetTraceback (which refuses anything but a traceback or None),
    /// and the type is the value's own. `exc_info[0]` is not used. (Not `value.__traceback__`
    /// either: a subclass can shadow that attribute with anything.)
    pub fn from_exc_info(exc_info: &PyRef<'py>) -> PyResult<'py, PyErr<'py>> {
        let gil = exc_info.gil();
        let value = exc_info.get_index(1)?;
        if !value.is_exception_instance() {
            return Err(PyErr::new(
                gil,
                Exception::TypeError,
                "exc_info must be (type, value, traceback) of an exception, as sys.exc_info() returns",
            ));
        }
        let traceback = exc_info.get_index(2)?;
        // SAFETY: `value` is an exception instance (checked above), as PyException_SetTraceback
        // requires of its first argument; it checks the second itself (TypeError unless a
        // traceback or None) and does not steal it.
        let status =
            unsafe { (gil.api.PyException_SetTraceback)(value.as_ptr(), traceback.as_ptr()) };
        gil.status(status)?;
        // SAFETY: PyObject_Type returns a new reference to the type of a live object.
        let kind = unsafe { gil.own((gil.api.PyObject_Type)(value.as_ptr())) }?;
        Ok(PyErr {
            kind: Some(kind),
            value: Some(value),
            traceback: (!traceback.is_none()).then_some(traceback),
            gil,
        })
    }

    /// An exception instance (e.g. of a class defined in Python), to be raised as it is;
    /// TypeError if `value` is not an exception.
    pub fn from_value(value: PyRef<'py>) -> PyResult<'py, PyErr<'py>> {
        let gil = value.gil();
        if !value.is_exception_instance() {
            return Err(PyErr::new(
                gil,
                Exception::TypeError,
                "not an exception instance",
            ));
        }
        // SAFETY: PyObject_Type returns a new reference to the type of a live object.
        let kind = unsafe { gil.own((gil.api.PyObject_Type)(value.as_ptr())) }?;
        Ok(PyErr {
            kind: Some(kind),
            value: Some(value),
            traceback: None,
            gil,
        })
    }

    /// Sets this exception as the current one, to be raised when we return NULL to Python.
    pub fn restore(self) {
        let take = |object: Option<PyRef<'py>>| object.map_or(null_mut(), PyRef::into_ptr);
        let (gil, kind, value, traceback) = (self.gil, self.kind, self.value, self.traceback);
        // SAFETY: PyErr_Restore steals the three references (NULL allowed for absent ones) and
        // does not check them: every PyErr holds what PyErr_Fetch returned (a type, its value
        // and a traceback) or a triple from_exc_info checked.
        unsafe { (gil.api.PyErr_Restore)(take(kind), take(value), take(traceback)) }
    }

    /// The exception's value (e.g. for `isinstance` checks).
    pub fn value(&self) -> Option<&PyRef<'py>> {
        self.value.as_ref()
    }

    /// The exception's type.
    pub fn is_instance_of(&self, kind: &PyRef<'py>) -> bool {
        match &self.kind {
            // SAFETY: live objects.
            Some(own) => unsafe {
                (self.gil.api.PyErr_GivenExceptionMatches)(own.as_ptr(), kind.as_ptr()) != 0
            },
            None => false,
        }
    }

    /// `TypeName: message`, one line.
    pub fn summary(&self) -> String {
        let name = self
            .kind
            .as_ref()
            .and_then(|kind| kind.getattr(c"__name__").ok())
            .map(|name| name.text())
            .unwrap_or_else(|| "Exception".to_string());
        match &self.value {
            Some(value) => {
                let text = value.text();
                if text.is_empty() {
                    name
                } else {
                    format!("{name}: {text}")
                }
            }
            None => name,
        }
    }

    /// The full traceback as `traceback.format_exception` renders it.
    pub fn text(&self) -> String {
        let gil = self.gil;
        let rendered = (|| -> PyResult<'py, String> {
            let traceback = gil.import("traceback")?;
            let none = gil.none();
            let pick = |object: &Option<PyRef<'py>>| object.clone().unwrap_or_else(|| none.clone());
            let lines = traceback.call_method(
                c"format_exception",
                &[
                    &pick(&self.kind),
                    &pick(&self.value),
                    &pick(&self.traceback),
                ],
            )?;
            let joined = gil.str("")?.call_method(c"join", &[&lines])?;
            Ok(joined.text())
        })();
        match rendered {
            Ok(text) => text.trim_end().to_string(),
            Err(_) => self.summary(),
        }
    }
}

impl std::fmt::Debug for PyErr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}
