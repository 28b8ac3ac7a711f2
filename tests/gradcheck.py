"""Central finite differences for the gradient checks of kernels and the whole model."""
import numpy as np


def central_difference(f, x, eps=1e-6, n_coords=40, rng=None):
    """Numerical gradient of scalar f() w.r.t. x (modified in place), at sampled coords."""
    flat = x.reshape(-1)
    coords = np.arange(flat.size)
    if rng is not None and flat.size > n_coords:
        coords = rng.choice(flat.size, n_coords, replace=False)
    grad = {}
    for i in coords:
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        grad[i] = (up - down) / (2 * eps)
    return grad


def check_numeric(analytic, numeric, what, tol=1e-6, floor=1e-3):
    """Relative agreement of an analytic gradient with central_difference's values;
    ``floor`` keeps near-zero gradients from demanding absolute precision."""
    flat = analytic.reshape(-1)
    for i, g in numeric.items():
        denom = max(abs(g), abs(flat[i]), floor)
        assert abs(flat[i] - g) / denom < tol, f"{what}[{i}]: analytic {flat[i]} vs numeric {g}"
