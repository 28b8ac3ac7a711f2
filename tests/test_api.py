"""The Python API as a user meets it: fastner.load(), nlp(text), nlp.pipe(...)."""
import importlib.resources
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastner
from fastner import Doc, Entity


@pytest.fixture(scope="module")
def nlp(tiny_model_path):
    return fastner.load(tiny_model_path)


def test_load_call_and_typed_results(nlp):
    doc = nlp("Maria Lopez visited Lisbon on Monday.")
    assert isinstance(doc, Doc) and doc.n_tokens == 7 and doc.tokens is None
    assert doc.ents and all(isinstance(e, Entity) for e in doc.ents)
    for e in doc.ents:
        assert doc.text[e.start:e.end] == e.text and 0 <= e.score <= 1
    assert repr(doc).startswith("Doc('Maria Lopez visited Lisbon on Monday.', ents=[")
    assert repr(doc.ents[0]).startswith("Entity(text='")
    assert doc.to_dict() == {"entities": [e._asdict() for e in doc.ents]}
    with_tokens = nlp("Maria Lopez visited Lisbon.", include_tokens=True)
    assert [t.text for t in with_tokens.tokens] == ["Maria", "Lopez", "visited", "Lisbon", "."]
    assert [t.tag for t in with_tokens.tokens][:2] == ["B-PER", "I-PER"]


def test_results_match_the_service_json(nlp):
    from fastner.service.app import create_app
    client = create_app({"FASTNER_TAGGER": nlp}).test_client()
    text = "Maria Lopez visited Lisbon on Monday ."
    body = client.post("/v1/tag", json={"text": text, "include_tokens": True}).get_json()
    assert body == dict(nlp(text, include_tokens=True).to_dict(), model=nlp.name)


def test_pipe_streams_any_iterable_in_order(nlp):
    texts = [f"Maria Lopez visited Lisbon {i} times." for i in range(10)] + ["", "  "]
    generated = (t for t in texts)
    docs = list(nlp.pipe(generated, batch_size=3))
    assert [d.text for d in docs] == texts
    assert [d.to_dict() for d in docs] == [nlp(t).to_dict() for t in texts]
    assert docs[-1].ents == () and docs[-1].n_tokens == 0


@pytest.mark.parametrize("call", [
    lambda nlp: nlp.pipe("a single string"),
    lambda nlp: nlp.tag_texts("a single string"),
    lambda nlp: nlp.tag_sentences("a single string"),
    lambda nlp: nlp.tag_sentences(["Maria", "Lopez"]),      # a sentence, not a list of them
    lambda nlp: nlp(["a", "list"]),
    lambda nlp: nlp.tag_texts(["ok", 3]),
])
def test_wrong_shapes_are_type_errors_that_say_so(nlp, call):
    with pytest.raises(TypeError, match="single str|not a string|expected a string"):
        call(nlp)


def test_pipe_refuses_a_zero_batch(nlp):
    with pytest.raises(ValueError, match="batch_size"):
        nlp.pipe(["a"], batch_size=0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("Maria Lopez visited Lisbon.\n\"?!'")),
                        max_size=40), max_size=8))
def test_a_batch_tags_each_text_as_alone(nlp, texts):
    """tag_texts tokenizes the batch in one pass; every text must come out as it would
    on its own (tokens, sentence ends and offsets never cross texts)."""
    batch = nlp.tag_texts(texts, include_tokens=True)
    assert [d.to_dict() for d in batch] == \
        [nlp.tag_texts([t], include_tokens=True)[0].to_dict() for t in texts]


def test_tag_sentences_and_tags(nlp):
    sentences = [["Maria", "Lopez", "visited", "Lisbon", "."], ["Hi"]]
    docs = nlp.tag_sentences(sentences, include_tokens=True)
    assert [d.text for d in docs] == ["Maria Lopez visited Lisbon .", "Hi"]
    assert nlp.tags(sentences) == [[t.tag for t in d.tokens] for d in docs]


def test_package_is_typed():
    assert (importlib.resources.files("fastner") / "py.typed").is_file()


@pytest.mark.parametrize("setting,expected", [(None, 1), ("0", os.cpu_count()), ("2", 2)])
def test_blas_threads_are_pinned_by_the_library(tiny_model_path, setting, expected):
    """From the library itself, not the environment: no OPENBLAS_NUM_THREADS is set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "FASTNER_BLAS_THREADS")}
    if setting is not None:
        env["FASTNER_BLAS_THREADS"] = setting
    code = ("import json, sys, fastner, threadpoolctl; fastner.load(sys.argv[1]); "
            "print(json.dumps([p['num_threads'] for p in threadpoolctl.threadpool_info() "
            "if p['user_api'] == 'blas']))")
    done = subprocess.run([sys.executable, "-c", code, tiny_model_path], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    threads = json.loads(done.stdout)
    assert threads and all(n == expected for n in threads), threads


def _entities_the_slow_way(nlp, text):
    """The raw-text path spelled out in Python: the tokenizer's Python twin, the
    sentence splitter over triples, IOB2 tags per sentence, entity spans from the tags."""
    from fastner.tags import spans
    from fastner.tokenize import _tokenize_chunks, _tokenize_python, split_sentences
    zero_width = any(ch in text for ch in "\u200b\u200c\u200d\u2060\ufeff")
    triples = _tokenize_chunks(text) if zero_width else _tokenize_python(text)
    sentences = split_sentences(triples)
    tags = nlp.tags([[t[0] for t in s] for s in sentences]) if sentences else []
    out, before = [], 0
    for sent, sent_tags in zip(sentences, tags):
        for label, a, b in spans(sent_tags):
            start, end = sent[a][1], sent[b - 1][2]
            out.append((text[start:end], label, start, end, before + a, before + b))
        before += len(sent)
    return out


EDGE_TEXTS = ["", "   \n ", "Why? Maria Lopez left Lisbon.", "\"Go!\" said Tom Baker (Oslo).",
              "U.S. officials met EU's Jean Blanc in Paris on 1996-08-22 ...",
              "Maria\u200bLopez visited\u2060Lisbon", "naïve Zoë Ünal in Zürich ’s café",
              "Lisbon" * 3 + " . " * 5 + "Maria"]


def test_raw_text_path_equals_the_slow_way(nlp, tiny_dev_path):
    from fastner.conll import read_conll
    texts = EDGE_TEXTS + [" ".join(s.tokens) for s in read_conll(tiny_dev_path)]
    for text in texts:
        got = [(e.text, e.label, e.start, e.end, e.token_start, e.token_end)
               for e in nlp(text).ents]
        assert got == _entities_the_slow_way(nlp, text), text
    assert sum(len(nlp(t).ents) for t in texts) > 10       # the comparison saw entities
    batch = nlp.tag_texts(texts)
    assert [d.ents for d in batch] == [nlp(t).ents for t in texts]


def test_entity_scores_are_rounded_as_python_rounds():
    from fastner.tagger import _round4
    rng = np.random.default_rng(0)
    ties = ((np.arange(10_001) + 0.5) / 1e4).astype(np.float32)   # every 4-place tie
    x = np.concatenate([rng.random(200_000, dtype=np.float32), ties,
                        np.nextafter(ties, np.float32(0)), np.nextafter(ties, np.float32(2)),
                        np.array([0, 1, 5e-5, 1e-30], np.float32)])
    assert _round4(x) == [round(v, 4) for v in x.tolist()]
    for n in (0, 1, 15, 16, 17):                  # either side of the switch to NumPy
        assert _round4(x[:n]) == [round(v, 4) for v in x[:n].tolist()]


def test_tag_texts_pauses_the_collector_and_restores_it(nlp, monkeypatch):
    import gc
    seen, real_predict = [], nlp._predict_ids
    monkeypatch.setattr(nlp, "_predict_ids", lambda *a, **k: seen.append(gc.isenabled())
                        or real_predict(*a, **k))
    assert gc.isenabled()
    nlp.tag_texts(["Maria Lopez left Lisbon."])
    assert seen == [False] and gc.isenabled()
    with pytest.raises(TypeError):
        nlp.tag_texts([3])                      # an error inside: the collector is back on
    assert gc.isenabled()
    gc.disable()                                # a caller's own pause is left as it was
    try:
        nlp.tag_texts(["Maria Lopez left Lisbon."])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_entities_per_text_in_c_equal_the_python_twin():
    # the C builder of tag_texts' entities against fastner.tagger._entities_per_text:
    # texts with none, one and several entities, first and last texts without any,
    # non-BMP text, an empty batch of entities
    from fastner._text import entities_per_text
    from fastner.tagger import Entity, _entities_per_text
    texts = ["", "Paris and Rome", "none here", "\U0001F600 Zoë met Åsa", "IBM", "x"]
    i64 = lambda values: np.array(values, np.int64)          # noqa: E731
    columns = (i64([1, 1, 3, 3, 4]), i64([0, 10, 2, 10, 0]), i64([5, 14, 5, 13, 3]),
               ["LOC", "LOC", "PER", "PER", "ORG"], i64([0, 2, 1, 3, 0]),
               i64([1, 3, 2, 4, 1]), [0.99, 0.5, 0.75, 0.8125, 1.0])
    got = entities_per_text(texts, Entity, *columns)
    assert got == _entities_per_text(texts, Entity, *columns)
    assert [type(e) for ents in got for e in ents] == [Entity] * 5
    assert got[1] == (("Paris", "LOC", 0, 5, 0, 1, 0.99), ("Rome", "LOC", 10, 14, 2, 3, 0.5))
    assert got[3][0].text == "Zoë" and got[0] == got[2] == got[5] == ()
    empty = (i64([]), i64([]), i64([]), [], i64([]), i64([]), [])
    assert entities_per_text(texts, Entity, *empty) == [()] * len(texts)


@pytest.mark.parametrize("change, error", [
    (lambda c: (np.array([3, 1, 1, 3, 4], np.int64),) + c[1:], ValueError),   # not ascending
    (lambda c: (np.array([1, 1, 3, 3, 6], np.int64),) + c[1:], ValueError),   # no such text
    (lambda c: (np.array([-1, 1, 3, 3, 4], np.int64),) + c[1:], ValueError),
    (lambda c: c[:3] + (c[3][:4],) + c[4:], ValueError),                      # a short column
    (lambda c: (c[0].astype(np.int32),) + c[1:], ValueError),                 # not int64
])
def test_entities_per_text_refuses_bad_columns(change, error):
    from fastner._text import entities_per_text
    from fastner.tagger import Entity
    texts = ["", "Paris and Rome", "none", "Zoë met Åsa", "IBM", "x"]
    i64 = lambda values: np.array(values, np.int64)          # noqa: E731
    columns = (i64([1, 1, 3, 3, 4]), i64([0, 10, 0, 8, 0]), i64([5, 14, 3, 11, 3]),
               ["LOC", "LOC", "PER", "PER", "ORG"], i64([0, 2, 0, 2, 0]),
               i64([1, 3, 1, 3, 1]), [0.9, 0.5, 0.7, 0.8, 1.0])
    with pytest.raises(error):
        entities_per_text(texts, Entity, *change(columns))
    with pytest.raises(TypeError):
        entities_per_text(texts, dict, *columns)               # not a tuple type
    with pytest.raises(TypeError):
        entities_per_text(["", b"Paris and Rome"] + texts[2:], Entity, *columns)


def _token_columns(texts):
    """tokens_per_text's arguments for ``texts`` joined by line ends, each token a
    whitespace-separated word, its tag name "T<length>"."""
    from fastner.tokenize import tokenize_spans
    joined = "\n".join(texts)
    bases = np.array([0] + [len(t) + 1 for t in texts], np.int64).cumsum()
    starts, stops = tokenize_spans(joined)
    first = np.searchsorted(starts, bases)
    names = [f"T{b - a}" for a, b in zip(starts.tolist(), stops.tolist())]
    return joined, first, bases[:-1], starts, stops, names


def test_tokens_per_text_in_c_equal_the_python_twin():
    # the C builder of include_tokens' tokens against fastner.tagger._tokens_per_text:
    # empty texts first, last and between, non-BMP text, no texts at all
    from fastner._text import tokens_per_text
    from fastner.tagger import Token, _tokens_per_text
    texts = ["", "Paris and Rome", "", "\U0001F600 Zoë met Åsa .", "IBM", ""]
    columns = _token_columns(texts)
    got = tokens_per_text(columns[0], Token, *columns[1:])
    assert got == _tokens_per_text(columns[0], Token, *columns[1:])
    assert [type(t) for toks in got for t in toks] == [Token] * 9
    assert got[1] == (("Paris", 0, 5, "T5"), ("and", 6, 9, "T3"), ("Rome", 10, 14, "T4"))
    assert got[3][1] == ("Zoë", 2, 5, "T3") and got[0] == got[2] == got[5] == ()
    assert all(type(x) is int for toks in got for t in toks for x in t[1:3])
    none = _token_columns([])
    assert tokens_per_text(none[0], Token, *none[1:]) == []


def test_tokens_per_text_refuses_bad_columns():
    from fastner._text import tokens_per_text
    from fastner.tagger import Token
    joined, first, bases, starts, stops, names = _token_columns(["Paris and Rome", "IBM"])
    good = (first, bases, starts, stops, names)
    for bad, error in (((first[:-1],) + good[1:], ValueError),          # no total
                       ((first[::-1].copy(),) + good[1:], ValueError),  # not ascending
                       ((first + 1,) + good[1:], ValueError),           # past the tokens
                       (good[:4] + (names[:-1],), ValueError),          # a name short
                       (good[:2] + (starts + 100,) + good[3:], ValueError),   # past the text
                       ((first.astype(np.int32),) + good[1:], ValueError)):  # not int64
        with pytest.raises(error):
            tokens_per_text(joined, Token, *bad)
    with pytest.raises(TypeError):
        tokens_per_text(joined, dict, *good)                     # not a tuple type
    with pytest.raises(TypeError):
        tokens_per_text(joined.encode(), Token, *good)


@pytest.mark.parametrize("chars", [False, True])
@pytest.mark.parametrize("cache_mb", [0, 1])
def test_models_that_look_beyond_the_token_tag_raw_text_from_strings(chars, cache_mb):
    # a gazetteer (and character features) need the tokens' strings: such a model takes
    # the strings path (Tagger._predict_spans' fallback), with and without the cache,
    # and gives what its tags give (the span path: test_raw_text_path_equals_the_slow_way)
    from test_model import tiny_model

    from fastner import _kernels
    from fastner.inference import InferenceScorer
    from fastner.tagger import Tagger
    model = tiny_model("crf", ops=_kernels, dtype=np.float32, chars=chars)
    assert not model.ids_from_spans
    with pytest.raises(ValueError, match="look beyond the token"):
        model.span_feature_ids("EU", np.array([0]), np.array([2]))
    scorer = InferenceScorer(model, cache_mb) if cache_mb else None
    tagger = Tagger(model, scorer=scorer)
    texts = ["The EU rejects German call . Peter Blackburn said", "the eu said .", ""]
    for text in texts:
        got = [(e.text, e.label, e.start, e.end, e.token_start, e.token_end)
               for e in tagger(text).ents]
        assert got == _entities_the_slow_way(tagger, text)


def test_span_path_equals_the_strings_path(nlp, tiny_dev_path):
    from fastner.conll import read_conll
    from fastner.tokenize import tokenize_spans
    assert nlp.model.ids_from_spans                   # word and caps features only
    text = "\n".join(EDGE_TEXTS + [" ".join(s.tokens) for s in read_conll(tiny_dev_path)])
    starts, ends = tokenize_spans(text)
    tokens = [text[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
    expected = nlp.model._feature_ids_python(tokens)
    for lookup in (lambda: nlp.model.span_feature_ids(text, starts, ends),
                   lambda: nlp.model._feature_ids(tokens)):
        nlp.model._ids_memo.clear()
        for _ in range(2):                            # an empty memo, then a full one
            np.testing.assert_array_equal(lookup(), expected)


def test_threads_sharing_a_tagger_get_what_one_thread_gets(nlp, tiny_dev_path):
    # the feature-id memo and the tokenizer's chunk memo are shared by every thread
    # that tags with a model (gunicorn's gthread workers); a memo small enough to start
    # over many times while the threads run must still give each thread its own result
    import threading

    from fastner._text import TokenRows
    from fastner.conll import read_conll
    texts = [" ".join(s.tokens) for s in read_conll(tiny_dev_path)] + EDGE_TEXTS
    expected = [d.to_dict() for d in nlp.tag_texts(texts, include_tokens=True)]
    model = nlp.model
    kept = model._ids_memo
    model._ids_memo = TokenRows(kept.columns, 40)
    results, errors = {}, []

    def work(k):
        try:
            for _ in range(20):
                order = texts[k:] + texts[:k]
                got = [d.to_dict() for d in nlp.tag_texts(order, include_tokens=True)]
                assert got == expected[k:] + expected[:k]
            results[k] = True
        except Exception as err:          # reported below, with the thread's number
            errors.append((k, repr(err)[:300]))
    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        model._ids_memo = kept
    assert not errors and len(results) == 6
