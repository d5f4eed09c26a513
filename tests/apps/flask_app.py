"""A Flask application for the framework tests (mounted at /flask by frameworks.py)."""
from flask import Flask, jsonify, make_response, redirect, request, url_for

app = Flask(__name__)


@app.get("/")
def index():
    return "flask index"


@app.post("/form")
def form():
    return "hello %s from a form" % request.form["name"]


@app.route("/json", methods=["GET", "POST"])
def json_view():
    if request.method == "POST":
        return jsonify(received=request.get_json(), method="POST")
    return jsonify(items=[1, 2, 3], method="GET")


@app.get("/redirect")
def go():
    return redirect(url_for("target"))


@app.get("/target")
def target():
    return "you were redirected to " + request.path


@app.get("/cookie-set")
def cookie_set():
    response = make_response("cookie set")
    response.set_cookie("flavour", "oatmeal")
    return response


@app.get("/cookie-get")
def cookie_get():
    return "flavour=" + request.cookies.get("flavour", "none")


@app.get("/boom")
def boom():
    raise RuntimeError("flask view failed")
