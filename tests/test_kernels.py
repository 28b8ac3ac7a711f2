"""Kernel by kernel: against the NumPy reference on edge-case shapes, reference
gradients against central finite differences (float64), exact brute-force and
bit-for-bit checks, and the full error messages. The checks every kernel gets
alike (twin equality, inputs untouched, every wrong argument refused) run over
the registry in test_kernel_registry.py."""
import inspect
import os
import re

import numpy as np
import pytest
from gradcheck import central_difference, check_numeric
from kernel_registry import KERNELS, rand, scorer_atol, scorer_inputs
from test_model import batch, tiny_model

from fastner import _kernels as K
from fastner import reference as R

ACTS = ["identity", "tanh", "hardtanh", "relu"]
f32 = np.float32


def assert_close(a, b, what, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


# --------------------------------------------------------------------------
# contract

def test_signatures_match_reference():
    """Defaults too (the registry checks the names of every function kernel)."""
    for name, method in (("SGDStep", "step"), ("CachedScorer", "scores"),
                         ("AdamCRFStep", "step"), ("AdamCRFStep", "steps")):
        fast = inspect.signature(getattr(getattr(K, name), method))
        slow = inspect.signature(getattr(getattr(R, name), method))
        assert list(fast.parameters) == list(slow.parameters), name
    for kernel in KERNELS:
        if kernel.call is None:
            fast = inspect.signature(getattr(K, kernel.name))
            slow = inspect.signature(getattr(R, kernel.name))
            assert [p.default for p in fast.parameters.values()] == \
                   [p.default for p in slow.parameters.values()], kernel.name
    assert K.ACTIVATIONS == R.ACTIVATIONS


# --------------------------------------------------------------------------
# 1. lookup

LOOKUP_CASES = [  # (B, K, V, e, E, offset)
    (1, 1, 1, 1, 1, 0), (1, 5, 10, 4, 4, 0), (32, 5, 50, 8, 11, 3), (7, 3, 3, 2, 6, 4),
    (64, 7, 1000, 16, 20, 0),
]


@pytest.mark.parametrize("B,Kw,V,e,E,offset", LOOKUP_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_lookup_forward_matches_reference(B, Kw, V, e, E, offset, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, V, (B, Kw)).astype(np.int32)
    ids[0, 0], ids[-1, -1] = 0, V - 1          # both edges of the table
    table = rand(rng, V, e)
    out_fast = np.full((B, Kw * E), 7.0, f32)
    out_slow = out_fast.copy()
    K.lookup_forward(ids, table, out_fast, offset)
    R.lookup_forward(ids, table, out_slow, offset)
    np.testing.assert_array_equal(out_fast, out_slow, err_msg=f"seed {seed} shape {ids.shape}")


@pytest.mark.parametrize("B,Kw,V,e,E,offset", LOOKUP_CASES)
def test_lookup_backward_matches_reference_with_repeats(B, Kw, V, e, E, offset):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, min(V, 3), (B, Kw)).astype(np.int32)   # many repeated ids
    dX = rand(rng, B, Kw * E)
    fast = rand(rng, V, e)
    slow = fast.copy()
    K.lookup_backward(ids, dX, fast, offset)
    R.lookup_backward(ids, dX, slow, offset)
    assert_close(fast, slow, "dtable")


def test_lookup_backward_sums_repeated_ids_and_touches_only_used_rows():
    ids = np.array([[2, 2, 0]], np.int32)
    dX = np.arange(6, dtype=f32).reshape(1, 6)         # e = 2, E = 2
    dtable = np.zeros((4, 2), f32)
    K.lookup_backward(ids, dX, dtable)
    np.testing.assert_array_equal(dtable, [[4, 5], [0, 0], [0 + 2, 1 + 3], [0, 0]])


def test_lookup_gradient_finite_difference():
    rng = np.random.default_rng(5)
    ids = np.array([[0, 1, 1], [2, 0, 1]], np.int32)
    table = rng.normal(size=(3, 2))
    probe = rng.normal(size=(2, 6))
    dtable = np.zeros_like(table)
    R.lookup_backward(ids, probe, dtable)
    numeric = central_difference(lambda: float(np.sum(R.lookup_forward(ids, table) * probe)),
                                 table)
    check_numeric(dtable, numeric, "dtable")


# --------------------------------------------------------------------------
# 2. affine + activation

AFFINE_CASES = [(1, 1, 1), (1, 275, 300), (32, 55, 17), (5, 3, 9), (257, 64, 33)]


@pytest.mark.parametrize("B,D,H", AFFINE_CASES)
@pytest.mark.parametrize("act", ACTS)
def test_affine_act_matches_reference(B, D, H, act):
    rng = np.random.default_rng(B * 1000 + D)
    X, W, b = rand(rng, B, D), rand(rng, H, D) * 0.3, rand(rng, H)
    H_fast = K.affine_act_forward(X, W, b, act)
    H_slow = R.affine_act_forward(X, W, b, act)
    assert_close(H_fast, H_slow, f"forward {act} B={B} D={D} H={H}", rtol=1e-4, atol=1e-5)
    dH = rand(rng, B, H)
    grads = []
    for ops in (K, R):
        dW, db, dX = np.ones((H, D), f32), np.ones(H, f32), np.empty((B, D), f32)
        ops.affine_act_backward(dH, H_fast, X, W, act, dW, db, dX)
        grads.append((dW, db, dX))
    for name, fast, slow in zip(("dW", "db", "dX"), *grads):
        assert_close(fast, slow, f"{name} {act} B={B} D={D} H={H}", rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", ACTS)
def test_affine_act_gradient_finite_difference(act):
    rng = np.random.default_rng(11)
    B, D, H = 4, 6, 5
    X, W, b = rng.normal(size=(B, D)), rng.normal(size=(H, D)) * 0.3, rng.normal(size=H) * 0.3
    # keep every pre-activation away from the kinks of hardtanh/relu
    Z = X @ W.T + b
    b += np.where(np.abs(np.abs(Z) - 1) < 0.05, 0.1, 0.0).mean(axis=0)
    probe = rng.normal(size=(B, H))
    Hout = R.affine_act_forward(X, W, b, act)
    dW, db, dX = np.zeros_like(W), np.zeros_like(b), np.empty_like(X)
    R.affine_act_backward(probe, Hout, X, W, act, dW, db, dX)

    def J():
        return float(np.sum(R.affine_act_forward(X, W, b, act) * probe))

    for name, param, grad in (("W", W, dW), ("b", b, db), ("X", X, dX)):
        check_numeric(grad, central_difference(J, param), f"d{name} ({act})")


def test_affine_backward_adds_into_gradients_and_skips_dX():
    rng = np.random.default_rng(2)
    X, W, b = rand(rng, 3, 4), rand(rng, 2, 4), rand(rng, 2)
    Hout = K.affine_act_forward(X, W, b, "tanh")
    dH = rand(rng, 3, 2)
    once_W, once_b = np.zeros_like(W), np.zeros_like(b)
    K.affine_act_backward(dH, Hout, X, W, "tanh", once_W, once_b)
    twice_W, twice_b = once_W.copy(), once_b.copy()
    assert K.affine_act_backward(dH, Hout, X, W, "tanh", twice_W, twice_b) is None
    assert_close(twice_W, 2 * once_W, "dW accumulates")
    assert_close(twice_b, 2 * once_b, "db accumulates")


# --------------------------------------------------------------------------
# 3. softmax cross-entropy

@pytest.mark.parametrize("B,T", [(1, 1), (1, 9), (32, 9), (100, 3)])
def test_softmax_xent_matches_reference(B, T):
    rng = np.random.default_rng(B + T)
    S = rand(rng, B, T) * 5
    S[0, 0] = 80.0            # large scores must not overflow
    y = rng.integers(0, T, B).astype(np.int32)
    loss_fast, dS_fast = K.softmax_xent_forward_backward(S, y)
    loss_slow, dS_slow = R.softmax_xent_forward_backward(S, y)
    assert np.isfinite(loss_fast)
    assert abs(loss_fast - loss_slow) < 1e-5 * max(1.0, abs(loss_slow))
    assert_close(dS_fast, dS_slow, "dS")
    assert_close(K.softmax_forward(S), R.softmax_forward(S), "softmax")


def test_softmax_is_exact_at_any_scale():
    """Scores far apart or far from 0 (an untrained or diverging model): the max shift
    keeps every exp in range, so probabilities stay finite and sum to 1."""
    S = np.array([[1000.0, 0.0, -1000.0], [-1000.0, -1000.0, -999.0], [0.0, 100.0, 0.0],
                  [88.0, 89.0, 0.0], [-1e30, 0.0, 1e30]], f32)
    y = np.array([0, 2, 0, 1, 1], np.int32)
    P = K.softmax_forward(S)
    assert np.all(np.isfinite(P)) and np.allclose(P.sum(axis=1), 1.0)
    assert_close(P, R.softmax_forward(S), "softmax")
    loss, dS = K.softmax_xent_forward_backward(S, y)
    loss_ref, dS_ref = R.softmax_xent_forward_backward(S, y)
    assert np.isfinite(loss) and abs(loss - loss_ref) < 1e-5 * abs(loss_ref)
    assert_close(dS, dS_ref, "dS")


def test_softmax_xent_gradient_finite_difference():
    rng = np.random.default_rng(4)
    S, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2], np.int32)
    _, dS = R.softmax_xent_forward_backward(S, y)
    numeric = central_difference(lambda: R.softmax_xent_forward_backward(S, y)[0], S)
    check_numeric(dS, numeric, "dS")


def test_softmax_xent_empty_batch():
    loss, dS = K.softmax_xent_forward_backward(np.zeros((0, 9), f32), np.zeros(0, np.int32))
    assert loss == 0.0 and dS.shape == (0, 9)


# --------------------------------------------------------------------------
# 4. Viterbi and CRF

def sentences(rng, lengths, T):
    lengths = np.array(lengths, np.int32)
    S = rand(rng, int(lengths.sum()), T)
    return S, lengths


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 9, 12, 17])
def test_crf_steps_for_any_number_of_tags(T):
    # the steps run across tags in groups of lanes (fastner/_crf.h): fewer tags than a
    # group, exact multiples and a partial last group; forbidden moves (-inf) included
    rng = np.random.default_rng(T)
    S, L = sentences(rng, [6, 1, 0, 9], T)
    A, start, end = rand(rng, T, T), rand(rng, T), rand(rng, T)
    if T > 2:
        A[1, 2] = A[T - 1, 0] = -np.inf
    np.testing.assert_array_equal(K.viterbi_decode(S, L, A, start, end),
                                  R.viterbi_decode(S, L, A, start, end))
    marginals = K.crf_marginals(S, L, A, start, end)
    assert_close(marginals, R.crf_marginals(S, L, A, start, end), "marginals")
    tags, conf = K.crf_decode(S, L, A, start, end)
    np.testing.assert_array_equal(conf, marginals[np.arange(len(S)), tags])
    y = R.viterbi_decode(S, L, A, start, end)           # a gold path the masks allow
    results = []
    for ops in (K, R):
        grads = (np.empty_like(S), np.zeros((T, T), f32), np.zeros(T, f32), np.zeros(T, f32))
        results.append((ops.crf_forward_backward(S, y, L, A, start, end, *grads), grads))
    assert abs(results[0][0] - results[1][0]) < 1e-5
    for name, fast, slow in zip(("dS", "dA", "dstart", "dend"), results[0][1], results[1][1]):
        assert_close(fast, slow, name)


@pytest.mark.parametrize("T", [3, 9, 12])
def test_viterbi_breaks_ties_towards_the_lowest_tag_as_its_twin(T):
    """Scores of a few integer values tie often; each step's best predecessor and the
    last tag are the lowest-numbered of the tied, as np.argmax picks."""
    rng = np.random.default_rng(T)
    L = np.array([7, 1, 12, 4], np.int32)
    S = rng.integers(0, 2, (int(L.sum()), T)).astype(f32)
    A = rng.integers(-1, 1, (T, T)).astype(f32)
    start, end = np.zeros(T, f32), np.zeros(T, f32)
    np.testing.assert_array_equal(K.viterbi_decode(S, L, A, start, end),
                                  R.viterbi_decode(S, L, A, start, end))
    flat = np.zeros_like(S)                       # every path ties: all tag 0
    zeros = np.zeros((T, T), f32)
    assert not K.viterbi_decode(flat, L, zeros, start, end).any()


def brute_force_best(s, A, start, end):
    import itertools
    n, T = s.shape
    best, best_path = -np.inf, None
    for path in itertools.product(range(T), repeat=n):
        score = start[path[0]] + end[path[-1]] + sum(s[t, p] for t, p in enumerate(path))
        score += sum(A[path[t - 1], path[t]] for t in range(1, n))
        if score > best:
            best, best_path = score, path
    return list(best_path)


@pytest.mark.parametrize("lengths", [[1], [4], [3, 0, 5, 1], [40, 2]])
def test_viterbi_matches_reference(lengths):
    rng = np.random.default_rng(len(lengths))
    T = 9
    S, L = sentences(rng, lengths, T)
    A, start, end = rand(rng, T, T), rand(rng, T), rand(rng, T)
    A[2, 5] = -np.inf
    np.testing.assert_array_equal(K.viterbi_decode(S, L, A, start, end),
                                  R.viterbi_decode(S, L, A, start, end))


def test_viterbi_is_exact_against_brute_force():
    rng = np.random.default_rng(9)
    T = 3
    for n in (1, 2, 4):
        S, L = sentences(rng, [n], T)
        A, start, end = rand(rng, T, T), rand(rng, T), rand(rng, T)
        assert K.viterbi_decode(S, L, A, start, end).tolist() == \
            brute_force_best(S.astype(float), A, start, end)


def test_viterbi_respects_forbidden_iob_moves():
    from fastner.tags import TagSet
    tags = TagSet()
    trans, start = tags.transition_mask()
    rng = np.random.default_rng(0)
    S, L = sentences(rng, [30, 12], len(tags))
    S[:, tags.index["I-PER"]] += 5.0            # tempt it with I- tags everywhere
    path = tags.decode(K.viterbi_decode(S, L, trans, start, np.zeros(len(tags), f32)))
    for sent in (path[:30], path[30:]):
        assert not sent[0].startswith("I-")
        for prev, cur in zip(sent, sent[1:]):
            if cur.startswith("I-"):
                assert prev[2:] == cur[2:], (prev, cur)


@pytest.mark.parametrize("lengths", [[1], [5], [2, 0, 7, 1]])
def test_crf_matches_reference(lengths):
    rng = np.random.default_rng(sum(lengths))
    T = 5
    S, L = sentences(rng, lengths, T)
    y = rng.integers(0, T, len(S)).astype(np.int32)
    A, start, end = rand(rng, T, T), rand(rng, T), rand(rng, T)
    results = []
    for ops in (K, R):
        dS = np.empty_like(S)
        dA, dstart, dend = np.ones((T, T), f32), np.ones(T, f32), np.ones(T, f32)
        loss = ops.crf_forward_backward(S, y, L, A, start, end, dS, dA, dstart, dend)
        results.append((loss, dS, dA, dstart, dend))
    assert abs(results[0][0] - results[1][0]) < 1e-5
    for name, fast, slow in zip(("dS", "dA", "dstart", "dend"), results[0][1:], results[1][1:]):
        assert_close(fast, slow, name)
    assert_close(K.crf_marginals(S, L, A, start, end), R.crf_marginals(S, L, A, start, end),
                 "marginals")


def test_crf_gradient_finite_difference():
    rng = np.random.default_rng(8)
    T = 4
    L = np.array([3, 1, 4], np.int32)
    S = rng.normal(size=(8, T))
    y = rng.integers(0, T, 8).astype(np.int32)
    A, start, end = rng.normal(size=(T, T)), rng.normal(size=T), rng.normal(size=T)
    grads = [np.empty_like(S), np.zeros_like(A), np.zeros_like(start), np.zeros_like(end)]
    R.crf_forward_backward(S, y, L, A, start, end, *grads)

    def J():
        return R.crf_forward_backward(S, y, L, A, start, end, np.empty_like(S),
                                      np.zeros_like(A), np.zeros_like(start), np.zeros_like(end))

    for name, param, grad in zip(("S", "A", "start", "end"), (S, A, start, end), grads):
        check_numeric(grad, central_difference(J, param), f"d{name}")


def test_crf_scaled_recursions_stay_exact_on_long_sentences_and_large_scores():
    """The kernel's probability-space recursions, rescaled per row (derivations §C8),
    against the log-space twin on a 300-token sentence with scores of ±40 and the
    IOB2 masks' −∞ moves: the same loss and gradients to float32 rounding."""
    from fastner.tags import TagSet
    rng = np.random.default_rng(5)
    tagset = TagSet(["LOC", "MISC", "ORG", "PER"])
    mask, mask_start = tagset.transition_mask()
    T = len(tagset)
    lengths = np.array([300, 1, 40], np.int32)
    S = (rng.normal(size=(341, T)) * 40).astype(f32)
    y = []
    for n in lengths:               # valid IOB2 gold paths
        tag = 0
        for _ in range(n):
            tag = int(rng.choice([0, 1, 3, 5, 7] + ([tag + 1] if tag % 2 else [])))
            y.append(tag)
    y = np.array(y, np.int32)
    A = (rand(rng, T, T) + mask).astype(f32)
    start, end = (rand(rng, T) + mask_start).astype(f32), rand(rng, T)
    results = []
    for ops in (K, R):
        grads = [np.empty_like(S), np.zeros((T, T), f32), np.zeros(T, f32), np.zeros(T, f32)]
        loss = ops.crf_forward_backward(S, y, lengths, A, start, end, *grads)
        results.append((loss, grads))
    (fast, g_fast), (slow, g_slow) = results
    assert np.isfinite(fast) and fast == pytest.approx(slow, rel=1e-6)
    for name, a, b in zip(("dS", "dtrans", "dstart", "dend"), g_fast, g_slow):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)


def test_crf_marginals_sum_to_one_and_loss_is_positive():
    rng = np.random.default_rng(1)
    S, L = sentences(rng, [6, 3], 9)
    A, start, end = rand(rng, 9, 9), rand(rng, 9), rand(rng, 9)
    marg = K.crf_marginals(S, L, A, start, end)
    assert_close(marg.sum(axis=1), np.ones(9), "marginal rows")
    y = rng.integers(0, 9, 9).astype(np.int32)
    loss = K.crf_forward_backward(S, y, L, A, start, end, np.empty_like(S),
                                  np.zeros((9, 9), f32), np.zeros(9, f32), np.zeros(9, f32))
    assert loss > 0


def test_crf_decode_is_viterbi_and_the_marginal_of_each_chosen_tag_exactly():
    # crf_decode works out the marginal of the chosen tag only: the same float as
    # crf_marginals' at that tag, under IOB2 masks and with empty sentences between
    from fastner.tags import TagSet
    rng = np.random.default_rng(7)
    S, L = sentences(rng, [6, 0, 1, 12, 3], 9)
    S *= 4
    mask, mask_start = TagSet().transition_mask()
    A, start, end = mask + rand(rng, 9, 9), mask_start + rand(rng, 9), rand(rng, 9)
    tags, conf = K.crf_decode(S, L, A, start, end)
    np.testing.assert_array_equal(tags, K.viterbi_decode(S, L, A, start, end))
    np.testing.assert_array_equal(conf, K.crf_marginals(S, L, A, start, end)[np.arange(22),
                                                                             tags])


def test_crf_decode_for_entities_only_gives_their_tokens_the_same_confidences():
    # the marginals of entity tokens only: equal to the full decode's bit for bit, NaN
    # at O (tag 0), and a sentence with no entity left out entirely
    from fastner.tags import TagSet
    rng = np.random.default_rng(8)
    S, L = sentences(rng, [7, 5, 0, 9, 1], 9)
    S *= 3
    S[:7, 0] += 50                               # the first sentence: O throughout
    S[[12, 18, 19, 20], 0] += 50                 # the fourth: O before and after entities
    mask, mask_start = TagSet().transition_mask()
    A, start, end = mask + rand(rng, 9, 9), mask_start + rand(rng, 9), rand(rng, 9)
    tags, every = K.crf_decode(S, L, A, start, end)
    same_tags, conf = K.crf_decode(S, L, A, start, end, entities_only=True)
    np.testing.assert_array_equal(same_tags, tags)
    assert (tags[:7] == 0).all() and (tags[[12, 18, 19, 20]] == 0).all()
    assert (tags[7:12] != 0).any() and (tags[13:18] != 0).any()
    np.testing.assert_array_equal(conf[tags != 0], every[tags != 0])
    assert np.isnan(conf[tags == 0]).all()
    twin_tags, twin = R.crf_decode(S, L, A, start, end, entities_only=True)
    np.testing.assert_array_equal(twin_tags, tags)
    np.testing.assert_allclose(twin, conf, rtol=1e-5, equal_nan=True)


# --------------------------------------------------------------------------
# bad arguments raise clear exceptions: the messages in full (every argument of
# every kernel is also mutated generically in test_kernel_registry.py)

def _lookup_args():
    return np.zeros((2, 3), np.int32), np.zeros((4, 2), f32)


BAD_CALLS = [
    ("int64 ids", lambda: K.lookup_forward(np.zeros((2, 3), np.int64), np.zeros((4, 2), f32)),
     ValueError, "ids_bk must be a C-contiguous int32"),
    ("float64 table", lambda: K.lookup_forward(np.zeros((2, 3), np.int32), np.zeros((4, 2))),
     ValueError, "table_ve must be a C-contiguous float32"),
    ("1-d ids", lambda: K.lookup_forward(np.zeros(3, np.int32), np.zeros((4, 2), f32)),
     ValueError, "got int32 (3,)"),
    ("list ids", lambda: K.lookup_forward([[0, 1]], np.zeros((4, 2), f32)),
     ValueError, "got list"),
    ("non-contiguous table", lambda: K.lookup_forward(np.zeros((2, 3), np.int32),
                                                      np.zeros((4, 4), f32)[:, ::2]),
     ValueError, "non-contiguous"),
    ("id == V", lambda: K.lookup_forward(np.full((2, 3), 4, np.int32), np.zeros((4, 2), f32)),
     IndexError, "ids_bk[0, 0] = 4 is out of range for a table of 4 rows"),
    ("id < 0", lambda: K.lookup_forward(np.array([[0, 1, -1]], np.int32), np.zeros((4, 2), f32)),
     IndexError, "ids_bk[0, 2] = -1"),
    ("backward id == V", lambda: K.lookup_backward(np.full((1, 3), 4, np.int32),
                                                   np.zeros((1, 6), f32), np.zeros((4, 2), f32)),
     IndexError, "out of range"),
    ("out of wrong batch", lambda: K.lookup_forward(np.zeros((2, 3), np.int32),
                                                    np.zeros((4, 2), f32), np.zeros((3, 6), f32)),
     ValueError, "out_bd must have shape (B, D) = (2, D)"),
    ("slice past E", lambda: K.lookup_forward(np.zeros((2, 3), np.int32), np.zeros((4, 2), f32),
                                              np.zeros((2, 9), f32), 2),
     ValueError, "does not fit"),
    ("read-only output", lambda: K.lookup_forward(
        np.zeros((2, 3), np.int32), np.zeros((4, 2), f32),
        np.lib.stride_tricks.as_strided(np.zeros((2, 6), f32), writeable=False)),
     ValueError, "must be writable"),
    ("W wrong D", lambda: K.affine_act_forward(np.zeros((2, 4), f32), np.zeros((3, 5), f32),
                                               np.zeros(3, f32)),
     ValueError, "W_hd must have shape (H, D) = (H, 4); got (3, 5)"),
    ("b wrong H", lambda: K.affine_act_forward(np.zeros((2, 4), f32), np.zeros((3, 4), f32),
                                               np.zeros(2, f32)),
     ValueError, "b_h must have shape (H) = (3)"),
    ("bad activation", lambda: K.affine_act_forward(np.zeros((2, 4), f32), np.zeros((3, 4), f32),
                                                    np.zeros(3, f32), "sigmoid"),
     ValueError, "activation must be one of"),
    ("zero-width window", lambda: K.affine_act_forward(np.zeros((2, 0), f32),
                                                       np.zeros((3, 0), f32), np.zeros(3, f32)),
     ValueError, "D must be at least 1"),
    ("backward dW shape", lambda: K.affine_act_backward(
        np.zeros((2, 3), f32), np.zeros((2, 3), f32), np.zeros((2, 4), f32),
        np.zeros((3, 4), f32), "tanh", np.zeros((4, 3), f32), np.zeros(3, f32)),
     ValueError, "dW_hd must have shape"),
    ("tag == T", lambda: K.softmax_xent_forward_backward(np.zeros((2, 3), f32),
                                                         np.array([0, 3], np.int32)),
     IndexError, "y_b[1] = 3 is out of range for 3 tags"),
    ("negative tag", lambda: K.softmax_xent_forward_backward(np.zeros((2, 3), f32),
                                                             np.array([-1, 0], np.int32)),
     IndexError, "y_b[0] = -1"),
    ("lengths do not sum", lambda: K.viterbi_decode(np.zeros((5, 3), f32),
                                                    np.array([2, 2], np.int32),
                                                    np.zeros((3, 3), f32), np.zeros(3, f32),
                                                    np.zeros(3, f32)),
     ValueError, "lengths_n must sum to the B = 5 rows"),
    ("negative length", lambda: K.viterbi_decode(np.zeros((1, 3), f32),
                                                 np.array([2, -1], np.int32),
                                                 np.zeros((3, 3), f32), np.zeros(3, f32),
                                                 np.zeros(3, f32)),
     ValueError, "non-negative"),
    ("trans wrong T", lambda: K.viterbi_decode(np.zeros((2, 3), f32), np.array([2], np.int32),
                                               np.zeros((4, 4), f32), np.zeros(3, f32),
                                               np.zeros(3, f32)),
     ValueError, "trans_tt must have shape (T, T) = (3, 3)"),
    ("crf gold tag == T", lambda: K.crf_forward_backward(
        np.zeros((2, 3), f32), np.array([0, 3], np.int32), np.array([2], np.int32),
        np.zeros((3, 3), f32), np.zeros(3, f32), np.zeros(3, f32), np.zeros((2, 3), f32),
        np.zeros((3, 3), f32), np.zeros(3, f32), np.zeros(3, f32)),
     IndexError, "y_b[1] = 3"),
]


@pytest.mark.parametrize("what,call,error,message", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_clear_errors(what, call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


# --------------------------------------------------------------------------
# 5. the fused plain-SGD step, against its twin and the unfused trainer path

@pytest.mark.parametrize("B", [1, 7, 64])
def test_fused_sgd_step_equals_numpy_twin_and_trainer(B):
    """SGDStep (Cython) == R.SGDStep (NumPy) == model backward + Optimizer("sgd")."""
    from fastner.train import Optimizer, TrainConfig
    models = [tiny_model("softmax", ops=K, dtype=np.float32) for _ in range(3)]
    rng = np.random.default_rng(B)
    ids_list, y, _, _ = batch(models[0])
    rows = rng.integers(0, len(y), B)
    ids = [f[rows] for f in ids_list]
    ids_bkf = np.ascontiguousarray(np.stack(ids, axis=2))
    y = y[rows]
    steppers = []
    for ops, model in zip((K, R), models[:2]):
        p = model.params
        steppers.append(ops.SGDStep(model.tables(), p["W"], p["b"], p["U"], p["c"], "tanh",
                                    model.offsets, model.K))
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, clip=0.0, lr=0.05)
    opt = Optimizer(models[2], cfg)
    for _ in range(3):
        losses = [s.step(ids_bkf, y, 0.05) for s in steppers]
        losses.append(models[2].loss_and_backward(ids, y, None, opt.grads))
        opt.step([np.unique(f) for f in ids], 0.05)
        assert max(losses) - min(losses) < 1e-5, losses
    for other in models[1:]:
        np.testing.assert_allclose(models[0].flat, other.flat, rtol=1e-4, atol=1e-6)


def test_fused_sgd_step_rejects_bad_arguments():
    model = tiny_model("softmax", ops=K, dtype=np.float32)
    p = model.params
    step = K.SGDStep(model.tables(), p["W"], p["b"], p["U"], p["c"], "tanh",
                            model.offsets, model.K)
    ids = np.zeros((2, model.K, len(model.features)), np.int32)
    y = np.zeros(2, np.int32)
    before = model.flat.copy()
    with pytest.raises(ValueError, match="ids_bkf must be a C-contiguous int32"):
        step.step(ids.astype(np.int64), y, 0.1)
    with pytest.raises(ValueError, match="ids_bkf must have shape"):
        step.step(np.zeros((2, model.K, 1), np.int32), y, 0.1)
    bad = ids.copy()
    bad[1, 2, 0] = len(model.features[0].vocab)
    with pytest.raises(IndexError, match=r"ids_bkf\[1, 2, 0\]"):
        step.step(bad, y, 0.1)
    with pytest.raises(IndexError, match=r"y_b\[0\] = 9"):
        step.step(ids, np.array([9, 0], np.int32), 0.1)
    np.testing.assert_array_equal(model.flat, before)      # nothing moved
    with pytest.raises(ValueError, match="W_hd must be a C-contiguous float32"):
        K.SGDStep(model.tables(), p["W"].astype(np.float64), p["b"], p["U"], p["c"],
                         "tanh", model.offsets, model.K)


@pytest.mark.parametrize("B", [1, 3, 7, 16])
@pytest.mark.parametrize("bad", [-1, 10, 2**31 - 1])
def test_an_id_out_of_range_is_found_at_every_place(B, bad):
    # the range check is a vectorized pass over 16 rows at a time (then the rest),
    # followed by the scan that names the entry: a bad id in any row, column or
    # leftover row must raise, for one column (lookup_forward) and for two
    # (CachedScorer, whose columns have different limits)
    rng = np.random.default_rng(B)
    table = rand(rng, 10, 4)
    for at in range(B * 3):
        ids = np.zeros((B, 3), np.int32)
        ids.flat[at] = bad
        index = ", ".join(map(str, np.unravel_index(at, ids.shape)))
        with pytest.raises(IndexError, match=rf"ids_bk\[{index}\] = {bad} is out of range"):
            K.lookup_forward(ids, table, np.zeros((B, 12), f32), 0)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 4)
    scorer = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
    for at in range(B * Kw * 2):
        ids = np.zeros((B, Kw, 2), np.int32)
        ids.flat[at] = bad if bad != 10 else (10 if at % 2 == 0 else 6)   # the limits
        index = ", ".join(map(str, np.unravel_index(at, ids.shape)))
        with pytest.raises(IndexError, match=rf"ids_bkf\[{index}\] = -?\d+ is out of range"):
            scorer.scores(ids)


# --------------------------------------------------------------------------
# 6. inference: cached first layer, fused

@pytest.mark.parametrize("N", [0, 3, 10])
@pytest.mark.parametrize("B", [1, 9, 600])          # 600 spans several blocks
def test_cached_scorer_matches_reference_and_full_forward(N, B):
    rng = np.random.default_rng(N + B)
    caches, tables, WT, b, U, c, offsets, Kw, W = scorer_inputs(rng, N)
    ids = np.stack([rng.integers(0, 10, (B, Kw)), rng.integers(0, 6, (B, Kw))],
                   axis=2).astype(np.int32)
    fast = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw).scores(ids)
    slow = R.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw).scores(ids)
    assert_close(fast, slow, f"N={N} B={B}", rtol=1e-4, atol=scorer_atol(U))
    X = np.zeros((B, WT.shape[0]), f32)
    for f, (table, offset) in enumerate(zip(tables, offsets)):
        K.lookup_forward(np.ascontiguousarray(ids[:, :, f]), table, X, offset)
    full = K.affine_act_forward(K.affine_act_forward(X, W, b, "tanh"), U, c, "identity")
    # the cache holds half-precision products: |error| ≤ 2⁻¹¹ of each
    assert_close(fast, full, "against the training forward", rtol=5e-3, atol=5e-3)


def test_scorer_clock_clears_the_stamps_before_it_would_repeat():
    # _patterns and _renumber stamp rows with a per-call clock; at 2³¹ − 1 it starts
    # again from 1, and every stamp row is cleared first so none equals a new clock
    stamps = np.array([[7, 2**31 - 2, 3], [4, 5, 6]], np.int32)
    assert K._next_clock(41, [stamps, None]) == 42
    assert stamps[0].tolist() == [7, 2**31 - 2, 3]
    assert K._next_clock(2**31 - 2, [stamps, None]) == 1
    assert stamps.tolist() == [[0, 0, 0], [4, 5, 6]]


@pytest.mark.parametrize("H", [7, 24, 37])
@pytest.mark.parametrize("T", [1, 7, 8, 9, 16, 17])
def test_cached_scorer_output_layer_for_any_number_of_tags(T, H):
    # the output layer (fastner/_output.h, or the BLAS in two products) takes groups
    # of 8 tags and then the rest, 8 windows at a time and then the block's last few;
    # the rest are dot products over H in 16s, then 8s, then one by one (H = 24: no
    # tail; 7: only the tail; 37: each). 300 windows: a block of 256, then 5·8 + 4.
    rng = np.random.default_rng(T + 100 * H)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 4, H=H, T=T)
    ids = np.stack([rng.integers(0, 10, (300, Kw)), rng.integers(0, 6, (300, Kw))],
                   axis=2).astype(np.int32)
    fast = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw).scores(ids)
    slow = R.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw).scores(ids)
    assert fast.shape == (300, T)
    assert_close(fast, slow, f"T={T}", rtol=1e-4, atol=scorer_atol(U))


@pytest.mark.parametrize("portable", [False, True])
def test_cached_scorer_half_paths_agree(portable):
    # the F16C and the portable half conversions give the same scores
    rng = np.random.default_rng(11)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 7, H=37)
    ids = np.stack([rng.integers(0, 10, (300, Kw)), rng.integers(0, 6, (300, Kw))],
                   axis=2).astype(np.int32)
    try:
        K._use_portable_half(portable)
        assert (K.half_path() == "portable") or not portable
        fast = K.CachedScorer(caches, tables, WT, b, U, c, "relu", offsets, Kw).scores(ids)
    finally:
        K._use_portable_half(False)
    slow = R.CachedScorer(caches, tables, WT, b, U, c, "relu", offsets, Kw).scores(ids)
    assert_close(fast, slow, f"portable={portable}", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("N", [6, 10])
def test_cached_scorer_tanh_in_the_next_windows_pass_is_bit_for_bit(N):
    # with the cache's tanh, a window of five rows (K = 5, the 6-row table in the pattern
    # row) is summed in the same pass as the previous window's tanh
    # (fastner_sum5_and_tanh), across blocks of 256: five cached rows, or four and one
    # missed row's product (N = 6: rows 6-9 are missed); windows with more missed rows
    # take separate passes. The scores equal those of separate passes for every window
    # (the portable half conversion turns the interleaving off) bit for bit, and the
    # twin's within the tanh's bound.
    rng = np.random.default_rng(N)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, N, Kw=5, H=37)
    ids = np.stack([rng.integers(0, 10, (600, Kw)), rng.integers(0, 6, (600, Kw))],
                   axis=2).astype(np.int32)
    scorer = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
    assert scorer.pattern_features == [1]
    together = scorer.scores(ids)
    try:
        K._use_portable_half(True)
        separate = scorer.scores(ids)
    finally:
        K._use_portable_half(False)
    np.testing.assert_array_equal(together, separate)
    slow = R.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw).scores(ids)
    assert_close(together, slow, f"N={N}", rtol=1e-4, atol=scorer_atol(U))


def test_half_to_float_is_exact_for_every_half():
    every = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    expected = every.view(np.float16).astype(np.float32)
    got = K.half_to_float(every)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(got[finite], expected[finite])
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(got[np.isinf(expected)], expected[np.isinf(expected)])


@pytest.mark.parametrize("portable", [False, True])
def test_float_to_half_rounds_as_numpy_at_every_boundary(portable):
    # Every half, the floats next to it, and the floats at, just below and just above
    # each midpoint between neighbouring halves (where rounding decides, ties to even),
    # across normal, subnormal and overflowing values of both signs; plus specials and
    # random bit patterns. The F16C path and the portable conversion must give NumPy's
    # halves (NaN: any NaN).
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = np.sort(halves[np.isfinite(halves)].astype(np.float32))
    mids = ((finite[:-1].astype(np.float64) + finite[1:]) / 2).astype(np.float32)
    beyond = np.float32(65520.0)                    # 65504 + half an ulp: the first inf
    points = np.concatenate([finite, mids, [beyond, -beyond, np.float32(2.0**-25)]])
    points = np.concatenate([points, np.nextafter(points, np.float32(np.inf)),
                             np.nextafter(points, np.float32(-np.inf))])
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([np.inf, -np.inf, np.nan, 1e-45, -1e-45, 3.4e38, 0.0, -0.0],
                        np.float32)
    x = np.concatenate([points, bits.view(np.float32), specials]).astype(np.float32)
    x = x[: len(x) // 7 * 7].reshape(-1, 7)        # 7 columns: the F16C path's tail too
    with np.errstate(over="ignore", invalid="ignore"):
        expected = x.astype(np.float16)
    out = np.empty_like(expected)
    K._use_portable_half(portable)
    try:
        bad = K.float_to_half(x, out)
    finally:
        K._use_portable_half(False)
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(out), nan)
    np.testing.assert_array_equal(out[~nan].view(np.uint16), expected[~nan].view(np.uint16))
    assert bad == np.count_nonzero(~np.isfinite(expected))


def test_cached_scorer_over_several_chunks_leaves_the_ids_alone():
    # 9000 windows: three chunks of misses (SCORER_CHUNK = 4096), each row missed often
    rng = np.random.default_rng(5)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 3)
    ids = np.stack([rng.integers(0, 10, (9000, Kw)), rng.integers(0, 6, (9000, Kw))],
                   axis=2).astype(np.int32)
    before = ids.copy()
    fast = K.CachedScorer(caches, tables, WT, b, U, c, "hardtanh", offsets, Kw).scores(ids)
    slow = R.CachedScorer(caches, tables, WT, b, U, c, "hardtanh", offsets, Kw).scores(ids)
    assert_close(fast, slow, "9000 windows", rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(ids, before)


@pytest.mark.parametrize("N, patterns", [(3, [1]), (10, [0])])
def test_cached_scorer_sums_small_tables_per_pattern(N, patterns):
    # a table the cache holds whole is summed once per distinct pattern of its ids
    # (derivations I5) while the patterns of all such tables fit PATTERN_KEYS: the
    # 6-row table's 6³ alone, or the 10-row one's 10³ (then 10³ · 6³ is too many);
    # a call whose call_tables extend a pattern table adds its rows per window
    rng = np.random.default_rng(N)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, N)
    scorer = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
    assert scorer.pattern_features == patterns
    ids = np.stack([rng.integers(0, 10, (700, Kw)), rng.integers(0, 6, (700, Kw))],
                   axis=2).astype(np.int32)
    ids[:300, :, patterns[0]] = ids[0, :, patterns[0]]       # many windows share one
    twin = R.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
    for _ in range(2):                                       # the stamps serve each call
        assert_close(scorer.scores(ids), twin.scores(ids), f"N={N}", rtol=1e-4,
                     atol=scorer_atol(U))
    extra = {patterns[0]: rand(rng, 2, tables[patterns[0]].shape[1])}
    ids[5, 1, patterns[0]] = tables[patterns[0]].shape[0] + 1     # a call-table row
    assert_close(scorer.scores(ids, extra), twin.scores(ids, extra), "call table",
                 rtol=1e-4, atol=scorer_atol(U))
    assert_close(scorer.scores(ids[:0]), twin.scores(ids[:0]), "no windows")


def test_cached_scorer_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 3)
    scorer = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
    ids = np.zeros((2, Kw, 2), np.int32)
    ids[1, 2, 1] = 6
    with pytest.raises(IndexError, match=r"ids_bkf\[1, 2, 1\] = 6 is out of range for table 1"):
        scorer.scores(ids)
    with pytest.raises(ValueError, match="ids_bkf must have shape"):
        scorer.scores(np.zeros((2, Kw, 3), np.int32))
    with pytest.raises(ValueError, match="more rows than"):
        K.CachedScorer([np.zeros((11, Kw, 7), np.float16), caches[1]], tables, WT, b, U, c, "tanh",
                       offsets, Kw)
    with pytest.raises(ValueError, match=r"caches\[0\] must be a C-contiguous float16"):
        K.CachedScorer([caches[0].astype(f32), caches[1]], tables, WT, b, U, c, "tanh", offsets,
                       Kw)
    with pytest.raises(ValueError, match="one cache, table and offset per feature"):
        K.CachedScorer(caches[:1], tables, WT, b, U, c, "tanh", offsets, Kw)


def test_marginals_exp_accuracy():
    # tagging's marginals take their exps from fastner/_exp.h (derivations C8)
    x = -np.concatenate([np.linspace(0, 708, 700001), np.logspace(-300, 2.85, 2000)])
    got = K.exp_nonpositive(x)
    assert np.abs(got / np.exp(x) - 1).max() < 1e-15
    assert K.exp_nonpositive(np.array([0.0]))[0] == 1.0
    assert 0 < K.exp_nonpositive(np.array([-800.0]))[0] < 1e-300     # clamped, not subnormal
    with pytest.raises(ValueError, match="at most 0"):
        K.exp_nonpositive(np.array([0.5]))


def test_tanh_accuracy():
    x = np.linspace(-30, 30, 100001).astype(f32)
    assert np.abs(K.tanh(x) - np.tanh(x.astype(np.float64))).max() < 4e-7


def test_the_caches_tanh_error_is_bounded():
    # the cached scorer's tanh (fastner/_tanh.h, where AVX-512 is built in): a 7/6
    # rational function within 2.4e-6 of tanh, divided through the reciprocal estimate
    # (relative error below 2⁻¹⁴, no Newton step), the same NaN, clamped beyond ±7.905,
    # and the same values for a row's masked tail as for a full row; elsewhere it is the
    # kernels' fast_tanh itself
    rng = np.random.default_rng(0)
    x = np.concatenate([np.linspace(-30, 30, 200_001), rng.normal(0, 3, 200_000),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30]]).astype(f32)
    cached = K.tanh_for_the_cache(x)
    if K.scorer_tanh() == "fast_tanh":
        np.testing.assert_array_equal(cached, K.tanh(x))
    assert np.array_equal(np.isnan(cached), np.isnan(x))
    finite = ~np.isnan(x)
    exact = np.tanh(x[finite].astype(np.float64))
    assert np.all(np.abs(cached[finite] - exact) <= 2.0**-14 * np.abs(exact) + 2.4e-6)
    # saturated: ±inf give what a large finite input gives (the clamp, in _tanh.h's)
    far = K.tanh_for_the_cache(np.array([30.0, -30.0], f32))
    assert cached[x == np.inf][0] == far[0] and cached[x == -np.inf][0] == far[1]
    if K.scorer_tanh() == "avx512-rcp":
        assert far[0] == K.tanh_for_the_cache(np.array([7.905], f32))[0]
    assert np.all(np.sign(cached[finite]) == np.sign(x[finite]))
    for n in (1, 15, 16, 17, 300):
        np.testing.assert_array_equal(K.tanh_for_the_cache(x[:n]), cached[:n])


def test_the_caches_tanh_coefficients_are_the_minimax_fit():
    # fastner/_tanh.h's coefficients: the odd rational x·P(x²)/Q(x²), P and Q of degree
    # 3 in x², Q(0) = 1, with the least largest error against tanh on [0, 7.905]. Refit
    # here by linear programming (for a trial error d, is there P, Q > 0 with
    # |x·P − tanh·Q| ≤ d·Q at every point? bisect on d) and compared by their errors:
    # the header's (rounded to float32) must be within a few percent of the fit's.
    from scipy.optimize import linprog
    with open(os.path.join(os.path.dirname(K.__file__), "_tanh.h")) as f:
        header = f.read()
    body = header[header.index("fastner_tanh16_rcp(__m512 x)"):]
    body = body[:body.index("\n}")]
    numbers = [float(v) for v in re.findall(r"FASTNER_SPLAT\(([-0-9.e+]+)f\)", body)]
    clamp, p, q = numbers[0], numbers[5:1:-1], numbers[9:5:-1]   # lowest degree first
    assert numbers[1] == -clamp and len(numbers) == 10 and q[0] == 1.0

    x = np.linspace(0, clamp, 1201)[1:]
    t, f = x * x, np.tanh(x)
    xP = np.stack([x * t**i for i in range(4)], axis=1)
    Q = np.stack([t**i for i in range(4)], axis=1)

    def coefficients_within(d):
        bound = np.vstack([np.hstack([xP, -(f + d)[:, None] * Q]),
                           np.hstack([-xP, (f - d)[:, None] * Q]),
                           np.hstack([np.zeros_like(xP), -Q])])
        limit = np.concatenate([np.zeros(2 * len(x)), np.full(len(x), -1e-3)])
        fix = np.zeros((1, 8))
        fix[0, 4] = 1.0                                        # Q(0) = 1
        fit = linprog(np.zeros(8), A_ub=bound, b_ub=limit, A_eq=fix, b_eq=[1.0],
                      bounds=[(None, None)] * 8, method="highs")
        return fit.status == 0

    low, high = 0.0, 1e-4
    for _ in range(24):
        mid = (low + high) / 2
        low, high = (low, mid) if coefficients_within(mid) else (mid, high)
    dense = np.linspace(0, clamp, 200_001)
    tt = dense * dense
    header_error = np.abs(dense * np.polyval(p[::-1], tt) / np.polyval(q[::-1], tt)
                          - np.tanh(dense)).max()
    assert high < 2.4e-6
    assert header_error <= 1.05 * high
    assert 1 - np.tanh(clamp) < 3e-7         # beyond the clamp, tanh moves less than that


# --------------------------------------------------------------------------
# 7. Adam (an update, not a derivative: no finite differences; bit-for-bit
# equality with the NumPy twin instead, which the trainer relies on)

def _adam_state(rng, *shape):
    param, grad, m = rand(rng, *shape), rand(rng, *shape), rand(rng, *shape) * 0.1
    v = np.abs(rand(rng, *shape)) * 0.01
    return [param, grad, m, v]


@pytest.mark.parametrize("n", [1, 7, 85_000])
@pytest.mark.parametrize("grad_scale", [1.0, 0.37])
def test_adam_update_equals_reference_bit_for_bit(n, grad_scale):
    rng = np.random.default_rng(n)
    fast = _adam_state(rng, n)
    slow = [x.copy() for x in fast]
    for t in range(1, 4):
        step = 1e-3 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        K.adam_update(*fast, step, 0.9, 0.999, 1e-8, grad_scale)
        R.adam_update(*slow, step, 0.9, 0.999, 1e-8, grad_scale)
        for a, b, name in zip(fast, slow, ("param", "grad", "m", "v")):
            np.testing.assert_array_equal(a, b, err_msg=f"{name} after step {t}")
        assert not fast[1].any()                       # the gradient is consumed
        fast[1][...] = slow[1][...] = rand(rng, n)     # a new gradient for the next step


def test_adam_update_rows_touches_only_its_rows():
    rng = np.random.default_rng(3)
    fast = _adam_state(rng, 40, 6)
    slow = [x.copy() for x in fast]
    before = [x.copy() for x in fast]
    rows = np.array([0, 3, 4, 17, 39], np.int32)
    K.adam_update_rows(*fast, rows, 2e-3, 0.9, 0.999, 1e-8, 0.5)
    R.adam_update_rows(*slow, rows, 2e-3, 0.9, 0.999, 1e-8, 0.5)
    untouched = np.setdiff1d(np.arange(40), rows)
    for a, b, old, name in zip(fast, slow, before, ("table", "grad", "m", "v")):
        np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(a[untouched], old[untouched], err_msg=name)
        assert not np.array_equal(a[rows], old[rows]), name
    assert not fast[1][rows].any()


def test_adam_rejects_bad_arguments():
    rng = np.random.default_rng(0)
    p, g, m, v = _adam_state(rng, 10, 3)
    rows = np.array([1, 2], np.int32)
    with pytest.raises(ValueError, match="param_n must be a C-contiguous float32"):
        K.adam_update(p.reshape(-1).astype(np.float64), g.reshape(-1), m.reshape(-1),
                      v.reshape(-1), 1e-3)
    with pytest.raises(ValueError, match=r"m_n must have shape \(n\) = \(30\)"):
        K.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1)[:29], v.reshape(-1), 1e-3)
    frozen = v.reshape(-1).copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="v_n is an output and must be writable"):
        K.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), frozen, 1e-3)
    with pytest.raises(ValueError, match="beta1 and beta2 must be in"):
        K.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), 1e-3,
                      beta1=1.0)
    with pytest.raises(ValueError, match="grad_scale must be positive"):
        K.adam_update_rows(p, g, m, v, rows, 1e-3, grad_scale=0.0)
    with pytest.raises(ValueError, match=r"grad_ve must have shape \(V, e\) = \(10, 3\)"):
        K.adam_update_rows(p, g[:9], m, v, rows, 1e-3)
    with pytest.raises(ValueError, match="rows_r must be a C-contiguous int32"):
        K.adam_update_rows(p, g, m, v, rows.astype(np.int64), 1e-3)
    with pytest.raises(IndexError, match=r"rows_r\[1\] = 10 is out of range for a table of 10"):
        K.adam_update_rows(p, g, m, v, np.array([2, 10], np.int32), 1e-3)
    with pytest.raises(IndexError, match=r"rows_r\[0\] = -1 is out of range"):
        K.adam_update_rows(p, g, m, v, np.array([-1, 2], np.int32), 1e-3)
    with pytest.raises(ValueError, match="strictly increasing"):
        K.adam_update_rows(p, g, m, v, np.array([2, 2], np.int32), 1e-3)
    before = [x.copy() for x in (p, g, m, v)]
    with pytest.raises(ValueError, match="strictly increasing"):
        K.adam_update_rows(p, g, m, v, np.array([3, 1], np.int32), 1e-3)
    for a, b in zip((p, g, m, v), before):        # nothing moved before the error
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------
# 8. the character convolution and max-over-time pooling

def test_char_cnn_takes_the_max_over_each_words_positions():
    # one filter reading the middle character's single embedding value (e = 1, K = 3)
    table = np.array([[0.0], [1.0], [5.0], [-2.0]], f32)
    Wc = np.array([[0.0, 1.0, 0.0]], f32)
    chars = np.array([[0, 1, 2], [1, 2, 3], [2, 3, 0],      # word 0: middles 1, 2, 3
                      [0, 3, 0]], np.int32)                  # word 1: middle 3
    lengths = np.array([3, 1], np.int32)
    out, argmax = K.char_cnn_forward(chars, lengths, table, Wc, np.array([0.5], f32))
    assert out.tolist() == [[5.5], [-1.5]] and argmax.tolist() == [[1], [3]]
    # the gradient reaches only the arg-max position's characters and filter taps
    dtable, dWc, dbc = np.zeros_like(table), np.zeros_like(Wc), np.zeros(1, f32)
    K.char_cnn_backward(np.array([[2.0], [1.0]], f32), argmax, chars, table, Wc, dtable, dWc,
                        dbc)
    assert dbc.tolist() == [3.0]
    assert dWc.tolist() == [[2 * 1.0 + 1 * 0.0, 2 * 5.0 + 1 * -2.0, 2 * -2.0 + 1 * 0.0]]
    assert dtable.reshape(-1).tolist() == [0.0, 0.0, 2.0, 1.0]   # middles 2 (×2) and 3 (×1)


def test_char_cnn_gradient_finite_difference():
    rng = np.random.default_rng(8)
    V, e, J, Kw = 7, 3, 4, 3
    lengths = np.array([4, 1, 2], np.int32)
    chars = rng.integers(0, V, (int(lengths.sum()), Kw)).astype(np.int32)
    table, Wc, bc = rng.normal(size=(V, e)), rng.normal(size=(J, Kw * e)), rng.normal(size=J)
    probe = rng.normal(size=(len(lengths), J))

    def loss():
        return float(np.sum(R.char_cnn_forward(chars, lengths, table, Wc, bc)[0] * probe))

    _, argmax = R.char_cnn_forward(chars, lengths, table, Wc, bc)
    dtable, dWc, dbc = np.zeros_like(table), np.zeros_like(Wc), np.zeros_like(bc)
    R.char_cnn_backward(probe, argmax, chars, table, Wc, dtable, dWc, dbc)
    for name, analytic, x in (("dtable", dtable, table), ("dWc", dWc, Wc), ("dbc", dbc, bc)):
        check_numeric(analytic, central_difference(loss, x), name)


def test_char_cnn_refuses_inconsistent_lengths():
    rng = np.random.default_rng(0)
    chars = rng.integers(0, 5, (4, 3)).astype(np.int32)
    table, Wc, bc = rand(rng, 5, 2), rand(rng, 3, 6), rand(rng, 3)
    for lengths in ([2, 1], [4, 0], [5, -1]):
        with pytest.raises(ValueError, match="lengths_n must be at least 1 each and sum to P"):
            K.char_cnn_forward(chars, np.array(lengths, np.int32), table, Wc, bc)
    with pytest.raises(ValueError, match="lengths_n is empty but chars_pk has 4 positions"):
        K.char_cnn_forward(chars, np.zeros(0, np.int32), table, Wc, bc)
    with pytest.raises(ValueError, match=r"Wc_jd must have shape \(J, D\) = \(J, 6\)"):
        K.char_cnn_forward(chars, np.array([4], np.int32), table, rand(rng, 3, 5), bc)
    out, argmax = K.char_cnn_forward(np.zeros((0, 3), np.int32), np.zeros(0, np.int32), table,
                                     Wc, bc)
    assert out.shape == argmax.shape == (0, 3)


@pytest.mark.parametrize("B", [1, 3, 7, 32, 64, 65, 200])
def test_small_batch_product_is_bit_identical(B):
    # affine_act_forward takes a batch of up to 64 rows as Zᵀ = W Xᵀ (faster there):
    # every entry must be what the plain Z = X Wᵀ gives, bit for bit, through the BLAS
    # the kernels call (scipy's), or the trained model would change with the batching.
    # The plain product as the kernels call it: column-major Zᵀ = (Wᵀ)ᵀ Xᵀ, no copies.
    from scipy.linalg import blas
    rng = np.random.default_rng(B)
    X, W, b = rand(rng, B, 275), rand(rng, 300, 275) * 0.1, rand(rng, 300)
    plain = blas.sgemm(1.0, W.T, X.T, trans_a=True).T + b
    np.testing.assert_array_equal(K.affine_act_forward(X, W, b, "identity"), plain)


@pytest.mark.parametrize("B, D", [(1, 275), (16, 275), (40, 275), (40, 288), (40, 19),
                                  (64, 275), (100, 275), (300, 275), (40, 8)])
def test_backward_products_in_column_blocks_are_bit_identical(B, D):
    # Where OpenBLAS runs its SkylakeX kernel, affine_act_backward (and the fused steps)
    # take δ_X = δ_Z W and ∂J/∂W = δ_Zᵀ X in blocks of columns (derivations §B6); each
    # entry must be what the one product gives, bit for bit, through the BLAS the
    # kernels call (scipy's). Column-major, as the kernels call it: δ_Xᵀ = Wᵀ δ_Zᵀ and
    # ∂J/∂Wᵀ += Xᵀ δ_Z. D = 275 leaves 3 columns past the last 16 (the case the last
    # δ_X block's move to the left is for); D = 8 is narrower than any block.
    from scipy.linalg import blas
    rng = np.random.default_rng(B * 1000 + D)
    H = 300
    dZ, X, W, dW0 = rand(rng, B, H), rand(rng, B, D), rand(rng, H, D) * 0.1, rand(rng, H, D)
    dX_plain = blas.sgemm(1.0, W.T, dZ.T).T
    dW_plain = blas.sgemm(1.0, X.T, dZ.T, trans_b=True, c=dW0.T.copy(order="F"),
                          beta=1.0).T
    dW, db = dW0.copy(), np.zeros(H, np.float32)
    dX = K.affine_act_backward(dZ, np.zeros((B, H), np.float32), X, W, "identity", dW, db,
                               np.empty((B, D), np.float32))
    np.testing.assert_array_equal(dX, dX_plain)
    np.testing.assert_array_equal(dW, dW_plain)


def test_blocks_are_used_only_on_openblas_skylakex_kernel():
    # the blocks keep the floats only where each block adds in the one product's order
    # (derivations §B6); OpenBLAS's Haswell kernel does not, so there it must not split
    import subprocess
    import sys

    from threadpoolctl import threadpool_info
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    expected = all(lib.get("internal_api") == "openblas"
                   and lib.get("architecture") == "SkylakeX" for lib in blas)
    assert K.blas_small_products() == expected
    code = "import fastner._kernels as K; print(K.blas_small_products())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OPENBLAS_CORETYPE": "Haswell"}, check=True)
    assert out.stdout.strip() == "False"
