"""Neighbour list vs ase.neighborlist, the O(N²) reference, and the contract (sorting, strictness, errors)."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list as ase_neighbor_list

from nequip_np.data.neighborlist import (
    cell_list_info,
    csr_offsets,
    cutoff_table_from_config,
    neighbor_list,
    neighbor_list_bruteforce,
    prune_edges,
)


def _as_set(edge_index, shifts):
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(), map(tuple, shifts.tolist())))


def _distances(atoms, edge_index, shifts):
    pos = atoms.positions
    return np.linalg.norm(pos[edge_index[1]] - pos[edge_index[0]] + shifts @ atoms.cell.array, axis=1)


def _check_against_ase(atoms, r_max):
    ei, s = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    i, j, S, d = ase_neighbor_list("ijSd", atoms, r_max)
    ours = _as_set(ei, s)
    assert len(ours) == ei.shape[1], "duplicate edges"
    assert ours == _as_set(np.stack([i, j]), S)
    # distances, matched edge by edge through the sort order
    order = np.lexsort((S[:, 2], S[:, 1], S[:, 0], j, i))
    np.testing.assert_allclose(_distances(atoms, ei, s), d[order], rtol=0, atol=1e-12)
    # and the O(N²) reference agrees exactly, order included
    ei_ref, s_ref = neighbor_list_bruteforce(atoms.positions, atoms.cell.array, atoms.pbc, r_max)
    np.testing.assert_array_equal(ei, ei_ref)
    np.testing.assert_array_equal(s, s_ref)
    assert ei.dtype == np.int64 and s.dtype == np.int64
    return ei, s


def test_molecule_matches_ase():
    atoms = molecule("CH3CH2OH")
    ei, s = _check_against_ase(atoms, 2.5)
    assert not s.any()


def test_molecule_with_zero_cell_far_apart():
    # two clusters 500 Å apart: the bin grid must stay small and nothing crosses between them
    atoms = molecule("H2O")
    far = molecule("H2O")
    far.translate([500.0, -300.0, 20.0])
    atoms += far
    _check_against_ase(atoms, 3.0)
    assert np.prod(cell_list_info(atoms.positions, None, False, 3.0)["n_bins"]) <= 27


@pytest.mark.parametrize("seed", range(6))
def test_random_triclinic_and_mixed_pbc_match_ase(seed):
    rng = np.random.default_rng(seed)
    cell = np.diag(rng.uniform(3.0, 7.0, 3)) + rng.normal(scale=1.5, size=(3, 3))
    pbc = [True, True, True] if seed < 3 else [bool(seed % 2), True, False]
    # positions partly outside the cell, so wrapping is exercised
    atoms = Atoms("H" * 9, scaled_positions=rng.uniform(-0.7, 1.7, (9, 3)), cell=cell, pbc=pbc)
    ei, s = _check_against_ase(atoms, rng.uniform(2.0, 6.0))
    self_pairs = ei[0] == ei[1]
    assert np.all(np.any(s[self_pairs] != 0, axis=1))  # own images only, never the zero shift


def test_tiny_cell_many_images():
    atoms = bulk("Cu", "fcc", a=3.6)  # 1-atom primitive cell, perpendicular width 2.08 Å < r_max
    ei, s = _check_against_ase(atoms, 5.0)
    assert np.all(ei == 0)  # every neighbour is an image of the single atom
    assert len(ei[0]) == 42  # fcc shells within 5 Å: 12 + 6 + 24 (the next is at 5.09 Å)
    assert not np.any(np.all(s == 0, axis=1))  # no zero-shift self edge


def test_supercell_matches_ase_and_is_sorted_csr():
    atoms = bulk("Si", "diamond", a=5.43).repeat((2, 2, 3))
    atoms.rattle(0.05, seed=1)
    ei, s = _check_against_ase(atoms, 4.0)
    key = np.lexsort((s[:, 2], s[:, 1], s[:, 0], ei[1], ei[0]))
    np.testing.assert_array_equal(key, np.arange(len(key)))
    off = csr_offsets(ei[0], len(atoms))
    assert off.shape == (len(atoms) + 1,) and off[0] == 0 and off[-1] == ei.shape[1]
    for a in (0, 5, len(atoms) - 1):
        assert np.all(ei[0, off[a] : off[a + 1]] == a)
        assert off[a + 1] - off[a] == np.sum(ei[0] == a)


def test_strict_cutoff_and_symmetry():
    pos = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 2.5, 0.0]])
    ei, _ = neighbor_list(pos, None, False, 3.0)  # atom 1 exactly at r_max: excluded
    assert _as_set(ei, np.zeros((ei.shape[1], 3), int)) == {(0, 2, (0, 0, 0)), (2, 0, (0, 0, 0))}
    ei, _ = neighbor_list(pos, None, False, 3.0 + 1e-9)
    assert (0, 1) in set(zip(*ei.tolist())) and (1, 0) in set(zip(*ei.tolist()))


def test_periodic_image_exactly_at_cutoff_is_excluded():
    ei, s = neighbor_list(np.zeros((1, 3)), np.eye(3) * 2.0, True, 2.0)
    assert ei.shape == (2, 0)
    ei, s = neighbor_list(np.zeros((1, 3)), np.eye(3) * 2.0, True, 2.0001)
    assert sorted(map(tuple, s.tolist())) == sorted(
        [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    )


def test_work_scales_linearly():
    # distance evaluations per atom approach a constant as the system grows (no O(N²) term)
    base = bulk("Cu", "fcc", a=3.6, cubic=True)
    per_atom = []
    for n in (6, 9, 12):
        atoms = base.repeat(n)
        info = cell_list_info(atoms.positions, atoms.cell.array, atoms.pbc, 4.0)
        per_atom.append(info["n_distance_evaluations"] / len(atoms))
        assert info["n_edges"] == 18 * len(atoms)  # 12 + 6 neighbours within 4 Å
    assert max(per_atom) < 3.0 * min(per_atom)
    assert per_atom[-1] < 300  # vs 6912 atoms for brute force


def test_empty_and_single_atom_molecule():
    ei, s = neighbor_list(np.zeros((0, 3)), None, False, 3.0)
    assert ei.shape == (2, 0) and s.shape == (0, 3)
    ei, s = neighbor_list(np.zeros((1, 3)), np.zeros((3, 3)), False, 3.0)
    assert ei.shape == (2, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(positions=np.array([[0.0, 0, 0], [np.nan, 0, 0]])), "NaN or inf"),
        (dict(positions=np.array([[0.0, 0, 0], [np.inf, 0, 0]])), "NaN or inf"),
        (dict(positions=np.zeros((3, 2))), r"shape \(N, 3\)"),
        (dict(cell=np.eye(2)), r"shape \(3, 3\)"),
        (dict(r_max=0.0), "positive"),
        (dict(r_max=-1.0), "positive"),
        (dict(cell=np.diag([3.0, 3.0, 0.0]), pbc=True), "zero volume"),
        (dict(cell=np.array([[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]]), pbc=True), "zero volume"),
        (dict(positions=np.array([[0.0, 0, 0], [1.0, 0, 0], [1.0, 0, 1e-8]])), "atoms 1 and 2"),
    ],
)
def test_errors(kwargs, match):
    args = dict(positions=np.array([[0.0, 0, 0], [1.0, 0, 0]]), cell=np.eye(3) * 5, pbc=False, r_max=2.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        neighbor_list(**args)


def test_zero_cell_ok_when_not_periodic_in_that_direction():
    pos = np.array([[0.0, 0, 0], [0.0, 0, 1.5]])
    ei, s = neighbor_list(pos, np.diag([3.0, 3.0, 0.0]), [True, True, False], 2.0)
    assert _as_set(ei, s) == {(0, 1, (0, 0, 0)), (1, 0, (0, 0, 0))}


def test_duplicate_through_periodic_image():
    with pytest.raises(ValueError, match="atoms 0 and 1"):
        neighbor_list(np.array([[0.0, 0, 0], [3.0, 0, 0]]), np.eye(3) * 3.0, True, 2.0)


def test_cutoff_table_and_prune():
    table = cutoff_table_from_config({"H": 1.2, "C": {"H": 1.0}}, ["C", "H", "O"], 2.0)
    np.testing.assert_array_equal(table, [[2.0, 1.0, 2.0], [1.2, 1.2, 1.2], [2.0, 2.0, 2.0]])
    # C (type 0) at origin, H (type 1) at 1.1 Å: the H-centred edge survives (1.1 < 1.2),
    # the C-centred one does not (1.1 >= 1.0)
    pos = np.array([[0.0, 0, 0], [1.1, 0, 0]])
    ei, s = neighbor_list(pos, None, False, 2.0)
    ei2, s2 = prune_edges(ei, s, pos, None, np.array([0, 1]), table)
    assert ei2.tolist() == [[1], [0]] and s2.shape == (1, 3)
    with pytest.raises(ValueError, match="unknown centre type 'N'"):
        cutoff_table_from_config({"N": 1.0}, ["C", "H"], 2.0)
    with pytest.raises(ValueError, match="unknown neighbour type 'X'"):
        cutoff_table_from_config({"C": {"X": 1.0}}, ["C", "H"], 2.0)
    with pytest.raises(ValueError, match="r_max"):
        cutoff_table_from_config({"C": 2.5}, ["C", "H"], 2.0)
    np.testing.assert_array_equal(cutoff_table_from_config(None, ["C"], 3.0), [[3.0]])


def test_prune_periodic_matches_smaller_cutoff():
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat(2)
    atoms.rattle(0.05, seed=3)
    types = (atoms.numbers == 17).astype(np.int64)  # Na -> 0, Cl -> 1
    table = np.full((2, 2), 3.5)
    ei, s = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 5.0)
    ei2, s2 = prune_edges(ei, s, atoms.positions, atoms.cell.array, types, table)
    ei3, s3 = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.5)
    np.testing.assert_array_equal(ei2, ei3)
    np.testing.assert_array_equal(s2, s3)
