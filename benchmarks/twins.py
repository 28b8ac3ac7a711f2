"""The benchmarked model and its three implementations of one plain-SGD step.

Same model everywhere: K = 5 positions, a 50-d word table of V rows plus a 5-d
capitalisation table (E = 55, D = 275), H = 300 tanh units, T = 9 tags,
softmax cross-entropy, plain SGD with row-sparse embedding updates.
"""
import numpy as np

from fastner import _kernels, reference

K, E_WORD, E_CAPS, H, T = 5, 50, 5, 300, 9
V_WORD, V_CAPS = 100_000, 7
D = K * (E_WORD + E_CAPS)
OFFSETS = [0, E_WORD]


def flop_per_token_step(D, H, T):
    """FLOP (2 per multiply-add) of a training step per token: the forward products
    and the two backward ones (δ_X and the weight gradients), first layer and output."""
    return 3 * 2 * (D * H + H * T)


FLOP_PER_TOKEN_STEP = flop_per_token_step(D, H, T)


def parameters(seed=1):
    rng = np.random.default_rng(seed)
    return ([(rng.normal(size=(V_WORD, E_WORD)) * 0.1).astype(np.float32),
             rng.normal(size=(V_CAPS, E_CAPS)).astype(np.float32)],
            (rng.normal(size=(H, D)) * 0.05).astype(np.float32), np.zeros(H, np.float32),
            (rng.normal(size=(T, H)) * 0.05).astype(np.float32), np.zeros(T, np.float32))


def batch(B, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, V_WORD, (B, K)), rng.integers(0, V_CAPS, (B, K))], axis=2)
    return np.ascontiguousarray(ids, dtype=np.int32), rng.integers(0, T, B).astype(np.int32)


def cython_step():
    tables, W, b, U, c = parameters()
    return _kernels.SGDStep(tables, W, b, U, c, "tanh", OFFSETS, K)


def numpy_step():
    tables, W, b, U, c = parameters()
    return reference.SGDStep(tables, W, b, U, c, "tanh", OFFSETS, K)


class TorchStep:
    """The same model in PyTorch (CPU, one thread): sparse embedding gradients, SGD."""

    def __init__(self):
        import torch
        torch.set_num_threads(1)
        tables, W, b, U, c = parameters()
        self.torch = torch
        self.word = torch.nn.Embedding(V_WORD, E_WORD, sparse=True)
        self.caps = torch.nn.Embedding(V_CAPS, E_CAPS, sparse=True)
        self.hidden = torch.nn.Linear(D, H)
        self.out = torch.nn.Linear(H, T)
        with torch.no_grad():
            self.word.weight.copy_(torch.from_numpy(tables[0]))
            self.caps.weight.copy_(torch.from_numpy(tables[1]))
            self.hidden.weight.copy_(torch.from_numpy(W))
            self.hidden.bias.copy_(torch.from_numpy(b))
            self.out.weight.copy_(torch.from_numpy(U))
            self.out.bias.copy_(torch.from_numpy(c))
        params = [self.word.weight, self.caps.weight, *self.hidden.parameters(),
                  *self.out.parameters()]
        self.optimizer = torch.optim.SGD(params, lr=0.01)
        self.loss = torch.nn.CrossEntropyLoss()

    def step(self, ids_bkf, y_b, lr):
        torch = self.torch
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        ids = torch.from_numpy(ids_bkf).long()
        x = torch.cat([self.word(ids[:, :, 0]), self.caps(ids[:, :, 1])], dim=2).reshape(len(ids), D)
        scores = self.out(torch.tanh(self.hidden(x)))
        loss = self.loss(scores, torch.from_numpy(y_b).long())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def torch_step():
    return TorchStep()


# -- the shipped configuration's step: Adam on the CRF loss, whole sentences ----------

CRF_LENGTHS = (12, 9, 11)          # a batch of 32 tokens in three sentences, as the
                                   # trainer fills one (whole sentences, ≥ 32 tokens)
ADAM = dict(beta1=0.9, beta2=0.999, eps=1e-8)
CLIP = 5.0


def crf_batch(lengths=CRF_LENGTHS, seed=0):
    """Window ids, gold tags on valid IOB2 paths (tag 0 = O, odd = B-, even = I-) and
    sentence lengths."""
    from fastner.tags import TagSet
    rng = np.random.default_rng(seed)
    B = sum(lengths)
    ids, _ = batch(B, seed)
    tagset = TagSet(["LOC", "MISC", "ORG", "PER"])
    y = []
    for n in lengths:
        tag = "O"
        for _ in range(n):
            r = rng.random()
            if r < 0.6:
                tag = "O"
            elif r < 0.8 or tag == "O":
                tag = "B-" + str(rng.choice(tagset.entity_types))
            else:
                tag = "I-" + tag[2:]
            y.append(tag)
    return ids, tagset.encode(y).astype(np.int32), np.array(lengths, np.int32), tagset


class AdamCRFStepper:
    """fastner._kernels.AdamCRFStep or its NumPy twin (fastner.reference) on the
    benchmarked model with a CRF, holding the flat parameter, gradient and moment
    buffers laid out as the trainer lays them out."""

    def __init__(self, module):
        tables, W, b, U, c = parameters()
        _, _, _, tagset = crf_batch()
        mask, mask_start = tagset.transition_mask()
        self.layout = [("W", W.shape), ("b", b.shape), ("U", U.shape), ("c", c.shape),
                       ("trans", (T, T)), ("start", (T,)), ("end", (T,)),
                       ("table.word", tables[0].shape), ("table.caps", tables[1].shape)]
        values = [W, b, U, c, np.zeros((T, T)), np.zeros(T), np.zeros(T), *tables]
        self.flat = np.concatenate([np.asarray(v, np.float32).reshape(-1) for v in values])
        self.grad, self.m, self.v = (np.zeros_like(self.flat) for _ in range(3))
        dense = sum(int(np.prod(shape)) for _, shape in self.layout[:7])
        self.kernel = module.AdamCRFStep(self.flat, self.grad, self.m, self.v, self.layout,
                                         dense, mask.astype(np.float32),
                                         mask_start.astype(np.float32), "tanh", OFFSETS, K,
                                         CLIP, 1.0, ADAM["beta1"], ADAM["beta2"], ADAM["eps"])
        self.t = 0

    def step(self, ids_bkf, y_b, lengths_n, lr):
        self.t += 1
        size = lr * np.sqrt(1 - ADAM["beta2"] ** self.t) / (1 - ADAM["beta1"] ** self.t)
        return self.kernel.step(ids_bkf, y_b, lengths_n, size, size)


class TorchAdamCRFStep:
    """The same configuration in PyTorch (CPU, one thread), written as one would: sparse
    embedding gradients under SparseAdam (lazy, like fastner's), Adam for the dense
    layers, a CRF whose forward algorithm runs over the batch's sentences padded to
    the longest, masked IOB2 moves, gradient-norm clipping."""

    def __init__(self):
        import torch
        torch.set_num_threads(1)
        self.torch = torch
        tables, W, b, U, c = parameters()
        _, _, _, tagset = crf_batch()
        mask, mask_start = tagset.transition_mask()
        self.word = torch.nn.Embedding(V_WORD, E_WORD, sparse=True)
        self.caps = torch.nn.Embedding(V_CAPS, E_CAPS, sparse=True)
        self.hidden = torch.nn.Linear(D, H)
        self.out = torch.nn.Linear(H, T)
        self.trans = torch.nn.Parameter(torch.zeros(T, T))
        self.start = torch.nn.Parameter(torch.zeros(T))
        self.end = torch.nn.Parameter(torch.zeros(T))
        self.mask = torch.from_numpy(np.asarray(mask, np.float32))
        self.mask_start = torch.from_numpy(np.asarray(mask_start, np.float32))
        with torch.no_grad():
            for param, value in ((self.word.weight, tables[0]), (self.caps.weight, tables[1]),
                                 (self.hidden.weight, W), (self.hidden.bias, b),
                                 (self.out.weight, U), (self.out.bias, c)):
                param.copy_(torch.from_numpy(value))
        self.dense = [*self.hidden.parameters(), *self.out.parameters(), self.trans,
                      self.start, self.end]
        self.sparse = [self.word.weight, self.caps.weight]
        self.adam = torch.optim.Adam(self.dense, lr=1e-3, **_torch_adam(ADAM))
        self.sparse_adam = torch.optim.SparseAdam(self.sparse, lr=1e-3, **_torch_adam(ADAM))

    def nll(self, scores, y, lengths):
        """Σ over sentences of log Z − score(gold path), for sentences padded to the longest."""
        torch = self.torch
        N, L = len(lengths), int(lengths.max())
        index = torch.zeros(N, L, dtype=torch.long)
        valid = torch.arange(L)[None, :] < lengths[:, None]
        firsts = torch.cumsum(lengths, 0) - lengths
        index[valid] = torch.arange(int(lengths.sum()))
        s = scores[index]                                   # (N, L, T), padding repeats row 0
        tags = y[index]
        A, start = self.trans + self.mask, self.start + self.mask_start
        alpha = start + s[:, 0]
        for t in range(1, L):
            step = torch.logsumexp(alpha[:, :, None] + A, dim=1) + s[:, t]
            alpha = torch.where(valid[:, t, None], step, alpha)
        log_z = torch.logsumexp(alpha + self.end, dim=1)
        emit = (s.gather(2, tags[:, :, None])[:, :, 0] * valid).sum(1)
        moves = (A[tags[:, :-1], tags[:, 1:]] * valid[:, 1:]).sum(1)
        last = y[firsts + lengths - 1]
        gold = start[tags[:, 0]] + emit + moves + self.end[last]
        return (log_z - gold).sum()

    def step(self, ids_bkf, y_b, lengths_n, lr):
        torch = self.torch
        for optimizer in (self.adam, self.sparse_adam):
            for group in optimizer.param_groups:
                group["lr"] = lr
        ids = torch.from_numpy(ids_bkf).long()
        x = torch.cat([self.word(ids[:, :, 0]), self.caps(ids[:, :, 1])],
                      dim=2).reshape(len(ids), D)
        scores = self.out(torch.tanh(self.hidden(x)))
        loss = self.nll(scores, torch.from_numpy(y_b).long(),
                        torch.from_numpy(lengths_n).long()) / len(ids)
        self.adam.zero_grad(set_to_none=True)
        self.sparse_adam.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad.coalesce().values() if p.grad.is_sparse else p.grad
                 for p in self.sparse + self.dense]
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))
        if norm > CLIP:
            for p in self.sparse + self.dense:
                p.grad.mul_(CLIP / norm)
        self.adam.step()
        self.sparse_adam.step()
        return float(loss.detach())


def _torch_adam(hyper):
    return {"betas": (hyper["beta1"], hyper["beta2"]), "eps": hyper["eps"]}


def adam_crf_step(impl):
    if impl == "pytorch":
        return TorchAdamCRFStep()
    return AdamCRFStepper({"cython": _kernels, "numpy": reference}[impl])
