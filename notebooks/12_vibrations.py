# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Vibrations of aspirin: exact Hessians, and accuracy beyond energies and forces
#
# **What this covers.** The exact Hessian of a NequIP model (`nequip_np.model.hessian`: complex-step
# Hessian-vector products, no finite differences), checked against central differences of the forces;
# harmonic frequencies, normal modes and the zero-point energy of aspirin through ASE's
# `VibrationsData`; and the vibrational spectrum of a model trained on the shipped GFN2-xTB data
# (`examples/aspirin`) against GFN2-xTB's own frequencies (`nequip_np/data/examples/xtb_aspirin_vibrations.npz`,
# computed once by `tools/make_xtb_frequencies.py`). Frequencies test the curvature of the potential
# energy surface at its minimum — second derivatives the model was never trained on.
#
# **What it does not cover.** Infrared or Raman intensities (they need dipoles and polarisabilities,
# which the model does not predict), anharmonicity, and phonons of crystals (`nequip-np phonons`,
# `docs/vibrations.md`). The model here is small and briefly trained, so its errors are far from
# what NequIP reaches; the point is how to measure them.

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
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

plt.rcParams["figure.dpi"] = 72
np.set_printoptions(precision=4, suppress=True, linewidth=110)

SMOKE = os.environ.get("NEQUIP_NP_NOTEBOOK_SMOKE") == "1"  # CI runs every notebook with tiny sizes
from nequip_np.data.examples import aspirin_path, xtb_vibrations_path

DATA = str(aspirin_path())  # 300 xTB frames shipped with the package
XTB = str(xtb_vibrations_path())  # GFN2-xTB's own frequencies of relaxed aspirin
# a model from `nequip-np train examples/aspirin/train.yaml` (run from the repository root) is used when
# present; otherwise one is trained here with these sizes
MODEL = Path("../runs/aspirin_example/model.npz")
N_TRAIN, N_VAL, N_TEST, EPOCHS = (10, 5, 5, 1) if SMOKE else (200, 25, 75, 40)
os.environ["NEQUIP_NP_NO_PROGRESS"] = "1"

# %% [markdown]
# ## 1. A model trained on the shipped data
#
# The configuration of `examples/aspirin/train.yaml` (2 layers, $l_{\max}=1$, 8 features,
# $r_{\max} = 4$ Å), trained on frames of a 500 K GFN2-xTB trajectory: the training data sample the
# neighbourhood of the minimum, but contain no Hessian.

# %%
import tempfile

from nequip_np.model.io import load_model

if MODEL.exists() and not SMOKE:
    model = load_model(MODEL)
    print(f"loaded {MODEL}")
else:
    from nequip_np.train.trainer import Trainer

    config = {
        "run_name": "aspirin_vibrations",
        "model": dict(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=1, parity=True,
                      num_features=8, radial_mlp_depth=1, radial_mlp_width=16, num_bessels=8,
                      polynomial_cutoff_p=6, avg_num_neighbors="auto", per_type_energy_shifts="least_squares",
                      per_type_energy_scales="auto", model_dtype="float64", seed=0),
        "data": dict(path=DATA, train=N_TRAIN, val=N_VAL, test=N_TEST, split_seed=1),
        "training": dict(learning_rate=0.01, batch_size=5, max_epochs=EPOCHS, ema_decay=0.999,
                         scheduler=dict(factor=0.6, patience=5, threshold=0.2, min_lr=1e-6),
                         early_stopping=None, loss_coeffs={"per_atom_energy": 1.0, "forces": 1.0}, seed=0),
    }
    out = Path(tempfile.mkdtemp(prefix="nequip_np_vib_"))
    start = time.perf_counter()
    result = Trainer(config, output_dir=out, progress=False).train()
    model = load_model(out / "model.npz")
    print(f"trained {result['epochs']} epochs in {time.perf_counter() - start:.0f} s; "
          f"test force MAE {1e3 * result['test']['forces_mae']:.0f} meV/Å")
print(model)

# %% [markdown]
# ## 2. The exact Hessian, and what finite differences give
#
# $H v = \frac{d}{dt}\nabla E(R + t v)$ is one forward and one reverse pass of the model in complex
# arithmetic on the edge vectors $\vec r_e + i h\,(v_j - v_i)$ (`docs/vibrations.md`); 63 directions
# run as 63 copies of the graph in one batched pass. Central differences of the forces have a
# truncation error $\propto h^2$ and a rounding error $\propto \epsilon/h$; the complex step has neither.

# %%
from ase import Atoms

from nequip_np.calculator import NequIPCalculator

xtb = np.load(XTB)
atoms = Atoms(numbers=xtb["numbers"], positions=xtb["positions"])  # the GFN2-xTB minimum
calc = NequIPCalculator(model)
start = time.perf_counter()
H = calc.get_hessian(atoms)
t_exact = time.perf_counter() - start
print(f"exact Hessian {H.shape} in {t_exact:.2f} s; asymmetry {np.abs(H - H.T).max() / np.abs(H).max():.1e}, "
      f"translation sum rule {np.abs(H.reshape(63, 21, 3).sum(1)).max() / np.abs(H).max():.1e}")


def fd_hessian(h):
    cols = []
    for k in range(63):
        a = atoms.copy()
        a.positions[k // 3, k % 3] += h
        fp = calc.get_forces(a).ravel()
        a.positions[k // 3, k % 3] -= 2 * h
        cols.append(-(fp - calc.get_forces(a).ravel()) / (2 * h))
    return np.array(cols).T


steps = [1e-2, 1e-3] if SMOKE else [1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 1e-7]
errors = [np.abs(fd_hessian(h) - H).max() / np.abs(H).max() for h in steps]
plt.figure(figsize=(4.5, 3))
plt.loglog(steps, errors, "o-")
plt.xlabel("finite-difference step h (Å)")
plt.ylabel("max |H_FD − H| / max |H|")
plt.title("central differences of the forces vs exact")
plt.grid(alpha=0.3)
plt.show()
print("best finite-difference error", f"{min(errors):.1e}", "at h =", steps[int(np.argmin(errors))])

# %% [markdown]
# ## 3. Relax, then normal modes with ASE
#
# Harmonic analysis needs a minimum *of the model*: relaxing from xTB's minimum moves the atoms
# a little. `vibrations` returns ASE's `VibrationsData`; `check_minimum` sets the six rigid
# translations/rotations aside and reports any imaginary vibrational mode.

# %%
from nequip_np.md.run import relax
from nequip_np.md.vibrations import (
    check_minimum,
    thermochemistry,
    vibrational_energies,
    vibrations,
)

relaxed = atoms.copy()
res = relax(relaxed, calc, fmax=1e-4, steps=2000)
rmsd = np.sqrt(((relaxed.positions - atoms.positions) ** 2).sum(1).mean())
print(f"relaxed in {res.steps} steps to max |F| {res.fmax:.1e} eV/Å; RMSD from the xTB minimum {rmsd:.3f} Å")
vib = vibrations(relaxed, calc)
print(check_minimum(vib, forces=relaxed.get_forces()).message())
print(vib.tabulate())

# %% [markdown]
# ## 4. The spectrum against GFN2-xTB
#
# Modes are paired by their shapes (mass-weighted eigenvectors, the assignment that maximises the
# total overlap), not by sorted order, so that two modes that swap places are compared with each
# other. The ZPE and the harmonic free energy at 298 K (ideal gas, `ase.thermochemistry`) summarise
# the spectrum in energy units.

# %%
from ase.vibrations import VibrationsData
from scipy.optimize import linear_sum_assignment

ref = VibrationsData.from_2d(atoms, xtb["hessian"])


def modes_and_freqs(v):
    freqs = np.asarray(v.get_frequencies())
    order = np.argsort(np.abs(freqs))[6:]  # drop the rigid modes
    masses = np.repeat(v.get_atoms().get_masses(), 3)
    modes = v.get_modes(all_atoms=True).reshape(len(freqs), -1)[order] * np.sqrt(masses)
    return freqs[order].real, modes / np.linalg.norm(modes, axis=1, keepdims=True)


f_ml, u_ml = modes_and_freqs(vib)
f_ref, u_ref = modes_and_freqs(ref)
overlap = np.abs(u_ref @ u_ml.T)
rows, cols = linear_sum_assignment(-overlap)
err = f_ml[cols] - f_ref[rows]
print(f"57 modes: MAE {np.abs(err).mean():.0f} cm^-1, RMSE {np.sqrt((err ** 2).mean()):.0f} cm^-1, "
      f"median overlap {np.median(overlap[rows, cols]):.2f}")
th_ml = thermochemistry(vib, relaxed.get_potential_energy(), 298.15)
print(f"ZPE: model {th_ml['zpe_eV']:.3f} eV, GFN2-xTB {0.5 * vibrational_energies(ref).real.sum():.3f} eV")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
a1.plot(f_ref[rows], f_ml[cols], "o", ms=4)
lim = [0, 1.05 * max(f_ref.max(), f_ml.max())]
a1.plot(lim, lim, "k--", lw=0.8)
a1.set(xlabel="GFN2-xTB frequency (cm$^{-1}$)", ylabel="model frequency (cm$^{-1}$)", title="paired modes")
grid = np.linspace(0, lim[1], 2000)


def broadened(f, width=15.0):
    return np.exp(-0.5 * ((grid[:, None] - f[None]) / width) ** 2).sum(1)


a2.plot(grid, broadened(f_ref), label="GFN2-xTB")
a2.plot(grid, broadened(f_ml), label="model")
a2.set(xlabel="frequency (cm$^{-1}$)", ylabel="density of modes (15 cm$^{-1}$ Gaussians)")
a2.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The C–H and O–H stretches (above 2800 cm⁻¹) and the fingerprint region test different parts of
# the surface: a model whose force errors are a few tenths of eV/Å can still place the stiff
# stretches within a few percent while mixing up the soft torsions, whose curvatures are small
# differences of large forces. Training longer, on more frames, or with force-constant-aware data
# is what moves these numbers; `docs/vibrations.md` records the ones measured for this model.
