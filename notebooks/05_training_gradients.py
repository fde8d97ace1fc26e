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
# # 05 · Training gradients: the mixed second derivative, by complex step
#
# **What this covers.** Why fitting forces needs $\partial^2 E/\partial\theta\,\partial R$; the
# identity that turns it into the parameter gradient of *one* directional derivative of the
# energy; the complex-step trick that computes that directional derivative to machine precision
# inside the ordinary forward/backward kernels (what `nequip_np.train.loss.loss_and_grad` does);
# Adam written out and compared with `nequip_np.train.optim.Adam`; a tiny training loop whose
# loss goes down.
#
# **What it does not cover.** The full trainer (data splits, schedules, EMA, checkpoints:
# `docs/training.md`), stress training beyond one sentence, hyper-parameter advice. The
# derivation in full, including why the complex pass equals tangent-then-reverse operation by
# operation: `docs/derivations/training_gradients.md`.

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

N_FRAMES = 3 if SMOKE else 6            # random molecules in the training set
N_STEPS = 5 if SMOKE else 25            # Adam steps
STEPS = np.logspace(-1, -20, 8 if SMOKE else 20)   # step sizes for the derivative plots
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The problem
#
# The loss (nequip's, per-atom energy + forces; stress adds a third term of the same kind) is
#
# $$L(\theta) = c_E\,\frac1F\sum_f\Big(\frac{E_f - E^*_f}{N_f}\Big)^2 + c_F\,\frac1{3N}\sum_{k}\lVert F_k - F^*_k\rVert^2,
#   \qquad F_k = -\frac{\partial E}{\partial R_k}.$$
#
# Its gradient needs $\partial F/\partial\theta = -\partial^2 E/\partial\theta\,\partial R$ — a
# $P \times 3N$ matrix we never want to form. With $W_k = \partial L/\partial F_k$ (the scaled
# force residual) held fixed,
#
# $$\sum_k W_k\cdot\frac{\partial F_k}{\partial\theta}
#   = \frac{\partial}{\partial\theta}\Big(\sum_k W_k\cdot F_k\Big)
#   = -\frac{\partial}{\partial\theta}\,D_W E,\qquad
#   D_W E = \frac{d}{dt}E(R + tW)\Big|_{t=0}.$$
#
# So we need the directional derivative of $E$ along the residual, and then its ordinary
# gradient with respect to $\theta$: forward mode, then reverse mode.

# %%
from ase import Atoms

from nequip_np import NequIPModel
from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.testing.faults import SmoothPair
from nequip_np.train.loss import (
    COMPLEX_STEP,
    LossCoefficients,
    loss_and_grad,
    loss_terms,
)

model = NequIPModel(type_names=["H", "C", "O"], r_max=3.5, num_layers=2, l_max=1, parity=True,
                    num_features=[8, 4], radial_mlp_depth=1, radial_mlp_width=16, num_bessels=8,
                    avg_num_neighbors=4.0, seed=3)

def random_molecule(n=5):
    pos = []
    while len(pos) < n:
        p = rng.uniform(-1.6, 1.6, 3)
        if all(np.linalg.norm(p - q) > 1.0 for q in pos):
            pos.append(p)
    return Atoms(rng.choice(["H", "C", "O"], n), positions=pos)

teacher = SmoothPair(cutoff=3.5)          # labels: a smooth Morse pair potential (no download)
graphs = []
for _ in range(N_FRAMES):
    atoms = random_molecule()
    atoms.calc = teacher
    g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    g.energy, g.forces = np.array([atoms.get_potential_energy()]), atoms.get_forces()
    graphs.append(g)
batch = batch_graphs(graphs)
coeffs = LossCoefficients(per_atom_energy=1.0, forces=1.0)
print(batch, "\nlabel energies:", batch.energy.round(3))

# %% [markdown]
# ## 2. The identity, numerically
#
# On one frame: the residual adjoints $a_f = \partial L/\partial E_f$ and $W = \partial L/\partial F$
# come from `loss_terms`. In edge variables the model sees the direction
# $\dot r_e = W_{i(e)} - W_{j(e)}$, and $T = \frac{d}{dt}E(\vec r + t\dot r) = \sum_k W_k\cdot F_k$.

# %%
g = graphs[0]
pred = model.compute(g)
loss, comps, a, W, _ = loss_terms(g, pred, coeffs)
vec, (dst, src) = g.edge_vectors(), g.edge_index
tangent = W[dst] - W[src]

def E_edges(v):                           # total energy as a function of the edge vectors
    return model.forward(g, v, model.params)[0].sum()

T_ref = np.sum(W * pred["forces"])        # from the analytic reverse pass (notebook 04)
h = 1e-5
print(f"Σ W·F                      = {T_ref:.15f}")
print(f"central difference, h=1e-5 = {(E_edges(vec + h * tangent) - E_edges(vec - h * tangent)) / (2 * h):.15f}")
print(f"complex step, h=1e-20      = {np.imag(E_edges(vec + 1e-20j * tangent)) / 1e-20:.15f}")

# %% [markdown]
# ## 3. The complex step
#
# For an analytic $f$, $f(x + ih) = f(x) + ih f'(x) - \tfrac{h^2}2 f''(x) + O(h^3)$, so
# $f'(x) = \mathrm{Im} f(x+ih)/h + O(h^2)$ — **no subtraction**, hence no cancellation: $h$ can be
# $10^{-20}$ and the result is exact to round-off. Every reference kernel is written with
# analytic operations only (no `abs`, comparisons on real parts; SiLU via `exp`; the smooth
# envelope), so the whole model runs in complex arithmetic unchanged. Error against $\sum W\cdot F$
# as a function of $h$:

# %%
cs_err = [abs(np.imag(E_edges(vec + 1j * h * tangent)) / h - T_ref) / abs(T_ref) for h in STEPS]
fd_err = [abs((E_edges(vec + h * tangent) - E_edges(vec - h * tangent)) / (2 * h) - T_ref) / abs(T_ref)
          for h in STEPS]
for h, e1, e2 in list(zip(STEPS, cs_err, fd_err))[::max(1, len(STEPS) // 6)]:
    print(f"h = {h:.0e}:  complex step {e1:.1e}   central difference {e2:.1e}")

# %% [markdown]
# ## 4. Forward over reverse, in one pass
#
# Run the forward pass on $\vec r + ih\dot r$ and seed the reverse pass with $a_f - i/h$
# instead of 1. Every parameter adjoint is then
# $(a - i/h)\,\partial_\theta E(\vec r + ih\dot r) = (a - i/h)\big(\partial_\theta E + ih\,\partial_\theta T + O(h^2)\big)$,
# whose **real part** is $a\,\partial_\theta E + \partial_\theta T + O(h^2)$ — exactly
# $\nabla_\theta L$. One complex forward + reverse pass (about four real ones in arithmetic) instead of a
# hand-derived second-order pass for every operation. With $h = 10^{-20}$ the $O(h^2)$ term is
# $10^{-40}$ relative.

# %%
atomic_c, cache_c = model.forward(g, vec + 1j * COMPLEX_STEP * tangent, model.params)
_, grads_c = model.backward((a - 1j / COMPLEX_STEP)[g.batch], cache_c, g, model.params)
_, _, grads, _ = loss_and_grad(model, g, coeffs)
print("by hand vs loss_and_grad, max difference over all parameters:",
      max(np.abs(np.real(grads_c[k]) - grads[k]).max() for k in grads))

# %% [markdown]
# ### For readers who know autodiff frameworks
#
# The quantity computed here — the gradient of a loss that contains forces — is a
# Hessian–vector product. The force residual $W$ defines the edge direction $\dot r$, and
# $\nabla_\theta D_{\dot r} E$ is the derivative of $\nabla_\theta E$ along $\dot r$:
#
# * **JAX**: `jax.jvp(lambda r: jax.grad(E, argnums=0)(theta, r), (r,), (r_dot,))[1]` —
#   *forward over reverse*, a jvp of the gradient. The complex step is the same thing: the
#   imaginary part carries the tangent through the forward pass (a dual number of step $ih$), and
#   the reverse pass with seed $a - i/h$ gathers its derivative.
# * **PyTorch** (what nequip does): `F = -torch.autograd.grad(E, pos, create_graph=True)[0]`,
#   then `loss.backward()` — *reverse over reverse* ("double backward"): the first backward is
#   recorded as a graph and differentiated again.
#
# All three give the same numbers to round-off (nequip_np's training parity against official
# nequip is `docs/accuracy.md`). The cost, measured on this batch: one energy + forces pass
# (forward and reverse, real) against one training gradient (`loss_and_grad`: that real pass
# for the forces, then the complex forward + reverse pass).

# %%
import time


def best_time(fn, repeat=3 if SMOKE else 10):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)

t_ef = best_time(lambda: model.compute(batch, stress=False))
t_grad = best_time(lambda: loss_and_grad(model, batch, coeffs))
print(f"energy + forces: {1e3 * t_ef:.1f} ms;  loss_and_grad: {1e3 * t_grad:.1f} ms;  ratio {t_grad / t_ef:.1f}×")

# %% [markdown]
# The printed ratio is for this tiny batch (a few dozen edges), where Python overhead per
# operation dominates. In arithmetic, a complex multiply costs four real ones, so the complex pass
# does about four times the work of a real pass; `benchmarks/bench_train_step.py`
# (`docs/benchmarks.md`) measures the training step on realistic sizes.

# %% [markdown]
# And the gradient against central differences of the loss along a random parameter direction
# $v$ (every evaluation of $L$ needs the forces, i.e. a forward and a reverse pass):

# %%
v = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
analytic = sum(np.sum(grads[k] * v[k]) for k in v)

def loss_at(t):
    return loss_and_grad(model, g, coeffs, params={k: model.params[k] + t * v[k] for k in v})[0]

PARAM_STEPS = [h for h in STEPS if h >= 1e-9]
param_err = [abs((loss_at(h) - loss_at(-h)) / (2 * h) - analytic) / abs(analytic) for h in PARAM_STEPS]
print(f"∇L·v = {analytic:.12f}; best central difference agrees to {min(param_err):.1e}")

# %%
from nequip_np.viz import plot_error_vs_step

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
plot_error_vs_step(STEPS, {"complex step": cs_err, "central difference": fd_err}, ax=axes[0],
                   title=r"$T = \sum W\cdot F$ along the force residual")
plot_error_vs_step(PARAM_STEPS, {"central difference of L": param_err}, ax=axes[1],
                   title=r"$\nabla_\theta L \cdot v$ vs loss_and_grad");

# %% [markdown]
# Left: the complex step follows $h^2$ down to round-off and stays there for every smaller $h$;
# the central difference makes the V and becomes useless below $h \approx 10^{-13}$ (the two
# energies are identical: 100 % error). Right: the analytic parameter gradient is what the
# finite differences converge to, to the bottom of their V.
#
# ## 5. Adam, written out
#
# `nequip_np.train.optim.Adam` reproduces `torch.optim.Adam`'s arithmetic. The textbook version
# in five lines:

# %%
from nequip_np.train.optim import Adam


def adam_step(theta, grad, m, v, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8):
    m = b1 * m + (1 - b1) * grad
    v = b2 * v + (1 - b2) * grad**2
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return theta - lr * m_hat / (np.sqrt(v_hat) + eps), m, v

theta = {"w": rng.standard_normal(5)}
opt = Adam(theta, lr=1e-2)
mine, m, s = theta["w"].copy(), np.zeros(5), np.zeros(5)
for t in range(1, 11):
    grad = rng.standard_normal(5)
    opt.step({"w": grad})
    mine, m, s = adam_step(mine, grad, m, s, t)
print("after 10 steps: max |Adam − 5-line Adam| =", np.abs(theta["w"] - mine).max(),
      "(same maths; torch's operation order may differ from the textbook's by a few ulps)")

# %% [markdown]
# ## 6. A tiny training loop
#
# Fit the model to the Morse labels for a few steps of full-batch Adam. Each step is one
# `loss_and_grad` (a real forward + reverse pass for the forces, then the complex pass for the
# gradient) and one `Adam.step`.

# %%
pred0 = model.compute(batch)
opt = Adam(model.params, lr=1e-2)
history = {"total": [], "per-atom energy MSE": [], "force MSE": []}
for step in range(N_STEPS):
    loss, comps, grads, _ = loss_and_grad(model, batch, coeffs)
    opt.step(grads)
    history["total"].append(loss)
    history["per-atom energy MSE"].append(comps["per_atom_energy_mse"])
    history["force MSE"].append(comps["forces_mse"])
pred1 = model.compute(batch)
print(f"loss {history['total'][0]:.4f} → {history['total'][-1]:.4f} in {N_STEPS} steps")

# %%
from nequip_np.viz import parity_plot, plot_curves

fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
plot_curves(history, ax=axes[0], xlabel="Adam step", ylabel="loss")
parity_plot(batch.forces, pred0["forces"], ax=axes[1], label="before", units="eV/Å")
parity_plot(batch.forces, pred1["forces"], ax=axes[2], label="after", units="eV/Å")
axes[1].set_title("forces, step 0"); axes[2].set_title(f"forces, step {N_STEPS}");

# %% [markdown]
# A handful of steps on six molecules is not a potential — but every number that went into these
# updates was exact to round-off, which is what makes longer runs trustworthy.
#
# **Try it.** (1) Replace `COMPLEX_STEP` by `1e-6` in the by-hand pass of section 4 and compare
# with `loss_and_grad`. (2) Put `abs()` into an operation (e.g. `np.abs(r)` for the edge length)
# and watch the complex step break: `abs` is not analytic. (3) Train with forces only
# (`LossCoefficients(per_atom_energy=0, forces=1)`).
#
# <details><summary>Solutions</summary>
#
# (1) Use `(a - 1j / 1e-6)` as the seed and `vec + 1j * 1e-6 * tangent` as the input: the
# difference to `loss_and_grad` grows from round-off to about $h^2 \approx 10^{-12}$ relative —
# still small, because the complex step has no cancellation; it only gains the $O(h^2)$ term.
# (2) $|x + ih|$ is real, so the imaginary part — the derivative — is lost: `np.imag(np.abs(vec + 1j * h * tangent))`
# is all zeros, and a gradient built on it would be wrong without any warning. That is why the
# kernels compute lengths as `sqrt(x·x)` (analytic) and never call `abs`.
# (3) `coeffs = LossCoefficients(per_atom_energy=0.0, forces=1.0)` in section 6, then compare
# the per-atom-energy curve with the run above: nothing pulls the energies towards their labels
# any more, because forces fix the energy only up to a constant (`docs/pitfalls.md`).
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Write the loss of section 1 yourself from `model.compute` — per-atom energy MSE and force MSE,
# coefficients normalised to sum to one — and compare with the value `loss_and_grad` returns.
# One solution is filled in.

# %%
def my_loss(model, batch, c_e=1.0, c_f=1.0):
    out = model.compute(batch, stress=False)
    e_mse = np.mean(((out["total_energy"] - batch.energy) / batch.num_atoms) ** 2)
    f_mse = np.mean((out["forces"] - batch.forces) ** 2)
    return (c_e * e_mse + c_f * f_mse) / (c_e + c_f)

err_loss = abs(my_loss(model, batch) - loss_and_grad(model, batch, coeffs)[0])
print(f"|my loss − loss_and_grad| = {err_loss:.1e}")
assert err_loss < 1e-12
