"""Radial tables (``kernels/radial_table``, ``model/radial_tables.py``): the interpolant, the kernels, the model.

Ladder: the quintic Hermite basis against exact polynomials and its C² joins; the exact x-derivatives
of the embedding and the MLP against the reference and finite differences; Numba kernel vs reference;
backward vs finite differences; the model with tables: F = −∇E of the *tabulated* energy, the error
against the MLP at the default size, the harness's checks, NVE drift; the opt-in switches and errors.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nequip_np.calculator import NequIPCalculator
from nequip_np.kernels.edge_embedding import reference as emb_ref
from nequip_np.kernels.mlp import reference as mlp_ref
from nequip_np.kernels.radial_table import cpu as rt_cpu
from nequip_np.kernels.radial_table import reference as rt_ref
from nequip_np.md.run import run_md
from nequip_np.model.nequip import _alphas
from nequip_np.model.radial_tables import DEFAULT_POINTS, build_radial_tables, embedding_derivs, mlp_derivs
from nequip_np.testing import check_calculator
from tests.model_factory import molecule, periodic, small_model

#: a cutoff per species pair (H–H, H–C shorter): one table per layer must serve them all
PAIR_CUTOFFS = {"H": {"H": 2.6, "C": 3.0}}


def _graph(model, atoms):
    return NequIPCalculator(model, skin=0.0).graph(atoms)


def _table_model(model, n_points=DEFAULT_POINTS):
    tab = copy.copy(model)
    tab.use_radial_tables(n_points)
    return tab


# ------------------------------------------------------------------------------ the interpolant
def test_quintic_hermite_reproduces_quintics_and_joins_c2():
    rng = np.random.default_rng(0)
    coef = rng.standard_normal((6, 3))  # three quintic polynomials, one per channel
    poly = np.polynomial.polynomial
    n = 9
    x = np.linspace(0, 1, n)
    table = rt_ref.make_table(
        poly.polyval(x, coef).T, poly.polyval(x, poly.polyder(coef)).T, poly.polyval(x, poly.polyder(coef, 2)).T
    )
    xs = rng.uniform(0, 0.999, 200)
    S, dS = rt_ref.evaluate(xs, table)
    np.testing.assert_allclose(S, poly.polyval(xs, coef).T, atol=1e-12)
    np.testing.assert_allclose(dS, poly.polyval(xs, poly.polyder(coef)).T, atol=1e-11)
    # a non-polynomial (sin) is only interpolated, yet S, S' and S'' join continuously at every node
    table = rt_ref.make_table(np.sin(7 * x)[:, None], 7 * np.cos(7 * x)[:, None], -49 * np.sin(7 * x)[:, None])
    nodes, eps = x[1:-1], 1e-7
    (Sl, dSl), (Sr, dSr) = rt_ref.evaluate(nodes - eps, table), rt_ref.evaluate(nodes + eps, table)
    assert np.abs(Sl - Sr).max() < 1e-5 and np.abs(dSl - dSr).max() < 1e-4  # O(eps) steps only
    d2l = (dSl - rt_ref.evaluate(nodes - 2 * eps, table)[1]) / eps
    d2r = (rt_ref.evaluate(nodes + 2 * eps, table)[1] - dSr) / eps
    np.testing.assert_allclose(d2l, d2r, atol=1e-3 * 49)
    np.testing.assert_allclose(d2l[:, 0], -49 * np.sin(7 * nodes), rtol=1e-3, atol=1e-3)
    # beyond the cutoff the tabulated function is zero
    S, dS = rt_ref.evaluate(np.array([1.0, 1.3]), table)
    assert not S.any() and not dS.any()


def test_embedding_and_mlp_derivatives_are_exact():
    model = small_model(seed=1)
    c = model.config
    x = np.linspace(0.02, 0.98, 57)
    args = (model.buffers["bessel_weights"], c.polynomial_cutoff_p, 2 * np.pi / c.r_max**2)
    b = embedding_derivs(x, *args)[0]
    vec = np.zeros((x.size, 3))
    vec[:, 1] = x * c.r_max
    want, _ = emb_ref.forward(vec, np.full(x.size, 1 / c.r_max), *args)
    np.testing.assert_allclose(b, want, rtol=1e-13, atol=1e-14)
    h = 1e-5
    for fn in (
        lambda x: embedding_derivs(x, *args),
        lambda x: mlp_derivs(
            *embedding_derivs(x, *args),
            [model.params["layer1.radial.0"], model.params["layer1.radial.1"]],
            _alphas(model.plan.layers[1].radial_dims),
        ),
    ):
        f0, f1, f2 = fn(x)
        p, m = fn(x + h), fn(x - h)
        np.testing.assert_allclose((p[0] - m[0]) / (2 * h), f1, rtol=1e-7, atol=1e-7 * np.abs(f1).max())
        np.testing.assert_allclose((p[1] - m[1]) / (2 * h), f2, rtol=1e-7, atol=1e-7 * np.abs(f2).max())
    layer = model.plan.layers[1]
    w_mlp, _ = mlp_ref.forward(
        want, [model.params["layer1.radial.0"], model.params["layer1.radial.1"]], _alphas(layer.radial_dims), "silu"
    )
    np.testing.assert_allclose(f0, w_mlp, rtol=1e-12, atol=1e-13 * np.abs(w_mlp).max())
    # near x = 0 the Taylor branch and the closed form agree (no cancellation blow-up)
    b_small = embedding_derivs(np.array([0.0, 1e-6, 0.1 / np.pi / args[0].max()]), *args)
    assert all(np.isfinite(a).all() for a in b_small)


# ------------------------------------------------------------------------------ the kernels
def _edges(rng, n=40, r_max=3.5):
    vec = rng.standard_normal((n, 3))
    vec *= (rng.uniform(0.3, 1.15, n) * r_max / np.linalg.norm(vec, axis=1))[:, None]  # a few beyond r_max
    return vec, np.where(rng.random(n) < 0.3, 1 / (0.8 * r_max), 1 / r_max)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cpu_kernel_equals_reference(dtype):
    rng = np.random.default_rng(3)
    tables = build_radial_tables(small_model(seed=2), n_points=64)
    table = tables.layer(1, dtype)
    vec, rr = _edges(rng)
    w_ref, c_ref = rt_ref.forward(vec, rr, table)
    w_cpu, c_cpu = rt_cpu.forward(vec, rr, table)
    assert w_cpu.dtype == w_ref.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 2e-6
    assert np.abs(w_cpu - w_ref).max() <= tol * np.abs(w_ref).max()
    assert (w_ref[np.linalg.norm(vec, axis=1) * rr >= 1] == 0).all()
    dw = rng.standard_normal(w_ref.shape).astype(dtype)
    (g_ref,), (g_cpu,) = rt_ref.backward(dw, c_ref), rt_cpu.backward(dw, c_cpu)
    assert np.abs(g_ref).max() > 0
    assert np.abs(g_cpu - g_ref).max() <= tol * np.abs(g_ref).max()


@pytest.mark.parametrize("impl", [rt_ref, rt_cpu], ids=["reference", "cpu"])
def test_backward_matches_finite_differences(impl):
    rng = np.random.default_rng(4)
    table = build_radial_tables(small_model(seed=3), n_points=32).tables[0]
    vec, rr = _edges(rng)
    dw, v = rng.standard_normal((vec.shape[0], table.shape[2])), rng.standard_normal(vec.shape)
    h = 1e-6
    fd = np.sum(dw * (impl.forward(vec + h * v, rr, table)[0] - impl.forward(vec - h * v, rr, table)[0])) / (2 * h)
    got = np.sum(impl.backward(dw, impl.forward(vec, rr, table)[1])[0] * v)
    assert abs(got - fd) <= 1e-7 * max(1.0, abs(fd))


def test_complex_edges_are_refused():
    table = np.zeros((8, 3, 2))
    for impl in (rt_ref, rt_cpu):
        with pytest.raises(TypeError, match="inference"):
            impl.forward(np.ones((2, 3), complex), np.ones(2), table)


# ------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_tabulated_forces_are_minus_the_gradient_of_the_tabulated_energy(backend):
    rng = np.random.default_rng(5)
    model = _table_model(
        small_model(
            seed=6,
            backend=backend,
            per_edge_type_cutoff=PAIR_CUTOFFS,  # E ~ 1 eV:
            per_type_energy_shifts={"H": 0.0, "C": 0.0, "O": 0.0},
        ),
        n_points=24,
    )  # FD noise 1e-11
    atoms = molecule(rng, 6)
    out = model.compute(_graph(model, atoms))
    v, h = rng.standard_normal(atoms.positions.shape), 1e-5
    e = []
    for s in (1, -1):
        moved = atoms.copy()
        moved.positions += s * h * v
        e.append(model.compute(_graph(model, moved), forces=False, stress=False)["total_energy"][0])
    fd = (e[0] - e[1]) / (2 * h)
    # a coarse table (24 nodes) differs from the MLP at ~1e-5; its forces must still be its own gradient
    assert abs(-np.sum(out["forces"] * v) - fd) <= 1e-8 * max(1.0, abs(fd))


@pytest.mark.parametrize("make", [lambda rng: molecule(rng, 7), lambda rng: periodic(rng)], ids=["molecule", "cell"])
def test_default_table_error_against_the_mlp(make):
    rng = np.random.default_rng(7)
    model = small_model(seed=8, backend="numba", per_edge_type_cutoff=PAIR_CUTOFFS)
    tab = _table_model(model)
    atoms = make(rng)
    g = _graph(model, atoms)
    ref, out = model.compute(g), tab.compute(g)
    assert np.abs(out["forces"] - ref["forces"]).max() <= 1e-7 * np.abs(ref["forces"]).max()
    assert abs(out["total_energy"][0] - ref["total_energy"][0]) <= 1e-9 * abs(ref["total_energy"][0])
    if atoms.pbc.all():
        assert np.abs(out["stress"] - ref["stress"]).max() <= 1e-7 * np.abs(ref["stress"]).max()
    # and a coarse table is measurably worse: the comparison can fail
    coarse = _table_model(model, n_points=12).compute(g)
    assert np.abs(coarse["forces"] - ref["forces"]).max() > 1e-7 * np.abs(ref["forces"]).max()


def test_harness_checks_pass_with_tables(rng):
    model = small_model(seed=4, num_layers=2)
    calc = NequIPCalculator(model, radial_table=True)
    for atoms in (molecule(rng, 6), periodic(rng, small=True)):
        report = check_calculator(
            calc, atoms, cutoff=model.config.r_max, md_steps=20, n_rotations=2, fd_samples=4, md_timestep_fs=0.25
        )
        assert report.passed, str(report)
    assert calc.model.radial_tables is not None and model.radial_tables is None  # the caller's model untouched


def test_nve_drift_with_tables():
    rng = np.random.default_rng(2)
    atoms = molecule(rng, 8)
    calc = NequIPCalculator(small_model(num_layers=1, l_max=1, num_features=4), radial_table=True)
    res = run_md(atoms, calc, steps=400, timestep_fs=0.25, temperature_K=300.0, ensemble="nve", seed=1, log_interval=1)
    log = np.array(res.log)
    epot, etot = log[:, 2], log[:, 4]
    assert np.ptp(epot) > 1e-3
    assert np.std(etot) < 2e-3 * np.std(epot)
    slope = np.polyfit(log[:, 1], etot / len(atoms), 1)[0]  # eV/atom/ps
    assert abs(slope) < 1e-4  # 0.1 meV/atom/ps


def test_stale_tables_and_training_are_refused():
    model = small_model(seed=9)
    model.use_radial_tables(32)
    g = _graph(model, molecule(np.random.default_rng(1), 5))
    model.params["layer0.radial.0"][0, 0] += 0.1  # changed in place: the tables no longer match
    with pytest.raises(RuntimeError, match="changed since the radial tables were built"):
        model.compute(g)
    model.load_params({"layer0.radial.0": model.params["layer0.radial.0"]})  # load_params rebuilds them
    e = model.compute(g)["total_energy"]
    model.use_radial_tables(None)
    assert model.radial_tables is None and abs(model.compute(g)["total_energy"] - e) < 1e-4
    model.use_radial_tables(32)
    atomic, cache = model.forward(g, g.edge_vectors(), model.params)
    with pytest.raises(RuntimeError, match="no gradients of the radial MLP"):
        model.backward(np.ones_like(atomic), cache, g, model.params)
    with pytest.raises(ValueError, match="n_points"):
        model.use_radial_tables(3)


def test_auto_size_meets_its_bound_or_refuses(monkeypatch):
    import nequip_np.model.radial_tables as rt

    model = small_model(seed=2, num_layers=1)
    assert build_radial_tables(model).n_points == DEFAULT_POINTS  # the default size meets the bound here
    monkeypatch.setattr(rt, "DEFAULT_POINTS", 16)
    coarse = build_radial_tables(model, 16).error["dw"]
    monkeypatch.setattr(rt, "AUTO_TOLERANCE", coarse / 100)  # needs 2-3 doublings (error ~ h^5)
    tables = build_radial_tables(model)
    assert tables.n_points in (32, 64, 128) and tables.error["dw"] <= coarse / 100
    monkeypatch.setattr(rt, "MAX_POINTS", 32)
    with pytest.raises(ValueError, match="too rough to tabulate"):
        build_radial_tables(model)


def test_calculator_and_cli_switches(tmp_path, capsys):
    from ase.io import write

    from nequip_np.cli import main

    model = small_model(seed=1, num_layers=1, l_max=1, num_features=4)
    assert "radial_table=64" in repr(NequIPCalculator(model, radial_table=64))
    with pytest.raises(TypeError, match="radial_table"):
        NequIPCalculator(model, radial_table="yes")
    model.save(tmp_path / "m.npz")
    write(tmp_path / "mol.xyz", molecule(np.random.default_rng(5), 6))
    common = [str(tmp_path / "m.npz"), str(tmp_path / "mol.xyz"), "--steps", "4", "--no-progress", "--seed", "1"]
    assert main(["md", *common, "--trajectory", str(tmp_path / "a.traj")]) == 0  # tables by default
    assert f"radial_table={DEFAULT_POINTS}" in capsys.readouterr().out
    assert main(["md", *common, "--trajectory", str(tmp_path / "b.traj"), "--radial-table", "64"]) == 0
    assert "radial_table=64" in capsys.readouterr().out
    assert main(["md", *common, "--trajectory", str(tmp_path / "c.traj"), "--no-radial-table"]) == 0
    assert "radial_table" not in capsys.readouterr().out
