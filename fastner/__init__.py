"""fastner: a Cython-accelerated window-classifier named-entity tagger.

Public API: ``fastner.load()`` (the shipped model) or ``fastner.load(path)``
returns a ready ``Tagger``; ``WindowTagger`` (the model),
``read_conll``, ``entity_scores``; training is ``fastner.train.Trainer`` with a
``TrainConfig``, corpus tagging on Dask ``fastner.corpus.tag_corpus``.
"""
import os
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("fastner")      # the one place it is set is pyproject.toml
except PackageNotFoundError:              # pragma: no cover - a source tree never installed
    __version__ = "0+unknown"

from fastner.scipy_blas import preload as _preload_scipy_blas  # noqa: E402

_preload_scipy_blas()      # before the kernels import it: 150 ms less at every start

try:
    import fastner._kernels  # noqa: F401
except ImportError as err:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "fastner's compiled kernels (fastner._kernels) are missing or failed to load "
        f"({err}). Build them with `pip install -e .` (or `make build`) in the fastner "
        "checkout; fastner has no slow fallback."
    ) from err

from fastner.conll import read_conll  # noqa: E402
from fastner.evaluate import entity_scores  # noqa: E402
from fastner.model import WindowTagger  # noqa: E402
from fastner.tagger import (  # noqa: E402
    Doc,
    Entity,
    Tagger,
    Token,
    default_model_path,
    model_path,
)


def load(path: str | os.PathLike | None = None, cache_mb: float | None = None) -> Tagger:
    """A ready tagger: the model ``path`` names — "fast" (the model shipped with
    fastner), "accurate" (the separately installed package fastner-accurate) or a model
    file — else $FASTNER_MODEL, else "fast". ``cache_mb`` bounds the inference cache
    (see Tagger.load).

        nlp = fastner.load()              # or fastner.load("accurate")
        doc = nlp("EU rejects German call to boycott British lamb.")
        [(e.text, e.label) for e in doc.ents]
    """
    return Tagger.load(path, cache_mb=cache_mb)


__all__ = ["load", "Tagger", "Doc", "Entity", "Token", "WindowTagger", "read_conll",
           "entity_scores", "default_model_path", "model_path", "__version__"]
