r"""The "plan": every static structure of a NequIP model, built once in pure Python.

A plan holds irreps, paths, Clebsch–Gordan blocks, weight offsets, normalisation constants and ALL the
flattened index tables the compiled kernels walk (:class:`ConvTables`, :class:`LinearTables`,
:class:`SelfConnectionTables`, :class:`GateTables`, :class:`SHTable`: contiguous, read-only arrays built
once with the plan). All backends and the tests consume it; kernels receive the tables with the plan
and build none of their own; nothing re-derives paths or tables elsewhere. It lives next to the kernels (which import it
without reaching up into ``model/``); ``nequip_np.model.plan`` re-exports it. Construction follows
nequip 0.19.1 / e3nn 0.6 (``docs/model.md`` explains each rule; reference numbers in brackets are
sections of the nequip dossier the project was specified from):

* hidden irreps per layer: for l in 0..l_max, for p in (+1, −1) if parity else ((−1)^l):
  ``num_features[l] x (l, p)``; the last layer keeps only ``num_features[0] x 0e``;
* gate bookkeeping: reachable scalars / gated irreps, one gate scalar per gated copy, conv output
  ``O = sort(simplify(scalars) + simplify(gates) + simplify(gated)).simplify()``;
* convolution tensor product "uvu": instructions (i in I, j in SH, ir_out in ir_i ⊗ ir_j, ir_out in O),
  path weight √(2 l_out + 1), intermediate irreps MID sorted (stable) then simplified for ``linear_2``;
* e3nn ``Linear``: every (i_in, i_out) pair with equal irreps, weight block (mul_in, mul_out) row-major,
  normalisation 1/√(Σ mul_in into i_out);
* self-connection = e3nn ``FullyConnectedTensorProduct(I, T_f x 0e, O)``: per path weight
  (mul_in, T_f, mul_out), normalisation 1/√(Σ mul_in·T_f into i_out).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from nequip_np.so3 import Irrep, Irreps, clebsch_gordan


@dataclass(frozen=True)
class Block:
    """One contiguous irreps block of a feature vector: columns ``start:start+mul*dim``."""

    mul: int
    l: int
    p: int
    start: int

    @property
    def dim(self) -> int:
        return 2 * self.l + 1

    @property
    def stop(self) -> int:
        return self.start + self.mul * self.dim


def blocks(irreps: Irreps) -> tuple[Block, ...]:
    out, start = [], 0
    for mul, ir in irreps:
        out.append(Block(mul, ir.l, ir.p, start))
        start += mul * ir.dim
    return tuple(out)


def _frozen(a, dtype=np.int64, width: int | None = None) -> np.ndarray:
    """A contiguous, read-only copy of ``a`` (plan tables never change after construction)."""
    out = np.array(a, dtype=dtype)
    out = out.reshape(-1, width) if width is not None else out.reshape(-1)
    out = np.ascontiguousarray(out)
    out.flags.writeable = False
    return out


def _freeze(record):
    """Make every array field of a table record contiguous and read-only (in place); returns it."""
    for f in dataclasses.fields(record):
        a = getattr(record, f.name)
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a)
            a.flags.writeable = False
            object.__setattr__(record, f.name, a)
    return record


@dataclass(frozen=True, eq=False)
class LinearTables:
    r"""A block-diagonal linear map flattened into int64 / float64 arrays, built once with its plan.

    Read by the numba.cuda kernels of ``linear/cuda.py`` (and, with :class:`SelfConnectionTables`,
    ``self_connection/cuda.py``), which upload them once per plan (``_cuda_util.device_record``).
    Path p maps input block ``in`` to output block ``out``; weight (u, w) of path p is column
    ``w_offset + u·mul_out + w`` of the linear weight vector.

    ==================  ============  ===================================================================
    field               shape         meaning
    ==================  ============  ===================================================================
    ``paths``           (P, 6)        in_start, mul_in, dim, out_start, mul_out, w_offset
    ``norm``            (P,)          1/√fan of path p's output block
    ``out_cols``        (dim O, 3)    output column → (first, last) into ``out_paths``, w·dim + m
    ``out_paths``       (·,)          paths writing each output block, block after block (+ one pad)
    ``in_cols``         (dim I, 3)    input column → (first, last) into ``in_paths``, u·dim + m
    ``in_paths``        (·,)          paths reading each input block, block after block (+ one pad)
    ``w_owner``         (n_w, 3)      linear weight column → (path, u, w)
    ==================  ============  ===================================================================

    Example:
        >>> from nequip_np.so3 import Irreps
        >>> t = linear_plan(Irreps("2x0e + 1x1o"), Irreps("3x0e + 1x1o")).tables
        >>> t.paths.tolist()
        [[0, 2, 1, 0, 3, 0], [2, 1, 3, 3, 1, 6]]
        >>> t.w_owner.shape, t.paths.flags.writeable
        ((7, 3), False)
    """

    paths: np.ndarray
    norm: np.ndarray
    out_cols: np.ndarray
    out_paths: np.ndarray
    in_cols: np.ndarray
    in_paths: np.ndarray
    w_owner: np.ndarray


def _linear_fields(bin_, bout, paths_io, norms) -> dict:
    """The :class:`LinearTables` fields of paths ``(in block, out block)`` (weights packed mul_in·mul_out)."""
    rows, off = [], 0
    for i, o in paths_io:
        bi, bo = bin_[i], bout[o]
        rows.append((bi.start, bi.mul, bi.dim, bo.start, bo.mul, off))
        off += bi.mul * bo.mul

    def columns(blks, side):
        lists, cols = [], []
        for b_idx, b in enumerate(blks):
            p0 = len(lists)
            lists.extend(p for p, io in enumerate(paths_io) if io[side] == b_idx)
            cols.extend((p0, len(lists), k) for k in range(b.mul * b.dim))
        return _frozen(cols, width=3), _frozen(lists + [0])

    (out_cols, out_paths), (in_cols, in_paths) = columns(bout, 1), columns(bin_, 0)
    w_owner = [(p, u, w) for p, r in enumerate(rows) for u in range(r[1]) for w in range(r[4])]
    return dict(
        paths=_frozen(rows, width=6),
        norm=_frozen(norms, np.float64),
        out_cols=out_cols,
        out_paths=out_paths,
        in_cols=in_cols,
        in_paths=in_paths,
        w_owner=_frozen(w_owner, width=3),
    )


@dataclass(frozen=True)
class LinearPlan:
    """e3nn ``Linear`` between two irreps: ``out[w] = Σ_u W[u, w] x[u] / √fan``.

    ``paths`` rows: (in block, out block, weight offset); ``norm[k]`` = 1/√fan of path k's output;
    ``bin``/``bout``: the :class:`Block` s of both sides; ``tables``: the flattened :class:`LinearTables`.
    """

    irreps_in: Irreps
    irreps_out: Irreps
    paths: tuple[tuple[int, int, int], ...]
    norm: tuple[float, ...]
    n_weights: int
    bin: tuple[Block, ...]
    bout: tuple[Block, ...]
    tables: LinearTables = field(compare=False)  # derived from the fields above


def linear_plan(irreps_in: Irreps, irreps_out: Irreps) -> LinearPlan:
    paths, off = [], 0
    for i, (mi, iri) in enumerate(irreps_in):
        for o, (mo, iro) in enumerate(irreps_out):
            if iri == iro:
                paths.append((i, o, off))
                off += mi * mo
    fan = {o: 0 for o in range(len(irreps_out))}
    for i, o, _ in paths:
        fan[o] += irreps_in[i].mul
    norm = tuple(float(1.0 / np.sqrt(fan[o])) for _, o, _ in paths)  # Python floats: never upcast float32
    bin_, bout = blocks(irreps_in), blocks(irreps_out)
    tables = LinearTables(**_linear_fields(bin_, bout, [(i, o) for i, o, _ in paths], norm))
    return LinearPlan(irreps_in, irreps_out, tuple(paths), norm, off, bin_, bout, tables)


@dataclass(frozen=True)
class TPPath:
    """One "uvu" path: input block ``i_in`` ⊗ SH block ``l_sh`` → MID block ``i_mid``."""

    i_in: int
    l_sh: int
    i_mid: int
    w_offset: int
    cg: np.ndarray  # (2 l_in + 1, 2 l_sh + 1, 2 l_out + 1), already times √(2 l_out + 1)


#: columns of :attr:`ConvTables.paths`, one row per path (all offsets are feature columns)
IN0, D1, SH0, D2, MID0, D3, WOFF, MUL, NZ0, NZ1 = range(10)


@dataclass(frozen=True, eq=False)
class ConvTables:
    r"""The convolution's paths flattened into contiguous int64 / float64 arrays, built once per plan.

    Every backend's compiled kernels read these (Numba: ``tp_conv/cpu.py``; numba.cuda:
    ``tp_conv/cuda.py``, which uploads them once). :math:`\tilde C` of path p is stored as its non-zero
    entries; the GPU kernels also need them grouped by c, by a and by b (one thread per output element
    reads only its own non-zeros), with row pointers ``ptr[p, k] : ptr[p, k+1]``.

    ==================  ============  ===================================================================
    field               shape         meaning
    ==================  ============  ===================================================================
    ``paths``           (P, 10)       IN0, D1, SH0, D2, MID0, D3, WOFF, MUL, NZ0, NZ1 (module constants)
    ``cg_idx/cg_val``   (nnz, 3/–)    non-zeros (a, b, c), value, path after path (rows NZ0:NZ1)
    ``max_yc/max_xu``   int           scratch sizes: max d1·d3 and max d1·mul over paths
    ``in_cols/in_inv``  (dim I,)      column gather to/from the "u-fastest" layout of the input (CPU)
    ``mid_cols/mid_inv`` (dim MID,)   the same for the output
    ``mid_owner``       (dim MID, 3)  output column → (path, u, c), in column order (MID is sorted, not in path order)
    ``w_owner``         (n_w, 2)      weight column → (path, u)
    ``in_owner``        (dim I, 4)    input column → (first, last) into ``in_paths``, u, a
    ``in_paths``        (·,)          paths reading each input block, block after block
    ``sh_owner``        (dim SH, 3)   SH component → (first, last) into ``sh_paths``, b
    ``sh_paths``        (·,)          paths using each SH degree l
    ``nz_<k>``          (nnz, 3)      non-zeros grouped by k ∈ {c, a, b}, ``nz_<k>_val``, ``nz_<k>_ptr``
    ==================  ============  ===================================================================
    """

    paths: np.ndarray
    cg_idx: np.ndarray
    cg_val: np.ndarray
    max_yc: int
    max_xu: int
    in_cols: np.ndarray
    in_inv: np.ndarray
    mid_cols: np.ndarray
    mid_inv: np.ndarray
    mid_owner: np.ndarray
    w_owner: np.ndarray
    in_owner: np.ndarray
    in_paths: np.ndarray
    sh_owner: np.ndarray
    sh_paths: np.ndarray
    nz_c: np.ndarray
    nz_c_val: np.ndarray
    nz_c_ptr: np.ndarray
    nz_a: np.ndarray
    nz_a_val: np.ndarray
    nz_a_ptr: np.ndarray
    nz_b: np.ndarray
    nz_b_val: np.ndarray
    nz_b_ptr: np.ndarray


@dataclass(frozen=True)
class ConvPlan:
    irreps_in: Irreps
    irreps_sh: Irreps
    irreps_mid: Irreps  # sorted, NOT simplified: one block per path
    paths: tuple[TPPath, ...]
    n_weights: int
    tables: ConvTables


def u_fastest(irreps: Irreps) -> tuple[np.ndarray, np.ndarray]:
    """Column gather ``cols`` with ``x[:, cols]`` = x in the u-fastest layout (block column start+m*mul+u),
    and its inverse permutation."""
    cols = [b.start + np.arange(b.mul * b.dim).reshape(b.mul, b.dim).T.ravel() for b in blocks(irreps)]
    cols = np.concatenate(cols).astype(np.int64) if cols else np.zeros(0, np.int64)
    return cols, np.argsort(cols).astype(np.int64)


def _i64(rows, width: int) -> np.ndarray:
    return np.array(rows, np.int64).reshape(-1, width)


def conv_tables(irreps_in: Irreps, irreps_sh: Irreps, irreps_mid: Irreps, paths: tuple[TPPath, ...]) -> ConvTables:
    """Flatten the paths into :class:`ConvTables` (see its field table)."""
    bin_, bmid = blocks(irreps_in), blocks(irreps_mid)
    kmax = max([max(path.cg.shape) for path in paths] + [1])
    rows, idx, val, mid_owner, w_owner = [], [], [], [], []
    by = {key: ([], [], []) for key in "cab"}  # key -> (index rows, values, ptr rows)
    for p, path in enumerate(paths):
        bi, bm = bin_[path.i_in], bmid[path.i_mid]
        a, b, c = np.nonzero(path.cg)
        nz0 = len(val)
        idx.extend(zip(a, b, c))
        val.extend(path.cg[a, b, c])
        rows.append(
            (bi.start, bi.dim, path.l_sh**2, 2 * path.l_sh + 1, bm.start, bm.dim, path.w_offset, bi.mul, nz0, len(val))
        )
        for key, keyvals in (("c", c), ("a", a), ("b", b)):
            k_idx, k_val, k_ptr = by[key]
            order = np.argsort(keyvals, kind="stable")
            start = len(k_val)
            k_ptr.append(start + np.concatenate([[0], np.cumsum(np.bincount(keyvals, minlength=kmax))]))
            k_idx.extend(zip(a[order], b[order], c[order]))
            k_val.extend(path.cg[a[order], b[order], c[order]])
        mid_owner.extend((bm.start + u * bm.dim + cc, p, u, cc) for u in range(bi.mul) for cc in range(bm.dim))
        w_owner.extend((p, u) for u in range(bi.mul))
    in_paths, in_owner = [], []
    for i, bi in enumerate(bin_):
        p0 = len(in_paths)
        in_paths.extend(p for p, path in enumerate(paths) if path.i_in == i)
        in_owner.extend((p0, len(in_paths), u, a) for u in range(bi.mul) for a in range(bi.dim))
    sh_paths, sh_owner = [], []
    for l in range(max(ir.l for _, ir in irreps_sh) + 1):
        p0 = len(sh_paths)
        sh_paths.extend(p for p, path in enumerate(paths) if path.l_sh == l)
        sh_owner.extend((p0, len(sh_paths), b) for b in range(2 * l + 1))
    (in_cols, in_inv), (mid_cols, mid_inv) = u_fastest(irreps_in), u_fastest(irreps_mid)
    nz = {}
    for key in "cab":
        k_idx, k_val, k_ptr = by[key]
        nz[f"nz_{key}"], nz[f"nz_{key}_val"] = _i64(k_idx, 3), np.array(k_val, np.float64).reshape(-1)
        nz[f"nz_{key}_ptr"] = _i64(k_ptr, kmax + 1)
    return _freeze(
        ConvTables(
            paths=_i64(rows, 10),
            cg_idx=_i64(idx, 3),
            cg_val=np.array(val, np.float64).reshape(-1),
            max_yc=int(max([r[D1] * r[D3] for r in rows] or [1])),
            max_xu=int(max([r[D1] * r[MUL] for r in rows] or [1])),
            in_cols=in_cols,
            in_inv=in_inv,
            mid_cols=mid_cols,
            mid_inv=mid_inv,
            mid_owner=_i64([row[1:] for row in sorted(mid_owner)], 3),
            w_owner=_i64(w_owner, 2),
            in_owner=_i64(in_owner, 4),
            in_paths=np.array(in_paths + [0], np.int64),
            sh_owner=_i64(sh_owner, 3),
            sh_paths=np.array(sh_paths + [0], np.int64),
            **nz,
        )
    )


def conv_plan(irreps_in: Irreps, irreps_sh: Irreps, irreps_out: Irreps) -> ConvPlan:
    mid, raw = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for _mul_sh, ir_sh in irreps_sh:
            for ir_out in ir_in * ir_sh:
                if ir_out in irreps_out:
                    raw.append((i, ir_sh.l, len(mid)))
                    mid.append((mul, ir_out))
    mid_sorted, perm, _ = Irreps(mid).sort()
    paths, off = [], 0
    for i, l_sh, k in raw:
        l_in, l_out = irreps_in[i].ir.l, mid[k][1].l
        cg = clebsch_gordan(l_in, l_sh, l_out) * np.sqrt(2 * l_out + 1)
        paths.append(TPPath(i, l_sh, perm[k], off, np.ascontiguousarray(cg)))
        off += irreps_in[i].mul
    paths = tuple(paths)
    return ConvPlan(irreps_in, irreps_sh, mid_sorted, paths, off, conv_tables(irreps_in, irreps_sh, mid_sorted, paths))


@dataclass(frozen=True, eq=False)
class SHTable:
    r"""Spherical harmonics up to ``l_max`` as coefficient tables, for the compiled kernels.

    Component k = (l, m) is :math:`F_m(X, Y)\sum_t c_t Z^{j_t} r_2^{k_t}` over terms
    ``ptr[k]:ptr[k+1]``, with :math:`(X, Y, Z) = (u_z, u_x, u_y)` (``scalar_math.sh_value``), from the
    generated exact coefficients (``so3._generated_sh.EXACT_COEFFICIENTS``).
    """

    l: np.ndarray  # (K,) degree of component k
    m: np.ndarray  # (K,) order of component k
    ptr: np.ndarray  # (K + 1,)
    j: np.ndarray  # (T,) power of Z of term t
    k: np.ndarray  # (T,) power of r² of term t
    c: np.ndarray  # (T,) coefficient of term t


@cache
def sh_table(l_max: int) -> SHTable:
    """The :class:`SHTable` of components k < (l_max+1)² (built once per l_max)."""
    from nequip_np.so3 import _generated_sh as gen

    if not 0 <= l_max <= gen.LMAX:
        raise ValueError(f"l_max must be in 0..{gen.LMAX}, got {l_max}")
    ls, ms, ptr, js, ks, cs = [], [], [0], [], [], []
    for l in range(l_max + 1):
        for m in range(-l, l + 1):
            for term in gen.EXACT_COEFFICIENTS[f"{l},{m}"]:
                jk, coef = term.split(":")
                j, k = (int(t) for t in jk.split(","))
                js.append(j), ks.append(k), cs.append(float(eval(coef, {"sqrt": math.sqrt})))  # noqa: S307
            ls.append(l), ms.append(m), ptr.append(len(cs))
    i64 = lambda a: np.array(a, np.int64)  # noqa: E731
    return _freeze(SHTable(i64(ls), i64(ms), i64(ptr), i64(js), i64(ks), np.array(cs, np.float64)))


@dataclass(frozen=True, eq=False)
class SelfConnectionTables(LinearTables):
    r""":class:`LinearTables` of the self-connection's per-species linear maps :math:`V_t`, plus
    ``sc_off`` (P,): the offset of path p's (mul_in, n_attr, mul_out) block in the FCTP weight vector.

    ``self_connection/cuda.py`` forms :math:`V_t` (laid out as a linear weight vector, ``w_offset``
    packing mul_in·mul_out) and then runs the linear kernels on these tables.
    """

    sc_off: np.ndarray


@dataclass(frozen=True)
class SelfConnectionPlan:
    """FCTP(I, T_f x 0e, O): ``s[k][w] = Σ_{u,v} W[u, v, w] h[i][u] a[v] / √fan_k``."""

    irreps_in: Irreps
    irreps_out: Irreps
    n_attr: int
    paths: tuple[tuple[int, int, int], ...]  # (in block, out block, weight offset)
    norm: tuple[float, ...]
    n_weights: int
    bin: tuple[Block, ...]
    bout: tuple[Block, ...]
    tables: SelfConnectionTables = field(compare=False)  # derived from the fields above


def self_connection_plan(irreps_in: Irreps, n_attr: int, irreps_out: Irreps) -> SelfConnectionPlan:
    paths, off = [], 0
    for i, (mi, iri) in enumerate(irreps_in):
        for o, (mo, iro) in enumerate(irreps_out):
            if iro == iri:  # ir_out ∈ ir_in ⊗ 0e
                paths.append((i, o, off))
                off += mi * n_attr * mo
    fan = {o: 0 for o in range(len(irreps_out))}
    for i, o, _ in paths:
        fan[o] += irreps_in[i].mul * n_attr
    norm = tuple(float(1.0 / np.sqrt(fan[o])) for _, o, _ in paths)  # Python floats: never upcast float32
    bin_, bout = blocks(irreps_in), blocks(irreps_out)
    tables = SelfConnectionTables(
        **_linear_fields(bin_, bout, [(i, o) for i, o, _ in paths], norm), sc_off=_frozen([w for _, _, w in paths])
    )
    return SelfConnectionPlan(irreps_in, irreps_out, n_attr, tuple(paths), norm, off, bin_, bout, tables)


#: ``GateTables.role[c, 0]``: what column c of z is (``role[c, 1]`` is its index within that role)
ROLE_SCALAR, ROLE_GATE, ROLE_GATED, ROLE_UNUSED = 0, 1, 2, 3


@dataclass(frozen=True, eq=False)
class GateTables:
    r"""The gate's column tables as contiguous read-only int64 arrays, built once with its plan.

    Read by ``gate/cpu.py`` and ``gate/cuda.py`` (uploaded once per plan).

    ==================  ============  ===================================================================
    field               shape         meaning
    ==================  ============  ===================================================================
    ``scalar_cols``     (S,)          columns of z holding the scalars, in output order
    ``scalar_parity``   (S,)          +1 → normalised SiLU, −1 → normalised tanh
    ``gate_cols``       (G,)          columns of z holding the gate scalars
    ``gated_cols``      (V,)          columns of z holding the gated features, in output order
    ``gated_copy``      (V,)          gate index multiplying each gated column
    ``role``            (dim z, 2)    column of z → (``ROLE_*``, index within that role)
    ``gate_ptr``        (G + 1,)      gated columns of gate q: ``gate_perm[gate_ptr[q]:gate_ptr[q+1]]``
    ``gate_perm``       (V,)          gated column indices grouped by gate (stable)
    ==================  ============  ===================================================================
    """

    scalar_cols: np.ndarray
    scalar_parity: np.ndarray
    gate_cols: np.ndarray
    gated_cols: np.ndarray
    gated_copy: np.ndarray
    role: np.ndarray
    gate_ptr: np.ndarray
    gate_perm: np.ndarray


def gate_tables(dim_z: int, scalar_cols, scalar_parity, gate_cols, gated_cols, gated_copy) -> GateTables:
    """Build :class:`GateTables` from the gate's column lists."""
    role = np.full((dim_z, 2), (ROLE_UNUSED, 0), np.int64)
    for r, cols in ((ROLE_SCALAR, scalar_cols), (ROLE_GATE, gate_cols), (ROLE_GATED, gated_cols)):
        for k, c in enumerate(cols):
            role[c] = (r, k)
    copy = np.asarray(gated_copy, np.int64).reshape(-1)
    ptr = np.zeros(len(gate_cols) + 1, np.int64)
    np.cumsum(np.bincount(copy, minlength=len(gate_cols)), out=ptr[1:])
    return GateTables(
        scalar_cols=_frozen(scalar_cols),
        scalar_parity=_frozen(scalar_parity),
        gate_cols=_frozen(gate_cols),
        gated_cols=_frozen(gated_cols),
        gated_copy=_frozen(copy),
        role=_frozen(role, width=2),
        gate_ptr=_frozen(ptr),
        gate_perm=_frozen(np.argsort(copy, kind="stable")),
    )


@dataclass(frozen=True)
class GatePlan:
    r"""e3nn ``Gate`` on the conv output O (sorted layout).

    ``scalar_cols``/``gate_cols``/``gated_cols``: column indices of z (layout O) holding the scalars,
    gates and gated features in the gate's own (unsorted) order. Output = [φ(scalars), φ_g(gates)·gated].
    ``scalar_parity`` / ``gate_parity``: per column, +1 → normalised SiLU, −1 → normalised tanh.
    ``gated_copy``: for each gated column, the index of the gate scalar multiplying it.
    ``tables``: the same columns (and the inverse tables of the backward pass) as :class:`GateTables`.
    """

    irreps_in: Irreps
    irreps_out: Irreps
    scalar_cols: np.ndarray
    scalar_parity: np.ndarray
    gate_cols: np.ndarray
    gate_parity: int
    gated_cols: np.ndarray
    gated_copy: np.ndarray
    tables: GateTables


def _reachable(irreps_in: Irreps, irreps_sh: Irreps, ir: Irrep) -> bool:
    return any(ir in a * b for _, a in irreps_in for _, b in irreps_sh)


def gate_plan(irreps_in: Irreps, irreps_sh: Irreps, hidden: Irreps) -> GatePlan:
    scalars = Irreps([(m, ir) for m, ir in hidden if ir.l == 0 and _reachable(irreps_in, irreps_sh, ir)])
    gated = Irreps([(m, ir) for m, ir in hidden if ir.l > 0 and _reachable(irreps_in, irreps_sh, ir)])
    gate_ir = Irrep("0e") if _reachable(irreps_in, irreps_sh, Irrep("0e")) else Irrep("0o")
    gates = Irreps([(m, gate_ir) for m, _ in gated])
    parts = [scalars.simplify(), gates.simplify(), gated.simplify()]
    concat = Irreps([mi for part in parts for mi in part])
    sorted_irreps, perm, _ = concat.sort()
    # column range of every concatenated entry inside the sorted layout
    starts = np.cumsum([0] + [m * ir.dim for m, ir in sorted_irreps])
    cols, k = [], 0
    for part in parts:
        part_cols = []
        for m, ir in part:
            s = starts[perm[k]]
            part_cols.append(np.arange(s, s + m * ir.dim))
            k += 1
        cols.append(np.concatenate(part_cols).astype(np.int64) if part_cols else np.zeros(0, np.int64))
    scalar_parity = np.concatenate([np.full(m, ir.p) for m, ir in parts[0]] or [np.zeros(0)])
    # gated copies are numbered across all gated blocks: the u-th gate scales the u-th gated copy
    offsets = np.cumsum([0] + [m for m, _ in parts[2]])
    gated_copy = np.concatenate(
        [np.repeat(np.arange(m), ir.dim) + offsets[b] for b, (m, ir) in enumerate(parts[2])] or [np.zeros(0, np.int64)]
    ).astype(np.int64)
    scalar_parity = scalar_parity.astype(np.int64)
    return GatePlan(
        irreps_in=sorted_irreps.simplify(),
        irreps_out=parts[0] + parts[2],
        scalar_cols=cols[0],
        scalar_parity=scalar_parity,
        gate_cols=cols[1],
        gate_parity=gate_ir.p,
        gated_cols=cols[2],
        gated_copy=gated_copy,
        tables=gate_tables(sorted_irreps.dim, cols[0], scalar_parity, cols[1], cols[2], gated_copy),
    )


@dataclass(frozen=True)
class LayerPlan:
    index: int
    irreps_in: Irreps
    linear_1: LinearPlan
    conv: ConvPlan
    linear_2: LinearPlan
    self_connection: SelfConnectionPlan | None
    gate: GatePlan
    radial_dims: tuple[int, ...]  # [num_bessels] + depth·[width] + [n_w]


@dataclass(frozen=True)
class ModelPlan:
    l_max: int
    irreps_sh: Irreps
    n_attr: int
    layers: tuple[LayerPlan, ...]
    readout_dims: tuple[int, ...]


def hidden_irreps(l_max: int, parity: bool, num_features: list[int]) -> Irreps:
    out = []
    for l in range(l_max + 1):
        for p in (1, -1) if parity else ((-1) ** l,):
            out.append((num_features[l], (l, p)))
    return Irreps(out)


def build_plan(
    *,
    l_max: int,
    parity: bool,
    num_layers: int,
    num_features: list[int],
    type_embed_num_features: int,
    num_bessels: int,
    radial_mlp_depth: int,
    radial_mlp_width: int,
    readout_mlp_hidden_layers_depth: int,
    readout_mlp_hidden_layers_width: int,
) -> ModelPlan:
    irreps_sh = Irreps.spherical_harmonics(l_max)
    irreps = Irreps([(type_embed_num_features, (0, 1))])
    layers = []
    for k in range(num_layers):
        last = k == num_layers - 1
        hidden = Irreps([(num_features[0], (0, 1))]) if last else hidden_irreps(l_max, parity, num_features)
        gate = gate_plan(irreps, irreps_sh, hidden)
        conv = conv_plan(irreps, irreps_sh, gate.irreps_in)
        layers.append(
            LayerPlan(
                index=k,
                irreps_in=irreps,
                linear_1=linear_plan(irreps, irreps),
                conv=conv,
                linear_2=linear_plan(conv.irreps_mid.simplify(), gate.irreps_in),
                self_connection=None
                if k == 0
                else self_connection_plan(irreps, type_embed_num_features, gate.irreps_in),
                gate=gate,
                radial_dims=(num_bessels,) + (radial_mlp_width,) * radial_mlp_depth + (conv.n_weights,),
            )
        )
        irreps = gate.irreps_out
    readout_dims = (num_features[0],) + (readout_mlp_hidden_layers_width,) * readout_mlp_hidden_layers_depth + (1,)
    return ModelPlan(l_max, irreps_sh, type_embed_num_features, tuple(layers), readout_dims)


def mlp_alphas(dims, nonlinearity="silu"):
    """nequip forward init: gain/√fan_in with gain 1 for the first layer, √2 after a nonlinearity."""
    # Python floats: a NumPy float64 scalar would silently promote float32 models to float64
    return [
        float((1.0 if (k == 0 or not nonlinearity) else np.sqrt(2.0)) / np.sqrt(d)) for k, d in enumerate(dims[:-1])
    ]
