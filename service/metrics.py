"""Prometheus metrics, correct across gunicorn workers.

service/gunicorn_conf.py sets PROMETHEUS_MULTIPROC_DIR before anything imports
prometheus_client; each worker then writes its samples there and /metrics
aggregates them with a MultiProcessCollector. Without that variable (tests,
`flask run`) the process-local default registry is served.
"""
import os
import time

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("fastner_requests_total", "HTTP requests by endpoint, method and status",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("fastner_request_seconds", "Request latency by endpoint", ["endpoint"],
                    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                             2.5, 5))
TOKENS = Counter("fastner_tokens_tagged_total", "Tokens tagged")
ENTITIES = Counter("fastner_entities_found_total", "Entities returned")
ERRORS = Counter("fastner_errors_total", "Error responses by code", ["code"])


class _Metered:
    """WSGI middleware around the Flask app: counts each request by endpoint (the
    matched route's rule, "<unmatched>" for a path no route has), method and status,
    and times it to the response being ready. Metric children are looked up once per
    label set: the labels() call and two Flask hooks cost a one-sentence request more
    than tagging its words."""

    METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))

    def __init__(self, app):
        self.wsgi_app, self.url_map = app.wsgi_app, app.url_map
        self.rules = None             # the routes without arguments, once all are added
        self.counters, self.timers = {}, {}

    def _endpoint(self, environ):
        if self.rules is None:
            self.rules = {r.rule for r in self.url_map.iter_rules() if not r.arguments}
        path = environ.get("PATH_INFO", "")
        if path in self.rules:
            return path
        try:                          # a route with arguments (/static/<path:filename>)
            rule, _ = self.url_map.bind_to_environ(environ).match(return_rule=True)
            return rule.rule
        except Exception:             # no route (404), or not this method (405)
            return "<unmatched>"

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        seen = []

        def record_status(status, headers, exc_info=None):
            seen.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, record_status)
        endpoint = self._endpoint(environ)
        if endpoint != "/metrics" and seen:
            method = environ.get("REQUEST_METHOD", "")
            # a client chooses the method: any other is "other", or each would add a series
            key = (endpoint, method if method in self.METHODS else "other", seen[0])
            counter = self.counters.get(key)
            if counter is None:
                counter = self.counters[key] = REQUESTS.labels(*key)
            counter.inc()
            timer = self.timers.get(endpoint)
            if timer is None:
                timer = self.timers[endpoint] = LATENCY.labels(endpoint)
            timer.observe(time.perf_counter() - started)
        return body


def init_app(app):
    app.wsgi_app = _Metered(app)

    @app.get("/metrics")
    def metrics():
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = REGISTRY
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def count_error(code):
    ERRORS.labels(code).inc()


def count_tagged(tokens, entities):
    TOKENS.inc(tokens)
    ENTITIES.inc(entities)
