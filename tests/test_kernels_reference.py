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


def test_conv_tables_describe_the_plan():
    """The plan's flattened tables (read by the compiled kernels) agree with its paths and blocks."""
    from nequip_np.kernels.plan import D1, IN0, MID0, MUL, NZ0, NZ1, SH0, WOFF, blocks

    case = build("tp_conv", "float64")
    plan = case.call(importlib.import_module("nequip_np.kernels.tp_conv.reference"), *case.inputs)[1].plan
    t, bin_, bmid = plan.tables, blocks(plan.irreps_in), blocks(plan.irreps_mid)
    assert [p.i_mid for p in plan.paths] != sorted(p.i_mid for p in plan.paths)  # MID sorted out of path order
    for k, path in enumerate(plan.paths):
        row = t.paths[k]
        assert (row[IN0], row[D1], row[SH0], row[WOFF], row[MUL]) == (
            bin_[path.i_in].start,
            bin_[path.i_in].dim,
            path.l_sh**2,
            path.w_offset,
            bin_[path.i_in].mul,
        )
        assert row[MID0] == bmid[path.i_mid].start
        dense = np.zeros_like(path.cg)
        for (a, b, c), v in zip(t.cg_idx[row[NZ0] : row[NZ1]], t.cg_val[row[NZ0] : row[NZ1]]):
            dense[a, b, c] = v
        np.testing.assert_array_equal(dense, path.cg)
    for col, (p, u, c) in enumerate(t.mid_owner):  # the GPU forward: one thread per output column
        assert col == bmid[plan.paths[p].i_mid].start + u * bmid[plan.paths[p].i_mid].dim + c
    for q, (p, u) in enumerate(t.w_owner):
        assert q == plan.paths[p].w_offset + u
    y = np.arange(plan.irreps_in.dim)[None, :]
    np.testing.assert_array_equal(y[:, t.in_cols][:, t.in_inv], y)
