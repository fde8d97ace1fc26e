"""Reading frames (extxyz, npz with unit conversion), label checks, splits, GraphDataset, batches."""

from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from nequip_np.conventions import KCAL_MOL_TO_EV
from nequip_np.data import GraphDataset, iterate_batches, read_frames, split_indices

ASPIRIN = (
    Path(__file__).resolve().parents[1] / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"
)  # a slice of the shared data set


def _labelled_frames(n, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = molecule("H2O")
        a.rattle(0.05, seed=k)
        a.calc = SinglePointCalculator(a, energy=-10.0 - k, forces=rng.normal(size=(3, 3)))
        frames.append(a)
    return frames


def test_extxyz_roundtrip(tmp_path):
    frames = _labelled_frames(4)
    path = tmp_path / "w.extxyz"
    ase.io.write(path, frames)
    back = read_frames(path, index="1:3", require=("energy", "forces"))
    assert len(back) == 2
    assert back[0].get_potential_energy() == pytest.approx(-11.0)
    np.testing.assert_allclose(back[1].get_forces(), frames[2].get_forces())
    np.testing.assert_allclose(back[1].positions, frames[2].positions, atol=1e-7)  # %.8f in extxyz


def test_aspirin_first_frames():
    frames = read_frames(ASPIRIN, index=":5", require=("energy", "forces"))
    assert len(frames) == 5 and len(frames[0]) == 21
    assert frames[0].get_potential_energy() == pytest.approx(-1076.7431526169717)
    ds = GraphDataset(frames, ["H", "C", "O"], 4.0)
    assert len(ds) == 5 and ds[0].energy.shape == (1,) and ds[0].forces.shape == (21, 3)


def _write_npz(path, keys, n_frames=3):
    rng = np.random.default_rng(1)
    base = molecule("CH4")
    R = base.positions[None] + 0.05 * rng.normal(size=(n_frames, 5, 3))
    E = rng.normal(size=(n_frames, 1)) * 10
    F = rng.normal(size=(n_frames, 5, 3))
    names = dict(zip(("R", "z", "E", "F"), keys))
    np.savez(path, **{names["R"]: R, names["z"]: base.numbers, names["E"]: E, names["F"]: F})
    return R, E[:, 0], F


@pytest.mark.parametrize("keys", [("R", "z", "E", "F"), ("coords", "nuclear_charges", "energies", "forces")])
def test_npz_md17_keys_and_kcal_conversion(tmp_path, keys):
    path = tmp_path / "md17.npz"
    R, E, F = _write_npz(path, keys)
    frames = read_frames(path, units="kcal/mol", require=("energy", "forces"))
    assert len(frames) == 3 and frames[0].get_chemical_formula() == "CH4"
    np.testing.assert_allclose(frames[2].positions, R[2])  # positions are not converted
    np.testing.assert_allclose([a.get_potential_energy() for a in frames], E * KCAL_MOL_TO_EV)
    np.testing.assert_allclose(frames[1].get_forces(), F[1] * KCAL_MOL_TO_EV)
    ev = read_frames(path, index=-1)
    assert len(ev) == 1 and ev[0].get_potential_energy() == pytest.approx(E[-1])


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.xyz"):
        read_frames(tmp_path / "nope.xyz")
    bad = tmp_path / "garbage.extxyz"
    bad.write_text("3\nnot a comment line = =\nH 0 0\n")
    with pytest.raises(ValueError, match="garbage.extxyz"):
        read_frames(bad)
    with pytest.raises(ValueError, match="units"):
        read_frames(ASPIRIN, index=":1", units="hartree")
    # missing label, named with its frame
    frames = _labelled_frames(3)
    frames[1].calc = SinglePointCalculator(frames[1], energy=-1.0)
    path = tmp_path / "missing.extxyz"
    ase.io.write(path, frames)
    read_frames(path, require=("energy",))
    with pytest.raises(ValueError, match="frame 1 has no 'forces'"):
        read_frames(path, require=("energy", "forces"))
    # NaN label
    frames = _labelled_frames(2)
    frames[1].calc = SinglePointCalculator(frames[1], energy=np.nan, forces=np.zeros((3, 3)))
    path = tmp_path / "nan.extxyz"
    ase.io.write(path, frames)
    with pytest.raises(ValueError, match="frame 1 has a non-finite 'energy'"):
        read_frames(path)
    npz = tmp_path / "nokeys.npz"
    np.savez(npz, X=np.zeros(3))
    with pytest.raises(ValueError, match="positions"):
        read_frames(npz)


def test_split_indices():
    tr, va, te = split_indices(20, 10, 5, seed=3)
    assert (len(tr), len(va), len(te)) == (10, 5, 5)
    assert len(set(tr) | set(va) | set(te)) == 20
    again = split_indices(20, 10, 5, seed=3)
    for x, y in zip((tr, va, te), again):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(split_indices(20, 10, 5, seed=4)[0], tr)
    tr, va, te = split_indices(10, 0.6, 0.2, 0.2)
    assert (len(tr), len(va), len(te)) == (6, 2, 2)
    assert len(split_indices(10, 3, 2, 1)[2]) == 1
    with pytest.raises(ValueError, match="needs 21 frames but the data have 20"):
        split_indices(20, 15, 6)
    with pytest.raises(ValueError, match="fraction"):
        split_indices(20, 1.5, 0)


def test_iterate_batches_covers_everything_once():
    ds = GraphDataset(_labelled_frames(7), ["H", "O"], 3.0)
    batches = list(iterate_batches(ds, 3))
    assert [b.n_frames for b in batches] == [3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b.energy for b in batches]), -10.0 - np.arange(7))
    shuffled = list(iterate_batches(ds, 3, shuffle=True, rng=np.random.default_rng(0)))
    energies = np.concatenate([b.energy for b in shuffled])
    assert sorted(energies) == sorted(-10.0 - np.arange(7)) and not np.array_equal(energies, -10.0 - np.arange(7))
    with pytest.raises(ValueError, match="rng"):
        next(iterate_batches(ds, 3, shuffle=True))
    sub = ds.subset([6, 0])
    assert [g.energy[0] for g in sub] == [-16.0, -10.0]


def test_graph_dataset_names_bad_frame():
    frames = _labelled_frames(3)
    frames[2] = molecule("NH3")
    with pytest.raises(ValueError, match=r"frame 2: element\(s\) \['N'\]"):
        GraphDataset(frames, ["H", "O"], 3.0)
