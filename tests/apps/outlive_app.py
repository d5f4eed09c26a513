"""The app for tests/unload_host.rs: Python code that calls into isapi_wsgi after the host
has unloaded it (isapi-host --unload).

GET /keep stores the request's start_response and wsgi.errors in a global and starts a
Python thread that calls them every few milliseconds for ever: start_response raises
ValueError once its request has ended (that is caught), wsgi.errors.flush() runs our code
every time. Both are functions of the isapi_wsgi library. If the library were unmapped,
the next call would crash the process.

GET /sleep?SECS sleeps (for a request still running when the host shuts down).
"""
import gc
import threading
import time

KEPT = {}


def _keep_calling():
    start_response = KEPT["start_response"]
    errors = KEPT["errors"]
    time.sleep(0.05)  # let the request end first
    errors.write("outlive: calling start_response and wsgi.errors every 2 ms\n")
    errors.flush()
    calls = 0
    while True:
        try:
            start_response("200 OK", [])
        except ValueError:
            pass  # the request is over: expected
        errors.flush()
        calls += 1
        KEPT["calls"] = calls
        time.sleep(0.002)


def text(start_response, body):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/keep":
        response = text(start_response, b"kept")
        if "thread" not in KEPT:
            KEPT["start_response"] = start_response
            KEPT["errors"] = environ["wsgi.errors"]
            thread = threading.Thread(target=_keep_calling, name="outlive", daemon=True)
            KEPT["thread"] = thread
            thread.start()
        return response
    if path == "/calls":
        body = str(KEPT.get("calls", 0)).encode()
    elif path == "/sleep":
        seconds = float(environ.get("QUERY_STRING") or "1")
        time.sleep(seconds)
        body = ("slept %s" % seconds).encode()
    else:
        body = b"hello"
    return text(start_response, body)


def _find_errors():
    """wsgi.errors, found from Python alone: the environ template the bridge made holds it."""
    for _ in range(2000):
        for candidate in gc.get_objects():
            if isinstance(candidate, dict) and "wsgi.errors" in candidate:
                return candidate["wsgi.errors"]
        time.sleep(0.005)
    raise RuntimeError("no environ template found")


def _flush_for_ever():
    errors = _find_errors()
    errors.write("outlive: found wsgi.errors without a request; calling it every 2 ms\n")
    calls = 0
    while True:
        errors.flush()
        calls += 1
        KEPT["calls"] = calls
        time.sleep(0.002)


def without_a_request():
    """`app = outlive_app:without_a_request()`: a thread started at start-up finds
    wsgi.errors through the garbage collector (no request is needed, so none of the
    per-thread data a request leaves behind exists) and calls it for ever."""
    threading.Thread(target=_flush_for_ever, name="outlive", daemon=True).start()
    return application
