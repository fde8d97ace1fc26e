"""Rung 2: every reference operation's backward (and its complex-step tangent) vs finite differences, float64."""
import zlib

import numpy as np
import pytest

from nequip_np.kernels.edge_embedding import reference as edge_embedding
from nequip_np.kernels.gate import reference as gate
from nequip_np.kernels.linear import reference as linear
from nequip_np.kernels.mlp import reference as mlp
from nequip_np.kernels.self_connection import reference as self_connection
from nequip_np.kernels.spherical_harmonics import reference as spherical_harmonics
from nequip_np.kernels.tp_conv import reference as tp_conv
from nequip_np.kernels.zbl import reference as zbl
from nequip_np.kernels.plan import conv_plan, gate_plan, linear_plan, self_connection_plan
from nequip_np.so3 import Irreps
from tests.gradcheck import check_backward, check_complex_step

CHECKS = [check_backward, check_complex_step]


def _edges(rng, e=7, scale=1.5):
    v = rng.standard_normal((e, 3))
    return scale * v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.6, 1.4, (e, 1))


def _case(name, rng):
    """(forward, backward, inputs) for each operation, with the static arguments bound."""
    if name == "edge_embedding":
        rmax = np.full(7, 1 / 2.5)
        fwd = lambda v, w: edge_embedding.forward(v, rmax, w, 6, 2 * np.pi / 2.5**2)  # noqa: E731
        return fwd, edge_embedding.backward, [_edges(rng), np.linspace(1, 8, 8) + 0.1 * rng.standard_normal(8)]
    if name == "spherical_harmonics":
        return (lambda v: spherical_harmonics.forward(v, 3)), (lambda d, c: (spherical_harmonics.backward(d, c),)), [_edges(rng)]
    if name == "mlp":
        ws = [rng.standard_normal((5, 6)), rng.standard_normal((6, 4))]
        fwd = lambda x, w0, w1: mlp.forward(x, [w0, w1], [0.4, 0.5])  # noqa: E731
        bwd = lambda d, c: (lambda dx, dws: (dx, *dws))(*mlp.backward(d, c))  # noqa: E731
        return fwd, bwd, [rng.standard_normal((9, 5)), *ws]
    if name.startswith("readout_"):
        act = name.split("_", 1)[1]
        fwd = lambda x, w0, w1: mlp.forward(x, [w0, w1], [0.4, 0.5], act)  # noqa: E731
        bwd = lambda d, c: (lambda dx, dws: (dx, *dws))(*mlp.backward(d, c))  # noqa: E731
        return fwd, bwd, [rng.standard_normal((9, 5)), rng.standard_normal((5, 6)), rng.standard_normal((6, 1))]
    if name == "linear":
        plan = linear_plan(Irreps("3x0e+2x1o+2x0e+1x2e"), Irreps("2x0e+3x1o+2x2e"))
        return (lambda x, w: linear.forward(x, w, plan)), linear.backward, [rng.standard_normal((4, plan.irreps_in.dim)), rng.standard_normal(plan.n_weights)]
    if name == "tp_conv":
        irreps_in, sh = Irreps("2x0e+2x1o+1x2e"), Irreps.spherical_harmonics(2)
        plan = conv_plan(irreps_in, sh, Irreps("3x0e+2x1o+2x1e+1x2e+1x0o"))
        src, dst = np.array([0, 1, 2, 3, 1, 0]), np.array([1, 0, 0, 2, 3, 3])
        fwd = lambda y, Y, w: tp_conv.forward(y, Y, w, src, dst, 4, plan)  # noqa: E731
        return fwd, tp_conv.backward, [rng.standard_normal((4, irreps_in.dim)), rng.standard_normal((6, sh.dim)), rng.standard_normal((6, plan.n_weights))]
    if name == "self_connection":
        plan = self_connection_plan(Irreps("2x0e+2x1o"), 3, Irreps("3x0e+1x1o+2x1e"))
        types = np.array([0, 1, 1, 0, 1])
        fwd = lambda h, a, w: self_connection.forward(h, a, types, w, plan)  # noqa: E731
        return fwd, self_connection.backward, [rng.standard_normal((5, 8)), rng.standard_normal((2, 3)), rng.standard_normal(plan.n_weights)]
    if name == "gate":
        plan = gate_plan(Irreps("2x0e+2x1o"), Irreps.spherical_harmonics(1), Irreps("2x0e+2x0o+2x1e+2x1o"))
        return (lambda z: gate.forward(z, plan)), (lambda d, c: (gate.backward(d, c),)), [rng.standard_normal((3, plan.irreps_in.dim))]
    if name == "zbl":
        zc, zn, rr = np.array([1.0, 6, 8, 6, 1, 8, 6]), np.array([6.0, 8, 1, 6, 8, 6, 1]), np.full(7, 1 / 2.5)
        fwd = lambda v: zbl.forward(v, zc, zn, rr, 6, 14.399645)  # noqa: E731
        return fwd, (lambda d, c: (zbl.backward(d, c),)), [_edges(rng)]
    raise KeyError(name)


OPS = ["edge_embedding", "spherical_harmonics", "mlp", "linear", "tp_conv", "self_connection", "gate", "zbl"] + [
    f"readout_{a}" for a in ("tanh", "mish", "gelu", "ssp", "softplus", "sigmoid")]


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("name", OPS)
def test_operation_derivatives(name, check):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    fwd, bwd, inputs = _case(name, rng)
    check(fwd, bwd, inputs, rng)
