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
# # 08 · The equivariance and conservativity harness
#
# **What this covers.** `nequip_np.testing.check_calculator`: one call that checks what every
# interatomic potential owes its users — invariance under rotations, inversion, translations and
# permutations; forces that are $-\nabla E$ and a curl-free force field; stress that is the
# strain derivative; locality; a smooth cutoff; energy-conserving dynamics. We run it on our
# `NequIPCalculator` (isolated and periodic), on ASE's EMT, and on toy calculators with
# *planted* faults, each of which must be caught by the check designed for it. Finally, the
# picture behind `forces_gradient`: the finite-difference error against the step for a correct
# and for a faulty calculator.
#
# **What it does not cover.** How each check is implemented and why each tolerance has its value
# (`docs/harness.md`), long MD stability runs (`benchmarks/`), and accuracy against reference
# data (a harness checks physics, not fit quality).

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

MD_STEPS = 10 if SMOKE else 40           # Velocity Verlet steps of nve_drift
N_ROTATIONS = 1 if SMOKE else 3          # random (improper) rotations per symmetry check
STEPS = np.logspace(-1, -9, 5 if SMOKE else 17)   # step sweep of the last figure
OPTIONS = dict(md_steps=MD_STEPS, n_rotations=N_ROTATIONS)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Our model
#
# A small NequIP model wrapped as an ASE calculator. The harness copies the structure, never
# modifies it, and prints one row per check: the measured error, the tolerance (from one table
# per dtype), PASS / FAIL / SKIP and what was measured.

# %%
from ase.build import bulk, molecule

from nequip_np import NequIPCalculator, NequIPModel
from nequip_np.testing import check_calculator

model = NequIPModel(type_names=["H", "C", "O"], r_max=3.5, num_layers=2, l_max=2, parity=True,
                    num_features=[4, 3, 2], radial_mlp_depth=1, radial_mlp_width=8, num_bessels=6,
                    avg_num_neighbors=4.0, per_type_energy_shifts={"H": -13.6, "C": -1029.0, "O": -2041.0},
                    seed=0)
calc = NequIPCalculator(model)
ethanol = molecule("CH3CH2OH")
report = check_calculator(calc, ethanol, cutoff=model.config.r_max, **OPTIONS)
print(report)

# %% [markdown]
# `stress_strain` is skipped for a molecule. A periodic, sheared cell exercises it (and skips the
# checks that need an isolated system):

# %%
crystal = bulk("C", "diamond", a=3.6).repeat((2, 1, 1))
crystal.set_chemical_symbols(["C", "O", "H", "C"])
crystal.set_cell(crystal.cell.array @ (np.eye(3) + 0.04 * rng.standard_normal((3, 3))), scale_atoms=True)
crystal.rattle(0.05, seed=2)
print(check_calculator(calc, crystal, cutoff=model.config.r_max, **OPTIONS))

# %% [markdown]
# ## 2. Any ASE calculator: EMT
#
# Nothing in the harness knows about NequIP. ASE's effective-medium potential on a rattled copper
# cell (EMT's cutoff is a smooth Fermi function, so we give no `cutoff` and that check is skipped):

# %%
from ase.calculators.emt import EMT

copper = bulk("Cu", "fcc", a=3.6, cubic=True)
copper.rattle(0.05, seed=0)
emt_report = check_calculator(EMT(), copper, **OPTIONS)
print(emt_report)

# %% [markdown]
# ## 3. Planted faults
#
# `nequip_np.testing.faults` holds toy pair potentials that each break exactly one property.
# A harness is only as good as the bugs it catches, so each must fail the check aimed at it —
# and, as importantly, *only* the checks that should fail. The structure is a rattled methane
# (rattled, because the perfectly symmetric one is achiral and the chiral fault would vanish).

# %%
from nequip_np.testing import faults

methane = molecule("CH4")
methane.rattle(0.1, seed=1)
factories = {
    "correct (Morse × cutoff)": faults.make_smooth_pair,
    "forces × 1.1": faults.make_scaled_forces,
    "missing chain-rule term": faults.make_nonconservative,
    "anisotropic": faults.make_anisotropic,
    "chiral energy": faults.make_chiral,
    "LJ cut without shift": faults.make_truncated_lj,
}
reports = {}
for label, make in factories.items():
    fault = make()
    reports[label] = check_calculator(fault, methane, cutoff=fault.cutoff, **OPTIONS)
    print(f"{label:<26} failed: {', '.join(reports[label].failed) or '—'}")

# %%
names = reports["correct (Morse × cutoff)"].names
codes = {"PASS": 0, "SKIP": 1, "FAIL": 2, "ERROR": 2}
grid = np.array([[codes[r[name].status] for name in names] for r in reports.values()])
from matplotlib.colors import ListedColormap

fig, ax = plt.subplots(figsize=(9, 3.2))
ax.imshow(grid, cmap=ListedColormap(["#9ad19a", "#dddddd", "#e07a7a"]), vmin=0, vmax=2, aspect="auto")
for i, r in enumerate(reports.values()):
    for j, name in enumerate(names):
        ax.text(j, i, r[name].status, ha="center", va="center", fontsize=7)
ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
ax.set_yticks(range(len(reports)), list(reports), fontsize=8)
ax.set_title("harness verdicts on planted faults (rattled CH₄)")
fig.tight_layout()


# %% [markdown]
# Note the pairs: a *scaled* force is still a gradient (of $1.1E$), so `curl_free` passes and only
# `forces_gradient` catches it; forces missing a chain-rule term are not a gradient of anything,
# so both fail. The chiral energy is invariant under proper rotations and fails `inversion` alone
# — the reason the harness tests improper rotations separately.
#
# ## 4. The picture behind `forces_gradient`
#
# Central differences of the energy against the calculator's forces, as a function of the step:
# a correct calculator gives the V of notebook 04 (its bottom sits lower the smaller $|E|$ is:
# our model carries per-species shifts of $\sim 10^3$ eV, the Morse toy none); a calculator
# whose forces are not $-\nabla E$ gives a V with a *floor* — no step size makes the disagreement
# go away, and the height of the floor is the size of the bug.

# %%
def fd_errors(calculator, atoms, steps, n_components=6):
    atoms = atoms.copy(); atoms.calc = calculator
    F = atoms.get_forces()
    comps = [(i, a) for i in range(len(atoms)) for a in range(3)][:n_components]
    ref = np.array([F[i, a] for i, a in comps])
    errors = []
    for h in steps:
        fd = []
        for i, a in comps:
            e = []
            for sign in (+1, -1):
                moved = atoms.copy(); moved.calc = calculator
                moved.positions[i, a] += sign * h
                e.append(moved.get_potential_energy())
            fd.append(-(e[0] - e[1]) / (2 * h))
        errors.append(np.abs(np.array(fd) - ref).max() / np.abs(ref).max())
    return errors

curves = {
    "NequIPCalculator": fd_errors(calc, methane, STEPS),
    "correct Morse": fd_errors(faults.make_smooth_pair(), methane, STEPS),
    "forces × 1.1": fd_errors(faults.make_scaled_forces(), methane, STEPS),
    "missing chain-rule term": fd_errors(faults.make_nonconservative(), methane, STEPS),
}
from nequip_np.viz import plot_error_vs_step

fig = plot_error_vs_step(STEPS, curves, title="forces vs central differences of E (CH₄)")

# %% [markdown]
# The harness turns this figure into a number: the best error over its step sweep, compared with
# `1e-5` (float64). Use it on any potential before trusting its dynamics:
#
# ```python
# from nequip_np.testing import check_calculator
# report = check_calculator(my_calc, atoms, cutoff=r_max)
# assert report.passed, report.failed
# ```
#
# or from the shell, `nequip-np check --calculator MODULE:FACTORY --structure FILE`.
#
# **Try it.** (1) Run the harness with `dtype="float32"` tolerances on a float32 model
# (`model_dtype="float32"`). (2) Write `fn(atoms) -> (E, F)` for a pair potential of your own and
# pass it to `nequip_np.testing.check_function`. (3) Give `make_truncated_lj()` a smaller
# `cutoff_window` and see whether `cutoff_smoothness` still sees the jump.
#
# <details><summary>Solutions</summary>
#
# (1) Build the model with `model_dtype="float32"` and call
# `check_calculator(calc, ethanol, cutoff=..., dtype="float32")`: the errors grow to ~1e-6
# relative, and the float32 tolerance table still passes them; with the float64 tolerances
# several checks would fail — which is why the table is per dtype.
# (2) `def fn(atoms): d = atoms.get_all_distances(); ...` returning the energy and the analytic
# forces of, e.g., a harmonic pair potential; `check_function(fn, atoms)` prints the same rows.
# Flip the sign of the forces to see `forces_gradient` fail.
# (3) A smaller window makes the switch steeper; once it is much shorter than the
# finite-difference probe spacing the jump is no longer resolved — compare the printed
# `cutoff_smoothness` errors for a few windows.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# The heart of `forces_gradient`: a central difference of the energy along one Cartesian
# component. Write it for one atom of ethanol and compare with the calculator's force. One
# solution is filled in.

# %%
def my_fd_force(calc, atoms, i, a, h=1e-4):
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, a] += h
    minus.positions[i, a] -= h
    plus.calc = minus.calc = calc
    return -(plus.get_potential_energy() - minus.get_potential_energy()) / (2 * h)

probe = ethanol.copy(); probe.rattle(0.05, seed=4); probe.calc = calc
fd, exact = my_fd_force(calc, probe, 0, 2), probe.get_forces()[0, 2]
print(f"finite difference {fd:.8f} eV/Å, calculator {exact:.8f} eV/Å")
assert abs(fd - exact) < 1e-5 * max(1.0, abs(exact))
