r"""Irreducible representations of O(3) and their direct sums, in e3nn 0.6's conventions.

An irrep of O(3) = SO(3) × {1, −1} is labelled by its degree :math:`l \ge 0` (dimension
:math:`2l+1`) and its parity :math:`p = \pm 1`, the sign it picks up under the inversion
:math:`x \mapsto -x`: ``"1o"`` (l=1, p=−1) is a polar vector, ``"1e"`` an axial one. Spherical
harmonics of degree l carry parity :math:`(-1)^l`.

``Irrep`` is a tuple ``(l, p)``, so the order is the tuple order 0o < 0e < 1o < 1e < 2o < … exactly
as in e3nn. ``Irreps`` is a tuple of ``MulIr(mul, ir)``; a block ``mul x ir`` occupies
``mul * ir.dim`` consecutive columns of a feature vector ("mul_ir" layout).

>>> Irreps("32x0e + 16x1o").dim
80
>>> [str(ir) for ir in Irrep("1o") * Irrep("1o")]
['0e', '1e', '2e']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from .wigner import wigner_D

_PARITY_OF_LETTER = {"e": 1, "o": -1}
_LETTER_OF_PARITY = {1: "e", -1: "o"}
_IRREP_RE = re.compile(r"^(\d+)([eoy])$")
_MULIR_RE = re.compile(r"^(?:(\d+)\s*x\s*)?(\d+)([eoy])$")


class Irrep(tuple):
    """One irrep ``(l, p)`` of O(3). ``Irrep(1, -1) == Irrep("1o") == (1, -1)``.

    The letter ``"y"`` means the parity of the spherical harmonics, :math:`(-1)^l`.
    """

    def __new__(cls, l, p=None):
        if p is None:
            if isinstance(l, Irrep):
                return l
            if isinstance(l, str):
                m = _IRREP_RE.match(l.strip())
                if not m:
                    raise ValueError(
                        f"cannot read {l!r} as an irrep: expected 'LP' like '0e' or '1o' "
                        "(L a non-negative integer, P one of e, o, y)"
                    )
                l, letter = int(m.group(1)), m.group(2)
                p = (-1) ** l if letter == "y" else _PARITY_OF_LETTER[letter]
            elif isinstance(l, tuple) and len(l) == 2:
                l, p = l
            else:
                raise ValueError(f"cannot make an irrep from {l!r}: expected '1o', (l, p) or Irrep")
        if isinstance(l, (bool, np.bool_)) or int(l) != l or l < 0:
            raise ValueError(f"irrep degree l must be a non-negative integer, got {l!r}")
        if p not in (1, -1):
            raise ValueError(f"irrep parity p must be +1 (even, 'e') or -1 (odd, 'o'), got {p!r}")
        return super().__new__(cls, (int(l), int(p)))

    @property
    def l(self) -> int:  # noqa: E743 - the physics name
        return self[0]

    @property
    def p(self) -> int:
        return self[1]

    @property
    def dim(self) -> int:
        return 2 * self[0] + 1

    def is_scalar(self) -> bool:
        return self == (0, 1)

    def __repr__(self) -> str:
        return f"{self[0]}{_LETTER_OF_PARITY[self[1]]}"

    __str__ = __repr__

    def __mul__(self, other):
        """Irreps in the product ``self ⊗ other``: l = |l1−l2| … l1+l2, parity p1·p2."""
        if not isinstance(other, Irrep):
            return NotImplemented
        p = self.p * other.p
        return (Irrep(l, p) for l in range(abs(self.l - other.l), self.l + other.l + 1))

    def __rmul__(self, mul):
        """``3 * Irrep("1o")`` is ``Irreps("3x1o")``."""
        if isinstance(mul, (int, np.integer)) and not isinstance(mul, bool):
            return Irreps([(int(mul), self)])
        return NotImplemented

    def __add__(self, other):
        return Irreps(self) + Irreps(other)

    def __radd__(self, other):
        return Irreps(other) + Irreps(self)

    @staticmethod
    def iterator(lmax: int) -> Iterator[Irrep]:
        """All irreps with l <= lmax, in sorted order (0o, 0e, 1o, 1e, …)."""
        for l in range(lmax + 1):
            yield Irrep(l, -1)
            yield Irrep(l, 1)

    def D_from_matrix(self, R: np.ndarray) -> np.ndarray:
        """Representation matrix of the 3×3 orthogonal ``R`` (see :func:`nequip_np.so3.wigner_D`)."""
        return wigner_D(self.l, R, p=self.p)

    def __getnewargs__(self):
        return (self[0], self[1])


class MulIr(NamedTuple):
    """``mul`` copies of irrep ``ir``: one block of an :class:`Irreps`."""

    mul: int
    ir: Irrep

    @property
    def dim(self) -> int:
        return self.mul * self.ir.dim

    def __repr__(self) -> str:
        return f"{self.mul}x{self.ir}"

    __str__ = __repr__


class SortResult(NamedTuple):
    """Result of :meth:`Irreps.sort`: ``irreps[p[i]]`` is the original entry ``i``; ``inv = p⁻¹``."""

    irreps: Irreps
    p: tuple
    inv: tuple


def _parse_entry(s: str) -> MulIr:
    m = _MULIR_RE.match(s.strip())
    if not m:
        raise ValueError(
            f"cannot read {s.strip()!r} as an irreps entry: expected 'MULxLP' like '32x0e' or "
            "'LP' like '1o' (MUL, L non-negative integers; P one of e, o, y), entries joined by '+'"
        )
    mul = 1 if m.group(1) is None else int(m.group(1))
    return MulIr(mul, Irrep(f"{m.group(2)}{m.group(3)}"))


def _to_mulir(item) -> MulIr:
    if isinstance(item, MulIr):
        return item
    if isinstance(item, Irrep) or isinstance(item, str):
        return _parse_entry(item) if isinstance(item, str) else MulIr(1, item)
    if isinstance(item, tuple) and len(item) == 2:
        mul, ir = item
        if (
            isinstance(mul, (int, np.integer))
            and not isinstance(mul, bool)
            and not (isinstance(ir, int) and not isinstance(ir, bool))
        ):
            if mul < 0:
                raise ValueError(f"multiplicity must be >= 0, got {mul}")
            return MulIr(int(mul), Irrep(ir))
        return MulIr(1, Irrep(item))  # (l, p)
    raise ValueError(f"cannot read {item!r} as an irreps entry: expected (mul, ir), ir or '32x0e'")


class Irreps(tuple):
    """A direct sum of irreps: a tuple of :class:`MulIr`.

    Accepts ``"32x0e+16x1o"`` (spaces allowed, ``"0e"`` meaning ``"1x0e"``, ``""`` empty), an
    :class:`Irreps`, an :class:`Irrep`, or a list of ``(mul, ir)``, ``(mul, (l, p))``, ``ir`` items.
    """

    def __new__(cls, irreps=None):
        if isinstance(irreps, Irreps):
            return super().__new__(cls, tuple(irreps))
        if irreps is None:
            items: Iterable = ()
        elif isinstance(irreps, Irrep):
            items = [MulIr(1, irreps)]
        elif isinstance(irreps, str):
            items = [_parse_entry(s) for s in irreps.split("+")] if irreps.strip() else []
        else:
            try:
                items = [_to_mulir(x) for x in irreps]
            except TypeError:
                raise ValueError(f"cannot make Irreps from {irreps!r}") from None
        return super().__new__(cls, tuple(items))

    @staticmethod
    def spherical_harmonics(lmax: int, p: int = -1) -> Irreps:
        """``1x0e+1x1o+1x2e+…`` up to ``lmax`` (parity ``p**l``)."""
        return Irreps([(1, (l, p**l)) for l in range(lmax + 1)])

    @property
    def dim(self) -> int:
        return sum(mul * ir.dim for mul, ir in self)

    @property
    def num_irreps(self) -> int:
        return sum(mul for mul, _ in self)

    @property
    def ls(self) -> list[int]:
        return [ir.l for mul, ir in self for _ in range(mul)]

    @property
    def lmax(self) -> int:
        if len(self) == 0:
            raise ValueError("cannot get lmax of an empty Irreps")
        return max(ir.l for _, ir in self)

    def slices(self) -> list[slice]:
        """Column range of each block in the flat feature vector."""
        out, start = [], 0
        for mul_ir in self:
            out.append(slice(start, start + mul_ir.dim))
            start += mul_ir.dim
        return out

    def count(self, ir) -> int:
        """Total multiplicity of ``ir``."""
        ir = Irrep(ir)
        return sum(mul for mul, irrep in self if irrep == ir)

    def __contains__(self, ir) -> bool:
        try:
            ir = Irrep(ir)
        except ValueError:
            return False
        return any(irrep == ir for _, irrep in self)

    def __getitem__(self, i):
        out = super().__getitem__(i)
        return Irreps(out) if isinstance(i, slice) else out

    def __add__(self, other) -> Irreps:
        return Irreps(tuple(self) + tuple(Irreps(other)))

    def __radd__(self, other) -> Irreps:
        return Irreps(other) + self

    def __mul__(self, other) -> Irreps:
        if isinstance(other, (int, np.integer)) and not isinstance(other, bool):
            return Irreps(tuple(self) * int(other))
        return NotImplemented

    __rmul__ = __mul__

    def __eq__(self, other) -> bool:
        if not isinstance(other, Irreps):
            try:
                other = Irreps(other)
            except (ValueError, TypeError):
                return False
        return tuple.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = tuple.__hash__

    def __repr__(self) -> str:
        return "+".join(str(mul_ir) for mul_ir in self)

    __str__ = __repr__

    def sort(self) -> SortResult:
        """Stable sort by irrep; ``p[i]`` is where original entry ``i`` lands, ``inv[j]`` is
        the original index of sorted entry ``j`` (e3nn's definitions)."""
        order = sorted((ir, i, mul) for i, (mul, ir) in enumerate(self))
        inv = tuple(i for _, i, _ in order)
        p = [0] * len(inv)
        for j, i in enumerate(inv):
            p[i] = j
        return SortResult(Irreps([(mul, ir) for ir, _, mul in order]), tuple(p), inv)

    def simplify(self) -> Irreps:
        """Merge *adjacent* equal irreps and drop zero multiplicities (``1x0e+1x0e`` → ``2x0e``,
        but ``0e+1o+0e`` stays)."""
        out: list[list] = []
        for mul, ir in self:
            if out and out[-1][1] == ir:
                out[-1][0] += mul
            elif mul > 0:
                out.append([mul, ir])
        return Irreps([(mul, ir) for mul, ir in out])

    def remove_zero_multiplicities(self) -> Irreps:
        return Irreps([(mul, ir) for mul, ir in self if mul > 0])

    def regroup(self) -> Irreps:
        """``sort().irreps.simplify()``: one block per distinct irrep, in sorted order."""
        return self.sort().irreps.simplify()

    def D_from_matrix(self, R: np.ndarray) -> np.ndarray:
        """Block-diagonal representation matrix (see :func:`nequip_np.so3.irreps_D`)."""
        return irreps_D(self, R)


def irreps_D(irreps, R) -> np.ndarray:
    """Block-diagonal representation of ``R`` on a whole :class:`Irreps` ("mul_ir" layout)."""
    irreps = Irreps(irreps)
    out = np.zeros((irreps.dim, irreps.dim))
    start = 0
    for mul, ir in irreps:
        d = wigner_D(ir.l, R, p=ir.p)
        for _ in range(mul):
            out[start : start + ir.dim, start : start + ir.dim] = d
            start += ir.dim
    return out


def allowed_path(ir1, ir2, ir3) -> bool:
    """Selection rule of a tensor-product path ``ir1 ⊗ ir2 → ir3``: triangle
    :math:`|l_1-l_2| \\le l_3 \\le l_1+l_2` and parity :math:`p_1 p_2 = p_3`."""
    ir1, ir2, ir3 = Irrep(ir1), Irrep(ir2), Irrep(ir3)
    return abs(ir1.l - ir2.l) <= ir3.l <= ir1.l + ir2.l and ir1.p * ir2.p == ir3.p
