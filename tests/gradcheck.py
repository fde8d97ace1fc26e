"""Directional finite-difference checks shared by the kernel tests (DESIGN.md rung 2).

``check_backward`` compares ⟨d_out, (f(x+hv) − f(x−hv))/2h⟩ with Σ_k ⟨backward_k(d_out), v_k⟩.
``check_complex_step`` checks that running forward+backward on x + i·h·v (the training pass) gives the
directional derivative of the backward pass, i.e. the operation is safe for complex-step tangents.
"""

from __future__ import annotations

import numpy as np


def _dot(a, b):
    return float(np.sum(np.real(a) * np.real(b)))


def check_backward(forward, backward, inputs, rng, h=1e-6, rtol=1e-7):
    """forward(*inputs) -> (out, cache); backward(d_out, cache) -> tuple of d_inputs (same order)."""
    out, cache = forward(*inputs)
    d_out = rng.standard_normal(out.shape)
    grads = backward(d_out, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    dirs = [rng.standard_normal(np.shape(x)) for x in inputs]
    plus = forward(*[x + h * v for x, v in zip(inputs, dirs)])[0]
    minus = forward(*[x - h * v for x, v in zip(inputs, dirs)])[0]
    fd = _dot(d_out, (plus - minus) / (2 * h))
    an = sum(_dot(g, v) for g, v in zip(grads, dirs))
    assert abs(fd - an) <= rtol * max(1.0, abs(an)), f"backward {an!r} vs finite differences {fd!r}"


def check_complex_step(forward, backward, inputs, rng, h=1e-6, rtol=1e-7):
    """Im(backward at x + i·1e-20·v)/1e-20 == central differences of backward along v."""
    out, cache = forward(*inputs)
    d_out = rng.standard_normal(out.shape)
    dirs = [rng.standard_normal(np.shape(x)) for x in inputs]
    step = 1e-20
    cplx = backward(d_out, forward(*[x + 1j * step * v for x, v in zip(inputs, dirs)])[1])
    plus = backward(d_out, forward(*[x + h * v for x, v in zip(inputs, dirs)])[1])
    minus = backward(d_out, forward(*[x - h * v for x, v in zip(inputs, dirs)])[1])
    for c, p, m in zip(*(g if isinstance(g, tuple) else (g,) for g in (cplx, plus, minus))):
        fd = (np.asarray(p) - np.asarray(m)) / (2 * h)
        cs = np.imag(c) / step
        scale = max(1.0, float(np.max(np.abs(fd))))
        assert np.max(np.abs(cs - fd)) <= rtol * scale, f"complex step vs finite differences: {np.max(np.abs(cs - fd))}"
