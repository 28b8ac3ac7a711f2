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
