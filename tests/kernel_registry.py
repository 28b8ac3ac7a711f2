"""Every kernel of fastner._kernels in one table, with its NumPy twin in
fastner.reference and a generator of valid arguments. tests/test_kernel_registry.py
runs the same checks over every row: the kernel equals its twin, leaves its inputs
alone, and refuses every argument of the wrong dtype, rank, layout or range with a
Python exception that names the argument. A new kernel is covered by adding a row
(and a test fails until it is added).

A row's ``make(rng)`` returns the keyword arguments of one call; ``outputs`` names
those the kernel writes (compared with the twin's after the call, and exempt from
the "inputs unchanged" check); ``call(module, **args)`` runs the kernel or its twin
(default: the module's function of the row's name); ``ids`` names the integer
arguments that index something, and ``rtol``, ``atol`` (or ``atol_of(args)``) the
tolerance of the comparison.
"""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

f32 = np.float32


def rand(rng, *shape, dtype=f32):
    return rng.normal(size=shape).astype(dtype)


# The cached scorer's tanh is within 2⁻¹⁴·|h| + 2.4e-6 of tanh (fastner/_tanh.h, where
# AVX-512 is built in; test_the_caches_tanh_error_is_bounded), so each score is within
# that times Σ_h |U[t, h]| of a twin that applies np.tanh (derivations §I4).
SCORER_TANH_ERROR = 2.0**-14 + 2.4e-6


def scorer_atol(U_th):
    return SCORER_TANH_ERROR * float(np.abs(U_th).sum(axis=1).max()) + 1e-5


@dataclass
class Kernel:
    name: str
    make: Callable
    outputs: tuple = ()
    ids: tuple = ()
    call: Callable = None
    rtol: float = 1e-5
    atol: float = 1e-6
    atol_of: Callable = None             # atol from the call's arguments, when it depends on them
    section: str = ""                    # docs/derivations.md
    gradcheck: str = ""                  # the finite-difference test of a derivative kernel

    def run(self, module, args):
        if self.call is not None:
            return self.call(module, **args)
        return getattr(module, self.name)(**args)


def _float_to_half(rng, R=5, C=37):
    x = rand(rng, R, C) * 3e4          # some past 65504: they become ±inf
    x[0, :4] = [0.0, -0.0, 6e-8, 65519.0]
    return {"x_rc": x, "out_rc": np.zeros((R, C), np.float16)}


def _lookup(rng, B=7, Kw=3, V=11, e=4, E=6):
    return {"ids_bk": rng.integers(0, V, (B, Kw)).astype(np.int32),
            "table_ve": rand(rng, V, e), "out_bd": np.zeros((B, Kw * E), f32), "offset": 2}


def _lookup_backward(rng, B=7, Kw=3, V=11, e=4, E=6):
    ids = rng.integers(0, 4, (B, Kw)).astype(np.int32)          # repeats on purpose
    return {"ids_bk": ids, "dX_bd": rand(rng, B, Kw * E), "dtable_ve": np.zeros((V, e), f32),
            "offset": 2}


def _affine_forward(rng, B=9, D=12, H=5):
    return {"X_bd": rand(rng, B, D), "W_hd": rand(rng, H, D), "b_h": rand(rng, H),
            "activation": "tanh", "out_bh": np.zeros((B, H), f32)}


def _affine_backward(rng, B=9, D=12, H=5):
    H_bh = np.tanh(rand(rng, B, H))
    return {"dH_bh": rand(rng, B, H), "H_bh": H_bh, "X_bd": rand(rng, B, D),
            "W_hd": rand(rng, H, D), "activation": "tanh", "dW_hd": np.zeros((H, D), f32),
            "db_h": np.zeros(H, f32), "dX_bd": np.zeros((B, D), f32)}


def _softmax(rng, B=8, T=9):
    return {"S_bt": rand(rng, B, T), "out_bt": np.zeros((B, T), f32)}


def _softmax_xent(rng, B=8, T=9):
    return {"S_bt": rand(rng, B, T), "y_b": rng.integers(0, T, B).astype(np.int32),
            "dS_bt": np.zeros((B, T), f32)}


def _chain(rng, lengths=(3, 1, 5), T=9):
    B = sum(lengths)
    return {"S_bt": rand(rng, B, T), "lengths_n": np.array(lengths, np.int32),
            "trans_tt": rand(rng, T, T), "start_t": rand(rng, T), "end_t": rand(rng, T)}


def _crf_decode(rng):
    # tag 0 (O) favoured at three tokens, so NaN confidences are compared with the twin's
    args = dict(_chain(rng), entities_only=True)
    args["S_bt"][[0, 4, 8], 0] += 10.0
    return args


def _crf_forward_backward(rng, T=9):
    args = _chain(rng, T=T)
    B = args["S_bt"].shape[0]
    args = {"S_bt": args["S_bt"], "y_b": rng.integers(0, T, B).astype(np.int32),
            "lengths_n": args["lengths_n"], "trans_tt": args["trans_tt"],
            "start_t": args["start_t"], "end_t": args["end_t"]}
    args.update(dS_bt=np.zeros((B, T), f32), dtrans_tt=np.zeros((T, T), f32),
                dstart_t=np.zeros(T, f32), dend_t=np.zeros(T, f32))
    return args


def _crf_marginals(rng):
    return dict(_chain(rng), out_bt=np.zeros((9, 9), f32))


def _adam(rng, n=50):
    return {"param_n": rand(rng, n), "grad_n": rand(rng, n), "m_n": rand(rng, n) * 0.1,
            "v_n": np.abs(rand(rng, n)) * 0.01, "step": 1e-3, "beta1": 0.9, "beta2": 0.999,
            "eps": 1e-8, "grad_scale": 0.5}


def _adam_rows(rng, V=12, e=3):
    return {"table_ve": rand(rng, V, e), "grad_ve": rand(rng, V, e),
            "m_ve": rand(rng, V, e) * 0.1, "v_ve": np.abs(rand(rng, V, e)) * 0.01,
            "rows_r": np.array([0, 4, 5, 11], np.int32), "step": 1e-3, "beta1": 0.9,
            "beta2": 0.999, "eps": 1e-8, "grad_scale": 0.5}


def _model_arrays(rng, Kw=3, H=7, T=4, V=(10, 6), e=(4, 2)):
    tables = [rand(rng, v, d) for v, d in zip(V, e)]
    E = sum(e)
    return tables, [0, e[0]], E, rand(rng, H, Kw * E), rand(rng, H), rand(rng, T, H), rand(rng, T)


def _ids_bkf(rng, B, Kw, V):
    return np.stack([rng.integers(0, v, (B, Kw)) for v in V], axis=2).astype(np.int32)


def _sgd_step(rng, B=6, Kw=3):
    tables, offsets, _, W, b, U, c = _model_arrays(rng, Kw)
    return {"tables": tables, "W_hd": W, "b_h": b, "U_th": U, "c_t": c, "offsets": offsets,
            "K": Kw, "ids_bkf": _ids_bkf(rng, B, Kw, (10, 6)),
            "y_b": rng.integers(0, 4, B).astype(np.int32), "lr": 0.05}


def _run_sgd_step(module, tables, W_hd, b_h, U_th, c_t, offsets, K, ids_bkf, y_b, lr):
    step = module.SGDStep(tables, W_hd, b_h, U_th, c_t, "tanh", offsets, K)
    return step.step(ids_bkf, y_b, lr)


def _adam_crf_step(rng, lengths=(4, 1, 3, 2, 5), Kw=3, H=7, T=5, V=(10, 6), e=(4, 2)):
    # three steps: sentences 0:2 (windows 0:5), none, then sentences 2:5 (windows 5:15)
    E, B = sum(e), sum(lengths)
    layout = [("W", (H, Kw * E)), ("b", (H,)), ("U", (T, H)), ("c", (T,)), ("trans", (T, T)),
              ("start", (T,)), ("end", (T,))] + [(f"table.t{i}", (v, d))
                                                 for i, (v, d) in enumerate(zip(V, e))]
    n = sum(int(np.prod(shape)) for _, shape in layout)
    dense = sum(int(np.prod(shape)) for _, shape in layout[:7])
    return {"flat": rand(rng, n) * 0.5, "grad": np.zeros(n, f32),
            "m": rand(rng, n) * 0.01, "v": np.abs(rand(rng, n)) * 1e-4, "layout": layout,
            "dense_size": dense, "mask_tt": np.zeros((T, T), f32),
            "mask_start_t": np.zeros(T, f32), "offsets": [0, e[0]], "K": Kw, "clip": 0.5,
            "emb_lr_scale": 1.0, "ids_bkf": _ids_bkf(rng, B, Kw, V),
            "y_b": rng.integers(0, T, B).astype(np.int32),
            "lengths_n": np.array(lengths, np.int32),
            "ends_s": np.array([5, 5, B], np.int32),
            "sentence_ends_s": np.array([2, 2, len(lengths)], np.int32),
            "step_dense_s": np.array([1e-2, 2e-2, 8e-3], f32),
            "step_tables_s": np.array([5e-3, 1e-2, 4e-3], f32)}


def _run_adam_crf_step(module, flat, grad, m, v, layout, dense_size, mask_tt, mask_start_t,
                       offsets, K, clip, emb_lr_scale, ids_bkf, y_b, lengths_n, ends_s,
                       sentence_ends_s, step_dense_s, step_tables_s):
    step = module.AdamCRFStep(flat, grad, m, v, layout, dense_size, mask_tt, mask_start_t,
                              "tanh", offsets, K, clip, emb_lr_scale)
    return step.steps(ids_bkf, y_b, lengths_n, ends_s, sentence_ends_s, step_dense_s,
                      step_tables_s)


def scorer_inputs(rng, N, Kw=3, H=7, T=4):
    """CachedScorer's arguments for two tables (10 × 4 and 6 × 2), the first cached for
    its first N rows, the second whole: (caches, tables, Wᵀ, b, U, c, offsets, K, W)."""
    tables, offsets, E, W, b, U, c = _model_arrays(rng, Kw, H, T)
    caches = []
    for table, offset, n in zip(tables, offsets, (N, 6)):
        d = table.shape[1]
        caches.append(np.ascontiguousarray(np.stack(
            [table[:n] @ W[:, k * E + offset:k * E + offset + d].T for k in range(Kw)],
            axis=1).astype(np.float16)))
    return caches, tables, np.ascontiguousarray(W.T), b, U, c, offsets, Kw, W


def _cached_scorer(rng, B=40, Kw=3):
    caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 3, Kw)
    return {"caches": caches, "tables": tables, "WT_dh": WT, "b_h": b, "U_th": U, "c_t": c,
            "offsets": offsets, "K": Kw, "ids_bkf": _ids_bkf(rng, B, Kw, (10, 6))}


def _char_cnn(rng, lengths=(3, 1, 5), V=13, e=4, J=6, Kw=3):
    P = sum(lengths)
    return {"chars_pk": rng.integers(0, V, (P, Kw)).astype(np.int32),
            "lengths_n": np.array(lengths, np.int32), "table_ve": rand(rng, V, e),
            "Wc_jd": rand(rng, J, Kw * e), "bc_j": rand(rng, J),
            "out_nj": np.zeros((len(lengths), J), f32),
            "argmax_nj": np.zeros((len(lengths), J), np.int32)}


def _char_cnn_backward(rng, lengths=(3, 1, 5), V=13, e=4, J=6, Kw=3):
    P = sum(lengths)
    chars = rng.integers(0, 4, (P, Kw)).astype(np.int32)      # repeated characters
    starts = np.cumsum((0,) + lengths[:-1])
    argmax = np.array([[a + rng.integers(0, m) for _ in range(J)]
                       for a, m in zip(starts, lengths)], np.int32)
    return {"dV_nj": rand(rng, len(lengths), J), "argmax_nj": argmax, "chars_pk": chars,
            "table_ve": rand(rng, V, e), "Wc_jd": rand(rng, J, Kw * e),
            "dtable_ve": np.zeros((V, e), f32), "dWc_jd": np.zeros((J, Kw * e), f32),
            "dbc_j": np.zeros(J, f32)}


def _entity_runs(rng, B=40, n_types=4):
    return {"tags_b": rng.integers(0, 1 + 2 * n_types, B).astype(np.int32),
            "conf_b": rng.random(B).astype(f32), "n_types": n_types}


def _window_ids(rng, lengths=(3, 0, 1, 5), F=3):
    return {"ids_bf": rng.integers(0, 50, (sum(lengths), F)).astype(np.int32),
            "lengths_n": np.array(lengths, np.int32), "K": 5}


def _run_cached_scorer(module, caches, tables, WT_dh, b_h, U_th, c_t, offsets, K, ids_bkf):
    return module.CachedScorer(caches, tables, WT_dh, b_h, U_th, c_t, "tanh", offsets,
                               K).scores(ids_bkf)


KERNELS = [
    Kernel("lookup_forward", _lookup, outputs=("out_bd",), ids=("ids_bk",), section="F1"),
    Kernel("lookup_backward", _lookup_backward, outputs=("dtable_ve",), ids=("ids_bk",),
           section="B5", gradcheck="test_lookup_gradient_finite_difference"),
    Kernel("affine_act_forward", _affine_forward, outputs=("out_bh",), rtol=1e-4, section="F2"),
    Kernel("affine_act_backward", _affine_backward, outputs=("dW_hd", "db_h", "dX_bd"),
           rtol=1e-4, section="B3, B4", gradcheck="test_affine_act_gradient_finite_difference"),
    Kernel("softmax_forward", _softmax, outputs=("out_bt",), section="F4"),
    Kernel("softmax_xent_forward_backward", _softmax_xent, outputs=("dS_bt",), ids=("y_b",),
           section="F4, B1", gradcheck="test_softmax_xent_gradient_finite_difference"),
    Kernel("viterbi_decode", _chain, section="C5"),
    Kernel("entity_runs", _entity_runs, ids=("tags_b",), rtol=0, section="C6"),
    Kernel("crf_forward_backward", _crf_forward_backward,
           outputs=("dS_bt", "dtrans_tt", "dstart_t", "dend_t"), ids=("y_b",), rtol=1e-4,
           section="C1-C4", gradcheck="test_crf_gradient_finite_difference"),
    Kernel("crf_marginals", _crf_marginals, outputs=("out_bt",), rtol=1e-4, section="C3"),
    Kernel("crf_decode", _crf_decode, rtol=1e-4, section="C3, C5"),
    Kernel("adam_update", _adam, outputs=("param_n", "grad_n", "m_n", "v_n"), rtol=0,
           section="U2"),
    Kernel("adam_update_rows", _adam_rows, outputs=("table_ve", "grad_ve", "m_ve", "v_ve"),
           ids=("rows_r",), rtol=0, section="U2"),
    Kernel("SGDStep", _sgd_step, outputs=("tables", "W_hd", "b_h", "U_th", "c_t"),
           ids=("ids_bkf", "y_b"), call=_run_sgd_step, rtol=1e-4, section="U1", gradcheck="test_every_parameter_gradient_matches_finite_differences"),
    Kernel("AdamCRFStep", _adam_crf_step, outputs=("flat", "grad", "m", "v"),
           ids=("ids_bkf", "y_b"), call=_run_adam_crf_step, rtol=1e-4, section="U5",
           gradcheck="test_every_parameter_gradient_matches_finite_differences"),
    Kernel("window_ids", _window_ids, rtol=0, section="F1"),
    Kernel("float_to_half", _float_to_half, outputs=("out_rc",), rtol=0, atol=0,
           section="I3"),
    Kernel("CachedScorer", _cached_scorer, ids=("ids_bkf",), call=_run_cached_scorer,
           rtol=1e-4, atol_of=lambda args: scorer_atol(args["U_th"]), section="I1-I5"),
    Kernel("char_cnn_forward", _char_cnn, outputs=("out_nj", "argmax_nj"), ids=("chars_pk",),
           rtol=1e-4, section="W1, W2"),
    Kernel("char_cnn_backward", _char_cnn_backward, outputs=("dtable_ve", "dWc_jd", "dbc_j"),
           ids=("argmax_nj", "chars_pk"), rtol=1e-4, section="W3, W4",
           gradcheck="test_char_cnn_gradient_finite_difference"),
]

# the kernel module's public names that are not kernels: constants, and windows onto
# inline helpers for their own tests (tanh, tanh_for_the_cache: test_tanh_accuracy,
# test_the_caches_tanh_error_is_bounded; the half conversions:
# test_half_to_float_is_exact_for_every_half), and the BLAS probe
# (blas_small_products: test_blocks_are_used_only_on_openblas_skylakex_kernel), and the
# build's compiler flags for benchmark reports (build_flags: test_build_flags_are_recorded),
# and which output layer and tanh the scorer runs (scorer_output_layer, scorer_tanh:
# test_fast_paths_are_named_by_the_build)
NOT_KERNELS = {"ACTIVATIONS", "np", "half_path", "half_to_float", "tanh", "tanh_for_the_cache",
               "exp_nonpositive", "blas_small_products", "build_flags", "scorer_output_layer",
               "scorer_tanh"}
