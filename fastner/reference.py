"""NumPy reference of every kernel in ``fastner._kernels``: same names, same
signatures, same math (docs/derivations.md), written for reading rather than speed.

The reference works in whatever float dtype it is given, so the gradient
checks can run it in float64 against central finite differences; the Cython
kernels are then checked against it in float32. Like the kernels, backward
functions add into parameter gradients and write activation gradients.
"""
import numpy as np

ACTIVATIONS = {"identity": 0, "tanh": 1, "hardtanh": 2, "relu": 3}


def _window_columns(K, E, offset, e):
    """Column indices of one feature's slice in every window position, (K, e)."""
    return (np.arange(K)[:, None] * E) + offset + np.arange(e)[None, :]


def lookup_forward(ids_bk, table_ve, out_bd=None, offset=0):
    # x = L·onehot(id) is "take row id of L"; a window concatenates K such rows.
    B, K = ids_bk.shape
    V, e = table_ve.shape
    if out_bd is None:
        out_bd = np.zeros((B, K * e), dtype=table_ve.dtype)
    E = out_bd.shape[1] // K
    if ids_bk.size and (ids_bk.min() < 0 or ids_bk.max() >= V):
        raise IndexError("lookup_forward: ids out of range")
    cols = _window_columns(K, E, offset, e)
    out_bd[:, cols] = table_ve[ids_bk]
    return out_bd


def lookup_backward(ids_bk, dX_bd, dtable_ve, offset=0):
    # ∂J/∂L[v] = Σ over the (b, k) with ids[b, k] = v of that slice of δ_X;
    # np.add.at accumulates repeated ids (plain fancy-index += would keep one).
    B, K = ids_bk.shape
    V, e = dtable_ve.shape
    E = dX_bd.shape[1] // K
    cols = _window_columns(K, E, offset, e)
    np.add.at(dtable_ve, ids_bk.reshape(-1), dX_bd[:, cols].reshape(B * K, e))
    return dtable_ve


def activate(Z, activation):
    if activation == "identity":
        return Z.copy()
    if activation == "tanh":
        return np.tanh(Z)
    if activation == "hardtanh":
        return np.clip(Z, -1.0, 1.0)
    if activation == "relu":
        return np.maximum(Z, 0.0)
    raise ValueError(f"unknown activation {activation!r}")


def activation_derivative(H, activation):
    """f′(Z) from the stored output H = f(Z) (the diagonal of the Jacobian)."""
    if activation == "identity":
        return np.ones_like(H)
    if activation == "tanh":
        return 1.0 - H * H
    if activation == "hardtanh":
        return ((H > -1.0) & (H < 1.0)).astype(H.dtype)
    if activation == "relu":
        return (H > 0.0).astype(H.dtype)
    raise ValueError(f"unknown activation {activation!r}")


def affine_act_forward(X_bd, W_hd, b_h, activation="tanh", out_bh=None):
    # Z = X Wᵀ + 1 bᵀ ; H = f(Z)
    H = activate(X_bd @ W_hd.T + b_h, activation)
    if out_bh is None:
        return H
    out_bh[...] = H
    return out_bh


def affine_act_backward(dH_bh, H_bh, X_bd, W_hd, activation, dW_hd, db_h, dX_bd=None):
    # δ_Z = δ_H ⊙ f′(Z)          (diagonal Jacobian of an elementwise f)
    # ∂J/∂W = δ_Zᵀ X  (H × D)    (outer products of error signal and input, summed over b)
    # ∂J/∂b = Σ_b δ_Z[b] ;  δ_X = δ_Z W  (B × D)
    dZ = dH_bh * activation_derivative(H_bh, activation)
    dW_hd += dZ.T @ X_bd
    db_h += dZ.sum(axis=0)
    if dX_bd is not None:
        dX_bd[...] = dZ @ W_hd
    return dX_bd


def softmax_forward(S_bt, out_bt=None):
    shifted = S_bt - S_bt.max(axis=1, keepdims=True)
    P = np.exp(shifted)
    P /= P.sum(axis=1, keepdims=True)
    if out_bt is None:
        return P
    out_bt[...] = P
    return out_bt


def softmax_xent_forward_backward(S_bt, y_b, dS_bt=None):
    # J = −(1/B) Σ_b log softmax(S)[b, y_b] ;  δ_S = (P − Y)/B  ("predicted minus gold")
    B, T = S_bt.shape
    if B == 0:
        return 0.0, (np.empty_like(S_bt) if dS_bt is None else dS_bt)
    m = S_bt.max(axis=1, keepdims=True)
    log_z = m[:, 0] + np.log(np.exp(S_bt - m).sum(axis=1))
    loss = float(np.mean(log_z - S_bt[np.arange(B), y_b]))
    grad = softmax_forward(S_bt)
    grad[np.arange(B), y_b] -= 1.0
    grad /= B
    if dS_bt is None:
        return loss, grad
    dS_bt[...] = grad
    return loss, dS_bt


def _sentences(lengths_n):
    start = 0
    for n in lengths_n:
        yield start, start + int(n)
        start += int(n)


def viterbi_decode(S_bt, lengths_n, trans_tt, start_t, end_t):
    # score[t, j] = S[t, j] + max_i(score[t−1, i] + A[i, j]); follow the argmax back.
    tags = np.zeros(S_bt.shape[0], dtype=np.int32)
    A = trans_tt.astype(np.float64)
    for lo, hi in _sentences(lengths_n):
        if hi == lo:
            continue
        s = S_bt[lo:hi].astype(np.float64)
        score = start_t.astype(np.float64) + s[0]
        back = []
        for t in range(1, hi - lo):
            cand = score[:, None] + A
            back.append(cand.argmax(axis=0))
            score = cand.max(axis=0) + s[t]
        best = int(np.argmax(score + end_t))
        path = [best]
        for pointers in reversed(back):
            best = int(pointers[best])
            path.append(best)
        tags[lo:hi] = path[::-1]
    return tags


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(divide="ignore"):
        return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(x - m), axis=axis))


def crf_alpha_beta(s, trans_tt, start_t, end_t):
    """Log-space forward and backward tables of one sentence, and log Z."""
    n, T = s.shape
    alpha = np.empty((n, T), dtype=np.float64)
    beta = np.empty((n, T), dtype=np.float64)
    alpha[0] = start_t + s[0]
    for t in range(1, n):
        alpha[t] = s[t] + _logsumexp(alpha[t - 1][:, None] + trans_tt, axis=0)
    beta[n - 1] = end_t
    for t in range(n - 2, -1, -1):
        beta[t] = _logsumexp(trans_tt + (s[t + 1] + beta[t + 1])[None, :], axis=1)
    return alpha, beta, float(_logsumexp(alpha[n - 1] + end_t, axis=0))


def crf_forward_backward(S_bt, y_b, lengths_n, trans_tt, start_t, end_t,
                         dS_bt, dtrans_tt, dstart_t, dend_t):
    # Per sentence: nll = log Σ_paths exp(score) − score(gold).
    # ∂nll/∂S = marginals − onehot(gold); ∂nll/∂A = expected − gold transition counts.
    B, T = S_bt.shape
    if B == 0:
        return 0.0
    A = trans_tt.astype(np.float64)
    total = 0.0
    for lo, hi in _sentences(lengths_n):
        if hi == lo:
            continue
        s = S_bt[lo:hi].astype(np.float64)
        y = y_b[lo:hi]
        alpha, beta, log_z = crf_alpha_beta(s, A, start_t, end_t)
        gold = start_t[y[0]] + end_t[y[-1]] + s[np.arange(hi - lo), y].sum() + A[y[:-1], y[1:]].sum()
        total += log_z - gold
        marginals = np.exp(alpha + beta - log_z)
        grad = marginals.copy()
        grad[np.arange(hi - lo), y] -= 1.0
        dS_bt[lo:hi] = grad / B
        dstart_t += (marginals[0] - np.eye(T)[y[0]]) / B
        dend_t += (marginals[-1] - np.eye(T)[y[-1]]) / B
        for t in range(1, hi - lo):
            pair = np.exp(alpha[t - 1][:, None] + A + (s[t] + beta[t])[None, :] - log_z)
            pair[y[t - 1], y[t]] -= 1.0
            dtrans_tt += pair / B
    return total / B


def crf_marginals(S_bt, lengths_n, trans_tt, start_t, end_t, out_bt=None):
    if out_bt is None:
        out_bt = np.empty_like(S_bt)
    for lo, hi in _sentences(lengths_n):
        if hi == lo:
            continue
        alpha, beta, log_z = crf_alpha_beta(S_bt[lo:hi].astype(np.float64),
                                            trans_tt.astype(np.float64), start_t, end_t)
        out_bt[lo:hi] = np.exp(alpha + beta - log_z)
    return out_bt


def crf_decode(S_bt, lengths_n, trans_tt, start_t, end_t, entities_only=False):
    """NumPy twin of fastner._kernels.crf_decode: the Viterbi tags and each tag's CRF
    marginal (NaN at tags 0 with ``entities_only``)."""
    tags = viterbi_decode(S_bt, lengths_n, trans_tt, start_t, end_t)
    marginals = crf_marginals(S_bt, lengths_n, trans_tt, start_t, end_t)
    conf = marginals[np.arange(len(tags)), tags]
    if entities_only:
        conf[tags == 0] = np.nan
    return tags, conf


class CachedScorer:
    """NumPy twin of fastner._kernels.CachedScorer: the first layer's X Wᵀ as the
    sum over window positions k of P_f[v, k] = W_k · table_f[v], taken from the
    (half-precision) cache for rows it holds and multiplied out for the rest."""

    def __init__(self, caches, tables, WT_dh, b_h, U_th, c_t, activation, offsets, K):
        self.caches, self.tables = list(caches), list(tables)
        self.WT, self.b, self.U, self.c = WT_dh, b_h, U_th, c_t
        self.activation, self.offsets, self.K = activation, list(offsets), K

    def scores(self, ids_bkf, call_tables=None):
        B, K, _ = ids_bkf.shape
        E = self.WT.shape[0] // K
        Z = np.tile(self.b, (B, 1)).astype(np.float32)
        tables = list(self.tables)
        for f, rows in (call_tables or {}).items():     # the rows past f's cache
            tables[f] = np.concatenate([np.zeros((len(self.caches[f]), rows.shape[1]),
                                                 np.float32), rows])
        for f, (cache, table, offset) in enumerate(zip(self.caches, tables, self.offsets)):
            e = table.shape[1]
            for k in range(K):
                v = ids_bkf[:, k, f]
                hit = v < cache.shape[0]
                Z[hit] += cache[v[hit], k].astype(np.float32)
                W_k_T = self.WT[k * E + offset:k * E + offset + e]       # (e, H)
                Z[~hit] += table[v[~hit]] @ W_k_T
        hidden = activate(Z, self.activation)
        return (hidden @ self.U.T + self.c).astype(np.float32)


class SGDStep:
    """NumPy twin of fastner._kernels.SGDStep: one plain-SGD step of the softmax
    window model, written as a competent NumPy program (BLAS matmuls, no loop over
    examples, row-sparse embedding updates)."""

    def __init__(self, tables, W_hd, b_h, U_th, c_t, activation, offsets, K):
        self.tables, self.W, self.b, self.U, self.c = list(tables), W_hd, b_h, U_th, c_t
        self.activation, self.offsets, self.K = activation, list(offsets), K
        self.E = W_hd.shape[1] // K

    def step(self, ids_bkf, y_b, lr):
        B = ids_bkf.shape[0]
        if B == 0:
            return 0.0
        X = np.empty((B, self.K * self.E), dtype=self.W.dtype)
        for f, (table, offset) in enumerate(zip(self.tables, self.offsets)):
            lookup_forward(np.ascontiguousarray(ids_bkf[:, :, f]), table, X, offset)
        hidden = activate(X @ self.W.T + self.b, self.activation)
        S = hidden @ self.U.T + self.c
        loss, dS = softmax_xent_forward_backward(S, y_b)
        dH = dS @ self.U                        # δ_H before U moves
        self.U -= lr * (dS.T @ hidden)
        self.c -= lr * dS.sum(axis=0)
        dZ = dH * activation_derivative(hidden, self.activation)
        dX = dZ @ self.W                        # δ_X before W moves
        self.W -= lr * (dZ.T @ X)
        self.b -= lr * dZ.sum(axis=0)
        for f, (table, offset) in enumerate(zip(self.tables, self.offsets)):
            e = table.shape[1]
            cols = _window_columns(self.K, self.E, offset, e)
            np.subtract.at(table, ids_bkf[:, :, f].reshape(-1), lr * dX[:, cols].reshape(-1, e))
        return loss


class AdamCRFStep:
    """NumPy twin of fastner._kernels.AdamCRFStep: the unfused trainer's step written
    out with this module's kernels (forward, CRF, backward, clip, Adam)."""

    def __init__(self, flat, grad, m, v, layout, dense_size, mask_tt, mask_start_t,
                 activation, offsets, K, clip, emb_lr_scale, beta1=0.9, beta2=0.999,
                 eps=1e-8):
        self.buffers = []
        for buf in (flat, grad, m, v):
            views, at = {}, 0
            for name, shape in layout:
                size = int(np.prod(shape))
                views[name] = buf[at:at + size].reshape(shape)
                at += size
            self.buffers.append(views)
        self.flat, self.grad, self.m, self.v = flat, grad, m, v
        self.names = [name for name, _ in layout if name.startswith("table.")]
        self.dense_size, self.mask, self.mask_start = dense_size, mask_tt, mask_start_t
        self.activation, self.offsets, self.K = activation, list(offsets), K
        self.clip, self.emb_lr_scale = clip, emb_lr_scale
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def step(self, ids_bkf, y_b, lengths_n, step_dense, step_tables):
        p, g, m, v = self.buffers
        B = ids_bkf.shape[0]
        if B == 0:
            return 0.0
        X = np.empty((B, p["W"].shape[1]), dtype=np.float32)
        ids = [np.ascontiguousarray(ids_bkf[:, :, f]) for f in range(len(self.names))]
        for f_ids, name, offset in zip(ids, self.names, self.offsets):
            lookup_forward(f_ids, p[name], X, offset)
        hidden = affine_act_forward(X, p["W"], p["b"], self.activation)
        S = affine_act_forward(hidden, p["U"], p["c"], "identity")
        dS = np.empty_like(S)
        trans = (p["trans"] + self.mask).astype(np.float32)
        start = (p["start"] + self.mask_start).astype(np.float32)
        loss = crf_forward_backward(S, y_b, lengths_n, trans, start, p["end"], dS,
                                    g["trans"], g["start"], g["end"])
        d_hidden = np.empty_like(hidden)
        affine_act_backward(dS, S, hidden, p["U"], "identity", g["U"], g["c"], d_hidden)
        dX = np.empty_like(X)
        affine_act_backward(d_hidden, hidden, X, p["W"], self.activation, g["W"], g["b"], dX)
        for f_ids, name, offset in zip(ids, self.names, self.offsets):
            lookup_backward(f_ids, dX, g[name], offset)
        touched = [np.unique(f_ids).astype(np.int32) for f_ids in ids]
        dense = slice(0, self.dense_size)
        sq = float(np.sum(self.grad[dense].astype(np.float64) ** 2))
        sq += sum(float(np.sum(g[name][rows].astype(np.float64) ** 2))
                  for name, rows in zip(self.names, touched))
        norm = np.sqrt(sq)
        scale = self.clip / norm if self.clip > 0 and norm > self.clip else 1.0
        adam_update(self.flat[dense], self.grad[dense], self.m[dense], self.v[dense],
                    step_dense, self.beta1, self.beta2, self.eps, scale)
        for name, rows in zip(self.names, touched):
            if self.emb_lr_scale > 0:
                adam_update_rows(p[name], g[name], m[name], v[name], rows, step_tables,
                                 self.beta1, self.beta2, self.eps, scale)
            else:
                g[name][rows] = 0.0
        return loss

    def steps(self, ids_bkf, y_b, lengths_n, ends_s, sentence_ends_s, step_dense_s,
              step_tables_s):
        losses, at, sentence_at = np.zeros(len(ends_s)), 0, 0
        for s, (end, sentence_end) in enumerate(zip(ends_s.tolist(), sentence_ends_s.tolist())):
            losses[s] = self.step(ids_bkf[at:end], y_b[at:end],
                                  lengths_n[sentence_at:sentence_end], step_dense_s[s],
                                  step_tables_s[s])
            at, sentence_at = end, sentence_end
        return losses


def adam_update(param_n, grad_n, m_n, v_n, step, beta1=0.9, beta2=0.999, eps=1e-8,
                grad_scale=1.0):
    """One Adam step in place (derivations §U2), in the order the kernel rounds: scale
    g, decay and add into m, then v, then move the parameter; the caller folds the bias
    corrections into step = lr·√(1−β2ᵗ)/(1−β1ᵗ). The gradient is scaled (clipping),
    used, zeroed. All in float32: the scalars are rounded to float32 first, as the
    kernel rounds them."""
    step, eps = np.float32(step), np.float32(eps)
    if grad_scale != 1.0:
        grad_n *= np.float32(grad_scale)
    m_n *= np.float32(beta1)
    m_n += np.float32(1 - beta1) * grad_n
    v_n *= np.float32(beta2)
    v_n += np.float32(1 - beta2) * grad_n * grad_n
    param_n -= step * m_n / (np.sqrt(v_n) + eps)
    grad_n[...] = 0.0


def adam_update_rows(table_ve, grad_ve, m_ve, v_ve, rows_r, step, beta1=0.9, beta2=0.999,
                     eps=1e-8, grad_scale=1.0):
    """adam_update at the given (unique) rows only; other rows and their state stay."""
    p, g, m, v = table_ve[rows_r], grad_ve[rows_r], m_ve[rows_r], v_ve[rows_r]
    adam_update(p, g, m, v, step, beta1, beta2, eps, grad_scale)
    table_ve[rows_r], grad_ve[rows_r], m_ve[rows_r], v_ve[rows_r] = p, g, m, v


def char_cnn_forward(chars_pk, lengths_n, table_ve, Wc_jd, bc_j, out_nj=None, argmax_nj=None):
    # X[p] concatenates the K character rows under the filter at position p; Z = X Wcᵀ;
    # each word's vector is the per-filter max of its rows of Z, plus the bias (§W1, §W2).
    P, K = chars_pk.shape
    N, J = len(lengths_n), Wc_jd.shape[0]
    out = np.empty((N, J), table_ve.dtype) if out_nj is None else out_nj
    argmax = np.empty((N, J), np.int32) if argmax_nj is None else argmax_nj
    if N == 0:
        return out, argmax
    X = table_ve[chars_pk].reshape(P, -1)
    Z = X @ Wc_jd.T
    starts = np.concatenate([[0], np.cumsum(lengths_n)[:-1]]).astype(np.int64)
    best = np.maximum.reduceat(Z, starts, axis=0)                     # (N, J)
    # the first position of each word that attains its maximum
    word_of = np.repeat(np.arange(N), lengths_n)
    hits = np.where(Z == best[word_of], np.arange(P)[:, None], P)
    argmax[...] = np.minimum.reduceat(hits, starts, axis=0)
    out[...] = best + bc_j
    return out, argmax


def char_cnn_backward(dV_nj, argmax_nj, chars_pk, table_ve, Wc_jd, dtable_ve, dWc_jd, dbc_j):
    # Max-pooling passes δ only to the arg-max position p of each (word, filter); from
    # there, δZ[p, j] = g gives δWc[j] += g·X[p], δbc[j] += g and δX[p] = g·Wc[j],
    # whose K blocks scatter-add into the character rows (§W3, §W4).
    N, J = dV_nj.shape
    if N == 0 or J == 0:
        return
    P, K = chars_pk.shape
    e = table_ve.shape[1]
    p = argmax_nj.reshape(-1)                                  # (N·J,) positions
    j = np.tile(np.arange(J), N)
    g = dV_nj.reshape(-1)
    X = table_ve[chars_pk[p]].reshape(len(p), K * e)           # X[p] for every (n, j)
    np.add.at(dWc_jd, j, g[:, None] * X)
    np.add.at(dbc_j, j, g)
    dX = (g[:, None] * Wc_jd[j]).reshape(len(p), K, e)
    np.add.at(dtable_ve, chars_pk[p].reshape(-1), dX.reshape(-1, e))


def entity_runs(tags_b, conf_b, n_types):
    # An entity starting at s (a B- tag: odd ids) ends at the first position after s
    # that is not an I- tag (even ids > 0): the sorted non-I positions (and B, for an
    # entity that runs to the end) are the candidates, and searchsorted finds, for
    # every start at once, the first one past it; the B at s is itself a non-I
    # position, which side="right" skips. The minimum over each [start, end) comes
    # from reduceat over the interleaved bounds (start0, end0, start1, end1, ...): its
    # even slots reduce the entities, its odd slots the gaps (discarded); an end may
    # equal B, which reduceat cannot take as an index, hence one +inf of padding.
    B = len(tags_b)
    starts = np.flatnonzero(tags_b % 2 == 1)
    is_inside = (tags_b > 0) & (tags_b % 2 == 0)
    stops = np.append(np.flatnonzero(~is_inside), B)
    ends = stops[np.searchsorted(stops, starts, side="right")]
    bounds = np.empty(2 * len(starts), dtype=np.int64)
    bounds[0::2], bounds[1::2] = starts, ends
    padded = np.append(conf_b, np.float32(np.inf)).astype(np.float32)
    lowest = (np.minimum.reduceat(padded, bounds)[0::2] if len(starts)
              else padded[:0]).astype(np.float32)
    return starts, ends, ((tags_b[starts] - 1) // 2).astype(np.int64), lowest


def float_to_half(x_rc, out_rc):
    # NumPy's cast rounds to nearest, ties to even, overflowing to ±inf (without the
    # warning: the kernel reports the count instead)
    with np.errstate(over="ignore"):
        out_rc[...] = x_rc.astype(np.float16)
    return int(np.count_nonzero(~np.isfinite(out_rc)))


def window_ids(ids_bf, lengths_n, K):
    # The tokens of each sentence laid out with (K−1)/2 PADs either side, then every
    # token's K neighbours gathered at once (WindowTagger.windows, all features).
    B, F = ids_bf.shape
    hw = (K - 1) // 2
    lengths = np.asarray(lengths_n, dtype=np.int64)
    sentence_of = np.repeat(np.arange(len(lengths)), lengths)
    centre = np.arange(B) + 2 * hw * sentence_of + hw
    stream = np.zeros((B + 2 * hw * len(lengths), F), dtype=np.int32)
    stream[centre] = ids_bf
    return stream[centre[:, None] + np.arange(-hw, hw + 1)[None, :]]
