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
# # 04 · Forces and stress by hand-written backpropagation
#
# **What this covers.** Why one reverse pass gives all forces and the stress: the energy depends
# on positions only through the edge vectors, so the reverse pass needs to deliver
# $g_e = \partial E/\partial \vec r_e$, and forces and stress are one scatter and one outer
# product away. Every operation's hand-written `backward` is checked against central finite
# differences; then `model.compute`'s forces are compared with finite differences of the
# energy and its stress with finite strains, including the error-versus-step "V" that tells
# you which step to trust.
#
# **What it does not cover.** The parameter gradients of a force loss (a mixed second derivative:
# notebook 05); the backward formulas' derivations (each kernel's docstring in
# `nequip_np/kernels/*/reference.py`); fast kernels.

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

STEPS = np.logspace(-1, -9, 5 if SMOKE else 17)   # finite-difference steps (Å, or strain)
N_COMPONENTS = 6 if SMOKE else None                # force components checked (None: all)
NUM_FEATURES = [4, 3, 2] if SMOKE else [8, 4, 2]
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The chain rule, once
#
# The model sees positions only through $\vec r_e = \vec R_{j(e)} - \vec R_{i(e)} + S_e\,\mathrm{cell}$.
# With $g_e = \partial E/\partial\vec r_e$ from the reverse pass:
#
# $$\vec F_k = -\frac{\partial E}{\partial \vec R_k} = \sum_{e:\,i(e)=k} g_e \;-\; \sum_{e:\,j(e)=k} g_e ,$$
#
# so $\sum_k \vec F_k = 0$ exactly (each $g_e$ enters twice with opposite signs). Under a
# homogeneous strain every edge vector (row) becomes $\vec r_e(\mathbb 1+\varepsilon)$, hence
#
# $$\frac{\partial E}{\partial\varepsilon_{ab}} = \sum_e r_{e,a}\,g_{e,b}\ \text{(symmetrised)},\qquad
#   \sigma = \frac1V\frac{\partial E}{\partial\varepsilon}\quad\text{(ASE sign: positive = tensile)}.$$
#
# The reverse pass itself goes through the operations of notebook 03 backwards. Each one
# receives the adjoint of its output $\bar{o} = \partial E/\partial o$ and returns the adjoints
# of its inputs:
#
# | operation | forward | backward returns |
# |---|---|---|
# | readout MLP | $\tilde E = \mathrm{MLP}(h)$ | $\bar h$, $\bar W$ |
# | gate | $[\phi(s), \phi(g)v]$ | $\bar z$ |
# | linear | $y = Wx/\sqrt{\mathrm{fan}}$ | $\bar x$, $\bar W$ |
# | TP conv + scatter | $M_i = \sum_e w_e\,(y_{j}\otimes Y_e)$ | $\bar y$, $\bar Y$, $\bar w$ |
# | radial MLP | $w = \mathrm{MLP}(b)$ | $\bar b$, $\bar W$ |
# | self-connection | $s = \mathrm{FCTP}(h, a)$ | $\bar h$, $\bar a$, $\bar W$ |
# | spherical harmonics | $Y(\hat r)$ | $\bar r$ |
# | Bessel × envelope | $b(\lvert r\rvert)$ | $\bar r$ (and $\bar w_n$) |
#
# The two geometric branches both end in $\bar r_e$; their sum is $g_e$.

# %% [markdown]
# ## 2. Every backward against finite differences
#
# The directional check: pick random output adjoint $\bar o$ and input directions $v_k$; then
# $\langle \bar o, (f(x+hv) - f(x-hv))/2h\rangle$ must equal $\sum_k\langle \bar x_k, v_k\rangle$ up
# to $O(h^2)$. One number per operation tests *all* its input gradients at once.

# %%
from ase.build import molecule

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms
from nequip_np.kernels.edge_embedding import reference as edge_embedding
from nequip_np.kernels.gate import reference as gate
from nequip_np.kernels.linear import reference as linear
from nequip_np.kernels.mlp import reference as mlp
from nequip_np.kernels.self_connection import reference as self_connection
from nequip_np.kernels.spherical_harmonics import reference as sh_op
from nequip_np.kernels.tp_conv import reference as tp_conv

model = NequIPModel(type_names=["H", "C", "O"], r_max=3.5, num_layers=3, l_max=2, parity=True,
                    num_features=NUM_FEATURES, radial_mlp_depth=1, radial_mlp_width=16, num_bessels=8,
                    avg_num_neighbors=6.0, per_type_energy_scales={"H": 0.5, "C": 1.0, "O": 1.2},
                    per_type_energy_shifts={"H": -13.6, "C": -1029.0, "O": -2041.0}, seed=2)
c, layer = model.config, model.plan.layers[1]          # the middle layer has every kind of path
atoms = molecule("CH3CH2OH"); atoms.rattle(0.05, seed=1)
graph = graph_from_atoms(atoms, c.type_names, c.r_max)
types, (dst, src), n = graph.atom_types, graph.edge_index, graph.n_atoms
vec = graph.edge_vectors()

def directional_check(forward, backward, inputs, h=1e-6):
    out, cache = forward(*inputs)
    d_out = rng.standard_normal(out.shape)
    grads = backward(d_out, cache)
    dirs = [rng.standard_normal(np.shape(x)) for x in inputs]
    plus = forward(*[x + h * v for x, v in zip(inputs, dirs)])[0]
    minus = forward(*[x - h * v for x, v in zip(inputs, dirs)])[0]
    fd = np.sum(d_out * (plus - minus)) / (2 * h)
    analytic = sum(np.sum(g * v) for g, v in zip(grads, dirs))
    return abs(fd - analytic) / abs(analytic)

R = lambda *shape: rng.standard_normal(shape)
rmax_recip = np.full(graph.n_edges, 1 / c.r_max)
bw, p, pref = model.buffers["bessel_weights"], c.polynomial_cutoff_p, 2 * np.pi / c.r_max**2
dims = layer.radial_dims
alphas = [(1.0 if k == 0 else np.sqrt(2.0)) / np.sqrt(d) for k, d in enumerate(dims[:-1])]
checks = {
    "Bessel × envelope  (r)": (lambda v: edge_embedding.forward(v, rmax_recip, bw, p, pref),
                               lambda d, k: edge_embedding.backward(d, k)[:1], [vec]),
    "spherical harmonics (r)": (lambda v: sh_op.forward(v, c.l_max),
                                lambda d, k: sh_op.backward(d, k), [vec]),
    "radial MLP   (b, W…)": (lambda x, *W: mlp.forward(x, list(W), alphas, "silu"),
                             lambda d, k: (lambda dx, dW: (dx, *dW))(*mlp.backward(d, k)),
                             [R(graph.n_edges, dims[0])] + [R(a, b) for a, b in zip(dims[:-1], dims[1:])]),
    "linear_1     (x, W)": (lambda x, W: linear.forward(x, W, layer.linear_1), linear.backward,
                            [R(n, layer.irreps_in.dim), R(layer.linear_1.n_weights)]),
    "TP conv      (y, Y, w)": (lambda y, Y, w: tp_conv.forward(y, Y, w, src, dst, n, layer.conv), tp_conv.backward,
                               [R(n, layer.irreps_in.dim), R(graph.n_edges, 9), R(graph.n_edges, layer.conv.n_weights)]),
    "linear_2     (M, W)": (lambda x, W: linear.forward(x, W, layer.linear_2), linear.backward,
                            [R(n, layer.linear_2.irreps_in.dim), R(layer.linear_2.n_weights)]),
    "self-conn.   (h, a, W)": (lambda h, A, W: self_connection.forward(h, A, types, W, layer.self_connection),
                               self_connection.backward,
                               [R(n, layer.irreps_in.dim), R(3, c.type_embed_num_features), R(layer.self_connection.n_weights)]),
    "gate         (z)": (lambda z: gate.forward(z, layer.gate), lambda d, k: gate.backward(d, k),
                         [R(n, layer.gate.irreps_in.dim)]),
}
for name, (f, b, inputs) in checks.items():
    print(f"{name:<26} relative error {directional_check(f, b, inputs):.1e}")

# %% [markdown]
# All at $10^{-9}$–$10^{-11}$: the truncation error of a step $h = 10^{-6}$ plus round-off. A
# wrong sign, a missing factor or a forgotten term shows up as $O(1)$.
#
# ## 3. From $g_e$ to forces
#
# `model.forward` / `model.backward` are the model's two passes (what `compute` calls). The
# reverse pass is seeded with $\partial E/\partial E_i = 1$ for every atom and returns $g_e$;
# the scatter of section 1 makes the forces.

# %%
atomic, cache = model.forward(graph, vec, model.params)
g, _ = model.backward(np.ones_like(atomic), cache, graph, model.params)     # (E, 3) = ∂E/∂r_e
F_hand = np.zeros((n, 3))
np.add.at(F_hand, dst, g)          # +g on the centre i(e)
np.add.at(F_hand, src, -g)         # −g on the neighbour j(e)
out = model.compute(graph)
print("g:", g.shape, "  max |F_hand − compute| =", np.abs(F_hand - out["forces"]).max(),
      "  |Σ F| =", f"{np.abs(out['forces'].sum(axis=0)).max():.1e}")


# %% [markdown]
# ### One backward worked by hand: the radial basis
#
# The Bessel × envelope basis of notebook 03 depends on an edge only through $r = |\vec r|$:
# $b_n(r) = c\,\frac{\sin(k_n r)}{r}\,u(x)$ with $c = 2/r_{\max}$, $k_n = n\pi/r_{\max}$ and
# $x = r/r_{\max}$. Given the adjoint $\bar b_n = \partial E/\partial b_n$, the chain rule
# through $r$ and then through $\vec r$ ($\partial r/\partial\vec r = \hat r$) gives
#
# $$\bar{\vec r} = \hat r \sum_n \bar b_n\, b_n'(r),\qquad
#   b_n'(r) = c\left[\frac{k_n r\cos(k_n r) - \sin(k_n r)}{r^2}\,u(x) + \frac{\sin(k_n r)}{r}\,\frac{u'(x)}{r_{\max}}\right],$$
#
# $$u'(x) = -\tfrac{p(p+1)(p+2)}{2}\,x^{p-1} + p(p+1)(p+2)\,x^{p} - \tfrac{p(p+1)(p+2)}{2}\,x^{p+1}.$$
#
# Written out and compared with the kernel's `backward` (the same adjoint $\bar b$ for both):

# %%
def basis_backward_by_hand(d_b, vec, r_max, num_bessels, p):
    r = np.linalg.norm(vec, axis=1)
    x, k = r / r_max, np.arange(1, num_bessels + 1) * np.pi / r_max
    kr = k * r[:, None]
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    du = p * (p + 1) * (p + 2) * (-x ** (p - 1) / 2 + x**p - x ** (p + 1) / 2)
    db_dr = 2 / r_max * ((kr * np.cos(kr) - np.sin(kr)) / r[:, None] ** 2 * u[:, None]
                         + np.sin(kr) / r[:, None] * du[:, None] / r_max)
    return (d_b * db_dr).sum(axis=1)[:, None] * vec / r[:, None]

emb, emb_cache = edge_embedding.forward(vec, rmax_recip, bw, p, pref)
d_emb = rng.standard_normal(emb.shape)
kernel_grad = edge_embedding.backward(d_emb, emb_cache)[0]
hand_grad = basis_backward_by_hand(d_emb, vec, c.r_max, c.num_bessels, p)
err_hand = np.abs(hand_grad - kernel_grad).max() / np.abs(kernel_grad).max()
print(f"max |by hand − kernel backward| / max |kernel| = {err_hand:.1e}")
assert err_hand < 1e-12

# %% [markdown]
# ## 4. Forces against finite differences of the energy
#
# $F_{ka} \approx -\big(E(R + h e_{ka}) - E(R - h e_{ka})\big)/2h$. Central differences have
# truncation error $\propto h^2$; round-off in $E$ (here $|E| \approx 4\cdot10^3$ eV, because of
# the per-species shifts) contributes $\approx \epsilon|E|/h$. The total is a V on log–log axes;
# its bottom is the best a finite-difference check can do, and the analytic forces are the
# value the V converges to.

# %%
def energy(a):
    return model.energy(graph_from_atoms(a, c.type_names, c.r_max))[0]

F = out["forces"]
comps = [(i, a) for i in range(n) for a in range(3)]
if N_COMPONENTS:
    comps = [comps[k] for k in rng.choice(len(comps), N_COMPONENTS, replace=False)]
ref = np.array([F[i, a] for i, a in comps])
force_errors = []
for h in STEPS:
    fd = np.empty(len(comps))
    for m, (i, a) in enumerate(comps):
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, a] += h
        minus.positions[i, a] -= h
        fd[m] = -(energy(plus) - energy(minus)) / (2 * h)
    force_errors.append(np.abs(fd - ref).max() / np.abs(ref).max())
best = int(np.argmin(force_errors))
print(f"{len(comps)} components; best h = {STEPS[best]:.0e} Å with relative error {force_errors[best]:.1e}")

# %% [markdown]
# ## 5. Stress against finite strain
#
# A periodic, slightly sheared 4-atom cell. Strain the cell and the atoms together,
# $x \to x(\mathbb 1 + \varepsilon)$ with the symmetric $\varepsilon = \tfrac h2(e_ae_b^\top + e_be_a^\top)$,
# and compare $\big(E(+\varepsilon) - E(-\varepsilon)\big)/(2hV)$ with $\sigma_{ab}$.

# %%
from ase.build import bulk

crystal = bulk("C", "diamond", a=3.6).repeat((2, 1, 1))
crystal.set_chemical_symbols(["C", "O", "H", "C"])
crystal.set_cell(crystal.cell.array @ (np.eye(3) + 0.04 * rng.standard_normal((3, 3))), scale_atoms=True)
crystal.rattle(0.05, seed=2)
sigma = model.compute(graph_from_atoms(crystal, c.type_names, c.r_max))["stress"][0]
volume = crystal.get_volume()

def strained(a, eps):
    b = a.copy()
    b.set_cell(a.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return b

stress_errors = []
for h in STEPS:
    fd = np.zeros((3, 3))
    for a in range(3):
        for b in range(a, 3):
            eps = np.zeros((3, 3)); eps[a, b] += h / 2; eps[b, a] += h / 2
            fd[a, b] = fd[b, a] = (energy(strained(crystal, eps)) - energy(strained(crystal, -eps))) / (2 * h * volume)
    stress_errors.append(np.abs(fd - sigma).max() / np.abs(sigma).max())
print("σ (eV/Å³) =\n", sigma)
print(f"best h = {STEPS[int(np.argmin(stress_errors))]:.0e}, relative error {min(stress_errors):.1e}")

# %%
from nequip_np.viz import plot_error_vs_step

fig = plot_error_vs_step(STEPS, {"forces vs −∂E/∂R (FD)": force_errors, "stress vs finite strain": stress_errors},
                         title="finite differences against the analytic reverse pass")

# %% [markdown]
# The left arm has slope 2 (truncation), the right arm slope −1 (round-off); both checks bottom
# out around $10^{-7}$–$10^{-8}$ at $h \approx 10^{-4}$–$10^{-5}$ Å. A reverse pass with a bug would put a
# *floor* under the V at the size of the bug — see notebook 08 for exactly that picture.
#
# **Try it.** (1) Drop the `np.add.at(F_hand, src, -g)` line and look at $\sum F$. (2) Set the
# species shifts to zero: the right arm of the V drops, roughly in proportion to $|E|$ (round-off
# scales with the size of the numbers subtracted). (3) Replace the symmetric strain by an
# *antisymmetric* one, $\varepsilon = \tfrac h2(e_ae_b^\top - e_be_a^\top)$, and look at the
# finite difference.
#
# <details><summary>Solutions</summary>
#
# (1) Without the second scatter every $g_e$ is counted once, so $\sum_k F_k = \sum_e g_e$, which
# is not zero: `np.abs(F_hand.sum(axis=0)).max()` becomes of the order of the forces themselves —
# the model would push the molecule's centre of mass.
# (2) Build the model with `per_type_energy_shifts={"H": 0.0, "C": 0.0, "O": 0.0}`: $|E|$ drops
# from thousands of eV to a few, and the bottom of the V moves down and to smaller $h$.
# (3) To first order $\mathbb 1 + \varepsilon$ with antisymmetric $\varepsilon$ is a *rotation*
# by the angle $h/2$. A rotation changes nothing — energy invariance — so the finite
# difference is zero up to $O(h^2)$ and round-off, for every $a \ne b$:
# `eps = np.zeros((3, 3)); eps[0, 1], eps[1, 0] = h / 2, -h / 2`, then
# `(energy(strained(crystal, eps)) - energy(strained(crystal, -eps))) / (2 * h * volume)` is ~0.
# That is the lesson: only the symmetric part of a strain does work, which is why the stress
# tensor is symmetric and why section 1 symmetrises $\sum_e r_e \otimes g_e$.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Compute the stress from $g_e$ yourself — $\sigma = \frac1V\,\mathrm{sym}\sum_e \vec r_e \otimes g_e$
# (section 1) — for the crystal, and compare with `model.compute`. One solution is filled in;
# replace it with your own. The antisymmetric-strain check of (3) is run below it.

# %%
g_crystal = graph_from_atoms(crystal, c.type_names, c.r_max)
vec_c = g_crystal.edge_vectors()
atomic_c, cache_c = model.forward(g_crystal, vec_c, model.params)
g_c, _ = model.backward(np.ones_like(atomic_c), cache_c, g_crystal, model.params)
virial = vec_c.T @ g_c
my_sigma = (virial + virial.T) / 2 / volume
err_sigma = np.abs(my_sigma - sigma).max() / np.abs(sigma).max()
print(f"max |my σ − model σ| / max |σ| = {err_sigma:.1e}")
assert err_sigma < 1e-10, "check the sign convention (ASE: positive = tensile) and the 1/V"

h_rot = 1e-4
eps_rot = np.zeros((3, 3)); eps_rot[0, 1], eps_rot[1, 0] = h_rot / 2, -h_rot / 2
fd_rot = (energy(strained(crystal, eps_rot)) - energy(strained(crystal, -eps_rot))) / (2 * h_rot * volume)
print(f"antisymmetric strain (a rotation): finite difference {fd_rot:.1e} eV/Å³ against σ_xy = {sigma[0, 1]:.1e}")
assert abs(fd_rot) < 1e-3 * abs(sigma[0, 1])
