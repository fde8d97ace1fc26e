r"""The model's between-operation steps — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: everything stays on the device. ``upload`` / ``to_host`` are the
only copies, and they are counted (``_cuda_util.transfer_bytes``); ``resident`` uploads a value once
per content and serves it from the device afterwards. Elementwise steps are one thread per output
element on (R, C) views, a (R, 1) operand broadcasting along rows. ``cast`` of an array already in the
target dtype returns it (no copy: the model never writes into its inputs). Sums by index
(``scatter_sum``, the forces and strain reduction) are segmented reductions over the CSR of the index
(``_cuda_util.csr_device``, built once per index array from its host copy): one thread per output
element, a float64 / complex128 register accumulator, no atomics — deterministic, as ``tp_conv``.
``total`` is one thread summing serially (it only ever sees N per-atom values, for a single-species
model's scale/shift gradient).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from nequip_np.kernels import _cuda_util as cu


def _k_binary(a, b, op, out):
    t = cuda.grid(1)
    C = out.shape[1]
    if t < out.shape[0] * C:
        i = t // C
        j = t - i * C
        x = a[i, j if a.shape[1] > 1 else 0]
        y = b[i, j if b.shape[1] > 1 else 0]
        out[i, j] = x + y if op == 0 else x * y


def _k_scalar_add(s, b, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = s + b[i]


def _k_fill(out, value):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = value


def _k_gather_rows(a, index, out):
    t = cuda.grid(1)
    C = out.shape[1]
    if t < out.shape[0] * C:
        i = t // C
        j = t - i * C
        out[i, j] = a[index[i], j]


def _k_segment_sum(values, ptr, perm, out):
    t = cuda.grid(1)
    C = out.shape[1]
    if t < out.shape[0] * C:
        i = t // C
        j = t - i * C
        acc = ZERO  # noqa: F821 - bound per dtype by _cuda_util.compile_kernel
        for k in range(ptr[i], ptr[i + 1]):
            acc += values[perm[k], j]
        out[i, j] = acc


def _k_total(a, out):
    if cuda.grid(1) == 0:
        acc = ZERO  # noqa: F821
        for k in range(a.shape[0]):
            acc += a[k]
        out[0] = acc


def _k_forces(g, dptr, dperm, sptr, sperm, out):
    t = cuda.grid(1)
    if t < out.shape[0] * 3:
        i = t // 3
        a = t - i * 3
        f_in = 0.0
        f_out = 0.0
        for k in range(dptr[i], dptr[i + 1]):
            f_in += g[dperm[k], a].real
        for k in range(sptr[i], sptr[i + 1]):
            f_out += g[sperm[k], a].real
        out[i, a] = f_in - f_out


def _k_strain(vec, g, ptr, perm, out):
    t = cuda.grid(1)
    if t < out.shape[0] * 9:
        f = t // 9
        a = (t - f * 9) // 3
        b = t - f * 9 - a * 3
        acc = 0.0
        for k in range(ptr[f], ptr[f + 1]):
            e = perm[k]
            acc += vec[e, a].real * g[e, b].real
        out[f, a * 3 + b] = acc


# ---------------------------------------------------------------------------- placement
def upload(a):
    return cu.to_device(a)


def resident(a):
    return cu.resident(a)


def to_host(a):
    return cu.to_host(a) if cu.is_device_array(a) else a


# ---------------------------------------------------------------------------- elementwise
def _rows(a):
    """(R, C) view of a device array of ndim ≤ 2 ((N,) → (N, 1))."""
    return a.reshape(a.shape[0], 1) if len(a.shape) == 1 else a


def cast(a, dtype):
    if not cu.is_device_array(a):
        a = np.asarray(a)
    return cu.to_device(a, dtype)


def column(a):
    return a.reshape(a.shape[0], 1)


def _binary(a, b, op):
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = cu.device_empty(shape, np.result_type(a.dtype, b.dtype))
    a2, b2, o2 = _rows(cu.to_device(a)), _rows(cu.to_device(b)), _rows(out)
    cu.launch(_k_binary, out.dtype, out.size, a2, b2, op, o2)
    return out


def add(a, b):
    if np.isscalar(a):
        b = cu.to_device(b)
        out = cu.device_empty(b.shape, np.result_type(b.dtype, a))
        cu.launch(_k_scalar_add, out.dtype, out.size, a, b.reshape(b.size), out.reshape(out.size))
        return out
    return _binary(a, b, 0)


def mul(a, b):
    return _binary(a, b, 1)


def zeros(shape, dtype):
    return cu.device_zeros(tuple(int(s) for s in shape), dtype)


def ones_like(a):
    out = cu.device_empty(a.shape, a.dtype)
    cu.launch(_k_fill, out.dtype, out.size, out.reshape(out.size), 1.0)
    return out


# ---------------------------------------------------------------------------- gather / scatter
def gather_rows(a, index):
    a = cu.to_device(a)
    idx = cu.index_array(index)
    out = cu.device_empty((idx.shape[0],) + tuple(a.shape[1:]), a.dtype)
    cu.launch(_k_gather_rows, a.dtype, out.size, _rows(a), idx, _rows(out))
    return out


def scatter_sum(values, index, n):
    values = cu.to_device(values)
    e = values.shape[0]
    width = int(np.prod(values.shape[1:], dtype=np.int64))
    out = cu.device_empty((int(n),) + tuple(values.shape[1:]), values.dtype)
    ptr, perm = cu.csr_device(index, int(n))
    cu.launch(_k_segment_sum, values.dtype, out.size, values.reshape(e, width), ptr, perm, out.reshape(int(n), width))
    return out


def total(a):
    a = cu.to_device(a)
    out = cu.device_empty((1,), a.dtype)
    cu.launch(_k_total, a.dtype, 1, a.reshape(a.size), out)
    return out


def forces_and_strain(d_vec, edge_vec, dst, src, edge_frame, n, n_frames):
    g, vec = cu.to_device(d_vec), cu.to_device(edge_vec)
    forces = cu.device_empty((int(n), 3), np.float64)
    strain = cu.device_empty((int(n_frames), 3, 3), np.float64)
    dptr, dperm = cu.csr_device(dst, int(n))
    sptr, sperm = cu.csr_device(src, int(n))
    cu.launch(_k_forces, np.float64, forces.size, g, dptr, dperm, sptr, sperm, forces)
    fptr, fperm = cu.csr_device(edge_frame, int(n_frames))
    cu.launch(_k_strain, np.float64, strain.size, vec, g, fptr, fperm, strain.reshape(int(n_frames), 9))
    return forces, strain
