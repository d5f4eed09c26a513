"""A small Flask site. Set up its virtual environment once:

    python3 -m venv examples/flask/.venv
    examples/flask/.venv/bin/pip install flask          (Windows: .venv\\Scripts\\pip)

then serve it with examples/flask/isapi_wsgi.ini.
"""
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():
    return "<h1>Flask under isapi-wsgi</h1><p>Try <a href='hello/World'>hello/World</a> or /api.</p>"


@app.get("/hello/<name>")
def hello(name):
    return "Hello, %s!" % name


@app.route("/api", methods=["GET", "POST"])
def api():
    return jsonify(method=request.method, json=request.get_json(silent=True), script_root=request.script_root)
