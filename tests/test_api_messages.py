"""What /v1/tag says when it refuses a request: each message exactly, since a client's
developer reads it to fix the request; and how the body is read (lengths, chunked
streams, a client that stops sending, a stream that fails)."""
import io
import json

import pytest

from fastner.service.app import create_app
from fastner.tagger import Tagger


@pytest.fixture(scope="module")
def app(tiny_model_path):
    app = create_app({"FASTNER_TAGGER": Tagger.load(tiny_model_path), "FASTNER_MAX_TEXTS": 8,
                      "FASTNER_MAX_TOKENS": 200, "FASTNER_MAX_BODY_BYTES": 20_000,
                      "FASTNER_MAX_CHARS": 1_000, "FASTNER_CLIENT_TIMEOUT": 7})
    app.config["TESTING"] = True
    return app


def post(app, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = app.test_client().post("/v1/tag", data=data, content_type=content_type)
    return r.status_code, r.get_json()["error"]["code"], r.get_json()["error"]["message"]


MESSAGES = [
    ({"text": "a", "lang": "en", "zz": 1}, 422, "invalid_request",
     "unknown field(s) 'lang', 'zz'; allowed: include_tokens, text, texts, tokens"),
    ({}, 422, "invalid_request",
     "send exactly one of 'text' (a string), 'texts' (a list of strings) or 'tokens' (a list "
     "of lists of strings); got none"),
    ({"text": "a", "texts": ["b"]}, 422, "invalid_request",
     "send exactly one of 'text' (a string), 'texts' (a list of strings) or 'tokens' (a list "
     "of lists of strings); got ['text', 'texts']"),
    ({"text": "a", "include_tokens": 1}, 422, "invalid_request",
     "'include_tokens' must be true or false"),
    ({"text": 5}, 422, "invalid_request", "'text' must be a string; got int"),
    ({"texts": "abc"}, 422, "invalid_request", "'texts' must be a list of strings"),
    ({"tokens": "abc"}, 422, "invalid_request",
     "'tokens' must be a list of sentences, each a list of token strings"),
    ({"tokens": ["a"]}, 422, "invalid_request", "'tokens[0]' must be a list of strings"),
    ({"tokens": [["a", "b c"]]}, 422, "invalid_request",
     "tokens[0][1] must be a non-empty string without white space"),
    (b'{"text": "Paris \\ud800"}', 422, "invalid_text",
     "'text' holds a lone surrogate U+D800 at index 6; send whole characters"),
    (b'{"texts": ["a", "b\\udc00"]}', 422, "invalid_text",
     "texts[1] holds a lone surrogate U+DC00 at index 1; send whole characters"),
    (b'{"tokens": [["a"], ["b", "\\ud801x"]]}', 422, "invalid_text",
     "tokens[1][1] holds a lone surrogate U+D801 at index 0; send whole characters"),
    ({"texts": ["a"] * 9}, 413, "too_many_texts", "'texts' holds 9 items; the limit is 8 per "
                                                  "request"),
    ({"text": "a " * 201}, 413, "too_many_tokens",
     "the request holds 201 tokens; the limit is 200: split it into smaller requests"),
    ({"tokens": [["a"] * 150, ["b"] * 60]}, 413, "too_many_tokens",
     "the request holds 210 tokens; the limit is 200: split it into smaller requests"),
    ({"text": "x" * 1001}, 413, "too_many_chars",
     "the request holds 1001 characters of text; the limit is 1000: split it into smaller "
     "requests"),
    (b"", 422, "invalid_request",
     'the request body is empty; send a JSON object such as {"text": "..."}'),
    (b"[1]", 422, "invalid_request", "the body must be a JSON object; got list"),
    (b'{"text": "a", "text": "b"}', 422, "invalid_request",
     "the key 'text' appears more than once in an object"),
    (b'{"include_tokens": true, "text": "a", "text": "b"}', 422, "invalid_request",
     "the key 'text' appears more than once in an object"),
    (b'{"text": "\xff"}', 400, "invalid_utf8",
     "the body is not valid UTF-8 (byte 10: invalid start byte)"),
    (b"x" * 20_001, 413, "payload_too_large",
     "the request body is over the limit of 20000 bytes"),
]


@pytest.mark.parametrize("body,status,code,message", MESSAGES,
                         ids=[f"{m[2]}-{i}" for i, m in enumerate(MESSAGES)])
def test_each_refusal_says_exactly_what_to_fix(app, body, status, code, message):
    assert post(app, body) == (status, code, message)


@pytest.mark.parametrize("content_type,named", [("text/plain", "'text/plain'"),
                                                ("", "'no content type'")])
def test_the_wrong_content_type_is_named(app, content_type, named):
    assert post(app, b'{"text": "a"}', content_type) == (
        415, "unsupported_media_type",
        f"send the body as JSON with 'Content-Type: application/json'; got {named}")


def test_tokens_are_left_out_unless_asked_for(app):
    client = app.test_client()
    plain = client.post("/v1/tag", json={"text": "Maria Lopez visited Lisbon ."}).get_json()
    assert "tokens" not in plain
    asked = client.post("/v1/tag", json={"text": "Maria Lopez visited Lisbon .",
                                         "include_tokens": True}).get_json()
    assert [t["text"] for t in asked["tokens"]] == ["Maria", "Lopez", "visited", "Lisbon", "."]


def test_empty_sentences_add_no_characters(tiny_model_path):
    app = create_app({"FASTNER_TAGGER": Tagger.load(tiny_model_path), "FASTNER_MAX_CHARS": 5})
    r = app.test_client().post("/v1/tag", json={"tokens": [["abcde"], [], []]})
    assert r.status_code == 200, r.get_json()


def test_the_model_endpoint_hides_a_dev_score_of_data_it_trained_on(tiny_model_path):
    tagger = Tagger.load(tiny_model_path)
    scores = {"precision": 1.0, "recall": 2.0, "f1": 3.0, "per_type": {}}
    tagger.metadata = dict(tagger.metadata, dev=scores, test=scores)
    info = create_app({"FASTNER_TAGGER": tagger}).test_client().get("/v1/model").get_json()
    assert set(info["scores"]) == {"dev", "test"}
    tagger.metadata["dev_in_training_data"] = True
    info = create_app({"FASTNER_TAGGER": tagger}).test_client().get("/v1/model").get_json()
    assert set(info["scores"]) == {"test"} and info["scores"]["test"]["f1"] == 3.0


def test_the_model_endpoint_summarises_each_feature(app):
    info = app.test_client().get("/v1/model").get_json()
    model = app.extensions["fastner_tagger"].model
    assert info["config"]["features"] == [
        {"kind": c["kind"], "dim": f.dim, "rows": f.size}
        for c, f in zip(model.config()["features"], model.features)]
    assert info["config"]["features"][0]["kind"] == "word"


# -- reading the body: a WSGI environ as gunicorn builds one ---------------------------

class FakeSocket:
    def __init__(self):
        self.timeouts = []

    def settimeout(self, seconds):
        self.timeouts.append(seconds)


class Stream(io.BytesIO):
    def __init__(self, data=b"", fail=None):
        super().__init__(data)
        self.fail, self.asked = fail, []

    def read(self, n=-1):
        self.asked.append(n)
        if self.fail is not None:
            raise self.fail
        return super().read(n)


def call(app, stream, length=None, chunked=False, sock=None):
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/tag", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": stream,
               "CONTENT_TYPE": "application/json", "wsgi.errors": io.StringIO()}
    if length is not None:
        environ["CONTENT_LENGTH"] = str(length)
    if chunked:
        environ["wsgi.input_terminated"] = True
    if sock is not None:
        environ["gunicorn.socket"] = sock
    status = []
    body = b"".join(app.wsgi_app(environ, lambda s, h, e=None: status.append(s)))
    return int(status[0].split()[0]), json.loads(body)


def test_a_body_is_read_to_its_length_and_no_further(app):
    body = b'{"text": "Lisbon ."}'
    stream = Stream(body + b"GARBAGE")
    status, answer = call(app, stream, length=len(body))
    assert status == 200 and "entities" in answer
    assert stream.asked[0] == len(body)


def test_a_chunked_body_is_read_one_byte_past_the_limit(app):
    fits = b'{"text": "Lisbon ."}' + b" " * (20_000 - 20)
    stream = Stream(fits)
    assert call(app, stream, chunked=True)[0] == 200
    assert stream.asked[0] == 20_001
    status, answer = call(app, Stream(fits + b" "), chunked=True)
    assert status == 413 and answer["error"]["message"] == \
        "the request body is over the limit of 20000 bytes"


def test_a_body_without_length_or_terminated_stream_is_empty(app):
    status, answer = call(app, Stream(b'{"text": "a"}'))
    assert (status, answer["error"]["code"]) == (422, "invalid_request")


def test_a_client_that_stops_sending_gets_408_after_the_timeout(app):
    sock = FakeSocket()
    status, answer = call(app, Stream(fail=TimeoutError()), length=50, sock=sock)
    assert sock.timeouts == [7]
    assert (status, answer) == (408, {"error": {"code": "request_timeout",
                                                "message": "the request body stopped arriving"}})


def test_a_stream_the_server_cannot_read_is_the_clients_400(app):
    status, answer = call(app, Stream(fail=ValueError("bad chunk" + "!" * 300)), chunked=True)
    assert status == 400 and answer["error"]["code"] == "unreadable_body"
    assert answer["error"]["message"] == ("the request body could not be read: bad chunk"
                                          + "!" * 191)


def test_the_model_endpoint_lists_character_features_too(tmp_path):
    import os

    from fastner.conll import read_conll
    from fastner.train import TrainConfig, Trainer
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    out = str(tmp_path / "chars.npz")
    trainer = Trainer(TrainConfig(epochs=1, hidden=8, glove_words=0, word_dim=8,
                                  features="caps:4,chars:6"), out, quiet=True,
                      log=lambda msg: None)
    model, state = trainer.run(read_conll(os.path.join(fixtures, "tiny_train.txt")),
                               read_conll(os.path.join(fixtures, "tiny_dev.txt")))
    trainer.finish(model, state)
    app = create_app({"FASTNER_TAGGER": Tagger.load(out)})
    features = app.test_client().get("/v1/model").get_json()["config"]["features"]
    assert [f["kind"] for f in features] == ["word", "caps", "chars"]
    assert features[-1]["dim"] == 6
