"""Rung 2: every reference operation's backward (and its complex-step tangent) vs finite differences, float64.

The cases are the one table of ``tests/kernel_cases.py`` (shared with the backend and CUDA tests).
"""
import importlib

import numpy as np
import pytest

from tests.gradcheck import check_backward, check_complex_step
from tests.kernel_cases import NAMES, build, flat_grads

CHECKS = [check_backward, check_complex_step]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", NAMES)
def test_operation_derivatives(name, check):
    case = build(name, "float64")
    ref = importlib.import_module(f"nequip_np.kernels.{case.op}.reference")
    fwd = lambda *xs: case.call(ref, *xs)  # noqa: E731
    bwd = lambda d, c: tuple(flat_grads(ref.backward(d, c)))  # noqa: E731
    check(fwd, bwd, case.inputs, np.random.default_rng(7))


@pytest.mark.parametrize("name", NAMES)
def test_backward_contract(name):
    """One contract: backward returns a tuple with one d<input> per input, shaped like it."""
    case = build(name, "float64")
    ref = importlib.import_module(f"nequip_np.kernels.{case.op}.reference")
    out, cache = case.call(ref, *case.inputs)
    grads = ref.backward(np.ones_like(out), cache)
    assert isinstance(grads, tuple)
    flat = flat_grads(grads)
    assert [np.shape(g) for g in flat] == [np.shape(x) for x in case.inputs]
