"""The versioned JSON API (/v1), health checks, docs and the demo page.

Views only parse, call the tagger and shape JSON; the numeric work is in fastner.
"""
import json
import os
import re

from flask import Blueprint, current_app, jsonify, render_template, request

from fastner.service.errors import ApiError
from fastner.service.metrics import count_tagged
from fastner.service.openapi import spec
from fastner.tagger import TooManyTokens
from fastner.tokenize import is_valid_token

api = Blueprint("api", __name__, url_prefix="/v1")
site = Blueprint("site", __name__)

TAG_FIELDS = {"text", "texts", "tokens", "include_tokens"}
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _tagger():
    return current_app.extensions["fastner_tagger"]


def _config(name):
    """A setting read once by create_app (fastner.settings)."""
    return current_app.config[name]


def _read_body(config):
    """The raw body, at most FASTNER_MAX_BODY_BYTES, or the right 4xx.

    A chunked body has no Content-Length, and werkzeug's limited stream stops
    quietly at the limit (a 1 MB body plus garbage would parse as the first
    1 MB): read one byte past the limit from the server's terminated stream and
    refuse if it came. A body the server cannot read (malformed chunking, a
    client that stops early) is the client's error, not ours: 400, or 408 when
    it stops arriving.
    """
    limit = config["FASTNER_MAX_BODY_BYTES"]
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    environ = request.environ
    client = environ.get("gunicorn.socket")
    if client is not None:
        # a client that stops sending mid-body would hold a sync worker until gunicorn
        # kills it (30 s); give up on the body after FASTNER_CLIENT_TIMEOUT instead
        client.settimeout(config["FASTNER_CLIENT_TIMEOUT"])
    try:
        body = environ["wsgi.input"]            # werkzeug's wrapper hides timeouts
        if length is not None:
            raw = body.read(length)
        elif "wsgi.input_terminated" in environ:
            raw = body.read(limit + 1)
        else:
            raw = b""                              # no length and no terminated stream
    except TimeoutError:
        raise ApiError(408, "request_timeout", "the request body stopped arriving") from None
    except Exception as err:   # the server's stream failed: its parse errors have no common base
        raise ApiError(400, "unreadable_body", f"the request body could not be read: "
                                               f"{str(err)[:200]}") from None
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def _too_large(limit):
    return ApiError(413, "payload_too_large", f"the request body is over the limit of "
                                              f"{limit} bytes")


def _no_duplicate_keys(pairs):
    body = dict(pairs)
    if len(body) != len(pairs):
        seen = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ApiError(422, "invalid_request", f"the key {duplicate!r} appears more than once "
                                               f"in an object")
    return body


def _json_body(config):
    """The request body as a JSON object, or the right 4xx."""
    mimetype = request.mimetype
    if mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       f"send the body as JSON with 'Content-Type: application/json'; "
                       f"got {mimetype or 'no content type'!r}")
    raw = _read_body(config)
    if not raw:
        raise ApiError(422, "invalid_request", "the request body is empty; send a JSON object "
                                               "such as {\"text\": \"...\"}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, "invalid_utf8", f"the body is not valid UTF-8 (byte {err.start}: "
                                            f"{err.reason})") from None
    try:
        body = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as err:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {err}") from None
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request",
                       f"the body must be a JSON object; got {type(body).__name__}")
    return body


def _check_text(value, where):
    """Refuse lone surrogates: legal JSON escapes (a JavaScript client cutting a string
    mid-character sends them), but not text: no offset or output can hold them."""
    found = LONE_SURROGATE.search(value)
    if found:
        raise ApiError(422, "invalid_text", f"{where} holds a lone surrogate "
                                            f"U+{ord(found.group()):04X} at index "
                                            f"{found.start()}; send whole characters")


def _string_list(value, field):
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ApiError(422, "invalid_request", f"'{field}' must be a list of strings")
    return value


def parse_tag_request(body, config):
    """(kind, payload, include_tokens) from a /v1/tag body, or ApiError. Every limit is
    checked here, before any tokenizing or tagging."""
    unknown = sorted(set(body) - TAG_FIELDS)
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown field(s) {', '.join(map(repr, unknown))}; "
                                               f"allowed: {', '.join(sorted(TAG_FIELDS))}")
    given = [k for k in ("text", "texts", "tokens") if k in body]
    if len(given) != 1:
        raise ApiError(422, "invalid_request", "send exactly one of 'text' (a string), 'texts' "
                                               "(a list of strings) or 'tokens' (a list of "
                                               f"lists of strings); got {given or 'none'}")
    include_tokens = body.get("include_tokens", False)
    if not isinstance(include_tokens, bool):
        raise ApiError(422, "invalid_request", "'include_tokens' must be true or false")
    kind = given[0]
    value = body[kind]
    max_texts = config["FASTNER_MAX_TEXTS"]
    if kind == "text":
        if not isinstance(value, str):
            raise ApiError(422, "invalid_request",
                           f"'text' must be a string; got {type(value).__name__}")
        _check_text(value, "'text'")
        n_chars = len(value)
    elif kind == "texts":
        _string_list(value, "texts")
        for i, text in enumerate(value):
            _check_text(text, f"texts[{i}]")
        n_chars = sum(map(len, value))
    else:
        if not isinstance(value, list):
            raise ApiError(422, "invalid_request", "'tokens' must be a list of sentences, each a "
                                                   "list of token strings")
        n_chars = 0
        for i, sent in enumerate(value):
            _string_list(sent, f"tokens[{i}]")
            for j, tok in enumerate(sent):
                if not is_valid_token(tok):
                    raise ApiError(422, "invalid_request", f"tokens[{i}][{j}] must be a "
                                                           f"non-empty string without white "
                                                           f"space")
                _check_text(tok, f"tokens[{i}][{j}]")
                n_chars += len(tok)
            n_chars += max(len(sent) - 1, 0)    # the sentence's text: one space between
    if kind != "text" and len(value) > max_texts:
        raise ApiError(413, "too_many_texts", f"'{kind}' holds {len(value)} items; the limit "
                                              f"is {max_texts} per request")
    max_chars = config["FASTNER_MAX_CHARS"]
    if n_chars > max_chars:
        raise ApiError(413, "too_many_chars", f"the request holds {n_chars} characters of "
                                              f"text; the limit is {max_chars}: split it into "
                                              f"smaller requests")
    if kind == "tokens":
        n_tokens = sum(len(s) for s in value)
        if n_tokens > config["FASTNER_MAX_TOKENS"]:
            raise _too_many_tokens(n_tokens)
    return kind, value, include_tokens


@api.post("/tag")
def tag():
    config = current_app.config      # read once: each proxied lookup costs a microsecond
    kind, value, include_tokens = parse_tag_request(_json_body(config), config)
    tagger = current_app.extensions["fastner_tagger"]
    if kind == "tokens":
        docs = tagger.tag_sentences(value, include_tokens)
    else:
        texts = [value] if kind == "text" else value
        try:       # tokenizing is linear and the characters were bounded above
            docs = tagger.tag_texts(texts, include_tokens, config["FASTNER_MAX_TOKENS"])
        except TooManyTokens as err:
            raise _too_many_tokens(err.n_tokens) from None
    count_tagged(sum(d.n_tokens for d in docs), sum(len(d.ents) for d in docs))
    if kind == "text":
        return jsonify(dict(docs[0].to_dict(), model=tagger.name))
    return jsonify({"results": [d.to_dict() for d in docs], "model": tagger.name})


def _too_many_tokens(n_tokens):
    return ApiError(413, "too_many_tokens", f"the request holds {n_tokens} tokens; the limit "
                                            f"is {_config('FASTNER_MAX_TOKENS')}: split it into "
                                            f"smaller requests")


@api.get("/model")
def model_info():
    tagger = _tagger()
    meta = tagger.metadata or {}
    # a final fit trained on its dev data: that score says nothing, so it is not shown
    splits = ("test",) if meta.get("dev_in_training_data") else ("dev", "test")
    scores = {split: {k: meta[split][k] for k in ("precision", "recall", "f1", "per_type")}
              for split in splits if isinstance(meta.get(split), dict)}
    return jsonify({"name": tagger.name, "tags": tagger.model.tagset.names,
                    "entity_types": list(tagger.model.tagset.entity_types),
                    "config": _config_summary(tagger.model), "scores": scores,
                    "training_command": meta.get("command"),
                    "load_seconds": tagger.load_seconds,
                    "inference_cache_mb": round(tagger.cache_bytes / 2**20, 1)})


def _config_summary(model):
    """The model's configuration without the long feature value lists."""
    config = model.config()
    features = model.features + ([model.chars] if model.chars is not None else [])
    config["features"] = [{"kind": c["kind"], "dim": f.dim, "rows": f.size}
                          for c, f in zip(config["features"], features)]
    return config


@site.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@site.get("/readyz")
def readyz():
    drain_file = _config("FASTNER_DRAIN_FILE")
    if drain_file and os.path.exists(drain_file):
        raise ApiError(503, "draining", "this instance is shutting down; it still answers "
                                        "requests until its grace period ends")
    try:
        probe = _tagger()("Readiness check in Paris .")
    except Exception as err:  # the model cannot answer: not ready
        raise ApiError(503, "unavailable", f"the model cannot tag: {err}") from None
    return jsonify({"status": "ready", "model": _tagger().name,
                    "probe_entities": len(probe.ents)})


@site.get("/openapi.json")
def openapi():
    return jsonify(spec(current_app.config))


@site.get("/docs")
def docs():
    return render_template("docs.html", spec=spec(current_app.config))


@site.get("/")
def demo():
    return render_template("index.html", model=_tagger().name)
