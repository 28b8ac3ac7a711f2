"""fastner inside a spaCy pipeline against spaCy's own NER, on the same texts
(CoNLL-2003 valid sentences as raw text, or the test fixture), both through
nlp.pipe with spaCy's tokenizer. spaCy's model is its CPU "efficiency" NER
config (`spacy init config --pipeline ner --optimize efficiency`), initialised
rather than trained: no trained English model is on PyPI here, and the weights'
values do not change its speed. fastner's component runs the shipped model."""
import os

import pytest

spacy = pytest.importorskip("spacy", reason="spaCy is not installed (pip install '.[spacy]')")

from fastner.conll import read_conll  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALID = os.path.join(ROOT, "..", "shared", "data", "conll2003", "valid.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny_dev.txt")


@pytest.fixture(scope="module")
def texts():
    sentences = read_conll(VALID if os.path.exists(VALID) else FIXTURE)
    return [" ".join(s.tokens) for s in sentences]


def spacy_efficiency_ner():
    from spacy.cli.init_config import init_config
    config = init_config(lang="en", pipeline=["ner"], optimize="efficiency", gpu=False)
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    ner = nlp.get_pipe("ner")
    for label in ("PER", "LOC", "ORG", "MISC"):
        ner.add_label(label)
    nlp.initialize()
    return nlp


def fastner_in_spacy():
    nlp = spacy.blank("en")
    nlp.add_pipe("fastner_ner")
    return nlp


@pytest.mark.parametrize("impl", ["fastner", "spacy"])
def test_spacy_pipe(benchmark, texts, impl):
    nlp = fastner_in_spacy() if impl == "fastner" else spacy_efficiency_ner()
    benchmark.group = "spacy nlp.pipe"
    benchmark.extra_info["tokens"] = sum(len(t.split()) for t in texts)
    docs = benchmark.pedantic(lambda: list(nlp.pipe(texts, batch_size=256)), rounds=3,
                              iterations=1)
    assert len(docs) == len(texts)
