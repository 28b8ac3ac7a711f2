"""Property-based tests of the request path: whatever a client sends, the answer
is never a 5xx and always matches the OpenAPI document."""
import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastner.service.app import create_app
from fastner.tagger import Tagger


@pytest.fixture(scope="module")
def client(tiny_model_path):
    app = create_app({"FASTNER_TAGGER": Tagger.load(tiny_model_path), "FASTNER_MAX_TEXTS": 16,
                      "FASTNER_MAX_TOKENS": 400, "FASTNER_MAX_BODY_BYTES": 8000})
    yield app.test_client()
    assert app.extensions.get("fastner_internal_errors", 0) == 0


@pytest.fixture(scope="module")
def schemas(client):
    spec = client.get("/openapi.json").get_json()
    tag = spec["paths"]["/v1/tag"]["post"]["responses"]

    def validator(status):
        entry = tag.get(str(status))
        assert entry is not None, f"status {status} is not documented for POST /v1/tag"
        schema = entry["content"]["application/json"]["schema"]
        return jsonschema.Draft202012Validator(dict(schema, components=spec["components"]))
    return validator


texts = st.text(max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=20)
tag_bodies = st.one_of(
    st.fixed_dictionaries({"text": texts}, optional={"include_tokens": st.booleans()}),
    st.fixed_dictionaries({"texts": st.lists(texts, max_size=20)},
                          optional={"include_tokens": st.booleans()}),
    st.fixed_dictionaries({"tokens": st.lists(st.lists(st.text(min_size=1, max_size=12),
                                                       max_size=30), max_size=20)},
                          optional={"include_tokens": st.booleans()}),
    st.dictionaries(st.sampled_from(["text", "texts", "tokens", "include_tokens", "other"]),
                    json_values, max_size=3),
    json_values,
)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def check(client, schemas, data, content_type="application/json"):
    r = client.post("/v1/tag", data=data, content_type=content_type)
    assert r.status_code < 500, r.get_data(as_text=True)
    body = r.get_json()
    schemas(r.status_code).validate(body)
    return r.status_code, body


@SETTINGS
@given(body=tag_bodies)
def test_any_json_body(client, schemas, body):
    status, answer = check(client, schemas, json.dumps(body))
    if status == 200 and isinstance(body, dict) and isinstance(body.get("text"), str):
        for ent in answer["entities"]:
            assert body["text"][ent["start"]:ent["end"]] == ent["text"]


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_any_bytes(client, schemas, raw):
    check(client, schemas, raw)


@SETTINGS
@given(content_type=st.text(max_size=40))
def test_any_content_type(client, schemas, content_type):
    try:
        check(client, schemas, b'{"text": "Tom Baker left ."}', content_type)
    except ValueError:
        pass   # werkzeug's test client refuses header values no real client could send
