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
# # 07 · Molecular dynamics with ASE
#
# **What this covers.** Running MD with a NequIP model through ASE: a small aspirin model trained
# here in a minute, wrapped in `NequIPCalculator` with a neighbour-list skin; microcanonical
# dynamics (velocity Verlet) and the energy-conservation check (potential, kinetic and total
# energy against time, fluctuation of the total against the time step); Langevin dynamics at
# 300 K (temperature against time, with the target); and the distributions of C–H, C–C and C–O
# distances over the trajectory, next to those of the GFN2-xTB trajectory (500 K) that the
# training frames came from; and diagnostics that turn a run into verdicts — bond topology per
# frame, temperature fluctuations against the canonical expectation, a run that fails and how
# the checks see it, and the disagreement of two independently trained models as an uncertainty
# signal.
#
# **What it does not cover.** A production potential (the model is tiny and briefly trained:
# notebook 06, `docs/accuracy.md`), long or large simulations, periodic systems and pressure
# control, the command-line driver `nequip-np md` and LAMMPS (`docs/md.md`), and why forces from
# a smooth energy conserve energy in the first place (notebooks 04 and 09).

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

N_TRAIN, EPOCHS = (10, 1) if SMOKE else (150, 16)  # quick training of the model used below (~1 min)
TIMESTEP_FS = 0.5
NVE_STEPS = 20 if SMOKE else 2000                   # velocity Verlet steps (1 ps at full size)
DT_SWEEP = [0.25, 0.5, 1.0] if not SMOKE else [0.5, 1.0]
SWEEP_STEPS = 10 if SMOKE else 400                   # steps per time step in the drift sweep
NVT_STEPS = 20 if SMOKE else 4000                   # Langevin steps (2 ps at full size)
TEMPERATURE_K = 300.0                               # see section 1 for why not 500 K
BACKEND = "numpy" if SMOKE else "numba"   # numba's compiled kernels are cached on disk after a first run
from nequip_np.data.examples import aspirin_path

DATA = str(aspirin_path())  # 300 xTB frames shipped with the package
os.environ["NEQUIP_NP_NO_PROGRESS"] = "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A model to run
#
# A quick `Trainer` run on the shipped aspirin frames (the configuration of notebook 06, more
# frames and epochs). Any model file works the same way: `NequIPCalculator("model.npz")`, or one
# exported from official nequip.
#
# A model this small and briefly trained has a potential-energy surface that is right near the
# training data and arbitrary far from it. At the 500 K of the training trajectory it found, in
# our trials, a region where two atoms collapse onto each other within a picosecond (an
# unphysical "hole" — the blow-up guard of `nequip_np.md.run_md` stops such runs); we run at
# 300 K, and section 6 checks, frame by frame, whether even that stays chemically sensible. More data, longer training, or a
# short-range repulsion (`pair_potential: {type: ZBL}`) are the remedies.

# %%
import tempfile
import time
from pathlib import Path

from nequip_np.train.trainer import Trainer

workdir = Path(tempfile.mkdtemp(prefix="nequip_np_07_"))
config = {
    "model": dict(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=1, num_features=8,
                  radial_mlp_depth=1, radial_mlp_width=16, num_bessels=8, avg_num_neighbors="auto",
                  per_type_energy_scales="auto", per_type_energy_shifts="auto", seed=0),
    "data": dict(path=DATA, train=N_TRAIN, val=10, test=0, split_seed=1),
    "training": dict(learning_rate=0.01, batch_size=5, max_epochs=EPOCHS, early_stopping=None,
                     backend=BACKEND, seed=0),
}
start = time.perf_counter()
trainer = Trainer(config, output_dir=workdir, progress=False)
trainer.train()
val = trainer.evaluate(trainer.val_set)
print(f"trained in {time.perf_counter() - start:.0f} s; validation force MAE {1e3 * val['forces_mae']:.0f} meV/Å")
model_path = workdir / "model.npz"

# %% [markdown]
# ## 2. The calculator and its neighbour list
#
# `NequIPCalculator` is an ordinary ASE calculator (energy, per-atom energies, forces; stress for
# periodic cells). With `skin > 0` it builds the neighbour list at $r_{\max}$ + skin and reuses
# it until some atom has moved by skin/2, filtering the stored pairs to $r_{\max}$ on each call,
# so the edges — and the results — are identical to a fresh list on every step.

# %%
from ase.io import read

from nequip_np import NequIPCalculator

calc = NequIPCalculator(model_path, backend=BACKEND, skin=0.5)
print(calc)
atoms = read(DATA, index=0)
atoms.calc = calc
print(f"E = {atoms.get_potential_energy():.4f} eV, max |F| = {np.abs(atoms.get_forces()).max():.3f} eV/Å "
      f"(xTB: {np.abs(read(DATA, index=0).get_forces()).max():.3f} eV/Å)")

# %% [markdown]
# ## 3. NVE: velocity Verlet and energy conservation
#
# Start from a training-set geometry with Maxwell–Boltzmann velocities at 300 K (net momentum and
# rotation removed), and integrate Newton's equations with ASE's `VelocityVerlet`. An observer
# records the energies at every step. With exact forces of a smooth energy, the total energy
# fluctuates by $O(\Delta t^2)$ and does not drift.

# %%
from ase import units
from ase.md.velocitydistribution import ZeroRotation
from ase.md.verlet import VelocityVerlet

from nequip_np.md.run import maxwell_boltzmann


def start_atoms(temperature_K, seed):
    a = read(DATA, index=0)
    a.calc = calc
    maxwell_boltzmann(a, temperature_K, np.random.default_rng(seed))   # net momentum removed
    ZeroRotation(a)
    return a

def run_nve(timestep_fs, steps, seed=1):
    a = start_atoms(TEMPERATURE_K, seed)
    dyn = VelocityVerlet(a, timestep=timestep_fs * units.fs)
    log = []
    dyn.attach(lambda: log.append((a.get_potential_energy(), a.get_kinetic_energy())), interval=1)
    dyn.run(steps)
    return np.array(log)     # (steps + 1, 2): Epot, Ekin

builds0, start = calc.nl_builds, time.perf_counter()
nve = run_nve(TIMESTEP_FS, NVE_STEPS)
seconds = time.perf_counter() - start
print(f"{NVE_STEPS} steps in {seconds:.1f} s ({1e3 * seconds / max(NVE_STEPS, 1):.1f} ms/step), "
      f"{calc.nl_builds - builds0} neighbour-list builds")
etot = nve.sum(axis=1)
print(f"total energy: std {1e3 * etot.std():.2f} meV, end − start {1e3 * (etot[-1] - etot[0]):+.2f} meV "
      f"(kinetic energy std {1e3 * nve[:, 1].std():.0f} meV)")

# %%
t_ps = np.arange(len(nve)) * TIMESTEP_FS * 1e-3
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), constrained_layout=True)
e0 = nve[0, 0]
axes[0].plot(t_ps, nve[:, 0] - e0, label=r"$E_{pot}$", lw=0.8)
axes[0].plot(t_ps, nve[:, 1], label=r"$E_{kin}$", lw=0.8)
axes[0].plot(t_ps, etot - e0, "k", label=r"$E_{tot}$", lw=1.2)
axes[0].set_xlabel("time (ps)"); axes[0].set_ylabel(f"energy − {e0:.2f} eV (eV)"); axes[0].legend(fontsize=8)
axes[0].set_title(f"velocity Verlet, Δt = {TIMESTEP_FS} fs")
axes[1].plot(t_ps, 1e3 * (etot - etot[0]), "k", lw=0.8)
axes[1].set_xlabel("time (ps)"); axes[1].set_ylabel(r"$E_{tot}(t) - E_{tot}(0)$ (meV)")
axes[1].set_title("total energy, zoomed"); axes[1].grid(alpha=0.3);

# %% [markdown]
# Potential and kinetic energy exchange hundreds of meV while the total stays within a few meV.
# The fluctuation of the total must scale with $\Delta t^2$ for a correct integrator with
# conservative forces: doubling the step should quadruple it. (A force that is not the exact
# gradient of the energy shows up as a drift that does not vanish as $\Delta t \to 0$.)

# %%
sweep = {}
for dt in DT_SWEEP:
    log = run_nve(dt, int(SWEEP_STEPS * 0.5 / dt) if not SMOKE else SWEEP_STEPS)
    e = log.sum(axis=1)
    sweep[dt] = (e.std(), abs(e[-1] - e[0]))
    print(f"Δt = {dt:4.2f} fs ({len(log) - 1:4d} steps): std(E_tot) = {1e3 * e.std():7.3f} meV, "
          f"|drift| = {1e3 * abs(e[-1] - e[0]):7.3f} meV")

fig, ax = plt.subplots(figsize=(4.6, 3.4))
dts = np.array(DT_SWEEP)
stds = np.array([sweep[dt][0] for dt in DT_SWEEP])
ax.loglog(dts, 1e3 * stds, "o-", label="std of $E_{tot}$")
ax.loglog(dts, 1e3 * stds[0] * (dts / dts[0]) ** 2, "k:", label=r"$\propto \Delta t^2$")
ax.set_xlabel("time step (fs)"); ax.set_ylabel("meV"); ax.legend(fontsize=8); ax.grid(alpha=0.3, which="both")
ax.set_title("same simulated time per step size", fontsize=10)
fig.tight_layout()

# %% [markdown]
# ## 4. NVT: Langevin at 300 K
#
# ASE's `Langevin` adds friction and noise to every momentum; the instantaneous kinetic temperature
# $T = 2E_{kin}/(3Nk_B)$ fluctuates around the target. For $N = 21$ atoms the relative fluctuation
# in equilibrium is $\sqrt{2/(3N)} \approx 18\,\%$ — large, as it should be for a small molecule.
# We start from zero velocities, so the first few hundred femtoseconds show the heating by the
# thermostat (friction 0.01/fs, i.e. a 100 fs relaxation time).

# %%
from ase.md.langevin import Langevin

atoms = read(DATA, index=0)
atoms.calc = calc
dyn = Langevin(atoms, timestep=TIMESTEP_FS * units.fs, temperature_K=TEMPERATURE_K,
               friction=0.01 / units.fs, fixcm=False, rng=np.random.default_rng(2))
temps, positions = [], []
dyn.attach(lambda: temps.append(atoms.get_temperature()), interval=1)
dyn.attach(lambda: positions.append(atoms.get_positions().copy()), interval=5)
builds0, start = calc.nl_builds, time.perf_counter()
dyn.run(NVT_STEPS)
temps = np.array(temps)
print(f"{NVT_STEPS} steps in {time.perf_counter() - start:.1f} s, {calc.nl_builds - builds0} neighbour-list builds")
half = len(temps) // 2
print(f"mean T over the second half: {temps[half:].mean():.0f} K (target {TEMPERATURE_K:.0f} K); "
      f"relative std {temps[half:].std() / temps[half:].mean():.2f} (expected ≈ {np.sqrt(2 / (3 * len(atoms))):.2f})")
d_min = min(np.linalg.norm(p[:, None] - p[None], axis=-1)[np.triu_indices(len(atoms), 1)].min() for p in positions)
print(f"smallest interatomic distance along the run: {d_min:.2f} Å (two atoms collapsing would show ≲ 0.7 Å; "
      f"a bond that breaks or forms would not — section 6)")

# %%
t_ps = np.arange(len(temps)) * TIMESTEP_FS * 1e-3
window = max(1, len(temps) // 40)
running = np.convolve(temps, np.ones(window) / window, mode="valid")
fig, ax = plt.subplots(figsize=(7, 3.4))
ax.plot(t_ps, temps, lw=0.5, alpha=0.6, label="instantaneous")
ax.plot(t_ps[window - 1:], running, lw=1.5, label=f"running mean ({window * TIMESTEP_FS:.0f} fs)")
ax.axhline(TEMPERATURE_K, color="k", ls="--", lw=1, label="target")
ax.set_xlabel("time (ps)"); ax.set_ylabel("T (K)"); ax.legend(fontsize=8); ax.grid(alpha=0.3)
ax.set_title(f"Langevin, {TEMPERATURE_K:.0f} K, friction 0.01/fs")
fig.tight_layout()

# %% [markdown]
# A burst in the running mean is potential energy released as the molecule moves into a lower
# basin of the model's surface — a real conformational change or an artefact of the model — which
# the thermostat drains within its ~100 fs relaxation time. Which of the two it is, the plot cannot
# say; section 6 can.

# %% [markdown]
# ## 6. Diagnosing a run, not describing it
#
# Plots of energy and temperature look reassuring even when a run has gone wrong. Four checks
# that turn "looks fine" into numbers:
#
# 1. **Bond topology per frame.** Bonds of the starting frame (distance below 1.2 × the sum of
#    covalent radii); every frame must have exactly the same set. A broken or a new bond is a
#    chemical reaction — at 300 K in aspirin, that means the model failed.
# 2. **Temperature fluctuations against the canonical expectation.** In equilibrium the kinetic
#    temperature of $N$ atoms with $3N$ degrees of freedom has relative standard deviation
#    $\sqrt{2/(3N)}$; much larger means the run is not in equilibrium (or is heating), much
#    smaller that the thermostat or the dynamics are wrong.
# 3. **A run that fails, seen by the checks.** The same NVE dynamics with a time step far too long
#    for the C–H vibration (period ≈ 11 fs).
# 4. **Two models disagreeing.** A second model trained on the same frames from other random
#    weights; where the two disagree, at least one is wrong. The disagreement is an uncertainty
#    signal that needs no reference labels.

# %%
from ase.neighborlist import natural_cutoffs

radii = np.array(natural_cutoffs(atoms))
symbols_md = atoms.get_chemical_symbols()
bond_cut = 1.2 * (radii[:, None] + radii[None, :])

def bonds(pos):
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    return frozenset(zip(*np.nonzero(np.triu(d < bond_cut, 1))))

def topology_report(frames, label):
    ref_bonds = bonds(frames[0])
    changed = [k for k, p in enumerate(frames) if bonds(p) != ref_bonds]
    print(f"{label}: {len(ref_bonds)} bonds in frame 0; {len(changed)} of {len(frames)} frames with another topology"
          + (f" (first at frame {changed[0]})" if changed else ""))
    if changed:
        first = bonds(frames[changed[0]])
        name = lambda pair: "–".join(f"{symbols_md[i]}{i}" for i in pair)
        print(f"  in that frame: broken {[name(p) for p in sorted(ref_bonds - first)][:4]}, "
              f"new {[name(p) for p in sorted(first - ref_bonds)][:4]}")
    return changed

nvt_changed = topology_report(positions, "Langevin 300 K")
half = len(temps) // 2
rel_std, expected = temps[half:].std() / temps[half:].mean(), np.sqrt(2 / (3 * len(atoms)))
print(f"Langevin 300 K: relative std of T over the second half {rel_std:.3f}, canonical expectation {expected:.3f}")

# %%
FAIL_DT_FS, FAIL_STEPS = 8.0, 60
a_fail = start_atoms(TEMPERATURE_K, seed=3)
dyn = VelocityVerlet(a_fail, timestep=FAIL_DT_FS * units.fs)
fail_log, fail_pos = [], []
dyn.attach(lambda: (fail_log.append(a_fail.get_potential_energy() + a_fail.get_kinetic_energy()),
                    fail_pos.append(a_fail.get_positions().copy())), interval=1)
with np.errstate(all="ignore"):
    try:
        dyn.run(FAIL_STEPS)
    except Exception as err:          # an exploding run may also stop on its own
        print(f"the run stopped: {type(err).__name__}: {err}")
fail_e = np.array(fail_log)
print(f"NVE at Δt = {FAIL_DT_FS} fs: total energy moved by {1e3 * np.nanmax(np.abs(fail_e - fail_e[0])):.0f} meV "
      f"(at Δt = {TIMESTEP_FS} fs: {1e3 * np.abs(etot - etot[0]).max():.1f} meV)")
fail_changed = topology_report(fail_pos, f"NVE Δt = {FAIL_DT_FS} fs")

# %%
import copy

config_b = copy.deepcopy(config)
config_b["model"]["seed"], config_b["training"]["seed"] = 1, 1
trainer_b = Trainer(config_b, output_dir=workdir / "second", progress=False)
trainer_b.train()
calc_b = NequIPCalculator(workdir / "second" / "model.npz", backend=BACKEND)

def forces_of(c, pos):
    a = read(DATA, index=0); a.positions = pos; a.calc = c
    return a.get_forces()

ref_frames = read(DATA, index="::10" if not SMOKE else "::60")
disagree = [np.abs(forces_of(calc, f.positions) - forces_of(calc_b, f.positions)).mean() for f in ref_frames]
true_err = [np.abs(forces_of(calc, f.positions) - f.get_forces()).mean() for f in ref_frames]
corr = np.corrcoef(disagree, true_err)[0, 1]
md_disagree = [np.abs(forces_of(calc, p) - forces_of(calc_b, p)).mean() for p in positions[::max(1, len(positions) // 40)]]
print(f"{len(ref_frames)} reference frames: mean |F_A − F_B| = {1e3 * np.mean(disagree):.0f} meV/Å, "
      f"mean |F_A − F_xTB| = {1e3 * np.mean(true_err):.0f} meV/Å, correlation over frames {corr:+.2f}")
print(f"along the 300 K Langevin run: mean |F_A − F_B| = {1e3 * np.mean(md_disagree):.0f} meV/Å")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
axes[0].plot(1e3 * np.array(disagree), 1e3 * np.array(true_err), "o", ms=4)
axes[0].set_xlabel("|F_A − F_B| per frame (meV/Å)"); axes[0].set_ylabel("|F_A − F_xTB| per frame (meV/Å)")
axes[0].set_title(f"disagreement vs true error, r = {corr:+.2f}", fontsize=10)
axes[1].plot(np.arange(len(fail_e)) * FAIL_DT_FS * 1e-3, fail_e - fail_e[0], "C3", label=f"Δt = {FAIL_DT_FS} fs")
axes[1].plot(np.arange(len(etot)) * TIMESTEP_FS * 1e-3, etot - etot[0], "k", label=f"Δt = {TIMESTEP_FS} fs")
axes[1].set_xlabel("time (ps)"); axes[1].set_ylabel("E_tot − E_tot(0) (eV)"); axes[1].legend(fontsize=8)
axes[1].set_title("a run that fails: energy", fontsize=10)

# %%
print("verdicts")
print(f"  Langevin 300 K keeps its bond topology in every frame: {not nvt_changed}")
print(f"  its temperature fluctuation / canonical expectation: {rel_std / expected:.2f} (≈ 1 in equilibrium)")
print(f"  NVE at {FAIL_DT_FS} fs: energy error {np.nanmax(np.abs(fail_e - fail_e[0])) / np.abs(etot - etot[0]).max():.0f}× "
      f"that at {TIMESTEP_FS} fs; bond topology changed in {len(fail_changed)} of {len(fail_pos)} frames")
print(f"  two-model force disagreement vs true error over reference frames: correlation {corr:+.2f}")

# %% [markdown]
# In the committed run the 300 K Langevin trajectory fails the topology check (the frame and the
# bonds are printed above) although its temperature, its energy and its smallest interatomic
# distance looked unremarkable — and the two models disagree more along that trajectory than on
# the reference frames (both means printed): the model has wandered off its training data.
#
# How to read the verdicts: a run is suspect as soon as one bond appears or disappears, or the
# temperature fluctuates far more (or less) than $\sqrt{2/(3N)}$ allows; a time step that is too
# long shows up as a total energy that is not conserved, long before anything looks odd in a
# temperature plot. The two-model disagreement needs no labels; the printed correlation says how
# well it tracks the true error on this data — with one small model pair and frames all drawn
# from the training distribution it can be weak, and an ensemble of more models, or frames
# farther from the data, make it more informative.

# %% [markdown]
# ## 5. Distance distributions: model MD against the reference trajectory
#
# For a single molecule the "radial distribution function" is the histogram of interatomic
# distances per pair of elements, over the trajectory. The reference is the 300 shipped frames
# from GFN2-xTB MD at 500 K; the model's comes from the second half of our 300 K Langevin run
# (after heating). Peaks should sit at the same distances; the lower temperature narrows bond
# peaks by only $\sqrt{300/500} \approx 0.8$ (a C–H bond's thermal spread is ~0.03–0.04 Å), which
# bins of 0.05 Å barely resolve.
# Bonded peaks (C–H ≈ 1.1 Å, C–C ≈ 1.4–1.5 Å, C–O ≈ 1.2–1.4 Å) probe the stiff bonds; the
# structure beyond 2 Å the molecule's shape and torsions.

# %%
symbols = np.array(atoms.get_chemical_symbols())
PAIRS = [("C", "H"), ("C", "C"), ("C", "O")]
BINS = np.linspace(0.8, 6.0, 105)

def pair_distances(position_frames, a, b):
    i, j = np.flatnonzero(symbols == a), np.flatnonzero(symbols == b)
    out = []
    for pos in position_frames:
        d = np.linalg.norm(pos[i][:, None, :] - pos[j][None, :, :], axis=-1)
        out.append(d[np.triu_indices(len(i), 1)] if a == b else d.ravel())
    return np.concatenate(out)

reference = [f.get_positions() for f in read(DATA, index=":")]
model_frames = positions[len(positions) // 2:]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), constrained_layout=True)
for ax, (a, b) in zip(axes, PAIRS):
    for label, frames_, style in (("xTB reference", reference, "k-"), ("model MD", model_frames, "C1-")):
        hist, edges = np.histogram(pair_distances(frames_, a, b), bins=BINS, density=True)
        ax.plot(0.5 * (edges[1:] + edges[:-1]), hist, style, lw=1.2, label=label)
    ax.set_title(f"{a}–{b}"); ax.set_xlabel("distance (Å)")
axes[0].set_ylabel("probability density (1/Å)"); axes[0].legend(fontsize=8)
print(f"histograms over {len(reference)} reference frames and {len(model_frames)} model frames")

# %% [markdown]
# The bonded peaks sit in the right places even for this small, briefly trained model, although
# section 6 found frames with another bond topology; a histogram over a whole run hides a
# minority of broken frames. Widths and the long-distance structure differ more — the reference has 300
# frames spread over 15 ps, our run a few ps from one starting point, and the model is far from
# converged. Distance distributions like these (and energy conservation) are cheap first checks
# of a potential before any production run.
#
# The same runs from the shell, with a trajectory file, a log and a blow-up guard:
# `nequip-np md model.npz start.xyz --ensemble langevin --temperature 300 --steps 4000 --trajectory md.traj`
# (`nequip_np.md.run_md` from Python; `docs/md.md`).
#
# **Try it.** (1) Set `skin=0` and compare the time per step and `calc.nl_builds` (the results
# are identical). (2) Run NVE at Δt = 2 fs and watch the total energy. (3) Set `TEMPERATURE_K`
# to 500 and track the smallest interatomic distance (`atoms.get_all_distances()`) during the
# run; then train longer, or add `pair_potential={"type": "ZBL"}` to the model, and try again.
#
# <details><summary>Solutions</summary>
#
# (1) `NequIPCalculator(model_path, skin=0.0)`: `calc.nl_builds` then grows by one per step, and
# the time per step rises by the cost of a neighbour-list build; energies and forces do not change.
# (2) `run_nve(2.0, 500)`: the total energy fluctuates about $(2/0.5)^2 = 16$ times more than at
# 0.5 fs (the $\Delta t^2$ law of section 3) — still bounded if the step is stable.
# (3) Run `topology_report` of section 6 on the 500 K positions: the first frame with another
# topology marks the failure; with longer training (more epochs and frames) or ZBL the
# smallest distance stays above ~0.9 Å.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# The kinetic temperature is $T = 2E_{kin}/(3Nk_B)$. Compute it from the masses and velocities
# of the last Langevin frame and compare with ASE's `atoms.get_temperature()`. One solution is
# filled in.

# %%
v = atoms.get_velocities()                                      # Å / (ASE time unit)
e_kin = 0.5 * np.sum(atoms.get_masses()[:, None] * v**2)        # eV
my_T = 2 * e_kin / (3 * len(atoms) * units.kB)
print(f"mine {my_T:.3f} K, ASE {atoms.get_temperature():.3f} K")
assert abs(my_T - atoms.get_temperature()) < 1e-9 * max(my_T, 1.0)
