"""A whole training step (forward, backward, update) of the same model in
Cython (fused), NumPy (competent: BLAS, no Python loop over examples,
row-sparse updates) and PyTorch (one thread, sparse embedding gradients), at
batch 1 (online SGD), 32 and 256; and a single-core sgemm as the practical peak.
Group names are "train_step B=<batch>" so the table lines the three up."""
import numpy as np
import pytest
import twins

BATCHES = [1, 32, 256]


def make(impl):
    if impl == "pytorch":
        pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[compare]')")
        return twins.torch_step()
    return {"cython": twins.cython_step, "numpy": twins.numpy_step}[impl]()


@pytest.mark.parametrize("impl", ["cython", "numpy", "pytorch"])
@pytest.mark.parametrize("B", BATCHES, ids=lambda b: f"B={b}")
def test_train_step(benchmark, impl, B):
    benchmark.group = f"train_step B={B}"
    benchmark.extra_info.update(tokens=B, flop=twins.FLOP_PER_TOKEN_STEP * B)
    stepper = make(impl)
    ids, y = twins.batch(B)
    loss = benchmark(stepper.step, ids, y, 0.01)
    assert np.isfinite(loss)


def _implementations():
    """cython and numpy, and pytorch where it is installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return ["cython", "numpy"]
    return ["cython", "numpy", "pytorch"]


def test_train_step_implementations_agree():
    """Not a timing: the three twins take the same step from the same start."""
    ids, y = twins.batch(16)
    impls = _implementations()
    losses = {}
    for impl in impls:
        stepper = make(impl)
        losses[impl] = [stepper.step(ids, y, 0.1) for _ in range(3)]
    for impl in impls[1:]:
        np.testing.assert_allclose(losses[impl], losses["cython"], rtol=1e-4)


@pytest.mark.parametrize("impl", ["cython", "numpy", "pytorch"])
def test_adam_crf_step(benchmark, impl):
    """The shipped configuration's step (Adam, CRF, clipping, lazy rows) on a batch of
    32 tokens in three sentences: AdamCRFStep, its NumPy twin, and the same model in
    PyTorch with a padded-batch CRF."""
    if impl == "pytorch":
        pytest.importorskip("torch", reason="PyTorch is not installed (pip install '.[compare]')")
    ids, y, lengths, _ = twins.crf_batch()
    benchmark.group = f"adam_crf_step B={len(y)}"
    benchmark.extra_info.update(tokens=len(y), flop=twins.FLOP_PER_TOKEN_STEP * len(y))
    stepper = twins.adam_crf_step(impl)
    loss = benchmark(stepper.step, ids, y, lengths, 1e-3)
    assert np.isfinite(loss)


def test_adam_crf_step_implementations_agree():
    """Not a timing: the Cython step, its NumPy twin and the PyTorch model take the same
    steps from the same start (PyTorch's Adam adds ε after the bias correction, and its
    CRF sums in another order: close, not equal)."""
    ids, y, lengths, _ = twins.crf_batch()
    losses = {}
    for impl in _implementations():
        stepper = twins.adam_crf_step(impl)
        losses[impl] = [stepper.step(ids, y, lengths, 1e-3) for _ in range(4)]
    np.testing.assert_allclose(losses["numpy"], losses["cython"], rtol=1e-5)
    if "pytorch" in losses:
        np.testing.assert_allclose(losses["pytorch"], losses["cython"], rtol=1e-3)
    assert losses["cython"][-1] < losses["cython"][0]


@pytest.mark.parametrize("n", [1024])
def test_sgemm_peak(benchmark, n):
    """The practical single-core peak: a large float32 matrix product through the same BLAS."""
    from fastner import _kernels
    benchmark.group = "sgemm peak"
    rng = np.random.default_rng(0)
    A = rng.normal(size=(n, n)).astype(np.float32)
    W = rng.normal(size=(n, n)).astype(np.float32)
    b = np.zeros(n, np.float32)
    out = np.empty((n, n), np.float32)
    benchmark.extra_info.update(flop=2 * n ** 3)
    benchmark(_kernels.affine_act_forward, A, W, b, "identity", out)


def test_training_epoch(benchmark):
    """Whole-epoch training throughput in the shipped model's configuration (Adam,
    CRF, batch 32, caps features, word dropout, case-robust re-casing): batching, the
    three products, the CRF and the optimiser, on 1,000 CoNLL-2003 training sentences (the test
    fixture where ../shared is absent). Random word vectors: GloVe changes the
    values, not the work."""
    import os

    from fastner.conll import read_conll
    from fastner.train import EncodedSentences, Optimizer, TrainConfig, build_model, train_epoch
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    train_path = os.path.join(root, "..", "shared", "data", "conll2003", "train.txt")
    if not os.path.exists(train_path):
        train_path = os.path.join(root, "tests", "fixtures", "tiny_train.txt")
    sentences = read_conll(train_path)[:1000]
    cfg = TrainConfig(glove_words=0)
    model = build_model(cfg, sentences, log=lambda msg: None)
    data = EncodedSentences(model, sentences, cfg.cases)
    opt = Optimizer(model, cfg)
    rng = np.random.default_rng(0)
    flop_per_token = twins.flop_per_token_step(model.D, model.hidden, len(model.tagset))
    benchmark.group = "training epoch (shipped config)"
    benchmark.extra_info.update(tokens=data.tokens, flop=flop_per_token * data.tokens)
    loss, seen = benchmark.pedantic(train_epoch, args=(model, opt, data, cfg, 1e-3, rng),
                                    rounds=5, warmup_rounds=1)
    assert seen == data.tokens and np.isfinite(loss)
