"""Inference with the shipped model: ids → tags (Viterbi included) with the
precomputed-product cache, without it (one sgemm per batch), and through the
NumPy reference; and raw text → entities end to end (tokenizer included).

Data: CoNLL-2003 valid from ../shared when present, else the test fixture. Another
model through $FASTNER_MODEL (e.g. one with character features)."""
import os

import numpy as np
import pytest
from inference_data import cached_ids_to_tags, encoded, viterbi

from fastner import reference
from fastner.tagger import Tagger, default_model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID = os.path.join(ROOT, "..", "shared", "data", "conll2003", "valid.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny_dev.txt")


@pytest.fixture(scope="module")
def tagger():
    path = default_model_path()
    if not os.path.exists(path):
        pytest.skip(f"no shipped model at {path}")
    return Tagger.load(path)


@pytest.fixture(scope="module")
def data(tagger):
    return encoded(tagger, VALID if os.path.exists(VALID) else FIXTURE)


@pytest.mark.parametrize("path", ["cached", "sgemm", "numpy"])
def test_ids_to_tags(benchmark, tagger, data, path):
    _, ids, lengths, spellings = data
    model = tagger.model
    if path == "numpy" and model.chars is not None:
        pytest.skip("the NumPy path is written for table features only")
    benchmark.group = "ids->tags"
    benchmark.extra_info["tokens"] = int(lengths.sum())
    scorer = tagger.scorer

    def run():
        if path == "cached":
            return cached_ids_to_tags(tagger, ids, lengths, spellings)
        if path == "sgemm":
            S, _ = model.forward(ids, spellings=spellings)
        else:
            p = model.params
            X = np.empty((ids[0].shape[0], model.D), np.float32)
            for f_ids, table, offset in zip(ids, model.tables(), model.offsets):
                reference.lookup_forward(f_ids, table, X, offset)
            Hd = reference.affine_act_forward(X, p["W"], p["b"], model.activation)
            S = (Hd @ p["U"].T + p["c"]).astype(np.float32)
        return viterbi(model, S, lengths)

    tags = benchmark(run)
    assert scorer is not None and len(tags) == lengths.sum()


def test_text_to_entities(benchmark, tagger, data):
    sentences, _, lengths, _ = data
    texts = [" ".join(s.tokens) for s in sentences]
    benchmark.group = "text->entities"
    benchmark.extra_info["tokens"] = int(lengths.sum())
    results = benchmark(tagger.tag_texts, texts)
    assert len(results) == len(texts)
