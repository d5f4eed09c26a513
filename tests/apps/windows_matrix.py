"""The application .ci/wine-matrix serves under wine, once per CPython version.

One module, so that one host start covers every case. Each plain route is wrapped in
wsgiref.validate.validator, which raises (500, logged) on any protocol slip by either side;
Flask is not (Werkzeug calls wsgi.input.read() without a size, which PEP 3333 allows for
a server that, like ours, ends the stream at the end of the body, but the validator forbids):

    /            hello, with the interpreter's version (the matrix checks it is the one
                 the ini file configured)
    /environ     the CGI/WSGI keys as text, `key=repr(value)` per line
    /sys         sys.path and the start-up flags, as JSON
    /echo        POST: answers the SHA-256 and length of the body it read from wsgi.input
                 (up to CONTENT_LENGTH; a chunked request has none: then up to the end)
    /lines       POST: reads wsgi.input with readline() and answers the line count
    /stream      a streamed response: 50 chunks from a generator, no Content-Length
    /sleep       sleeps 0.2 s (GIL released) then answers: the concurrency check
    /flask/...   a Flask app (installed from win_amd64 wheels into a folder on sys.path)
    /token       whether the thread running the app has an impersonation token (ctypes
                 OpenThreadToken); also starts a watcher that, 0.3 s after the response,
                 looks at that same thread's token again
    /token-after what the watcher saw: the worker must have reverted to no token
    /file-wrapper  wsgi.file_wrapper around a real file (256 000 known bytes, in the temp
                 folder), from ?offset=N, with Content-Length ?length=L if given: the
                 server sends it (TRANSMIT_FILE with the HANDLE msvcrt.get_osfhandle gives)
    /file-report what that file saw: how often read() was called (0 when the server sent
                 it), and whether close() was
"""
import hashlib
import io
import os
import sys
import tempfile
import threading
import time
from wsgiref.validate import validator


def hello(environ, start_response):
    body = ("Hello from CPython %s on %s\n" % (sys.version.split()[0], sys.platform)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def show_environ(environ, start_response):
    lines = ["%s=%r" % (k, environ[k]) for k in sorted(environ) if k.isupper() or k.startswith("wsgi.")]
    body = ("\n".join(lines) + "\n").encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def show_sys(environ, start_response):
    import json
    info = {"path": sys.path, "no_site": sys.flags.no_site, "isolated": sys.flags.isolated,
            "site_imported": "site" in sys.modules, "prefix": sys.prefix}
    body = json.dumps(info).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def echo(environ, start_response):
    digest, total = hashlib.sha256(), 0
    stream = environ["wsgi.input"]
    length = int(environ["CONTENT_LENGTH"]) if environ.get("CONTENT_LENGTH") else None
    while length is None or total < length:
        chunk = stream.read(65536 if length is None else min(65536, length - total))
        if not chunk:
            break
        digest.update(chunk)
        total += len(chunk)
    body = ("%s %d\n" % (digest.hexdigest(), total)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def count_lines(environ, start_response):
    stream = environ["wsgi.input"]
    count = 0
    while True:
        line = stream.readline()
        if not line:
            break
        count += 1
    body = ("%d\n" % count).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for i in range(50):
            yield ("chunk %02d\n" % i).encode()

    return chunks()


def sleep(environ, start_response):
    time.sleep(0.2)
    body = b"slept\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_flask():
    from flask import Flask, jsonify, redirect, request

    app = Flask(__name__)

    @app.route("/")
    def index():
        return "Flask says hello"

    @app.route("/json", methods=["POST"])
    def json_echo():
        return jsonify(received=request.get_json(), flask=app.name)

    @app.route("/form", methods=["POST"])
    def form():
        return "name=%s" % request.form.get("name", "")

    @app.route("/away")
    def away():
        return redirect("/flask/")

    return app


_flask = None


def flask_app(environ, start_response):
    global _flask
    if _flask is None:
        _flask = make_flask()
    # Mount the Flask app at /flask: move that segment from PATH_INFO to SCRIPT_NAME.
    environ = dict(environ)
    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + "/flask"
    environ["PATH_INFO"] = environ["PATH_INFO"][len("/flask"):] or "/"
    return _flask(environ, start_response)


TOKEN_AFTER = {}


def _thread_token(thread_handle):
    """'token' if the thread has an impersonation token, else 'none' (or the error)."""
    import ctypes
    from ctypes import wintypes

    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    advapi32.OpenThreadToken.argtypes = [wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL,
                                         ctypes.POINTER(wintypes.HANDLE)]
    token = wintypes.HANDLE()
    TOKEN_QUERY, ERROR_NO_TOKEN = 0x0008, 1008
    if advapi32.OpenThreadToken(thread_handle, TOKEN_QUERY, True, ctypes.byref(token)):
        ctypes.windll.kernel32.CloseHandle(token)
        return "token"
    error = ctypes.get_last_error()
    return "none" if error == ERROR_NO_TOKEN else "error %d" % error


def _watch(thread_id):
    import ctypes
    from ctypes import wintypes

    time.sleep(0.3)  # the request has ended; its worker is idle
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenThread.restype = wintypes.HANDLE
    THREAD_QUERY_INFORMATION = 0x0040
    handle = kernel32.OpenThread(THREAD_QUERY_INFORMATION, False, thread_id)
    TOKEN_AFTER["seen"] = _thread_token(handle) if handle else "OpenThread error %d" % ctypes.get_last_error()
    if handle:
        kernel32.CloseHandle(handle)


def token(environ, start_response):
    import ctypes

    TOKEN_AFTER.clear()
    now = _thread_token(ctypes.windll.kernel32.GetCurrentThread())
    threading.Thread(target=_watch, args=(threading.get_native_id(),)).start()
    body = ("during the request: %s\n" % now).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def token_after(environ, start_response):
    for _ in range(50):
        if "seen" in TOKEN_AFTER:
            break
        time.sleep(0.05)
    body = ("after the request: %s\n" % TOKEN_AFTER.get("seen", "nothing seen")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


FILE_CONTENT = bytes(range(256)) * 1000
FILE_REPORT = {}


class WatchedFile(io.FileIO):
    """A real file that records its reads and its close()."""

    def read(self, size=-1):
        FILE_REPORT["reads"] = FILE_REPORT.get("reads", 0) + 1
        return super().read(size)

    def close(self):
        FILE_REPORT["closed"] = True
        super().close()


def file_wrapper(environ, start_response):
    from urllib.parse import parse_qs

    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = os.path.join(tempfile.gettempdir(), "isapi-wsgi-file-wrapper.bin")
    if not os.path.exists(path) or os.path.getsize(path) != len(FILE_CONTENT):
        with open(path, "wb") as out:
            out.write(FILE_CONTENT)
    FILE_REPORT.clear()
    FILE_REPORT.update(reads=0, closed=False)
    filelike = WatchedFile(path, "rb")
    filelike.seek(int(query.get("offset", 0)))
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in query:
        headers.append(("Content-Length", query["length"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](filelike, 8192)


def file_report(environ, start_response):
    import json

    body = json.dumps(FILE_REPORT, sort_keys=True).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def not_found(environ, start_response):
    body = b"not found\n"
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


ROUTES = {path: validator(app) for path, app in {
    "/": hello, "/environ": show_environ, "/sys": show_sys, "/echo": echo, "/lines": count_lines,
    "/stream": stream, "/sleep": sleep, "/token": token, "/token-after": token_after}.items()}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "") or "/"
    if path == "/flask" or path.startswith("/flask/"):
        return flask_app(environ, start_response)
    # Unvalidated: the validator wraps the iterable, which would hide the file wrapper.
    if path == "/file-wrapper":
        return file_wrapper(environ, start_response)
    if path == "/file-report":
        return file_report(environ, start_response)
    return ROUTES.get(path, validator(not_found))(environ, start_response)
