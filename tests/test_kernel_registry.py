"""Generic checks over every row of tests/kernel_registry.py (see its docstring)."""
import copy
import inspect

import numpy as np
import pytest
from kernel_registry import KERNELS, NOT_KERNELS

from fastner import _kernels as K
from fastner import reference as R

IDS = [k.name for k in KERNELS]


def args_of(kernel, seed=0):
    return kernel.make(np.random.default_rng(seed))


def assert_same(fast, slow, kernel, what, atol=None):
    if isinstance(fast, (list, tuple)):
        assert len(fast) == len(slow), what
        for i, (a, b) in enumerate(zip(fast, slow)):
            assert_same(a, b, kernel, f"{what}[{i}]", atol)
    elif fast is None or isinstance(fast, str):
        assert fast == slow, what
    else:
        np.testing.assert_allclose(np.asarray(fast, dtype=np.float64),
                                   np.asarray(slow, dtype=np.float64), rtol=kernel.rtol,
                                   atol=kernel.atol if atol is None else atol, err_msg=what)


def test_every_kernel_has_a_row():
    public = {n for n in dir(K) if not n.startswith("_")} - NOT_KERNELS
    assert public == set(IDS), public ^ set(IDS)


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_kernel_equals_its_numpy_twin(kernel):
    fast_args, slow_args = args_of(kernel), args_of(kernel)
    atol = kernel.atol_of(fast_args) if kernel.atol_of else None
    fast = kernel.run(K, fast_args)
    slow = kernel.run(R, slow_args)
    assert_same(fast, slow, kernel, f"{kernel.name} result", atol)
    for name in kernel.outputs:
        assert_same(fast_args[name], slow_args[name], kernel, f"{kernel.name} {name}")


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_kernel_leaves_its_inputs_alone(kernel):
    args = args_of(kernel)
    before = copy.deepcopy(args)
    kernel.run(K, args)
    for name, value in args.items():
        if name not in kernel.outputs:
            assert_same(value, before[name], kernel, f"{kernel.name} changed its input {name}")


@pytest.mark.parametrize("kernel", KERNELS, ids=IDS)
def test_kernel_signature_is_its_twins(kernel):
    if kernel.call is not None:
        return                     # classes and tanh: checked in test_kernels.py
    fast, slow = inspect.signature(getattr(K, kernel.name)), inspect.signature(
        getattr(R, kernel.name))
    assert list(fast.parameters) == list(slow.parameters)
    assert set(args_of(kernel)) == set(fast.parameters)


@pytest.mark.parametrize("kernel", [k for k in KERNELS if k.gradcheck],
                         ids=[k.name for k in KERNELS if k.gradcheck])
def test_derivative_kernels_have_a_finite_difference_check(kernel):
    import test_kernels
    import test_model
    assert callable(getattr(test_kernels, kernel.gradcheck, None)
                    or getattr(test_model, kernel.gradcheck, None)), kernel.gradcheck


def bad_variants(kernel):
    """(label, argument name, mutated arguments) for every way an argument can be wrong:
    another dtype, another rank, a non-contiguous view, a read-only output, an id out
    of range. Each must raise a Python exception naming the argument."""
    args = args_of(kernel)
    for name, value in args.items():
        arrays = ([(name, value, None)] if isinstance(value, np.ndarray) else
                  [(f"{name}[{i}]", v, i) for i, v in enumerate(value)
                   if isinstance(v, np.ndarray)] if isinstance(value, list) else [])
        for label, array, index in arrays:
            def put(new, name=name, index=index):
                mutated = copy.deepcopy(args)
                if index is None:
                    mutated[name] = new
                else:
                    mutated[name][index] = new
                return mutated
            other = {np.dtype(np.float32): np.float64, np.dtype(np.int32): np.int64,
                     np.dtype(np.float16): np.float32}[array.dtype]
            yield f"{label} as {np.dtype(other).name}", label, put(array.astype(other))
            yield f"{label} with an extra axis", label, put(array[None])
            if array.size > 1:
                doubled = np.repeat(array, 2, axis=-1)
                yield f"{label} non-contiguous", label, put(doubled[..., ::2])
            if name in kernel.outputs and index is None:
                frozen = array.copy()
                frozen.flags.writeable = False
                yield f"{label} read-only", label, put(frozen)
            if name in kernel.ids and array.size:
                for bad in (-1, 10**6):
                    wrong = array.copy()
                    wrong.reshape(-1)[-1] = bad
                    yield f"{label} holding {bad}", label, put(wrong)


BAD = [(kernel, label, name, mutated) for kernel in KERNELS
       for label, name, mutated in bad_variants(kernel)]


@pytest.mark.parametrize("kernel,label,name,mutated", BAD,
                         ids=[f"{k.name}: {label}" for k, label, _, _ in BAD])
def test_kernel_refuses_a_wrong_argument_by_name(kernel, label, name, mutated):
    with pytest.raises((ValueError, IndexError)) as info:
        kernel.run(K, mutated)
    assert name.split("[")[0] in str(info.value), str(info.value)
