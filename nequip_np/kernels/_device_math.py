r"""Per-element math of the kernels, written once as plain Python functions of scalars.

These functions are the *bodies* shared by the GPU kernels (``cuda.py``; ``_cuda_util`` compiles them
with ``cuda.jit(device=True)``) and usable by a CPU driver (``numba.njit(inline="always")``). The
formulas are those of each operation's ``reference.py`` docstring; nothing is re-derived here.

Rules that keep one source valid for float32/64 and for the complex training pass:

* transcendental functions are called by the global names ``sqrt, sin, cos, exp, tanh``; the compiler
  binds them to :mod:`math` for real dtypes and to :mod:`cmath` for complex ones (as plain Python they
  are :mod:`math`'s);
* comparisons look at the real part only (``x.real``), as the reference does;
* zeros of the argument's type are written ``x * 0.0`` so that a variable never changes type;
* integer powers use :func:`ipow` (repeated products: analytic, no ``log``).
"""
from __future__ import annotations

from math import cos, exp, sin, sqrt, tanh  # noqa: F401 - re-bound per number kind when compiled

from nequip_np.conventions import NORMALIZE2MOM_SILU, NORMALIZE2MOM_TANH

PI = 3.141592653589793
C_SILU = float(NORMALIZE2MOM_SILU)
C_TANH = float(NORMALIZE2MOM_TANH)

#: compiled in this order (a function may call those listed before it)
DEVICE_FUNCTIONS = (
    "ipow", "cutoff", "cutoff_grad", "bessel", "bessel_dx", "silu", "silu_grad", "act", "act_grad",
    "sh_factor", "sh_value", "sh_vjp",
)


def ipow(x, n):
    """x**n for an integer n ≥ 0 (x**0 = 1 in x's type)."""
    out = x * 0.0 + 1.0
    for _ in range(n):
        out = out * x
    return out


def cutoff(x, p):
    r"""Polynomial envelope :math:`u(x)` for integer p; zero for Re x ≥ 1."""
    if x.real >= 1.0:
        return x * 0.0
    a = (p + 1.0) * (p + 2.0) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1.0) / 2.0
    xp = ipow(x, p)
    return 1.0 - a * xp + b * xp * x - c * xp * x * x


def cutoff_grad(x, p):
    if x.real >= 1.0:
        return x * 0.0
    a = (p + 1.0) * (p + 2.0) / 2.0
    b = p * (p + 2.0)
    c = p * (p + 1.0) / 2.0
    xp1 = ipow(x, p - 1)
    return -p * a * xp1 + (p + 1.0) * b * xp1 * x - (p + 2.0) * c * xp1 * x * x


def bessel(x, w):
    r""":math:`B(x) = \sin(\pi w x)/(\pi x)`."""
    return sin(PI * w * x) / (PI * x)


def bessel_dx(x, w):
    arg = PI * w * x
    return w * cos(arg) / x - sin(arg) / (PI * x * x)


def silu(x):
    return x / (1.0 + exp(-x))


def silu_grad(x):
    s = 1.0 / (1.0 + exp(-x))
    return s * (1.0 + x * (1.0 - s))


def act(x, parity):
    """Gate activation: normalised SiLU for parity +1, normalised tanh for parity −1."""
    if parity > 0:
        return C_SILU * silu(x)
    return C_TANH * tanh(x)


def act_grad(x, parity):
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
