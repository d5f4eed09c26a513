"""The WSGI application the bridge tests serve: one route per behaviour under test.

Every route except those under /raw/ runs wrapped in wsgiref.validate.validator, with
warnings turned into errors, so any PEP 3333 violation by the bridge (or the app) shows up
as a 500. The /raw/ routes break the protocol on purpose and are served unwrapped.
"""
import io
import itertools
import json
import sys
import time
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")

CLOSED = []
# Per-thread data that lives as long as the server thread's Python thread state.
LOCAL = __import__("threading").local()
# How many pieces the /endless stream has yielded.
COUNTS = {}
# How the /writer-thread's own thread ended.
WRITER = {}
# What /raw/read-report saw last, for /raw/last-report (its own client may be gone).
REPORT = []
# What the files /raw/file served saw: reads and close() (for /raw/file-report).
FILES = []
# The gates /raw/events waits on between events, by the query's key (/raw/release opens one).
GATES = {}


def error_name(error):
    """The exception's class, as an application importing isapi_wsgi sees it."""
    import isapi_wsgi

    name = type(error).__name__
    if isinstance(error, (isapi_wsgi.ClientDisconnected, isapi_wsgi.BodyTooLarge)):
        name = "isapi_wsgi." + name
    if isinstance(error, OSError) and type(error) is not OSError:
        name += " (an OSError)"
    return name


class WatchedFile(io.FileIO):
    """A real file that records its reads and its close() in FILES."""

    def __init__(self, path):
        super().__init__(path, "rb")
        self.record = {"reads": 0, "closed": False}
        FILES.append(self.record)

    def read(self, size=-1):
        self.record["reads"] += 1
        return super().read(size)

    def close(self):
        self.record["closed"] = True
        super().close()


class WatchedBytes(io.BytesIO):
    """Not a file (no fileno): wsgi.file_wrapper must iterate it."""

    def __init__(self, data):
        super().__init__(data)
        self.record = {"reads": 0, "closed": False}
        FILES.append(self.record)

    def read(self, size=-1):
        self.record["reads"] += 1
        return super().read(size)

    def close(self):
        self.record["closed"] = True
        super().close()


class Closing:
    """An iterable that records that close() was called."""

    def __init__(self, chunks, name):
        self.chunks = chunks
        self.name = name

    def __iter__(self):
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def close(self):
        CLOSED.append(self.name)


def text(start_response, body, status="200 OK", headers=(), length=True):
    body = body.encode("utf-8") if isinstance(body, str) else body
    all_headers = [("Content-Type", "text/plain; charset=utf-8")] + list(headers)
    if length:
        all_headers.append(("Content-Length", str(len(body))))
    start_response(status, all_headers)
    return [body]


def app(environ, start_response):
    path = environ["PATH_INFO"]
    method = environ["REQUEST_METHOD"]
    if path == "/hello":
        return text(start_response, "Hello, World!")
    if path == "/thread-local":
        # How many requests this server thread has served, by the app's own count.
        LOCAL.count = getattr(LOCAL, "count", 0) + 1
        return text(start_response, "%d" % LOCAL.count)
    if path == "/thread-states":
        # How many Python thread states the interpreter has (threads that ended must not
        # leave theirs behind), walked with the C API through ctypes.
        import ctypes

        api = ctypes.pythonapi
        api.PyInterpreterState_Head.restype = ctypes.c_void_p
        api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
        api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
        api.PyThreadState_Next.restype = ctypes.c_void_p
        api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
        count, state = 0, api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Head())
        while state:
            count += 1
            state = api.PyThreadState_Next(state)
        return text(start_response, "%d" % count)
    if path == "/version":
        return text(start_response, "%d.%d" % sys.version_info[:2])
    if path == "/sigint":
        # Python's own SIGINT handler would be default_int_handler; with Py_InitializeEx(0)
        # it installs none and the host keeps Ctrl-C.
        import signal

        return text(start_response, repr(signal.getsignal(signal.SIGINT)))
    if path == "/c-extensions":
        # Two C extension modules (lib-dynload/*.so), imported with no fallback: they resolve
        # libpython's symbols only if the extension loaded it RTLD_GLOBAL.
        import _json
        import math

        answer = {
            "math": math.__file__,
            "_json": _json.__file__,
            "sqrt2": math.sqrt(2),
            "encoded": _json.encode_basestring_ascii("caf\u00e9"),
        }
        return text(start_response, json.dumps(answer))
    if path == "/dynload":
        # The same for builds (Debian's) that link math and _json into libpython: two modules
        # that every build keeps in lib-dynload, each calling into a library of its own.
        import _bz2
        import _decimal

        packer = _bz2.BZ2Compressor()
        packed = packer.compress(b"isapi-wsgi") + packer.flush()
        answer = {
            "_bz2": _bz2.__file__,
            "_decimal": _decimal.__file__,
            "bz2": _bz2.BZ2Decompressor().decompress(packed).decode(),
            "sqrt2": str(_decimal.Decimal(2).sqrt()),
        }
        return text(start_response, json.dumps(answer))
    if path == "/environ" or environ.get("HTTP_X_ENVIRON") == "1":
        shown = {k: v for k, v in environ.items() if isinstance(v, str)}
        shown["wsgi.version"] = list(environ["wsgi.version"])
        for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
            shown[key] = environ[key]
        shown["has_file_wrapper"] = "wsgi.file_wrapper" in environ
        return text(start_response, json.dumps(shown), headers=[("X-Kind", "environ")])
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b"".join(iter(environ["wsgi.input"]))
        return text(start_response, body, headers=[("X-Length", str(len(body)))])
    if path == "/read-some":
        # Reads 1 KiB of the body, whatever its size, and answers.
        some = environ["wsgi.input"].read(1024)
        return text(start_response, "read %d of %s" % (len(some), environ["CONTENT_LENGTH"]))
    if path == "/echo-iter":
        lines = [line.decode("latin-1") for line in environ["wsgi.input"]]
        return text(start_response, json.dumps(lines))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"one,", b"", b"two,", b"three"], "stream")
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return [b"returned"]
    if path == "/empty":
        start_response("204 No Content", [])
        return []
    if path == "/error":
        raise ValueError("boom before start_response")
    if path == "/error-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"first", RuntimeError("boom mid-body")], "error-after")
    if path == "/error-after-empty":
        # Headers go out only with the first non-empty piece: none has, so this is a 500.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"", RuntimeError("boom after an empty piece")], "error-after-empty")
    if path == "/exc-info":
        try:
            raise KeyError("handled")
        except KeyError:
            start_response("200 OK", [("Content-Type", "text/plain")])
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if path == "/file":
        wrapper = environ["wsgi.file_wrapper"]
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return wrapper(io.BytesIO(b"x" * 20000), 8192)
    if path == "/errors":
        environ["wsgi.errors"].write("testapp: a line for wsgi.errors\n")
        environ["wsgi.errors"].writelines(["testapp: two\n", "testapp: lines\n"])
        environ["wsgi.errors"].flush()
        return text(start_response, "logged")
    if path == "/endless":
        # Never ends: 1 KiB of data every 400 pieces (about 2 s), b"" between them, like an
        # app that waits for events and sends heartbeats meanwhile.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def endless():
            for n in itertools.count():
                COUNTS["endless"] = n + 1
                yield b"x" * 1024 if n % 400 == 0 else b""
                time.sleep(0.005)

        return Closing(endless(), "endless")
    if path == "/count":
        return text(start_response, str(COUNTS.get(environ["QUERY_STRING"], 0)))
    if path == "/closed":
        return text(start_response, json.dumps(CLOSED))
    if path == "/server-variables":
        # The query names the variables to read: their values (None: no such variable).
        read = environ["isapi.server_variable"]
        names = environ["QUERY_STRING"].split(",")
        return text(start_response, json.dumps({name: read(name) for name in names}))
    if path == "/server-variable-errors":
        read = environ["isapi.server_variable"]
        answers = []
        for args in [(5,), (b"LOCAL_ADDR",), ("",), ("LOCAL ADDR",), ("caf\u00e9",),
                     ("UNICODE_URL",), ("A\0B",), (), ("LOCAL_ADDR", "x")]:
            try:
                answers.append("no error: %r" % read(*args))
            except (TypeError, ValueError) as error:
                answers.append(type(error).__name__)
        return text(start_response, " ".join(answers))
    if path.startswith("/unicode"):
        return text(start_response, json.dumps({"path": path, "script": environ["SCRIPT_NAME"]}))
    if path == "/big":
        # 16 blocks of 64 KiB, or as many as ?blocks=N asks (made as they are sent).
        query = environ.get("QUERY_STRING", "")
        blocks = int(query[len("blocks="):]) if query.startswith("blocks=") else 16
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Closing((bytes([i % 251]) * 65536 for i in range(blocks)), "big")
    return text(start_response, "not found: " + path, status="404 Not Found")


def raw(environ, start_response):
    path = environ["PATH_INFO"][4:]
    if path == "/echo-pieces":
        stream = environ["wsgi.input"]
        pieces = [stream.read(3), stream.readline(), stream.readline(5)]
        pieces += stream.readlines(1)
        pieces.append(stream.read())
        pieces.append(stream.read(10))
        return text(start_response, json.dumps([p.decode("latin-1") for p in pieces]))
    if path == "/iterate":
        # wsgi.input's own iterator (the validator's would call readline()).
        lines = [line.decode("latin-1") for line in environ["wsgi.input"]]
        return text(start_response, json.dumps(lines))
    if path == "/read-all":
        body = environ["wsgi.input"].read()
        return text(start_response, body)
    if path.startswith("/read-report"):
        # Reads the whole body (read(), readline() or iteration, as the path says) and
        # answers, and records for /raw/last-report, what it got: its length, or the
        # exception; then whether a second read raises again.
        stream = environ["wsgi.input"]
        how = path[len("/read-report"):] or "/read"
        read = {
            "/read": stream.read,
            "/readline": lambda: b"".join(iter(stream.readline, b"")),
            "/readlines": lambda: b"".join(stream.readlines()),
        }[how]
        try:
            seen = "read %d bytes" % len(read())
        except Exception as error:
            seen = "%s: %s" % (error_name(error), error)
            try:
                seen += "; again: %d bytes" % len(stream.read(10))
            except Exception as again:
                seen += "; again: %s" % error_name(again)
        REPORT.append(seen)
        return text(start_response, seen)
    if path == "/input-terminated":
        # wsgi.input_terminated, and the body read to its end whatever CONTENT_LENGTH says.
        body = environ["wsgi.input"].read()
        return text(start_response, "%r, %d bytes" % (environ.get("wsgi.input_terminated"), len(body)))
    if path == "/file":
        # wsgi.file_wrapper around a real file: ?path=P&offset=N&length=L&write=1&bytes=1
        # (seek to N first; declare Content-Length L; write() a prefix first; a BytesIO of
        # the file's content instead of the file).
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs(environ["QUERY_STRING"]).items()}
        if "bytes" in query:
            with open(query["path"], "rb") as source:
                filelike = WatchedBytes(source.read())
        else:
            filelike = WatchedFile(query["path"])
        filelike.seek(int(query.get("offset", 0)))
        headers = [("Content-Type", "application/octet-stream")]
        if "length" in query:
            headers.append(("Content-Length", query["length"]))
        write = start_response("200 OK", headers)
        if "write" in query:
            write(b"prefix;")
        return environ["wsgi.file_wrapper"](filelike, 65536)
    if path == "/file-report":
        return text(start_response, json.dumps(FILES[-1] if FILES else None))
    if path == "/events":
        # Server-sent events: one, then wait until /raw/release?KEY, then the next.
        import threading

        key = environ["QUERY_STRING"]
        gate = GATES[key] = threading.Event()
        start_response("200 OK", [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])

        def events():
            for n in range(1, 4):
                yield ("id: %d\ndata: event %d\n\n" % (n, n)).encode()
                if n < 3 and not gate.wait(60):
                    yield b"data: never released\n\n"
                    return
                gate.clear()

        return Closing(events(), "events-" + key)
    if path == "/release":
        GATES[environ["QUERY_STRING"]].set()
        return text(start_response, "released")
    if path == "/forever":
        # 64 KiB pieces until the client leaves.
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        piece = b"f" * 65536
        return Closing(itertools.repeat(piece), "forever")
    if path == "/drain":
        # Reads the body in pieces of the query's size (not a multiple of what arrives)
        # and answers how many bytes came.
        stream, size, total = environ["wsgi.input"], int(environ["QUERY_STRING"]), 0
        while True:
            piece = stream.read(size)
            if not piece:
                break
            total += len(piece)
        return text(start_response, str(total))
    if path == "/closed-count":
        return text(start_response, str(CLOSED.count(environ["QUERY_STRING"])))
    if path == "/last-report":
        return text(start_response, REPORT[-1] if REPORT else "nothing yet")
    if path == "/hop-by-hop":
        start_response("200 OK", [("Connection", "close")])
        return [b"never"]
    if path == "/bad-status":
        start_response("OK", [])
        return [b"never"]
    if path == "/bad-header":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"never"]
    if path == "/bytes-status":
        start_response(b"200 OK", [])
        return [b"never"]
    if path == "/non-latin1-status":
        start_response("200 \u0100K", [])
        return [b"never"]
    if path == "/int-header-value":
        start_response("200 OK", [("X-Number", 5)])
        return [b"never"]
    if path == "/headers-not-list":
        start_response("200 OK", (("Content-Type", "text/plain"),))
        return [b"never"]
    if path == "/header-not-tuple":
        start_response("200 OK", [["Content-Type", "text/plain"]])
        return [b"never"]
    if path == "/start-twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"never"]
    if path == "/str-body":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ["a str, not bytes"]
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return Closing([b"12345"], "short")
    if path == "/long":
        start_response("200 OK", [("Content-Length", "3")])
        return Closing([b"123", b"456789"], "long")
    if path == "/short-list":
        # The whole body known at once, one byte short of its declared length.
        start_response("200 OK", [("Content-Length", "10")])
        return [b"123456789"]
    if path == "/long-list":
        # Declares one byte, returns a whole file.
        start_response("200 OK", [("Content-Length", "1")])
        with open(__file__, "rb") as source:
            return [source.read()]
    if path == "/same-length-twice":
        start_response("200 OK", [("Content-Length", "3"), ("content-length", "3")])
        return [b"abc"]
    if path == "/no-content-with-length":
        start_response("204 No Content", [("Content-Length", "5")])
        return [b""]
    if path == "/not-modified-with-length":
        start_response("304 Not Modified", [("Content-Length", "5"), ("ETag", '"v1"')])
        return []
    if path.startswith("/interim-"):
        code = path[len("/interim-"):]
        start_response(code + " Interim", [])
        return [b"never"]
    if path == "/control-header":
        start_response("200 OK", [("X-Bad", "a\x01b")])
        return [b"never"]
    if path == "/escape-delete":
        start_response("200 OK", [("X-Bad", "a\x7fb")])
        return [b"never"]
    if path == "/tab-header":
        start_response("200 OK", [("X-Tab", "a\tb"), ("Content-Length", "2")])
        return [b"ok"]
    if path.startswith("/fail"):
        raise RuntimeError("failing on purpose")
    if path == "/two-readers":
        # A thread of the app's reads the body (and waits for the client); meanwhile the
        # request's thread tries to read too.
        import threading
        stream = environ["wsgi.input"]
        got = {}
        length = int(environ["CONTENT_LENGTH"])
        reader = threading.Thread(target=lambda: got.update(body=len(stream.read(length))))
        reader.start()
        time.sleep(0.3)
        try:
            stream.read(1)
            second = "no error"
        except RuntimeError as error:
            second = "RuntimeError: %s" % error
        reader.join()
        return text(start_response, "%s; the first reader got %r bytes" % (second, got.get("body")))
    if path == "/method":
        # Unvalidated: wsgiref's validator warns about methods it does not know.
        return text(start_response, environ["REQUEST_METHOD"])
    if path == "/writer-thread":
        # A thread of the app's own calls write() in a loop while the request's thread
        # streams a large body to a client that reads slowly.
        import threading
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def writer():
            count = 0
            while True:
                try:
                    write(b"w" * 4096)
                except Exception as error:
                    WRITER["ended"] = "%s after %d writes" % (type(error).__name__, count)
                    return
                count += 1

        WRITER.clear()
        threading.Thread(target=writer, daemon=True).start()
        return (b"m" * 65536 for _ in range(64))
    if path == "/writer-ended":
        for _ in range(500):
            if "ended" in WRITER:
                break
            time.sleep(0.01)
        return text(start_response, WRITER.get("ended", "still writing"))
    if path == "/two-lengths":
        start_response("200 OK", [("Content-Length", "3"), ("Content-Length", "4")])
        return [b"abc"]
    if path == "/no-start":
        return [b"body without start_response"]
    if path == "/exc-info-late":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"sent"
            try:
                raise KeyError("late")
            except KeyError:
                start_response("500 Oops", [], sys.exc_info())
            yield b"never"

        return body()
    if path == "/exc-info-bogus":
        # exc_info that is not an exception's: refused with TypeError, not handed to CPython.
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"sent;"
            for bogus in [(int, 5, None), (KeyError, "text", None), (None, KeyError("k"), 5)]:
                try:
                    start_response("500 Oops", [], bogus)
                except TypeError as error:
                    yield ("TypeError: %s;" % error).encode()

        return body()
    if path == "/soak-stats":
        # What the soak (benches/soak.sh) samples to tell a leak from the allocator's
        # behaviour: after a full collection, the interpreter's allocated memory blocks and
        # the objects the collector tracks.
        import gc

        gc.collect()
        stats = {
            "blocks": sys.getallocatedblocks(),
            "objects": len(gc.get_objects()),
            "gc_count": gc.get_count(),
        }
        return text(start_response, json.dumps(stats))
    if path == "/keep":
        global KEPT
        KEPT = (environ["wsgi.input"], start_response, environ["isapi.server_variable"])
        return text(start_response, "kept")
    if path == "/object-ids":
        # The identities of this request's lent objects, and of those /keep kept.
        lent = (environ["wsgi.input"], start_response, environ["isapi.server_variable"])
        kept = globals().get("KEPT", ())
        return text(start_response, "%s|%s" % (" ".join(map(str, map(id, lent))), " ".join(map(str, map(id, kept)))))
    if path == "/use-kept":
        try:
            KEPT[0].read()
        except ValueError as error:
            return text(start_response, "ValueError: %s" % error)
        return text(start_response, "no error")
    if path == "/use-kept-variable":
        try:
            KEPT[2]("LOCAL_ADDR")
        except ValueError as error:
            return text(start_response, "ValueError: %s" % error)
        return text(start_response, "no error")
    return text(start_response, "raw: not found", status="404 Not Found")


validated = validator(app)


def application(environ, start_response):
    if environ["PATH_INFO"].startswith("/raw/"):
        return raw(environ, start_response)
    return validated(environ, start_response)
