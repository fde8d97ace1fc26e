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
# # 01 · Irreps and spherical harmonics
#
# **What this covers.** Why symmetry matters (rotate a molecule: the energy stays, the forces
# turn), what a representation is ($D(R_1R_2) = D(R_1)D(R_2)$) and how the nine numbers of
# $a \otimes b$ split into 1 + 3 + 5 parts that rotate on their own. Then the bookkeeping of
# NequIP's features: irreducible representations
# ("irreps") of O(3) written as strings like `"16x0e + 8x1o"`, their dimensions and memory
# layout, how products of irreps decompose (with parity); the real spherical harmonics
# $Y^l_m$ in e3nn's basis, *derived* here with sympy for $l \le 2$ and compared with the shipped
# code; the normalisation $\sum_m (Y^l_m)^2 = 2l+1$; pictures of $Y^l_m$ on the sphere; and the
# defining property $Y(Rx) = D(R)\,Y(x)$ checked numerically, inversion included; $Y^1$ and
# $Y^2$ as p and d orbitals in 3-D, with e3nn's axis convention; orthonormality to round-off.
#
# **What it does not cover.** Clebsch–Gordan coefficients and tensor products (notebook 02),
# how the Wigner matrices are computed (one sentence below; details in
# `docs/derivations/spherical_harmonics_and_cg.md`), complex harmonics beyond their use in the
# derivation, and speed.

# %% [markdown]
# **Running this outside a clone of the repository** (a fresh Jupyter, or a hosted notebook
# service): the next cell installs the package if it is missing. Everything the course needs —
# the example aspirin frames included — ships with it.

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

N_POINTS = 8 if SMOKE else 200          # random directions for the numerical checks
N_THETA, N_PHI = (24, 48) if SMOKE else (90, 180)   # sphere grid (quadrature and pictures)
N_ROTATIONS = 2 if SMOKE else 50        # random rotations in the equivariance check
rng = np.random.default_rng(0)

# %% [markdown]
# ## 0. Why symmetry? Rotate a molecule
#
# Before any group theory: turn a molecule in space and nothing physical changes. Its energy
# stays the same, and its forces turn with it, $F(Rx) = R\,F(x)$. A potential that learns this
# from data wastes frames on it; NequIP builds it in. Here is an untrained NequIP model (random
# weights — the property holds for *any* weights) on ethanol, before and after a random rotation.

# %%
from ase.build import molecule

from nequip_np import NequIPModel
from nequip_np.data.graph import graph_from_atoms
from nequip_np.so3 import random_rotation

model = NequIPModel(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=1, num_features=8,
                    avg_num_neighbors=6.0, seed=0)
atoms = molecule("CH3CH2OH")
R = random_rotation(rng)
turned = atoms.copy()
turned.positions = atoms.positions @ R.T
out = model.compute(graph_from_atoms(atoms, ["H", "C", "O"], 4.0), stress=False)
out_rot = model.compute(graph_from_atoms(turned, ["H", "C", "O"], 4.0), stress=False)
dE = abs(out_rot["total_energy"][0] - out["total_energy"][0])
dF = np.abs(out_rot["forces"] - out["forces"] @ R.T).max()
print(f"|E(Rx) − E(x)| = {dE:.1e} eV;  max |F(Rx) − R F(x)| = {dF:.1e} eV/Å")
assert dE < 1e-12 and dF < 1e-12

# %% [markdown]
# **A representation** is a rule $R \mapsto D(R)$ that turns a rotation into a matrix acting on
# some list of numbers, consistently: doing $R_2$ then $R_1$ must be the same as doing
# $R_1R_2$, i.e. $D(R_1R_2) = D(R_1)\,D(R_2)$. Vectors use $D(R) = R$. The nine numbers of
# an outer product $a b^\top$ use $D(R) = R \otimes R$ (a 9×9 matrix), since
# $(Ra)(Rb)^\top = R\,ab^\top R^\top$:

# %%
R1, R2 = random_rotation(rng), random_rotation(rng)
D = lambda R: np.kron(R, R)                       # acts on ab^T flattened row by row
a, b = rng.normal(size=3), rng.normal(size=3)
print("D(R) (a⊗b) == (Ra)⊗(Rb):", np.abs(D(R1) @ np.outer(a, b).ravel() - np.outer(R1 @ a, R1 @ b).ravel()).max())
print("max |D(R1 R2) − D(R1) D(R2)| =", np.abs(D(R1 @ R2) - D(R1) @ D(R2)).max())

# %% [markdown]
# **Splitting into pieces that rotate on their own.** $R\otimes R$ is 9×9, but it never mixes
# three parts of $a b^\top$: the trace $a\cdot b$ (1 number, invariant: $l = 0$), the
# antisymmetric part, which is the cross product $a\times b$ (3 numbers, rotating like a vector:
# $l = 1$), and the symmetric traceless part (5 numbers: $l = 2$). $9 = 1 + 3 + 5$. Those
# pieces are *irreducible* — no smaller piece rotates on its own — and they are what the rest
# of this notebook calls irreps $l = 0, 1, 2$.

# %%
def split(M):
    scalar = np.trace(M) / 3
    antisym = np.array([M[1, 2] - M[2, 1], M[2, 0] - M[0, 2], M[0, 1] - M[1, 0]]) / 2  # (a×b)/2 for M = ab^T
    sym = (M + M.T) / 2 - scalar * np.eye(3)
    return scalar, antisym, sym

s0, v0, t0 = split(np.outer(a, b))
s1, v1, t1 = split(np.outer(R1 @ a, R1 @ b))
print(f"l=0: |s(Ra,Rb) − s(a,b)|           = {abs(s1 - s0):.1e}")
print(f"l=1: |v(Ra,Rb) − R v(a,b)|         = {np.abs(v1 - R1 @ v0).max():.1e}")
print(f"l=2: |S(Ra,Rb) − R S(a,b) Rᵀ|      = {np.abs(t1 - R1 @ t0 @ R1.T).max():.1e}")
print(f"the l=1 part is the cross product: |2v − a × b| = {np.abs(2 * v0 - np.cross(a, b)).max():.1e}")

# %% [markdown]
# ## 1. Irreps: labels, dimensions, layout
#
# An irrep of O(3) is labelled by its degree $l \ge 0$ (dimension $2l+1$) and its parity
# $p = \pm 1$, the sign it picks up under the inversion $x \mapsto -x$. `"1o"` is a polar vector
# (a position, a force), `"1e"` an axial one (an angular momentum, $a \times b$), `"0e"` a true
# scalar, `"0o"` a pseudoscalar (a triple product).

# %%
from nequip_np.so3 import Irrep, Irreps

for s in ["0e", "0o", "1o", "1e", "2e"]:
    ir = Irrep(s)
    print(f"{s}: l = {ir.l}, p = {ir.p:+d}, dim = {ir.dim}")

# %% [markdown]
# A feature vector is a direct sum: `"16x0e + 8x1o + 4x2e"` means 16 scalars, 8 vectors and 4
# rank-2 objects, stored one block after the other ("mul_ir" layout, as in e3nn): inside a
# block `mul x (l,p)`, copy `u` and component `m` sit at column `u*(2l+1) + (l+m)`.

# %%
irreps = Irreps("16x0e + 8x1o + 4x2e")
print(irreps, "| dim =", irreps.dim, "| number of irreps =", irreps.num_irreps)
for mul_ir, sl in zip(irreps, irreps.slices()):
    print(f"  {str(mul_ir):>5}: columns {sl.start:2d} … {sl.stop - 1:2d}")

# where does component m = +1 of the 3rd vector (u = 2) live?
block = irreps.slices()[1]
l, u, m = 1, 2, +1
print("column of (u=2, m=+1) in the 8x1o block:", block.start + u * (2 * l + 1) + (l + m))

# %% [markdown]
# **Products.** The product of two irreps decomposes into irreps with
# $|l_1 - l_2| \le l \le l_1 + l_2$ (the triangle rule) and parity $p_1 p_2$. The dimensions
# must add up: $(2l_1+1)(2l_2+1) = \sum_l (2l+1)$. For two polar vectors,
# $1o \otimes 1o = 0e \oplus 1e \oplus 2e$: the dot product (scalar), the cross product (an
# *axial* vector, hence `1e`) and the traceless symmetric part.

# %%
for a, b in [("1o", "1o"), ("1o", "1e"), ("2e", "1o"), ("0o", "0o"), ("2e", "2e")]:
    parts = list(Irrep(a) * Irrep(b))
    dims = sum(ir.dim for ir in parts)
    print(f"{a} ⊗ {b} = {' ⊕ '.join(map(str, parts)):<22} "
          f"dims: {Irrep(a).dim}·{Irrep(b).dim} = {dims}")

# %% [markdown]
# The spherical harmonics of degree $l$ carry parity $(-1)^l$ because
# $Y^l(-x) = (-1)^l Y^l(x)$; `Irreps.spherical_harmonics` writes that out.

# %%
print(Irreps.spherical_harmonics(3))

# %% [markdown]
# ## 2. Spherical harmonics, derived with sympy ($l \le 2$)
#
# The real spherical harmonics of degree $l$ are the homogeneous harmonic polynomials of
# degree $l$ restricted to the unit sphere. The derivation in
# `docs/derivations/spherical_harmonics_and_cg.md` (§1–3) gives them in a factored form: with
# standard axes $(X, Y, Z)$, $r^2 = X^2+Y^2+Z^2$ and $P_l^{(m)}$ the $m$-th derivative of the
# Legendre polynomial,
#
# $$\Pi_l^m(Z, r^2) = r^{l-m} P_l^{(m)}(Z/r),\qquad
#   N_{lm} = \sqrt{(2l+1)\tfrac{(l-m)!}{(l+m)!}},$$
#
# $$Y^l_\mu = \sqrt2\,N_{l\mu}\,\mathrm{Re}(X+iY)^{\mu}\,\Pi_l^{\mu} \ (\mu>0),\quad
#   N_{l0}\,\Pi_l^0 \ (\mu=0),\quad
#   \sqrt2\,N_{l|\mu|}\,\mathrm{Im}(X+iY)^{|\mu|}\,\Pi_l^{|\mu|}\ (\mu<0).$$
#
# $N_{lm}$ is the "component" normalisation NequIP uses ($\sqrt{4\pi}$ times orthonormal).
# e3nn then renames the axes, $(X, Y, Z) = (z, x, y)$, so that $Y^1 = \sqrt3\,(x, y, z)$ in
# that order and $D^1(R) = R$ — which makes **y the polar axis**. The whole derivation fits in
# one cell:

# %%
import sympy as sp

x, y, z, t = sp.symbols("x y z t", real=True)
X, Y, Z = z, x, y                      # e3nn's axes: y is the polar axis
r2 = x**2 + y**2 + z**2

def Y_sympy(l, mu):
    m = abs(mu)
    N = sp.sqrt((2 * l + 1) * sp.factorial(l - m) / sp.factorial(l + m))
    dP = sp.Poly(sp.diff(sp.legendre(l, t), t, m), t)          # P_l^{(m)}(t)
    Pi = sum(c * Z**k * r2 ** ((l - m - k) // 2) for (k,), c in dP.terms())
    w = sp.expand((X + sp.I * Y) ** m)
    angular = {1: sp.sqrt(2) * sp.re(w), 0: 1, -1: sp.sqrt(2) * sp.im(w)}[int(sp.sign(mu))]
    return sp.expand(N * angular * Pi)

L_SYMPY = 2
Ys = {l: [Y_sympy(l, mu) for mu in range(-l, l + 1)] for l in range(L_SYMPY + 1)}
for l, row in Ys.items():
    for mu, expr in zip(range(-l, l + 1), row):
        print(f"Y^{l}_{mu} = {expr}")

# %% [markdown]
# Three properties, checked exactly: each $Y^l_m$ is homogeneous of degree $l$, it is harmonic
# ($\nabla^2 Y = 0$), and $\sum_m (Y^l_m)^2 = (2l+1)\,r^{2l}$ — on the unit sphere that is the
# component normalisation $|Y^l|^2 = 2l+1$ (the addition theorem at coinciding points).

# %%
for l, row in Ys.items():
    homogeneous = all(sp.Poly(e, x, y, z).is_homogeneous and sp.Poly(e, x, y, z).total_degree() == l
                      for e in row)
    harmonic = all(sp.simplify(sp.diff(e, x, 2) + sp.diff(e, y, 2) + sp.diff(e, z, 2)) == 0 for e in row)
    norm = sp.simplify(sum(e**2 for e in row) - (2 * l + 1) * r2**l) == 0
    print(f"l = {l}: homogeneous {homogeneous}, harmonic {harmonic}, Σ_m Y² = (2l+1) r^2l: {norm}")

# %% [markdown]
# Now the shipped code: `nequip_np.so3.sh_polynomials` is generated from the same formulas for
# all $l \le$ `SH_LMAX` by `tools/derive_so3.py` (never at import time). It evaluates the
# polynomials on any vector; `spherical_harmonics` first normalises to the unit sphere.

# %%
from nequip_np.so3 import SH_LMAX, sh_polynomials, spherical_harmonics

Y_fn = sp.lambdify((x, y, z), [e for l in Ys for e in Ys[l]], "numpy")
pts = rng.normal(size=(N_POINTS, 3))
ours = np.stack([np.broadcast_to(v, (N_POINTS,)) for v in Y_fn(*pts.T)], axis=1)
shipped = sh_polynomials(L_SYMPY, pts)
print("max |sympy − sh_polynomials| on", N_POINTS, "random (unnormalised) vectors:",
      np.abs(ours - shipped).max())
print("Y at the unit vector along y:", spherical_harmonics(2, np.array([0.0, 1.0, 0.0])).round(4))

# %% [markdown]
# ## 3. Normalisation and orthogonality, numerically for every shipped $l$
#
# On the unit sphere $\sum_m (Y^l_m)^2 = 2l+1$ holds pointwise, and the sphere average of
# $Y^l_m Y^{l'}_{m'}$ is $\delta_{ll'}\delta_{mm'}$. The average is a quadrature over a
# $(\theta, \varphi)$ grid with weights $\sin\theta$ (midpoint rule, accurate to
# $O(1/n_\theta^2)$), then with a Gauss rule that is exact for these polynomials, so that the
# orthonormality shows to round-off.

# %%
from nequip_np.viz import sphere_grid

u = rng.normal(size=(N_POINTS, 3))
Yall = spherical_harmonics(SH_LMAX, u)
for l in range(SH_LMAX + 1):
    dev = np.abs((Yall[:, l * l:(l + 1) ** 2] ** 2).sum(axis=1) - (2 * l + 1)).max()
    print(f"l = {l}: max |Σ_m Y² − {2 * l + 1:2d}| = {dev:.1e}")

theta, phi, xyz = sphere_grid(N_THETA, N_PHI)
L_GRAM = 4
Yg = spherical_harmonics(L_GRAM, xyz.reshape(-1, 3))
w = np.repeat(np.sin(theta), N_PHI)
gram = (Yg * w[:, None]).T @ Yg / w.sum()
print(f"midpoint rule, {N_THETA}×{N_PHI} grid: max |G − I| = {np.abs(gram - np.eye(len(gram))).max():.1e}")

# an exact rule: products Y_k Y_k' are polynomials of degree ≤ 2 L_GRAM, and Gauss–Legendre in cos θ
# times a uniform φ grid integrates those exactly — what is left is round-off
from nequip_np.course import gauss_sphere_quadrature

pts, wq = gauss_sphere_quadrature(2 * L_GRAM)
Yq = spherical_harmonics(L_GRAM, pts)
gram_exact = (Yq * wq[:, None]).T @ Yq
orth_err = np.abs(gram_exact - np.eye(len(gram_exact))).max()
print(f"Gauss rule, {len(wq)} points:       max |G − I| = {orth_err:.1e}")
assert orth_err < 1e-14

# %% [markdown]
# ## 4. Pictures
#
# Signed values of $Y^l_m$ over the standard angles ($\theta$ from the z axis, $\varphi$ the
# azimuth in the xy plane); black lines are the nodal lines. $Y^1_{-1}, Y^1_0, Y^1_{+1}$ are
# $\sqrt3\,x, \sqrt3\,y, \sqrt3\,z$; $Y^2_0 \propto y^2 - (x^2+z^2)/2$ is symmetric about the
# **y** axis (e3nn's polar axis), so in standard angles it is not a function of $\theta$ alone.

# %%
from nequip_np.viz import plot_sh_on_sphere

fig = plot_sh_on_sphere([(1, -1), (1, 0), (1, 1), (2, -2), (2, 0), (2, 2)], n_theta=N_THETA, n_phi=N_PHI)

# %% [markdown]
# **p and d orbitals.** Chemists know these functions: $Y^1$ are the three p orbitals and
# $Y^2$ the five d orbitals (real combinations, up to normalisation). Below, the surface is
# $|Y^l_m(\hat r)|$ in direction $\hat r$, red where $Y$ is positive and blue where negative.
#
# **e3nn's axis convention, said plainly:** $Y^1 = \sqrt3\,(x, y, z)$ in the order
# $m = -1, 0, +1$, so $Y^1_0$ points along **y**, not z: e3nn's $Y^1_0$ is the chemist's $p_y$,
# $Y^1_{+1}$ is $p_z$, and $Y^2_0 \propto 2y^2 - x^2 - z^2$ is "$d_{y^2}$". Nothing physical
# depends on the choice (a rotation maps one convention to the other), but formulas copied from a
# textbook with z as polar axis will disagree with these arrays component by component.

# %%
from nequip_np.course import plot_real_sh_lobes

fig = plt.figure(figsize=(11, 4.4))
for row, l in enumerate((1, 2)):
    axes = [fig.add_subplot(2, 5, 5 * row + k + 1, projection="3d") for k in range(2 * l + 1)]
    plot_real_sh_lobes(l, axes, resolution=12 if SMOKE else 40)
fig.suptitle("$|Y^l_m|$ coloured by sign (red +, blue −); axes x, y, z as in matplotlib", fontsize=9)
y_axis = spherical_harmonics(1, np.array([[0.0, 1.0, 0.0]]))[0, 1:]
print("Y^1 at the unit vector along y (m = −1, 0, +1):", y_axis.round(4), "→ Y^1_0 is p_y")
assert np.allclose(y_axis, [0, np.sqrt(3), 0])

# %% [markdown]
# ## 5. Rotations: $Y(Rx) = D(R)\,Y(x)$
#
# The Wigner matrix $D^l(R)$ is *defined* by how the harmonics rotate. `wigner_D` solves
# $Y^l(Rx_k) = D^l(R)Y^l(x_k)$ by least squares at fixed points, so the check below is not
# circular only in the sense that it uses fresh random points; its real content is that such a
# $D$ exists (the $Y^l$ span an invariant space) and that $D$ is orthogonal and a
# representation, $D(R_1R_2) = D(R_1)D(R_2)$.

# %%
from nequip_np.so3 import random_rotation, wigner_D

errors = np.zeros((N_ROTATIONS, SH_LMAX + 1))
for k in range(N_ROTATIONS):
    R = random_rotation(rng)
    x_pts = rng.normal(size=(N_POINTS, 3))
    Y_rot, Y_pts = spherical_harmonics(SH_LMAX, x_pts @ R.T), spherical_harmonics(SH_LMAX, x_pts)
    for l in range(SH_LMAX + 1):
        D = wigner_D(l, R)
        errors[k, l] = np.abs(Y_rot[:, l * l:(l + 1) ** 2] - Y_pts[:, l * l:(l + 1) ** 2] @ D.T).max()

R1, R2 = random_rotation(rng), random_rotation(rng)
print("D^1(R) == R:", np.allclose(wigner_D(1, R1), R1))
print("max |D Dᵀ − I| (l=3):", np.abs(wigner_D(3, R1) @ wigner_D(3, R1).T - np.eye(7)).max())
print("max |D(R1 R2) − D(R1) D(R2)| (l=3):",
      np.abs(wigner_D(3, R1 @ R2) - wigner_D(3, R1) @ wigner_D(3, R2)).max())
print("worst |Y(Rx) − D(R)Y(x)| per l:", " ".join(f"{e:.0e}" for e in errors.max(axis=0)))

# %% [markdown]
# **Inversion.** O(3) also contains $-I$. Since $Y^l(-x) = (-1)^l Y^l(x)$, an improper
# $Q = -R$ acts on irrep $(l, p)$ by $p\,D^l(R)$, and for the harmonics $p = (-1)^l$. A feature
# of type `1e` does *not* flip under inversion — which is how an equivariant network tells a
# cross product from a position.

# %%
Q = -random_rotation(rng)                                  # improper: det Q = −1
x_pts = rng.normal(size=(N_POINTS, 3))
for l in range(4):
    lhs = spherical_harmonics(l, x_pts @ Q.T)[:, l * l:]
    rhs = spherical_harmonics(l, x_pts)[:, l * l:] @ wigner_D(l, Q).T
    print(f"l = {l}: det Q = {np.linalg.det(Q):+.0f}, |Y(Qx) − D(Q)Y(x)| = {np.abs(lhs - rhs).max():.1e}")
print("D_{1o}(−I) =", np.diag(Irrep("1o").D_from_matrix(-np.eye(3))),
      "  D_{1e}(−I) =", np.diag(Irrep("1e").D_from_matrix(-np.eye(3))))

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(range(SH_LMAX + 1), np.maximum(errors.max(axis=0), 1e-17), "o-", label="worst over rotations")
ax.semilogy(range(SH_LMAX + 1), np.maximum(np.median(errors, axis=0), 1e-17), "s--", label="median")
ax.set_xlabel("l"); ax.set_ylabel(r"$|Y(Rx) - D(R)Y(x)|$"); ax.set_title("equivariance error of the harmonics")
ax.legend(); ax.grid(alpha=0.3)

# %% [markdown]
# The error grows mildly with $l$ (the harmonics grow like $\sqrt{2l+1}$ and the polynomial
# coefficients like $l!$) but stays at round-off.
#
# **Try it.** (1) Derive $l = 3$ with `Y_sympy` and compare with `sh_polynomials(3, …)`.
# (2) Check that `spherical_harmonics(l, v)` at $v = (0, 1, 0)$ is nonzero only for $m = 0$ —
# the polar axis. (3) Build `Irreps("2x1o").D_from_matrix(R)` and confirm it is block diagonal.
#
# <details><summary>Solutions</summary>
#
# (1) `Y3 = [Y_sympy(3, mu) for mu in range(-3, 4)]`, then
# `f = sp.lambdify((x, y, z), Y3, "numpy")` and
# `np.abs(np.stack(f(*pts.T), 1) - sh_polynomials(3, pts)[:, 9:]).max()` is at round-off.
# (2) `spherical_harmonics(4, np.array([0.0, 1.0, 0.0]))` is zero except at the columns
# $l^2 + l$ (the $m = 0$ component of each $l$), where it equals $\sqrt{2l+1}$.
# (3) `D = Irreps("2x1o").D_from_matrix(R)` is 6×6 with `R` in the two diagonal 3×3 blocks and
# zeros elsewhere: `np.allclose(D, np.kron(np.eye(2), R))`.
# </details>
#
# ### Exercise: implement it, then check it against the package
#
# Write $Y^2$ yourself from the table printed in section 2 (component normalisation,
# e3nn's order $m = -2 \dots 2$) for arbitrary, unnormalised vectors, and compare with
# `spherical_harmonics(2, v)[:, 4:9]`. The cell below holds one solution so that the notebook
# runs; replace the body of `my_Y2` with your own and re-run.

# %%
def my_Y2(v):
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    x_, y_, z_ = u.T
    s15, s5 = np.sqrt(15), np.sqrt(5)
    return np.stack([s15 * x_ * z_, s15 * x_ * y_, s5 * (y_**2 - (x_**2 + z_**2) / 2),
                     s15 * y_ * z_, s15 / 2 * (z_**2 - x_**2)], axis=1)

v_test = rng.normal(size=(N_POINTS, 3)) * 3.0
err_Y2 = np.abs(my_Y2(v_test) - spherical_harmonics(2, v_test)[:, 4:9]).max()
print(f"max |my_Y2 − package| = {err_Y2:.1e}")
assert err_Y2 < 1e-12, "your Y^2 disagrees with the package: check the order of m and the axes"
