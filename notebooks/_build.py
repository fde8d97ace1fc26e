r"""Write the course notebooks from the Python source in this file.

Each notebook is a list of ``("md" | "code", text)`` cells returned by one function registered with
``@notebook("NN_name")``. Edit the cells here, never the ``.ipynb`` by hand, then regenerate and
re-execute everything with the one command

    python tools/run_notebooks.py

(it calls this builder first). ``python notebooks/_build.py`` alone rewrites the ``.ipynb`` files
whose cell sources changed (outputs are dropped for those); ``--check`` exits 1 if a committed
notebook differs from its source here. Notebooks not registered here (written directly as
``.ipynb``) are never touched.

Conventions for every notebook: the first cell says what it covers and what it does not; ONE cell
near the top sets the sizes from ``NEQUIP_NP_NOTEBOOK_SMOKE`` (tiny sizes when it is "1", which is
how ``tests/test_notebooks.py`` runs them); at least one matplotlib figure; plotting helpers worth
keeping live in ``nequip_np/viz.py``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import textwrap

HERE = pathlib.Path(__file__).resolve().parent
NOTEBOOKS: dict = {}

SETUP = r'''
import os

import numpy as np
import matplotlib.pyplot as plt

%matplotlib inline
plt.rcParams["figure.dpi"] = 72  # modest resolution keeps the committed notebooks small
np.set_printoptions(precision=4, suppress=True, linewidth=110)

SMOKE = os.environ.get("NEQUIP_NP_NOTEBOOK_SMOKE") == "1"  # CI runs every notebook with tiny sizes
'''


def setup(sizes: str) -> str:
    """The common first code cell: imports, plotting defaults, ``SMOKE``, then this notebook's sizes."""
    return textwrap.dedent(SETUP).strip() + "\n\n" + textwrap.dedent(sizes).strip("\n")


def notebook(name: str):
    def register(fn):
        NOTEBOOKS[name] = fn
        return fn

    return register


def _cells(spec):
    import nbformat

    out = []
    for kind, text in spec:
        text = textwrap.dedent(text).strip("\n")
        if kind == "md":
            out.append(nbformat.v4.new_markdown_cell(text))
        elif kind == "code":
            out.append(nbformat.v4.new_code_cell(text))
        else:
            raise ValueError(f"cell kind must be 'md' or 'code', got {kind!r}")
    return out


def make(name: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = _cells(NOTEBOOKS[name]())
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for k, cell in enumerate(nb.cells):  # stable ids: rebuilding an unchanged notebook is a no-op
        cell["id"] = f"{name[:2]}-{k:03d}"
    return nb


def _sources(nb) -> list:
    return [(c["cell_type"], c["source"]) for c in nb.cells]


def build(names=None, check: bool = False) -> list:
    """Write (or with ``check`` only compare) the notebooks; returns the names that differed."""
    import nbformat

    changed = []
    for name in names or sorted(NOTEBOOKS):
        path = HERE / f"{name}.ipynb"
        new = make(name)
        if path.exists():
            old = nbformat.read(path, as_version=4)
            if _sources(old) == _sources(new):
                continue
        changed.append(name)
        if not check:
            nbformat.validate(new)
            nbformat.write(new, path)
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help=f"notebooks to build (default all): {', '.join(NOTEBOOKS)}")
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed notebook is out of date")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in NOTEBOOKS]
    if unknown:
        ap.error(f"unknown notebook(s) {unknown}; known: {sorted(NOTEBOOKS)}")
    changed = build(args.names, check=args.check)
    verb = "out of date" if args.check else "written"
    print(f"{verb}: {', '.join(changed) if changed else 'none'}")
    return 1 if (args.check and changed) else 0


# ==================================================================================================
# 01 · irreps and spherical harmonics
# ==================================================================================================
@notebook("01_irreps_and_spherical_harmonics")
def nb01():
    return [
        ("md", r'''
        # 01 · Irreps and spherical harmonics

        **What this covers.** The bookkeeping of NequIP's features: irreducible representations
        ("irreps") of O(3) written as strings like `"16x0e + 8x1o"`, their dimensions and memory
        layout, how products of irreps decompose (with parity); the real spherical harmonics
        $Y^l_m$ in e3nn's basis, *derived* here with sympy for $l \le 2$ and compared with the shipped
        code; the normalisation $\sum_m (Y^l_m)^2 = 2l+1$; pictures of $Y^l_m$ on the sphere; and the
        defining property $Y(Rx) = D(R)\,Y(x)$ checked numerically, inversion included.

        **What it does not cover.** Clebsch–Gordan coefficients and tensor products (notebook 02),
        how the Wigner matrices are computed (one sentence below; details in
        `docs/derivations/spherical_harmonics_and_cg.md`), complex harmonics beyond their use in the
        derivation, and speed.
        '''),
        ("code", setup(r'''
        N_POINTS = 8 if SMOKE else 200          # random directions for the numerical checks
        N_THETA, N_PHI = (24, 48) if SMOKE else (90, 180)   # sphere grid (quadrature and pictures)
        N_ROTATIONS = 2 if SMOKE else 50        # random rotations in the equivariance check
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. Irreps: labels, dimensions, layout

        An irrep of O(3) is labelled by its degree $l \ge 0$ (dimension $2l+1$) and its parity
        $p = \pm 1$, the sign it picks up under the inversion $x \mapsto -x$. `"1o"` is a polar vector
        (a position, a force), `"1e"` an axial one (an angular momentum, $a \times b$), `"0e"` a true
        scalar, `"0o"` a pseudoscalar (a triple product).
        '''),
        ("code", r'''
        from nequip_np.so3 import Irrep, Irreps

        for s in ["0e", "0o", "1o", "1e", "2e"]:
            ir = Irrep(s)
            print(f"{s}: l = {ir.l}, p = {ir.p:+d}, dim = {ir.dim}")
        '''),
        ("md", r'''
        A feature vector is a direct sum: `"16x0e + 8x1o + 4x2e"` means 16 scalars, 8 vectors and 4
        rank-2 objects, stored one block after the other ("mul_ir" layout, as in e3nn): inside a
        block `mul x (l,p)`, copy `u` and component `m` sit at column `u*(2l+1) + (l+m)`.
        '''),
        ("code", r'''
        irreps = Irreps("16x0e + 8x1o + 4x2e")
        print(irreps, "| dim =", irreps.dim, "| number of irreps =", irreps.num_irreps)
        for mul_ir, sl in zip(irreps, irreps.slices()):
            print(f"  {str(mul_ir):>5}: columns {sl.start:2d} … {sl.stop - 1:2d}")

        # where does component m = +1 of the 3rd vector (u = 2) live?
        block = irreps.slices()[1]
        l, u, m = 1, 2, +1
        print("column of (u=2, m=+1) in the 8x1o block:", block.start + u * (2 * l + 1) + (l + m))
        '''),
        ("md", r'''
        **Products.** The product of two irreps decomposes into irreps with
        $|l_1 - l_2| \le l \le l_1 + l_2$ (the triangle rule) and parity $p_1 p_2$. The dimensions
        must add up: $(2l_1+1)(2l_2+1) = \sum_l (2l+1)$. For two polar vectors,
        $1o \otimes 1o = 0e \oplus 1e \oplus 2e$: the dot product (scalar), the cross product (an
        *axial* vector, hence `1e`) and the traceless symmetric part.
        '''),
        ("code", r'''
        for a, b in [("1o", "1o"), ("1o", "1e"), ("2e", "1o"), ("0o", "0o"), ("2e", "2e")]:
            parts = list(Irrep(a) * Irrep(b))
            dims = sum(ir.dim for ir in parts)
            print(f"{a} ⊗ {b} = {' ⊕ '.join(map(str, parts)):<22} "
                  f"dims: {Irrep(a).dim}·{Irrep(b).dim} = {dims}")
        '''),
        ("md", r'''
        The spherical harmonics of degree $l$ carry parity $(-1)^l$ because
        $Y^l(-x) = (-1)^l Y^l(x)$; `Irreps.spherical_harmonics` writes that out.
        '''),
        ("code", r'''
        print(Irreps.spherical_harmonics(3))
        '''),
        ("md", r'''
        ## 2. Spherical harmonics, derived with sympy ($l \le 2$)

        The real spherical harmonics of degree $l$ are the homogeneous harmonic polynomials of
        degree $l$ restricted to the unit sphere. The derivation in
        `docs/derivations/spherical_harmonics_and_cg.md` (§1–3) gives them in a factored form: with
        standard axes $(X, Y, Z)$, $r^2 = X^2+Y^2+Z^2$ and $P_l^{(m)}$ the $m$-th derivative of the
        Legendre polynomial,

        $$\Pi_l^m(Z, r^2) = r^{l-m} P_l^{(m)}(Z/r),\qquad
          N_{lm} = \sqrt{(2l+1)\tfrac{(l-m)!}{(l+m)!}},$$

        $$Y^l_\mu = \sqrt2\,N_{l\mu}\,\mathrm{Re}(X+iY)^{\mu}\,\Pi_l^{\mu} \ (\mu>0),\quad
          N_{l0}\,\Pi_l^0 \ (\mu=0),\quad
          \sqrt2\,N_{l|\mu|}\,\mathrm{Im}(X+iY)^{|\mu|}\,\Pi_l^{|\mu|}\ (\mu<0).$$

        $N_{lm}$ is the "component" normalisation NequIP uses ($\sqrt{4\pi}$ times orthonormal).
        e3nn then renames the axes, $(X, Y, Z) = (z, x, y)$, so that $Y^1 = \sqrt3\,(x, y, z)$ in
        that order and $D^1(R) = R$ — which makes **y the polar axis**. The whole derivation fits in
        one cell:
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        Three properties, checked exactly: each $Y^l_m$ is homogeneous of degree $l$, it is harmonic
        ($\nabla^2 Y = 0$), and $\sum_m (Y^l_m)^2 = (2l+1)\,r^{2l}$ — on the unit sphere that is the
        component normalisation $|Y^l|^2 = 2l+1$ (the addition theorem at coinciding points).
        '''),
        ("code", r'''
        for l, row in Ys.items():
            homogeneous = all(sp.Poly(e, x, y, z).is_homogeneous and sp.Poly(e, x, y, z).total_degree() == l
                              for e in row)
            harmonic = all(sp.simplify(sp.diff(e, x, 2) + sp.diff(e, y, 2) + sp.diff(e, z, 2)) == 0 for e in row)
            norm = sp.simplify(sum(e**2 for e in row) - (2 * l + 1) * r2**l) == 0
            print(f"l = {l}: homogeneous {homogeneous}, harmonic {harmonic}, Σ_m Y² = (2l+1) r^2l: {norm}")
        '''),
        ("md", r'''
        Now the shipped code: `nequip_np.so3.sh_polynomials` is generated from the same formulas for
        all $l \le$ `SH_LMAX` by `tools/derive_so3.py` (never at import time). It evaluates the
        polynomials on any vector; `spherical_harmonics` first normalises to the unit sphere.
        '''),
        ("code", r'''
        from nequip_np.so3 import SH_LMAX, sh_polynomials, spherical_harmonics

        Y_fn = sp.lambdify((x, y, z), [e for l in Ys for e in Ys[l]], "numpy")
        pts = rng.normal(size=(N_POINTS, 3))
        ours = np.stack([np.broadcast_to(v, (N_POINTS,)) for v in Y_fn(*pts.T)], axis=1)
        shipped = sh_polynomials(L_SYMPY, pts)
        print("max |sympy − sh_polynomials| on", N_POINTS, "random (unnormalised) vectors:",
              np.abs(ours - shipped).max())
        print("Y at the unit vector along y:", spherical_harmonics(2, np.array([0.0, 1.0, 0.0])).round(4))
        '''),
        ("md", r'''
        ## 3. Normalisation and orthogonality, numerically for every shipped $l$

        On the unit sphere $\sum_m (Y^l_m)^2 = 2l+1$ holds pointwise, and the sphere average of
        $Y^l_m Y^{l'}_{m'}$ is $\delta_{ll'}\delta_{mm'}$. The average is a quadrature over a
        $(\theta, \varphi)$ grid with weights $\sin\theta$ (midpoint rule, accurate to
        $O(1/n_\theta^2)$).
        '''),
        ("code", r'''
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
        print(f"sphere average of Y_k Y_k' for l ≤ {L_GRAM}: max |G − I| = {np.abs(gram - np.eye(len(gram))).max():.1e}"
              f" (quadrature error on a {N_THETA}×{N_PHI} grid)")
        '''),
        ("md", r'''
        ## 4. Pictures

        Signed values of $Y^l_m$ over the standard angles ($\theta$ from the z axis, $\varphi$ the
        azimuth in the xy plane); black lines are the nodal lines. $Y^1_{-1}, Y^1_0, Y^1_{+1}$ are
        $\sqrt3\,x, \sqrt3\,y, \sqrt3\,z$; $Y^2_0 \propto y^2 - (x^2+z^2)/2$ is symmetric about the
        **y** axis (e3nn's polar axis), so in standard angles it is not a function of $\theta$ alone.
        '''),
        ("code", r'''
        from nequip_np.viz import plot_sh_on_sphere

        fig = plot_sh_on_sphere([(1, -1), (1, 0), (1, 1), (2, -2), (2, 0), (2, 2)], n_theta=N_THETA, n_phi=N_PHI)
        '''),
        ("md", r'''
        ## 5. Rotations: $Y(Rx) = D(R)\,Y(x)$

        The Wigner matrix $D^l(R)$ is *defined* by how the harmonics rotate. `wigner_D` solves
        $Y^l(Rx_k) = D^l(R)Y^l(x_k)$ by least squares at fixed points, so the check below is not
        circular only in the sense that it uses fresh random points; its real content is that such a
        $D$ exists (the $Y^l$ span an invariant space) and that $D$ is orthogonal and a
        representation, $D(R_1R_2) = D(R_1)D(R_2)$.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        **Inversion.** O(3) also contains $-I$. Since $Y^l(-x) = (-1)^l Y^l(x)$, an improper
        $Q = -R$ acts on irrep $(l, p)$ by $p\,D^l(R)$, and for the harmonics $p = (-1)^l$. A feature
        of type `1e` does *not* flip under inversion — which is how an equivariant network tells a
        cross product from a position.
        '''),
        ("code", r'''
        Q = -random_rotation(rng)                                  # improper: det Q = −1
        x_pts = rng.normal(size=(N_POINTS, 3))
        for l in range(4):
            lhs = spherical_harmonics(l, x_pts @ Q.T)[:, l * l:]
            rhs = spherical_harmonics(l, x_pts)[:, l * l:] @ wigner_D(l, Q).T
            print(f"l = {l}: det Q = {np.linalg.det(Q):+.0f}, |Y(Qx) − D(Q)Y(x)| = {np.abs(lhs - rhs).max():.1e}")
        print("D_{1o}(−I) =", np.diag(Irrep("1o").D_from_matrix(-np.eye(3))),
              "  D_{1e}(−I) =", np.diag(Irrep("1e").D_from_matrix(-np.eye(3))))
        '''),
        ("code", r'''
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.semilogy(range(SH_LMAX + 1), np.maximum(errors.max(axis=0), 1e-17), "o-", label="worst over rotations")
        ax.semilogy(range(SH_LMAX + 1), np.maximum(np.median(errors, axis=0), 1e-17), "s--", label="median")
        ax.set_xlabel("l"); ax.set_ylabel(r"$|Y(Rx) - D(R)Y(x)|$"); ax.set_title("equivariance error of the harmonics")
        ax.legend(); ax.grid(alpha=0.3)
        '''),
        ("md", r'''
        The error grows mildly with $l$ (the harmonics grow like $\sqrt{2l+1}$ and the polynomial
        coefficients like $l!$) but stays at round-off.

        **Try it.** (1) Derive $l = 3$ with `Y_sympy` and compare with `sh_polynomials(3, …)`.
        (2) Check that `spherical_harmonics(l, v)` at $v = (0, 1, 0)$ is nonzero only for $m = 0$ —
        the polar axis. (3) Build `Irreps("2x1o").D_from_matrix(R)` and confirm it is block diagonal.
        '''),
    ]


# ==================================================================================================
# 02 · Clebsch–Gordan coefficients and tensor products
# ==================================================================================================
@notebook("02_clebsch_gordan_and_tensor_products")
def nb02():
    return [
        ("md", r'''
        # 02 · Clebsch–Gordan coefficients and tensor products, by hand

        **What this covers.** The real Clebsch–Gordan (CG) tensor $C^{l_1 l_2 l_3}_{abc}$ that couples
        two irreps into a third: its familiar special cases (dot and cross product), its invariance and
        orthogonality, the selection rules (triangle and parity) as a table; a NequIP "uvu" tensor
        product written with one `einsum` and checked for equivariance under rotations *and*
        inversion, then compared with the package's convolution kernel; and how many paths a NequIP
        layer has and what each costs in flops.

        **What it does not cover.** How the CG table is derived (Racah's formula and e3nn's real
        basis: `docs/derivations/spherical_harmonics_and_cg.md` §4, generator `tools/derive_so3.py`),
        the radial network that produces the weights (notebook 03), and fast kernels.
        '''),
        ("code", setup(r'''
        MUL = 4 if SMOKE else 16            # channels u in the hand-written tensor product
        N_TRIALS = 3 if SMOKE else 100      # random rotations per equivariance check
        NUM_FEATURES = 32                   # NequIP-sized layer for the path and flop count (no cost)
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. Two coefficients you already know

        For two vectors ($l = 1$), the scalar part of $a \otimes b$ is the dot product and the $l = 1$
        part the cross product. In e3nn's basis ($Y^1 \propto (x, y, z)$) the CG tensors are exactly
        $C^{110}_{ab0} = \delta_{ab}/\sqrt3$ and $C^{111}_{abc} = \varepsilon_{abc}/\sqrt6$ (each tensor has
        Frobenius norm 1). The table ships exact entries $\pm\sqrt{p/q}$.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 2. What makes $C$ special: invariance and orthogonality

        $C$ is the (unique up to sign) tensor with
        $\sum_{a'b'c'} D^{l_1}_{aa'}D^{l_2}_{bb'}D^{l_3}_{cc'}C_{a'b'c'} = C_{abc}$ for every rotation.
        Read as a map from the $(2l_1+1)(2l_2+1)$ product space onto $l_3$, it is an isometry up to a
        factor: $C^\top C = \mathbb 1/(2l_3+1)$. NequIP multiplies each path by $\sqrt{2l_3+1}$ (e3nn's
        path normalisation) so the output has unit variance.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        A heat map of $C^{1,1,2}$: each output component $c$ of the rank-2 (traceless symmetric) part
        of $a \otimes b$ is a fixed quadratic form of $a$ and $b$.
        '''),
        ("code", r'''
        from nequip_np.viz import plot_cg

        fig = plot_cg(clebsch_gordan(1, 1, 2), title=r"$C^{1,1,2}_{abc}$")
        '''),
        ("md", r'''
        ## 3. Selection rules

        A path $(l_1,p_1) \otimes (l_2,p_2) \to (l_3,p_3)$ exists only if the **triangle rule**
        $|l_1-l_2| \le l_3 \le l_1+l_2$ holds (otherwise $C = 0$) and the **parity rule** $p_1p_2 = p_3$
        holds. The parity rule is *not* visible in $C$ — $C^{111}$ is nonzero — it is a statement about
        which output label is consistent with inversion: the cross product of two polar vectors is an
        axial vector, `1o ⊗ 1o → 1e`, never `1o`. Rows: a NequIP feature irrep times a spherical
        harmonic (`0e, 1o, 2e`); columns: outputs.
        '''),
        ("code", r'''
        from nequip_np.so3 import Irrep, allowed_path

        outs = [Irrep(l, p) for l in range(4) for p in (1, -1)]
        print(f"{'':>10} " + " ".join(f"{str(o):>3}" for o in outs))
        for ir1 in ["0e", "0o", "1o", "1e", "2e", "2o"]:
            for ir2 in ["0e", "1o", "2e"]:
                marks = ["  ✓" if allowed_path(ir1, ir2, o) else "  ·" for o in outs]
                print(f"{ir1} ⊗ {ir2:<3} " + " ".join(marks))
        print("\nC(1,1,3) is zero (triangle):", not clebsch_gordan(1, 1, 3).any())
        print("1o ⊗ 1o → 1o allowed?", allowed_path("1o", "1o", "1o"), "  → 1e allowed?", allowed_path("1o", "1o", "1e"))
        '''),
        ("md", r'''
        ## 4. A "uvu" tensor product by hand

        NequIP's convolution couples the features of neighbour $j$ (`mul` copies $u$ of irrep $l_1$) with
        the spherical harmonics of the edge direction ($l_2$), one learned weight per copy:

        $$m[u, c] = w[u]\,\sqrt{2l_3+1}\sum_{a,b} C^{l_1 l_2 l_3}_{abc}\; x[u, a]\; Y^{l_2}_b(\hat r).$$

        "uvu" means input channel $u$ and output channel $u$ coincide (no mixing of copies; that is
        the linear layers' job). Here: `MUL x 1o` ⊗ $Y^2$ (`2e`) → `1o`.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        **Equivariance.** Rotate the input features with $D^{l_1}$ and the edge with $R$: the output must
        rotate with $D^{l_3}$. For an improper $Q = -R$ each irrep also picks up its parity: the input
        `1o` flips, $Y^2$ (`2e`) does not, so the output must be odd — `1o`, as the parity rule says.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        The same experiment with a path that breaks the parity rule: $1o \otimes 1o$ through $C^{111}$
        (the cross product). Labelled `1e` it is equivariant under all of O(3); labelled `1o` it fails
        under inversion, by a lot.
        '''),
        ("code", r'''
        C111 = clebsch_gordan(1, 1, 1) * np.sqrt(3)
        a, b = rng.normal(size=3), rng.normal(size=3)
        Q = -random_rotation(rng)
        out = np.einsum("a,b,abc->c", a, b, C111)
        out_q = np.einsum("a,b,abc->c", D("1o", Q) @ a, D("1o", Q) @ b, C111)
        for label in ("1e", "1o"):
            print(f"output labelled {label}: error under improper Q = {np.abs(out_q - D(label, Q) @ out).max():.1e}")
        '''),
        ("md", r'''
        **The package's kernel does the same.** `nequip_np.kernels.tp_conv.reference` runs every path of
        a `ConvPlan` over all edges and sums the messages into the receiving atoms. On a two-atom graph
        with one edge ($j = 1 \to i = 0$) and weights only on our path it must reproduce `tp_uvu`.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 5. Paths and flops of a NequIP layer

        A NequIP model with $l_{\max} = 2$, parity, and `NUM_FEATURES` channels per irrep: every
        input irrep is coupled with every $Y^{l}$, $l \le 2$, into every output irrep the gate needs.
        `build_plan` (the single place paths are enumerated) gives the list. Per edge, the reference
        kernel spends on one path

        $$\underbrace{2\,d_1 d_2 d_3}_{(YC)_{ac} = \sum_b Y_b C_{abc}}
          + \underbrace{2\,\mathrm{mul}\,d_1 d_3}_{t_{uc} = \sum_a x_{ua} (YC)_{ac}}
          + \underbrace{\mathrm{mul}\,d_3}_{\times w_u}\quad\text{flops},\qquad d_k = 2l_k+1 .$$

        (Exploiting the sparsity of $C$ would cut the first term; it is small anyway.) The number of
        weights per edge — the radial MLP's output width — is the sum of `mul` over paths.
        '''),
        ("code", r'''
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
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        Paths into $l_3 = 2$ dominate ($d_3 = 5$, and $l_1 = 2$ inputs have $d_1 = 5$). Both terms grow
        steeply with $l_{\max}$: there are $O(l_{\max}^3)$ paths, each costing $O(l_{\max}^3)$ (CG part)
        or $O(\mathrm{mul}\,l_{\max}^2)$ (channel part) — why $l_{\max} = 3$ models are markedly slower. Note
        also the printout above: at this width the radial MLP that *produces* the weights
        (8 → 64 → 64 → 480 per edge) costs more flops than all tensor-product paths together — it is
        a dense matrix product and runs at BLAS speed, while the paths are many small contractions.

        **Try it.** (1) Change the output label of the hand-written path to `1e` and watch the
        improper-rotation error jump. (2) Count paths for `parity=False` (fewer irreps). (3) Check that
        `sum(p.cg.size for p in conv.paths)` is much larger than the number of nonzero CG entries.
        '''),
    ]


# ==================================================================================================
# 03 · one interaction layer
# ==================================================================================================
@notebook("03_one_interaction_layer")
def nb03():
    return [
        ("md", r'''
        # 03 · One interaction layer, step by step

        **What this covers.** The forward pass of a NequIP model on one small molecule, one operation
        at a time, calling the reference kernels (`nequip_np/kernels/*/reference.py` — the
        specification of each operation) with the model's own plan and parameters: edge geometry →
        Bessel radial basis × polynomial envelope → spherical harmonics → radial MLP → tensor-product
        convolution with scatter → linear → self-connection → gate, printing shapes and irreps at each
        step, then the readout. At the end our hand-assembled features must equal
        `model.node_features` exactly, and rotate like their irreps say.

        **What it does not cover.** Gradients, forces and stress (notebook 04), training (05), the
        neighbour list algorithm (`nequip_np/data/neighborlist.py`), and where the paths and
        normalisation constants come from (notebook 02 and `nequip_np/model/plan.py`).
        '''),
        ("code", setup(r'''
        NUM_FEATURES = [4, 3, 2] if SMOKE else [16, 8, 4]   # channels for l = 0, 1, 2
        N_R = 60 if SMOKE else 400                          # points on the radial-basis plot
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 0. A model and a molecule

        A three-layer model with $l_{\max} = 2$ and parity, for H, C, O. Parameters are drawn from
        nequip's initial distributions (a trained model would load them: `nequip_np.load_model`).
        The molecule is ethanol from ASE's built-in G2 set (no download).
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 1. Edge geometry

        The graph holds directed edges $e = (i, j)$ for every pair closer than $r_{\max}$:
        `edge_index[0]` is the centre $i$ that *receives* the message, `edge_index[1]` the neighbour
        $j$, and $\vec r_e = \vec r_j - \vec r_i$ (+ a lattice shift in periodic cells).
        '''),
        ("code", r'''
        atoms = molecule("CH3CH2OH")
        graph = graph_from_atoms(atoms, c.type_names, c.r_max)
        types, (dst, src) = graph.atom_types, graph.edge_index
        edge_vec = graph.edge_vectors()
        lengths = np.linalg.norm(edge_vec, axis=1)
        print(graph)
        print("atom types:", types, " (", atoms.get_chemical_symbols(), ")")
        print(f"edge_vec {edge_vec.shape}; lengths {lengths.min():.2f} … {lengths.max():.2f} Å;",
              f"mean neighbours {graph.n_edges / graph.n_atoms:.1f}")
        '''),
        ("md", r'''
        ## 2. Radial basis: Bessel functions × polynomial envelope

        $$b_n(r) = \frac{2\pi}{r_{\max}^2}\,\frac{\sin(\pi w_n r/r_{\max})}{\pi r/r_{\max}}\; u(r/r_{\max}),
          \qquad w_n = n,$$

        with the envelope $u(x) = 1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}$
        that takes the basis to zero at $r_{\max}$ with two vanishing derivatives — this is what
        makes energies and forces smooth when atoms cross the cutoff.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 3. Spherical harmonics of the edge directions

        $Y_e = Y(\hat r_e)$ for $l \le l_{\max}$: $(l_{\max}+1)^2 = 9$ numbers per edge, irreps
        `1x0e + 1x1o + 1x2e` (notebook 01).
        '''),
        ("code", r'''
        from nequip_np.kernels.spherical_harmonics import reference as sh_op

        Y, _ = sh_op.forward(edge_vec, c.l_max)
        print("Y:", Y.shape, " irreps", plan.irreps_sh, " |Y^1|² of edge 0 =", (Y[0, 1:4] ** 2).sum().round(12))
        '''),
        ("md", r'''
        ## 4. Node features start as a species embedding

        $h^0_i = A[t_i]$: a learned vector of `type_embed_num_features` scalars per species. The same
        vectors serve as node *attributes* $a_i$ in the self-connection.
        '''),
        ("code", r'''
        attr = params["type_embed"]                       # (num_types, T_f)
        h = attr[types]
        print("h⁰:", h.shape, " irreps", plan.layers[0].irreps_in)
        '''),
        ("md", r'''
        ## 5. The interaction layer

        For each layer (paper: Batzner et al. 2022, eqs. 3–6; `nequip_np/model/nequip.py`):

        1. self-connection $s = \mathrm{FCTP}(h, a)$ (layers ≥ 1): a linear map of $h$ whose weights
           depend on the species;
        2. $y = \mathrm{Linear}_1(h) / \sqrt{\bar n}$ — mixes copies of equal irreps; divided by the
           square root of the average number of neighbours;
        3. radial MLP $w_e = \mathrm{MLP}(b_e)$ — one weight per tensor-product path channel, per
           edge; layer $k$ multiplies its input by $\alpha_k = g_k/\sqrt{d_k}$ ($g_0 = 1$, then
           $\sqrt2$ after a SiLU);
        4. convolution $M_i = \sum_{e: i(e)=i} \mathrm{TP}(y_{j(e)}, Y_e; w_e)$ — the uvu products of
           notebook 02, summed into the receiving atom;
        5. $z = \mathrm{Linear}_2(M) + s$;
        6. gate: scalars go through SiLU/tanh; each $l > 0$ copy is multiplied by its own gate scalar.

        We run it with the reference kernels and print what flows where.
        '''),
        ("code", r'''
        from nequip_np.kernels.gate import reference as gate
        from nequip_np.kernels.linear import reference as linear
        from nequip_np.kernels.mlp import reference as mlp
        from nequip_np.kernels.self_connection import reference as self_connection
        from nequip_np.kernels.tp_conv import reference as tp_conv

        def alphas(dims, nonlinear=True):
            """nequip's MLP scaling: gain/√fan_in, gain 1 for the first layer and √2 after a SiLU."""
            return [(1.0 if k == 0 or not nonlinear else np.sqrt(2.0)) / np.sqrt(d) for k, d in enumerate(dims[:-1])]

        neighbor_norm = buffers["neighbor_norm"][types][:, None]      # 1/√(avg_num_neighbors)
        ours = [h]
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
            h, _ = gate.forward(z, layer.gate)
            print(f"  h'     {str(h.shape):>9}  {layer.gate.irreps_out}   (gate: {len(layer.gate.gate_cols)} gate scalars used up)")
            ours.append(h)
        '''),
        ("md", r'''
        Our features must be *identical* to the model's (same kernels, same order of operations):
        '''),
        ("code", r'''
        theirs = model.node_features(graph)
        for k, (a, b) in enumerate(zip(ours, theirs)):
            print(f"after {'embedding' if k == 0 else f'layer {k - 1}'}: shape {a.shape}, max |ours − model| = {np.abs(a - b).max()}")
        '''),
        ("md", r'''
        ## 6. Readout and per-species scale/shift

        The last layer keeps only scalars; a small MLP maps them to $\tilde E_i$, then
        $E_i = \mathrm{shift}[t_i] + \mathrm{scale}[t_i]\,\tilde E_i$ (in float64), and $E = \sum_i E_i$.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 7. The features are equivariant

        Rotate (and invert) the molecule: every hidden feature block must transform with its Wigner
        matrix, $h(Qx) = D(Q)\,h(x)$, and the energy must not change. `irreps_D` builds the
        block-diagonal matrix for a whole `Irreps`.
        '''),
        ("code", r'''
        from nequip_np.so3 import irreps_D, random_rotation

        Q = -random_rotation(rng)                                     # an improper rotation
        rotated = atoms.copy(); rotated.positions = atoms.positions @ Q.T
        feats_rot = model.node_features(graph_from_atoms(rotated, c.type_names, c.r_max))
        for layer in plan.layers:
            D = irreps_D(layer.gate.irreps_out, Q)
            err = np.abs(feats_rot[layer.index + 1] - theirs[layer.index + 1] @ D.T).max()
            print(f"layer {layer.index}: {layer.gate.irreps_out}: max |h(Qx) − D(Q) h(x)| = {err:.1e}")
        e_rot = model.energy(graph_from_atoms(rotated, c.type_names, c.r_max))[0]
        print(f"energy change under Q: {e_rot - out['total_energy'][0]:.1e} eV")
        '''),
        ("md", r'''
        Where does the information sit? Norm of each irrep block per atom after layer 0: the scalars
        carry the species, the $l = 1, 2$ blocks the local geometry (zero for an atom in a perfectly
        symmetric environment).
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        **Try it.** (1) Set `parity=False` and see which irreps disappear. (2) Move one hydrogen beyond
        $r_{\max}$ of every other atom and check that its features equal its species embedding passed
        through the layers with no messages. (3) Replace the envelope exponent `polynomial_cutoff_p`
        and look at the basis near $r_{\max}$.
        '''),
    ]


# ==================================================================================================
# 04 · forces and stress by hand-written backpropagation
# ==================================================================================================
@notebook("04_forces_and_stress_by_backprop")
def nb04():
    return [
        ("md", r'''
        # 04 · Forces and stress by hand-written backpropagation

        **What this covers.** Why one reverse pass gives all forces and the stress: the energy depends
        on positions only through the edge vectors, so the reverse pass needs to deliver
        $g_e = \partial E/\partial \vec r_e$, and forces and stress are one scatter and one outer
        product away. Every operation's hand-written `backward` is checked against central finite
        differences; then `model.compute`'s forces are compared with finite differences of the
        energy and its stress with finite strains, including the error-versus-step "V" that tells
        you which step to trust.

        **What it does not cover.** The parameter gradients of a force loss (a mixed second derivative:
        notebook 05); the backward formulas' derivations (each kernel's docstring in
        `nequip_np/kernels/*/reference.py`); fast kernels.
        '''),
        ("code", setup(r'''
        STEPS = np.logspace(-1, -9, 5 if SMOKE else 17)   # finite-difference steps (Å, or strain)
        N_COMPONENTS = 6 if SMOKE else None                # force components checked (None: all)
        NUM_FEATURES = [4, 3, 2] if SMOKE else [8, 4, 2]
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. The chain rule, once

        The model sees positions only through $\vec r_e = \vec R_{j(e)} - \vec R_{i(e)} + S_e\,\mathrm{cell}$.
        With $g_e = \partial E/\partial\vec r_e$ from the reverse pass:

        $$\vec F_k = -\frac{\partial E}{\partial \vec R_k} = \sum_{e:\,i(e)=k} g_e \;-\; \sum_{e:\,j(e)=k} g_e ,$$

        so $\sum_k \vec F_k = 0$ exactly (each $g_e$ enters twice with opposite signs). Under a
        homogeneous strain every edge vector (row) becomes $\vec r_e(\mathbb 1+\varepsilon)$, hence

        $$\frac{\partial E}{\partial\varepsilon_{ab}} = \sum_e r_{e,a}\,g_{e,b}\ \text{(symmetrised)},\qquad
          \sigma = \frac1V\frac{\partial E}{\partial\varepsilon}\quad\text{(ASE sign: positive = tensile)}.$$

        The reverse pass itself goes through the operations of notebook 03 backwards. Each one
        receives the adjoint of its output $\bar{o} = \partial E/\partial o$ and returns the adjoints
        of its inputs:

        | operation | forward | backward returns |
        |---|---|---|
        | readout MLP | $\tilde E = \mathrm{MLP}(h)$ | $\bar h$, $\bar W$ |
        | gate | $[\phi(s), \phi(g)v]$ | $\bar z$ |
        | linear | $y = Wx/\sqrt{\mathrm{fan}}$ | $\bar x$, $\bar W$ |
        | TP conv + scatter | $M_i = \sum_e w_e\,(y_{j}\otimes Y_e)$ | $\bar y$, $\bar Y$, $\bar w$ |
        | radial MLP | $w = \mathrm{MLP}(b)$ | $\bar b$, $\bar W$ |
        | self-connection | $s = \mathrm{FCTP}(h, a)$ | $\bar h$, $\bar a$, $\bar W$ |
        | spherical harmonics | $Y(\hat r)$ | $\bar r$ |
        | Bessel × envelope | $b(\lvert r\rvert)$ | $\bar r$ (and $\bar w_n$) |

        The two geometric branches both end in $\bar r_e$; their sum is $g_e$.
        '''),
        ("md", r'''
        ## 2. Every backward against finite differences

        The directional check: pick random output adjoint $\bar o$ and input directions $v_k$; then
        $\langle \bar o, (f(x+hv) - f(x-hv))/2h\rangle$ must equal $\sum_k\langle \bar x_k, v_k\rangle$ up
        to $O(h^2)$. One number per operation tests *all* its input gradients at once.
        '''),
        ("code", r'''
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
                                        lambda d, k: (sh_op.backward(d, k),), [vec]),
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
            "gate         (z)": (lambda z: gate.forward(z, layer.gate), lambda d, k: (gate.backward(d, k),),
                                 [R(n, layer.gate.irreps_in.dim)]),
        }
        for name, (f, b, inputs) in checks.items():
            print(f"{name:<26} relative error {directional_check(f, b, inputs):.1e}")
        '''),
        ("md", r'''
        All at $10^{-9}$–$10^{-11}$: the truncation error of a step $h = 10^{-6}$ plus round-off. A
        wrong sign, a missing factor or a forgotten term shows up as $O(1)$.

        ## 3. From $g_e$ to forces

        `model._forward` / `model._backward` are the model's two passes (what `compute` calls). The
        reverse pass is seeded with $\partial E/\partial E_i = 1$ for every atom and returns $g_e$;
        the scatter of section 1 makes the forces.
        '''),
        ("code", r'''
        atomic, cache = model._forward(graph, vec, model.params)
        g, _ = model._backward(np.ones_like(atomic), cache, graph, model.params)     # (E, 3) = ∂E/∂r_e
        F_hand = np.zeros((n, 3))
        np.add.at(F_hand, dst, g)          # +g on the centre i(e)
        np.add.at(F_hand, src, -g)         # −g on the neighbour j(e)
        out = model.compute(graph)
        print("g:", g.shape, "  max |F_hand − compute| =", np.abs(F_hand - out["forces"]).max(),
              "  |Σ F| =", f"{np.abs(out['forces'].sum(axis=0)).max():.1e}")
        '''),
        ("md", r'''
        ## 4. Forces against finite differences of the energy

        $F_{ka} \approx -\big(E(R + h e_{ka}) - E(R - h e_{ka})\big)/2h$. Central differences have
        truncation error $\propto h^2$; round-off in $E$ (here $|E| \approx 4\cdot10^3$ eV, because of
        the per-species shifts) contributes $\approx \epsilon|E|/h$. The total is a V on log–log axes;
        its bottom is the best a finite-difference check can do, and the analytic forces are the
        value the V converges to.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 5. Stress against finite strain

        A periodic, slightly sheared 4-atom cell. Strain the cell and the atoms together,
        $x \to x(\mathbb 1 + \varepsilon)$ with the symmetric $\varepsilon = \tfrac h2(e_ae_b^\top + e_be_a^\top)$,
        and compare $\big(E(+\varepsilon) - E(-\varepsilon)\big)/(2hV)$ with $\sigma_{ab}$.
        '''),
        ("code", r'''
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
        '''),
        ("code", r'''
        from nequip_np.viz import plot_error_vs_step

        fig = plot_error_vs_step(STEPS, {"forces vs −∂E/∂R (FD)": force_errors, "stress vs finite strain": stress_errors},
                                 title="finite differences against the analytic reverse pass")
        '''),
        ("md", r'''
        The left arm has slope 2 (truncation), the right arm slope −1 (round-off); both checks bottom
        out around $10^{-7}$–$10^{-8}$ at $h \approx 10^{-4}$–$10^{-5}$ Å. A reverse pass with a bug would put a
        *floor* under the V at the size of the bug — see notebook 09 for exactly that picture.

        **Try it.** (1) Drop the `np.add.at(F_hand, src, -g)` line and look at $\sum F$. (2) Set the
        species shifts to zero: the right arm of the V drops, roughly in proportion to $|E|$ (round-off
        scales with the size of the numbers subtracted). (3) Replace the symmetric strain by $\varepsilon = h\,e_ae_b^\top$ and explain
        the factor 2 you see off the diagonal.
        '''),
    ]


# ==================================================================================================
# 05 · training gradients
# ==================================================================================================
@notebook("05_training_gradients")
def nb05():
    return [
        ("md", r'''
        # 05 · Training gradients: the mixed second derivative, by complex step

        **What this covers.** Why fitting forces needs $\partial^2 E/\partial\theta\,\partial R$; the
        identity that turns it into the parameter gradient of *one* directional derivative of the
        energy; the complex-step trick that computes that directional derivative to machine precision
        inside the ordinary forward/backward kernels (what `nequip_np.train.loss.loss_and_grad` does);
        Adam written out and compared with `nequip_np.train.optim.Adam`; a tiny training loop whose
        loss goes down.

        **What it does not cover.** The full trainer (data splits, schedules, EMA, checkpoints:
        `docs/training.md`), stress training beyond one sentence, hyper-parameter advice. The
        derivation in full, including why the complex pass equals tangent-then-reverse operation by
        operation: `docs/derivations/training_gradients.md`.
        '''),
        ("code", setup(r'''
        N_FRAMES = 3 if SMOKE else 6            # random molecules in the training set
        N_STEPS = 5 if SMOKE else 25            # Adam steps
        STEPS = np.logspace(-1, -20, 8 if SMOKE else 20)   # step sizes for the derivative plots
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. The problem

        The loss (nequip's, per-atom energy + forces; stress adds a third term of the same kind) is

        $$L(\theta) = c_E\,\frac1F\sum_f\Big(\frac{E_f - E^*_f}{N_f}\Big)^2 + c_F\,\frac1{3N}\sum_{k}\lVert F_k - F^*_k\rVert^2,
          \qquad F_k = -\frac{\partial E}{\partial R_k}.$$

        Its gradient needs $\partial F/\partial\theta = -\partial^2 E/\partial\theta\,\partial R$ — a
        $P \times 3N$ matrix we never want to form. With $W_k = \partial L/\partial F_k$ (the scaled
        force residual) held fixed,

        $$\sum_k W_k\cdot\frac{\partial F_k}{\partial\theta}
          = \frac{\partial}{\partial\theta}\Big(\sum_k W_k\cdot F_k\Big)
          = -\frac{\partial}{\partial\theta}\,D_W E,\qquad
          D_W E = \frac{d}{dt}E(R + tW)\Big|_{t=0}.$$

        So we need the directional derivative of $E$ along the residual, and then its ordinary
        gradient with respect to $\theta$: forward mode, then reverse mode.
        '''),
        ("code", r'''
        from ase import Atoms
        from nequip_np import NequIPModel
        from nequip_np.data.graph import batch_graphs, graph_from_atoms
        from nequip_np.testing.faults import SmoothPair
        from nequip_np.train.loss import COMPLEX_STEP, LossCoefficients, loss_and_grad, loss_terms

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
        '''),
        ("md", r'''
        ## 2. The identity, numerically

        On one frame: the residual adjoints $a_f = \partial L/\partial E_f$ and $W = \partial L/\partial F$
        come from `loss_terms`. In edge variables the model sees the direction
        $\dot r_e = W_{i(e)} - W_{j(e)}$, and $T = \frac{d}{dt}E(\vec r + t\dot r) = \sum_k W_k\cdot F_k$.
        '''),
        ("code", r'''
        g = graphs[0]
        pred = model.compute(g)
        loss, comps, a, W, _ = loss_terms(g, pred, coeffs)
        vec, (dst, src) = g.edge_vectors(), g.edge_index
        tangent = W[dst] - W[src]

        def E_edges(v):                           # total energy as a function of the edge vectors
            return model._forward(g, v, model.params)[0].sum()

        T_ref = np.sum(W * pred["forces"])        # from the analytic reverse pass (notebook 04)
        h = 1e-5
        print(f"Σ W·F                      = {T_ref:.15f}")
        print(f"central difference, h=1e-5 = {(E_edges(vec + h * tangent) - E_edges(vec - h * tangent)) / (2 * h):.15f}")
        print(f"complex step, h=1e-20      = {np.imag(E_edges(vec + 1e-20j * tangent)) / 1e-20:.15f}")
        '''),
        ("md", r'''
        ## 3. The complex step

        For an analytic $f$, $f(x + ih) = f(x) + ih f'(x) - \tfrac{h^2}2 f''(x) + O(h^3)$, so
        $f'(x) = \mathrm{Im} f(x+ih)/h + O(h^2)$ — **no subtraction**, hence no cancellation: $h$ can be
        $10^{-20}$ and the result is exact to round-off. Every reference kernel is written with
        analytic operations only (no `abs`, comparisons on real parts; SiLU via `exp`; the smooth
        envelope), so the whole model runs in complex arithmetic unchanged. Error against $\sum W\cdot F$
        as a function of $h$:
        '''),
        ("code", r'''
        cs_err = [abs(np.imag(E_edges(vec + 1j * h * tangent)) / h - T_ref) / abs(T_ref) for h in STEPS]
        fd_err = [abs((E_edges(vec + h * tangent) - E_edges(vec - h * tangent)) / (2 * h) - T_ref) / abs(T_ref)
                  for h in STEPS]
        for h, e1, e2 in list(zip(STEPS, cs_err, fd_err))[::max(1, len(STEPS) // 6)]:
            print(f"h = {h:.0e}:  complex step {e1:.1e}   central difference {e2:.1e}")
        '''),
        ("md", r'''
        ## 4. Forward over reverse, in one pass

        Run the forward pass on $\vec r + ih\dot r$ and seed the reverse pass with $a_f - i/h$
        instead of 1. Every parameter adjoint is then
        $(a - i/h)\,\partial_\theta E(\vec r + ih\dot r) = (a - i/h)\big(\partial_\theta E + ih\,\partial_\theta T + O(h^2)\big)$,
        whose **real part** is $a\,\partial_\theta E + \partial_\theta T + O(h^2)$ — exactly
        $\nabla_\theta L$. One complex forward + reverse pass (≈ 3–4 real ones) instead of a
        hand-derived second-order pass for every operation. With $h = 10^{-20}$ the $O(h^2)$ term is
        $10^{-40}$ relative.
        '''),
        ("code", r'''
        atomic_c, cache_c = model._forward(g, vec + 1j * COMPLEX_STEP * tangent, model.params)
        _, grads_c = model._backward((a - 1j / COMPLEX_STEP)[g.batch], cache_c, g, model.params)
        _, _, grads, _ = loss_and_grad(model, g, coeffs)
        print("by hand vs loss_and_grad, max difference over all parameters:",
              max(np.abs(np.real(grads_c[k]) - grads[k]).max() for k in grads))
        '''),
        ("md", r'''
        And the gradient against central differences of the loss along a random parameter direction
        $v$ (every evaluation of $L$ needs the forces, i.e. a forward and a reverse pass):
        '''),
        ("code", r'''
        v = {k: rng.standard_normal(p.shape) for k, p in model.params.items()}
        analytic = sum(np.sum(grads[k] * v[k]) for k in v)

        def loss_at(t):
            return loss_and_grad(model, g, coeffs, params={k: model.params[k] + t * v[k] for k in v})[0]

        PARAM_STEPS = [h for h in STEPS if h >= 1e-9]
        param_err = [abs((loss_at(h) - loss_at(-h)) / (2 * h) - analytic) / abs(analytic) for h in PARAM_STEPS]
        print(f"∇L·v = {analytic:.12f}; best central difference agrees to {min(param_err):.1e}")
        '''),
        ("code", r'''
        from nequip_np.viz import plot_error_vs_step

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
        plot_error_vs_step(STEPS, {"complex step": cs_err, "central difference": fd_err}, ax=axes[0],
                           title=r"$T = \sum W\cdot F$ along the force residual")
        plot_error_vs_step(PARAM_STEPS, {"central difference of L": param_err}, ax=axes[1],
                           title=r"$\nabla_\theta L \cdot v$ vs loss_and_grad");
        '''),
        ("md", r'''
        Left: the complex step follows $h^2$ down to round-off and stays there for every smaller $h$;
        the central difference makes the V and becomes useless below $h \approx 10^{-13}$ (the two
        energies are identical: 100 % error). Right: the analytic parameter gradient is what the
        finite differences converge to, to the bottom of their V.

        ## 5. Adam, written out

        `nequip_np.train.optim.Adam` reproduces `torch.optim.Adam`'s arithmetic. The textbook version
        in five lines:
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 6. A tiny training loop

        Fit the model to the Morse labels for a few steps of full-batch Adam. Each step is one
        `loss_and_grad` (a real forward + reverse pass for the forces, then the complex pass for the
        gradient) and one `Adam.step`.
        '''),
        ("code", r'''
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
        '''),
        ("code", r'''
        from nequip_np.viz import parity_plot, plot_curves

        fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), constrained_layout=True)
        plot_curves(history, ax=axes[0], xlabel="Adam step", ylabel="loss")
        parity_plot(batch.forces, pred0["forces"], ax=axes[1], label="before", units="eV/Å")
        parity_plot(batch.forces, pred1["forces"], ax=axes[2], label="after", units="eV/Å")
        axes[1].set_title("forces, step 0"); axes[2].set_title(f"forces, step {N_STEPS}");
        '''),
        ("md", r'''
        A handful of steps on six molecules is not a potential — but every number that went into these
        updates was exact to round-off, which is what makes longer runs trustworthy.

        **Try it.** (1) Replace `COMPLEX_STEP` by `1e-6` in the by-hand pass of section 4 and compare
        with `loss_and_grad`. (2) Put `abs()` into an operation (e.g. `np.abs(r)` for the edge length)
        and watch the complex step break: `abs` is not analytic. (3) Train with forces only
        (`LossCoefficients(per_atom_energy=0, forces=1)`).
        '''),
    ]


# ==================================================================================================
# 06 · training on aspirin
# ==================================================================================================
@notebook("06_training_on_aspirin")
def nb06():
    return [
        ("md", r'''
        # 06 · Training a model on aspirin

        **What this covers.** Training a small NequIP model end to end with
        `nequip_np.train.trainer.Trainer` — the loop behind `nequip-np train config.yaml` — on the
        example data shipped in `examples/aspirin` (300 GFN2-xTB frames of aspirin at 500 K, no
        download): the configuration as a Python dict, the run folder it writes (`metrics.csv`,
        checkpoints, `model.npz`), learning curves, a parity plot on the held-out test frames (energy
        per atom and force components), and a small data-efficiency experiment: test force error
        against the number of training frames for $l_{\max} = 0, 1, 2$ on log–log axes.

        **What it does not cover.** A converged potential: every run here is a few minutes of CPU at
        most, with 8 features and 2 layers, so the errors are far above what NequIP reaches. The
        careful comparison — same weights, batches and schedule as official nequip, 2000 frames, a
        1000-frame test set, learning curves for both — is `docs/accuracy.md`. Also not here: what
        each training ingredient does (Adam, EMA, the loss gradient: notebook 05 and
        `docs/training.md`), and molecular dynamics with the trained model (notebook 07).
        '''),
        ("code", setup(r'''
        # main run: frames (train / validation / test) and epochs
        N_TRAIN, N_VAL, N_TEST, EPOCHS = (10, 5, 10, 1) if SMOKE else (100, 20, 60, 12)
        # data efficiency: training-set sizes, l_max values, optimiser steps per run (fixed budget)
        DE_SIZES = [5, 10] if SMOKE else [10, 30, 90]
        DE_LMAX = [0, 1, 2]
        DE_STEPS = 2 if SMOKE else 120
        BACKEND = "numpy"   # see below
        DATA = "../examples/aspirin/aspirin_xtb_300.extxyz"
        os.environ["NEQUIP_NP_NO_PROGRESS"] = "1"   # no progress bars in the saved outputs
        ''')),
        ("md", r'''
        ## 1. The data

        `read_frames` returns ASE `Atoms` with the labels attached (energies in eV, forces in eV/Å).
        All frames are the same molecule (C₉H₈O₄, 21 atoms) from one Langevin trajectory at 500 K,
        50 fs apart.
        '''),
        ("code", r'''
        from nequip_np.data.dataset import read_frames, split_indices

        frames = read_frames(DATA)
        energies = np.array([a.get_potential_energy() for a in frames])
        forces = np.concatenate([a.get_forces().ravel() for a in frames])
        print(f"{len(frames)} frames of {frames[0].get_chemical_formula()}; energy {energies.min():.2f} … "
              f"{energies.max():.2f} eV (std {energies.std():.3f} eV); force components: std {forces.std():.3f} eV/Å")
        '''),
        ("md", r'''
        ## 2. A configuration and one training run

        The dict has the same three sections as a YAML file for `nequip-np train` (see
        `examples/aspirin/train.yaml`); the model keywords are nequip's. Statistics marked `"auto"` are
        computed from the training split: the average number of neighbours, the per-type force RMS as
        energy scale and the mean energy per atom as shift (every frame has the same composition, so a
        least-squares fit of per-type energies would only redistribute the same total).

        **Backend.** The reference NumPy backend. For a 21-atom molecule in batches of five, the Numba
        kernels gain little (they shine on thousands of edges, notebook 08) and their first compilation
        of the training pass takes about a minute; `"numba"` gives the same numbers to round-off.
        '''),
        ("code", r'''
        import tempfile
        from pathlib import Path

        from nequip_np.train.trainer import Trainer

        workdir = Path(tempfile.mkdtemp(prefix="nequip_np_06_"))

        def make_config(data, n_train, n_val, n_test, l_max, epochs, split_seed=1):
            return {
                "run_name": "aspirin_notebook",
                "model": dict(type_names=["H", "C", "O"], r_max=4.0, num_layers=2, l_max=l_max, parity=True,
                              num_features=8, radial_mlp_depth=1, radial_mlp_width=16, num_bessels=8,
                              avg_num_neighbors="auto", per_type_energy_scales="auto",
                              per_type_energy_shifts="auto", seed=0),
                "data": dict(path=str(data), train=n_train, val=n_val, test=n_test, split_seed=split_seed),
                "training": dict(learning_rate=0.01, batch_size=5, max_epochs=epochs, ema_decay=0.999,
                                 scheduler=dict(factor=0.6, patience=5), early_stopping=None,
                                 loss_coeffs={"per_atom_energy": 1.0, "forces": 1.0}, seed=0, backend=BACKEND),
            }

        config = make_config(DATA, N_TRAIN, N_VAL, N_TEST, l_max=1, epochs=EPOCHS)
        trainer = Trainer(config, output_dir=workdir / "main", progress=False)
        print(f"train / val / test frames: {len(trainer.train_set)} / {len(trainer.val_set)} / {len(trainer.test_set)}")
        print("resolved statistics: avg_num_neighbors =", round(trainer.config.model.avg_num_neighbors, 3),
              "| energy scales =", {k: round(v, 3) for k, v in trainer.config.model.per_type_energy_scales.items()})
        print("parameters:", sum(p.size for p in trainer.model.params.values()))
        '''),
        ("code", r'''
        import time

        start = time.perf_counter()
        result = trainer.train()
        print(f"{result['epochs']} epochs in {time.perf_counter() - start:.0f} s")
        print("run folder:", sorted(p.name for p in (workdir / "main").iterdir()))
        test = result["test"]
        print(f"test: energy MAE {1e3 * test['per_atom_energy_mae']:.2f} meV/atom ({1e3 * test['energy_mae']:.0f} meV per frame), "
              f"force MAE {1e3 * test['forces_mae']:.0f} meV/Å")
        '''),
        ("md", r'''
        ## 3. Learning curves

        `metrics.csv` has one row per epoch. The training loss is the mean over the epoch's batches
        with the weights as they were being updated; the validation loss uses the EMA weights at the
        end of the epoch (what is saved). Both are $\mathrm{MSE}(E/N) + \mathrm{MSE}(F)$ with the
        coefficients normalised to sum to one, in eV² units.
        '''),
        ("code", r'''
        import csv

        with open(workdir / "main" / "metrics.csv") as fh:
            rows = list(csv.DictReader(fh))
        metrics = {k: np.array([float(r[k]) for r in rows]) for k in rows[0]}
        print("columns:", ", ".join(rows[0]))

        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
        epoch = metrics["epoch"] + 1
        axes[0].semilogy(epoch, metrics["train_loss"], "o-", ms=3, label="train (running weights)")
        axes[0].semilogy(epoch, metrics["val_loss"], "s-", ms=3, label="validation (EMA weights)")
        axes[0].set_xlabel("epoch"); axes[0].set_ylabel("loss"); axes[0].legend(fontsize=8); axes[0].grid(alpha=0.3)
        axes[1].semilogy(epoch, 1e3 * metrics["val_forces_mae"], "o-", ms=3, label="forces (meV/Å)")
        axes[1].semilogy(epoch, 1e3 * metrics["val_per_atom_energy_mae"], "s-", ms=3, label="energy (meV/atom)")
        axes[1].set_xlabel("epoch"); axes[1].set_ylabel("validation MAE"); axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
        print("learning rate per epoch (ReduceLROnPlateau):", np.unique(metrics["lr"])[::-1])
        '''),
        ("md", r'''
        ## 4. Parity on the test frames

        The final model (EMA weights) on the frames the run never trained or validated on. Energies are
        per atom and shown relative to the mean reference value, so that the spread is visible next
        to the ~−51 eV/atom offset (which the shift gets right by construction).
        '''),
        ("code", r'''
        from nequip_np.data.dataset import iterate_batches
        from nequip_np.viz import parity_plot

        ref_e, pred_e, ref_f, pred_f = [], [], [], []
        for batch in iterate_batches(trainer.test_set, 10):
            out = trainer.model.compute(batch, stress=False)
            ref_e.append(batch.energy / batch.num_atoms); pred_e.append(out["total_energy"] / batch.num_atoms)
            ref_f.append(batch.forces.ravel()); pred_f.append(out["forces"].ravel())
        ref_e, pred_e, ref_f, pred_f = map(np.concatenate, (ref_e, pred_e, ref_f, pred_f))
        offset = ref_e.mean()

        fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), constrained_layout=True)
        parity_plot(1e3 * (ref_e - offset), 1e3 * (pred_e - offset), ax=axes[0], label="E/N", units="meV/atom")
        parity_plot(ref_f, pred_f, ax=axes[1], label="F", units="eV/Å")
        axes[0].set_title(f"energy per atom − {offset:.3f} eV"); axes[1].set_title("force components");
        '''),
        ("md", r'''
        Forces are fitted much better, relative to their spread, than energies: each frame gives one
        energy but 63 force components, and the loss weights both equally. A longer run (the example
        config: 200 frames, 40 epochs) improves both.

        ## 5. Data efficiency: error against training-set size for $l_{\max}$ = 0, 1, 2

        NequIP's central claim is data efficiency: equivariant features with $l_{\max} \ge 1$ learn
        more from each frame than invariant ones ($l_{\max} = 0$). A small version of that experiment:

        * one fixed **test set** (the test frames of the run above) and nested **training sets**
          (prefixes of one shuffled pool made of the other frames);
        * the same number of optimiser steps for every run (a fixed compute budget: small sets are
          visited for more epochs), so the comparison is at equal cost, not at convergence;
        * otherwise the configuration above, with only `l_max` changed.

        These runs are tiny — a few dozen Adam steps each — so read the figure for its trends, not its
        numbers. `docs/accuracy.md` has a careful learning curve.
        '''),
        ("code", r'''
        from ase.io import write

        from nequip_np.data.dataset import GraphDataset

        idx_train, idx_val, idx_test = split_indices(len(frames), N_TRAIN, N_VAL, N_TEST, seed=1)  # the run's split
        pool_path = workdir / "pool.extxyz"
        write(pool_path, [frames[i] for i in np.concatenate([idx_train, idx_val])])
        pool_size = len(idx_train) + len(idx_val)
        test_set = GraphDataset([frames[i] for i in idx_test], ["H", "C", "O"], 4.0)
        assert max(DE_SIZES) + 5 <= pool_size, "the pool is too small for the largest training set"

        de_mae = {l: [] for l in DE_LMAX}
        start = time.perf_counter()
        for l_max in DE_LMAX:
            for n in DE_SIZES:
                epochs = max(1, int(np.ceil(DE_STEPS / np.ceil(n / 5))))
                cfg = make_config(pool_path, n, 5, 0, l_max=l_max, epochs=epochs, split_seed=0)
                run = Trainer(cfg, output_dir=workdir / f"de_l{l_max}_n{n}", progress=False)
                run.train()
                de_mae[l_max].append(run.evaluate(test_set)["forces_mae"])
                print(f"l_max {l_max}, {n:4d} frames, {epochs:3d} epochs: test force MAE "
                      f"{1e3 * de_mae[l_max][-1]:.0f} meV/Å")
        print(f"{len(DE_LMAX) * len(DE_SIZES)} runs in {time.perf_counter() - start:.0f} s")
        '''),
        ("code", r'''
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        for l_max, mae in de_mae.items():
            ax.loglog(DE_SIZES, 1e3 * np.array(mae), "o-", label=f"$l_{{\\max}} = {l_max}$")
        ax.set_xlabel("training frames"); ax.set_ylabel("test force MAE (meV/Å)")
        ax.set_title(f"{DE_STEPS} Adam steps per run, {len(test_set)} test frames", fontsize=10)
        ax.legend(); ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        '''),
        ("md", r'''
        What runs this short show, honestly: more frames help up to a few dozen, then the curves
        flatten — with `DE_STEPS` Adam steps the error is set by the optimisation budget, not by the
        data (the largest sets are seen only a few times) — and $l_{\max}$ makes no consistent
        difference; in the committed run the invariant model is even slightly ahead. One seed each, so
        differences of a few per cent mean nothing. Equivariant features pay off once models are
        trained long enough to use them: the converged learning curves in `docs/accuracy.md` are the
        ones to quote.

        **Try it.** (1) Set `BACKEND = "numba"` and compare the time per epoch once compiled.
        (2) Train with forces only (`loss_coeffs={"forces": 1.0}`) and look at the energy parity plot.
        (3) Give every data-efficiency run the same number of *epochs* instead of steps and see how the
        picture changes. (4) Load `workdir / "main" / "model.npz"` with `nequip_np.load_model` and use it
        in notebook 07.
        '''),
    ]


# ==================================================================================================
# 07 · molecular dynamics with ASE
# ==================================================================================================
@notebook("07_molecular_dynamics")
def nb07():
    return [
        ("md", r'''
        # 07 · Molecular dynamics with ASE

        **What this covers.** Running MD with a NequIP model through ASE: a small aspirin model trained
        here in a minute, wrapped in `NequIPCalculator` with a neighbour-list skin; microcanonical
        dynamics (velocity Verlet) and the energy-conservation check (potential, kinetic and total
        energy against time, fluctuation of the total against the time step); Langevin dynamics at
        300 K (temperature against time, with the target); and the distributions of C–H, C–C and C–O
        distances over the trajectory, next to those of the GFN2-xTB trajectory (500 K) that the
        training frames came from.

        **What it does not cover.** A production potential (the model is tiny and briefly trained:
        notebook 06, `docs/accuracy.md`), long or large simulations, periodic systems and pressure
        control, the command-line driver `nequip-np md` and LAMMPS (`docs/md.md`), and why forces from
        a smooth energy conserve energy in the first place (notebooks 04 and 09).
        '''),
        ("code", setup(r'''
        N_TRAIN, EPOCHS = (10, 1) if SMOKE else (150, 16)  # quick training of the model used below (~1 min)
        TIMESTEP_FS = 0.5
        NVE_STEPS = 20 if SMOKE else 2000                   # velocity Verlet steps (1 ps at full size)
        DT_SWEEP = [0.25, 0.5, 1.0] if not SMOKE else [0.5, 1.0]
        SWEEP_STEPS = 10 if SMOKE else 400                   # steps per time step in the drift sweep
        NVT_STEPS = 20 if SMOKE else 4000                   # Langevin steps (2 ps at full size)
        TEMPERATURE_K = 300.0                               # see section 1 for why not 500 K
        BACKEND = "numpy"
        DATA = "../examples/aspirin/aspirin_xtb_300.extxyz"
        os.environ["NEQUIP_NP_NO_PROGRESS"] = "1"
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. A model to run

        A quick `Trainer` run on the shipped aspirin frames (the configuration of notebook 06, more
        frames and epochs). Any model file works the same way: `NequIPCalculator("model.npz")`, or one
        exported from official nequip.

        A model this small and briefly trained has a potential-energy surface that is right near the
        training data and arbitrary far from it. At 300 K its dynamics stays near the data for the
        picoseconds run here; at the 500 K of the training trajectory it found, in our trials, a
        region where two atoms collapse onto each other within a picosecond (an unphysical "hole" — the
        blow-up guard of `nequip_np.md.run_md` stops such runs). More data, longer training, or a
        short-range repulsion (`pair_potential: {type: ZBL}`) are the remedies.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 2. The calculator and its neighbour list

        `NequIPCalculator` is an ordinary ASE calculator (energy, per-atom energies, forces; stress for
        periodic cells). With `skin > 0` it builds the neighbour list at $r_{\max}$ + skin and reuses
        it until some atom has moved by skin/2, filtering the stored pairs to $r_{\max}$ on each call,
        so the edges — and the results — are identical to a fresh list on every step.
        '''),
        ("code", r'''
        from ase.io import read

        from nequip_np import NequIPCalculator

        calc = NequIPCalculator(model_path, skin=0.5)
        print(calc)
        atoms = read(DATA, index=0)
        atoms.calc = calc
        print(f"E = {atoms.get_potential_energy():.4f} eV, max |F| = {np.abs(atoms.get_forces()).max():.3f} eV/Å "
              f"(xTB: {np.abs(read(DATA, index=0).get_forces()).max():.3f} eV/Å)")
        '''),
        ("md", r'''
        ## 3. NVE: velocity Verlet and energy conservation

        Start from a training-set geometry with Maxwell–Boltzmann velocities at 300 K (net momentum and
        rotation removed), and integrate Newton's equations with ASE's `VelocityVerlet`. An observer
        records the energies at every step. With exact forces of a smooth energy, the total energy
        fluctuates by $O(\Delta t^2)$ and does not drift.
        '''),
        ("code", r'''
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
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        Potential and kinetic energy exchange hundreds of meV while the total stays within a few meV.
        The fluctuation of the total must scale with $\Delta t^2$ for a correct integrator with
        conservative forces: doubling the step should quadruple it. (A force that is not the exact
        gradient of the energy shows up as a drift that does not vanish as $\Delta t \to 0$.)
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        ## 4. NVT: Langevin at 300 K

        ASE's `Langevin` adds friction and noise to every momentum; the instantaneous kinetic temperature
        $T = 2E_{kin}/(3Nk_B)$ fluctuates around the target. For $N = 21$ atoms the relative fluctuation
        in equilibrium is $\sqrt{2/(3N)} \approx 18\,\%$ — large, as it should be for a small molecule.
        We start from zero velocities, so the first few hundred femtoseconds show the heating by the
        thermostat (friction 0.01/fs, i.e. a 100 fs relaxation time).
        '''),
        ("code", r'''
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
        print(f"smallest interatomic distance along the run: {d_min:.2f} Å (the molecule stayed intact if ≳ 0.7 Å)")
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        A burst in the running mean (the committed run has one) is potential energy released as the
        molecule moves into a lower basin of the model's surface — a real conformational change or an
        artefact of the model — which the thermostat drains within its ~100 fs relaxation time.
        '''),
        ("md", r'''
        ## 5. Distance distributions: model MD against the reference trajectory

        For a single molecule the "radial distribution function" is the histogram of interatomic
        distances per pair of elements, over the trajectory. The reference is the 300 shipped frames
        from GFN2-xTB MD at 500 K; the model's comes from the second half of our 300 K Langevin run
        (after heating). Peaks should sit at the same distances; the lower temperature narrows bond
        peaks by only $\sqrt{300/500} \approx 0.8$ (a C–H bond's thermal spread is ~0.03–0.04 Å), which
        bins of 0.05 Å barely resolve.
        Bonded peaks (C–H ≈ 1.1 Å, C–C ≈ 1.4–1.5 Å, C–O ≈ 1.2–1.4 Å) probe the stiff bonds; the
        structure beyond 2 Å the molecule's shape and torsions.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        Even this small, briefly trained model keeps the molecule intact and puts the bonded peaks in
        the right places; widths and the long-distance structure differ more — the reference has 300
        frames spread over 15 ps, our run a few ps from one starting point, and the model is far from
        converged. Distance distributions like these (and energy conservation) are cheap first checks
        of a potential before any production run.

        The same runs from the shell, with a trajectory file, a log and a blow-up guard:
        `nequip-np md model.npz start.xyz --ensemble langevin --temperature 300 --steps 4000 --trajectory md.traj`
        (`nequip_np.md.run_md` from Python; `docs/md.md`).

        **Try it.** (1) Set `skin=0` and compare the time per step and `calc.nl_builds` (the results
        are identical). (2) Run NVE at Δt = 2 fs and watch the total energy. (3) Set `TEMPERATURE_K`
        to 500 and track the smallest interatomic distance (`atoms.get_all_distances()`) during the
        run; then train longer, or add `pair_potential={"type": "ZBL"}` to the model, and try again.
        '''),
    ]


# ==================================================================================================
# 08 · kernels and backends
# ==================================================================================================
@notebook("08_kernels")
def nb08():
    return [
        ("md", r'''
        # 08 · Kernels and backends: reference, Numba, CUDA

        **What this covers.** The three implementations of every operation behind
        `NequIPModel(backend=...)`: `"numpy"` (the reference: `kernels/<op>/reference.py`, the
        specification), `"numba"` (`cpu.py`, parallel CPU kernels) and `"cuda"` (`cuda.py`, run here in
        Numba's CUDA *simulator* unless a GPU is present). We check that they agree (maximum
        differences of energies and forces), time one energy + forces call per backend on growing
        systems, count the model's flops from its plan to turn times into GFLOP/s, compare that with the
        practical peak of this machine (a large NumPy matrix product), and verify that results are
        bitwise identical from run to run and for 1 or 2 threads.

        **What it does not cover.** The kernel designs (`docs/kernels.md`, `docs/cuda.md`), official
        nequip timings and memory (`docs/benchmarks.md`, `benchmarks/bench_cpu.py`), GPU performance
        (the simulator runs each GPU thread as a Python thread: it checks correctness, never speed),
        the training pass (complex step: notebook 05), and float32.
        '''),
        ("code", setup(r'''
        # the OpenMP threading layer degrades badly on a loaded machine (docs/kernels.md); must be set
        # before the first parallel Numba kernel runs
        os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")
        CELLS = [1, 2] if SMOKE else [1, 2, 3, 4, 5]   # fcc Cu cubic cells per side: 4 · n³ atoms
        REPEATS = 2 if SMOKE else 5                     # timed calls per backend and size (median)
        MATMUL_N = 256 if SMOKE else 2048                # matrix size of the BLAS peak measurement
        DETERMINISM_RUNS = 2 if SMOKE else 5
        SIM_FULL = not SMOKE                             # CUDA simulator: small model on ethanol (~30 s) or tiny on H2O
        ''')),
        ("md", r'''
        ## 1. What is available here

        The registry maps a backend to one module file per operation. An unavailable backend raises
        with a hint; there is never a silent fallback.
        '''),
        ("code", r'''
        import time

        import numba

        from nequip_np.kernels._cuda_util import cuda_unavailable_reason, simulator_enabled
        from nequip_np.kernels.registry import BACKEND_FILES, OPERATIONS, REFERENCE_ONLY

        print("operations:", ", ".join(OPERATIONS), f"(reference only: {', '.join(sorted(REFERENCE_ONLY))})")
        print("backend -> file:", BACKEND_FILES)
        print(f"numba {numba.__version__}, {numba.get_num_threads()} threads")
        GPU = not simulator_enabled() and cuda_unavailable_reason() is None
        print("CUDA in this kernel:", "simulator (NUMBA_ENABLE_CUDASIM=1)" if simulator_enabled()
              else "a GPU" if GPU else f"no ({cuda_unavailable_reason()})")
        '''),
        ("md", r'''
        ## 2. Agreement

        One model ($l_{\max} = 2$, parity, 3 layers, 16 channels) and one structure, evaluated by each
        backend. The kernels change loop order and reductions, not the maths, so differences are
        round-off: a few ulps of the largest value.
        '''),
        ("code", r'''
        from ase.build import bulk, molecule

        from nequip_np import NequIPModel
        from nequip_np.data.graph import graph_from_atoms

        def cu_model(backend):
            return NequIPModel(type_names=["Cu"], r_max=4.0, num_layers=3, l_max=2, parity=True, num_features=16,
                               radial_mlp_depth=1, radial_mlp_width=32, num_bessels=8, avg_num_neighbors=18.0,
                               per_type_energy_shifts={"Cu": -3.5}, seed=0, backend=backend)

        def cu_cell(n):
            a = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((n, n, n))
            a.rattle(0.05, seed=1)
            return a

        models = {b: cu_model(b) for b in ("numpy", "numba") + (("cuda",) if GPU else ())}
        graph = graph_from_atoms(cu_cell(2), ["Cu"], 4.0)
        start = time.perf_counter()
        outs = {b: m.compute(graph) for b, m in models.items()}
        print(f"{graph.n_atoms} atoms, {graph.n_edges} edges (the first calls include Numba's compilation or "
              f"cache load: {time.perf_counter() - start:.1f} s)")
        for b in list(models)[1:]:
            for key in ("total_energy", "forces", "stress"):
                ref, got = outs["numpy"][key], outs[b][key]
                print(f"  {key:<12} max |{b} − numpy| = {np.abs(got - ref).max():.2e}  (max |value| {np.abs(ref).max():.3g})")
        '''),
        ("md", r'''
        **The CUDA kernels.** Numba decides at `import numba.cuda` whether to use a GPU or its
        simulator (`NUMBA_ENABLE_CUDASIM=1`), so the simulator cannot be switched on in a process that
        has already imported it — this one has. We save the model, run the CUDA backend in a fresh
        Python process with the variable set (on a GPU machine: in this process), and compare with the
        reference here. The simulator is slow (every GPU thread is a Python thread), hence a smaller
        model and molecule.
        '''),
        ("code", r'''
        import json
        import subprocess
        import sys
        import tempfile
        import textwrap
        from pathlib import Path

        from ase.io import write

        small = NequIPModel(type_names=["H", "C", "O"], r_max=3.5, num_layers=2 if SIM_FULL else 1,
                            l_max=2 if SIM_FULL else 1, num_features=[4, 3, 2] if SIM_FULL else [2, 2],
                            radial_mlp_width=8, num_bessels=6, avg_num_neighbors=5.0, seed=0)
        mol = molecule("CH3CH2OH" if SIM_FULL else "H2O")
        tmp = Path(tempfile.mkdtemp(prefix="nequip_np_08_"))
        small.save(tmp / "small.npz"); write(tmp / "mol.xyz", mol)
        CUDA_SCRIPT = f"""
        import json, sys, time
        from ase.io import read
        from nequip_np import load_model
        from nequip_np.data.graph import graph_from_atoms
        t = time.perf_counter()
        model = load_model({str(tmp / 'small.npz')!r}, backend="cuda")
        g = graph_from_atoms(read({str(tmp / 'mol.xyz')!r}), model.config.type_names, model.config.r_max)
        out = model.compute(g, stress=False)
        print(json.dumps(dict(energy=float(out["total_energy"][0]), forces=out["forces"].tolist(),
                              seconds=time.perf_counter() - t)))
        """

        def run_cuda():
            if simulator_enabled() or GPU:     # this process can run the CUDA backend itself
                t = time.perf_counter()
                out = NequIPModel(backend="cuda", **small.config.to_dict())
                out.load_params(small.params)
                res = out.compute(graph_from_atoms(mol, small.config.type_names, small.config.r_max), stress=False)
                return dict(energy=float(res["total_energy"][0]), forces=res["forces"], seconds=time.perf_counter() - t)
            env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
            try:
                proc = subprocess.run([sys.executable, "-c", textwrap.dedent(CUDA_SCRIPT)], env=env,
                                      capture_output=True, text=True, timeout=300)
            except subprocess.TimeoutExpired:
                print("CUDA simulator: no result within 300 s; skipped"); return None
            if proc.returncode != 0:
                print("CUDA simulator could not run; skipped. Last lines:\n" + proc.stderr.strip()[-600:]); return None
            return json.loads(proc.stdout.strip().splitlines()[-1])

        cuda_out = run_cuda()
        ref_small = small.compute(graph_from_atoms(mol, small.config.type_names, small.config.r_max), stress=False)
        if cuda_out is not None:
            print(f"CUDA backend ({'GPU' if GPU else 'simulator'}, {len(mol)} atoms, {cuda_out['seconds']:.1f} s):")
            print(f"  energy  |cuda − numpy| = {abs(cuda_out['energy'] - ref_small['total_energy'][0]):.2e}")
            print(f"  forces  max |cuda − numpy| = {np.abs(np.array(cuda_out['forces']) - ref_small['forces']).max():.2e}"
                  f"  (max |F| {np.abs(ref_small['forces']).max():.3g})")
        '''),
        ("md", r'''
        ## 3. Timing on growing systems

        Rattled fcc copper, $4n^3$ atoms, about 18 neighbours per atom within 4 Å. One call is a forward
        pass plus the reverse pass for forces and stress. Each point is the median of `REPEATS` calls,
        after one untimed warm-up call. The machine is shared, so read ratios and slopes, not
        milliseconds.
        '''),
        ("code", r'''
        import statistics

        sizes, times = [], {b: [] for b in models}
        graphs = {}
        for n in CELLS:
            g = graph_from_atoms(cu_cell(n), ["Cu"], 4.0)
            graphs[n] = g
            sizes.append((g.n_atoms, g.n_edges))
            for b, m in models.items():
                m.compute(g)   # warm-up
                ts = []
                for _ in range(REPEATS):
                    t = time.perf_counter(); m.compute(g); ts.append(time.perf_counter() - t)
                times[b].append(statistics.median(ts))
            print(f"{g.n_atoms:5d} atoms {g.n_edges:6d} edges: " +
                  "  ".join(f"{b} {1e3 * times[b][-1]:8.1f} ms" for b in models) +
                  f"  speed-up {times['numpy'][-1] / times['numba'][-1]:.1f}×")
        '''),
        ("code", r'''
        n_atoms = np.array([s[0] for s in sizes])
        fig, ax = plt.subplots(figsize=(5.2, 3.8))
        for b, ts in times.items():
            ax.loglog(n_atoms, 1e3 * np.array(ts), "o-", label=b)
        ax.loglog(n_atoms, 1e3 * times["numba"][-1] * n_atoms / n_atoms[-1], "k:", lw=0.8, label=r"$\propto N$")
        ax.set_xlabel("atoms"); ax.set_ylabel("ms per energy + forces call"); ax.legend(); ax.grid(alpha=0.3, which="both")
        ax.set_title(f"Cu, l_max 2, 16 channels, {numba.get_num_threads()} threads", fontsize=10)
        fig.tight_layout()
        '''),
        ("md", r'''
        Small systems are dominated by per-call overhead (Python, NumPy dispatch, kernel launches), so
        both curves flatten to the left; at large sizes the cost is linear in the number of edges.

        ## 4. Flops from the plan, and GFLOP/s

        The plan (`model.plan`) lists every layer's radial MLP widths, tensor-product paths and linear
        paths, so the multiply-adds of a forward pass follow from the sizes alone (the model of
        `benchmarks/bench_cpu.py`):

        $$\mathrm{MAC} = \sum_{\rm layers}\Big[E\sum_k r_k r_{k+1}
            + E\sum_{p\in\rm TP}\big(\mathrm{nnz}(C_p) + \mathrm{mul}_p d_{1p} d_{3p} + \mathrm{mul}_p d_{3p}\big)
            + N\!\!\sum_{p\in\rm lin, sc}\!\!\mathrm{mul}_{\rm in}\mathrm{mul}_{\rm out} d_p\Big]
            + N\sum_k o_k o_{k+1},$$

        ($r$: radial MLP widths, $o$: readout widths) and an energy + forces call is counted as
        $3 \times$ the forward pass (the reverse pass costs about two forwards), 2 flops per MAC.
        '''),
        ("code", r'''
        from nequip_np.model.plan import blocks

        def flop_count(model, n_atoms, n_edges):
            macs = dict(radial_mlp=0, tensor_product=0, linear=0, self_connection=0, readout=0)
            for layer in model.plan.layers:
                macs["radial_mlp"] += n_edges * sum(a * b for a, b in zip(layer.radial_dims[:-1], layer.radial_dims[1:]))
                conv = layer.conv
                b_in, b_mid = blocks(conv.irreps_in), blocks(conv.irreps_mid)
                for p in conv.paths:
                    mul, d1, d3 = b_in[p.i_in].mul, b_in[p.i_in].dim, b_mid[p.i_mid].dim
                    macs["tensor_product"] += n_edges * (np.count_nonzero(p.cg) + mul * d1 * d3 + mul * d3)
                for lin in (layer.linear_1, layer.linear_2):
                    macs["linear"] += n_atoms * sum(lin.bin[i].mul * lin.bout[o].mul * lin.bin[i].dim for i, o, _ in lin.paths)
                if layer.self_connection is not None:
                    sc = layer.self_connection
                    bi, bo = blocks(sc.irreps_in), blocks(sc.irreps_out)
                    macs["self_connection"] += n_atoms * sum(bi[i].mul * bo[o].mul * bi[i].dim for i, o, _ in sc.paths)
            d = model.plan.readout_dims
            macs["readout"] = n_atoms * sum(a * b for a, b in zip(d[:-1], d[1:]))
            return macs, 6 * sum(macs.values())

        macs, flops = flop_count(models["numpy"], *sizes[-1])
        print(f"largest system ({sizes[-1][0]} atoms, {sizes[-1][1]} edges): {flops / 1e9:.2f} GFLOP per call")
        for k, v in macs.items():
            print(f"  {k:<16} {100 * v / sum(macs.values()):5.1f} % of the MACs")
        '''),
        ("md", r'''
        **A practical peak.** The theoretical peak needs the clock, vector width and FMA units of the
        CPU; a large matrix product through NumPy's BLAS on all threads is what this machine really
        delivers for dense float64 work, and a fair ceiling for any kernel here.
        '''),
        ("code", r'''
        A, B = np.random.default_rng(0).standard_normal((2, MATMUL_N, MATMUL_N))
        A @ B
        mm = []
        for _ in range(3):
            t = time.perf_counter(); A @ B; mm.append(time.perf_counter() - t)
        peak = 2 * MATMUL_N**3 / min(mm) / 1e9
        print(f"{MATMUL_N}×{MATMUL_N} float64 matmul: {peak:.1f} GFLOP/s (best of 3) — the practical peak")

        gflops = {b: [flop_count(models['numpy'], *s)[1] / t / 1e9 for s, t in zip(sizes, ts)] for b, ts in times.items()}
        for b, g in gflops.items():
            print(f"{b:>6}: {g[-1]:6.2f} GFLOP/s on the largest system = {100 * g[-1] / peak:5.1f} % of the matmul peak")

        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for b, g in gflops.items():
            ax.semilogx(n_atoms, g, "o-", label=b)
        ax.axhline(peak, color="k", ls="--", lw=1, label=f"BLAS matmul {peak:.0f} GFLOP/s")
        ax.set_yscale("log"); ax.set_xlabel("atoms"); ax.set_ylabel("GFLOP/s (flop model)")
        ax.legend(fontsize=8); ax.grid(alpha=0.3, which="both")
        fig.tight_layout()
        '''),
        ("md", r'''
        The model runs far below the matrix-product peak: its work is many small contractions
        ($d \le 5$, 16 channels) with gathers and scatters over edges, bound by memory traffic and loop
        overhead rather than arithmetic. Only the radial MLP and the linear layers are dense products
        (BLAS in both backends).

        ## 5. Determinism

        Every Numba kernel writes each output element from one thread, summing in a fixed edge order
        (no atomics, no race between threads), so repeated calls — and calls with a different number of
        threads — give the same bits. Bitwise determinism makes MD trajectories and training runs
        exactly reproducible and regressions visible to the last digit.
        '''),
        ("code", r'''
        import hashlib

        def fingerprint(out):
            h = hashlib.sha256()
            for key in ("total_energy", "forces", "stress"):
                h.update(np.ascontiguousarray(out[key]).tobytes())
            return h.hexdigest()[:16]

        g = graphs[CELLS[-1]]
        threads = numba.get_num_threads()
        prints = {}
        for b, m in models.items():
            prints[b] = [fingerprint(m.compute(g)) for _ in range(DETERMINISM_RUNS)]
        numba.set_num_threads(1)
        prints["numba, 1 thread"] = [fingerprint(models["numba"].compute(g)) for _ in range(2)]
        numba.set_num_threads(threads)
        for label, fps in prints.items():
            print(f"{label:<16} {len(fps)} runs, distinct results: {len(set(fps))}   {fps[0]}")
        print("numba (any threads) identical:", len(set(prints["numba"] + prints["numba, 1 thread"])) == 1)
        print("numba vs numpy bitwise equal:", prints["numba"][0] == prints["numpy"][0],
              "(nor should they be: different summation orders; equal to round-off, section 2)")
        '''),
        ("md", r'''
        **Try it.** (1) Raise `CELLS` to 6 or 7 and see where the speed-up settles. (2) Time with
        `numba.set_num_threads(1)` and compare the two curves. (3) Print `models["numba"].plan.layers[1]`
        and find which paths dominate the tensor-product flops (notebook 02, section 5).
        '''),
    ]


# ==================================================================================================
# 09 · the equivariance and conservativity harness
# ==================================================================================================
@notebook("09_equivariance_harness")
def nb09():
    return [
        ("md", r'''
        # 09 · The equivariance and conservativity harness

        **What this covers.** `nequip_np.testing.check_calculator`: one call that checks what every
        interatomic potential owes its users — invariance under rotations, inversion, translations and
        permutations; forces that are $-\nabla E$ and a curl-free force field; stress that is the
        strain derivative; locality; a smooth cutoff; energy-conserving dynamics. We run it on our
        `NequIPCalculator` (isolated and periodic), on ASE's EMT, and on toy calculators with
        *planted* faults, each of which must be caught by the check designed for it. Finally, the
        picture behind `forces_gradient`: the finite-difference error against the step for a correct
        and for a faulty calculator.

        **What it does not cover.** How each check is implemented and why each tolerance has its value
        (`docs/harness.md`), long MD stability runs (`benchmarks/`), and accuracy against reference
        data (a harness checks physics, not fit quality).
        '''),
        ("code", setup(r'''
        MD_STEPS = 10 if SMOKE else 40           # Velocity Verlet steps of nve_drift
        N_ROTATIONS = 1 if SMOKE else 3          # random (improper) rotations per symmetry check
        STEPS = np.logspace(-1, -9, 5 if SMOKE else 17)   # step sweep of the last figure
        OPTIONS = dict(md_steps=MD_STEPS, n_rotations=N_ROTATIONS)
        rng = np.random.default_rng(0)
        ''')),
        ("md", r'''
        ## 1. Our model

        A small NequIP model wrapped as an ASE calculator. The harness copies the structure, never
        modifies it, and prints one row per check: the measured error, the tolerance (from one table
        per dtype), PASS / FAIL / SKIP and what was measured.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        `stress_strain` is skipped for a molecule. A periodic, sheared cell exercises it (and skips the
        checks that need an isolated system):
        '''),
        ("code", r'''
        crystal = bulk("C", "diamond", a=3.6).repeat((2, 1, 1))
        crystal.set_chemical_symbols(["C", "O", "H", "C"])
        crystal.set_cell(crystal.cell.array @ (np.eye(3) + 0.04 * rng.standard_normal((3, 3))), scale_atoms=True)
        crystal.rattle(0.05, seed=2)
        print(check_calculator(calc, crystal, cutoff=model.config.r_max, **OPTIONS))
        '''),
        ("md", r'''
        ## 2. Any ASE calculator: EMT

        Nothing in the harness knows about NequIP. ASE's effective-medium potential on a rattled copper
        cell (EMT's cutoff is a smooth Fermi function, so we give no `cutoff` and that check is skipped):
        '''),
        ("code", r'''
        from ase.calculators.emt import EMT

        copper = bulk("Cu", "fcc", a=3.6, cubic=True)
        copper.rattle(0.05, seed=0)
        emt_report = check_calculator(EMT(), copper, **OPTIONS)
        print(emt_report)
        '''),
        ("md", r'''
        ## 3. Planted faults

        `nequip_np.testing.faults` holds toy pair potentials that each break exactly one property.
        A harness is only as good as the bugs it catches, so each must fail the check aimed at it —
        and, as importantly, *only* the checks that should fail. The structure is a rattled methane
        (rattled, because the perfectly symmetric one is achiral and the chiral fault would vanish).
        '''),
        ("code", r'''
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
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        Note the pairs: a *scaled* force is still a gradient (of $1.1E$), so `curl_free` passes and only
        `forces_gradient` catches it; forces missing a chain-rule term are not a gradient of anything,
        so both fail. The chiral energy is invariant under proper rotations and fails `inversion` alone
        — the reason the harness tests improper rotations separately.

        ## 4. The picture behind `forces_gradient`

        Central differences of the energy against the calculator's forces, as a function of the step:
        a correct calculator gives the V of notebook 04 (its bottom sits lower the smaller $|E|$ is:
        our model carries per-species shifts of $\sim 10^3$ eV, the Morse toy none); a calculator
        whose forces are not $-\nabla E$ gives a V with a *floor* — no step size makes the disagreement
        go away, and the height of the floor is the size of the bug.
        '''),
        ("code", r'''
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
        '''),
        ("md", r'''
        The harness turns this figure into a number: the best error over its step sweep, compared with
        `1e-5` (float64). Use it on any potential before trusting its dynamics:

        ```python
        from nequip_np.testing import check_calculator
        report = check_calculator(my_calc, atoms, cutoff=r_max)
        assert report.passed, report.failed
        ```

        or from the shell, `nequip-np check --calculator MODULE:FACTORY --structure FILE`.

        **Try it.** (1) Run the harness with `dtype="float32"` tolerances on a float32 model
        (`model_dtype="float32"`). (2) Write `fn(atoms) -> (E, F)` for a pair potential of your own and
        pass it to `nequip_np.testing.check_function`. (3) Give `make_truncated_lj()` a smaller
        `cutoff_window` and see whether `cutoff_smoothness` still sees the jump.
        '''),
    ]


@notebook("10_beyond_one_process")
def nb10():
    return [
        ("md", r"""
        # 10 · Beyond one process: splitting MD and training over ranks

        **What this covers.** Why a message-passing potential can be split over processes at all — the
        *receptive field* of `num_layers` hops — and the three facts the MPI code is built on:
        (1) the energy of the atoms a rank owns, differentiated once, gives partial forces whose sum
        over ranks is exact; (2) with an MD engine's *ghost atoms* (explicit periodic images) a rank
        needs only its slab plus a shell of depth L·r_max, and the ghost forces go back to their owners;
        (3) a training batch split into shards gives the batch gradient exactly if each shard's loss
        is reweighted by its share of the normalisers. Everything runs here on ranks that are
        *threads* (`nequip_np.parallel.run_thread_ranks`), with the same collectives and the same
        numbers as under `mpirun`.

        **What it does not cover.** Running LAMMPS (`nequip-np lammps`, `docs/lammps_mpi.md`, needs the
        `lammps` extra), real MPI timings (`benchmarks/lammps_ranks_scaling.py`: 1.79× on 2 ranks for
        32768 atoms), and the training CLI under `mpirun` (`mpirun -np 2 nequip-np train config.yaml`).
        """),
        ("code", setup(r"""
        REPEAT = 6 if SMOKE else 10          # cubic diamond cells along x (3.6 Å each)
        RANKS = [1, 2, 3] if SMOKE else [1, 2, 3, 4, 6]
        N_FRAMES = 4 if SMOKE else 8         # frames in the training batch of section 4
        """)),
        ("md", r"""
        ## 1. The receptive field

        A long rattled crystal of H, C and O on a diamond lattice, and a small model with L = 2 layers
        and r_max = 2.6 Å. After L layers an atom's energy depends on the atoms within L graph hops,
        hence within L·r_max = 5.2 Å. Colour each atom by its hop distance from the atoms in a slab
        (the "owned" atoms of one rank):
        """),
        ("code", r"""
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
        """),
        ("md", r"""
        ## 2. Owned energies and partial forces add up

        Give each atom to one of P ranks at random (the partition does not have to be geometric for
        exactness, only for efficiency). Rank k evaluates $E_k = \sum_{i\ \mathrm{owned}} E_i$ on its
        receptive subgraph and runs one reverse pass seeded with 1 on owned atoms and 0 elsewhere:
        $-\partial E_k/\partial R$ is non-zero on its shell too. Since $E = \sum_k E_k$ and forces and
        virial are linear in $E$, the sums over ranks are the model's:
        """),
        ("code", r"""
        reference = model.compute(graph)
        rng = np.random.default_rng(0)
        for P in RANKS:
            owner = rng.integers(0, P, len(atoms))
            parts = [owned_energy_forces(model, graph, owner == k) for k in range(P)]
            dE = abs(sum(p["energy"] for p in parts) / reference["total_energy"][0] - 1)
            dF = np.abs(sum(p["forces"] for p in parts) - reference["forces"]).max()
            dW = np.abs(sum(p["virial"] for p in parts) - reference["virial"][0]).max()
            print(f"P = {P}: |ΔE/E| = {dE:.1e}, max |ΔF| = {dF:.1e} eV/Å, max |Δvirial| = {dW:.1e} eV")
        """),
        ("md", r"""
        ## 3. Ghost atoms: what an MD engine gives each rank

        LAMMPS cuts the box into slabs (or a grid) and gives each rank, besides its own atoms, *ghost*
        copies of all atoms within a cutoff of its slab — periodic images included. With the cutoff
        set to L·r_max + skin, a rank can evaluate its owned energy on owned + ghosts alone
        (`ghost_energy_forces`); the partial force on a ghost is sent back to the rank owning that atom.
        Along directions that are periodic but not split, the ghosts are images of atoms the rank
        already has: *folding* them back into periodic edges avoids computing the same atom twice.

        `slab_ghosts` builds exactly what a rank of a slab decomposition along x receives; the ranks
        below are threads running the same code as under `mpirun`.
        """),
        ("code", r"""
        from nequip_np.parallel import GhostCache, ghost_energy_forces, run_thread_ranks, slab_ghosts

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
        """),
        ("md", r"""
        The cost of a rank is the number of atoms it evaluates. Without folding, the images along y and
        z (the box is only 7.2 × 3.6 Å across) multiply the work; with folding, a rank evaluates its
        slab plus the receptive field on both sides, about $N\,(L_x/P + 2 L r_\max)/L_x$ — the dashed
        line — so splitting pays once a slab is wide compared with $L\,r_\max$:
        """),
        ("code", r"""
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
        """),
        ("md", r"""
        ## 4. Data-parallel training

        The loss is a sum of means with different normalisers — frames for the energy term, 3N force
        components for the forces. A shard's own loss is therefore not a fixed fraction of the batch
        loss. Evaluating shard k with coefficients $c_t\,n_{t,k}/n_t$ (its share of each normaliser)
        and multiplying back by their sum makes the shard gradients add up to the batch gradient,
        whatever the shard sizes — even with a rank that gets no frame:
        """),
        ("code", r"""
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
        """),
        ("md", r"""
        Every rank holds the same summed gradient (summed in rank order, so bit-identical) and applies the
        same Adam step; `mpirun -np 2 nequip-np train config.yaml` gives the single-process model to
        2.6e-16 relative after 20 steps (`tests/test_mpi.py`).

        **Try it.** (1) Set `REPEAT = 20` and watch the fold = True curve approach the ideal N/P.
        (2) In section 3, give `slab_ghosts` a cutoff smaller than L·r_max and see the forces go wrong —
        the reason the coupling sets `comm_modify cutoff` itself. (3) Make the partition of section 2
        geometric instead of random and compare the sizes of the receptive subgraphs.
        """),
    ]


if __name__ == "__main__":
    sys.exit(main())
