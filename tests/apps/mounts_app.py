"""The applications of the mount and path tests: each answers with what it saw, as JSON.

`root`, `blog`, `admin` and `cafe` are the same app under different names (each wrapped in
wsgiref.validate.validator), so a response says which application answered, with its
SCRIPT_NAME, PATH_INFO and QUERY_STRING, the URL wsgiref.util.request_uri rebuilds from
them, the identity entries, and the name of the OS thread that ran it (Linux: the
threadpool's workers are called wsgi-worker).
"""
import json
import threading
import warnings
from wsgiref.util import request_uri
from wsgiref.validate import validator

warnings.simplefilter("error")


def thread_name():
    try:
        with open("/proc/self/task/%d/comm" % threading.get_native_id()) as f:
            return f.read().strip()
    except OSError:
        return ""


def make(name):
    def app(environ, start_response):
        seen = {key: environ[key] for key in ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING")}
        seen["app"] = name
        seen["request_uri"] = request_uri(environ)
        seen["thread"] = thread_name()
        seen["logon_user"] = environ.get("isapi.logon_user")
        seen["has_sid"] = "isapi.user_sid" in environ
        seen["has_groups"] = "isapi.groups" in environ
        body = json.dumps(seen).encode("utf-8")
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return validator(app)


root = make("root")
blog = make("blog")
admin = make("admin")
cafe = make("cafe")
