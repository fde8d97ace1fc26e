"""The plan owns every index table the compiled kernels walk (``kernels/plan.py``).

The tables are checked against the plan they flatten (walking them in NumPy reproduces the reference
operation), the kernels are shown to read the plan's tables (a plan whose tables say something else
changes the result), and no kernel module keeps a table cache of its own.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from pathlib import Path

import numpy as np
import pytest

from nequip_np.kernels import plan as P
from nequip_np.kernels.plan import build_plan, gate_tables, linear_plan, self_connection_plan
from nequip_np.so3 import Irreps

KERNELS = Path(__file__).resolve().parents[1] / "nequip_np" / "kernels"
IRREPS_IN = Irreps("3x0e + 2x1o + 1x1e + 2x2e")
IRREPS_OUT = Irreps("2x0e + 1x1o + 3x1e + 1x2e + 1x0o")


@pytest.fixture(scope="module")
def model_plan():
    return build_plan(
        l_max=2,
        parity=True,
        num_layers=3,
        num_features=[4, 3, 2],
        type_embed_num_features=3,
        num_bessels=4,
        radial_mlp_depth=1,
        radial_mlp_width=4,
        readout_mlp_hidden_layers_depth=1,
        readout_mlp_hidden_layers_width=3,
    )


def _records(mp):
    for layer in mp.layers:
        yield layer.linear_1.tables
        yield layer.conv.tables
        yield layer.linear_2.tables
        yield layer.gate.tables
        if layer.self_connection is not None:
            yield layer.self_connection.tables
    yield P.sh_table(mp.l_max)


def test_every_table_is_contiguous_read_only_and_typed(model_plan):
    n = 0
    for rec in _records(model_plan):
        for f in dataclasses.fields(rec):
            a = getattr(rec, f.name)
            if isinstance(a, np.ndarray):
                n += 1
                assert a.flags.c_contiguous, (type(rec).__name__, f.name)
                assert a.dtype in (np.int64, np.float64), (type(rec).__name__, f.name, a.dtype)
                assert not a.flags.writeable, (type(rec).__name__, f.name)
    assert n > 60
    with pytest.raises(ValueError, match="read-only"):
        model_plan.layers[0].conv.tables.paths[0, 0] = 1


def _walk_linear(x, weight, t, n_out):
    """The CUDA linear kernel's walk (one output column at a time), in NumPy, from the tables alone."""
    out = np.zeros((x.shape[0], n_out))
    for col in range(n_out):
        first, last, wm = t.out_cols[col]
        for p in t.out_paths[first:last]:
            in0, mul_in, d, _, mul_out, w0 = t.paths[p]
            w, m = divmod(wm, d)
            W = weight[w0 : w0 + mul_in * mul_out].reshape(mul_in, mul_out)
            out[:, col] += t.norm[p] * (x[:, in0 + np.arange(mul_in) * d + m] @ W[:, w])
    return out


def _walk_linear_dx(dy, weight, t, n_in):
    dx = np.zeros((dy.shape[0], n_in))
    for col in range(n_in):
        first, last, um = t.in_cols[col]
        for p in t.in_paths[first:last]:
            _, mul_in, d, out0, mul_out, w0 = t.paths[p]
            u, m = divmod(um, d)
            W = weight[w0 : w0 + mul_in * mul_out].reshape(mul_in, mul_out)
            dx[:, col] += t.norm[p] * (dy[:, out0 + np.arange(mul_out) * d + m] @ W[u])
    return dx


def test_linear_tables_reproduce_the_reference():
    from nequip_np.kernels.linear import reference

    plan = linear_plan(IRREPS_IN, IRREPS_OUT)
    t = plan.tables
    rng = np.random.default_rng(0)
    x, weight = rng.normal(size=(5, IRREPS_IN.dim)), rng.normal(size=plan.n_weights)
    out, cache = reference.forward(x, weight, plan)
    np.testing.assert_allclose(_walk_linear(x, weight, t, IRREPS_OUT.dim), out, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=out.shape)
    d_x = reference.backward(dy, cache)[0]
    np.testing.assert_allclose(_walk_linear_dx(dy, weight, t, IRREPS_IN.dim), d_x, rtol=1e-12, atol=1e-12)
    # weight table: every linear weight column once, at (path offset + u·mul_out + w)
    p, u, w = t.w_owner.T
    np.testing.assert_array_equal(t.paths[p, 5] + u * t.paths[p, 4] + w, np.arange(plan.n_weights))


def test_self_connection_tables_are_linear_tables_plus_fctp_offsets():
    plan = self_connection_plan(IRREPS_IN, 3, IRREPS_OUT)
    t, lin = plan.tables, linear_plan(IRREPS_IN, IRREPS_OUT).tables
    assert isinstance(t, P.SelfConnectionTables)
    for f in dataclasses.fields(P.LinearTables):
        if f.name != "norm":
            np.testing.assert_array_equal(getattr(t, f.name), getattr(lin, f.name), err_msg=f.name)
    np.testing.assert_allclose(t.norm, lin.norm / np.sqrt(3), rtol=1e-15)  # fan counts mul_in·n_attr
    np.testing.assert_array_equal(t.sc_off, [off for _, _, off in plan.paths])
    assert t.sc_off[-1] + t.paths[-1, 1] * 3 * t.paths[-1, 4] == plan.n_weights


def test_gate_tables_invert_the_column_lists(model_plan):
    for layer in model_plan.layers:
        g, t = layer.gate, layer.gate.tables
        assert t.role.shape == (g.irreps_in.dim, 2)
        for role, cols in ((P.ROLE_SCALAR, t.scalar_cols), (P.ROLE_GATE, t.gate_cols), (P.ROLE_GATED, t.gated_cols)):
            np.testing.assert_array_equal(t.role[cols], np.stack([np.full(len(cols), role), np.arange(len(cols))], 1))
        used = len(t.scalar_cols) + len(t.gate_cols) + len(t.gated_cols)
        assert (t.role[:, 0] == P.ROLE_UNUSED).sum() == g.irreps_in.dim - used
        for q in range(len(t.gate_cols)):  # CSR of gated_copy: gate q's gated columns, in column order
            np.testing.assert_array_equal(
                t.gate_perm[t.gate_ptr[q] : t.gate_ptr[q + 1]], np.flatnonzero(t.gated_copy == q)
            )


def flip_gate_tables(g):
    """(plan whose TABLES flip every scalar's parity, plan whose column lists do) — SiLU ↔ tanh."""
    t = g.tables
    by_tables = dataclasses.replace(
        g, tables=gate_tables(g.irreps_in.dim, t.scalar_cols, -t.scalar_parity, t.gate_cols, t.gated_cols, t.gated_copy)
    )
    return by_tables, dataclasses.replace(g, scalar_parity=-g.scalar_parity)


def test_the_gate_kernel_reads_the_plans_tables(model_plan):
    """The Numba kernel follows ``plan.tables`` (the reference follows the plan's column lists)."""
    from nequip_np.kernels.gate import cpu, reference

    g = model_plan.layers[0].gate
    by_tables, by_lists = flip_gate_tables(g)
    z = np.random.default_rng(1).normal(size=(4, g.irreps_in.dim))
    same, changed = cpu.forward(z, g)[0], cpu.forward(z, by_tables)[0]
    np.testing.assert_allclose(same, reference.forward(z, g)[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(changed, reference.forward(z, by_lists)[0], rtol=1e-12, atol=1e-12)
    assert not np.allclose(same, changed)


def test_no_kernel_module_builds_or_caches_plan_tables():
    """Tables come from the plan: no builder cache in _cuda_util, no id(plan)-keyed dict in a kernel file."""
    cu = importlib.import_module("nequip_np.kernels._cuda_util")
    assert not hasattr(cu, "plan_tables") and not hasattr(cu, "_TABLES")
    offenders = []
    for path in sorted(KERNELS.glob("*/*.py")):
        text = path.read_text()
        for pattern in (
            r"id\(plan\)",
            r"plan_tables",
            r"^_[A-Z_]+\s*(:\s*\w+)?\s*=\s*(\{\}|dict\(\))",
            r"def _\w*tables\(",
            r"lru_cache[^\n]*\n\s*def \w+\(plan\b",  # a cached function of the plan builds a table
        ):
            if re.search(pattern, text, re.MULTILINE):
                offenders.append(f"{path.relative_to(KERNELS)}: {pattern}")
    assert not offenders, offenders
