"""Rung 3: every backend vs the reference (forward and backward, every dtype), the full model, the
training gradient, determinism across runs and thread counts, and the kernels with the JIT off."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.kernels.registry import get_ops
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from tests.kernel_cases import DTYPES, GEOMETRY, NAMES, build, compare
from tests.model_factory import molecule, periodic, small_model

BACKENDS = ["numpy", "numba"]
REF = get_ops("numpy")


#: (case, dtype) pairs; geometry runs in float64 / complex128 only, so its 32-bit pairs would repeat those
CASES = [(n, d) for n in NAMES for d in DTYPES if not (n in GEOMETRY and d in ("float32", "complex64"))]


@pytest.mark.parametrize("name,dtype", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_operation_matches_reference(backend, name, dtype):
    """The one case table (``tests/kernel_cases.py``), forward and backward, under its one tolerance rule."""
    op = build(name, dtype).op
    compare(name, dtype, getattr(get_ops(backend), op), getattr(REF, op))


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)) if b.size else 0.0


# ------------------------------------------------------------------ full model
def _graphs(rng, model):
    c = model.config
    return {
        "molecule": graph_from_atoms(molecule(rng, 9), c.type_names, c.r_max),
        "periodic": graph_from_atoms(periodic(rng), c.type_names, c.r_max),
    }


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("backend", BACKENDS)
def test_model_matches_reference(backend, dtype, tol):
    ref, model = small_model(model_dtype=dtype), small_model(backend=backend, model_dtype=dtype)
    assert f"backend={backend!r}" in repr(model)
    for kind, graph in _graphs(np.random.default_rng(5), ref).items():
        want, got = ref.compute(graph), model.compute(graph)
        for key in ("total_energy", "atomic_energy", "forces"):
            scale = (
                np.max(np.abs(want["forces"]))
                if key == "forces"
                else np.max(np.abs(want[key] - np.mean(want[key]))) + 1.0
            )
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
from tests.kernel_cases import compare
from nequip_np.kernels.registry import get_ops
ops, ref = get_ops("numba"), get_ops("numpy")
for name in ["edge_embedding", "spherical_harmonics", "tp_conv", "gate", "mlp"]:
    for dtype in ["float64", "complex128"]:
        compare(name, dtype, getattr(ops, name), getattr(ref, name))
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
    res = subprocess.run(
        [sys.executable, "-c", _NOJIT_SCRIPT], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
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
        numba.set_num_threads(1)  # one Numba thread: one core, BLAS's pool must not spin beside it
        with blas_single_threaded():
            assert set(blas_threads()) == {1}
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
    alphas = [8**-0.5, 64**-0.5]
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
