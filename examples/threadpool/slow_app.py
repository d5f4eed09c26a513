"""A WSGI app whose requests wait (like a slow database query), to try the threadpool handler.

/slow?SECONDS waits that long (releasing the GIL, as I/O does) and says which worker ran it;
any other path answers at once.
"""
import threading
import time


def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        seconds = min(float(environ.get("QUERY_STRING") or "1"), 30.0)
        time.sleep(seconds)
        body = "waited %.1f s on %s\n" % (seconds, threading.current_thread().name)
    else:
        body = "try /slow?2 several times at once (wsgi.multithread = %s)\n" % environ[
            "wsgi.multithread"
        ]
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
