r"""Every per-element formula of the kernels, written once as plain Python functions of scalars.

The polynomial envelope, the Bessel basis, SiLU and the gate activations (with the derivatives the
reverse and training passes need) and one spherical-harmonic component are defined here and nowhere
else in the compiled backends. Each operation's ``reference.py`` (NumPy) stays the readable
specification; these are the same formulas for one scalar. :func:`compile_family` compiles them for a
target:

* ``"cpu"``: ``numba.njit(inline="always")`` — inlined into the ``prange`` drivers of ``cpu.py``;
* ``"cuda"``: ``numba.cuda.jit(device=True)`` — called by the kernels of ``cuda.py``.

As plain Python (``NUMBA_DISABLE_JIT=1``, doctests) they run unchanged.

Rules that keep one source valid for float32/64, the complex training pass and both targets:

* transcendental functions are called by the global names ``sqrt, sin, cos, exp, tanh`` and powers by
  ``power``; :func:`compile_family` binds them per target and number kind (NumPy's scalar functions
  on the CPU, :mod:`math` / :mod:`cmath` on the GPU, where ``power`` is :func:`ipow`: the GPU path
  accepts integer exponents only);
* comparisons look at the real part only (``x.real``), as the reference does;
* zeros of the argument's type are written ``x * 0.0`` so that a variable never changes type;
* integer powers are repeated products (:func:`ipow`: analytic, no ``log``).

>>> round(cutoff(0.5, 6), 12), cutoff(1.2, 6)
(0.85546875, 0.0)
>>> round(act(1.0, 1) / C_SILU, 12) == round(silu(1.0), 12)
True
"""

from __future__ import annotations

import cmath
import math
from math import cos, exp, sin, sqrt, tanh  # noqa: F401 - re-bound per target and number kind when compiled
from types import FunctionType, SimpleNamespace

from nequip_np.conventions import NORMALIZE2MOM_SILU, NORMALIZE2MOM_TANH

PI = 3.141592653589793
C_SILU = float(NORMALIZE2MOM_SILU)
C_TANH = float(NORMALIZE2MOM_TANH)

#: compiled in this order (a function may call those listed before it)
FUNCTIONS = (
    "ipow",
    "power",
    "cutoff",
    "cutoff_grad",
    "bessel",
    "bessel_dx",
    "bessel_parts",
    "silu",
    "silu_grad",
    "silu_grad2",
    "act",
    "act_grad",
    "sh_factor",
    "sh_value",
    "sh_vjp",
)


def ipow(x, n):
    """x**n for an integer n ≥ 0 by repeated products (x**0 = 1 in x's type)."""
    out = x * 0.0 + 1.0
    for _ in range(n):
        out = out * x
    return out


def power(x, p):
    """x**p: repeated products when p is a non-negative integer (analytic for complex x), else ``**``."""
    n = int(p)
    if n == p and n >= 0:
        return ipow(x, n)
    return x**p


def cutoff(x, p):
    r"""Polynomial envelope :math:`u(x) = 1 - \tfrac{(p+1)(p+2)}{2}x^p + p(p+2)x^{p+1} - \tfrac{p(p+1)}{2}x^{p+2}`,
    zero for Re x ≥ 1 (``edge_embedding/reference.py``)."""
    if x.real >= 1.0:
        return x * 0.0
    a = (p + 1.0) * (p + 2.0) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1.0) / 2.0
    xp = power(x, p - 1) * x
    return 1.0 - a * xp + b * xp * x - c * xp * x * x


def cutoff_grad(x, p):
    r""":math:`u'(x) = -p\,a\,x^{p-1} + (p+1)\,b\,x^p - (p+2)\,c\,x^{p+1}`, zero for Re x ≥ 1."""
    if x.real >= 1.0:
        return x * 0.0
    a = (p + 1.0) * (p + 2.0) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1.0) / 2.0
    xp1 = power(x, p - 1)
    return -p * a * xp1 + (p + 1.0) * b * xp1 * x - (p + 2.0) * c * xp1 * x * x


def bessel(x, w):
    r""":math:`B(x) = \sin(\pi w x)/(\pi x)`."""
    return sin(PI * w * x) / (PI * x)


def bessel_dx(x, w):
    r""":math:`\partial_x B = w\cos(\pi w x)/x - \sin(\pi w x)/(\pi x^2)`."""
    arg = PI * w * x
    return w * cos(arg) / x - sin(arg) / (PI * x * x)


def bessel_parts(x, w):
    r"""(:math:`B`, :math:`\partial_x B`, :math:`\cos(\pi w x)`) with one sine and one cosine."""
    arg = PI * w * x
    s = sin(arg)
    c = cos(arg)
    px = PI * x
    return s / px, w * c / x - s / (px * x), c


def silu(x):
    r""":math:`\mathrm{silu}(x) = x / (1 + e^{-x})`."""
    return x / (1.0 + exp(-x))


def silu_grad(x):
    r""":math:`\mathrm{silu}'(x) = s\,(1 + x(1 - s))`, :math:`s = 1/(1 + e^{-x})`."""
    s = 1.0 / (1.0 + exp(-x))
    return s * (1.0 + x * (1.0 - s))


def silu_grad2(x):
    r""":math:`\mathrm{silu}''(x) = s(1-s)(2 + x(1 - 2s))` (the complex-step tangent of :func:`silu_grad`)."""
    s = 1.0 / (1.0 + exp(-x))
    return s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))


def act(x, parity):
    """Gate activation: normalised SiLU for parity +1, normalised tanh for parity −1."""
    if parity > 0:
        return C_SILU * silu(x)
    return C_TANH * tanh(x)


def act_grad(x, parity):
    """Derivative of :func:`act`."""
    if parity > 0:
        return C_SILU * silu_grad(x)
    t = tanh(x)
    return C_TANH * (1.0 - t * t)


def sh_factor(X, Yv, m):
    r"""(F, ∂F/∂X, ∂F/∂Y) with F = Re (X+iY)^m (m ≥ 0) or Im (X+iY)^|m| (m < 0), by real recursion."""
    am = m if m >= 0 else -m
    A = X * 0.0 + 1.0
    B = X * 0.0
    A1 = A
    B1 = B
    for _ in range(am):
        A1 = A
        B1 = B
        A = X * A1 - Yv * B1
        B = X * B1 + Yv * A1
    if am == 0:
        return A, X * 0.0, X * 0.0
    if m >= 0:
        return A, am * A1, -am * B1
    return B, am * B1, am * A1


def sh_value(X, Yv, Z, r2, m, t0, t1, tj, tk, tc):
    r"""One spherical-harmonic component :math:`F_m(X, Y)\sum_t c_t Z^{j_t} r_2^{k_t}` (terms t0:t1)."""
    F, _, _ = sh_factor(X, Yv, m)
    Q = X * 0.0
    for t in range(t0, t1):
        Q += tc[t] * ipow(Z, tj[t]) * ipow(r2, tk[t])
    return F * Q


def sh_vjp(X, Yv, Z, r2, m, t0, t1, tj, tk, tc):
    """Gradient (∂/∂X, ∂/∂Y, ∂/∂Z) of :func:`sh_value`, r2 = X²+Y²+Z² included."""
    F, FX, FY = sh_factor(X, Yv, m)
    Q = X * 0.0
    QZ = X * 0.0
    QR = X * 0.0
    for t in range(t0, t1):
        j = tj[t]
        k = tk[t]
        c = tc[t]
        zj = ipow(Z, j)
        rk = ipow(r2, k)
        Q += c * zj * rk
        if j > 0:
            QZ += c * j * ipow(Z, j - 1) * rk
        if k > 0:
            QR += c * k * zj * ipow(r2, k - 1)
    return FX * Q + F * QR * 2.0 * X, FY * Q + F * QR * 2.0 * Yv, F * (QZ + QR * 2.0 * Z)


def _intrinsics(target: str, kind: str) -> dict:
    if target == "cpu":
        import numpy as np

        return dict(sqrt=np.sqrt, sin=np.sin, cos=np.cos, exp=np.exp, tanh=np.tanh)
    lib = cmath if kind == "complex" else math
    return dict(sqrt=lib.sqrt, sin=lib.sin, cos=lib.cos, exp=lib.exp, tanh=lib.tanh)


def compile_family(target: str, kind: str = "real") -> SimpleNamespace:
    """Every function of :data:`FUNCTIONS` compiled for ``target`` ("cpu" or "cuda") and, on the GPU,
    number ``kind`` ("real" or "complex"); plus the intrinsics they were bound to. Compilation itself
    is lazy (Numba compiles a function on its first use, per argument types)."""
    if target == "cpu":
        import numba

        jit = numba.njit(inline="always")
    elif target == "cuda":
        from numba import cuda

        jit = cuda.jit(device=True)
    else:
        raise ValueError(f"target must be 'cpu' or 'cuda', got {target!r}")
    g = dict(globals())
    g.update(_intrinsics(target, kind))
    out = dict(_intrinsics(target, kind))
    for name in FUNCTIONS:
        f = globals()[name]
        if target == "cuda" and name == "power":
            compiled = g["ipow"]  # integer exponents only on the GPU (checked by the callers)
        else:
            compiled = jit(FunctionType(f.__code__, g, f.__name__, f.__defaults__, f.__closure__))
        g[name] = out[name] = compiled
    return SimpleNamespace(**out, PI=PI, C_SILU=C_SILU, C_TANH=C_TANH)
