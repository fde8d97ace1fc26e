"""AtomicGraph construction from ASE, species mapping, labels, batching offsets and its inverse."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from nequip_np.data import (
    batch_graphs,
    graph_from_atoms,
    labels_from_atoms,
    neighbor_list,
    split_batch,
    type_map_from_symbols,
)


def test_type_map_and_types():
    assert type_map_from_symbols(["H", "C", "O"]) == {"H": 0, "C": 1, "O": 2}
    assert type_map_from_symbols(["A", "B"], {"Cu": "B", "Au": "A"}) == {"Cu": 1, "Au": 0}
    with pytest.raises(ValueError, match="duplicates"):
        type_map_from_symbols(["H", "H"])
    with pytest.raises(ValueError, match="not a chemical symbol"):
        type_map_from_symbols(["Hx"])
    g = graph_from_atoms(molecule("CH3OH"), ["H", "C", "O"], 2.0)
    np.testing.assert_array_equal(g.atom_types, [1, 2, 0, 0, 0, 0])
    assert g.atom_types.dtype == np.int64


def test_graph_fields_and_edge_vectors():
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.02, seed=0)
    g = graph_from_atoms(atoms, ["Si"], 4.0)
    ei, s = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
    np.testing.assert_array_equal(g.edge_index, ei)
    assert g.edge_shift.dtype == np.float64 and g.cell.shape == (1, 3, 3) and g.pbc.shape == (1, 3)
    assert (g.n_frames, g.n_atoms, g.n_edges) == (1, 2, ei.shape[1])
    d = np.linalg.norm(g.edge_vectors(), axis=1)
    assert d.max() < 4.0 and d.min() > 2.0
    assert g.energy is None and g.forces is None and g.stress is None


def test_graph_errors():
    with pytest.raises(ValueError, match=r"\['Cl'\].*known type names: \['H', 'C'\]"):
        graph_from_atoms(molecule("CH3Cl"), ["H", "C"], 3.0)
    with pytest.raises(ValueError, match="empty"):
        graph_from_atoms(Atoms(), ["H"], 3.0)
    bad = molecule("H2O")
    bad.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        graph_from_atoms(bad, ["H", "O"], 3.0)
    with pytest.raises(ValueError, match="zero volume"):
        graph_from_atoms(Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]], pbc=True), ["H"], 3.0)


def test_labels_priority_and_stress_forms():
    atoms = molecule("H2O")
    atoms.info["energy"] = -1.0
    atoms.arrays["forces"] = np.ones((3, 3))
    atoms.info["stress"] = np.arange(6.0)
    e, f, s = labels_from_atoms(atoms)
    assert e == -1.0 and f.sum() == 9.0
    np.testing.assert_array_equal(s, [[0, 5, 4], [5, 1, 3], [4, 3, 2]])  # xx yy zz yz xz xy
    atoms.calc = SinglePointCalculator(atoms, energy=-2.0, forces=np.zeros((3, 3)))
    e, f, s = labels_from_atoms(atoms)
    assert e == -2.0 and f.sum() == 0.0  # calculator results win
    g = graph_from_atoms(atoms, ["H", "O"], 3.0, with_labels=True)
    assert g.energy.tolist() == [-2.0] and g.stress.shape == (1, 3, 3)


def test_per_edge_type_cutoff_prunes_by_centre_type():
    atoms = molecule("CH4")
    full = graph_from_atoms(atoms, ["H", "C"], 2.0)
    pruned = graph_from_atoms(atoms, ["H", "C"], 2.0, per_edge_type_cutoff={"H": {"H": 1.0}})
    # only H-H edges (1.78 Å) are removed; the 8 C-H edges remain
    assert full.n_edges == 8 + 12 and pruned.n_edges == 8


def test_batch_offsets_and_split_roundtrip():
    a = molecule("H2O")
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.full((3, 3), 0.1))
    b = bulk("Si", "diamond", a=5.43)
    b.calc = SinglePointCalculator(b, energy=-2.0, forces=np.full((2, 3), 0.2))
    c = molecule("CH4")
    c.calc = SinglePointCalculator(c, energy=-3.0, forces=np.full((5, 3), 0.3))
    names = ["H", "C", "O", "Si"]
    gs = [graph_from_atoms(x, names, 3.0, with_labels=True) for x in (a, b, c)]
    batch = batch_graphs(gs)
    assert (batch.n_frames, batch.n_atoms) == (3, 10)
    np.testing.assert_array_equal(batch.batch, [0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(batch.num_atoms, [3, 2, 5])
    np.testing.assert_array_equal(batch.energy, [-1.0, -2.0, -3.0])
    # edges of frame 1 are offset by 3 atoms, frame 2 by 5
    e0, e1 = gs[0].n_edges, gs[0].n_edges + gs[1].n_edges
    np.testing.assert_array_equal(batch.edge_index[:, e0:e1], gs[1].edge_index + 3)
    np.testing.assert_array_equal(batch.edge_index[:, e1:], gs[2].edge_index + 5)
    assert np.all(batch.batch[batch.edge_index[0]] == batch.batch[batch.edge_index[1]])
    # edge vectors use each frame's own cell
    np.testing.assert_allclose(np.concatenate([g.edge_vectors() for g in gs]), batch.edge_vectors())
    # batches of batches, and the inverse
    nested = batch_graphs([batch_graphs(gs[:2]), gs[2]])
    np.testing.assert_array_equal(nested.batch, batch.batch)
    for orig, back in zip(gs, split_batch(batch)):
        for field in (
            "pos",
            "atom_types",
            "edge_index",
            "edge_shift",
            "cell",
            "pbc",
            "batch",
            "num_atoms",
            "energy",
            "forces",
        ):
            np.testing.assert_array_equal(getattr(orig, field), getattr(back, field))
    # a label missing on one frame is dropped from the batch
    gs[1].energy = None
    assert batch_graphs(gs).energy is None
