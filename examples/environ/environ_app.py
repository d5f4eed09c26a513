"""Shows the WSGI environ the extension builds, as plain text: handy to see what IIS (or
isapi-host) passes for a given mapping, mount point, header or HTTPS setting."""


def application(environ, start_response):
    lines = ["%s = %r" % (key, value) for key, value in sorted(environ.items())]
    body = ("\n".join(lines) + "\n").encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]
