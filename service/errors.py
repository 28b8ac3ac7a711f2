"""One error type and one JSON shape for every error: {"error": {"code", "message"}}."""
import logging

from flask import jsonify
from werkzeug.exceptions import HTTPException

from fastner.service.metrics import count_error

log = logging.getLogger("fastner.service")

# Machine-readable codes for the HTTP errors werkzeug raises itself.
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               413: "payload_too_large", 415: "unsupported_media_type",
               422: "invalid_request", 500: "internal_error", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status, code, message):
    # a message may quote client input: keep it short and encodable (lone surrogates)
    if len(message) > 500:
        message = message[:500] + "..."
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    count_error(code)
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def init_app(app):
    @app.errorhandler(ApiError)
    def handle_api_error(err):
        return error_response(err.status, err.code, err.message)

    @app.errorhandler(HTTPException)
    def handle_http_error(err):
        response = error_response(err.code or 500, _HTTP_CODES.get(err.code, "http_error"),
                                  err.description or err.name)
        if err.code == 405 and getattr(err, "valid_methods", None):
            response.headers["Allow"] = ", ".join(err.valid_methods)
        return response

    @app.errorhandler(Exception)
    def handle_unexpected(err):
        # A bug, not a client mistake: log it with its traceback and answer 500.
        log.exception("unhandled error")
        app.extensions["fastner_internal_errors"] = app.extensions.get(
            "fastner_internal_errors", 0) + 1
        return error_response(500, "internal_error", "internal error; the server log has details")
