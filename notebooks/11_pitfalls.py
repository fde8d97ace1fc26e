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
# # 11 · Pitfalls for students
#
# **What this covers.** Six ways to fool yourself when you first train and use an interatomic
# potential, each with a small demonstration that prints the number that gives it away: random
# train/test splits of time-correlated MD frames; energy units (kcal/mol read as eV); training on
# energies only; what `parity=False` does and does not do; a cutoff $r_{\max}$ shorter than the
# 1–3 (angle) distances; and float32 in long NVE runs. `docs/pitfalls.md` lists the same points
# next to the developers' own pitfalls.
#
# **What it does not cover.** Hyperparameter tuning, active learning, or data sets other than the
# shipped aspirin frames. The experiments are deliberately tiny; each shows the *direction* of an
# effect, with its number printed.

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

N_TRAIN, EPOCHS = (10, 1) if SMOKE else (40, 10)   # the energy-only vs energy+forces runs
NVE_STEPS = 20 if SMOKE else 1000                   # float32 vs float64 NVE
from nequip_np.data.examples import aspirin_path

DATA = str(aspirin_path())  # 300 xTB frames shipped with the package, 50 fs apart
os.environ["NEQUIP_NP_NO_PROGRESS"] = "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Random splits of correlated MD frames
#
# Frames from one MD trajectory are correlated in time: neighbouring frames are almost the same
# structure. A *random* split puts a near-copy of almost every test frame into the training set,
# so the test error measures interpolation between near-duplicates, not how the model does on a
# new trajectory. Measure it: for each test frame, the distance to the closest training frame (RMS
# difference of all interatomic distances — no alignment needed), for a random split and for a
# split in time (train on the first half, test on the last third).

# %%
from nequip_np.data.dataset import read_frames

frames = read_frames(DATA)
iu = np.triu_indices(len(frames[0]), 1)
dvec = np.array([np.linalg.norm(a.positions[:, None] - a.positions[None], axis=-1)[iu] for a in frames])

def nearest_train_distance(train, test):
    d = np.sqrt(((dvec[test][:, None, :] - dvec[train][None, :, :]) ** 2).mean(axis=-1))
    return d.min(axis=1)

n = len(frames)
perm = rng.permutation(n)
random_split = nearest_train_distance(perm[: n // 2], perm[-n // 3:])
time_split = nearest_train_distance(np.arange(n // 2), np.arange(n - n // 3, n))
print(f"nearest training frame, mean over test frames: random split {random_split.mean():.3f} Å, "
      f"split in time {time_split.mean():.3f} Å")
e = np.array([a.get_potential_energy() for a in frames])
e = e - e.mean()
print(f"energy autocorrelation at lag 1 (50 fs): {np.corrcoef(e[:-1], e[1:])[0, 1]:+.2f}; "
      f"at lag 10: {np.corrcoef(e[:-10], e[10:])[0, 1]:+.2f}")

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.hist(random_split, bins=30, alpha=0.6, label="random split")
ax.hist(time_split, bins=30, alpha=0.6, label="split in time")
ax.set_xlabel("distance to the nearest training frame (Å)"); ax.set_ylabel("test frames"); ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# The printed means say how much closer a random split's test frames sit to the training set
# than the frames of a later stretch of the trajectory. Report test errors on frames that are
# separated in time (or from independent trajectories), as `benchmarks/learning_curves.py` does
# not — its test set is a random draw from the same 15 ps, which flatters all three curves alike.
#
# ## 2. Units: kcal/mol is not eV
#
# Many data sets (rMD17, for example) give energies in kcal/mol and forces in kcal/mol/Å. Read as
# eV they are 23 times too large, and nothing fails: the model trains, the errors are reported
# 23 times too large, and MD runs at the wrong temperature scale. `read_frames(..., units=...)`
# and the `data.units` key of a training configuration convert on reading.

# %%
from ase import units

as_ev = read_frames(DATA, index=":5")
as_kcal = read_frames(DATA, index=":5", units="kcal/mol")
ratio = as_kcal[0].get_potential_energy() / as_ev[0].get_potential_energy()
print(f"1 kcal/mol = {units.kcal / units.mol:.5f} eV; the same file read with units='kcal/mol' scales "
      f"energies by {ratio:.5f} and forces by {as_kcal[0].get_forces()[0, 0] / as_ev[0].get_forces()[0, 0]:.5f}")
assert np.isclose(ratio, units.kcal / units.mol)

# %% [markdown]
# ## 3. Training on energies only
#
# One energy per frame is one number; the forces are $3N$ numbers per frame, and they are the
# derivatives MD needs. A model trained on energies alone learns the forces only indirectly. Two
# short runs with the same budget, one with the force term switched off:

# %%
import tempfile
from pathlib import Path

from nequip_np.train.trainer import Trainer

workdir = Path(tempfile.mkdtemp(prefix="nequip_np_11_"))

def short_run(loss_coeffs, name):
    config = {
        "model": dict(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=1, num_features=8,
                      radial_mlp_depth=1, radial_mlp_width=16, avg_num_neighbors="auto",
                      per_type_energy_scales="auto", per_type_energy_shifts="auto", seed=0),
        "data": dict(path=DATA, train=N_TRAIN, val=10, test=50, split_seed=3),
        "training": dict(learning_rate=0.01, batch_size=5, max_epochs=EPOCHS, early_stopping=None,
                         loss_coeffs=loss_coeffs, seed=0),
    }
    return Trainer(config, output_dir=workdir / name, progress=False).train()["test"]

both = short_run({"per_atom_energy": 1.0, "forces": 1.0}, "both")
energy_only = short_run({"per_atom_energy": 1.0, "forces": 0.0}, "energy_only")
for name, t in (("energy + forces", both), ("energy only", energy_only)):
    print(f"{name:16s}: test force MAE {1e3 * t['forces_mae']:6.0f} meV/Å, "
          f"energy MAE {1e3 * t['per_atom_energy_mae']:6.2f} meV/atom")

# %% [markdown]
# The two printed lines compare the runs at the same frames and steps. Forces are what MD
# integrates, and energies alone constrain them only through one number per frame; train on
# both whenever the data has forces.
#
# ## 4. `parity=False` is still O(3)-invariant
#
# A common belief, from the NequIP paper and old versions of nequip, is that `parity=False` gives
# an SO(3)-only model that can tell a molecule from its mirror image. In nequip 0.19 (and here),
# `parity=False` keeps only the "natural" irreps `0e, 1o, 2e, …` and the paths that respect
# parity among them, so the energy is still invariant under inversion — the model simply has
# fewer paths. (A physical energy should not distinguish mirror images anyway; what a chiral
# *property* would need is a pseudoscalar output, `0o`.) A random, chiral arrangement of five
# atoms and its mirror image:

# %%
from ase import Atoms

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms

chiral = Atoms("CHOHO", positions=[[0, 0, 0], [1.1, 0, 0], [0, 1.2, 0], [0, 0, 1.3], [-0.6, -0.7, -0.5]])
mirror = chiral.copy(); mirror.positions[:, 0] *= -1
for parity in (True, False):
    m = NequIPModel(type_names=["H", "C", "O"], r_max=3.0, num_layers=3, l_max=2, parity=parity,
                    num_features=8, avg_num_neighbors=4.0, seed=0)
    e1, e2 = (m.energy(graph_from_atoms(a, ["H", "C", "O"], 3.0))[0] for a in (chiral, mirror))
    print(f"parity={parity!s:5}: hidden irreps {m.plan.layers[2].irreps_in}, "
          f"{sum(len(L.conv.paths) for L in m.plan.layers)} paths; E(mirror) − E = {e2 - e1:.1e} eV")
    assert abs(e2 - e1) < 1e-10

# %% [markdown]
# ## 5. A cutoff shorter than the 1–3 distances
#
# Bond angles are encoded by the distances between atoms that share a bonded neighbour (1–3
# pairs, about 2.1–2.6 Å in organic molecules). With $r_{\max}$ below them, one layer cannot see
# an angle at all, and even with several layers the model has to reconstruct it through the
# central atom's $l \ge 1$ features (notebook 03, section 9, shows an energy that is exactly flat
# in the angle). The fraction of aspirin's 1–3 pairs inside each cutoff:

# %%
from ase.neighborlist import natural_cutoffs

atoms = frames[0]
radii = np.array(natural_cutoffs(atoms))
dist = atoms.get_all_distances()
bonded = (dist < 1.2 * (radii[:, None] + radii[None])) & ~np.eye(len(atoms), dtype=bool)
one_three = (bonded.astype(int) @ bonded.astype(int) > 0) & ~bonded & ~np.eye(len(atoms), dtype=bool)
d13 = dist[np.triu(one_three, 1)]
print(f"{len(d13)} 1–3 pairs, distances {d13.min():.2f} … {d13.max():.2f} Å (median {np.median(d13):.2f})")
for r_max in (1.5, 2.0, 2.5, 3.0, 4.0):
    print(f"r_max = {r_max} Å: {np.mean(d13 < r_max):4.0%} of the 1–3 pairs are neighbours")

# %% [markdown]
# ## 6. float32 in long NVE runs
#
# In float32, a number near aspirin's total energy is stored with a resolution of about
# $10^{-4}$ eV, and every operation carries relative round-off near $10^{-7}$. A model computed
# entirely in float32 would add that noise to every energy and force. nequip (and this package)
# therefore keep the per-species scale and shift and the sum over atoms in float64 even for a
# float32 model; only the network's per-atom output is float32. How much round-off is left? The
# same model (same weights) in float64 and float32, the same start, velocity Verlet:

# %%
from ase.md.verlet import VelocityVerlet

from nequip_np import NequIPCalculator
from nequip_np.md.run import maxwell_boltzmann


def nve_energies(dtype):
    model = NequIPModel(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=1, num_features=8,
                        avg_num_neighbors=10.0, per_type_energy_shifts={"H": -10.7, "C": -48.6, "O": -77.0},
                        per_type_energy_scales={"H": 1.0, "C": 1.0, "O": 1.0}, model_dtype=dtype, seed=0)
    a = frames[0].copy()
    a.calc = NequIPCalculator(model)
    maxwell_boltzmann(a, 300.0, np.random.default_rng(1))
    log = []
    dyn = VelocityVerlet(a, timestep=0.25 * units.fs)
    dyn.attach(lambda: log.append(a.get_potential_energy() + a.get_kinetic_energy()), interval=1)
    dyn.run(NVE_STEPS)
    return np.array(log)

e64, e32 = nve_energies("float64"), nve_energies("float32")
print(f"|E| ≈ {abs(e64[0]):.0f} eV; float32 spacing there: {abs(np.spacing(np.float32(e64[0]))):.1e} eV")
for name, e_ in (("float64", e64), ("float32", e32)):
    print(f"{name}: std of E_tot {1e3 * e_.std():.4f} meV, |E_tot(end) − E_tot(0)| {1e3 * abs(e_[-1] - e_[0]):.4f} meV")
print(f"largest |E_tot(float32) − E_tot(float64)| along the run: {1e3 * np.abs(e32 - e64).max():.2e} meV")

fig, ax = plt.subplots(figsize=(6, 3.2))
t_fs = np.arange(len(e64)) * 0.25
ax.plot(t_fs, 1e3 * (e32 - e32[0]), lw=0.8, label="float32")
ax.plot(t_fs, 1e3 * (e64 - e64[0]), lw=0.8, ls="--", label="float64")
ax.set_xlabel("time (fs)"); ax.set_ylabel("E_tot − E_tot(0) (meV)"); ax.legend(fontsize=8); fig.tight_layout()

# %% [markdown]
# Read the last printed line against the float32 spacing of the total energy: keeping the large
# terms in float64 leaves only the network's own round-off, and on this small molecule and run
# length the two precisions conserve energy alike (the printed standard deviations). The pitfall is
# a pipeline that casts energies, positions or the sum to float32 itself — the spacing printed
# above is then the noise floor of every energy. For long NVE runs, or whenever energy
# conservation itself is the check, keep float64 (the default).
#
# **Try it.** (1) In section 1, split in time with a gap of 20 frames between training and test
# and compare. (2) In section 3 give the force term a weight of 0.1 instead of 0. (3) In section 6
# run 10 times as many steps.
#
# <details><summary>Solutions</summary>
#
# (1) `nearest_train_distance(np.arange(n // 2), np.arange(n // 2 + 20, n))`: the nearest
# training frames move farther away, the more so the larger the gap.
# (2) `{"per_atom_energy": 1.0, "forces": 0.1}`: the force error falls most of the way to the
# energy + forces run — a little force information goes a long way.
# (3) `NVE_STEPS = 10000`: compare the printed largest difference between the two precisions
# with the one at 1000 steps — round-off differences between trajectories grow with time.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Convert the first frame's energy from eV to kcal/mol yourself (1 kcal = 4184 J, 1 eV =
# 1.602176634e-19 J, Avogadro's number 6.02214076e23 /mol) and compare with ASE's constants. One
# solution is filled in.

# %%
kcal_per_mol_in_eV = 4184.0 / 6.02214076e23 / 1.602176634e-19
e_kcal = as_ev[0].get_potential_energy() / kcal_per_mol_in_eV
print(f"{as_ev[0].get_potential_energy():.4f} eV = {e_kcal:.2f} kcal/mol")
assert np.isclose(kcal_per_mol_in_eV, units.kcal / units.mol, rtol=1e-6)
