"""The document-level second stage (docvote, derivations §D1): its feature's ids from a
first pass's labels elsewhere in the document, the jackknifed first pass it trains on,
and a trained second stage that saves, loads with its first stage and tags."""
import os
import shutil

import numpy as np
import pytest

from fastner.conll import read_conll
from fastner.features import DocVoteFeature
from fastner.io import ModelFileError
from fastner.tagger import Tagger
from fastner.train import TrainConfig, Trainer
from fastner.two_stage import document_folds, jackknife_labels

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def labels(*values):
    return np.array(values, dtype=np.int32)


def test_a_word_hears_the_majority_of_its_other_occurrences():
    # labels: 0 O, 1 PER, 2 LOC; a document of three sentences, then a fourth token alone
    doc = [["Clinton", "met", "Kohl", "."], ["Bill", "Clinton", "left", "Bonn", "."],
           ["Clinton", "won", "."], ["CLINTON"]]
    first = [labels(2, 0, 1, 0), labels(1, 1, 0, 2, 0), labels(1, 0, 0), labels(0)]
    f = DocVoteFeature(dim=3, n_labels=3)
    assert f.size == 10
    ids = f.document_ids([t.lower() for s in doc for t in s], np.concatenate(first),
                         np.zeros(13, np.int64)).tolist()
    # "Clinton" in sentence 0 (its own LOC left out) hears PER twice and O once (from
    # "CLINTON"): PER, split -> 4 + 2*1 + 1; "met" and "Kohl" occur once only
    assert ids[:4] == [7, f.UNSEEN, f.UNSEEN, f.NOLETTER]
    # in sentence 1 "Clinton" hears LOC once, PER once, O once: a tie goes to the lower
    # label (O), split -> 4 + 2*0 + 1
    assert ids[5] == 5
    # case does not matter: "CLINTON" (O) hears LOC, PER, PER -> PER, split
    assert ids[12] == 4 + 2 * 1 + 1
    # in another document the same word is not seen again; a sentence on its own is
    # "not seen again" too
    other = f.document_ids(["clinton", "clinton"], labels(1, 1), np.array([0, 1]))
    assert other.tolist() == [f.UNSEEN, f.UNSEEN]
    assert f.ids(["Clinton", "7"]).tolist() == [f.UNSEEN, f.NOLETTER]


def test_folds_are_whole_documents_dealt_in_turn():
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    folds = document_folds(train, 3)
    for sent, fold in zip(train, folds):
        assert fold == folds[[s.doc for s in train].index(sent.doc)]
    order = list(dict.fromkeys(s.doc for s in train))
    assert [folds[[s.doc for s in train].index(d)] for d in order[:6]] == [0, 1, 2, 0, 1, 2]


@pytest.fixture(scope="module")
def second_stage(tmp_path_factory, tiny_model_path):
    where = tmp_path_factory.mktemp("second")
    out = str(where / "second.npz")
    cfg = TrainConfig(epochs=3, hidden=16, glove_words=0, word_dim=12, seed=3,
                      features="caps:4,docvote:3", first_stage=tiny_model_path, folds=2)
    messages = []
    trainer = Trainer(cfg, out, quiet=True, log=messages.append)
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    dev = read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))
    model, state = trainer.run(train, dev)
    card = trainer.finish(model, state)
    return out, card, messages


def test_a_second_stage_trains_on_jackknifed_labels_and_loads_with_its_first(
        second_stage, tiny_model_path):
    out, card, messages = second_stage
    assert any("first pass, fold 2/2" in m for m in messages)
    beside = os.path.join(os.path.dirname(out), os.path.basename(tiny_model_path))
    with open(beside, "rb") as a, open(tiny_model_path, "rb") as b:
        assert a.read() == b.read()                 # the first stage went beside it
    assert card["model_config"]["first_stage"]["file"] == os.path.basename(tiny_model_path)
    tagger = Tagger.load(out)
    assert tagger.model.first_stage is not None and tagger.model.needs_first_pass
    doc = tagger("Maria Lopez met Tom Baker in Paris . Then Maria Lopez left .")
    assert doc.n_tokens == 13
    assert card["dev"]["f1"] > 0


def test_jackknifed_labels_come_from_models_that_did_not_see_the_document(tiny_model_path):
    from fastner.modelfile import load_model
    from fastner.train import build_model
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    dev = read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))
    first = load_model(tiny_model_path)
    cfg = TrainConfig.from_saved(first.metadata["train_config"])
    model = build_model(TrainConfig(glove_words=0, word_dim=12, hidden=8,
                                    features="caps:4,docvote:3", first_stage="x"), train,
                        log=lambda m: None)
    found = jackknife_labels(model, train, dev, cfg, 2, ["lower"], log=lambda m: None)
    n = sum(len(s.tokens) for s in train)
    assert set(found) == {"as-is", "lower"} and all(len(v) == n for v in found.values())
    gold = model.labels_of_tags([t for s in train for t in s.tags])
    # held-out predictions are good but not the gold tags a model sees in training
    agree = (found["as-is"] == gold).mean()
    assert 0.7 < agree < 1.0
    with pytest.raises(ValueError, match="folds must be at least 2"):
        jackknife_labels(model, train, dev, cfg, 1, [], log=lambda m: None)


def test_a_second_stage_without_its_first_is_refused(second_stage, tmp_path, tiny_model_path):
    out, _, _ = second_stage
    alone = tmp_path / "second.npz"
    shutil.copyfile(out, alone)
    with pytest.raises(ModelFileError, match="its first-stage model tiny.npz is not beside it"):
        Tagger.load(str(alone))
    (tmp_path / "tiny.npz").write_bytes(b"another file")
    with pytest.raises(ModelFileError, match="is not the first stage it was trained with"):
        Tagger.load(str(alone))
    with pytest.raises(ValueError, match="name its first stage with --first-stage"):
        TrainConfig(features="caps:5,docvote:5").validate()
    with pytest.raises(ValueError, match="add docvote to --features"):
        TrainConfig(first_stage="fast").validate()


def test_a_first_stage_named_fast_is_found_by_name_not_copied(tmp_path, monkeypatch,
                                                              tiny_model_path):
    from fastner import tagger as tagger_module
    from fastner.io import file_sha256
    monkeypatch.setattr(tagger_module, "shipped_model_path", lambda: tiny_model_path)
    out = str(tmp_path / "second.npz")
    cfg = TrainConfig(epochs=2, hidden=8, glove_words=0, word_dim=8, seed=4,
                      features="caps:4,docvote:3", first_stage="fast")
    trainer = Trainer(cfg, out, quiet=True, log=lambda m: None)
    model, state = trainer.run(read_conll(os.path.join(FIXTURES, "tiny_train.txt")),
                               read_conll(os.path.join(FIXTURES, "tiny_dev.txt")))
    card = trainer.finish(model, state)
    assert card["model_config"]["first_stage"] == {"model": "fast",
                                                   "sha256": file_sha256(tiny_model_path)}
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["second.npz", "second.json", "second.train.jsonl", "second.train.png",
         "second.checkpoint.npz"])
    assert Tagger.load(out).model.first_stage.model is not None


def test_the_vectorised_votes_follow_the_rule_token_by_token():
    rng = np.random.default_rng(0)
    words = ["Clinton", "clinton", "Bonn", "the", "7", "Kohl", "--", "Ünal", "ünal", "x"]
    tokens = ["Solo"] + [words[i] for i in rng.integers(0, len(words), 400)]
    docs = np.sort(rng.integers(0, 6, len(tokens)))
    first = rng.integers(0, 5, len(tokens)).astype(np.int32)
    f = DocVoteFeature(dim=3, n_labels=5)
    expected = []
    for i, tok in enumerate(tokens):          # the rule of derivations §D1, spelled out
        if tok.lower() == tok.upper():
            expected.append(f.NOLETTER)
            continue
        counts = [0] * 5
        for j, other in enumerate(tokens):
            if j != i and docs[j] == docs[i] and other.lower() == tok.lower():
                counts[first[j]] += 1
        if not sum(counts):
            expected.append(f.UNSEEN)
            continue
        label = counts.index(max(counts))     # ties: the lower label
        expected.append(4 + 2 * label + (counts[label] != sum(counts)))
    got = f.document_ids([t.lower() for t in tokens], first, docs)
    assert got.tolist() == expected
    assert set(got.tolist()) >= {f.NOLETTER, f.UNSEEN} and got.max() < f.size


def test_votes_are_filled_in_beside_sentence_level_features_too(tiny_model_path):
    """With doccase beside docvote the ids are built sentence by sentence; the votes
    still come from the whole document, as in the per-token path."""
    from fastner.train import build_model
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    sentences = [s.tokens for s in read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))]
    docs = [s.doc for s in read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))]
    first = Tagger.load(tiny_model_path)
    models = {}
    for spec in ("caps:4,docvote:3", "caps:4,doccase:3,docvote:3"):
        models[spec] = build_model(TrainConfig(glove_words=0, word_dim=8, hidden=8,
                                               features=spec, first_stage="x"), train,
                                   log=lambda m: None)
        models[spec].first_stage = first
    tokens = [t for s in sentences for t in s]
    lengths = [len(s) for s in sentences]
    plain = models["caps:4,docvote:3"].token_feature_ids(tokens, lengths, docs)
    both = models["caps:4,doccase:3,docvote:3"].token_feature_ids(tokens, lengths, docs)
    np.testing.assert_array_equal(both[:, [0, 1, 3]], plain)
    assert (plain[:, 2] > DocVoteFeature.UNSEEN).any()           # votes were heard
