"""The shipped model, installed as the data package ``fastner.models``.

This folder holds model files, not code: pyproject.toml maps it to
``fastner.models`` so that a wheel carries the default model and
``fastner.default_model_path()`` finds it the same way in a checkout and in a
site-packages install.
"""
