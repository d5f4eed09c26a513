"""Reachable only through a .pth file: tests/wsgi_host.rs builds a venv-like directory whose
site-packages holds a .pth naming this directory, and serves `pth_app:application` with
`[python] venv` and no `path`. Answers where it was imported from and sys.path, as JSON;
wrapped in wsgiref.validate.validator with warnings as errors."""
import json
import sys
import warnings
from wsgiref.validate import validator

warnings.simplefilter("error")


def app(environ, start_response):
    body = json.dumps({"file": __file__, "path": sys.path}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


application = validator(app)
