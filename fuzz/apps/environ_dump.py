"""The environ target's application (fuzz/fuzz_targets/environ.rs): answers with the
environ's CGI entries (upper-case keys) as `NAME=hex` lines, each value encoded back to
the bytes it was made from, in hex (a decoded path may hold any byte, NUL and LF too). PEP 3333 wants these as latin-1 "native strings":
a value that is not one raises here, and the target sees a 500 instead of its 200."""


def application(environ, start_response):
    parts = []
    for key, value in sorted(environ.items()):
        if key.isupper() and isinstance(value, str):
            parts.append("%s=%s\n" % (key, value.encode("latin-1").hex()))
    body = "".join(parts).encode("ascii")
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]
