"""The application the operations tests serve (tests/ops_host.rs): request ids, failures
that repeat, Python's logging and warnings, a slow request. Wrapped in wsgiref.validate."""
import logging
import time
import warnings
from wsgiref.validate import validator

HITS = []


def text(start_response, body, status="200 OK", headers=()):
    body = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))] + list(headers))
    return [body]


def raw_app(environ, start_response):
    path = environ["PATH_INFO"]
    HITS.append(path)
    if path == "/id":
        return text(start_response, environ["isapi.request_id"])
    if path == "/own-id":
        return text(start_response, "mine", headers=[("X-Request-Id", "set-by-app")])
    if path.startswith("/fail/"):
        # The same failure every time, with a message that differs per request.
        raise KeyError("item " + path[len("/fail/"):])
    if path == "/other-fail":
        raise ValueError("another failure")
    if path == "/log":
        logging.getLogger("ops_app").warning("a warning from logging, request %s",
                                             environ["isapi.request_id"])
        logging.getLogger("ops_app").info("an info record, below the root's level")
        warnings.warn("a warning from warnings.warn", UserWarning)
        return text(start_response, "logged")
    if path == "/noise":
        # Enough text for wsgi.errors to fill a small log and make it rotate.
        for n in range(20):
            environ["wsgi.errors"].write("ops_app: noise line %03d %s\n" % (n, "x" * 80))
        return text(start_response, "noisy")
    if path == "/slow":
        time.sleep(float(environ.get("QUERY_STRING") or "1"))
        return text(start_response, "slept")
    if path == "/hold-gil":
        # Holds the GIL for the seconds asked (no call that releases it: a pure loop with a
        # long switch interval), after writing the file named by OPS_APP_HOLDING.
        import os
        import sys
        seconds = float(environ.get("QUERY_STRING") or "5")
        with open(os.environ["OPS_APP_HOLDING"], "w") as flag:
            flag.write("holding")
        before = sys.getswitchinterval()
        sys.setswitchinterval(seconds * 4)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        sys.setswitchinterval(before)
        # When the GIL was still held, on the system's monotonic clock (CLOCK_MONOTONIC).
        return text(start_response, "held until %.6f" % end)
    if path == "/hits":
        return text(start_response, "\n".join(HITS))
    return text(start_response, "hello from ops_app " + path)


application = validator(raw_app)
