r"""Bias-free scalar MLP (radial network, readout) — numba.cuda kernels (same signatures as ``reference.py``).

What differs from the reference: the matrix products run in this project's own shared-memory tiled
kernel (:func:`matmul`, TILE × TILE threads per output tile, operands read transposed in place for the
backward products :math:`h^\top\bar z` and :math:`\bar z W^\top`, dot products accumulated in
float64 / complex128 whatever the storage dtype). The activation and its derivative are separate
elementwise launches. Whether a vendor BLAS (cuBLAS through CuPy) should replace :func:`matmul` is an
open, measurable question — ``docs/cuda.md#radial-mlp-matrix-products`` gives the criteria and the
measurement plan; no GPU was available to this change.
"""

from __future__ import annotations

from numba import cuda

from nequip_np.kernels import _cuda_util as cu
from nequip_np.kernels.scalar_math import silu, silu_grad

ACTIVATIONS = ("silu",)


def _k_matmul(A, B, alpha, ta, tb, C):
    """C = alpha · op(A) @ op(B); op transposes when ta / tb is non-zero. One thread per C element."""
    sA = cuda.shared.array((TILE, TILE), SDT)  # noqa: F821 - TILE, SDT bound per dtype by compile_kernel
    sB = cuda.shared.array((TILE, TILE), SDT)  # noqa: F821
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * TILE + ty  # noqa: F821
    col = cuda.blockIdx.x * TILE + tx  # noqa: F821
    M = C.shape[0]
    N = C.shape[1]
    K = A.shape[0] if ta else A.shape[1]
    acc = ZERO  # noqa: F821
    for k0 in range(0, K, TILE):  # noqa: F821
        ka = k0 + tx
        kb = k0 + ty
        if row < M and ka < K:
            sA[ty, tx] = A[ka, row] if ta else A[row, ka]
        else:
            sA[ty, tx] = 0
        if col < N and kb < K:
            sB[ty, tx] = B[col, kb] if tb else B[kb, col]
        else:
            sB[ty, tx] = 0
        cuda.syncthreads()
        for k in range(TILE):  # noqa: F821
            acc += sA[ty, k] * sB[k, tx]
        cuda.syncthreads()
    if row < M and col < N:
        C[row, col] = alpha * acc


def _k_silu(z, h):
    i = cuda.grid(1)
    if i < z.shape[0]:
        h[i] = silu(z[i])


def _k_silu_backward(dh, z, dz):
    i = cuda.grid(1)
    if i < z.shape[0]:
        dz[i] = dh[i] * silu_grad(z[i])


def matmul(A, B, alpha=1.0, ta=False, tb=False):
    """``alpha * op(A) @ op(B)`` of two device matrices in their common dtype (a new device array)."""
    m = A.shape[1] if ta else A.shape[0]
    n = B.shape[0] if tb else B.shape[1]
    C = cu.device_empty((m, n), A.dtype)
    t = cu.tile()
    grid = ((n + t - 1) // t, (m + t - 1) // t)
    cu.launch_2d(_k_matmul, A.dtype, grid, (t, t), A, B, alpha, int(ta), int(tb), C)
    return C


def _elementwise(kernel, dtype, out_shape, *arrays):
    out = cu.device_empty(out_shape, dtype)
    flat = [a.reshape(a.size) for a in arrays] + [out.reshape(out.size)]
    cu.launch(kernel, dtype, out.size, *flat)
    return out


def forward(x, weights, alphas, nonlinearity="silu"):
    cu.require_cuda()
    if nonlinearity and nonlinearity not in ACTIVATIONS:
        raise ValueError(f"backend='cuda' MLP supports activations {ACTIVATIONS}, got {nonlinearity!r}")
    dt = cu.common_dtype(x, *weights)
    h = cu.to_device(x, dt)
    ws = [cu.to_device(w, dt) for w in weights]
    hs, zs = [], []
    for k, (w, a) in enumerate(zip(ws, alphas)):
        hs.append(h)
        z = matmul(h, w, float(a))
        zs.append(z)
        h = _elementwise(_k_silu, dt, z.shape, z) if (k < len(ws) - 1 and nonlinearity) else z
    return cu.finish(h, x), (hs, zs, ws, [float(a) for a in alphas], nonlinearity, x)


def backward(d_out, cache, weight_grads: bool = True):
    """Returns ``(d_x, [d_W0, d_W1, …])``; the d_W are None when ``weight_grads=False``."""
    hs, zs, ws, alphas, nonlinearity, like = cache
    dt = cu.common_dtype(hs[0], d_out)
    dz = cu.to_device(d_out, dt)
    hs = [cu.to_device(h, dt) for h in hs]
    d_ws = [None] * len(ws)
    for k in range(len(ws) - 1, -1, -1):
        w = cu.to_device(ws[k], dt)
        if weight_grads:
            d_ws[k] = matmul(hs[k], dz, alphas[k], ta=True)
        dh = matmul(dz, w, alphas[k], tb=True)
        if k > 0:
            dz = _elementwise(_k_silu_backward, dt, dh.shape, dh, cu.to_device(zs[k - 1], dt)) if nonlinearity else dh
    if cu.is_device_array(like) or cu.is_device_array(d_out):
        return dh, d_ws
    return cu.to_host(dh), [None if g is None else cu.to_host(g) for g in d_ws]
