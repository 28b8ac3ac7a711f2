"""The tokenizer on normal text (CoNLL-2003 valid re-joined, from ../shared when
present, else the test fixture) and on 100,000-character runs without a space
of the shapes that were once quadratic (tests/test_tokenize.py holds the time
bound; this measures)."""
import os

import pytest

from fastner.conll import read_conll
from fastner.tokenize import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID = os.path.join(ROOT, "..", "shared", "data", "conll2003", "valid.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny_dev.txt")
PATHOLOGICAL = {"a+": "a+", "a_": "a_", "a@": "a@", "x60+@": "x" * 60 + "+@"}


def text_of(impl):
    if impl == "normal":
        sentences = read_conll(VALID if os.path.exists(VALID) else FIXTURE)
        return "\n".join(" ".join(s.tokens) for s in sentences)
    unit = PATHOLOGICAL[impl]
    return unit * (100_000 // len(unit))


@pytest.mark.parametrize("impl", ["normal", *PATHOLOGICAL])
def test_tokenize(benchmark, impl):
    text = text_of(impl)
    benchmark.group = "tokenize"
    benchmark.extra_info["tokens"] = len(tokenize(text))
    benchmark(tokenize, text)
