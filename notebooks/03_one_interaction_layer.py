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
# # 03 · One interaction layer, step by step
#
# **What this covers.** The forward pass of a NequIP model on one small molecule, one operation
# at a time, calling the reference kernels (`nequip_np/kernels/*/reference.py` — the
# specification of each operation) with the model's own plan and parameters: edge geometry →
# Bessel radial basis × polynomial envelope → spherical harmonics → radial MLP → tensor-product
# convolution with scatter → linear → self-connection → gate, printing shapes and irreps at each
# step, then the readout. At the end our hand-assembled features must equal
# `model.node_features` exactly, and rotate like their irreps say. Then why the nonlinearity is a
# gate (an element-wise SiLU breaks equivariance), how many scalars a layer needs, what the
# normalisation constants do to the feature sizes, and what $l_{\max}$ and depth buy, shown
# without training: a bending scan of a triatomic and the receptive field.
#
# **What it does not cover.** Gradients, forces and stress (notebook 04), training (05), the
# neighbour list algorithm (`nequip_np/data/neighborlist.py`), and where the paths and
# normalisation constants come from (notebook 02 and `nequip_np/model/plan.py`).

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

NUM_FEATURES = [4, 3, 2] if SMOKE else [16, 8, 4]   # channels for l = 0, 1, 2
N_R = 60 if SMOKE else 400                          # points on the radial-basis plot
rng = np.random.default_rng(0)

# %% [markdown]
# ## 0. A model and a molecule
#
# A three-layer model with $l_{\max} = 2$ and parity, for H, C, O. Parameters are drawn from
# nequip's initial distributions (a trained model would load them: `nequip_np.load_model`).
# The molecule is ethanol from ASE's built-in G2 set (no download).

# %%
from ase.build import molecule

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms

model = NequIPModel(type_names=["H", "C", "O"], r_max=4.0, num_layers=3, l_max=2, parity=True,
                    num_features=NUM_FEATURES, radial_mlp_depth=2, radial_mlp_width=16, num_bessels=8,
                    avg_num_neighbors=6.0, per_type_energy_shifts={"H": -13.6, "C": -1029.0, "O": -2041.0},
                    seed=1)
print(model)
c, params, buffers, plan = model.config, model.params, model.buffers, model.plan
for name, value in params.items():
    print(f"  {name:<18} {str(value.shape):>9}")

# %% [markdown]
# ## 1. Edge geometry
#
# The graph holds directed edges $e = (i, j)$ for every pair closer than $r_{\max}$:
# `edge_index[0]` is the centre $i$ that *receives* the message, `edge_index[1]` the neighbour
# $j$, and $\vec r_e = \vec r_j - \vec r_i$ (+ a lattice shift in periodic cells).

# %%
atoms = molecule("CH3CH2OH")
graph = graph_from_atoms(atoms, c.type_names, c.r_max)
types, (dst, src) = graph.atom_types, graph.edge_index
edge_vec = graph.edge_vectors()
lengths = np.linalg.norm(edge_vec, axis=1)
print(graph)
print("atom types:", types, " (", atoms.get_chemical_symbols(), ")")
print(f"edge_vec {edge_vec.shape}; lengths {lengths.min():.2f} … {lengths.max():.2f} Å;",
      f"mean neighbours {graph.n_edges / graph.n_atoms:.1f}")

# %% [markdown]
# ## 2. Radial basis: Bessel functions × polynomial envelope
#
# $$b_n(r) = \frac{2\pi}{r_{\max}^2}\,\frac{\sin(\pi w_n r/r_{\max})}{\pi r/r_{\max}}\; u(r/r_{\max}),
#   \qquad w_n = n,$$
#
# with the envelope $u(x) = 1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}$
# that takes the basis to zero at $r_{\max}$ with two vanishing derivatives — this is what
# makes energies and forces smooth when atoms cross the cutoff.

# %%
from nequip_np.kernels.edge_embedding import reference as edge_embedding
from nequip_np.viz import plot_radial_basis

prefactor = 2 * np.pi / c.r_max**2
rmax_recip = buffers["rmax_recip"][types[dst], types[src]]          # 1/r_max per edge type
emb, _ = edge_embedding.forward(edge_vec, rmax_recip, buffers["bessel_weights"], c.polynomial_cutoff_p, prefactor)
print("radial basis b:", emb.shape, "(edges, num_bessels)")

r_line = np.linspace(0.05, 1.1 * c.r_max, N_R)
vec_line = np.stack([r_line, 0 * r_line, 0 * r_line], axis=1)
basis, _ = edge_embedding.forward(vec_line, np.full(N_R, 1 / c.r_max), buffers["bessel_weights"],
                                  c.polynomial_cutoff_p, prefactor)
fig = plot_radial_basis(r_line, basis, envelope=edge_embedding.cutoff(r_line / c.r_max, c.polynomial_cutoff_p),
                        r_max=c.r_max)
ax = fig.axes[0]
ax.plot(lengths, np.full_like(lengths, basis.min() - 0.2), "|", color="k", ms=8, label="edges of ethanol")
ax.set_ylabel(r"$b_n(r)$"); ax.set_title("Bessel basis × envelope")
_ = ax.legend(fontsize=7, ncol=3)

# %% [markdown]
# ## 3. Spherical harmonics of the edge directions
#
# $Y_e = Y(\hat r_e)$ for $l \le l_{\max}$: $(l_{\max}+1)^2 = 9$ numbers per edge, irreps
# `1x0e + 1x1o + 1x2e` (notebook 01).

# %%
from nequip_np.kernels.spherical_harmonics import reference as sh_op

Y, _ = sh_op.forward(edge_vec, c.l_max)
print("Y:", Y.shape, " irreps", plan.irreps_sh, " |Y^1|² of edge 0 =", (Y[0, 1:4] ** 2).sum().round(12))

# %% [markdown]
# ## 4. Node features start as a species embedding
#
# $h^0_i = A[t_i]$: a learned vector of `type_embed_num_features` scalars per species. The same
# vectors serve as node *attributes* $a_i$ in the self-connection.

# %%
attr = params["type_embed"]                       # (num_types, T_f)
h = attr[types]
print("h⁰:", h.shape, " irreps", plan.layers[0].irreps_in)

# %% [markdown]
# ## 5. The interaction layer
#
# For each layer (paper: Batzner et al. 2022, eqs. 3–6; `nequip_np/model/nequip.py`):
#
# 1. self-connection $s = \mathrm{FCTP}(h, a)$ (layers ≥ 1): a linear map of $h$ whose weights
#    depend on the species;
# 2. $y = \mathrm{Linear}_1(h) / \sqrt{\bar n}$ — mixes copies of equal irreps; divided by the
#    square root of the average number of neighbours;
# 3. radial MLP $w_e = \mathrm{MLP}(b_e)$ — one weight per tensor-product path channel, per
#    edge; layer $k$ multiplies its input by $\alpha_k = g_k/\sqrt{d_k}$ ($g_0 = 1$, then
#    $\sqrt2$ after a SiLU);
# 4. convolution $M_i = \sum_{e: i(e)=i} \mathrm{TP}(y_{j(e)}, Y_e; w_e)$ — the uvu products of
#    notebook 02, summed into the receiving atom;
# 5. $z = \mathrm{Linear}_2(M) + s$;
# 6. gate: scalars go through SiLU/tanh; each $l > 0$ copy is multiplied by its own gate scalar.
#
# We run it with the reference kernels and print what flows where.

# %%
from nequip_np.kernels.gate import reference as gate
from nequip_np.kernels.linear import reference as linear
from nequip_np.kernels.mlp import reference as mlp
from nequip_np.kernels.self_connection import reference as self_connection
from nequip_np.kernels.tp_conv import reference as tp_conv


def alphas(dims, nonlinear=True):
    """nequip's MLP scaling: gain/√fan_in, gain 1 for the first layer and √2 after a SiLU."""
    return [(1.0 if k == 0 or not nonlinear else np.sqrt(2.0)) / np.sqrt(d) for k, d in enumerate(dims[:-1])]

neighbor_norm = buffers["neighbor_norm"][types][:, None]      # 1/√(avg_num_neighbors)
ours, pre_gate = [h], []
for layer in plan.layers:
    k = layer.index
    print(f"── layer {k} " + "─" * 60)
    print(f"  h      {str(h.shape):>9}  {layer.irreps_in}")
    if layer.self_connection is not None:
        s, _ = self_connection.forward(h, attr, types, params[f"layer{k}.sc"], layer.self_connection)
        print(f"  s      {str(s.shape):>9}  {layer.self_connection.irreps_out}   (self-connection)")
    y, _ = linear.forward(h, params[f"layer{k}.linear_1"], layer.linear_1)
    y = y * neighbor_norm
    print(f"  y      {str(y.shape):>9}  {layer.linear_1.irreps_out}   (linear_1 / √n̄)")
    radial = [params[f"layer{k}.radial.{m}"] for m in range(len(layer.radial_dims) - 1)]
    w, _ = mlp.forward(emb, radial, alphas(layer.radial_dims), "silu")
    print(f"  w      {str(w.shape):>9}  radial MLP {' → '.join(map(str, layer.radial_dims))}")
    M, _ = tp_conv.forward(y, Y, w, src, dst, graph.n_atoms, layer.conv)
    print(f"  M      {str(M.shape):>9}  {layer.conv.irreps_mid}   ({len(layer.conv.paths)} paths)")
    z, _ = linear.forward(M, params[f"layer{k}.linear_2"], layer.linear_2)
    if layer.self_connection is not None:
        z = z + s
    print(f"  z      {str(z.shape):>9}  {layer.linear_2.irreps_out}   (linear_2{' + s' if layer.self_connection else ''})")
    pre_gate.append(z)
    h, _ = gate.forward(z, layer.gate)
    print(f"  h'     {str(h.shape):>9}  {layer.gate.irreps_out}   (gate: {len(layer.gate.gate_cols)} gate scalars used up)")
    ours.append(h)

# %% [markdown]
# Our features must be *identical* to the model's (same kernels, same order of operations):

# %%
theirs = model.node_features(graph)
for k, (a, b) in enumerate(zip(ours, theirs)):
    print(f"after {'embedding' if k == 0 else f'layer {k - 1}'}: shape {a.shape}, max |ours − model| = {np.abs(a - b).max()}")

# %% [markdown]
# ## 6. Readout and per-species scale/shift
#
# The last layer keeps only scalars; a small MLP maps them to $\tilde E_i$, then
# $E_i = \mathrm{shift}[t_i] + \mathrm{scale}[t_i]\,\tilde E_i$ (in float64), and $E = \sum_i E_i$.

# %%
readout = [params[f"readout.{m}"] for m in range(len(plan.readout_dims) - 1)]
nonlin = c.readout_mlp_nonlinearity
e_tilde, _ = mlp.forward(h, readout, alphas(plan.readout_dims, bool(nonlin)), nonlin)
def per_type(v):                       # one value stored means "the same for every species"
    return v[types] if len(v) > 1 else np.full(len(types), v[0])

atomic = per_type(buffers["per_type_energy_shifts"]) + per_type(buffers["per_type_energy_scales"]) * e_tilde[:, 0]
out = model.compute(graph, forces=False, stress=False)
print("per-atom energies:", atomic.round(4))
print("max |ours − model.compute| =", np.abs(atomic - out["atomic_energy"]).max(),
      "  total E =", out["total_energy"][0].round(6), "eV")

# %% [markdown]
# ## 7. The features are equivariant
#
# Rotate (and invert) the molecule: every hidden feature block must transform with its Wigner
# matrix, $h(Qx) = D(Q)\,h(x)$, and the energy must not change. `irreps_D` builds the
# block-diagonal matrix for a whole `Irreps`.

# %%
from nequip_np.so3 import irreps_D, random_rotation, spherical_harmonics

Q = -random_rotation(rng)                                     # an improper rotation
rotated = atoms.copy(); rotated.positions = atoms.positions @ Q.T
feats_rot = model.node_features(graph_from_atoms(rotated, c.type_names, c.r_max))
for layer in plan.layers:
    D = irreps_D(layer.gate.irreps_out, Q)
    err = np.abs(feats_rot[layer.index + 1] - theirs[layer.index + 1] @ D.T).max()
    print(f"layer {layer.index}: {layer.gate.irreps_out}: max |h(Qx) − D(Q) h(x)| = {err:.1e}")
e_rot = model.energy(graph_from_atoms(rotated, c.type_names, c.r_max))[0]
print(f"energy change under Q: {e_rot - out['total_energy'][0]:.1e} eV")

# %% [markdown]
# Where does the information sit? Norm of each irrep block per atom after layer 0: the scalars
# carry the species, the $l = 1, 2$ blocks the local geometry (zero for an atom in a perfectly
# symmetric environment).

# %%
from nequip_np.model.plan import blocks

layer0 = plan.layers[0]
h0 = theirs[1]
names = [str(mi) for mi in layer0.gate.irreps_out]
norms = np.array([[np.linalg.norm(h0[i, b.start:b.stop]) / np.sqrt(b.mul) for b in blocks(layer0.gate.irreps_out)]
                  for i in range(graph.n_atoms)])
fig, ax = plt.subplots(figsize=(5, 3.4))
im = ax.imshow(norms.T, cmap="viridis", aspect="auto")
ax.set_yticks(range(len(names)), names); ax.set_xticks(range(graph.n_atoms), atoms.get_chemical_symbols())
ax.set_xlabel("atom"); ax.set_title("RMS feature norm per irrep block, after layer 0")
fig.colorbar(im, ax=ax); fig.tight_layout()

# %% [markdown]
# ## 8. Why a gate, and what the normalisations do
#
# A network needs a nonlinearity, but an element-wise one cannot touch an $l \ge 1$ block:
# $\mathrm{SiLU}(D v) \ne D\,\mathrm{SiLU}(v)$, because rotating mixes components and SiLU acts on
# each separately. NequIP's **gate** applies SiLU (or tanh, for odd scalars) only to scalars, and
# multiplies each $l > 0$ copy by a scalar "gate" of its own — scalars times a vector is still a
# vector. Take the first layer's pre-gate features `z`, rotate them with their Wigner matrix, and
# compare both choices.

# %%
from nequip_np.kernels.common import silu

R = random_rotation(rng)
first = plan.layers[0].gate
z0 = pre_gate[0]                                               # layer 0, before its gate
D_in, D_out = irreps_D(first.irreps_in, R), irreps_D(first.irreps_out, R)
z0_rot = z0 @ D_in.T                                           # z is equivariant: this is z of the rotated molecule
gate_err = np.abs(gate.forward(z0_rot, first)[0] - gate.forward(z0, first)[0] @ D_out.T).max()
cols_l1 = [c for b, sl in zip(first.irreps_in, first.irreps_in.slices()) if b.ir.l == 1
           for c in range(sl.start, sl.stop)]
silu_err = np.abs(silu(z0_rot) - silu(z0) @ D_in.T)[:, cols_l1].max()
print(f"element-wise SiLU on the l = 1 block: max |SiLU(Dz) − D SiLU(z)| = {silu_err:.2e}")
print(f"gate:                                 max |gate(Dz) − D gate(z)| = {gate_err:.1e}")
assert silu_err > 1e-3 and gate_err < 1e-13

# %% [markdown]
# **Counting the scalars of a layer.** `linear_2` must produce, besides the scalars that become
# the next layer's scalar features, one extra scalar per gated copy. For each layer:

# %%
for layer in plan.layers:
    gp = layer.gate
    n_gated_copies = sum(mi.mul for mi in gp.irreps_out if mi.ir.l > 0)
    print(f"layer {layer.index}: z = {gp.irreps_in} ({gp.irreps_in.dim} numbers) = "
          f"{len(gp.scalar_cols)} scalars through SiLU/tanh + {len(gp.gate_cols)} gate scalars "
          f"+ {len(gp.gated_cols)} gated components ({n_gated_copies} copies) → h' = {gp.irreps_out}")
    assert len(gp.gate_cols) == n_gated_copies

# %% [markdown]
# **Keeping signal sizes independent of the system and the width.** Three constants:
#
# * $\sqrt{2l+1}$ (e3nn's *component* normalisation of the harmonics): each component of $Y^l$
#   has mean square 1 on the sphere, so $l = 2$ inputs are as large as $l = 0$ ones;
# * $1/\sqrt{\text{fan-in}}$ in every linear map and MLP layer: a sum of $n$ unit terms has RMS
#   $\sqrt n$, divided back;
# * $1/\sqrt{\bar n}$ after the convolution's sum over neighbours ($\bar n$ = `avg_num_neighbors`).
#
# Below: the component RMS of $Y^l$ per $l$; then the RMS of the node features after each of
# four layers (random initial weights) for ethanol alone and for a cluster of five ethanol
# molecules (many more neighbours per atom), at two widths, with $\bar n$ set to the measured
# value and with the neighbour normalisation switched off ($\bar n = 1$).

# %%
from ase.build import molecule as ase_molecule

sh_rms = [float(np.sqrt(np.mean(spherical_harmonics(4, rng.normal(size=(2000, 3)))[:, l * l:(l + 1) ** 2] ** 2)))
          for l in range(5)]
print("RMS of Y^l components for l = 0 … 4 on random directions:", np.round(sh_rms, 3))

cluster = ase_molecule("CH3CH2OH")
for shift in ([2.5, 0, 0], [0, 2.5, 0], [2.5, 2.5, 0], [0, 0, 2.8]):
    other = ase_molecule("CH3CH2OH"); other.positions += shift; cluster += other
systems = {"ethanol": graph_from_atoms(atoms, c.type_names, c.r_max),
           "cluster": graph_from_atoms(cluster, c.type_names, c.r_max)}

def layer_rms(graph, width_factor, normalise):
    n_bar = graph.n_edges / graph.n_atoms
    m = NequIPModel(type_names=["H", "C", "O"], r_max=4.0, num_layers=4, l_max=2,
                    num_features=[width_factor * f for f in NUM_FEATURES],
                    avg_num_neighbors=n_bar if normalise else 1.0, seed=1)
    with np.errstate(over="ignore"):
        return [float(np.sqrt(np.mean(f**2))) for f in m.node_features(graph)]

rms = {(name, wf, norm): layer_rms(g, wf, norm) for name, g in systems.items() for wf in (1, 4)
       for norm in (True, False)}
for name, g in systems.items():
    print(f"{name}: {g.n_edges / g.n_atoms:.1f} neighbours per atom")
print("feature RMS after the last layer:")
for (name, wf, norm), r in rms.items():
    print(f"  {name:8s} width ×{wf}  {'with 1/√n̄' if norm else 'n̄ = 1   '}: {r[-1]:10.3g}")
normed = [r[-1] for (name, wf, norm), r in rms.items() if norm]
print(f"with 1/√n̄: largest / smallest over the two systems and widths = {max(normed) / min(normed):.1f}; "
      f"without: cluster / ethanol = {rms[('cluster', 1, False)][-1] / rms[('ethanol', 1, False)][-1]:.3g}")

fig, ax = plt.subplots(figsize=(5.2, 3.4))
for (name, wf, norm), r in rms.items():
    if wf == 1:
        ax.semilogy(r, "o-" if norm else "s--", label=f"{name}, {'1/√n̄' if norm else 'n̄ = 1'}")
ax.set_xticks(range(5), ["embed"] + [f"layer {k}" for k in range(4)])
ax.set_ylabel("feature RMS"); ax.legend(fontsize=8); ax.grid(alpha=0.3); fig.tight_layout()

# %% [markdown]
# With $1/\sqrt{\bar n}$ the last-layer feature sizes of the sparse molecule and of the dense
# cluster, at both widths, stay within the small ratio printed above; without it the cluster's
# features grow layer after layer (the second ratio). At initialisation they are not 1 in absolute
# terms — what the constants buy is that one set of hyperparameters transfers between systems and
# widths.

# %% [markdown]
# ## 9. What $l_{\max}$ and the number of layers buy — without any training
#
# An energy can only depend on what the network can *see*. Take three atoms A–B–C with both
# bonds 1.2 Å, $r_{\max}$ = 2 Å, and bend the angle from 120° to 180°: the A–C distance stays
# above 2.08 Å, so A and C are never neighbours; only B sees both.
#
# * $l_{\max} = 0$: messages are functions of distances only, and the A–B and B–C distances do
#   not change — the energy is flat in the angle, however many layers.
# * $l_{\max} = 1$, **one** layer: B collects the two bond vectors as an $l = 1$ feature, but
#   the readout only reads scalars, and after one layer the scalars only contain distances — flat.
# * $l_{\max} = 1$, **two** layers: the second convolution combines B's $l = 1$ feature with the
#   bond directions ($1 \otimes 1 \to 0$, a dot product), so the angle reaches a scalar — the
#   energy bends.
#
# These are untrained models with random weights: the point is which functions they *can*
# represent, not their values.

# %%
from nequip_np.course import bending_scan

angles = np.deg2rad(np.linspace(120, 180, 7 if SMOKE else 31))
scan = {}
for l_max, layers in [(0, 1), (0, 3), (1, 1), (2, 1), (1, 2), (2, 2)]:
    m = NequIPModel(type_names=["O"], r_max=2.0, num_layers=layers, l_max=l_max, num_features=8,
                    avg_num_neighbors=1.5, seed=0)
    e = bending_scan(m, angles, 1.2, 1.2, "OOO")
    scan[(l_max, layers)] = e - e[-1]
    print(f"l_max {l_max}, {layers} layer(s): energy range over the bend {np.ptp(e):.1e} eV")
assert max(np.ptp(scan[k]) for k in [(0, 1), (0, 3), (1, 1), (2, 1)]) < 1e-12
assert np.ptp(scan[(1, 2)]) > 1e-6

fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
for (l_max, layers), e in scan.items():
    axes[0].plot(np.rad2deg(angles), 1e3 * e, "o-" if layers > 1 and l_max > 0 else "--", ms=3,
                 label=f"$l_{{\\max}}={l_max}$, {layers} layer{'s' if layers > 1 else ''}")
axes[0].set_xlabel("A–B–C angle (degrees)"); axes[0].set_ylabel("E(θ) − E(180°) (meV)")
axes[0].set_title("bending a triatomic, r_max = 2 Å < A–C", fontsize=10); axes[0].legend(fontsize=7)

# %% [markdown]
# The same reasoning sets the **receptive field**: after $L$ layers an atom's energy depends on
# atoms up to $L$ hops away along the neighbour graph, never farther than $L \cdot r_{\max}$.
# On aspirin with a short $r_{\max}$ = 1.7 Å (roughly one bond) the hops follow the bonds:

# %%
from ase.io import read

from nequip_np.course import receptive_field_figure
from nequip_np.data.examples import aspirin_path

aspirin = read(aspirin_path(), index=0)
hops = receptive_field_figure(aspirin.positions, center=0, r_max=1.7, num_layers=3, ax=axes[1])
print("atoms reached after 1, 2, 3 layers:", [int(np.sum((hops >= 0) & (hops <= k))) - 1 for k in (1, 2, 3)],
      f"of {len(aspirin) - 1}")

# %% [markdown]
# **Try it.** (1) Set `parity=False` and see which irreps disappear. (2) Move one hydrogen beyond
# $r_{\max}$ of every other atom and check that its features equal its species embedding passed
# through the layers with no messages. (3) Replace the envelope exponent `polynomial_cutoff_p`
# and look at the basis near $r_{\max}$. (4) In section 9, make the bonds unequal (1.1 and
# 1.3 Å) and check that the flat cases stay flat.
#
# <details><summary>Solutions</summary>
#
# (1) With `parity=False` every irrep is even in this layout: `print(model.plan.layers[0].gate.irreps_out)`
# shows `1e`/`2e` blocks only (no `o`), and the model can no longer tell a molecule from its
# mirror image (notebook `docs/pitfalls.md` has the chiral example).
# (2) `atoms.positions[-1] += [20, 0, 0]` before building the graph; that atom has no edges, so
# its $l > 0$ blocks stay exactly zero and its scalars are the same as for any isolated atom of its
# species.
# (3) Build the model with `polynomial_cutoff_p=2` and re-run section 2: the basis reaches zero at
# $r_{\max}$ with a visible kink in its slope's slope; larger $p$ flattens it sooner.
# (4) `bending_scan(m, angles, 1.1, 1.3, "OOO")`: still flat to round-off for $l_{\max} = 0$ and
# for one layer, because distances A–B and B–C are still fixed.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Write the radial basis $b_n(r)$ of section 2 — Bessel functions times the polynomial envelope —
# from the formulas, and compare with the edge-embedding kernel on the edges of ethanol. One
# solution is filled in so that the notebook runs; replace it with your own.

# %%
def my_basis(r, r_max, num_bessels, p):
    x = r[:, None] / r_max
    n = np.arange(1, num_bessels + 1)
    bessel = 2 * np.pi / r_max**2 * np.sin(np.pi * n * x) / (np.pi * x)
    u = 1 - (p + 1) * (p + 2) / 2 * x**p + p * (p + 2) * x ** (p + 1) - p * (p + 1) / 2 * x ** (p + 2)
    return bessel * u * (x < 1)

err_basis = np.abs(my_basis(lengths, c.r_max, c.num_bessels, c.polynomial_cutoff_p) - emb).max()
print(f"max |my_basis − edge_embedding kernel| = {err_basis:.1e}")
assert err_basis < 1e-12
