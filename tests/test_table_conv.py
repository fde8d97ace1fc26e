"""The radial table fused into the tensor-product convolution (``kernels/table_conv``).

Ladder: the reference (radial_table then tp_conv) against finite differences in every input; the Numba
kernel, which never forms the (E, n_w) weights, against the reference in float64 and float32, on its
serial driver and its parallel ones (CSR forward; split one-sweep or two-pass reverse), the latter
bitwise the same on any number of threads; the model with tables, numba (fused)
against numpy (reference composition), on a molecule and a periodic cell, energies, forces, stress.
"""

from __future__ import annotations

import copy

import numba
import numpy as np
import pytest

from nequip_np.calculator import NequIPCalculator
from nequip_np.kernels.plan import conv_plan
from nequip_np.kernels.table_conv import cpu as tc_cpu
from nequip_np.kernels.table_conv import reference as tc_ref
from nequip_np.model.radial_tables import build_radial_tables
from nequip_np.so3 import Irreps
from tests.gradcheck import check_backward
from tests.kernel_cases import validate_result
from tests.model_factory import molecule, periodic, small_model

N_NODES, N_EDGES, R_MAX = 7, 40, 3.5


def _case(dtype="float64", seed=0):
    """Unsorted edges, a few beyond their cutoff (two cutoffs), node N-1 receives nothing; l up to 2."""
    rng = np.random.default_rng(seed)
    model = small_model(seed=2)
    table = build_radial_tables(model, n_points=48).layer(1, dtype)
    irreps_in, sh = Irreps("3x0e+2x1o+1x1e+1x2e"), Irreps.spherical_harmonics(2)
    plan = conv_plan(irreps_in, sh, Irreps("3x0e+2x0o+2x1o+2x1e+1x2e+2x2o"))
    n_w = table.shape[2]
    if plan.n_weights > n_w:  # the kernel reads the first plan.n_weights channels: give it enough
        table = np.ascontiguousarray(np.tile(table, (1, 1, -(-plan.n_weights // n_w)))[:, :, : plan.n_weights])
    else:
        table = np.ascontiguousarray(table[:, :, : plan.n_weights])
    vec = rng.standard_normal((N_EDGES, 3))
    vec *= (rng.uniform(0.3, 1.15, N_EDGES) * R_MAX / np.linalg.norm(vec, axis=1))[:, None]
    rr = np.where(rng.random(N_EDGES) < 0.3, 1 / (0.8 * R_MAX), 1 / R_MAX)
    src, dst = rng.integers(0, N_NODES, N_EDGES), rng.integers(0, N_NODES - 1, N_EDGES)
    y = rng.standard_normal((N_NODES, irreps_in.dim)).astype(dtype)
    Y = rng.standard_normal((N_EDGES, sh.dim)).astype(dtype)
    return y, Y, vec, rr, table, src, dst, plan


def _run(mod, case, d_M=None):
    y, Y, vec, rr, table, src, dst, plan = case
    M, cache = mod.forward(y, Y, vec, rr, table, src, dst, N_NODES, plan)
    if d_M is None:
        d_M = np.random.default_rng(9).standard_normal(M.shape).astype(M.dtype)
    return (M, *mod.backward(d_M, cache))


def test_reference_backward_matches_finite_differences():
    y, Y, vec, rr, table, src, dst, plan = _case()
    outside = np.linalg.norm(vec, axis=1) * rr >= 1
    assert 0 < outside.sum() < N_EDGES  # both branches of the table are exercised

    def fwd(y_, Y_, v_):
        return tc_ref.forward(y_, Y_, v_, rr, table, src, dst, N_NODES, plan)

    for seed in range(3):
        check_backward(fwd, tc_ref.backward, [y, Y, vec], np.random.default_rng(seed), rtol=1e-7)


def _force(monkeypatch, driver):
    """serial drivers / CSR forward + split one-sweep reverse / CSR forward + two-pass reverse."""
    monkeypatch.setattr(tc_cpu, "_serial", lambda n_edges: driver == "serial")
    monkeypatch.setattr(tc_cpu, "_split", lambda n, dim, dtype: driver == "split")


@pytest.mark.parametrize("driver", ["serial", "split", "two-pass"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cpu_kernel_equals_reference(dtype, driver, monkeypatch):
    _force(monkeypatch, driver)
    case = _case(dtype)
    got, want = _run(tc_cpu, case), _run(tc_ref, case)
    tol_dtype = dtype
    for k, (g, w) in enumerate(zip(got, want)):
        what = ["M", "d_y", "d_Y", "d_edge_vec"][k]
        if what == "d_edge_vec":  # geometry gradient: float64 whatever the model dtype
            assert g.dtype == w.dtype == np.float64
        validate_result(g, w, tol_dtype, f"table_conv {what} ({dtype}, {driver})")
    # the edges beyond their cutoff get no gradient and send no message
    y, Y, vec, rr, *_ = case
    outside = np.linalg.norm(vec, axis=1) * rr >= 1
    assert np.all(got[2][outside] == 0) and np.all(got[3][outside] == 0)


@pytest.mark.parametrize("driver", ["split", "two-pass"])
def test_parallel_drivers_are_bitwise_independent_of_threads_and_match_serial(driver, monkeypatch):
    """Fixed reduction orders: a parallel driver gives the same bits on 1 and on all threads; the
    serial driver (a separately compiled loop: FMA contraction and SIMD sums may differ) agrees to ~1 ulp."""
    case = _case("float64", seed=4)
    _force(monkeypatch, driver)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _run(tc_cpu, case)
    finally:
        numba.set_num_threads(threads)
    many = _run(tc_cpu, case)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)
    _force(monkeypatch, "serial")
    for a, b in zip(_run(tc_cpu, case), many):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-14 * np.abs(b).max())


def test_complex_edges_are_refused():
    y, Y, vec, rr, table, src, dst, plan = _case()
    with pytest.raises(TypeError, match="inference"):
        tc_cpu.forward(y, Y, vec.astype(complex), rr, table, src, dst, N_NODES, plan)


@pytest.mark.parametrize("make", [lambda rng: molecule(rng, 9), lambda rng: periodic(rng)], ids=["molecule", "cell"])
@pytest.mark.parametrize("driver", ["serial", "split", "two-pass"])
def test_model_with_tables_numba_fused_equals_reference(make, driver, monkeypatch):
    """Energies, forces and stress of the whole model with tables: fused kernel vs reference composition."""
    _force(monkeypatch, driver)
    rng = np.random.default_rng(11)
    atoms = make(rng)
    outs = []
    for backend in ("numpy", "numba"):
        model = copy.copy(small_model(seed=5, backend=backend, per_edge_type_cutoff={"H": {"H": 2.6, "C": 3.0}}))
        model.use_radial_tables(64)
        graph = NequIPCalculator(model, skin=0.0).graph(atoms)
        outs.append(model.compute(graph, forces=True, stress=bool(atoms.pbc.any())))
    ref, got = outs
    for key in ("total_energy", "forces") + (("stress",) if atoms.pbc.any() else ()):
        scale = max(float(np.max(np.abs(ref[key]))), 1e-300)
        assert np.max(np.abs(got[key] - ref[key])) <= 1e-12 * scale, key
