"""The Flask app through its test client: every endpoint, every error, offsets,
and responses against the OpenAPI document."""
import json

import jsonschema
import pytest

from fastner.service.app import create_app
from fastner.tagger import Tagger


@pytest.fixture(scope="module")
def tagger(tiny_model_path):
    return Tagger.load(tiny_model_path)


@pytest.fixture
def app(tagger):
    app = create_app({"FASTNER_TAGGER": tagger, "FASTNER_MAX_TEXTS": 8,
                      "FASTNER_MAX_TOKENS": 200, "FASTNER_MAX_BODY_BYTES": 20_000,
                      "FASTNER_MAX_CHARS": 1_000})
    app.config["TESTING"] = True
    yield app
    # no client input may reach the 500 handler
    assert app.extensions.get("fastner_internal_errors", 0) == 0


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def validate(client):
    spec = client.get("/openapi.json").get_json()

    def check(response, schema_name):
        schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
        jsonschema.validate(response.get_json(), schema)
    return check


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/v1/tag", data=data, content_type=content_type)


def test_tag_single_text(client, validate):
    text = "Maria Lopez visited Lisbon on Monday ."
    r = post(client, {"text": text})
    assert r.status_code == 200
    validate(r, "SingleResult")
    body = r.get_json()
    assert body["model"] == "tiny"
    labels = {e["label"] for e in body["entities"]}
    assert "PER" in labels
    for e in body["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]
        assert 0 <= e["score"] <= 1


def test_tag_batch_and_tokens(client, validate):
    r = post(client, {"texts": ["Acme Corp shares fell .", "", "Tom Baker left ."],
                      "include_tokens": True})
    assert r.status_code == 200
    validate(r, "BatchResult")
    results = r.get_json()["results"]
    assert len(results) == 3 and results[1] == {"entities": [], "tokens": []}
    assert [t["text"] for t in results[2]["tokens"]] == ["Tom", "Baker", "left", "."]

    r = post(client, {"tokens": [["Grace", "Obi", "visited", "Prague"], []]})
    assert r.status_code == 200
    validate(r, "BatchResult")
    joined = "Grace Obi visited Prague"
    for e in r.get_json()["results"][0]["entities"]:
        assert joined[e["start"]:e["end"]] == e["text"]


UNICODE_TEXTS = [
    "Café owner Zoë Dubois visited Kraków .",
    "Ahmed Khan 😀 met Li Wei in 東京 .",
    "Zoe\u0301 Novak ( combining accent ) spoke in Oslo .",
    "שלום Omar Haddad met Eva Novak in Cairo .",
    "Tom\u200bBaker and Anna\u200d Berg left Lima .",
    "John Smith visited Paris .\r\nMaria Lopez stayed in Berlin .\r\n",
    "",
    "   \n\t ",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_offsets_are_exact_for_unicode(client, text):
    r = post(client, {"text": text, "include_tokens": True})
    assert r.status_code == 200
    body = r.get_json()
    for e in body["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]
    for t in body["tokens"]:
        assert text[t["start"]:t["end"]] == t["text"]


ERRORS = [  # (description, request kwargs, status, error code)
    ("malformed JSON", dict(body=b'{"text": '), 400, "malformed_json"),
    ("invalid UTF-8", dict(body=b'{"text": "\xff\xfe"}'), 400, "invalid_utf8"),
    ("form content type", dict(body="text=hi", content_type="application/x-www-form-urlencoded"),
     415, "unsupported_media_type"),
    ("no content type", dict(body=b'{"text": "hi"}', content_type=""), 415,
     "unsupported_media_type"),
    ("body too large", dict(body={"text": "word " * 5000}), 413, "payload_too_large"),
    ("too many texts", dict(body={"texts": ["a"] * 9}), 413, "too_many_texts"),
    ("too many tokens", dict(body={"text": "a " * 201}), 413, "too_many_tokens"),
    ("too many pre-tokenised tokens", dict(body={"tokens": [["a"] * 201]}), 413,
     "too_many_tokens"),
    ("empty body", dict(body=b""), 422, "invalid_request"),
    ("array body", dict(body=[1, 2]), 422, "invalid_request"),
    ("string body", dict(body='"hello"'), 422, "invalid_request"),
    ("null body", dict(body="null"), 422, "invalid_request"),
    ("no field", dict(body={}), 422, "invalid_request"),
    ("two fields", dict(body={"text": "a", "texts": ["b"]}), 422, "invalid_request"),
    ("unknown field", dict(body={"text": "a", "lang": "en"}), 422, "invalid_request"),
    ("text not a string", dict(body={"text": 5}), 422, "invalid_request"),
    ("texts not a list", dict(body={"texts": "abc"}), 422, "invalid_request"),
    ("texts with a number", dict(body={"texts": ["a", 3]}), 422, "invalid_request"),
    ("tokens flat", dict(body={"tokens": ["a", "b"]}), 422, "invalid_request"),
    ("token empty", dict(body={"tokens": [["a", ""]]}), 422, "invalid_request"),
    ("token with space", dict(body={"tokens": [["a b"]]}), 422, "invalid_request"),
    ("include_tokens not bool", dict(body={"text": "a", "include_tokens": "yes"}), 422,
     "invalid_request"),
    ("deeply nested", dict(body=b"[" * 100000 + b"]" * 100000), 413, "payload_too_large"),
    ("nested within limit", dict(body=b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}"), 400,
     "malformed_json"),
    # legal JSON that is not text: a lone surrogate (a JavaScript client cutting a string)
    ("lone surrogate in text", dict(body=b'{"text": "Paris \\ud800 London", '
                                         b'"include_tokens": true}'), 422, "invalid_text"),
    ("lone surrogate in a token", dict(body=b'{"tokens": [["Lon\\ud800don"]]}'), 422,
     "invalid_text"),
    ("lone low surrogate in texts", dict(body=b'{"texts": ["a", "\\udc00"]}'), 422,
     "invalid_text"),
    ("lone surrogate in a key", dict(body=b'{"text": "a", "\\ud800": 1}'), 422,
     "invalid_request"),
    ("duplicate key", dict(body=b'{"text": 1, "text": "Paris"}'), 422, "invalid_request"),
    ("duplicate nested key", dict(body=b'{"text": "a", "x": {"k": 1, "k": 2}}'), 422,
     "invalid_request"),
    ("too many characters", dict(body={"text": "abcdefghij" * 101}), 413, "too_many_chars"),
    ("too many characters in texts", dict(body={"texts": ["abcdefghij" * 60] * 2}), 413,
     "too_many_chars"),
    ("too many characters in tokens", dict(body={"tokens": [["abcdefghi"] * 101]}), 413,
     "too_many_chars"),
    # str.isspace() characters that JavaScript's \\s does not match
    ("token with U+001F", dict(body={"tokens": [["a\x1fb"]]}), 422, "invalid_request"),
    ("token with U+0085", dict(body={"tokens": [["a\x85b"]]}), 422, "invalid_request"),
]


@pytest.mark.parametrize("what,kwargs,status,code", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_json_errors(client, validate, what, kwargs, status, code):
    r = post(client, **kwargs)
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.get_json()["error"]["code"] == code
    assert r.get_json()["error"]["message"]
    validate(r, "Error")


def test_routing_errors(client, validate):
    r = client.get("/v2/tag")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    validate(r, "Error")
    r = client.get("/v1/tag")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["Allow"]
    r = client.delete("/healthz")
    assert r.status_code == 405


def test_model_health_ready(client, validate):
    r = client.get("/v1/model")
    assert r.status_code == 200
    validate(r, "ModelInfo")
    info = r.get_json()
    assert info["tags"][0] == "O" and "dev" in info["scores"]
    assert info["load_seconds"]["read"] >= 0 and info["load_seconds"]["cache"] >= 0
    assert info["inference_cache_mb"] > 0
    assert client.get("/healthz").get_json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.get_json()["status"] == "ready"


def test_readyz_reports_a_broken_model(app, client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("weights gone")
    monkeypatch.setattr(app.extensions["fastner_tagger"], "tag_texts", broken)
    r = client.get("/readyz")
    assert r.status_code == 503 and "weights gone" in r.get_json()["error"]["message"]


def test_metrics_count_requests_and_tokens(client):
    post(client, {"text": "Tom Baker left ."})
    post(client, {"text": 5})
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fastner_requests_total{endpoint="/v1/tag",method="POST",status="200"}' in text
    assert 'fastner_requests_total{endpoint="/v1/tag",method="POST",status="422"}' in text
    assert "fastner_tokens_tagged_total" in text
    assert 'fastner_errors_total{code="invalid_request"}' in text
    assert "fastner_request_seconds_bucket" in text


def test_metrics_label_sets_stay_bounded(client):
    # the endpoint is the route's rule; a method no route knows counts as "other", so a
    # client cannot add series at will
    client.open("/v1/tag", method="FROB")
    client.get("/no/such/path")
    client.get("/static/demo.js").close()
    text = client.get("/metrics").get_data(as_text=True)
    assert 'fastner_requests_total{endpoint="/v1/tag",method="other",status="405"}' in text
    assert 'fastner_requests_total{endpoint="<unmatched>",method="GET",status="404"}' in text
    assert 'endpoint="/static/<path:filename>",method="GET",status="200"' in text
    assert "FROB" not in text
    assert 'fastner_errors_total{code="not_found"}' in text


def test_docs_and_demo_pages(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.") and "/v1/tag" in spec["paths"]
    assert "/v1/tag" in client.get("/docs").get_data(as_text=True)
    page = client.get("/").get_data(as_text=True)
    assert 'id="text"' in page and "demo.js" in page and "http" not in page.split("<body>")[1]
    with client.get("/static/demo.js") as r:
        assert r.status_code == 200 and "Array.from(text)" in r.get_data(as_text=True)


def test_openapi_request_schema_agrees_with_the_validator(client):
    """Bodies the schema accepts get 200; bodies it rejects get 4xx."""
    spec = client.get("/openapi.json").get_json()
    schema = {"$ref": "#/components/schemas/TagRequest", "components": spec["components"]}
    validator = jsonschema.Draft202012Validator(schema)
    samples = [{"text": "a"}, {"texts": []}, {"tokens": [["a"]]}, {"text": "a", "texts": []},
               {"text": 1}, {}, {"tokens": [[""]]}, {"text": "x", "include_tokens": True},
               {"text": "x", "extra": 1}, {"include_tokens": False}, {"tokens": [["\ufeffa"]]},
               {"tokens": [["a\x1f"]]}, {"tokens": [["a\x85"]]}, {"tokens": [["a\u3000"]]}]
    for body in samples:
        status = post(client, body).status_code
        assert (status == 200) == validator.is_valid(body), (body, status)


def test_environment_settings(monkeypatch, tagger):
    monkeypatch.setenv("FASTNER_MAX_TEXTS", "3")
    app = create_app({"FASTNER_TAGGER": tagger})
    assert app.config["FASTNER_MAX_TEXTS"] == 3
    monkeypatch.setenv("FASTNER_MAX_TEXTS", "lots")
    with pytest.raises(ValueError, match="FASTNER_MAX_TEXTS must be an integer"):
        create_app({"FASTNER_TAGGER": tagger})


def _body_of(size):
    """A {"text": "Paris"} body of exactly ``size`` bytes: JSON whitespace after it."""
    body = b'{"text": "Paris"}'
    return body + b" " * (size - len(body))


# (limit, a request exactly at it, the same one over it by one, the error code);
# the app's limits: 8 texts, 200 tokens, 1,000 characters, 20,000 body bytes
AT_THE_LIMIT = [
    ("texts", {"texts": ["a"] * 8}, {"texts": ["a"] * 9}, "too_many_texts"),
    ("tokens", {"text": "a " * 200}, {"text": "a " * 201}, "too_many_tokens"),
    ("pre-tokenised tokens", {"tokens": [["a"] * 100, ["b"] * 100]},
     {"tokens": [["a"] * 100, ["b"] * 101]}, "too_many_tokens"),
    ("characters", {"text": "abcdefghi " * 100}, {"text": "abcdefghi " * 100 + "x"},
     "too_many_chars"),
    # tokens are counted with one space between them: 100 × 9 + 99 + 1 = 1,000
    ("characters of tokens", {"tokens": [["abcdefghi"] * 99 + ["abcdefghij"]]},
     {"tokens": [["abcdefghi"] * 99 + ["abcdefghijk"]]}, "too_many_chars"),
    ("body bytes", _body_of(20_000), _body_of(20_001), "payload_too_large"),
]


@pytest.mark.parametrize("what,at,over,code", AT_THE_LIMIT, ids=[c[0] for c in AT_THE_LIMIT])
def test_every_limit_admits_its_maximum_and_refuses_one_more(client, what, at, over, code):
    r = post(client, at)
    assert r.status_code == 200, r.get_data(as_text=True)
    r = post(client, over)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == code


def test_a_limit_of_one_admits_one(tagger):
    app = create_app({"FASTNER_TAGGER": tagger, "FASTNER_MAX_TEXTS": 1,
                      "FASTNER_MAX_TOKENS": 1, "FASTNER_MAX_CHARS": 5})
    client = app.test_client()
    assert post(client, {"texts": ["Paris"]}).status_code == 200
    assert post(client, {"texts": ["a", "b"]}).get_json()["error"]["code"] == "too_many_texts"
    assert post(client, {"text": "a b"}).get_json()["error"]["code"] == "too_many_tokens"
    assert post(client, {"text": "Lisbon"}).get_json()["error"]["code"] == "too_many_chars"
    assert post(client, {"text": ""}).status_code == 200
