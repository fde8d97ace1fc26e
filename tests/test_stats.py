"""Dataset statistics against values computed by hand on two tiny frames."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from nequip_np.data import (
    GraphDataset,
    compute_statistics,
    forces_rms,
    graph_from_atoms,
    isolated_atom_shifts,
    num_neighbors_mean,
    per_atom_energy_mean,
    per_atom_energy_std,
    per_type_energy_shifts_least_squares,
    per_type_forces_rms,
    per_type_num_neighbors_mean,
    total_energy_std,
)

NAMES = ["H", "O"]


@pytest.fixture
def graphs():
    h2 = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    h2.calc = SinglePointCalculator(h2, energy=-2.0, forces=[[1.0, 0, 0], [-1.0, 0, 0]])
    # O-H 0.96 Å (edges at r_max 1.2), H-H 1.49 Å (no edge)
    h2o = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    h2o.calc = SinglePointCalculator(h2o, energy=-10.0, forces=[[0, 0, 3.0], [0, 1.0, 0], [0, -1.0, 0]])
    return [graph_from_atoms(a, NAMES, 1.2, with_labels=True) for a in (h2, h2o)]


def test_neighbour_statistics(graphs):
    assert [g.n_edges for g in graphs] == [2, 4]
    assert num_neighbors_mean(graphs) == pytest.approx(6 / 5)
    # H centres: 2 edges (H2) + 2 edges (H->O twice) over 4 H atoms; O: 2 edges over 1 atom
    assert per_type_num_neighbors_mean(graphs, NAMES) == pytest.approx({"H": 1.0, "O": 2.0})


def test_energy_statistics(graphs):
    per_atom = np.array([-2.0 / 2, -10.0 / 3])
    assert per_atom_energy_mean(graphs) == pytest.approx(per_atom.mean())
    assert per_atom_energy_std(graphs) == pytest.approx(abs(per_atom[0] - per_atom[1]) / np.sqrt(2))
    assert total_energy_std(graphs) == pytest.approx(8.0 / np.sqrt(2))  # unbiased
    # counts [[2, 0], [2, 1]] s = [-2, -10]  =>  s_H = -1, s_O = -8 exactly
    assert per_type_energy_shifts_least_squares(graphs, NAMES) == pytest.approx({"H": -1.0, "O": -8.0})


def test_least_squares_overdetermined():
    rng = np.random.default_rng(0)
    truth = {"H": -0.5, "O": -3.0}
    frames = []
    for k in range(6):
        n_h, n_o = 1 + k % 3, 1 + k // 3
        a = Atoms("H" * n_h + "O" * n_o, positions=rng.uniform(0, 10, (n_h + n_o, 3)))
        e = n_h * truth["H"] + n_o * truth["O"] + 0.01 * (-1) ** k
        a.calc = SinglePointCalculator(a, energy=e, forces=np.zeros((len(a), 3)))
        frames.append(a)
    ds = GraphDataset(frames, NAMES, 1.0)
    counts = np.array([[1 + k % 3, 1 + k // 3] for k in range(6)], float)
    energies = np.array([g.energy[0] for g in ds])
    expected = np.linalg.solve(counts.T @ counts, counts.T @ energies)  # normal equations
    got = per_type_energy_shifts_least_squares(ds, NAMES)
    np.testing.assert_allclose([got["H"], got["O"]], expected, rtol=1e-10)
    assert got == pytest.approx(truth, abs=0.02)


def test_force_statistics(graphs):
    # components: H2 1, 0, 0, 1, 0, 0; H2O (O) 0, 0, 9; (H) 0, 1, 0 twice  -> 13 over 15
    assert forces_rms(graphs) == pytest.approx(np.sqrt(13 / 15))
    assert per_type_forces_rms(graphs, NAMES) == pytest.approx({"H": np.sqrt(4 / 12), "O": np.sqrt(3.0)})


def test_compute_statistics_and_absent_type(graphs):
    stats = compute_statistics(graphs, ["H", "O", "C"])
    assert stats["num_neighbors_mean"] == pytest.approx(1.2)
    assert np.isnan(stats["per_type_num_neighbors_mean"]["C"])
    assert np.isnan(stats["per_type_forces_rms"]["C"])
    assert stats["forces_rms"] == pytest.approx(np.sqrt(13 / 15))
    assert set(stats) >= {
        "per_atom_energy_mean",
        "per_atom_energy_std",
        "total_energy_std",
        "per_type_energy_shifts",
        "per_type_forces_rms",
    }
    graphs[0].forces = None
    assert "forces_rms" not in compute_statistics(graphs, NAMES)
    with pytest.raises(ValueError, match="'forces'"):
        forces_rms(graphs)


def test_isolated_atom_shifts():
    cfg = {"isolated_atom_energies": {"H": -13.6, "O": -432.0, "C": -1.0}}
    assert isolated_atom_shifts(cfg, NAMES) == {"H": -13.6, "O": -432.0}
    assert isolated_atom_shifts({"H": 1.0, "O": 2.0}, NAMES) == {"H": 1.0, "O": 2.0}
    with pytest.raises(ValueError, match=r"missing for types \['O'\]"):
        isolated_atom_shifts({"H": 1.0}, NAMES)
