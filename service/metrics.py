"""Prometheus metrics, correct across gunicorn workers.

service/gunicorn_conf.py sets PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus_client; each worker then writes its samples there and /metrics
aggregates them with a MultiProcessCollector. Without that variable (tests,
`flask run`) the process-local default registry is served.
"""
import os
import time

from flask import Response, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter,
                               Histogram, generate_latest, multiprocess)

REQUESTS = Counter("fastner_requests_total", "HTTP requests by endpoint, method and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("fastner_request_seconds", "Request latency by endpoint", ["endpoint"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                             2.5, 5))
TOKENS = Counter("fastner_tokens_tagged_total", "Tokens tagged")
ENTITIES = Counter("fastner_entities_found_total", "Entities returned")
ERRORS = Counter("fastner_errors_total", "Error responses by code", ["code"])


def _endpoint():
    rule = request.url_rule
    return rule.rule if rule is not None else "<unmatched>"


def init_app(app):
    @app.before_request
    def start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def record(response):
        endpoint = _endpoint()
        if endpoint != "/metrics":
            REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
            LATENCY.labels(endpoint).observe(time.perf_counter() - g.get("started",
                                                                         time.perf_counter()))
            if response.status_code >= 400 and response.is_json:
                body = response.get_json(silent=True) or {}
                ERRORS.labels(body.get("error", {}).get("code", str(response.status_code))).inc()
        return response

    @app.get("/metrics")
    def metrics():
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def count_tagged(tokens, entities):
    TOKENS.inc(tokens)
    ENTITIES.inc(entities)
