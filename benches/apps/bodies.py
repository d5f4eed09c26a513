"""The app benches/bodies.sh serves: large bodies both ways.

    /wrapper   the file named by $BODIES_FILE through wsgi.file_wrapper (the server sends it)
    /python    the same file, read and yielded by Python in 64 KiB blocks
    /upload    reads wsgi.input in 64 KiB pieces to its end; answers the byte count
"""
import os

FILE = os.environ.get("BODIES_FILE", "")
BLOCK = 65536


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/wrapper":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](open(FILE, "rb"), BLOCK)
    if path == "/python":
        size = os.path.getsize(FILE)
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(size))])

        def blocks():
            with open(FILE, "rb") as source:
                while True:
                    block = source.read(BLOCK)
                    if not block:
                        return
                    yield block

        return blocks()
    if path == "/upload":
        stream, total = environ["wsgi.input"], 0
        while True:
            piece = stream.read(BLOCK)
            if not piece:
                break
            total += len(piece)
        body = str(total).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]
