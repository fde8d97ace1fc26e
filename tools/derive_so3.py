r"""Derive nequip_np's spherical harmonics and Clebsch–Gordan tables exactly, and write them.

Run from the repository root (needs sympy; the package itself never imports it at import time)::

    python tools/derive_so3.py            # writes both generated files
    python tools/derive_so3.py --check    # re-derives and fails if the committed files differ

Outputs

* ``nequip_np/so3/_generated_sh.py``: straight-line NumPy code for the real solid harmonics
  :math:`|u|^l\,Y^l(\hat u)` (e3nn basis, "component" normalisation) and their gradients, l <= 10,
  plus the exact coefficients as strings.
* ``nequip_np/so3/_cg_table.npz``: every nonzero entry of e3nn's real-basis Wigner-3j tensor for
  l1, l2, l3 <= 8 as ``sign * sqrt(p / q)`` with exact integers ``p, q``.

The mathematics is in ``docs/derivations/spherical_harmonics_and_cg.md``. In short:

1. Complex solid harmonics with the Condon–Shortley phase, component normalisation
   (:math:`\sum_m |Y_l^m|^2 = 2l+1` on the unit sphere), for m >= 0:
   :math:`r^l Y_l^m = N_{lm} (-1)^m (X + iY)^m \, r^{l-m} P_l^{(m)}(Z/r)`,
   :math:`N_{lm} = \sqrt{(2l+1)(l-m)!/(l+m)!}`, and :math:`Y_l^{-m} = (-1)^m \overline{Y_l^m}`.
2. Real basis: :math:`Y_{\mathrm{real}} = Q_0^\dagger Y_{\mathrm{complex}}` with the unitary
   :math:`Q_0` of ``real_to_complex_unit`` (e3nn's change of basis without its global phase
   :math:`(-i)^l`, which drops out of :math:`D = Q^\dagger D_c Q`).
3. e3nn's axes: the standard (X, Y, Z) are e3nn's (z, x, y); y is the polar axis.
4. Clebsch–Gordan: Racah's formula (exact), transformed with e3nn's :math:`Q_l = (-i)^l Q_0`:
   :math:`C[a,b,c] = \mathrm{Re}\sum Q_1[i,a]\,Q_2[k,b]\,\overline{Q_3[n,c]}\,C_c[i,k,n]`, divided
   by its Frobenius norm.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pathlib
import sys
from fractions import Fraction
from functools import cache

import numpy as np
import sympy as sp

ROOT = pathlib.Path(__file__).resolve().parents[1]
SH_PATH = ROOT / "nequip_np" / "so3" / "_generated_sh.py"
CG_PATH = ROOT / "nequip_np" / "so3" / "_cg_table.npz"
SH_LMAX = 10
CG_LMAX = 8
COMMAND = "python tools/derive_so3.py"

# e3nn coordinates and the standard ("Wikipedia") ones: X = z, Y = x, Z = y.
x, y, z = sp.symbols("x y z", real=True)
X, Y, Z = z, x, y
t, R2 = sp.symbols("t r2", real=True)


# ----------------------------------------------------------------------------------------------
# Spherical harmonics
# ----------------------------------------------------------------------------------------------
def legendre_part(l: int, m: int) -> dict[tuple[int, int], sp.Expr]:
    r""":math:`r^{l-m} P_l^{(m)}(Z/r)` as ``{(j, k): c}`` meaning :math:`\sum c\, Z^j (r^2)^k`."""
    poly = sp.Poly(sp.diff(sp.legendre(l, t), t, m), t)
    out = {}
    for (j,), c in poly.terms():
        assert (l - m - j) % 2 == 0
        out[(j, (l - m - j) // 2)] = sp.Rational(c)
    return out


def sh_factored(l: int, m: int) -> dict[tuple[int, int], sp.Expr]:
    r"""Real component m of degree l as :math:`F_m(X,Y)\,\Pi_l^{|m|}(Z, r^2)`; returns the
    coefficients of :math:`\Pi` (normalisation folded in). :math:`F_m = \mathrm{Re}(X+iY)^m` for
    m >= 0 and :math:`\mathrm{Im}(X+iY)^{|m|}` for m < 0 (the (-1)^m of Condon–Shortley cancels
    against the (-1)^m of the real basis; checked against the Q-transform in ``check_sh``)."""
    am = abs(m)
    norm = sp.sqrt(sp.Rational((2 * l + 1) * math.factorial(l - am), math.factorial(l + am)))
    if am:
        norm *= sp.sqrt(2)
    return {jk: norm * c for jk, c in legendre_part(l, am).items()}


def sh_expanded(l: int) -> list[sp.Expr]:
    """The 2l+1 real solid harmonics of degree l as expanded polynomials in e3nn's x, y, z."""
    out = []
    for m in range(-l, l + 1):
        w = sp.expand((X + sp.I * Y) ** abs(m))
        f = sp.re(w) if m >= 0 else sp.im(w)
        pi = sum(c * Z**j * (X**2 + Y**2 + Z**2) ** k for (j, k), c in sh_factored(l, m).items())
        out.append(sp.expand(f * pi))
    return out


def real_to_complex_unit(l: int) -> sp.Matrix:
    """e3nn's change of basis without the global phase (-i)^l: complex = Q0 @ real."""
    q = sp.zeros(2 * l + 1, 2 * l + 1)
    s2 = 1 / sp.sqrt(2)
    for m in range(-l, 0):
        q[l + m, l + abs(m)] = s2
        q[l + m, l - abs(m)] = -sp.I * s2
    q[l, l] = 1
    for m in range(1, l + 1):
        q[l + m, l + m] = (-1) ** m * s2
        q[l + m, l - m] = sp.I * (-1) ** m * s2
    return q


def check_sh(l: int) -> None:
    """Independent check: Q0^dagger applied to the complex Condon–Shortley solid harmonics."""
    rr = sp.Symbol("rr", positive=True)
    comp = []
    for m in range(-l, l + 1):
        am = abs(m)
        nrm = sp.sqrt(sp.Rational((2 * l + 1) * math.factorial(l - am), math.factorial(l + am)))
        # r^(l-m) P_l^(m)(Z/r) is even in r: expand, then put r^2 = X^2 + Y^2 + Z^2.
        plm = sp.expand(sp.diff(sp.legendre(l, t), t, am).subs(t, Z / rr) * rr ** (l - am))
        plm = plm.subs(rr, sp.sqrt(X**2 + Y**2 + Z**2))
        val = nrm * (-1) ** am * (X + sp.I * Y) ** am * plm  # Condon-Shortley, m >= 0
        if m < 0:  # Y_l^{-m} = (-1)^m conj(Y_l^m)
            val = (-1) ** am * nrm * (-1) ** am * (X - sp.I * Y) ** am * plm
        comp.append(sp.expand(val))
    real = real_to_complex_unit(l).H * sp.Matrix(comp)
    for got, want in zip(real, sh_expanded(l)):
        assert sp.expand(got - want) == 0, (l, got, want)


def _num(c: sp.Expr) -> str:
    return repr(float(sp.N(c, 40)))


def _mono(j: int, k: int) -> str:
    parts = ([f"Z{j}"] if j else []) + ([f"R{k}"] if k else [])
    return "*".join(parts)


def _poly_code(coeffs: dict[tuple[int, int], sp.Expr]) -> str:
    terms = []
    for (j, k), c in sorted(coeffs.items(), reverse=True):
        if c == 0:
            continue
        mono = _mono(j, k)
        terms.append(f"{_num(c)}*{mono}" if mono else _num(c))
    return " + ".join(terms) if terms else "0.0"


def emit_sh_block(l: int, grad: bool) -> str:
    """Code for degree l. Variables in scope: X, Y, Z (standard axes), Z1.., R1.. (powers of Z and
    r2), A[m], B[m] (Re/Im of (X+iY)^m), out (and dout); ``c0`` = first column of degree l."""
    ind = "    "
    lines = [f"{ind}# ---- l = {l}"]
    if l >= 1:
        lines.append(f"{ind}Z{l} = Z{l - 1}*Z" if l >= 2 else f"{ind}Z1 = Z")
        if l % 2 == 0:
            lines.append(f"{ind}R{l // 2} = R{l // 2 - 1}*r2" if l >= 4 else f"{ind}R1 = r2")
        lines.append(f"{ind}A[{l}] = X*A[{l - 1}] - Y*B[{l - 1}]")
        lines.append(f"{ind}B[{l}] = X*B[{l - 1}] + Y*A[{l - 1}]")
    base = l * l
    for m in range(-l, l + 1):
        am = abs(m)
        col = base + l + m
        coeffs = sh_factored(l, m)
        pi = sum(c * Z**j * R2**k for (j, k), c in coeffs.items())
        f, fm1 = ("A", "B") if m >= 0 else ("B", "A")
        lines.append(f"{ind}P = {_poly_code(coeffs)}")
        lines.append(f"{ind}out[{col}] = P*{f}[{am}]" if am else f"{ind}out[{col}] = P")
        if not grad:
            continue
        dr_c = dict(sp.Poly(sp.diff(pi, R2) * 2, Z, R2).terms())  # 2 dPi/dr2
        dz_c = dict(sp.Poly(sp.diff(pi, Z), Z, R2).terms())
        has_r = any(c != 0 for c in dr_c.values())
        has_z = any(c != 0 for c in dz_c.values())
        if has_r:
            lines.append(f"{ind}PR = {_poly_code(dr_c)}")
        if has_z:
            lines.append(f"{ind}PZ = {_poly_code(dz_c)}")
        fa = f"*{f}[{am}]" if am else ""
        # F_m derivatives: d/dX A_m = m A_{m-1}, d/dY A_m = -m B_{m-1},
        #                  d/dX B_m = m B_{m-1}, d/dY B_m = +m A_{m-1}   (A_0 = 1, B_0 = 0)
        gx = gy = []
        if am:
            gx = [f"{float(am)!r}*P*{f}[{am - 1}]"]
            gy = [f"{float(am)!r}*P*A[{am - 1}]" if m < 0 else f"-{float(am)!r}*P*B[{am - 1}]"]
        rx = [f"X*PR{fa}"] if has_r else []
        ry = [f"Y*PR{fa}"] if has_r else []
        zz = (["PZ"] if has_z else []) + (["Z*PR"] if has_r else [])
        dzs = (f"({' + '.join(zz)}){fa}" if fa and len(zz) > 1 else f"{' + '.join(zz)}{fa}") if zz else "0.0"
        dxs = " + ".join(gx + rx) or "0.0"
        dys = " + ".join(gy + ry) or "0.0"
        # e3nn axes: d/dx = d/dY, d/dy = d/dZ, d/dz = d/dX
        lines.append(f"{ind}dout[0, {col}] = {dys}")
        lines.append(f"{ind}dout[1, {col}] = {dzs}")
        lines.append(f"{ind}dout[2, {col}] = {dxs}")
    return "\n".join(lines) + "\n"


def emit_sh_function(name: str, grad: bool, lmax: int) -> str:
    sig = "lmax, x, y, z, out, dout" if grad else "lmax, x, y, z, out"
    head = [
        f"def {name}({sig}):",
        f'    """Fill out[k, i]{" and dout[a, k, i] = d out[k, i] / d u[i, a]" if grad else ""}'
        ' from 1-d x, y, z (pure arithmetic; k < (lmax+1)**2)."""',
        "    X, Y, Z = z, x, y",
        "    r2 = x*x + y*y + z*z",
        "    one = 1.0",
        "    A = [one] + [None]*lmax",
        "    B = [0.0] + [None]*lmax",
        "    out[0] = 1.0",
    ]
    if grad:
        head.append("    dout[:, 0] = 0.0")
    body = "\n".join(head) + "\n"
    for l in range(1, lmax + 1):
        body += f"    if lmax < {l}:\n        return\n" + emit_sh_block(l, grad)
    return body


def exact_sh_table(lmax: int) -> dict[str, list[str]]:
    """``{"l,m": [str(coefficient of Z^j r2^k) as "j,k:expr"]}`` — the exact data of the code."""
    out = {}
    for l in range(lmax + 1):
        for m in range(-l, l + 1):
            out[f"{l},{m}"] = [f"{j},{k}:{sp.sstr(c)}" for (j, k), c in sorted(sh_factored(l, m).items(), reverse=True)]
    return out


def sh_module_body(lmax: int) -> str:
    table = json.dumps(exact_sh_table(lmax), indent=0, sort_keys=True)
    return (
        f"LMAX = {lmax}\n\n"
        "#: Exact coefficients: component (l, m) = F_m(X, Y) * sum c * Z**j * r2**k with\n"
        "#: (X, Y, Z) = (z, x, y), F_m = Re (X+iY)^m (m >= 0) or Im (X+iY)^|m| (m < 0).\n"
        f"EXACT_COEFFICIENTS = {table}\n\n\n"
        + emit_sh_function("sh_fill", False, lmax)
        + "\n\n"
        + emit_sh_function("sh_grad_fill", True, lmax)
    )


def stamp(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def write_sh(lmax: int = SH_LMAX) -> str:
    body = sh_module_body(lmax)
    header = (
        '"""GENERATED by tools/derive_so3.py — do not edit.\n\n'
        "Real solid harmonics |u|^l Y^l(u/|u|) in e3nn's basis, component normalisation, and their\n"
        "gradients; see docs/derivations/spherical_harmonics_and_cg.md.\n\n"
        f"Provenance: sympy {sp.__version__}; command `{COMMAND}`; "
        f"sha256(body) = {stamp(body)}\n"
        '"""\n'
        "# fmt: off\n"
        "# flake8: noqa\n"
        f"SYMPY_VERSION = {sp.__version__!r}\n"
        f"BODY_SHA256 = {stamp(body)!r}\n"
        "BODY_START = '# ---- generated body ----'\n"
        "# ---- generated body ----\n"
    )
    return header + body


# ----------------------------------------------------------------------------------------------
# Clebsch–Gordan
# ----------------------------------------------------------------------------------------------
@cache
def su2_cg(j1: int, m1: int, j2: int, m2: int, j3: int, m3: int) -> tuple[int, Fraction]:
    r"""Condon–Shortley :math:`\langle j_1 m_1 j_2 m_2 | j_3 m_3\rangle` (integer j) by Racah's
    formula, exactly: returns ``(sign, square)`` with value ``sign * sqrt(square)``."""
    if m1 + m2 != m3 or not abs(j1 - j2) <= j3 <= j1 + j2:
        return 0, Fraction(0)
    if abs(m1) > j1 or abs(m2) > j2 or abs(m3) > j3:
        return 0, Fraction(0)
    f = math.factorial
    pref = Fraction((2 * j3 + 1) * f(j3 + j1 - j2) * f(j3 - j1 + j2) * f(j1 + j2 - j3), f(j1 + j2 + j3 + 1))
    pref *= f(j3 + m3) * f(j3 - m3) * f(j1 - m1) * f(j1 + m1) * f(j2 - m2) * f(j2 + m2)
    s = Fraction(0)
    for k in range(0, j1 + j2 - j3 + 1):
        args = (k, j1 + j2 - j3 - k, j1 - m1 - k, j2 + m2 - k, j3 - j2 + m1 + k, j3 - j1 - m2 + k)
        if min(args) < 0:
            continue
        den = 1
        for a in args:
            den *= f(a)
        s += Fraction((-1) ** k, den)
    if s == 0:
        return 0, Fraction(0)
    return (1 if s > 0 else -1), s * s * pref


def _q_entry(l: int, m: int, mu: int) -> tuple[complex, int]:
    """e3nn's Q_l[l+m, l+mu] = unit * 2^(-k/2) as (unit including (-i)^l, k); (0, 0) if zero."""
    if m == 0 and mu == 0:
        unit = 1
    elif m < 0 and mu == -m:
        unit = 1
    elif m < 0 and mu == m:
        unit = -1j
    elif m > 0 and mu == m:
        unit = (-1) ** m
    elif m > 0 and mu == -m:
        unit = 1j * (-1) ** m
    else:
        return 0, 0
    return unit * (-1j) ** l, (0 if m == 0 else 1)


def real_cg_exact(l1: int, l2: int, l3: int) -> dict[tuple[int, int, int], tuple[int, Fraction]]:
    """Nonzero entries of e3nn's real Wigner-3j, ``{(a, b, c): (sign, square)}``, Frobenius norm 1.

    Each real entry receives at most one pair of complex terms (m and -m) whose |CG| agree, so it
    is ``g * sqrt(R)`` with a Gaussian integer g; we assert g is real (e3nn takes the real part)."""
    acc: dict[tuple[int, int, int], list] = {}
    for m1 in range(-l1, l1 + 1):
        for m2 in range(-l2, l2 + 1):
            m3 = m1 + m2
            sign, sq = su2_cg(l1, m1, l2, m2, l3, m3)
            if sign == 0:
                continue
            for mu1 in {m1, -m1}:
                for mu2 in {m2, -m2}:
                    for mu3 in {m3, -m3}:
                        u1, k1 = _q_entry(l1, m1, mu1)
                        u2, k2 = _q_entry(l2, m2, mu2)
                        u3, k3 = _q_entry(l3, m3, mu3)
                        g = u1 * u2 * np.conj(u3) * sign
                        r = sq / 2 ** (k1 + k2 + k3)
                        key = (l1 + mu1, l2 + mu2, l3 + mu3)
                        if key in acc:
                            assert acc[key][0] == r, "mixed square roots in one entry"
                            acc[key][1] += g
                        else:
                            acc[key] = [r, g]
    vals = {}
    for key, (r, g) in acc.items():
        g = complex(g)
        assert g.imag == 0 and g.real == int(g.real), (l1, l2, l3, key, g)
        gi = int(g.real)
        if gi:
            vals[key] = (1 if gi > 0 else -1, gi * gi * r)
    norm2 = sum(sq for _, sq in vals.values())
    return {k: (s, sq / norm2) for k, (s, sq) in sorted(vals.items())}


def cg_arrays(lmax: int = CG_LMAX) -> dict[str, np.ndarray]:
    triples, offsets, index, sign, num, den = [], [0], [], [], [], []
    for l1 in range(lmax + 1):
        for l2 in range(lmax + 1):
            for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
                ent = real_cg_exact(l1, l2, l3)
                triples.append((l1, l2, l3))
                for (a, b, c), (s, sq) in ent.items():
                    index.append((a, b, c))
                    sign.append(s)
                    num.append(sq.numerator)
                    den.append(sq.denominator)
                offsets.append(len(index))
    assert max(num + den) < 2**62, "exact squares no longer fit int64; store as strings"
    return {
        "triples": np.array(triples, dtype=np.int16),
        "offsets": np.array(offsets, dtype=np.int64),
        "index": np.array(index, dtype=np.int8),
        "sign": np.array(sign, dtype=np.int8),
        "num": np.array(num, dtype=np.int64),
        "den": np.array(den, dtype=np.int64),
    }


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def write_cg(path: pathlib.Path = CG_PATH, lmax: int = CG_LMAX) -> None:
    arrays = cg_arrays(lmax)
    prov = {
        "sympy": sp.__version__,
        "command": COMMAND,
        "lmax": lmax,
        "sha256": arrays_sha256(arrays),
        "formula": "Racah (exact fractions) + e3nn real basis Q_l=(-i)^l Q0, Re, /Frobenius",
    }
    np.savez_compressed(path, provenance=np.array(json.dumps(prov)), **arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files")
    args = ap.parse_args(argv)
    for l in range(SH_LMAX + 1):
        check_sh(l)
    text = write_sh()
    if args.check:
        ok = SH_PATH.read_text() == text
        committed = np.load(CG_PATH)
        fresh = cg_arrays()
        ok &= all(np.array_equal(committed[k], v) for k, v in fresh.items())
        print("up to date" if ok else "STALE: rerun without --check")
        return 0 if ok else 1
    SH_PATH.write_text(text)
    write_cg()
    print(f"wrote {SH_PATH.relative_to(ROOT)} and {CG_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
