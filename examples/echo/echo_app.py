"""Streams the request body back, line by line, without holding it in memory: a small
demonstration of wsgi.input (read in pieces from the client) and of a streamed response
(chunked for HTTP/1.1 clients).

    curl --data-binary @some-big-file http://127.0.0.1:8080/ > copy
"""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", environ.get("CONTENT_TYPE") or "application/octet-stream")])
    stream = environ["wsgi.input"]
    remaining = int(environ.get("CONTENT_LENGTH") or 0)

    def body():
        nonlocal remaining
        if not environ.get("wsgi.input_terminated"):
            while remaining > 0:
                block = stream.read(min(remaining, 65536))
                if not block:
                    return
                remaining -= len(block)
                yield block
        else:
            # A body of unknown length (chunked upload): read to its end.
            for line in stream:
                yield line

    return body()
