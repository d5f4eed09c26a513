"""The Flask app of benches/compare.sh: one JSON route, the same on every server.

GET /json -> {"message":"Hello, World!"} (application/json, Content-Length set by Flask).
"""
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/json")
def json_route():
    return jsonify(message="Hello, World!")
