r"""Self-connection (FCTP with the species embedding) — CPU backend: BLAS per species and block.

What differs from the reference: the per-species maps :math:`V_t` are applied with BLAS on the
m-major rows of ``linear/cpu.py`` (one ``gemm`` per species and path) instead of ``np.einsum``;
species row sets are built once per call with a stable argsort. Reductions over nodes
(:math:`\bar V_t`) are BLAS's, independent of the Numba thread count.

For at most ``SMALL_ROWS`` rows of real numbers (one molecule) the forward pass and the forces-only
reverse pass instead form every species' map :math:`V_t` in the layout of a linear weight vector
(``plan.tables``, as the CUDA kernels do; one BLAS product per path) and run the linear layer's
one-call Numba kernels (``linear/cpu.py``) with atom n reading its own :math:`V_{t(n)}`. Measured on
aspirin it is within the noise of the per-path NumPy version (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

from nequip_np.kernels.linear.cpu import SMALL_ROWS, _backward_small, _forward_small, add_rows, to_rows


def _species_rows(types, n_types):
    order = np.argsort(types, kind="stable")
    bounds = np.searchsorted(types[order], np.arange(n_types + 1))
    return [order[bounds[t] : bounds[t + 1]] for t in range(n_types)]


def _select(a, idx):
    return a if idx.size == a.shape[0] else a[idx]  # one species: no gather


#: atoms up to which all species' maps are applied to every atom in one product per path, and each
#: atom's own species block is then selected (T× the flops of the per-species products, far fewer
#: Python steps; above it, and with more species, the per-species loop below)
ALL_SPECIES_ROWS = 512


def _all_species(n, n_types) -> bool:
    return n_types == 1 or n * n_types <= ALL_SPECIES_ROWS


def _v_all(weight, attr, off, mul_in, n_attr, mul_out):
    r""":math:`V_t[u, w] = \sum_v a_{tv} W[u, v, w]` for all species at once, as (u, T, w)."""
    return attr @ weight[off : off + mul_in * n_attr * mul_out].reshape(mul_in, n_attr, mul_out)


def _apply_all(rows, v_cat, types, d, width):
    """rows (n·d, k) times every species' (k, width) map in ``v_cat`` (k, T·width); keep atom n's species."""
    n = types.shape[0]
    prod = (rows @ v_cat).reshape(n, d, -1, width)
    return prod[np.arange(n), :, types, :].reshape(n * d, width)


# ---------------------------------------------------------------- few rows: one Numba call for all paths
def _form_v(weight, attr, plan, dtype):
    r"""(T, n_lin): every species' map :math:`V_t[u, w] = \sum_v a_{tv} W[u, v, w]` laid out as a linear
    weight vector (``plan.tables``: column ``w_offset + u·mul_out + w``); one BLAS product per path."""
    t = plan.tables
    V = np.empty((attr.shape[0], max(1, _n_lin(plan))), dtype=dtype)
    for p, (i, k, off) in enumerate(plan.paths):
        mi, mo, woff = plan.bin[i].mul, plan.bout[k].mul, t.paths[p, 5]
        Vp = _v_all(weight, attr, off, mi, plan.n_attr, mo)  # (u, T, w)
        V[:, woff : woff + mi * mo] = Vp.transpose(1, 0, 2).reshape(attr.shape[0], mi * mo)
    return V


def _small(h, *arrays) -> bool:
    """One molecule of real numbers: the one-call Numba path (aspirin: ~12 NumPy calls per path → 1 call)."""
    return h.shape[0] <= SMALL_ROWS and all(a.dtype.kind == "f" for a in (h,) + arrays)


def _n_lin(plan) -> int:
    return int(sum(plan.bin[i].mul * plan.bout[k].mul for i, k, _ in plan.paths))


def forward(h, attr, types, weight, plan):
    n, n_types = h.shape[0], attr.shape[0]
    bin_, bout = plan.bin, plan.bout
    dtype = np.result_type(h, attr, weight)
    if _small(h, attr, weight):
        out = np.zeros((n, plan.irreps_out.dim), dtype=dtype)
        t, V = plan.tables, _form_v(weight, attr, plan, dtype)
        _forward_small(np.ascontiguousarray(h, dtype), V, np.ascontiguousarray(types, np.int64), t.paths, t.norm, out)
        return out, (h, attr, types, weight, plan)
    if _all_species(n, n_types):
        out = np.zeros((n, plan.irreps_out.dim), dtype=dtype)
        for (i, k, off), norm in zip(plan.paths, plan.norm):
            bi, bk = bin_[i], bout[k]
            V = _v_all(weight, attr, off, bi.mul, plan.n_attr, bk.mul)  # (u, T, w)
            prod = _apply_all(to_rows(h, bi.start, bi.mul, bi.dim), V.reshape(bi.mul, -1), types, bi.dim, bk.mul)
            add_rows(out, prod, bk.start, bk.mul, bk.dim, norm)
        return out, (h, attr, types, weight, plan)
    out = np.zeros((n, plan.irreps_out.dim), dtype=dtype)
    rows = _species_rows(types, n_types)
    for t, idx in enumerate(rows):
        if not idx.size:
            continue
        ht = _select(h, idx)
        ot = np.zeros((idx.size, out.shape[1]), dtype=dtype)
        for (i, k, off), norm in zip(plan.paths, plan.norm):
            bi, bk = bin_[i], bout[k]
            W = weight[off : off + bi.mul * plan.n_attr * bk.mul].reshape(bi.mul, plan.n_attr, bk.mul)
            V = np.tensordot(attr[t], W, axes=(0, 1))  # (u, w)
            add_rows(ot, to_rows(ht, bi.start, bi.mul, bi.dim) @ V, bk.start, bk.mul, bk.dim, norm)
        if idx.size == n:
            out = ot
        else:
            out[idx] = ot
    return out, (h, attr, types, weight, plan)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_h, d_attr, d_weight)``; ``d_attr``, ``d_weight`` are None when ``weight_grads=False``."""
    h, attr, types, weight, plan = cache
    n, n_types = h.shape[0], attr.shape[0]
    dtype = np.result_type(h, attr, weight, d_out)
    bin_, bout = plan.bin, plan.bout
    d_h = np.zeros(h.shape, dtype=dtype)
    if not weight_grads and _small(d_out, h, attr, weight):
        t, V = plan.tables, _form_v(weight, attr, plan, dtype)
        _backward_small(
            np.ascontiguousarray(d_out, dtype), V, np.ascontiguousarray(types, np.int64), t.paths, t.norm, d_h
        )
        return d_h, None, None
    if not weight_grads and _all_species(n, n_types):
        for (i, k, off), norm in zip(plan.paths, plan.norm):
            bi, bk = bin_[i], bout[k]
            V = _v_all(weight, attr, off, bi.mul, plan.n_attr, bk.mul)  # (u, T, w)
            vt = np.ascontiguousarray(V.transpose(2, 1, 0)).reshape(bk.mul, -1)  # (w, T·u)
            prod = _apply_all(to_rows(d_out, bk.start, bk.mul, bk.dim), vt, types, bk.dim, bi.mul)
            add_rows(d_h, prod, bi.start, bi.mul, bi.dim, norm)
        return d_h, None, None
    if not weight_grads:  # forces only: d_h = Σ_paths (d_out rows) V_tᵀ, no weight or attribute gradient
        for t, idx in enumerate(_species_rows(types, n_types)):
            if not idx.size:
                continue
            dst = _select(d_out, idx)
            dht = np.zeros((idx.size, h.shape[1]), dtype=dtype)
            for (i, k, off), norm in zip(plan.paths, plan.norm):
                bi, bk = bin_[i], bout[k]
                W = weight[off : off + bi.mul * plan.n_attr * bk.mul].reshape(bi.mul, plan.n_attr, bk.mul)
                V = attr[t] @ W  # (u, w)
                add_rows(dht, to_rows(dst, bk.start, bk.mul, bk.dim) @ V.T, bi.start, bi.mul, bi.dim, norm)
            if idx.size == n:
                d_h = dht
            else:
                d_h[idx] = dht
        return d_h, None, None
    d_attr = np.zeros(attr.shape, dtype=dtype)
    d_w = np.zeros(weight.shape, dtype=dtype)
    rows = _species_rows(types, n_types)
    for t, idx in enumerate(rows):
        if not idx.size:
            continue
        ht, dst = _select(h, idx), _select(d_out, idx)
        dht = np.zeros((idx.size, h.shape[1]), dtype=dtype)
        for (i, k, off), norm in zip(plan.paths, plan.norm):
            bi, bk = bin_[i], bout[k]
            size = bi.mul * plan.n_attr * bk.mul
            W = weight[off : off + size].reshape(bi.mul, plan.n_attr, bk.mul)
            V = np.tensordot(attr[t], W, axes=(0, 1))
            hr, dsr = to_rows(ht, bi.start, bi.mul, bi.dim), to_rows(dst, bk.start, bk.mul, bk.dim)
            add_rows(dht, dsr @ V.T, bi.start, bi.mul, bi.dim, norm)
            dV = norm * (dsr.T @ hr).T  # (u, w)
            d_w[off : off + size] += np.einsum("uw,v->uvw", dV, attr[t]).ravel()
            d_attr[t] += np.einsum("uw,uvw->v", dV, W)
        if idx.size == n:
            d_h += dht
        else:
            d_h[idx] += dht
    return d_h, d_attr, d_w
