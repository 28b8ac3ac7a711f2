"""The window tagger: parameters, windows, forward/backward through the kernels,
and decoding (docs/derivations.md holds the math; fastner._kernels the fast code).

Parameters live in one flat float buffer with named views, and the gradient
buffer mirrors it, so the optimiser can treat the dense parameters as one
slice and the embedding tables row by row.
"""
import itertools
import json

import numpy as np

from fastner import _kernels, io
from fastner.features import MEMO_LIMIT, PAD, DocumentContext, Vocab, build_feature
from fastner.tags import TagSet

DENSE = ("W", "b", "U", "c", "trans", "start", "end")
QUANTIZE_ROWS = 4096     # tables at least this tall are saved as int8 + row scales
LOSSES = ("softmax", "crf")


class WindowTagger:
    """Collobert & Weston's window network over K = 2·half_window + 1 positions.

    features: WordFeature first, then small categorical features; each
    position's input is the concatenation of the feature vectors (width E).
    loss: "softmax" (per-token cross-entropy, IOB-constrained Viterbi at
    decode time) or "crf" (sentence-level likelihood with learned transitions).
    ``ops`` is fastner._kernels or fastner.reference (same signatures).
    """

    def __init__(self, features, tagset, half_window=2, hidden=300, activation="tanh",
                 loss="softmax", dropout=0.0, ops=_kernels, dtype=np.float32):
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
        if activation not in _kernels.ACTIVATIONS or activation == "identity":
            raise ValueError(f"activation must be tanh, hardtanh or relu; got {activation!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout}")
        self.features, self.tagset = list(features), tagset
        self.half_window, self.hidden = int(half_window), int(hidden)
        self.activation, self.loss, self.dropout = activation, loss, float(dropout)
        self.ops, self.dtype = ops, np.dtype(dtype)
        self.K = 2 * self.half_window + 1
        self.offsets = np.cumsum([0] + [f.dim for f in self.features])[:-1].tolist()
        self.E = sum(f.dim for f in self.features)
        self.D = self.K * self.E
        T = len(tagset)
        self.layout = [("W", (self.hidden, self.D)), ("b", (self.hidden,)),
                       ("U", (T, self.hidden)), ("c", (T,)),
                       ("trans", (T, T)), ("start", (T,)), ("end", (T,))]
        self.layout += [(f"table.{f.name}", (f.size, f.dim)) for f in self.features]
        self.flat = np.zeros(sum(int(np.prod(s)) for _, s in self.layout), dtype=self.dtype)
        self.params = self.views(self.flat)
        self.dense_size = sum(int(np.prod(s)) for n, s in self.layout if n in DENSE)
        self.mask_trans, self.mask_start = tagset.transition_mask()
        self.inference_cache = None      # per-feature cached products (build_inference_cache)
        self._scorer = None
        self._ids_memo = {}              # token → its id under every feature (tag_flat)

    # -- parameters -------------------------------------------------------

    def views(self, flat):
        """Named views into a flat buffer laid out like the parameters."""
        out, at = {}, 0
        for name, shape in self.layout:
            size = int(np.prod(shape))
            out[name] = flat[at:at + size].reshape(shape)
            at += size
        return out

    def tables(self, views=None):
        views = self.params if views is None else views
        return [views[f"table.{f.name}"] for f in self.features]

    def init_params(self, rng, word_init=None):
        """Uniform ±sqrt(6/(fan_in+fan_out)) weights, zero biases, small random tables.

        ``word_init``: optional (rows, vectors) to copy into the word table
        (GloVe vectors for the words GloVe has; the rest stay random).
        """
        p = self.params
        for name in ("W", "U"):
            fan_out, fan_in = p[name].shape
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            p[name][...] = rng.uniform(-bound, bound, size=p[name].shape)
        for name in ("b", "c", "trans", "start", "end"):
            p[name][...] = 0.0
        for table in self.tables():
            table[...] = rng.normal(0.0, 0.1, size=table.shape)
        if word_init is not None:
            rows, vectors = word_init
            self.tables()[0][rows] = vectors
        self.inference_cache = self._scorer = None

    # -- windows ----------------------------------------------------------

    def token_ids(self, tokens, context=None):
        """Per feature, int32 (n,) ids of one sentence's tokens (``context``: the
        sentence's DocumentContext, for document-level features)."""
        return [f.ids(tokens, context) for f in self.features]

    def sentences_ids(self, sentences, docs=None):
        """token_ids of each sentence; ``docs`` gives each sentence's document number
        (default: all sentences form one document)."""
        if not any(getattr(f, "needs_context", False) for f in self.features):
            return [self.token_ids(tokens) for tokens in sentences]
        docs = [0] * len(sentences) if docs is None else list(docs)
        contexts = {}
        for tokens, doc in zip(sentences, docs):
            contexts.setdefault(doc, []).append(tokens)
        contexts = {doc: DocumentContext(sents) for doc, sents in contexts.items()}
        return [self.token_ids(tokens, contexts[doc]) for tokens, doc in zip(sentences, docs)]

    def windows(self, sentences_ids):
        """Stack sentences into per-feature (B, K) window id matrices, PAD at edges.

        sentences_ids: list over sentences of per-feature id arrays (from token_ids).
        """
        lengths = np.array([len(ids[0]) for ids in sentences_ids], dtype=np.int64)
        if lengths.sum() == 0:
            return [np.zeros((0, self.K), np.int32) for _ in self.features]
        return self.windows_flat([np.concatenate([ids[f] for ids in sentences_ids])
                                  for f in range(len(self.features))], lengths)

    def windows_flat(self, flat_ids, lengths):
        """Per-feature (B, K) window ids from per-feature ids of all tokens laid end to
        end (``lengths``: tokens per sentence). Sentences are laid out with half_window
        PADs around each, and every token's window is gathered at once."""
        hw, K = self.half_window, self.K
        lengths = np.asarray(lengths, dtype=np.int64)
        n = int(lengths.sum())
        if n == 0:
            return [np.zeros((0, K), np.int32) for _ in self.features]
        # position of each token in the padded stream: its index + 2·hw·(sentence index) + hw
        sentence_of = np.repeat(np.arange(len(lengths)), lengths)
        centre = np.arange(n) + 2 * hw * sentence_of + hw
        gather = centre[:, None] + np.arange(-hw, hw + 1)[None, :]
        out = []
        for ids in flat_ids:
            stream = np.full(n + 2 * hw * len(lengths), PAD, dtype=np.int32)
            stream[centre] = ids
            out.append(np.ascontiguousarray(stream[gather]))
        return out

    # -- forward / backward -------------------------------------------------

    def forward(self, ids, rng=None):
        """Scores S (B, T) for per-feature window ids; returns (S, cache for backward).

        With ``rng`` (training), inverted dropout is applied to the hidden layer.
        """
        ops, p = self.ops, self.params
        B = ids[0].shape[0]
        X = np.empty((B, self.D), dtype=self.dtype)
        for f_ids, table, offset in zip(ids, self.tables(), self.offsets):
            ops.lookup_forward(f_ids, table, X, offset)
        Hd = ops.affine_act_forward(X, p["W"], p["b"], self.activation)
        keep = None
        Hin = Hd
        if rng is not None and self.dropout > 0.0:
            keep = (rng.random(Hd.shape) >= self.dropout).astype(self.dtype)
            keep /= (1.0 - self.dropout)
            Hin = Hd * keep
        S = ops.affine_act_forward(Hin, p["U"], p["c"], "identity")
        return S, (ids, X, Hd, Hin, keep, S)

    def backward(self, cache, dS, grads):
        """Add ∂J/∂θ into the named gradient views ``grads`` from δ_S (derivations §B2–§B5)."""
        ops, p = self.ops, self.params
        ids, X, Hd, Hin, keep, S = cache
        dHin = np.empty_like(Hin)
        ops.affine_act_backward(dS, S, Hin, p["U"], "identity", grads["U"], grads["c"], dHin)
        dHd = dHin if keep is None else dHin * keep
        dX = np.empty_like(X)
        ops.affine_act_backward(dHd, Hd, X, p["W"], self.activation, grads["W"], grads["b"], dX)
        for f_ids, dtable, offset in zip(ids, self.tables(grads), self.offsets):
            ops.lookup_backward(f_ids, dX, dtable, offset)

    def loss_and_backward(self, ids, y, lengths, grads, rng=None):
        """Mean loss of a batch and its gradient added into ``grads``.

        y: int32 (B,) gold tags; lengths: int32 sentence lengths (CRF only).
        """
        S, cache = self.forward(ids, rng)
        if self.loss == "softmax":
            loss, dS = self.ops.softmax_xent_forward_backward(S, y)
        else:
            trans, start, end = self.transitions()
            dS = np.empty_like(S)
            loss = self.ops.crf_forward_backward(S, y, lengths, trans, start, end, dS,
                                                 grads["trans"], grads["start"], grads["end"])
        self.backward(cache, dS, grads)
        return loss

    def transitions(self):
        """Transition, start and end scores with invalid IOB2 moves set to -inf."""
        p = self.params
        if self.loss == "crf":
            return ((p["trans"] + self.mask_trans).astype(self.dtype),
                    (p["start"] + self.mask_start).astype(self.dtype),
                    np.ascontiguousarray(p["end"]))
        return (self.mask_trans.astype(self.dtype), self.mask_start.astype(self.dtype),
                np.zeros(len(self.tagset), self.dtype))

    # -- decoding -----------------------------------------------------------

    def decode(self, S, lengths, confidence=True):
        """Best IOB2-valid tag ids and each token's confidence in its tag (None when
        ``confidence`` is False: the CRF's marginals are then not computed).

        The confidence is the model's probability of that tag for that token:
        the softmax output (loss "softmax") or the CRF marginal (loss "crf").
        """
        trans, start, end = self.transitions()
        if self.loss == "crf" and not confidence:
            return self.ops.viterbi_decode(S, lengths, trans, start, end), None
        if self.loss == "softmax":
            probs = self.ops.softmax_forward(S)
            with np.errstate(divide="ignore"):
                scores = np.log(probs)
            tags = self.ops.viterbi_decode(scores, lengths, trans, start, end)
        else:
            tags = self.ops.viterbi_decode(S, lengths, trans, start, end)
            probs = self.ops.crf_marginals(S, lengths, trans, start, end)
        conf = probs[np.arange(len(tags)), tags] if len(tags) else np.zeros(0, self.dtype)
        return tags, conf

    def build_inference_cache(self, budget_mb=64.0):
        """Precompute W_k · table[v] for every position k and the most frequent rows v.

        The first layer is linear in the window, so at inference a token costs K
        cached vector additions instead of a (D × H) product (Chen & Manning 2014).
        The products are stored in half precision (relative error ≤ 2⁻¹¹; on
        CoNLL-2003 valid the shipped model's tags do not change), which doubles the
        rows a budget holds and halves the bytes read per token. Small feature
        tables are cached whole first; the word table gets the rest of the budget,
        from its first (most frequent, GloVe-ordered) rows. Rows past the cache are
        multiplied on the fly. Call again after changing the parameters. Returns
        the bytes the scorer holds (cache plus Wᵀ).
        """
        row_bytes = self.K * self.hidden * np.dtype(np.float16).itemsize
        budget_rows = int(budget_mb * 2**20) // row_bytes
        order = sorted(range(len(self.features)), key=lambda i: (i == 0, self.features[i].size))
        rows = [0] * len(self.features)
        for i in order:
            rows[i] = min(self.features[i].size, budget_rows)
            budget_rows -= rows[i]
        W = self.params["W"]
        caches = []
        half_max = float(np.finfo(np.float16).max)
        for n, table, offset in zip(rows, self.tables(), self.offsets):
            e = table.shape[1]
            cache = np.empty((n, self.K, self.hidden), dtype=np.float16)
            # a few thousand rows at a time: the float32 products stay small temporaries
            for lo in range(0, n, 4096):
                for k in range(self.K):
                    W_k = W[:, k * self.E + offset:k * self.E + offset + e]
                    products = table[lo:min(n, lo + 4096)] @ W_k.T
                    if not np.abs(products).max() <= half_max:
                        raise ValueError(
                            "build_inference_cache: a first-layer product exceeds half "
                            "precision (|x| > 65504); tag without the cache (cache_mb=0)")
                    cache[lo:lo + 4096, k, :] = products
            caches.append(cache)
        self.inference_cache = caches
        WT = np.ascontiguousarray(W.T)
        p = self.params
        self._scorer = _kernels.CachedScorer(caches, self.tables(), WT, p["b"], p["U"], p["c"],
                                             self.activation, self.offsets, self.K)
        return sum(c.nbytes for c in caches) + WT.nbytes

    def inference_scores(self, ids):
        """Scores S (B, T) through the inference cache (build_inference_cache first)."""
        return self._scorer.scores(np.ascontiguousarray(np.stack(ids, axis=2)))

    def predict_ids(self, ids, lengths, confidence=True):
        """Best tag ids (and confidences, unless ``confidence`` is False) of windows."""
        if self._scorer is not None:
            S = self.inference_scores(ids)
        else:
            S, _ = self.forward(ids)
        return self.decode(S, lengths, confidence)

    def tag_ids(self, sentences, docs=None, confidence=True):
        """Tag ids and confidences of every token of every sentence, laid end to end.

        Returns (tags int32 (N,), confidences float32 (N,) or None when ``confidence``
        is False, lengths int32 (sentences,)). ``docs``: each sentence's document
        number (default: one document).
        """
        lengths = np.array([len(t) for t in sentences], dtype=np.int32)
        tokens = list(itertools.chain.from_iterable(sentences))
        tags, conf = self.tag_flat(tokens, lengths, docs, confidence)
        return tags, conf, lengths

    def tag_flat(self, tokens, lengths, docs=None, confidence=True):
        """tag_ids for sentences given as all their tokens laid end to end and the
        number of tokens of each: (tags, confidences or None)."""
        if len(tokens) == 0:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        if any(getattr(f, "needs_context", False) for f in self.features):
            bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
            sentences = [tokens[a:b] for a, b in zip(bounds, bounds[1:])]
            ids = self.windows(self.sentences_ids(sentences, docs))
        else:           # every feature is a function of the token alone: one pass over all
            ids = self.windows_flat(list(self._feature_ids(tokens).T), lengths)
        return self.predict_ids(ids, np.asarray(lengths, dtype=np.int32), confidence)

    def _feature_ids(self, tokens):
        """(N, features) int32 ids of tokens, through one memo for all features: a
        repeated token costs one dict lookup instead of one per feature. Bounded like
        the features' own memos."""
        memo = self._ids_memo
        if len(memo) > MEMO_LIMIT:
            memo.clear()
        get = memo.get
        rows = [get(t) for t in tokens]
        if None in rows:
            missed = list({t for t, row in zip(tokens, rows) if row is None})
            columns = [f.ids(missed).tolist() for f in self.features]
            memo.update(zip(missed, zip(*columns)))
            rows = [get(t) for t in tokens]
        return np.array(rows, dtype=np.int32).reshape(len(tokens), len(self.features))

    def tag(self, sentences, docs=None):
        """Tag lists of tokens: list over sentences of (tag names, confidences)."""
        tags, conf, lengths = self.tag_ids(sentences, docs)
        out, at = [], 0
        for n in lengths:
            out.append((self.tagset.decode(tags[at:at + n]), conf[at:at + n]))
            at += n
        return out

    # -- files --------------------------------------------------------------

    def config(self):
        return {"half_window": self.half_window, "hidden": self.hidden,
                "activation": self.activation, "loss": self.loss, "dropout": self.dropout,
                "entity_types": list(self.tagset.entity_types),
                "features": [f.config() for f in self.features]}

    def arrays(self, quantize=False, precise_rows=None):
        """Everything the model needs, as named arrays (no pickle).

        With ``quantize``, tables of QUANTIZE_ROWS rows or more are stored as int8
        with one float32 scale per row (|error| ≤ scale/2 = max|row|/254): the
        400k-word GloVe table shrinks from 80 MB to 20 MB. ``precise_rows`` (word
        table rows training changed) are kept besides in float16 (relative error
        5e-4), so the learned part of the table loses almost nothing.
        """
        arrays = {}
        for name, view in self.params.items():
            if quantize and name.startswith("table.") and view.shape[0] >= QUANTIZE_ROWS:
                scale = np.abs(view).max(axis=1) / 127.0
                scale[scale == 0] = 1.0
                arrays[f"param.{name}.q8"] = np.rint(view / scale[:, None]).astype(np.int8)
                arrays[f"param.{name}.scale"] = scale.astype(np.float32)
                if precise_rows is not None and name == "table.word":
                    rows = np.unique(np.asarray(precise_rows, dtype=np.int32))
                    arrays[f"param.{name}.f16_rows"] = rows
                    arrays[f"param.{name}.f16"] = view[rows].astype(np.float16)
            else:
                arrays[f"param.{name}"] = view
        arrays["vocab"] = io.encode_strings(self.features[0].vocab.words)
        return arrays

    def save(self, path, metadata=None, quantize=True, precise_rows=None):
        # Stored, not deflated: the int8 table barely compresses (27.7 against 24.6 MB
        # for the shipped model) and inflating it cost 0.1 s of every process start.
        io.save_npz(path, io.MODEL_FORMAT, self.arrays(quantize, precise_rows),
                    {"config": self.config(), "metadata": metadata or {}}, compress=False)

    @classmethod
    def from_arrays(cls, arrays, meta, path="<model>"):
        try:
            config = meta["config"]
            vocab = Vocab(io.decode_strings(arrays["vocab"])[2:])
            features = [build_feature(c, vocab) for c in config["features"]]
            model = cls(features, TagSet(config["entity_types"]),
                        half_window=config["half_window"], hidden=config["hidden"],
                        activation=config["activation"], loss=config["loss"],
                        dropout=config.get("dropout", 0.0))
        except (KeyError, TypeError, ValueError) as err:
            raise io.ModelFileError(f"{path}: model configuration is incomplete or invalid "
                                    f"({type(err).__name__}: {err})") from None
        for name, view in model.params.items():
            stored = arrays.get(f"param.{name}")
            if stored is None and f"param.{name}.q8" in arrays:
                q8, scale = arrays[f"param.{name}.q8"], arrays.get(f"param.{name}.scale")
                if (q8.dtype != np.int8 or scale is None or q8.ndim != 2
                        or scale.shape != (q8.shape[0],)):
                    raise io.ModelFileError(f"{path}: quantized parameter {name!r} is malformed")
                if q8.shape != view.shape:
                    raise io.ModelFileError(f"{path}: parameter {name!r} has shape {q8.shape}; "
                                            f"the configuration needs {view.shape}")
                np.multiply(q8, scale[:, None], out=view, casting="unsafe")  # no temporaries
                rows, f16 = arrays.get(f"param.{name}.f16_rows"), arrays.get(f"param.{name}.f16")
                if rows is not None:
                    if (f16 is None or rows.ndim != 1 or f16.shape != (len(rows), view.shape[1])
                            or (len(rows) and (rows.min() < 0 or rows.max() >= view.shape[0]))):
                        raise io.ModelFileError(f"{path}: precise rows of {name!r} are malformed")
                    view[rows] = f16
                continue
            if stored is None:
                raise io.ModelFileError(f"{path}: parameter {name!r} is missing")
            if stored.shape != view.shape:
                raise io.ModelFileError(f"{path}: parameter {name!r} has shape {stored.shape}; "
                                        f"the configuration needs {view.shape}")
            view[...] = stored
        if not np.all(np.isfinite(model.flat)):
            raise io.ModelFileError(f"{path}: parameters contain NaN or infinity")
        return model

    @classmethod
    def load(cls, path):
        arrays, meta = io.load_npz(path, io.MODEL_FORMAT)
        model = cls.from_arrays(arrays, meta, path)
        model.metadata = meta.get("metadata", {})
        return model


def describe(model):
    """A one-line summary for logs."""
    return json.dumps({"params": int(model.flat.size), "K": model.K, "E": model.E,
                       "H": model.hidden, "T": len(model.tagset), "loss": model.loss})
