"""The application factory. gunicorn runs ``fastner.service.app:create_app()``.

Settings, lowest precedence first: the defaults below, then environment
variables (FASTNER_MODEL, FASTNER_MAX_BODY_BYTES, FASTNER_MAX_TEXTS,
FASTNER_MAX_TOKENS), then the ``config`` mapping passed in (tests). The model
is loaded once per process, here, before serving: under gunicorn's
preload_app the workers share the master's copy.
"""
import os

from flask import Flask

from fastner.tagger import Tagger, default_model_path
from fastner.service import api, errors, metrics

DEFAULTS = {
    "FASTNER_MODEL": None,                 # None: $FASTNER_MODEL or the shipped model
    "FASTNER_MAX_BODY_BYTES": 1_000_000,   # larger bodies get 413
    "FASTNER_MAX_TEXTS": 256,              # items in "texts"/"tokens"; more get 413
    "FASTNER_MAX_TOKENS": 50_000,          # tokens in one request; more get 413
}


def _from_environment():
    found = {}
    for key, default in DEFAULTS.items():
        value = os.environ.get(key)
        if value is None:
            continue
        if isinstance(default, int):
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"{key} must be an integer; got {value!r}") from None
            if value < 1:
                raise ValueError(f"{key} must be positive; got {value}")
        found[key] = value
    return found


def create_app(config=None):
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(_from_environment())
    app.config.update(config or {})
    app.config["MAX_CONTENT_LENGTH"] = app.config["FASTNER_MAX_BODY_BYTES"]
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    tagger = app.config.get("FASTNER_TAGGER")     # tests may hand in a ready tagger
    if tagger is None:
        tagger = Tagger.load(app.config["FASTNER_MODEL"] or default_model_path())
    app.extensions["fastner_tagger"] = tagger

    errors.init_app(app)
    metrics.init_app(app)
    app.register_blueprint(api.api)
    app.register_blueprint(api.site)
    return app
