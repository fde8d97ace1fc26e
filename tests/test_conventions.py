"""One tiny test per convention of ``docs/conventions.md`` (constants in ``nequip_np/conventions.py``)."""

import numpy as np
import pytest
from ase import Atoms

from nequip_np.conventions import (
    KCAL_MOL_TO_EV,
    NORMALIZE2MOM_SILU,
    NORMALIZE2MOM_TANH,
    VOIGT_PAIRS,
    ZBL_KE,
    stress_to_voigt,
    voigt_to_stress,
)
from nequip_np.data.graph import AtomicGraph, graph_from_atoms
from nequip_np.kernels.common import silu
from nequip_np.model.plan import hidden_irreps
from nequip_np.so3 import Irrep, Irreps, clebsch_gordan, irreps_D, random_rotation, spherical_harmonics, wigner_D
from tests.model_factory import periodic, small_model


def test_units_are_ase_units():
    import ase.units as u

    # ZBL's Coulomb constant e²/(4πε₀) in eV·Å, and nequip's kcal/mol → eV factor
    assert ZBL_KE["metal"] == pytest.approx(u._e / (4 * np.pi * u._eps0) * 1e10, rel=1e-7)
    assert KCAL_MOL_TO_EV == pytest.approx(u.kcal / u.mol, rel=1e-6)
    assert u.fs * 1.0 != 1.0 and u.Ang == 1.0 and u.eV == 1.0  # ASE: Å and eV are unity, fs is not


def test_edge_vector_points_from_centre_to_neighbour():
    atoms = Atoms("HO", positions=[[0.0, 0.0, 0.0], [0.3, 0.4, 0.5]])
    g = graph_from_atoms(atoms, ["H", "O"], r_max=2.0)
    i, j = g.edge_index
    np.testing.assert_array_equal(g.edge_vectors(), atoms.positions[j] - atoms.positions[i])
    assert set(zip(i, j)) == {(0, 1), (1, 0)}  # full list, both directions


def test_cell_vectors_are_rows():
    cell = np.array([[2.0, 0.0, 0.0], [0.5, 3.0, 0.0], [0.2, 0.1, 4.0]])
    g = AtomicGraph(
        pos=np.zeros((1, 3)),
        atom_types=np.zeros(1, np.int64),
        edge_index=np.array([[0], [0]]),
        edge_shift=np.array([[0.0, 1.0, 0.0]]),
        cell=cell[None],
        pbc=np.ones((1, 3), bool),
        batch=np.zeros(1, np.int64),
        num_atoms=np.array([1]),
    )
    np.testing.assert_array_equal(g.edge_vectors(), cell[1:2])  # shift (0,1,0) adds the second row


def test_feature_layout_is_mul_ir():
    irreps = Irreps("2x0e+3x1o")
    assert [s.start for s in irreps.slices()] == [0, 2] and irreps.dim == 11
    R = random_rotation(0)
    D = irreps_D(irreps, R)  # column u·(2l+1)+m of the 1o block: copy u, component m
    np.testing.assert_allclose(D[2:, 2:], np.kron(np.eye(3), R), atol=1e-14)


def test_spherical_harmonics_component_normalisation_and_order():
    u = np.array([[0.36, 0.48, 0.8]])
    Y = spherical_harmonics(3, u)
    assert Y[0, 0] == 1.0
    np.testing.assert_allclose(Y[0, 1:4], np.sqrt(3) * u[0], atol=1e-15)  # Y¹ = √3 (x, y, z)
    for l in range(4):
        assert np.sum(Y[0, l * l : (l + 1) ** 2] ** 2) == pytest.approx(2 * l + 1)


def test_y_is_the_polar_axis():
    Y = spherical_harmonics(2, np.array([[0.0, 1.0, 0.0]]))[0, 4:9]
    np.testing.assert_allclose(Y, [0, 0, np.sqrt(5), 0, 0], atol=1e-15)  # only m = 0 survives on +y


def test_wigner_D1_is_the_rotation_matrix():
    R = random_rotation(1)
    np.testing.assert_allclose(wigner_D(1, R), R, atol=1e-14)


def test_clebsch_gordan_phase():
    eps = np.zeros((3, 3, 3))
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[a, b, c], eps[a, c, b] = 1.0, -1.0
    np.testing.assert_allclose(clebsch_gordan(1, 1, 1), eps / np.sqrt(6), atol=1e-15)
    np.testing.assert_allclose(clebsch_gordan(0, 2, 2)[0], np.eye(5) / np.sqrt(5), atol=1e-15)


def test_parity_labels_and_sort_order():
    assert Irrep("1o").p == -1 and Irrep("1e").p == 1 and Irrep("0e") == Irrep(0, 1)
    assert Irreps("1e+0e+1o+0o").sort().irreps == Irreps("0o+0e+1o+1e")
    assert hidden_irreps(1, True, [4, 4]) == Irreps("4x0e+4x0o+4x1e+4x1o")  # nequip's (p=+1, −1) order
    np.testing.assert_allclose(Irrep("1o").D_from_matrix(-np.eye(3)), -np.eye(3), atol=1e-14)  # vectors are 1o


def test_voigt_order_is_ase():
    s = np.arange(9.0).reshape(3, 3)
    s = s + s.T
    np.testing.assert_array_equal(stress_to_voigt(s), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    assert VOIGT_PAIRS[3:] == ((1, 2), (0, 2), (0, 1))
    np.testing.assert_array_equal(voigt_to_stress(stress_to_voigt(s)), s)


def test_stress_sign_virial_and_nonperiodic_nan(rng):
    model = small_model()
    atoms = periodic(rng)
    out = model.compute(graph_from_atoms(atoms, model.config.type_names, model.config.r_max))
    volume = atoms.get_volume()
    np.testing.assert_allclose(out["virial"][0], -out["stress"][0] * volume, rtol=1e-12, atol=1e-14)
    # σ_xx = (1/V) ∂E/∂ε_xx: stretching along x raises E when σ_xx > 0 (positive = tensile)
    eps = 1e-5
    energies = []
    for sign in (1, -1):
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ np.diag([1 + sign * eps, 1, 1]), scale_atoms=True)
        energies.append(model.energy(graph_from_atoms(a, model.config.type_names, model.config.r_max))[0])
    fd = (energies[0] - energies[1]) / (2 * eps) / volume
    assert fd == pytest.approx(out["stress"][0, 0, 0], rel=1e-6, abs=1e-9)
    atoms.pbc = False
    mol = model.compute(graph_from_atoms(atoms, model.config.type_names, model.config.r_max))
    assert np.all(np.isnan(mol["stress"])) and np.all(np.isfinite(mol["virial"]))


def test_normalize2mom_constants_give_unit_second_moment():
    z, w = np.polynomial.hermite_e.hermegauss(200)  # E[f(Z)], Z ~ N(0, 1), by quadrature
    w = w / w.sum()
    # e3nn estimated the constants by Monte Carlo with 10⁶ samples: agreement to a few 1e-3
    assert np.sum(w * (NORMALIZE2MOM_SILU * silu(z)) ** 2) == pytest.approx(1.0, abs=5e-3)
    assert np.sum(w * (NORMALIZE2MOM_TANH * np.tanh(z)) ** 2) == pytest.approx(1.0, abs=5e-3)
