"""Trac, the wiki and issue tracker, for the environment in env/ (as `trac-admin env deploy`
writes its trac.wsgi). Set up once, from this directory:

    python3 -m venv .venv
    .venv/bin/pip install trac                          (Windows: .venv\\Scripts\\pip)
    .venv/bin/trac-admin env initenv "Demo" sqlite:db/trac.db
    .venv/bin/trac-admin env config set trac secure_cookies true
    .venv/bin/trac-admin env permission add alice TRAC_ADMIN

then serve it with isapi_wsgi.ini (it says how). Trac takes its links' scheme, host and
prefix from the request (wsgi.url_scheme, HTTP_HOST, SCRIPT_NAME), so it needs no
base_url; it logs in whoever IIS authenticated (REMOTE_USER) at /login.
"""
import os

from trac.web.main import dispatch_request

ENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "env")


def application(environ, start_response):
    environ.setdefault("trac.env_path", ENV)
    return dispatch_request(environ, start_response)
