/*
 * pyconfig.h for parsing Python.h for Windows x64 (x86_64-pc-windows-gnu / -msvc).
 *
 * The official Windows CPython builds ship no headers in their embeddable package, and the
 * headers on the build machine carry a Linux pyconfig.h. build.rs copies Python's include
 * directory into OUT_DIR and puts this file in place of its pyconfig.h. We only need what
 * Python.h's *declarations* depend on under Py_LIMITED_API: the sizes of the C types on
 * Windows x64 (LLP64: `long` is 32-bit, pointers and Py_ssize_t are 64-bit).
 */
#ifndef ISAPI_WSGI_WINDOWS_PYCONFIG_H
#define ISAPI_WSGI_WINDOWS_PYCONFIG_H

#define MS_WIN64
#define MS_WIN32
#define MS_WINDOWS
#define NT_THREADS
#define WITH_THREAD
#define Py_ENABLE_SHARED 1   /* the functions live in python3X.dll */

#define SIZEOF_SHORT 2
#define SIZEOF_INT 4
#define SIZEOF_LONG 4        /* LLP64 */
#define SIZEOF_LONG_LONG 8
#define SIZEOF_DOUBLE 8
#define SIZEOF_FLOAT 4
#define SIZEOF_VOID_P 8
#define SIZEOF_SIZE_T 8
#define SIZEOF_TIME_T 8
#define SIZEOF_OFF_T 4
#define SIZEOF_FPOS_T 8
#define SIZEOF_WCHAR_T 2     /* wchar_t is UTF-16 on Windows */
#define SIZEOF__BOOL 1
#define SIZEOF_PID_T SIZEOF_INT
#define SIZEOF_HKEY SIZEOF_VOID_P
#define ALIGNOF_SIZE_T 8
#define ALIGNOF_LONG 4
#define HAVE_WCHAR_H 1
#define HAVE_STDDEF_H 1
#define HAVE_STDLIB_H 1
#define HAVE_SYS_STAT_H 1
#define HAVE_ERRNO_H 1
#define HAVE_SIGNAL_H 1
#define HAVE_STDARG_PROTOTYPES 1
#define PY_LONG_LONG long long
#define DOUBLE_IS_LITTLE_ENDIAN_IEEE754 1
#define Py_DEBUG_NO 1
#define PLATFORM "win32"
#define COMPILER "[bindgen]"

#endif
