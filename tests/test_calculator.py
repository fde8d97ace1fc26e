"""The ASE calculator: results contract, equality with the model, neighbour-list reuse, harness, loading.

Everything in float64. Equalities that hold bit for bit (same graph, same arithmetic) are tested with
``assert_array_equal``, not a tolerance: the reused neighbour list must give *the same* edges.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError

from nequip_np.calculator import NeighborListCache, NequIPCalculator
from nequip_np.conventions import stress_to_voigt
from nequip_np.data.graph import graph_from_atoms
from nequip_np.data.neighborlist import neighbor_list
from nequip_np.interop import load_any_model
from nequip_np.testing import check_calculator
from tests.model_factory import molecule, periodic, small_model
from tests.nequip_fixtures import FIXTURES, graph_from_fixture


@pytest.fixture(scope="module")
def model():
    return small_model(seed=3)


def _structures(rng):
    return {"molecule": molecule(rng, 8), "periodic": periodic(rng), "small_cell": periodic(rng, small=True)}


def _direct(model, atoms):
    c = model.config
    graph = graph_from_atoms(atoms, c.type_names, c.r_max, c.per_edge_type_cutoff)
    return model.compute(graph, forces=True, stress=bool(np.all(atoms.pbc)))


# ------------------------------------------------------------------------------------ contract
@pytest.mark.parametrize("kind", ["molecule", "periodic", "small_cell"])
def test_results_equal_model_outputs(model, rng, kind):
    atoms = _structures(rng)[kind]
    atoms.calc = NequIPCalculator(model)
    atoms.get_forces()
    res, out = atoms.calc.results, _direct(model, atoms)
    periodic_ = bool(atoms.pbc.all())
    expect = {"energy", "free_energy", "energies", "forces"} | ({"stress"} if periodic_ else set())
    assert set(res) == expect
    assert isinstance(res["energy"], float) and res["free_energy"] == res["energy"]
    assert res["energy"] == float(out["total_energy"][0])
    np.testing.assert_array_equal(res["energies"], out["atomic_energy"])
    np.testing.assert_array_equal(res["forces"], out["forces"])
    assert res["energies"].shape == (len(atoms),) and res["forces"].shape == (len(atoms), 3)
    np.testing.assert_allclose(res["energies"].sum(), res["energy"], rtol=1e-13)
    if periodic_:
        assert res["stress"].shape == (6,)
        np.testing.assert_array_equal(res["stress"], stress_to_voigt(out["stress"][0]))
        np.testing.assert_array_equal(atoms.get_stress(voigt=False), out["stress"][0])


def test_stress_not_implemented_unless_periodic_in_3d(model, rng):
    mol = molecule(rng, 6)
    mol.calc = NequIPCalculator(model)
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        mol.get_stress()
    slab = periodic(rng)
    slab.pbc = [True, True, False]
    slab.calc = NequIPCalculator(model)
    slab.get_potential_energy()
    assert "stress" not in slab.calc.results
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()


def test_ase_caching_and_recalculation(model, rng):
    atoms = molecule(rng, 6)
    calc = NequIPCalculator(model)
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.get_forces()
    assert calc.n_calculations == 1  # all properties from one evaluation, then cached
    atoms.positions[0, 0] += 0.01
    assert atoms.get_potential_energy() != e0 and calc.n_calculations == 2


def test_unknown_species_error_names_element_and_known(model):
    atoms = Atoms("CHNSi", positions=np.arange(12.0).reshape(4, 3))
    atoms.calc = NequIPCalculator(model)
    with pytest.raises(ValueError) as err:
        atoms.get_potential_energy()
    msg = str(err.value)
    assert "N, Si" in msg and "C, H, O" in msg


def test_species_map_for_non_symbol_type_names(rng):
    named = small_model(
        seed=3,
        type_names=["hyd", "carb", "oxy"],
        avg_num_neighbors={"hyd": 4.0, "carb": 6.0, "oxy": 5.0},
        per_type_energy_scales={"hyd": 0.7, "carb": 1.3, "oxy": 1.1},
        per_type_energy_shifts={"hyd": -13.1, "carb": -1030.5, "oxy": -2040.2},
    )
    atoms = molecule(rng, 6)
    calc = NequIPCalculator(named, chemical_species_to_atom_type_map={"H": "hyd", "C": "carb", "O": "oxy"})
    atoms.calc = calc
    ref = NequIPCalculator(small_model(seed=3))
    np.testing.assert_array_equal(atoms.get_forces(), ref.get_forces(atoms))


# ------------------------------------------------------------------------- neighbour-list reuse
def _random_walk(atoms, rng, n_steps, sigma):
    for _ in range(n_steps):
        atoms.positions += sigma * rng.standard_normal(atoms.positions.shape)
        yield atoms


@pytest.mark.parametrize("kind", ["molecule", "periodic", "small_cell"])
def test_nl_reuse_identical_to_fresh_build(model, rng, kind):
    atoms = _structures(rng)[kind]
    skin = 0.4
    reuse, fresh = NequIPCalculator(model, skin=skin), NequIPCalculator(model, skin=0.0)
    ref_pos, expected_builds, n = None, 0, 80
    for a in _random_walk(atoms, rng, n, 0.03):
        if ref_pos is None or np.linalg.norm(a.positions - ref_pos, axis=1).max() >= skin / 2:
            ref_pos, expected_builds = a.positions.copy(), expected_builds + 1
        g_reuse, g_fresh = reuse.graph(a), fresh.graph(a)
        np.testing.assert_array_equal(g_reuse.edge_index, g_fresh.edge_index)
        np.testing.assert_array_equal(g_reuse.edge_shift, g_fresh.edge_shift)
        ei, s = neighbor_list(a.positions, a.cell.array, a.pbc, model.config.r_max)
        np.testing.assert_array_equal(g_reuse.edge_index, ei)
        reuse.calculate(a, ["energy", "forces"])
        fresh.calculate(a, ["energy", "forces"])
        assert reuse.results["energy"] == fresh.results["energy"]
        np.testing.assert_array_equal(reuse.results["forces"], fresh.results["forces"])
    assert reuse.nl_builds == expected_builds
    assert 1 < reuse.nl_builds < n // 4  # it rebuilt when needed, and reused most of the time
    assert fresh.nl_builds == 2 * n  # skin 0: a build per graph


def test_nl_reuse_exact_at_the_cutoff():
    """A pair stepping across r_max by 1e-12 Å: in/out exactly as a fresh list says, on every step."""
    r_max = 3.0
    cache = NeighborListCache(r_max, skin=0.5)
    cell, pbc, numbers = np.zeros((3, 3)), np.zeros(3, bool), np.array([1, 1])
    for d in r_max + np.array([-3e-12, -2e-12, -1e-12, 0.0, 1e-12, 2e-12, -1e-12, 0.0]):
        pos = np.array([[0.1, 0.2, 0.3], [0.1 + d, 0.2, 0.3]])
        ei, s = cache.get(pos, cell, pbc, numbers)
        ei_ref, s_ref = neighbor_list(pos, cell, pbc, r_max)
        np.testing.assert_array_equal(ei, ei_ref)
        np.testing.assert_array_equal(s, s_ref)
    assert cache.builds == 1


def test_nl_rebuild_triggers(model, rng):
    atoms = periodic(rng)
    calc = NequIPCalculator(model, skin=0.5)
    calc.graph(atoms)
    atoms.positions[3] += [0.2, 0.0, 0.0]  # < skin/2: reuse
    calc.graph(atoms)
    assert calc.nl_builds == 1
    atoms.positions[3] += [0.06, 0.0, 0.0]  # now 0.26 > skin/2 from the build
    calc.graph(atoms)
    assert calc.nl_builds == 2
    atoms.set_cell(atoms.cell.array * 1.001, scale_atoms=False)
    calc.graph(atoms)
    assert calc.nl_builds == 3
    atoms.numbers[[0, 1]] = atoms.numbers[[1, 0]]
    calc.graph(atoms)
    assert calc.nl_builds == 4
    atoms.pbc = [True, True, False]
    calc.graph(atoms)
    assert calc.nl_builds == 5
    with pytest.raises(ValueError, match="skin"):
        NequIPCalculator(model, skin=-0.1)


def test_coincident_atoms_detected_on_reuse(model):
    atoms = Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]])
    calc = NequIPCalculator(model, skin=2.0)
    calc.graph(atoms)
    atoms.positions[1] = [1e-8, 0, 0]  # moved 1.2 Å < skin/2: the reused list must still refuse it
    with pytest.raises(ValueError, match="same position"):
        calc.graph(atoms)


# ------------------------------------------------------------------------------------- harness
@pytest.mark.parametrize("kind", ["molecule", "periodic"])
def test_harness_passes(model, rng, kind):
    atoms = _structures(rng)[kind]
    report = check_calculator(NequIPCalculator(model), atoms, cutoff=model.config.r_max, rng=1, md_steps=20)
    ran = [c for c in report if not c.skipped]
    assert report.passed, str(report)
    assert not [c.name for c in report if c.status == "ERROR"]
    expected = {
        "rotation_invariance",
        "inversion",
        "translation",
        "permutation",
        "forces_gradient",
        "curl_free",
        "cutoff_smoothness",
        "nve_drift",
    }
    expected |= {"stress_strain"} if kind == "periodic" else {"net_force", "additivity"}
    assert expected <= {c.name for c in ran}


# ------------------------------------------------------------------------- loading and options
def _fixture_atoms(path):
    with np.load(path) as data:
        g = graph_from_fixture(data, "s0")
        out = {k: data[f"output/s0/{k}"] for k in ("total_energy", "forces")}
    names = load_any_model(path).config.type_names
    atoms = Atoms([names[t] for t in g.atom_types], positions=g.pos, cell=g.cell[0], pbc=g.pbc[0])
    return atoms, out


@pytest.mark.parametrize("name", ["model_02.npz", "model_03.npz"])  # per-edge-type cutoffs; ZBL
def test_imported_nequip_model_from_path(name, tmp_path):
    path = FIXTURES / name
    atoms, official = _fixture_atoms(path)
    calc = NequIPCalculator(str(path))
    atoms.calc = calc
    m = load_any_model(path)
    out = _direct(m, atoms)
    assert atoms.get_potential_energy() == float(out["total_energy"][0])
    np.testing.assert_array_equal(atoms.get_forces(), out["forces"])
    np.testing.assert_allclose(
        atoms.get_potential_energy(), float(np.ravel(official["total_energy"])[0]), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(atoms.get_forces(), official["forces"].reshape(-1, 3), atol=1e-7)


def test_native_model_from_path(model, rng, tmp_path):
    path = tmp_path / "model.npz"
    model.save(path)
    atoms = periodic(rng)
    atoms.calc = NequIPCalculator(path)
    out = _direct(model, atoms)
    np.testing.assert_array_equal(atoms.get_forces(), out["forces"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NequIPCalculator(tmp_path / "missing.npz")


def test_dtype_option(model, rng):
    atoms = molecule(rng, 8)
    f64 = NequIPCalculator(model).get_forces(atoms)
    calc32 = NequIPCalculator(model, dtype="float32")
    assert calc32.model.dtype == np.float32 and model.dtype == np.float64  # a converted copy
    assert "float32" in repr(calc32)
    f32 = calc32.get_forces(atoms)
    assert not np.array_equal(f32, f64)
    np.testing.assert_allclose(f32, f64, atol=1e-4 * np.abs(f64).max())


def test_backend_option(model, rng):
    from nequip_np.kernels.registry import available_backends

    if "numba" not in available_backends():
        pytest.skip("numba backend not available")
    atoms = periodic(rng)
    ref = NequIPCalculator(model)
    try:
        nb = NequIPCalculator(model, backend="numba")
    except ImportError as exc:
        pytest.skip(f"numba backend incomplete: {exc}")
    assert nb.model.backend == "numba" and model.backend == "numpy" and "numba" in repr(nb)
    np.testing.assert_allclose(nb.get_forces(atoms), ref.get_forces(atoms), rtol=1e-10, atol=1e-11)
    with pytest.raises(ValueError, match="not available"):
        NequIPCalculator(model, backend="fortran")
