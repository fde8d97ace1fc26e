"""Rung 3: every backend vs the reference (forward and backward, every dtype), the full model, the
training gradient, determinism across runs and thread counts, and the kernels with the JIT off."""
from __future__ import annotations

import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.kernels.registry import get_ops
from nequip_np.kernels.plan import conv_plan, gate_plan, linear_plan, self_connection_plan
from nequip_np.so3 import Irreps
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from tests.model_factory import molecule, periodic, small_model

BACKENDS = ["numpy", "numba"]
#: relative tolerance (max-abs error / max-abs value) of a backend vs the reference, by dtype
TOL = {np.float64: 1e-12, np.complex128: 1e-12, np.float32: 1e-5, np.complex64: 1e-5}
DTYPES = list(TOL)
OPS = ["edge_embedding", "spherical_harmonics", "mlp", "linear", "tp_conv", "self_connection", "gate", "zbl"]
REF = get_ops("numpy")


def _rand(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.issubdtype(dtype, np.complexfloating):
        x = x + 1e-3j * rng.standard_normal(shape)  # a tangent, as in the training pass
    return x.astype(dtype)


def _edges(rng, e, dtype):
    v = rng.standard_normal((e, 3))
    v = 1.5 * v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.5, 1.5, (e, 1))
    if np.issubdtype(dtype, np.complexfloating):
        v = v + 1e-3j * rng.standard_normal(v.shape)
    return v.astype(dtype)


def _run(name, ops, rng, dtype):
    """Forward + backward of one operation; returns every output array (forward first)."""
    geo = np.complex128 if np.issubdtype(dtype, np.complexfloating) else np.float64  # geometry precision
    if name == "edge_embedding":
        vec, w = _edges(rng, 40, geo), np.linspace(1, 8, 8) + 0.1 * rng.standard_normal(8)
        out, c = ops.edge_embedding.forward(vec, np.full(40, 1 / 2.5), w, 6, 2 * np.pi / 2.5**2)
        return [out, *ops.edge_embedding.backward(_rand(rng, out.shape, geo), c)]
    if name == "spherical_harmonics":
        out, c = ops.spherical_harmonics.forward(_edges(rng, 40, geo), 3)
        return [out, ops.spherical_harmonics.backward(_rand(rng, out.shape, geo), c)]
    if name == "mlp":
        ws = [_rand(rng, (5, 16), dtype), _rand(rng, (16, 7), dtype)]
        out, c = ops.mlp.forward(_rand(rng, (30, 5), dtype), ws, [0.4, 0.5])
        dx, dws = ops.mlp.backward(_rand(rng, out.shape, dtype), c)
        return [out, dx, *dws]
    if name == "linear":
        plan = linear_plan(Irreps("3x0e+2x1o+2x0e+1x2e"), Irreps("2x0e+3x1o+2x2e"))
        out, c = ops.linear.forward(_rand(rng, (9, plan.irreps_in.dim), dtype), _rand(rng, plan.n_weights, dtype), plan)
        return [out, *ops.linear.backward(_rand(rng, out.shape, dtype), c)]
    if name == "tp_conv":
        irreps_in, sh = Irreps("3x0e+2x1o+2x1e+1x2e+1x3o"), Irreps.spherical_harmonics(3)
        plan = conv_plan(irreps_in, sh, Irreps("3x0e+2x0o+2x1o+2x1e+1x2e+2x2o+1x3o"))
        n, e = 6, 23  # unsorted edges, one node without incoming edges
        src, dst = rng.integers(0, n, e), rng.integers(0, n - 1, e)
        y, Y, w = _rand(rng, (n, irreps_in.dim), dtype), _rand(rng, (e, sh.dim), dtype), _rand(rng, (e, plan.n_weights), dtype)
        out, c = ops.tp_conv.forward(y, Y, w, src, dst, n, plan)
        return [out, *ops.tp_conv.backward(_rand(rng, out.shape, dtype), c)]
    if name == "self_connection":
        plan = self_connection_plan(Irreps("2x0e+2x1o+1x2e"), 3, Irreps("3x0e+1x1o+2x1e+1x2e"))
        types = np.array([0, 2, 2, 0, 2, 0, 0])  # species 1 absent
        out, c = ops.self_connection.forward(_rand(rng, (7, plan.irreps_in.dim), dtype), _rand(rng, (3, 3), dtype),
                                             types, _rand(rng, plan.n_weights, dtype), plan)
        return [out, *ops.self_connection.backward(_rand(rng, out.shape, dtype), c)]
    if name == "gate":
        plan = gate_plan(Irreps("2x0e+2x1o"), Irreps.spherical_harmonics(1), Irreps("2x0e+2x0o+2x1e+2x1o"))
        out, c = ops.gate.forward(_rand(rng, (8, plan.irreps_in.dim), dtype), plan)
        return [out, ops.gate.backward(_rand(rng, out.shape, dtype), c)]
    if name == "zbl":
        e = 7
        zc, zn = np.array([1.0, 6, 8, 6, 1, 8, 6]), np.array([6.0, 8, 1, 6, 8, 6, 1])
        out, c = ops.zbl.forward(_edges(rng, e, geo), zc, zn, np.full(e, 1 / 2.5), 6, 14.399645)
        return [out, ops.zbl.backward(_rand(rng, out.shape, geo), c)]
    raise KeyError(name)


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_operation_matches_reference(backend, name, dtype):
    seed = zlib.crc32(f"{name}{np.dtype(dtype).name}".encode())
    got = _run(name, get_ops(backend), np.random.default_rng(seed), dtype)
    want = _run(name, REF, np.random.default_rng(seed), dtype)
    geometry = name in ("edge_embedding", "spherical_harmonics", "zbl")
    tol = 1e-12 if geometry else TOL[dtype]
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape, g.dtype, w.dtype)
        assert _rel(g, w) <= tol, f"{name} output {k}: rel err {_rel(g, w):.3g} > {tol}"
        if np.iscomplexobj(w):  # the tangent (imaginary part) is what the training pass needs
            assert _rel(g.imag, w.imag) <= tol, f"{name} output {k} (imag): {_rel(g.imag, w.imag):.3g}"


# ------------------------------------------------------------------ full model
def _graphs(rng, model):
    c = model.config
    return {"molecule": graph_from_atoms(molecule(rng, 9), c.type_names, c.r_max),
            "periodic": graph_from_atoms(periodic(rng), c.type_names, c.r_max)}


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_matches_reference(backend, dtype, tol):
    ref, model = small_model(model_dtype=dtype), small_model(backend=backend, model_dtype=dtype)
    assert f"backend={backend!r}" in repr(model)
    for kind, graph in _graphs(np.random.default_rng(5), ref).items():
        want, got = ref.compute(graph), model.compute(graph)
        for key in ("total_energy", "atomic_energy", "forces"):
            scale = np.max(np.abs(want["forces"])) if key == "forces" else np.max(np.abs(want[key] - np.mean(want[key]))) + 1.0
            assert np.max(np.abs(got[key] - want[key])) <= tol * scale, (kind, key)
        if kind == "periodic":
            assert np.max(np.abs(got["stress"] - want["stress"])) <= tol * np.max(np.abs(want["stress"])), kind


def _labelled_batch(model, rng):
    graphs = list(_graphs(rng, model).values())
    for g in graphs:
        g.energy = np.array([rng.normal(-1000.0, 1.0)])
        g.forces = rng.standard_normal((g.n_atoms, 3))
        s = rng.standard_normal((3, 3)) * 0.05
        g.stress = (s + s.T)[None] if np.all(g.pbc) else np.full((1, 3, 3), np.nan)
    return batch_graphs(graphs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_gradient_matches_reference(backend):
    coeffs = LossCoefficients(1.0, 1.0, 0.5)
    ref, model = small_model(), small_model(backend=backend)
    batch = _labelled_batch(ref, np.random.default_rng(11))
    loss_r, _, grads_r, _ = loss_and_grad(ref, batch, coeffs)
    loss, _, grads, _ = loss_and_grad(model, batch, coeffs)
    assert abs(loss - loss_r) <= 1e-12 * abs(loss_r)
    for k in grads_r:
        assert _rel(grads[k], grads_r[k]) <= 1e-10, (k, _rel(grads[k], grads_r[k]))


# ------------------------------------------------------------------ determinism
def _everything(model, batch):
    out = model.compute(batch)
    _, _, grads, _ = loss_and_grad(model, batch, LossCoefficients(1.0, 1.0, 0.5))
    return [out["total_energy"], out["forces"], out["stress"]] + [grads[k] for k in sorted(grads)]


def test_numba_bitwise_deterministic_across_runs_and_threads():
    import numba

    model = small_model(backend="numba")
    batch = _labelled_batch(model, np.random.default_rng(3))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        a, b = _everything(model, batch), _everything(model, batch)
        numba.set_num_threads(1)
        c = _everything(model, batch)
    finally:
        numba.set_num_threads(before)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, z)


# ------------------------------------------------------------------ JIT off (kernel bodies as Python)
_NOJIT_SCRIPT = r"""
import numpy as np
from tests.test_backends import _run, _rel, REF
from nequip_np.kernels.registry import get_ops
ops = get_ops("numba")
for name in ["edge_embedding", "spherical_harmonics", "tp_conv", "gate"]:
    for dtype in [np.float64, np.complex128]:
        got = _run(name, ops, np.random.default_rng(1), dtype)
        want = _run(name, REF, np.random.default_rng(1), dtype)
        for g, w in zip(got, want):
            assert _rel(g, w) <= 1e-12, (name, dtype, _rel(g, w))
from tests.model_factory import molecule, small_model
from nequip_np.data.graph import graph_from_atoms
ref, m = small_model(num_layers=2, l_max=1, num_features=[2, 2]), small_model(backend="numba", num_layers=2, l_max=1, num_features=[2, 2])
g = graph_from_atoms(molecule(np.random.default_rng(2), 4), ref.config.type_names, ref.config.r_max)
a, b = ref.compute(g), m.compute(g)
assert np.max(np.abs(a["forces"] - b["forces"])) <= 1e-12 * np.max(np.abs(a["forces"]))
print("NOJIT-OK")
"""


def test_numba_kernels_with_jit_disabled():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=root)
    res = subprocess.run([sys.executable, "-c", _NOJIT_SCRIPT], cwd=root, env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0 and "NOJIT-OK" in res.stdout, res.stderr[-3000:]


def test_blas_runs_single_threaded_inside_parallel_numba_passes():
    """Numba's threads and BLAS's thread pool must not compete for the same cores (kernels/_numba_util.py)."""
    import numba
    from threadpoolctl import threadpool_info

    from nequip_np.kernels._numba_util import blas_single_threaded
    from nequip_np.kernels.registry import get_ops

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if numba.config.NUMBA_NUM_THREADS < 2 or not before:
        pytest.skip("needs two cores for Numba and a BLAS that threadpoolctl sees")
    assert get_ops("numba").call_context is blas_single_threaded
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(2)
        with blas_single_threaded():
            assert set(blas_threads()) == {1}
        numba.set_num_threads(1)  # one Numba thread: BLAS keeps its own threads
        with blas_single_threaded():
            assert blas_threads() == before
    finally:
        numba.set_num_threads(previous)
    assert blas_threads() == before


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.complex128])
def test_mlp_row_blocks_match_the_reference_bitwise_across_threads(dtype):
    """3000 rows (> ROWS: three blocks on the thread pool), silu fused and parallel; dual and plain complex."""
    import numba

    from nequip_np.kernels.mlp import cpu, reference

    rng = np.random.default_rng(0)
    n = 3 * cpu.ROWS - 72
    x = rng.standard_normal((n, 8)).astype(dtype)
    if np.iscomplexobj(x):  # a complex-step tangent: the dual-number path
        x = x + 1e-20j * rng.standard_normal((n, 8))
    weights = [rng.standard_normal((8, 64)).astype(x.real.dtype), rng.standard_normal((64, 16)).astype(x.real.dtype)]
    alphas = [8 ** -0.5, 64 ** -0.5]
    d_out = rng.standard_normal((n, 16)).astype(dtype)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ref_y, ref_cache = reference.forward(x, weights, alphas, "silu")
    ref_dx, ref_dw = reference.backward(d_out, ref_cache)
    results = []
    previous = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            y, cache = cpu.forward(x, weights, alphas, "silu")
            dx, dw = cpu.backward(d_out, cache)
            results.append((y, dx, *dw))
    finally:
        numba.set_num_threads(previous)
    for got, want in zip(results[0], (ref_y, ref_dx, *ref_dw)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())
    for a, b in zip(results[0], results[-1]):
        assert np.array_equal(a, b)
    if np.iscomplexobj(x):  # tangents: the imaginary parts carry the derivative exactly
        np.testing.assert_allclose(results[0][0].imag, ref_y.imag, rtol=1e-12, atol=1e-12 * np.abs(ref_y.imag).max())
        big = x.real + 0.5j * x.imag / 1e-20  # not a complex step: the plain complex path
        y_big, _ = cpu.forward(big, weights, alphas, "silu")
        np.testing.assert_allclose(y_big, reference.forward(big, weights, alphas, "silu")[0], rtol=1e-12, atol=1e-12)
