"""Inputs that reach every hand-written SIMD path's vector tails and edge values, and
the outputs the kernels give on them: tests/test_portable_build.py computes them in
the native build (a subprocess run from the checkout) and in the portable build (the
process it runs in) and compares the two, path by path.

A native build takes fastner/_tanh.h (AVX-512), _output.h (AVX2 + FMA) and _crf.h
(AVX) where its CPU has them; a portable build their plain-C twins; _half.h chooses
at run time in both. Each case names the pair it reaches and its tolerance: bit for
bit where the two paths do the same arithmetic in the same order, otherwise the
bound the fast path's own tests prove against the exact function.
"""
from dataclasses import dataclass

import numpy as np
from kernel_registry import KERNELS, SCORER_TANH_ERROR, scorer_inputs

f32 = np.float32
# fast_tanh (the portable path) is within 1e-6 of tanh (test_tanh_accuracy), the
# cache's AVX-512 tanh within 2⁻¹⁴·|t| + 2.4e-6 (test_the_caches_tanh_error_is_bounded)
TANH_PAIR_ATOL = 2.4e-6 + 1e-6


@dataclass
class Case:
    name: str           # pair, then what it reaches
    run: object         # run(kernels module) → dict of name → array
    rtol: float = 0.0
    atol: float = 0.0


def _tanh_values():
    rng = np.random.default_rng(0)
    tiny = np.finfo(f32).tiny
    edges = [0.0, -0.0, np.inf, -np.inf, np.nan, tiny / 4, -tiny / 4, tiny, 1e-30, 7.9,
             7.905, 7.91, 9.0, 20.0, -20.0, 3.4e38, -3.4e38, 0.5, -0.5]
    return np.concatenate([edges, rng.normal(0, 3, 2000), np.linspace(-10, 10, 1001)]
                          ).astype(f32)


def _tanh_case(n):
    def run(K):
        return {"t": K.tanh_for_the_cache(_tanh_values()[:n])}
    return Case(f"tanh (cache) n={n}", run, rtol=2.0**-14, atol=TANH_PAIR_ATOL)


def _scorer_case(T, H, N=300):
    def run(K):
        rng = np.random.default_rng(T + 100 * H)
        caches, tables, WT, b, U, c, offsets, Kw, _ = scorer_inputs(rng, 4, H=H, T=T)
        ids = np.stack([rng.integers(0, 10, (N, Kw)), rng.integers(0, 6, (N, Kw))],
                       axis=2).astype(np.int32)
        scorer = K.CachedScorer(caches, tables, WT, b, U, c, "tanh", offsets, Kw)
        return {"S": scorer.scores(ids), "U": U}
    # each score sums H products of tanh values whose paths differ by the tanh bound
    return Case(f"scorer (output layer, tanh) T={T} H={H} windows={N}", run, rtol=1e-4,
                atol=None)


def _chain_args(rng, lengths, T):
    B = sum(lengths)
    S = (rng.normal(size=(B, T)) * 3).astype(f32)
    return (S, np.array(lengths, np.int32), rng.normal(size=(T, T)).astype(f32),
            rng.normal(size=T).astype(f32), rng.normal(size=T).astype(f32))


def _crf_case(T, lengths):
    def run(K):
        rng = np.random.default_rng(T * 31 + len(lengths))
        S, n, A, s0, e0 = _chain_args(rng, lengths, T)
        A[0, 1:] = -np.inf                 # forbidden transitions, as IOB2 masks them
        tags, conf = K.crf_decode(S, n, A, s0, e0)
        y = np.ascontiguousarray(tags, dtype=np.int32)  # an allowed path: a finite loss
        dS, dA = np.zeros_like(S), np.zeros_like(A)
        ds0, de0 = np.zeros_like(s0), np.zeros_like(e0)
        loss = K.crf_forward_backward(S, y, n, A, s0, e0, dS, dA, ds0, de0)
        return {"viterbi": K.viterbi_decode(S, n, A, s0, e0), "tags": tags, "conf": conf,
                "marginals": K.crf_marginals(S, n, A, s0, e0), "loss": np.float64(loss),
                "dS": dS, "dA": np.nan_to_num(dA), "ds0": ds0, "de0": de0}
    return Case(f"crf T={T} lengths={lengths}", run, rtol=1e-5, atol=1e-6)


def _half_case(n):
    def run(K):
        rng = np.random.default_rng(n)
        x = (rng.normal(size=(3, n)) * 2e4).astype(f32)
        x[0, :min(n, 6)] = [0.0, -0.0, 6e-8, 65504.0, 65520.0, np.nan][:min(n, 6)]
        out = np.zeros((3, n), np.float16)
        K.float_to_half(x, out)
        return {"halves": out.view(np.uint16), "floats": K.half_to_float(out.view(np.uint16))}
    return Case(f"half conversions n={n}", run)


def _registry_case(kernel, seed):
    def run(K):
        args = kernel.make(np.random.default_rng(seed))
        result = kernel.run(K, args)
        outputs = {name: args[name] for name in kernel.outputs}
        results = result if isinstance(result, tuple) else (result,)
        for i, r in enumerate(results):
            if r is not None:
                outputs[f"result{i}"] = r
        flat = {}
        for key, value in outputs.items():
            if isinstance(value, (list, tuple)):       # a list of tables: one entry each
                flat.update({f"{key}[{i}]": np.asarray(v) for i, v in enumerate(value)})
            else:
                flat[key] = np.asarray(value)
        return flat
    atol = SCORER_TANH_ERROR * 40 if kernel.name == "CachedScorer" else kernel.atol * 4
    return Case(f"registry {kernel.name} seed={seed}", run, rtol=max(kernel.rtol, 1e-5) * 4,
                atol=atol)


def cases():
    out = [_tanh_case(n) for n in (1, 2, 7, 8, 15, 16, 17, 31, 32, 33, 300, 4019)]
    out += [_scorer_case(T, H) for T in (1, 4, 7, 8, 9, 16, 17) for H in (1, 7, 8, 15, 16,
                                                                          17, 33, 300)]
    out += [_scorer_case(9, 300, N) for N in (1, 7, 8, 9, 255, 256, 257, 513)]
    out += [_crf_case(T, lengths) for T in (1, 2, 3, 4, 5, 8, 9, 13, 17)
            for lengths in ((1,), (2, 1, 7), (40,))]
    out += [_half_case(n) for n in (1, 7, 8, 9, 16, 17, 33)]
    out += [_registry_case(k, seed) for k in KERNELS for seed in (0, 1, 2)]
    return out


def outputs():
    """{case name: {output name: array}} for every case, in this process's kernels."""
    from fastner import _kernels
    return {case.name: case.run(_kernels) for case in cases()}


def save(path):
    flat = {f"{case} :: {name}": array for case, arrays in outputs().items()
            for name, array in arrays.items()}
    np.savez(path, **flat)


def load(path):
    out = {}
    with np.load(path, allow_pickle=False) as archive:
        for key in archive.files:
            case, name = key.split(" :: ")
            out.setdefault(case, {})[name] = archive[key]
    return out
