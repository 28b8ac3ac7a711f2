"""Ensembles as one wider window network (fastner.ensemble, derivations §E1): its scores
are the members' averaged scores, it decodes like their average, it saves and loads like
any model, and members that do not share their inputs are refused."""
import os

import numpy as np
import pytest

from fastner.conll import read_conll
from fastner.ensemble import stack
from fastner.inference import InferenceScorer
from fastner.modelfile import load_model, save_model
from fastner.tagger import Tagger
from fastner.train import EncodedSentences, TrainConfig, Trainer

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def trained(tmp_path_factory, seed, **changes):
    out = str(tmp_path_factory.mktemp("member") / f"m{seed}.npz")
    settings = dict(epochs=3, hidden=16, glove_words=0, word_dim=12, seed=seed,
                    features="caps:4,suffix2:3") | changes
    trainer = Trainer(TrainConfig(**settings), out, quiet=True, log=lambda msg: None)
    model, state = trainer.run(read_conll(os.path.join(FIXTURES, "tiny_train.txt")),
                               read_conll(os.path.join(FIXTURES, "tiny_dev.txt")))
    trainer.finish(model, state)
    return load_model(out)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    return [trained(tmp_path_factory, seed) for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def dev():
    return read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))


def test_the_stacked_network_scores_the_members_average(members, dev):
    ensemble = stack(members)
    assert ensemble.hidden == 3 * members[0].hidden
    assert [f.dim for f in ensemble.features] == [3 * f.dim for f in members[0].features]
    data = EncodedSentences(ensemble, dev)
    S, _ = ensemble.forward(data.ids)
    parts = [m.forward(EncodedSentences(m, dev).ids)[0] for m in members]
    np.testing.assert_allclose(S, np.mean(parts, axis=0), rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(ensemble.transitions(),
                            zip(*(m.transitions() for m in members))):
        np.testing.assert_allclose(mine, np.mean(theirs, axis=0), rtol=1e-6, atol=1e-6)
    # and the averaged scores decode to the ensemble's tags
    tags, _ = ensemble.decode(S, data.lengths, confidence=False)
    averaged = ensemble.decode(np.mean(parts, axis=0).astype(np.float32), data.lengths,
                               confidence=False)[0]
    assert (tags == averaged).mean() > 0.999
    # a member's own scores differ from the average: the test can tell them apart
    assert not np.allclose(parts[0], S, atol=1e-3)


def test_a_two_member_ensemble_of_one_model_twice_is_that_model(members, dev):
    one = members[0]
    twice = stack([one, one])
    S, _ = twice.forward(EncodedSentences(twice, dev).ids)
    np.testing.assert_allclose(S, one.forward(EncodedSentences(one, dev).ids)[0],
                               rtol=1e-5, atol=1e-5)


def test_a_stacked_file_tags_through_the_cache_as_in_memory(members, dev, tmp_path):
    ensemble = stack(members)
    path = str(tmp_path / "ensemble.npz")
    save_model(ensemble, path, {"name": "ensemble"})
    tagger = Tagger.load(path)
    sentences = [s.tokens for s in dev]
    data = EncodedSentences(ensemble, dev)
    S = InferenceScorer(ensemble, budget_mb=0).scores(data.ids, data.spellings)
    expected, _ = ensemble.decode(S, data.lengths, confidence=False)
    got = tagger.flat_tags(sentences)
    assert (np.asarray(got) == np.asarray(ensemble.tagset.names)[expected]).mean() > 0.999


def test_members_that_do_not_share_their_inputs_are_refused(members, tmp_path_factory):
    with pytest.raises(ValueError, match="at least 2 models; got 1"):
        stack(members[:1])
    other_window = trained(tmp_path_factory, 4, half_window=1)
    with pytest.raises(ValueError, match="model 1 is configured unlike model 0"):
        stack([members[0], other_window])
    other_vocab = trained(tmp_path_factory, 5)
    other_vocab.features[0].vocab.words = other_vocab.features[0].vocab.words[:-1] + ("zz",)
    with pytest.raises(ValueError, match="model 2 has another vocabulary"):
        stack([members[0], members[1], other_vocab])
    chars = [trained(tmp_path_factory, s, features="caps:4,chars:6") for s in (6, 7)]
    with pytest.raises(ValueError, match="character features are not supported"):
        stack(chars)


def test_the_ensemble_command_writes_a_model_and_its_card(members, tmp_path, capsys,
                                                         monkeypatch):
    import json

    from fastner import modelfile
    from fastner.cli import main
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)     # the tiny tables stored as int8
    paths = []
    for i, member in enumerate(members[:2]):
        paths.append(str(tmp_path / f"m{i}.npz"))
        save_model(member, paths[-1], member.metadata, precise_rows=[2, 3 + i])
    out = str(tmp_path / "ens.npz")
    dev_path = os.path.join(FIXTURES, "tiny_dev.txt")
    assert main(["ensemble", *paths, "--out", out, "--dev", dev_path]) == 0
    assert "ensemble of 2 models: dev F1" in capsys.readouterr().err
    with open(out[:-4] + ".json", encoding="utf-8") as f:
        card = json.load(f)
    assert [m["file"] for m in card["ensemble_of"]] == ["m0.npz", "m1.npz"]
    assert [m["seed"] for m in card["ensemble_of"]] == [1, 2]
    loaded = load_model(out)
    assert loaded.hidden == 2 * members[0].hidden and loaded.metadata["dev"] == card["dev"]
    from fastner import io
    arrays, _ = io.load_npz(out, io.MODEL_FORMAT)
    assert arrays["param.table.word.f16_rows"].tolist() == [2, 3, 4]
    stacked = stack(members[:2])
    np.testing.assert_allclose(loaded.params["W"], stacked.params["W"], atol=1e-6)

    assert main(["ensemble", paths[0], "--out", out]) == 2
    assert "at least 2 models; got 1" in capsys.readouterr().err
    assert main(["ensemble", paths[0], paths[1], "--out", paths[1]]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert main(["ensemble", paths[0], paths[1], "--out", str(tmp_path / "x.bin")]) == 2
    assert "--out must end in .npz" in capsys.readouterr().err


def test_rows_the_members_share_are_stored_once(members, tmp_path, monkeypatch):
    from fastner import io, modelfile
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)
    one = members[0]
    twice = stack([one, one])                   # every row's two blocks are the same
    rows = [2, 5]
    path = str(tmp_path / "twice.npz")
    save_model(twice, path, precise_rows=rows)
    arrays, _ = io.load_npz(path, io.MODEL_FORMAT)
    d = one.features[0].dim
    assert int(arrays["param.table.word.tile"]) == 2
    assert arrays["param.table.word.q8"].shape == (one.features[0].size, d)
    assert arrays["param.table.word.f16"].shape == (2, 2 * d)        # precise rows whole
    loaded = load_model(path)
    table = loaded.params["table.word"]
    np.testing.assert_array_equal(table[:, :d], table[:, d:])
    np.testing.assert_allclose(table, twice.params["table.word"], atol=0.01)
    # members whose other rows differ keep their whole table
    different = stack(members[:2])
    other = str(tmp_path / "different.npz")
    save_model(different, other, precise_rows=rows)
    arrays, _ = io.load_npz(other, io.MODEL_FORMAT)
    assert "param.table.word.tile" not in arrays
    assert arrays["param.table.word.q8"].shape == (one.features[0].size, 2 * d)
    # a malformed tiling is refused, naming the file
    arrays, meta = io.load_npz(path, io.MODEL_FORMAT)
    for bad in (np.array(1, np.int32), np.array([2, 2], np.int32), np.array(3, np.int32)):
        forged = str(tmp_path / "forged.npz")
        io.save_npz(forged, io.MODEL_FORMAT, dict(arrays, **{"param.table.word.tile": bad}),
                    meta)
        with pytest.raises(Exception, match="forged.npz"):
            load_model(forged)
