/*
 * python.h — the part of CPython's C API that isapi_wsgi uses, and nothing else.
 *
 * Compiled by bindgen (see build.rs) under Py_LIMITED_API = 3.8, so only the stable ABI is
 * visible: the one built library works with every CPython from 3.8 up.
 *
 * We do not link against Python. Instead, for every function we call, this file declares a
 * function-pointer type taken from Python.h's own prototype:
 *
 *     typedef __typeof__(&PyDict_SetItem) pfn_PyDict_SetItem;
 *
 * bindgen turns each into a typed `Option<unsafe extern "C" fn(...)>`, and src/python/api.rs
 * fills a table of them at run time with dlsym / GetProcAddress. One list of names, no
 * hand-typed signatures. The list in PY_FUNCTIONS below is the single source of truth;
 * src/python/api.rs expands the same list (build.rs writes it out for Rust).
 */
#define Py_LIMITED_API 0x03080000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_FUNCTIONS(X) \
    /* interpreter life cycle and the GIL */ \
    X(Py_IsInitialized) X(Py_InitializeEx) X(Py_SetPythonHome) X(Py_SetProgramName) \
    X(Py_DecodeLocale) X(PyEval_SaveThread) X(PyEval_RestoreThread) \
    X(PyGILState_Ensure) X(PyGILState_Release) X(PyGILState_GetThisThreadState) \
    X(PyThreadState_Clear) X(PyThreadState_Delete) X(PyThread_get_thread_ident) \
    /* reference counts (the macros are not in the stable ABI) */ \
    X(Py_IncRef) X(Py_DecRef) \
    /* generic objects */ \
    X(PyObject_GetAttrString) X(PyObject_SetAttrString) X(PyObject_GetAttr) X(PyObject_HasAttrString) \
    X(PyObject_Call) X(PyObject_CallObject) X(PyObject_CallFunctionObjArgs) \
    X(PyObject_CallMethodObjArgs) X(PyObject_Str) X(PyObject_Repr) X(PyObject_IsTrue) \
    X(PyObject_GetIter) X(PyIter_Check) X(PyIter_Next) X(PyObject_IsInstance) X(PyCallable_Check) \
    X(PyObject_GetItem) X(PyObject_Length) X(PyObject_Type) \
    /* modules and code */ \
    X(PyImport_ImportModule) X(PyImport_AddModule) X(PyModule_GetDict) \
    X(Py_CompileString) X(PyEval_EvalCode) X(PyEval_GetBuiltins) \
    /* str */ \
    X(PyUnicode_FromString) X(PyUnicode_FromStringAndSize) X(PyUnicode_DecodeLatin1) \
    X(PyUnicode_DecodeUTF8) X(PyUnicode_AsLatin1String) X(PyUnicode_AsUTF8String) \
    X(PyUnicode_InternFromString) X(PyUnicode_FromWideChar) X(PyUnicode_GetLength) \
    /* bytes */ \
    X(PyBytes_FromStringAndSize) X(PyBytes_AsStringAndSize) X(PyBytes_AsString) X(PyBytes_Size) \
    /* containers */ \
    X(PyDict_New) X(PyDict_SetItem) X(PyDict_SetItemString) X(PyDict_GetItemString) \
    X(PyDict_GetItem) X(PyDict_Copy) X(PyDict_Size) X(PyDict_DelItem) \
    X(PyTuple_New) X(PyTuple_SetItem) X(PyTuple_GetItem) X(PyTuple_Size) \
    X(PyList_New) X(PyList_Append) X(PyList_GetItem) X(PyList_Size) X(PyList_Insert) \
    X(PySequence_Fast) X(PySequence_Size) X(PySequence_GetItem) \
    /* numbers */ \
    X(PyLong_FromLong) X(PyLong_FromSsize_t) X(PyLong_AsLong) X(PyLong_AsSsize_t) X(PyBool_FromLong) \
    /* exceptions */ \
    X(PyErr_Occurred) X(PyErr_Fetch) X(PyErr_Restore) X(PyErr_NormalizeException) \
    X(PyErr_SetString) X(PyErr_SetObject) X(PyErr_SetNone) X(PyErr_Clear) X(PyErr_Print) \
    X(PyErr_ExceptionMatches) X(PyErr_GivenExceptionMatches) X(PyException_SetTraceback) \
    /* defining our own types and callables */ \
    X(PyType_FromSpec) X(PyType_GetSlot) X(PyType_GetFlags) X(PyCFunction_NewEx) \
    X(PyCapsule_New) X(PyCapsule_GetPointer) X(PyArg_ParseTuple) \
    /* sys */ \
    X(PySys_GetObject) X(PySys_SetObject) X(Py_GetVersion)

#define PY_DATA(X) \
    X(_Py_NoneStruct) X(_Py_TrueStruct) X(_Py_FalseStruct) \
    X(PyExc_TypeError) X(PyExc_ValueError) X(PyExc_RuntimeError) X(PyExc_OSError) \
    X(PyExc_AssertionError) X(PyExc_StopIteration) X(PyExc_ImportError) X(PyExc_KeyError) \
    X(PyExc_AttributeError) X(PyExc_SystemExit) X(PyExc_KeyboardInterrupt)

#define PY_DECLARE_PFN(name) typedef __typeof__(&name) pfn_##name;
PY_FUNCTIONS(PY_DECLARE_PFN)
