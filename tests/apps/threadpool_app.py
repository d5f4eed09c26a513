"""The app for tests/threadpool_*.rs: slow requests, failures, kept objects, atexit."""
import atexit
import os
import sys
import threading
import time

KEPT = {}


def _at_exit():
    path = os.environ.get("THREADPOOL_ATEXIT_FILE")
    if path:
        with open(path, "w") as f:
            f.write("atexit ran")


atexit.register(_at_exit)


def text(start_response, body, status="200 OK", headers=()):
    data = body.encode("utf-8")
    start_response(
        status,
        [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))] + list(headers),
    )
    return [data]


def _use_kept_later(name):
    """In another thread, after the request ended: try every kept object, record what happened."""
    time.sleep(0.3)
    results = []
    environ_input, write = KEPT[name]
    for label, call in (("read", lambda: environ_input.read()), ("write", lambda: write(b"late"))):
        try:
            call()
            results.append("%s: no error" % label)
        except ValueError as error:
            results.append("%s: ValueError: %s" % (label, error))
        except Exception as error:  # anything else is a failure of the test
            results.append("%s: %s: %s" % (label, type(error).__name__, error))
    KEPT[name + "-result"] = "; ".join(results)


def os_thread_name():
    """The OS name of the calling thread (Linux), as the server named it."""
    try:
        with open("/proc/self/task/%d/comm" % threading.get_native_id()) as f:
            return f.read().strip()
    except OSError:
        return "?"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/hello":
        return text(start_response, "hello from %s" % os_thread_name())
    if path == "/blocks":
        # Memory blocks Python's allocator holds: grows with a leak of Python objects.
        return text(start_response, "%d" % sys.getallocatedblocks())
    if path == "/sleep":
        seconds = float(query or "0.5")
        time.sleep(seconds)  # releases the GIL
        return text(start_response, "slept %s" % query)
    if path == "/hold-gil":
        # libc's sleep() called through ctypes.PyDLL, which does NOT release the GIL: the
        # whole interpreter is blocked, as in a long C call.
        import ctypes

        ctypes.PyDLL(None).sleep(int(query or "2"))
        return text(start_response, "held %s" % query)
    if path == "/multithread":
        return text(start_response, repr(environ["wsgi.multithread"]))
    if path == "/raise":
        raise RuntimeError("the app fails on purpose")
    if path == "/stream":
        # A long streamed body: a client that disconnects ends it early.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def body():
            for _ in range(2000):
                time.sleep(0.005)
                yield b"x" * 65536

        return body()
    if path == "/keep":
        # Keep wsgi.input and write() and use them from another thread after the response.
        name = query
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        KEPT[name] = (environ["wsgi.input"], write)
        threading.Thread(target=_use_kept_later, args=(name,)).start()
        return [b"kept"]
    if path == "/read-in-thread":
        # Another thread reads the body while (and after) the application returns: the
        # request must not end under it.
        name = query
        stream = environ["wsgi.input"]

        def read():
            try:
                KEPT[name + "-result"] = "read: %r" % stream.read()
            except Exception as error:
                KEPT[name + "-result"] = "read: %s: %s" % (type(error).__name__, error)

        threading.Thread(target=read).start()
        return text(start_response, "started")
    if path == "/readline-in-thread":
        # The response is complete before another thread starts a readline() that needs
        # several ReadClient calls; the application returns while that call is blocked.
        name = query
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        write(b"started")
        stream = environ["wsgi.input"]
        entered = threading.Event()

        def readline():
            entered.set()
            try:
                KEPT[name + "-result"] = "readline: %r" % stream.readline()
            except Exception as error:
                KEPT[name + "-result"] = "readline: %s: %s" % (type(error).__name__, error)

        threading.Thread(target=readline).start()
        entered.wait()
        time.sleep(0.2)  # the thread is now blocked in ReadClient, the GIL released
        return []
    if path == "/kept":
        for _ in range(100):
            if query + "-result" in KEPT:
                return text(start_response, KEPT[query + "-result"])
            time.sleep(0.05)
        return text(start_response, "no result", status="500 Internal Server Error")
    return text(start_response, "not found", status="404 Not Found")
