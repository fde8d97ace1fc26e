r"""Self-connection (FCTP with the species embedding) — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: the per-species matrices :math:`V_t[u, w] = \sum_v W[u, v, w] A[t, v]`
are formed by one small kernel (one thread per (t, u, w)) into a (T, n_lin) array laid out like a
linear layer's weights, and the operation then *is* the linear layer with a per-node weight set
(``linear/cuda.py``: one thread per output element, no per-species row gathers). Backward: the
linear kernels give :math:`\bar h` and :math:`\bar V_t` (per-species node sums in node order,
deterministic); two small kernels contract :math:`\bar V` back to :math:`\bar W` (one thread per weight)
and :math:`\bar A` (one thread per (t, v)). All tables are the plan's ``SelfConnectionTables``
(``kernels/plan.py``: the linear tables of :math:`V_t` plus the FCTP weight offsets), uploaded once per plan.
"""

from __future__ import annotations

from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.linear.cuda import species_linear_backward, species_linear_forward


def _k_form_v(W, attr, table, wtab, sc_off, V):
    """V[t, q] = Σ_v W[sc_off + (u·A + v)·mo + w] attr[t, v] for linear weight q = (path, u, w)."""
    i = cuda.grid(1)
    nq = V.shape[1]
    na = attr.shape[1]
    if i < V.shape[0] * nq:
        t = i // nq
        q = i - t * nq
        p = wtab[q, 0]
        mo = table[p, 4]
        base = sc_off[p] + wtab[q, 1] * na * mo + wtab[q, 2]
        acc = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        for v in range(na):
            acc += W[base + v * mo] * attr[t, v]
        V[t, q] = acc


def _k_grad_w(dV, attr, table, wtab, sc_off, dW):
    """dW[sc index of (q, v)] = Σ_t dV[t, q] attr[t, v]; one thread per (q, v)."""
    i = cuda.grid(1)
    na = attr.shape[1]
    if i < dV.shape[1] * na:
        q = i // na
        v = i - q * na
        p = wtab[q, 0]
        mo = table[p, 4]
        acc = ZERO  # noqa: F821
        for t in range(dV.shape[0]):
            acc += dV[t, q] * attr[t, v]
        dW[sc_off[p] + (wtab[q, 1] * na + v) * mo + wtab[q, 2]] = acc


def _k_grad_attr(dV, W, table, wtab, sc_off, na, d_attr):
    """d_attr[t, v] = Σ_q dV[t, q] W[sc index of (q, v)]; one thread per (t, v)."""
    i = cuda.grid(1)
    if i < dV.shape[0] * na:
        t = i // na
        v = i - t * na
        acc = ZERO  # noqa: F821
        for q in range(dV.shape[1]):
            p = wtab[q, 0]
            mo = table[p, 4]
            acc += dV[t, q] * W[sc_off[p] + (wtab[q, 1] * na + v) * mo + wtab[q, 2]]
        d_attr[t, v] = acc


def _form_v(Wd, ad, t):
    V = cu.device_empty((ad.shape[0], t.w_owner.shape[0]), Wd.dtype)
    cu.launch(_k_form_v, Wd.dtype, V.size, Wd, ad, t.paths, t.w_owner, t.sc_off, V)
    return V


def forward(h, attr, types, weight, plan):
    cu.require_cuda()
    dt = cu.common_dtype(h, attr, weight)
    hd, ad, Wd, td = cu.to_device(h, dt), cu.to_device(attr, dt), cu.to_device(weight, dt), cu.index_array(types)
    t = cu.device_record(plan.tables)
    out = species_linear_forward(hd, _form_v(Wd, ad, t), td, 1, t, plan.irreps_out.dim)
    return cu.finish(out, h, attr, weight), (hd, ad, td, Wd, plan, h)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_h, d_attr, d_weight)``; ``d_attr``, ``d_weight`` are None when ``weight_grads=False``."""
    hd, ad, td, Wd, plan, like = cache
    dt = cu.common_dtype(hd, d_out)
    ds, hd, ad, Wd = cu.to_device(d_out, dt), cu.to_device(hd, dt), cu.to_device(ad, dt), cu.to_device(Wd, dt)
    t = cu.device_record(plan.tables)
    d_h, dV = species_linear_backward(ds, hd, _form_v(Wd, ad, t), td, 1, t)
    if not weight_grads:
        return cu.finish(d_h, like, d_out), None, None
    d_w = cu.device_empty(Wd.shape, dt)
    cu.launch(_k_grad_w, dt, t.w_owner.shape[0] * ad.shape[1], dV, ad, t.paths, t.w_owner, t.sc_off, d_w)
    d_attr = cu.device_empty(ad.shape, dt)
    cu.launch(_k_grad_attr, dt, d_attr.size, dV, Wd, t.paths, t.w_owner, t.sc_off, ad.shape[1], d_attr)
    return cu.finish((d_h, d_attr, d_w), like, d_out)
