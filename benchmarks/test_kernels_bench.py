"""Each Cython kernel beside its NumPy reference, same inputs, same run.

Shapes are the shipped model's: K = 5 positions of E = 55 inputs (D = 275),
H = 300 hidden units, T = 9 tags. Groups are "<kernel> B=<batch>", so the
comparison table puts the two implementations side by side.
"""
import numpy as np
import pytest

from fastner import _kernels, reference

IMPLS = {"cython": _kernels, "numpy": reference}
BATCHES = [32, 256, 1024]
K, E, H, T, V = 5, 55, 300, 9, 100_000
f32 = np.float32


def inputs(B, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, V, (B, K)).astype(np.int32),
        "table": rng.normal(size=(V, E)).astype(f32),
        "X": rng.normal(size=(B, K * E)).astype(f32),
        "W": (rng.normal(size=(H, K * E)) * 0.05).astype(f32),
        "b": rng.normal(size=H).astype(f32),
        "dH": rng.normal(size=(B, H)).astype(f32),
        "S": rng.normal(size=(B, T)).astype(f32),
        "y": rng.integers(0, T, B).astype(np.int32),
    }


@pytest.fixture(scope="module", params=BATCHES, ids=lambda b: f"B={b}")
def data(request):
    return request.param, inputs(request.param)


@pytest.mark.parametrize("impl", IMPLS)
def test_lookup_forward(benchmark, impl, data):
    B, d = data
    benchmark.group = f"lookup_forward B={B}"
    out = np.empty((B, K * E), f32)
    benchmark(IMPLS[impl].lookup_forward, d["ids"], d["table"], out, 0)
    np.testing.assert_array_equal(out, reference.lookup_forward(d["ids"], d["table"]))


@pytest.mark.parametrize("impl", IMPLS)
def test_lookup_backward(benchmark, impl, data):
    B, d = data
    benchmark.group = f"lookup_backward B={B}"
    dtable = np.zeros((V, E), f32)
    benchmark(IMPLS[impl].lookup_backward, d["ids"], d["X"], dtable, 0)
    assert np.any(dtable[d["ids"][0, 0]])


@pytest.mark.parametrize("impl", IMPLS)
def test_affine_act_forward(benchmark, impl, data):
    B, d = data
    benchmark.group = f"affine_act_forward B={B}"
    out = np.empty((B, H), f32)
    benchmark(IMPLS[impl].affine_act_forward, d["X"], d["W"], d["b"], "tanh", out)
    np.testing.assert_allclose(out, np.tanh(d["X"] @ d["W"].T + d["b"]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_affine_act_backward(benchmark, impl, data):
    B, d = data
    benchmark.group = f"affine_act_backward B={B}"
    Hout = _kernels.affine_act_forward(d["X"], d["W"], d["b"], "tanh")
    dW, db, dX = np.zeros_like(d["W"]), np.zeros_like(d["b"]), np.empty_like(d["X"])
    benchmark(IMPLS[impl].affine_act_backward, d["dH"], Hout, d["X"], d["W"], "tanh", dW, db, dX)
    assert np.all(np.isfinite(dX))


@pytest.mark.parametrize("impl", IMPLS)
def test_softmax_xent(benchmark, impl, data):
    B, d = data
    benchmark.group = f"softmax_xent B={B}"
    loss, _ = benchmark(IMPLS[impl].softmax_xent_forward_backward, d["S"], d["y"])
    assert loss == pytest.approx(reference.softmax_xent_forward_backward(d["S"], d["y"])[0],
                                 rel=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_viterbi(benchmark, impl, data):
    B, d = data
    benchmark.group = f"viterbi_decode B={B}"
    from fastner.tags import TagSet
    trans, start = TagSet().transition_mask()
    lengths = np.full(B // 16, 16, np.int32)      # sentences of 16 tokens
    end = np.zeros(T, f32)
    tags = benchmark(IMPLS[impl].viterbi_decode, d["S"], lengths, trans, start, end)
    np.testing.assert_array_equal(tags, _kernels.viterbi_decode(d["S"], lengths, trans, start, end))


# the character convolution at the sizes: words of ~6 characters (one
# position per character), 16-d characters, 30 filters of width 3; B words
CHAR_V, CHAR_E, CHAR_J, CHAR_K = 100, 16, 30, 3


def char_inputs(B, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 11, B).astype(np.int32)
    P = int(lengths.sum())
    return {"chars": rng.integers(0, CHAR_V, (P, CHAR_K)).astype(np.int32), "lengths": lengths,
            "table": rng.normal(size=(CHAR_V, CHAR_E)).astype(f32),
            "Wc": (rng.normal(size=(CHAR_J, CHAR_K * CHAR_E)) * 0.1).astype(f32),
            "bc": rng.normal(size=CHAR_J).astype(f32),
            "dV": rng.normal(size=(B, CHAR_J)).astype(f32)}


@pytest.mark.parametrize("impl", IMPLS)
def test_char_cnn_forward_backward(benchmark, impl, data):
    B, _ = data
    benchmark.group = f"char_cnn forward+backward B={B} words"
    d = char_inputs(B)
    ops = IMPLS[impl]

    def step():
        out, argmax = ops.char_cnn_forward(d["chars"], d["lengths"], d["table"], d["Wc"],
                                           d["bc"])
        grads = (np.zeros_like(d["table"]), np.zeros_like(d["Wc"]), np.zeros_like(d["bc"]))
        ops.char_cnn_backward(d["dV"], argmax, d["chars"], d["table"], d["Wc"], *grads)
        return out, grads

    out, grads = benchmark(step)
    ref_out, ref_argmax = reference.char_cnn_forward(d["chars"], d["lengths"], d["table"],
                                                     d["Wc"], d["bc"])
    np.testing.assert_allclose(out, ref_out, rtol=1e-4, atol=1e-5)
