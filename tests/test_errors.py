"""fastner.service.errors: one JSON shape for every error, its message short and
encodable whatever client input it quotes, and every error counted by its code."""
import flask
import pytest

from fastner.service import metrics
from fastner.service.errors import ApiError, error_response


@pytest.fixture
def app_context():
    with flask.Flask(__name__).app_context():
        yield


def body(response):
    return response.status_code, response.get_json()


def test_the_shape_and_status(app_context):
    assert body(error_response(422, "invalid_request", "'text' must be a string")) == (
        422, {"error": {"code": "invalid_request", "message": "'text' must be a string"}})


def test_messages_are_cut_after_500_characters(app_context):
    assert body(error_response(400, "x", "a" * 500))[1]["error"]["message"] == "a" * 500
    assert body(error_response(400, "x", "a" * 501))[1]["error"]["message"] == "a" * 500 + "..."
    assert body(error_response(400, "x", "b" * 10_000))[1]["error"]["message"] == \
        "b" * 500 + "..."


def test_a_lone_surrogate_in_a_message_is_escaped_not_an_error(app_context):
    message = body(error_response(422, "invalid_text", "got 'Paris \ud800'"))[1]["error"]["message"]
    assert message == "got 'Paris \\ud800'"


def test_every_error_is_counted_by_its_code(app_context):
    def count():
        return metrics.ERRORS.labels(code="some_code")._value.get()
    before = count()
    error_response(400, "some_code", "m")
    error_response(400, "some_code", "m")
    assert count() == before + 2


def test_api_errors_carry_status_code_and_message():
    err = ApiError(413, "too_many_tokens", "the request holds 9 tokens")
    assert (err.status, err.code, err.message) == (413, "too_many_tokens",
                                                   "the request holds 9 tokens")
    assert str(err) == "the request holds 9 tokens"
