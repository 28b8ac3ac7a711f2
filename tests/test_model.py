"""The whole model: every parameter's gradient against finite differences,
the Cython and NumPy paths training in step, and the model file."""
import json
import os

import numpy as np
import pytest
from gradcheck import central_difference, check_numeric
from hypothesis import given, settings
from hypothesis import strategies as st

from fastner import _kernels, io, reference
from fastner.features import (
    AffixFeature,
    CapsFeature,
    CharFeature,
    GazetteerFeature,
    ShapeFeature,
    Spellings,
    Vocab,
    WordFeature,
)
from fastner.inference import InferenceScorer
from fastner.model import WindowTagger
from fastner.modelfile import load_model, model_arrays, save_model
from fastner.tags import TagSet

SENTENCES = [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"],
             ["BRUSSELS", "1996-08-22"], ["the", "EU", "EU", "said"]]
TAGS = [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"],
        ["O", "B-ORG", "I-ORG", "O"]]


def tiny_model(loss="softmax", activation="tanh", ops=reference, dtype=np.float64, seed=0,
               dropout=0.0, chars=False):
    vocab = Vocab(["eu", "rejects", "german", "call", ".", "the", "said"])
    features = [WordFeature(vocab, 3), CapsFeature(2), AffixFeature("suffix", 2, 2, ["al", "ts"]),
                ShapeFeature(2, ["Xx", "x"]),
                # a feature of the sentence, not the token: "the EU" matches whole
                GazetteerFeature("loc", 2, ["brussels", "eu", "the eu", "peter blackburn"])]
    if chars:       # characters outside the alphabet ("-", "9") are the unknown character
        features.insert(2, CharFeature(3, char_dim=2, alphabet="aeEiRrlstU1"))
    model = WindowTagger(features, TagSet(), half_window=1, hidden=5, activation=activation,
                         loss=loss, dropout=dropout, ops=ops, dtype=dtype)
    model.init_params(np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    # non-zero biases and transitions so their gradients are exercised
    for name in ("b", "c", "trans", "start", "end") + (("char.b",) if chars else ()):
        model.params[name][...] = rng.normal(0, 0.3, model.params[name].shape)
    return model


def batch(model):
    """Window ids, gold tags, lengths and the Spellings (None without chars) of SENTENCES."""
    spellings = model.new_spellings()
    ids = model.windows([model.token_ids(s, spellings=spellings) for s in SENTENCES])
    y = np.concatenate([model.tagset.encode(t) for t in TAGS])
    lengths = np.array([len(s) for s in SENTENCES], np.int32)
    return ids, y, lengths, spellings


@pytest.mark.parametrize("loss,chars", [("softmax", False), ("crf", False), ("crf", True)])
def test_every_parameter_gradient_matches_finite_differences(loss, chars):
    model = tiny_model(loss, chars=chars)
    ids, y, lengths, spellings = batch(model)
    grad = np.zeros_like(model.flat)
    model.loss_and_backward(ids, y, lengths, model.views(grad), spellings=spellings)

    def J():
        return model.loss_and_backward(ids, y, lengths, model.views(np.zeros_like(model.flat)),
                                       spellings=spellings)

    checked = 0
    for name, view in model.params.items():
        if loss == "softmax" and name in ("trans", "start", "end"):
            assert not np.any(model.views(grad)[name]), "softmax loss ignores transitions"
            continue
        numeric = central_difference(J, view)          # every coordinate
        check_numeric(model.views(grad)[name], numeric, name, tol=1e-5, floor=1e-4)
        checked += len(numeric)
    skipped = sum(model.params[n].size for n in ("trans", "start", "end")) if loss == "softmax" else 0
    assert checked == model.flat.size - skipped


@pytest.mark.parametrize("loss,chars", [("softmax", False), ("crf", False), ("crf", True)])
def test_training_steps_agree_between_cython_and_numpy_paths(loss, chars):
    from fastner.train import Optimizer, TrainConfig
    fast = tiny_model(loss, ops=_kernels, dtype=np.float32, chars=chars)
    slow = tiny_model(loss, ops=reference, dtype=np.float32, chars=chars)
    np.testing.assert_array_equal(fast.flat, slow.flat)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, clip=0, loss=loss)
    opt_fast, opt_slow = Optimizer(fast, cfg), Optimizer(slow, cfg)
    ids, y, lengths, spellings = batch(fast)
    for step in range(5):
        losses = []
        for model, opt in ((fast, opt_fast), (slow, opt_slow)):
            losses.append(model.loss_and_backward(ids, y, lengths, opt.grads,
                                                  spellings=spellings))
            opt.step([np.unique(f) for f in ids[:len(model.features)]], cfg.lr)
        assert abs(losses[0] - losses[1]) < 1e-5, f"step {step}"
    np.testing.assert_allclose(fast.flat, slow.flat, rtol=1e-4, atol=1e-5)
    assert losses[0] < model.loss_and_backward(ids, y, lengths,
                                               fast.views(np.zeros_like(fast.flat)),
                                               spellings=spellings) + 1.0


def test_dropout_only_in_training():
    model = tiny_model(ops=_kernels, dtype=np.float32, dropout=0.5)
    ids, _, _, _ = batch(model)
    plain_a, _ = model.forward(ids)
    plain_b, _ = model.forward(ids)
    np.testing.assert_array_equal(plain_a, plain_b)
    dropped, _ = model.forward(ids, rng=np.random.default_rng(0))
    assert not np.allclose(dropped, plain_a)


@pytest.mark.parametrize("loss", ["softmax", "crf"])
def test_decoding_gives_valid_iob2_and_probabilities(loss):
    model = tiny_model(loss, ops=_kernels, dtype=np.float32)
    for tags, conf in model.tag(SENTENCES + [[]]):
        assert len(tags) == len(conf)
        assert np.all((conf >= 0) & (conf <= 1.0 + 1e-6))
        for prev, cur in zip(["O"] + tags, tags):
            if cur.startswith("I-"):
                assert prev[2:] == cur[2:]


@pytest.mark.parametrize("chars", [False, True])
def test_save_and_load_round_trip(tmp_path, chars):
    model = tiny_model("crf", ops=_kernels, dtype=np.float32, chars=chars)
    path = str(tmp_path / "m.npz")
    save_model(model, path, {"note": "hello"}, quantize=False)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.flat, model.flat)
    assert loaded.config() == model.config()
    assert loaded.metadata == {"note": "hello"}
    assert [t for t, _ in loaded.tag(SENTENCES)] == [t for t, _ in model.tag(SENTENCES)]
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_quantized_tables_round_trip_within_half_a_step(tmp_path, monkeypatch):
    import fastner.modelfile
    monkeypatch.setattr(fastner.modelfile, "QUANTIZE_ROWS", 8)   # word: 9 rows, caps: 7
    model = tiny_model("crf", ops=_kernels, dtype=np.float32)
    path = str(tmp_path / "q.npz")
    save_model(model, path)
    arrays, _ = io.load_npz(path, io.MODEL_FORMAT)
    assert arrays["param.table.word.q8"].dtype == np.int8 and "param.table.caps" in arrays
    loaded = load_model(path)
    word = model.params["table.word"]
    step = np.abs(word).max(axis=1, keepdims=True) / 127.0
    assert np.all(np.abs(loaded.params["table.word"] - word) <= step / 2 + 1e-7)
    np.testing.assert_array_equal(loaded.params["W"], model.params["W"])

    save_model(model, path, precise_rows=[3, 5])          # these rows survive to float16 precision
    again = load_model(path).params["table.word"]
    np.testing.assert_allclose(again[[3, 5]], word[[3, 5]], rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(again[4], loaded.params["table.word"][4])


def test_bad_model_files_give_clear_errors(tmp_path):
    model = tiny_model(ops=_kernels, dtype=np.float32)
    good = str(tmp_path / "good.npz")
    save_model(model, good)
    data = (tmp_path / "good.npz").read_bytes()

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip at all")
    foreign = str(tmp_path / "foreign.npz")
    np.savez(foreign, a=np.zeros(3))
    checkpoint = str(tmp_path / "ckpt.npz")
    io.save_npz(checkpoint, io.CHECKPOINT_FORMAT, model_arrays(model), {"config": model.config()})
    arrays, meta = io.load_npz(good, io.MODEL_FORMAT)
    arrays.pop("param.W")
    missing = str(tmp_path / "missing.npz")
    io.save_npz(missing, io.MODEL_FORMAT, arrays, meta)
    cases = [(str(tmp_path / "absent.npz"), "no such model file"),
             (str(truncated), "truncated or corrupt"), (str(garbage), "truncated or corrupt"),
             (foreign, "no __meta__"), (checkpoint, "expected a fastner-model file"),
             (missing, "parameter 'W' is missing")]
    for path, message in cases:
        with pytest.raises(io.ModelFileError, match=message):
            load_model(path)


def test_newer_format_version_is_refused(tmp_path):
    model = tiny_model(ops=_kernels, dtype=np.float32)
    path = str(tmp_path / "future.npz")
    payload = dict(model_arrays(model))
    payload["__meta__"] = np.array(json.dumps({"format": io.MODEL_FORMAT, "format_version": 99}))
    np.savez(path, **payload)
    with pytest.raises(io.ModelFileError, match="format version 99 is not supported"):
        load_model(path)


def test_pickled_arrays_are_refused(tmp_path):
    path = str(tmp_path / "pickled.npz")
    np.savez(path, __meta__=np.array({"format": "fastner-model"}, dtype=object))
    with pytest.raises(io.ModelFileError):
        load_model(path)


def test_wrong_shapes_in_file_are_reported(tmp_path):
    model = tiny_model(ops=_kernels, dtype=np.float32)
    arrays = model_arrays(model)
    arrays["param.U"] = np.zeros((3, 3), np.float32)
    path = str(tmp_path / "shapes.npz")
    io.save_npz(path, io.MODEL_FORMAT, arrays, {"config": model.config()})
    with pytest.raises(io.ModelFileError, match="'U' has shape"):
        load_model(path)


@pytest.mark.parametrize("budget_mb,chars", [(0.0, False), (1e-4, False), (64.0, False),
                                             (0.0, True), (1e-4, True), (64.0, True)])
def test_inference_cache_gives_the_same_tags(budget_mb, chars):
    model = tiny_model("crf", ops=_kernels, dtype=np.float32, chars=chars)
    ids, _, lengths, spellings = batch(model)
    S_full, _ = model.forward(ids, spellings=spellings)
    plain = model.predict(ids, lengths, spellings=spellings)
    scorer = InferenceScorer(model, budget_mb)
    assert scorer.nbytes > 0
    # cached products are half precision (relative error ≤ 2⁻¹¹ each)
    S_cached = scorer.scores(ids, spellings)
    np.testing.assert_allclose(S_cached, S_full, rtol=2e-3, atol=2e-3)
    # the same scores from each token's ids, windows built in C (the Tagger's path),
    # the spellings numbered afresh as a tagger numbers each call's
    flat = [t for s in SENTENCES for t in s]
    fresh = model.new_spellings()
    np.testing.assert_array_equal(
        scorer.token_scores(model.token_feature_ids(flat, lengths, spellings=fresh), lengths,
                            fresh), S_cached)
    cached = model.decode(S_cached, lengths)
    np.testing.assert_array_equal(cached[0], plain[0])
    np.testing.assert_allclose(cached[1], plain[1], rtol=2e-3, atol=2e-3)
    # the model's own prediction never goes through a scorer built from it
    model.params["U"][...] += 1.0
    np.testing.assert_array_equal(model.predict(ids, lengths, spellings=spellings)[0],
                                  model.decode(model.forward(ids, spellings=spellings)[0],
                                               lengths)[0])


def test_character_features_need_their_spellings():
    model = tiny_model("crf", ops=_kernels, dtype=np.float32, chars=True)
    ids, _, lengths, spellings = batch(model)
    for call in (lambda: model.forward(ids), lambda: model.token_ids(SENTENCES[0]),
                 lambda: InferenceScorer(model).scores(ids)):
        with pytest.raises(ValueError, match="character features"):
            call()


def test_spellings_give_each_words_character_windows():
    """Spellings.positions against the definition: word w spelled [begin, c₁..c_m, end]
    has m positions, position p reading characters p, p+1, p+2 of that."""
    feature = CharFeature(4, alphabet="abc", max_chars=5)
    spellings = Spellings(feature)
    tokens = ["abc", "a", "zab", "abc", "abcabcab", "b"]
    ids = spellings.ids(tokens)
    assert ids.tolist() == [1, 2, 3, 1, 4, 5] and len(spellings) == 6
    assert feature.char_ids("zab").tolist() == [2, 1, 4, 5, 3]     # z: unknown
    assert feature.char_ids(None).tolist() == [2, 0, 3]              # the sentence edge
    rows = np.array([4, 0, 2, 3])
    chars, lengths = spellings.positions(rows)
    expected = []
    for r in rows:
        seq = feature.char_ids(spellings.words[r]).tolist()
        expected += [seq[p:p + 3] for p in range(len(seq) - 2)]
    assert lengths.tolist() == [5, 1, 1, 3]         # "abcabcab" cut to 5 characters
    assert chars.tolist() == expected
    assert spellings.positions([])[0].shape == (0, 3)
    with pytest.raises(ValueError, match="at least 1"):
        CharFeature(0)


def test_scorer_call_tables_are_checked():
    model = tiny_model("crf", ops=_kernels, dtype=np.float32, chars=True)
    ids, _, _, spellings = batch(model)
    kernel = InferenceScorer(model)._kernel
    window_ids = np.ascontiguousarray(np.stack(ids, axis=2))
    last = window_ids.shape[2] - 1
    good = np.zeros((len(spellings), 3), np.float32)
    kernel.scores(window_ids, {last: good})
    with pytest.raises(IndexError, match="out of range"):     # too few rows for the ids
        kernel.scores(window_ids, {last: good[:2]})
    for tables, match in (({last: good[:, :2]}, "call_tables"),
                          ({last: good.astype(np.float64)}, "call_tables"),
                          ({9: good}, "features"), ({"x": good}, "features")):
        with pytest.raises(ValueError, match=match):
            kernel.scores(window_ids, tables)


def test_inference_cache_refuses_products_beyond_half_precision():
    model = tiny_model("crf", ops=_kernels, dtype=np.float32)
    model.params["W"][0, 0] = 1e6     # the first word column's products overflow float16
    with pytest.raises(ValueError, match="exceeds half precision"):
        InferenceScorer(model, 64.0)


def test_forged_array_size_is_refused_before_allocation(tmp_path):
    """A header declaring 10^11 float32 elements in a file of a few bytes: refused by
    reading the header, not by a 400 GB allocation."""
    import zipfile
    from io import BytesIO
    model = tiny_model(ops=_kernels, dtype=np.float32)
    good = str(tmp_path / "good.npz")
    save_model(model, good)
    forged = str(tmp_path / "forged.npz")
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**11,)}
    io_bytes = BytesIO()
    np.lib.format.write_array_header_1_0(io_bytes, header)
    io_bytes.write(b"\0" * 64)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = io_bytes.getvalue() if info.filename == "param.W.npy" else src.read(info)
            dst.writestr(info.filename, data)
    with pytest.raises(io.ModelFileError, match=r"'param.W' declares shape \(100000000000,\)"):
        load_model(forged)


def test_complex_parameters_are_refused(tmp_path):
    model = tiny_model(ops=_kernels, dtype=np.float32)
    arrays, meta = model_arrays(model), {"config": model.config()}
    arrays["param.W"] = arrays["param.W"].astype(np.complex64)
    path = str(tmp_path / "complex.npz")
    io.save_npz(path, io.MODEL_FORMAT, arrays, meta)
    with pytest.raises(io.ModelFileError, match="dtype complex64; fastner files hold real"):
        load_model(path)


def test_feature_ids_in_c_equal_the_python_twin():
    model = tiny_model("crf", ops=_kernels, dtype=np.float32)
    tokens = [t for s in SENTENCES for t in s] + ["unseen", "EU", "Brussels"] * 3
    first = model._feature_ids_python(tokens)            # fills the memo as it goes
    np.testing.assert_array_equal(model._feature_ids(tokens), first)
    model._ids_memo.clear()
    np.testing.assert_array_equal(model._feature_ids(tokens), first)      # from empty
    np.testing.assert_array_equal(model._feature_ids(tuple(tokens)), first)
    assert model._feature_ids([]).shape == (0, len(model._per_token))


def test_token_rows_refuse_bad_arguments():
    from fastner._text import TokenRows
    with pytest.raises(ValueError, match="columns must be at least 1"):
        TokenRows(0, 10)
    for limit, longest, probes in ((0, 32, 32), (2 ** 30, 32, 32), (10, 0, 32), (10, 32, 0)):
        with pytest.raises(ValueError, match="limit must be in"):
            TokenRows(2, limit, longest, probes)
    memo = TokenRows(2, 10)
    with pytest.raises(ValueError, match=r"rows must be \(1, 2\); got \(1, 3\)"):
        memo.add(["a"], np.zeros((1, 3), np.int32))
    with pytest.raises(ValueError, match=r"rows must be \(2, 2\)"):
        memo.add(["a", "b"], np.zeros((1, 2), np.int32))
    with pytest.raises(ValueError):                         # int64 rows
        memo.add(["a"], np.zeros((1, 2), np.int64))
    with pytest.raises(TypeError, match=r"tokens\[1\] is bytes"):
        memo.add(["a", b"b"], np.zeros((2, 2), np.int32))
    with pytest.raises(TypeError, match=r"tokens\[0\] is int"):
        memo.rows_of_tokens([3])
    with pytest.raises(TypeError):
        memo.rows_of_tokens(("a",))
    span = np.array([0], np.int64)
    with pytest.raises(ValueError, match=r"span 0 is \[0, 4\); the text has 3"):
        memo.rows_of_spans("abc", span, np.array([4], np.int64))
    with pytest.raises(ValueError, match=r"span 0 is \[-1, 1\)"):
        memo.rows_of_spans("abc", np.array([-1], np.int64), span + 1)
    with pytest.raises(ValueError, match=r"span 0 is \[2, 1\)"):
        memo.rows_of_spans("abc", span + 2, span + 1)
    with pytest.raises(ValueError, match="differ in length"):
        memo.rows_of_spans("abc", span, np.array([1, 2], np.int64))
    with pytest.raises(TypeError):
        memo.rows_of_spans(b"abc", span, span)
    assert len(memo) == 0                                  # nothing added by the refusals


_SPELLINGS = ["a", "b", "ab", "ba", "", "é", "\xe9\xe9", "東京", "😀", "a😀", "the", "The", "THE",
              "U.S.", "1996-08-22", "ÿ", "Ā"]


def _row_of(token):
    return [len(token), sum(map(ord, token)) % 1000]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_SPELLINGS) | st.text(max_size=4), max_size=40),
       st.lists(st.sampled_from(_SPELLINGS) | st.text(max_size=4), max_size=40),
       st.sampled_from([1, 2, 32]), st.integers(0, 2 ** 64 - 1), st.integers(1, 50))
def test_token_rows_equal_a_dict(known, asked, probes, seed, limit):
    # the memo against its twin, a dict: by string and by span, across text kinds (a
    # Latin-1 token inside a text with wider characters is the same token). A token
    # found has its own row; one never added is missed; with 32 probes and never more
    # tokens added than the limit, every token added is found. Few probes and small limits
    # (adding past one starts over) may lose tokens, never mix them up.
    from fastner._text import TokenRows
    memo, added, n_added = TokenRows(2, limit, probes=probes, seed=seed), set(), 0
    for start in range(0, len(known), 7):
        batch = list(dict.fromkeys(known[start:start + 7]))
        memo.add(batch, np.array([_row_of(t) for t in batch], np.int32).reshape(-1, 2))
        added.update(batch)
        n_added += len(batch)
    text = "\u0100 " + " ".join(asked)                     # a 2-byte-kind text
    starts, at = [], 2
    for token in asked:
        starts.append(at)
        at += len(token) + 1
    starts = np.array(starts, np.int64)
    ends = starts + np.array([len(t) for t in asked], np.int64)
    every_one_kept = probes == 32 and n_added <= limit     # never started over
    for ids, missed in (memo.rows_of_tokens(asked), memo.rows_of_spans(text, starts, ends)):
        assert ids.shape == (len(asked), 2) and ids.dtype == np.int32
        missed = set(missed.tolist())
        for i, token in enumerate(asked):
            if i in missed:
                assert ids[i].tolist() == [0, 0]
                assert not (every_one_kept and token in added)
            else:
                assert token in added and ids[i].tolist() == _row_of(token)


def test_token_rows_with_one_probe_miss_rather_than_mix_up():
    # one probe: every key whose slot is taken is not remembered, or is left
    # unreachable when the table grows; a lookup then misses, never returns another's row
    from fastner._text import TokenRows
    memo = TokenRows(1, 10_000, probes=1, seed=0)
    tokens = [f"t{i}" for i in range(2000)]
    memo.add(tokens, np.arange(2000, dtype=np.int32).reshape(-1, 1))
    ids, missed = memo.rows_of_tokens(tokens)
    found = np.setdiff1d(np.arange(2000), missed)
    assert 500 < len(found) < 2000 and len(found) <= len(memo)
    np.testing.assert_array_equal(ids[found, 0], found)
    assert (ids[missed, 0] == 0).all()
    memo.clear()
    assert len(memo) == 0 and len(memo.rows_of_tokens(tokens)[1]) == 2000


def test_token_rows_never_keep_a_token_past_longest():
    # what the memo holds is bounded by limit × longest characters whatever clients send
    from fastner._text import TokenRows
    memo = TokenRows(1, 100, longest=5)
    tokens = ["short", "longer", "x" * 10_000]
    memo.add(tokens, np.array([[1], [2], [3]], np.int32))
    assert len(memo) == 1
    ids, missed = memo.rows_of_tokens(tokens)
    assert ids[:, 0].tolist() == [1, 0, 0] and missed.tolist() == [1, 2]


def test_random_tables_are_drawn_as_in_one_call():
    # init_params draws the tables in chunks; the values (and what the generator draws
    # next) must be those of one draw of the whole table, or a seed would give another model
    model = tiny_model("crf")
    big = np.zeros((20000, 3), np.float32)
    model.tables = lambda views=None: [big]
    rng = np.random.default_rng(7)
    model.init_params(rng)
    expected_rng = np.random.default_rng(7)
    for name in ("W", "U"):
        fan_out, fan_in = model.params[name].shape
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        expected_rng.uniform(-bound, bound, size=(fan_out, fan_in))
    expected = expected_rng.normal(0.0, 0.1, size=big.shape).astype(np.float32)
    np.testing.assert_array_equal(big, expected)
    assert rng.uniform() == expected_rng.uniform()
