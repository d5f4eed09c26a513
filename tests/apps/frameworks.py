"""Flask at /flask and Django at /django, each wrapped in wsgiref.validate.validator with
warnings as errors: `[wsgi] app = frameworks:application`."""
import warnings
from wsgiref.util import shift_path_info
from wsgiref.validate import validator

import django_app
import flask_app

# After the imports: only warnings raised while serving (the validator's) become errors.
warnings.simplefilter("error")

APPS = {
    "flask": validator(flask_app.app),
    "django": validator(django_app.application),
}


def application(environ, start_response):
    name = shift_path_info(environ)
    app = APPS.get(name)
    if app is None:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
        return [b"not found"]
    return app(environ, start_response)
