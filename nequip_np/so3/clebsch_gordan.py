r"""Real Clebsch–Gordan coefficients (Wigner 3j) in e3nn's basis, from a committed exact table.

:math:`C^{l_1 l_2 l_3}_{abc}` is the unique (up to sign) tensor with

.. math::
    \sum_{a'b'c'} D^{l_1}_{aa'}(R)\,D^{l_2}_{bb'}(R)\,D^{l_3}_{cc'}(R)\,C_{a'b'c'} = C_{abc}
    \quad\text{for all } R \in SO(3),

normalised to Frobenius norm 1, with e3nn's sign: it is the real part of the Condon–Shortley
coefficients transformed by :math:`Q_l = (-i)^l Q^{(0)}_l`
(``docs/derivations/spherical_harmonics_and_cg.md``). Each entry is exactly :math:`\pm\sqrt{p/q}`
with integers p, q; ``tools/derive_so3.py`` writes them to ``_cg_table.npz``. The table is read on
first use.

>>> c = clebsch_gordan(1, 1, 0)
>>> bool(np.allclose(c[:, :, 0], np.eye(3) / np.sqrt(3)))
True
"""

from __future__ import annotations

import json
import pathlib
from fractions import Fraction
from functools import cache, lru_cache

import numpy as np

_TABLE = pathlib.Path(__file__).with_name("_cg_table.npz")


@lru_cache(maxsize=1)
def _table() -> dict:
    with np.load(_TABLE, allow_pickle=False) as data:
        tab = {k: data[k] for k in data.files}
    starts = {
        tuple(int(v) for v in t): (int(a), int(b))
        for t, a, b in zip(tab["triples"], tab["offsets"][:-1], tab["offsets"][1:])
    }
    tab["starts"] = starts
    tab["lmax"] = json.loads(str(tab["provenance"]))["lmax"]
    return tab


def cg_lmax() -> int:
    """Largest l of the committed table."""
    return _table()["lmax"]


def _check(l1, l2, l3) -> tuple[int, int, int]:
    ls = (l1, l2, l3)
    for l in ls:
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or l < 0:
            raise ValueError(f"l must be a non-negative integer, got {ls}")
    lmax = cg_lmax()
    if max(ls) > lmax:
        raise ValueError(f"Clebsch-Gordan table covers l <= {lmax}, got {ls}")
    return int(l1), int(l2), int(l3)


def _entries(l1: int, l2: int, l3: int):
    tab = _table()
    a, b = tab["starts"].get((l1, l2, l3), (0, 0))
    return tab["index"][a:b], tab["sign"][a:b], tab["num"][a:b], tab["den"][a:b]


@cache
def _cg_cached(l1: int, l2: int, l3: int) -> np.ndarray:
    out = np.zeros((2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1))
    idx, sign, num, den = _entries(l1, l2, l3)
    # float(Fraction) is correctly rounded, so each entry is within 1 ulp of the exact value.
    vals = [s * np.sqrt(float(Fraction(int(p), int(q)))) for s, p, q in zip(sign, num, den)]
    if len(vals):
        out[idx[:, 0], idx[:, 1], idx[:, 2]] = vals
    out.setflags(write=False)
    return out


def clebsch_gordan(l1: int, l2: int, l3: int) -> np.ndarray:
    """e3nn's ``o3.wigner_3j(l1, l2, l3)``: float64 (2l1+1, 2l2+1, 2l3+1), Frobenius norm 1, or
    zeros if the triangle rule fails. Returns a fresh writable copy."""
    return _cg_cached(*_check(l1, l2, l3)).copy()


wigner_3j = clebsch_gordan


def clebsch_gordan_exact(l1: int, l2: int, l3: int):
    """The same tensor with exact entries ``±sqrt(p/q)`` as a sympy ``ImmutableDenseNDimArray``.

    Imports sympy lazily (only here)."""
    import sympy as sp

    l1, l2, l3 = _check(l1, l2, l3)
    shape = (2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    flat = [sp.Integer(0)] * (shape[0] * shape[1] * shape[2])
    idx, sign, num, den = _entries(l1, l2, l3)
    for (a, b, c), s, p, q in zip(idx, sign, num, den):
        flat[(a * shape[1] + b) * shape[2] + c] = int(s) * sp.sqrt(sp.Rational(int(p), int(q)))
    return sp.ImmutableDenseNDimArray(flat, shape)


def clebsch_gordan_exact_entries(l1: int, l2: int, l3: int) -> dict:
    """``{(a, b, c): (sign, Fraction(p, q))}``: the committed exact data, value sign*sqrt(p/q)."""
    l1, l2, l3 = _check(l1, l2, l3)
    idx, sign, num, den = _entries(l1, l2, l3)
    return {tuple(int(v) for v in i): (int(s), Fraction(int(p), int(q))) for i, s, p, q in zip(idx, sign, num, den)}


def cg_provenance() -> dict:
    """The generator's stamp (sympy version, command, sha256 of the arrays)."""
    return json.loads(str(_table()["provenance"]))
