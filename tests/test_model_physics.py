"""Rung 4: physics of the full model in float64 (DESIGN.md ladder)."""

import numpy as np
import pytest
from ase import Atoms

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.so3 import irreps_D, random_rotation
from tests.model_factory import TYPES, molecule, periodic, small_model


def _graph(model, atoms):
    return graph_from_atoms(atoms, model.config.type_names, model.config.r_max)


def _compute(model, atoms):
    return model.compute(_graph(model, atoms), stress=bool(np.all(atoms.pbc)))


@pytest.fixture(scope="module")
def model():
    return small_model(seed=3)


def _rotations(rng):
    r = random_rotation(rng)
    return [r, -r, -np.eye(3)]


@pytest.mark.parametrize("kind", ["molecule", "periodic", "small_cell"])
def test_O3_invariance_of_energy_and_equivariance_of_forces_and_stress(model, rng, kind):
    atoms = molecule(rng) if kind == "molecule" else periodic(rng, small=kind == "small_cell")
    ref = _compute(model, atoms)
    for R in _rotations(rng):
        rot = atoms.copy()
        rot.positions = atoms.positions @ R.T
        rot.cell = atoms.cell.array @ R.T
        out = _compute(model, rot)
        np.testing.assert_allclose(out["total_energy"], ref["total_energy"], rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(out["forces"], ref["forces"] @ R.T, rtol=0, atol=1e-10)
        if kind != "molecule":
            np.testing.assert_allclose(out["stress"][0], R @ ref["stress"][0] @ R.T, atol=1e-10)


def test_hidden_features_are_equivariant_layer_by_layer(model, rng):
    atoms = molecule(rng, n=8)
    feats = model.node_features(_graph(model, atoms))
    R = -random_rotation(rng)  # improper: checks parities too
    rot = atoms.copy()
    rot.positions = atoms.positions @ R.T
    feats_rot = model.node_features(_graph(model, rot))
    irreps = [model.plan.layers[0].irreps_in] + [layer.gate.irreps_out for layer in model.plan.layers]
    for k, (f, fr, ir) in enumerate(zip(feats, feats_rot, irreps)):
        D = irreps_D(ir, R)
        assert np.max(np.abs(f)) > 1e-3, f"layer {k} features vanish; the test would be vacuous"
        np.testing.assert_allclose(fr, f @ D.T, atol=1e-10, err_msg=f"layer {k} ({ir})")


def test_translation_and_permutation(model, rng):
    atoms = periodic(rng)
    ref = _compute(model, atoms)
    moved = atoms.copy()
    moved.positions += rng.standard_normal(3) * 3.0
    out = _compute(model, moved)
    np.testing.assert_allclose(out["total_energy"], ref["total_energy"], rtol=1e-12)
    np.testing.assert_allclose(out["forces"], ref["forces"], atol=1e-10)
    perm = rng.permutation(len(atoms))
    out = _compute(model, atoms[perm])
    np.testing.assert_allclose(out["atomic_energy"], ref["atomic_energy"][perm], atol=1e-10)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-10)


@pytest.mark.parametrize("kind", ["molecule", "periodic"])
def test_forces_are_minus_gradient_of_energy(model, rng, kind):
    atoms = molecule(rng) if kind == "molecule" else periodic(rng)
    forces = _compute(model, atoms)["forces"]
    h = 1e-5
    for i, a in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        p, m = atoms.copy(), atoms.copy()
        p.positions[i, a] += h
        m.positions[i, a] -= h
        fd = -(_compute(model, p)["total_energy"][0] - _compute(model, m)["total_energy"][0]) / (2 * h)
        assert abs(fd - forces[i, a]) <= 1e-7 * max(1.0, np.max(np.abs(forces))), (fd, forces[i, a])


def test_stress_matches_finite_strain(model, rng):
    atoms = periodic(rng)
    out = _compute(model, atoms)
    vol = atoms.get_volume()
    h = 1e-6
    for a, b in [(0, 0), (1, 2), (0, 1)]:
        eps = np.zeros((3, 3))
        eps[a, b] = eps[b, a] = h / (1 if a == b else 2)
        e = []
        for sign in (1, -1):
            s = atoms.copy()
            s.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
            e.append(_compute(model, s)["total_energy"][0])
        fd = (e[0] - e[1]) / (2 * h) / vol
        assert abs(fd - out["stress"][0, a, b]) <= 1e-7 * max(1.0, np.abs(out["stress"]).max())


def test_net_force_vanishes_and_additivity(model, rng):
    a, b = molecule(rng, 6), molecule(rng, 5)
    ea = _compute(model, a)
    np.testing.assert_allclose(ea["forces"].sum(axis=0), 0.0, atol=1e-11)
    b.positions += np.array([50.0, 0, 0])
    both = _compute(model, a + b)
    eb = _compute(model, b)
    np.testing.assert_allclose(both["total_energy"][0], ea["total_energy"][0] + eb["total_energy"][0], rtol=1e-13)
    np.testing.assert_allclose(both["forces"][: len(a)], ea["forces"], atol=1e-12)


def test_zero_force_beyond_cutoff_and_smooth_energy(model):
    r_max = model.config.r_max
    e, f = [], []
    for r in np.linspace(r_max - 0.02, r_max + 0.02, 9):
        out = _compute(model, Atoms("CO", positions=[[0, 0, 0], [r, 0, 0]]))
        e.append(out["total_energy"][0])
        f.append(out["forces"][0, 0])
    np.testing.assert_array_equal(f[5:], 0.0)
    shifts = model.buffers["per_type_energy_shifts"]
    np.testing.assert_allclose(e[5:], shifts[1] + shifts[2], rtol=1e-15)
    # envelope: u, u' and u'' vanish at r_max, so E - E(inf) ~ (r_max - r)^3: no jump, fast decay
    dev = np.abs(np.array(e[:5]) - e[-1])
    assert dev[0] < 1e-6 and np.max(np.abs(f)) < 1e-6
    assert dev[0] / dev[2] > 6.0, dev  # halving the distance to r_max divides the deviation by >= 2^3


def test_isolated_atom_energy_is_its_shift(model):
    for k, sym in enumerate(TYPES):
        out = _compute(model, Atoms(sym, positions=[[0.1, 0.2, 0.3]]))
        assert out["total_energy"][0] == model.buffers["per_type_energy_shifts"][k]
        np.testing.assert_array_equal(out["forces"], 0.0)


def test_batch_equals_single_frames(model, rng):
    frames = [molecule(rng, 5), periodic(rng), periodic(rng, small=True)]
    graphs = [_graph(model, a) for a in frames]
    batched = model.compute(batch_graphs(graphs))
    singles = [model.compute(g) for g in graphs]
    np.testing.assert_allclose(batched["total_energy"], [s["total_energy"][0] for s in singles], rtol=1e-13)
    np.testing.assert_allclose(batched["forces"], np.concatenate([s["forces"] for s in singles]), atol=1e-12)
    np.testing.assert_allclose(batched["stress"][1:], np.concatenate([s["stress"] for s in singles[1:]]), atol=1e-12)
    assert np.all(np.isnan(batched["stress"][0]))


def test_periodic_supercell_is_extensive(model, rng):
    atoms = periodic(rng, small=True)
    ref = _compute(model, atoms)
    big = _compute(model, atoms.repeat((2, 1, 2)))
    np.testing.assert_allclose(big["total_energy"][0], 4 * ref["total_energy"][0], rtol=1e-12)
    np.testing.assert_allclose(big["stress"][0], ref["stress"][0], atol=1e-11)
    np.testing.assert_allclose(big["forces"][: len(atoms)], ref["forces"], atol=1e-11)
