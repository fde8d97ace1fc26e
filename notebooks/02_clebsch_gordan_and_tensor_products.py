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
# # 02 · Clebsch–Gordan coefficients and tensor products, by hand
#
# **What this covers.** The real Clebsch–Gordan (CG) tensor $C^{l_1 l_2 l_3}_{abc}$ that couples
# two irreps into a third: its familiar special cases (dot and cross product), its invariance and
# orthogonality, the selection rules (triangle and parity) as a table; a NequIP "uvu" tensor
# product written with one `einsum` and checked for equivariance under rotations *and*
# inversion, then compared with the package's convolution kernel; and how many paths a NequIP
# layer has and what each costs in flops.
#
# **What it does not cover.** How the CG table is derived (Racah's formula and e3nn's real
# basis: `docs/derivations/spherical_harmonics_and_cg.md` §4, generator `tools/derive_so3.py`),
# the radial network that produces the weights (notebook 03), and fast kernels.

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

MUL = 4 if SMOKE else 16            # channels u in the hand-written tensor product
N_TRIALS = 3 if SMOKE else 100      # random rotations per equivariance check
NUM_FEATURES = 32                   # NequIP-sized layer for the path and flop count (no cost)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Two coefficients you already know
#
# For two vectors ($l = 1$), the scalar part of $a \otimes b$ is the dot product and the $l = 1$
# part the cross product. In e3nn's basis ($Y^1 \propto (x, y, z)$) the CG tensors are exactly
# $C^{110}_{ab0} = \delta_{ab}/\sqrt3$ and $C^{111}_{abc} = \varepsilon_{abc}/\sqrt6$ (each tensor has
# Frobenius norm 1). The table ships exact entries $\pm\sqrt{p/q}$.

# %%
from nequip_np.so3 import clebsch_gordan, clebsch_gordan_exact

eps = np.zeros((3, 3, 3))
eps[0, 1, 2] = eps[1, 2, 0] = eps[2, 0, 1] = 1
eps[0, 2, 1] = eps[2, 1, 0] = eps[1, 0, 2] = -1
print("C(1,1,0) == δ/√3:", np.allclose(clebsch_gordan(1, 1, 0)[:, :, 0], np.eye(3) / np.sqrt(3)))
print("C(1,1,1) == ε/√6:", np.allclose(clebsch_gordan(1, 1, 1), eps / np.sqrt(6)))
print("exact C(1,1,1)[:, :, 2] =", clebsch_gordan_exact(1, 1, 1)[:, :, 2])

a, b = rng.normal(size=3), rng.normal(size=3)
print("√3 Σ_ab C(1,1,0) a b  =", np.sqrt(3) * np.einsum("a,b,abc->c", a, b, clebsch_gordan(1, 1, 0))[0],
      "  a·b =", a @ b)
print("√6 Σ_ab C(1,1,1) a b  =", np.sqrt(6) * np.einsum("a,b,abc->c", a, b, clebsch_gordan(1, 1, 1)),
      "  a×b =", np.cross(a, b))

# %% [markdown]
# ## 2. What makes $C$ special: invariance and orthogonality
#
# $C$ is the (unique up to sign) tensor with
# $\sum_{a'b'c'} D^{l_1}_{aa'}D^{l_2}_{bb'}D^{l_3}_{cc'}C_{a'b'c'} = C_{abc}$ for every rotation.
# Read as a map from the $(2l_1+1)(2l_2+1)$ product space onto $l_3$, it is an isometry up to a
# factor: $C^\top C = \mathbb 1/(2l_3+1)$. NequIP multiplies each path by $\sqrt{2l_3+1}$ so that
# the output keeps the *component* normalisation of its inputs (each component of mean square 1).
# In e3nn's `TensorProduct` this factor is the **irrep normalisation** `"component"`
# ($\alpha = \dim l_3 = 2l_3+1$), not the path normalisation: e3nn's `path_normalization="element"`
# divides $\alpha$ by the number of elements summed into the same output slot, and in NequIP's
# convolution every path has its own output slot with one spherical-harmonic copy, so that divisor
# is 1 (`docs/nequip_mapping.md`; the neighbour sum is normalised separately by $1/\sqrt{\bar n}$).

# %%
from nequip_np.so3 import random_rotation, wigner_D

worst_inv, worst_orth = 0.0, 0.0
for l1 in range(3):
    for l2 in range(3):
        for l3 in range(abs(l1 - l2), l1 + l2 + 1):
            C = clebsch_gordan(l1, l2, l3)
            for _ in range(N_TRIALS):
                R = random_rotation(rng)
                rotated = np.einsum("ai,bj,ck,ijk->abc", wigner_D(l1, R), wigner_D(l2, R), wigner_D(l3, R), C)
                worst_inv = max(worst_inv, np.abs(rotated - C).max())
            M = C.reshape(-1, 2 * l3 + 1)
            worst_orth = max(worst_orth, np.abs(M.T @ M - np.eye(2 * l3 + 1) / (2 * l3 + 1)).max())
print(f"l ≤ 2: max |D D D C − C| = {worst_inv:.1e},  max |CᵀC − 1/(2l3+1)| = {worst_orth:.1e}")

# %% [markdown]
# A heat map of $C^{1,1,2}$: each output component $c$ of the rank-2 (traceless symmetric) part
# of $a \otimes b$ is a fixed quadratic form of $a$ and $b$.

# %%
from nequip_np.viz import plot_cg

fig = plot_cg(clebsch_gordan(1, 1, 2), title=r"$C^{1,1,2}_{abc}$")

# %% [markdown]
# ## 3. Selection rules
#
# A path $(l_1,p_1) \otimes (l_2,p_2) \to (l_3,p_3)$ exists only if the **triangle rule**
# $|l_1-l_2| \le l_3 \le l_1+l_2$ holds (otherwise $C = 0$) and the **parity rule** $p_1p_2 = p_3$
# holds. The parity rule is *not* visible in $C$ — $C^{111}$ is nonzero — it is a statement about
# which output label is consistent with inversion: the cross product of two polar vectors is an
# axial vector, `1o ⊗ 1o → 1e`, never `1o`. Rows: a NequIP feature irrep times a spherical
# harmonic (`0e, 1o, 2e`); columns: outputs.

# %%
from nequip_np.so3 import Irrep, allowed_path

outs = [Irrep(l, p) for l in range(4) for p in (1, -1)]
print(f"{'':>10} " + " ".join(f"{str(o):>3}" for o in outs))
for ir1 in ["0e", "0o", "1o", "1e", "2e", "2o"]:
    for ir2 in ["0e", "1o", "2e"]:
        marks = ["  ✓" if allowed_path(ir1, ir2, o) else "  ·" for o in outs]
        print(f"{ir1} ⊗ {ir2:<3} " + " ".join(marks))
print("\nC(1,1,3) is zero (triangle):", not clebsch_gordan(1, 1, 3).any())
print("1o ⊗ 1o → 1o allowed?", allowed_path("1o", "1o", "1o"), "  → 1e allowed?", allowed_path("1o", "1o", "1e"))

# %% [markdown]
# ## 4. A "uvu" tensor product by hand
#
# NequIP's convolution couples the features of neighbour $j$ (`mul` copies $u$ of irrep $l_1$) with
# the spherical harmonics of the edge direction ($l_2$), one learned weight per copy:
#
# $$m[u, c] = w[u]\,\sqrt{2l_3+1}\sum_{a,b} C^{l_1 l_2 l_3}_{abc}\; x[u, a]\; Y^{l_2}_b(\hat r).$$
#
# "uvu" means input channel $u$ and output channel $u$ coincide (no mixing of copies; that is
# the linear layers' job). Here: `MUL x 1o` ⊗ $Y^2$ (`2e`) → `1o`.

# %%
from nequip_np.so3 import spherical_harmonics

l1, l2, l3 = 1, 2, 1
C_path = clebsch_gordan(l1, l2, l3) * np.sqrt(2 * l3 + 1)

def tp_uvu(x, r, w):
    Y = spherical_harmonics(l2, r)[0, l2**2:]                       # (2 l2 + 1,)
    return w[:, None] * np.einsum("ua,b,abc->uc", x, Y, C_path)     # (mul, 2 l3 + 1)

x = rng.normal(size=(MUL, 2 * l1 + 1))     # MUL copies of a 1o irrep
r = rng.normal(size=3)                      # edge vector
w = rng.normal(size=MUL)                    # one weight per channel (from the radial MLP)
m = tp_uvu(x, r, w)
print("x:", x.shape, " Y:", 2 * l2 + 1, " m:", m.shape)


# %% [markdown]
# **Equivariance.** Rotate the input features with $D^{l_1}$ and the edge with $R$: the output must
# rotate with $D^{l_3}$. For an improper $Q = -R$ each irrep also picks up its parity: the input
# `1o` flips, $Y^2$ (`2e`) does not, so the output must be odd — `1o`, as the parity rule says.

# %%
def D(ir, R):
    return Irrep(ir).D_from_matrix(R)

err_proper, err_improper = 0.0, 0.0
for _ in range(N_TRIALS):
    for improper in (False, True):
        R = random_rotation(rng) * (-1 if improper else 1)
        lhs = tp_uvu(x @ D("1o", R).T, R @ r, w)      # transform inputs, then multiply
        rhs = m @ D("1o", R).T                        # multiply, then transform the output
        err = np.abs(lhs - rhs).max()
        err_improper, err_proper = (max(err_improper, err), err_proper) if improper else (err_improper, max(err_proper, err))
print(f"max |TP(Dx, Rr) − D TP(x, r)|: proper {err_proper:.1e}, improper {err_improper:.1e}")

# %% [markdown]
# The same experiment with a path that breaks the parity rule: $1o \otimes 1o$ through $C^{111}$
# (the cross product). Labelled `1e` it is equivariant under all of O(3); labelled `1o` it fails
# under inversion, by a lot.

# %%
C111 = clebsch_gordan(1, 1, 1) * np.sqrt(3)
a, b = rng.normal(size=3), rng.normal(size=3)
Q = -random_rotation(rng)
out = np.einsum("a,b,abc->c", a, b, C111)
out_q = np.einsum("a,b,abc->c", D("1o", Q) @ a, D("1o", Q) @ b, C111)
for label in ("1e", "1o"):
    print(f"output labelled {label}: error under improper Q = {np.abs(out_q - D(label, Q) @ out).max():.1e}")

# %% [markdown]
# **The package's kernel does the same.** `nequip_np.kernels.tp_conv.reference` runs every path of
# a `ConvPlan` over all edges and sums the messages into the receiving atoms. On a two-atom graph
# with one edge ($j = 1 \to i = 0$) and weights only on our path it must reproduce `tp_uvu`.

# %%
from nequip_np.kernels.tp_conv import reference as tp_conv
from nequip_np.model.plan import blocks, conv_plan
from nequip_np.so3 import Irreps

plan = conv_plan(Irreps(f"{MUL}x1o"), Irreps.spherical_harmonics(2), Irreps("1o"))
for p in plan.paths:
    print(f"path: {plan.irreps_in[p.i_in]} ⊗ Y^{p.l_sh} → {plan.irreps_mid[p.i_mid]}, weights {p.w_offset}…{p.w_offset + MUL - 1}")

y = np.zeros((2, plan.irreps_in.dim)); y[1] = x.reshape(-1)       # mul_ir layout: u*(2l+1) + m
Y_edge = spherical_harmonics(2, r)                                  # all l ≤ 2, shape (1, 9)
weights = np.zeros((1, plan.n_weights))
path = next(p for p in plan.paths if p.l_sh == 2)
weights[0, path.w_offset:path.w_offset + MUL] = w
M, _ = tp_conv.forward(y, Y_edge, weights, src=np.array([1]), dst=np.array([0]), n_nodes=2, plan=plan)
blk = blocks(plan.irreps_mid)[path.i_mid]
print("max |kernel − einsum| =", np.abs(M[0, blk.start:blk.stop].reshape(MUL, 3) - m).max())

# %% [markdown]
# ## 5. Paths and flops of a NequIP layer
#
# A NequIP model with $l_{\max} = 2$, parity, and `NUM_FEATURES` channels per irrep: every
# input irrep is coupled with every $Y^{l}$, $l \le 2$, into every output irrep the gate needs.
# `build_plan` (the single place paths are enumerated) gives the list. Per edge, the reference
# kernel spends on one path
#
# $$\underbrace{2\,d_1 d_2 d_3}_{(YC)_{ac} = \sum_b Y_b C_{abc}}
#   + \underbrace{2\,\mathrm{mul}\,d_1 d_3}_{t_{uc} = \sum_a x_{ua} (YC)_{ac}}
#   + \underbrace{\mathrm{mul}\,d_3}_{\times w_u}\quad\text{flops},\qquad d_k = 2l_k+1 .$$
#
# (Exploiting the sparsity of $C$ would cut the first term; it is small anyway.) The number of
# weights per edge — the radial MLP's output width — is the sum of `mul` over paths.

# %%
from nequip_np.model.plan import build_plan

model_plan = build_plan(l_max=2, parity=True, num_layers=3, num_features=[NUM_FEATURES] * 3,
                        type_embed_num_features=NUM_FEATURES, num_bessels=8, radial_mlp_depth=2,
                        radial_mlp_width=64, readout_mlp_hidden_layers_depth=0,
                        readout_mlp_hidden_layers_width=16)

def path_flops(conv, p):
    mul, ir_in = conv.irreps_in[p.i_in]
    d1, d2, d3 = ir_in.dim, 2 * p.l_sh + 1, conv.irreps_mid[p.i_mid].ir.dim
    return 2 * d1 * d2 * d3 + 2 * mul * d1 * d3 + mul * d3

for layer in model_plan.layers:
    conv = layer.conv
    flops = [path_flops(conv, p) for p in conv.paths]
    mlp = sum(2 * a * b for a, b in zip(layer.radial_dims[:-1], layer.radial_dims[1:]))
    print(f"layer {layer.index}: in {layer.irreps_in}")
    print(f"   {len(conv.paths)} paths, {conv.n_weights} weights/edge, TP {sum(flops)} flops/edge, "
          f"radial MLP {mlp} flops/edge")

# %%
layer = model_plan.layers[1]
conv = layer.conv
labels = [f"{conv.irreps_in[p.i_in].ir}⊗{p.l_sh}→{conv.irreps_mid[p.i_mid].ir}" for p in conv.paths]
flops = [path_flops(conv, p) for p in conv.paths]
fig, ax = plt.subplots(figsize=(9, 3.2))
ax.bar(range(len(flops)), flops, color=["C0" if conv.irreps_mid[p.i_mid].ir.p == 1 else "C1" for p in conv.paths])
ax.set_xticks(range(len(flops)), labels, rotation=90, fontsize=8)
ax.set_ylabel("flops per edge")
ax.set_title(f"layer 1: {len(flops)} uvu paths, {NUM_FEATURES} channels (blue: even output, orange: odd)")
fig.tight_layout()

# %% [markdown]
# Paths into $l_3 = 2$ dominate ($d_3 = 5$, and $l_1 = 2$ inputs have $d_1 = 5$). Both terms grow
# steeply with $l_{\max}$: there are $O(l_{\max}^3)$ paths, each costing $O(l_{\max}^3)$ (CG part)
# or $O(\mathrm{mul}\,l_{\max}^2)$ (channel part) — why $l_{\max} = 3$ models are markedly slower. Note
# also the printout above: at this width the radial MLP that *produces* the weights
# (8 → 64 → 64 → 480 per edge) costs more flops than all tensor-product paths together — it is
# a dense matrix product and runs at BLAS speed, while the paths are many small contractions.

# %% [markdown]
# ## 6. For readers who know e3nn
#
# Every operation here has an e3nn counterpart; the flags below are the ones that give *our*
# numbers (e3nn's defaults unless marked). `docs/nequip_mapping.md` maps every parameter name.
#
# | here | e3nn | normalisation flags that matter |
# |---|---|---|
# | `spherical_harmonics(l_max, r)` | `o3.spherical_harmonics(..., normalize=True, normalization="component")` | component: $\lvert Y^l\rvert^2 = 2l+1$ (e3nn's *function* default is `"integral"`) |
# | one conv path, `tp_uvu` above | `o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, [(i, j, k, "uvu", True)], shared_weights=False, internal_weights=False)` | `irrep_normalization="component"` → $\sqrt{2l_3+1}$; `path_normalization="element"` → factor 1 here (one output slot per path) |
# | `kernels.linear` | `o3.Linear(irreps_in, irreps_out)` | weights $N(0,1)$, `path_normalization="element"`: $1/\sqrt{\sum \mathrm{mul_{in}}}$ into each output |
# | `kernels.self_connection` | `o3.FullyConnectedTensorProduct(h, species_embedding, out)` | same element normalisation over $\mathrm{mul_{in}} \cdot T$ |
# | `kernels.gate` | `nn.Gate(scalars, [silu, tanh], gates, [silu], gated)` | activations wrapped in `normalize2mom` (second moment 1 under $N(0,1)$) |
# | radial MLP | nequip's `ScalarMLPFunction` (not e3nn's `FullyConnectedNet` since 0.7) | plain SiLU, gain/$\sqrt{\mathrm{fan_{in}}}$ |
#
# **Try it.** (1) Change the output label of the hand-written path to `1e` and watch the
# improper-rotation error jump. (2) Count paths for `parity=False` (fewer irreps). (3) Check that
# `sum(p.cg.size for p in conv.paths)` is much larger than the number of nonzero CG entries.
#
# <details><summary>Solutions</summary>
#
# (1) In the equivariance cell use `D("1e", R)` for the output: proper rotations still agree to
# round-off, improper ones are off by twice the size of the output (every component's sign is
# wrong).
# (2) Build a `NequIPModel(..., parity=False)` and print `len(model.plan.layers[1].conv.paths)`:
# it is smaller, because only one parity of each $l$ exists.
# (3) `sum(p.cg.size for p in conv.paths)` counts dense CG blocks; `sum((p.cg != 0).sum() for p in conv.paths)`
# the nonzeros — for $l \le 2$ most entries of the real CG tensors are zero, which is what the
# sparse kernels exploit.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Two paths of $1o \otimes 1o$ have familiar forms: to $0e$ it is the dot product divided by
# $\sqrt3$, to $1e$ the cross product divided by $\sqrt2$ (both with the $\sqrt{2l_3+1}$
# factor included). Write them and compare with `clebsch_gordan` times $\sqrt{2l_3+1}$. One
# solution is filled in; note that which argument comes first in the cross product is a
# convention you have to get right.

# %%
def my_dot_path(a, b):
    return np.array([a @ b / np.sqrt(3)])

def my_cross_path(a, b):
    return np.cross(a, b) / np.sqrt(2)

for name, mine, l3 in (("1o⊗1o→0e", my_dot_path, 0), ("1o⊗1o→1e", my_cross_path, 1)):
    ref = np.einsum("a,b,abc->c", a, b, clebsch_gordan(1, 1, l3) * np.sqrt(2 * l3 + 1))
    err = np.abs(mine(a, b) - ref).max()
    print(f"{name}: max |mine − CG| = {err:.1e}")
    assert err < 1e-14, f"{name}: check the normalisation and the argument order"
