"""The HTTP ceiling for /v1/tag: a Flask app that parses the same JSON body and
returns a small JSON object, with no tagging, validation or metrics. Served by
benchmarks/load/http_ceiling.py under fastner's own gunicorn settings."""
from flask import Flask, jsonify, request


def create_app():
    app = Flask(__name__)

    @app.post("/v1/tag")
    def tag():
        body = request.get_json()
        return jsonify({"entities": [], "model": "minimal", "chars": len(body["text"])})

    return app
