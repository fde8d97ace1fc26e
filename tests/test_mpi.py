"""The MPI decomposition, checked in one process (partitions summed by hand) and on 2 ranks with mpirun.

In one process: the energies and forces of any partition of the atoms into "ranks" sum to the model's;
the receptive-field shell is exact and smaller than the system when the system is large; shard
gradients of a batch sum to the batch gradient for uneven and empty shards. With mpi4py and ``mpirun``
(``pip install 'nequip-np[mpi]'``): ``mpirun -np 2 nequip-np train`` gives the single-process model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.parallel.mpi import (
    GhostCache,
    SerialComm,
    decomposed_energy_forces,
    ghost_energy_forces,
    hop_distance,
    owned_energy_forces,
    receptive_subgraph,
    shard_frames,
    shard_loss_and_grad,
)
from nequip_np.parallel.threads import run_thread_ranks, slab_ghosts
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from tests.model_factory import TYPES, molecule, periodic, small_model
from tests.test_lammps import run_ranks

DATA = Path(__file__).resolve().parents[1] / "examples" / "aspirin" / "aspirin_xtb_300.extxyz"


@pytest.fixture(scope="module")
def model():
    return small_model(num_layers=3, l_max=2, r_max=2.6)


def _long_crystal(rng, n=6):
    atoms = bulk("C", "diamond", a=3.6, cubic=True).repeat((n, 1, 1))
    atoms.set_chemical_symbols([TYPES[k % 3] for k in range(len(atoms))])
    atoms.positions += 0.08 * rng.standard_normal(atoms.positions.shape)
    return atoms


class _OneRank:
    """Rank ``rank`` of ``size`` whose collectives return its own contribution (summed by the test)."""

    def __init__(self, rank, size):
        self.rank, self.size = rank, size

    def sum(self, a):
        return np.array(a, dtype=np.float64, copy=True)


# --------------------------------------------------------------------------------------------------
# MD decomposition
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("structure", ["long", "small_box", "molecule"])
def test_partitioned_energies_and_forces_sum_to_the_model(model, structure):
    rng = np.random.default_rng(0)
    atoms = {
        "long": lambda: _long_crystal(rng),
        "small_box": lambda: periodic(rng, small=True),
        "molecule": lambda: molecule(rng, 9),
    }[structure]()
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    ref = model.compute(graph)
    owner = rng.integers(0, 3, len(atoms))
    parts = [owned_energy_forces(model, graph, owner == r) for r in range(3)]
    energy = sum(p["energy"] for p in parts)
    assert abs(energy - ref["total_energy"][0]) <= 1e-12 * abs(ref["total_energy"][0])
    np.testing.assert_allclose(sum(p["forces"] for p in parts), ref["forces"], rtol=0, atol=1e-12)
    if structure != "molecule":
        np.testing.assert_allclose(sum(p["virial"] for p in parts), ref["virial"][0], rtol=0, atol=1e-11)


def test_the_shell_is_the_receptive_field(model):
    """On a long crystal the shell of one end excludes the far end, and dropping it changes nothing."""
    atoms = _long_crystal(np.random.default_rng(1), n=8)  # 28.8 Å along x; receptive field 3 x 2.6 Å
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    owned = atoms.positions[:, 0] < 3.0
    sub, nodes = receptive_subgraph(graph, owned, model.config.num_layers)
    assert owned.sum() < nodes.size < len(atoms)
    hop = hop_distance(graph.edge_index, owned, 3)
    assert hop.max() == 4 and set(np.unique(hop[nodes])) == {0, 1, 2, 3}
    # every kept atom lies within num_layers x r_max of an owned atom (periodic distance)
    d = atoms.get_all_distances(mic=True)[np.ix_(nodes, np.flatnonzero(owned))].min(axis=1)
    assert d.max() < 3 * model.config.r_max
    full = model.compute(graph)["atomic_energy"][owned].sum()
    assert owned_energy_forces(model, graph, owned)["energy"] == pytest.approx(full, rel=1e-13)


def test_decomposed_evaluation_is_independent_of_the_atom_order(model):
    rng = np.random.default_rng(2)
    atoms = periodic(rng)
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    ref = model.compute(graph)
    perm = rng.permutation(len(atoms))
    ids = perm + 100  # ids need not start at 1 or be contiguous
    out = decomposed_energy_forces(model, SerialComm(), ids, graph.atom_types[perm], graph.pos[perm], graph.cell[0])
    assert out["energy"] == pytest.approx(ref["total_energy"][0], rel=1e-13)
    np.testing.assert_allclose(out["forces"], ref["forces"][perm], atol=1e-12)
    np.testing.assert_allclose(out["virial"], ref["virial"][0], atol=1e-11)
    with pytest.raises(ValueError, match="not unique"):
        decomposed_energy_forces(
            model, SerialComm(), np.zeros(len(atoms), int), graph.atom_types, graph.pos, graph.cell[0]
        )


@pytest.mark.parametrize("fold", [False, True])
@pytest.mark.parametrize("size", [1, 2, 3])
def test_ghost_decomposition_equals_the_periodic_model(model, size, fold):
    """Owned atoms + explicit ghost images on 1-3 thread ranks: energy, forces, virial of the model.

    With ``fold`` the images along y and z (periodic, not split) are merged back into periodic edges,
    and along x too on one rank; the atoms evaluated per rank then drop."""
    atoms = _long_crystal(np.random.default_rng(3), n=8)  # 28.8 Å; slabs ≥ 9.6 Å > 3 x 2.6 Å
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    ref = model.compute(graph)
    cut = model.config.num_layers * model.config.r_max + 0.5

    def work(comm):
        ids, types, pos, nlocal = slab_ghosts(
            atoms.positions,
            atoms.cell.lengths(),
            graph.atom_types,
            comm.rank,
            comm.size,
            cut,
            np.random.default_rng(comm.rank),
        )
        cache = GhostCache(model.config.r_max)
        kw = {}
        if fold:
            kw = dict(cell=atoms.cell.array, origin=np.zeros(3), fold=(comm.size == 1, True, True))
        first = ghost_energy_forces(model, comm, ids, types, pos, nlocal, cache, **kw)
        again = ghost_energy_forces(model, comm, ids, types, pos, nlocal, cache, **kw)  # everything reused
        assert cache.owners.rebuilds == 1 and cache.nl.builds == 1
        assert np.array_equal(first["forces"], again["forces"])
        return ids[:nlocal], first

    results = run_thread_ranks(size, work)
    computed = [r[1]["n_computed"] for r in results if not isinstance(r, Exception)]
    if fold and size == 1:  # everything folded: the periodic graph itself
        assert computed == [len(atoms)]
    elif fold:  # the slab plus the receptive field on both sides, nothing along y and z
        assert max(computed) < len(atoms) / size + 2 * 3 * 2.6 / 28.8 * len(atoms) + 8
    else:  # explicit images along y and z as well
        assert min(computed) > len(atoms) / size * 2
    forces = np.full((len(atoms), 3), np.nan)
    for result in results:
        assert not isinstance(result, Exception), result
        ids, out = result
        forces[ids - 1] = out["forces"]
        assert out["energy"] == pytest.approx(ref["total_energy"][0], rel=1e-12)
        np.testing.assert_allclose(out["virial"], ref["virial"][0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", [1, 2])
def test_ghost_cache_reuses_folding_and_neighbour_list_between_steps(model, size):
    """Like an engine between re-neighbourings: same ghost rows, every copy moved with its atom."""
    atoms = _long_crystal(np.random.default_rng(5), n=8)
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    cut = model.config.num_layers * model.config.r_max + 0.5
    steps = [0.03 * np.random.default_rng(k).standard_normal(atoms.positions.shape) for k in range(3)]
    steps[0][:] = 0.0
    refs = []
    for disp in steps:
        moved = atoms.copy()
        moved.positions += disp
        refs.append(model.compute(graph_from_atoms(moved, TYPES, model.config.r_max)))

    def work(comm):
        ids, types, pos, nlocal = slab_ghosts(
            atoms.positions, atoms.cell.lengths(), graph.atom_types, comm.rank, comm.size, cut
        )
        cache = GhostCache(model.config.r_max, skin=0.5)
        kw = dict(cell=atoms.cell.array, origin=np.zeros(3), fold=(comm.size == 1, True, True))
        outs = [
            ghost_energy_forces(model, comm, ids, types, pos + disp[ids - 1], nlocal, cache, **kw) for disp in steps
        ]
        return ids[:nlocal], outs, cache.nl.builds, cache.fold_builds, cache.owners.rebuilds

    results = run_thread_ranks(size, work)
    for k, ref in enumerate(refs):
        forces = np.full((len(atoms), 3), np.nan)
        for result in results:
            assert not isinstance(result, Exception), result
            ids, outs, nl_builds, fold_builds, owner_builds = result
            assert (nl_builds, fold_builds, owner_builds) == (1, 1, 1)  # built once, reused twice
            forces[ids - 1] = outs[k]["forces"]
            assert outs[k]["energy"] == pytest.approx(ref["total_energy"][0], rel=1e-12)
            np.testing.assert_allclose(outs[k]["virial"], ref["virial"][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(forces, ref["forces"], rtol=0, atol=1e-12)


def test_a_failure_on_one_rank_stops_every_rank(model):
    atoms = _long_crystal(np.random.default_rng(4), n=8)
    graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
    cut = model.config.num_layers * model.config.r_max + 0.5

    def work(comm):
        ids, types, pos, nlocal = slab_ghosts(
            atoms.positions, atoms.cell.lengths(), graph.atom_types, comm.rank, comm.size, cut
        )
        if comm.rank == 1:
            pos[0] = np.nan
        return ghost_energy_forces(model, comm, ids, types, pos, nlocal, GhostCache(model.config.r_max))

    first, second = run_thread_ranks(2, work)
    assert isinstance(second, ValueError) and "finite" in str(second)
    assert isinstance(first, RuntimeError) and "another MPI rank" in str(first)


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def _labelled_batch(model, n_frames, stress=True):
    rng = np.random.default_rng(3)
    graphs = []
    for k in range(n_frames):
        atoms = periodic(rng) if k % 2 else molecule(rng, 5 + k)
        g = graph_from_atoms(atoms, TYPES, model.config.r_max)
        g.energy = np.array([rng.normal(-1000.0, 5.0)])
        g.forces = rng.normal(size=g.pos.shape)
        g.stress = rng.normal(size=(1, 3, 3)) * 0.01 if stress else None
        graphs.append(g)
    return batch_graphs(graphs)


@pytest.mark.parametrize("size", [2, 3, 7])
@pytest.mark.parametrize("coeffs", [(1.0, 1.0, 0.0), (0.3, 1.0, 0.5), (1.0, 0.0, 0.0)])
def test_shard_gradients_sum_to_the_batch_gradient(model, size, coeffs):
    """Uneven shards (5 frames of different sizes) and empty ones (7 ranks): the sum is exact."""
    batch = _labelled_batch(model, 5, stress=coeffs[2] > 0)
    c = LossCoefficients(*coeffs)
    loss, comps, grads, _ = loss_and_grad(model, batch, c)
    parts = [shard_loss_and_grad(model, batch, c, _OneRank(r, size)) for r in range(size)]
    assert sum(p[0] for p in parts) == pytest.approx(loss, rel=1e-12)
    for key, value in comps.items():
        assert sum(p[1][key] for p in parts) == pytest.approx(value, rel=1e-12)
    for key, g in grads.items():
        np.testing.assert_allclose(sum(p[2][key] for p in parts), g, rtol=1e-10, atol=1e-12 * np.abs(g).max())


def test_shards_cover_every_frame_once():
    for n, size in ((5, 2), (2, 3), (9, 4)):
        shards = [shard_frames(n, r, size) for r in range(size)]
        assert np.concatenate(shards).tolist() == list(range(n))


def test_two_rank_training_equals_one_process(tmp_path):
    """20 Adam steps (+ EMA) with mpirun -np 2 give the single-process model to 1e-10 relative."""
    from nequip_np.cli import main
    from tests.test_lammps import mpirun_or_skip

    mpirun_or_skip()
    configs = {}
    for name in ("one", "two"):
        cfg = {
            "run_name": name,
            "model": {
                "type_names": ["H", "C", "O"],
                "r_max": 3.0,
                "num_layers": 2,
                "l_max": 1,
                "num_features": 4,
                "radial_mlp_width": 8,
                "per_type_energy_shifts": "least_squares",
            },
            "data": {"path": str(DATA), "train": 15, "val": 2, "test": 0, "split_seed": 3},
            # 15 frames in batches of 3 -> 5 steps per epoch: 20 steps; shards of 2 and 1 frames
            "training": {
                "batch_size": 3,
                "max_epochs": 4,
                "learning_rate": 0.01,
                "early_stopping": None,
                "seed": 5,
                "output_dir": str(tmp_path / name),
            },
        }
        configs[name] = tmp_path / f"{name}.yaml"
        configs[name].write_text(yaml.safe_dump(cfg))
    assert main(["train", str(configs["one"]), "--no-progress"]) == 0
    script = tmp_path / "train.py"
    script.write_text("import sys\nfrom nequip_np.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    run_ranks(2, script, tmp_path, "train", configs["two"], "--no-progress")
    one, two = np.load(tmp_path / "one" / "model.npz"), np.load(tmp_path / "two" / "model.npz")
    keys = [k for k in one.files if k.startswith("param/")]
    assert keys
    for key in keys:
        scale = np.abs(one[key]).max()
        assert np.abs(two[key] - one[key]).max() <= 1e-10 * scale, key
    rows_one = np.genfromtxt(tmp_path / "one" / "metrics.csv", delimiter=",", names=True)
    rows_two = np.genfromtxt(tmp_path / "two" / "metrics.csv", delimiter=",", names=True)
    np.testing.assert_allclose(rows_two["train_loss"], rows_one["train_loss"], rtol=1e-12)


def test_ranks_share_the_cores_for_numba_threads(monkeypatch):
    import os

    import numba

    from nequip_np.parallel.mpi import local_ranks, share_cores_between_ranks

    previous = numba.get_num_threads()
    try:
        monkeypatch.delenv("NUMBA_NUM_THREADS", raising=False)
        monkeypatch.delenv("OMPI_COMM_WORLD_LOCAL_SIZE", raising=False)
        monkeypatch.delenv("MPI_LOCALNRANKS", raising=False)
        assert local_ranks() == 1 and share_cores_between_ranks() is None
        monkeypatch.setenv("MPI_LOCALNRANKS", str(2 * (os.cpu_count() or 1)))  # more ranks than cores
        assert share_cores_between_ranks() == 1 and numba.get_num_threads() == 1
        monkeypatch.setenv("NUMBA_NUM_THREADS", "1")  # the user's choice is left alone
        assert share_cores_between_ranks() is None
    finally:
        numba.set_num_threads(previous)
