"""The inference cache: the first layer's products precomputed per table row, and
the fused kernel that scores windows from them (derivations §I1–§I3).

An InferenceScorer is built from a trained model and owned by whoever tags with
it (fastner.tagger.Tagger); the model itself never scores through it, so a model
whose parameters change afterwards cannot silently use stale products. Build a
new scorer after changing the parameters.
"""
import numpy as np

from fastner import _kernels


class InferenceScorer:
    """Scores S (B, T) of windows from precomputed W_k · table[v] products.

    The first layer is linear in the window, so a token costs K cached vector
    additions instead of a (D × H) product (Chen & Manning 2014). The products are
    stored in half precision (relative error ≤ 2⁻¹¹; on CoNLL-2003 valid the shipped
    model's tags do not change), which doubles the rows a budget holds and halves
    the bytes read per token. Small feature tables are cached whole first; the word
    table gets the rest of ``budget_mb``, from its first (most frequent,
    GloVe-ordered) rows. Rows past the cache are multiplied on the fly.

    Character features (a model with ``chars``) are the scorer's last feature: their
    vectors are computed per call from the call's spellings (char_cnn_forward) and
    their products multiplied on the fly like rows past the cache.
    """

    def __init__(self, model, budget_mb=64.0):
        self.K, self.hidden = model.K, model.hidden
        row_bytes = model.K * model.hidden * np.dtype(np.float16).itemsize
        budget_rows = int(budget_mb * 2**20) // row_bytes
        features = model.features
        rows = [0] * len(features)
        for i in sorted(range(len(features)), key=lambda i: (i == 0, features[i].size)):
            rows[i] = min(features[i].size, budget_rows)
            budget_rows -= rows[i]
        p = model.params
        self.caches = [self._products(model, table, offset, n)
                       for n, table, offset in zip(rows, model.tables(), model.offsets)]
        tables, offsets = model.tables(), list(model.offsets)
        self.chars = None
        if model.chars is not None:
            # the character CNN's parameters, and an empty stand-in for the per-call table
            self.chars = (p["char.table"].copy(), p["char.W"].copy(), p["char.b"].copy())
            self.caches.append(np.zeros((0, model.K, model.hidden), np.float16))
            tables.append(np.zeros((0, model.chars.dim), np.float32))
            offsets.append(model.char_offset)
        WT = np.ascontiguousarray(p["W"].T)
        self._kernel = _kernels.CachedScorer(self.caches, tables, WT, p["b"], p["U"],
                                             p["c"], model.activation, offsets, model.K)
        self.nbytes = sum(c.nbytes for c in self.caches) + WT.nbytes
        # the decoder's transition scores, snapshot like the products
        self.transitions = model.transitions()

    @staticmethod
    def _products(model, table, offset, n):
        """(n, K, H) float16: W_k · table[v] for the first n rows v and every position k,
        rounded to half by _kernels.float_to_half (F16C where the CPU has it: NumPy's
        cast gives the same halves at 2.4 ns a value, 0.1 s of the shipped model's load)."""
        K, H, e, W = model.K, model.hidden, table.shape[1], model.params["W"]
        cache = np.empty((n, K, H), dtype=np.float16)
        products = np.empty((min(n, 4096), K, H), dtype=np.float32)
        for lo in range(0, n, 4096):      # a few thousand rows at a time: small temporaries
            rows = table[lo:min(n, lo + 4096)]
            for k in range(K):
                W_k = W[:, k * model.E + offset:k * model.E + offset + e]
                products[:len(rows), k, :] = rows @ W_k.T
            if _kernels.float_to_half(products[:len(rows)].reshape(len(rows), K * H),
                                      cache[lo:lo + len(rows)].reshape(len(rows), K * H)):
                raise ValueError("InferenceScorer: a first-layer product exceeds half "
                                 "precision (|x| > 65504); tag without the cache "
                                 "(cache_mb=0)")
        return cache

    def scores(self, window_ids, spellings=None):
        """Scores S (B, T) of per-column (B, K) window ids (``spellings``: the Spellings
        the character column numbers)."""
        return self._kernel.scores(np.ascontiguousarray(np.stack(window_ids, axis=2)),
                                   self._call_tables(spellings))

    def token_scores(self, ids_bf, lengths, spellings=None):
        """Scores S (B, T) of sentences given as each token's ids (B, columns), as
        WindowTagger.token_feature_ids gives them, and each sentence's length: the
        windows are built in C straight into the layout the scorer reads."""
        return self._kernel.scores(_kernels.window_ids(
            np.ascontiguousarray(ids_bf, dtype=np.int32),
            np.ascontiguousarray(lengths, dtype=np.int32), self.K),
            self._call_tables(spellings))

    def _call_tables(self, spellings):
        """The character vectors of every spelling in ``spellings``, as the scorer's
        per-call table of its last feature (None without character features)."""
        if self.chars is None:
            return None
        if spellings is None:
            raise ValueError("this model has character features: pass the Spellings that "
                             "numbered the tokens")
        chars_pk, lengths = spellings.positions(np.arange(len(spellings)))
        vectors, _ = _kernels.char_cnn_forward(chars_pk, lengths, *self.chars)
        return {len(self.caches) - 1: vectors}
