"""ONE table of kernel test cases and ONE tolerance rule, shared by every kernel test.

* ``tests/test_kernels_reference.py``: each case's reference backward vs central finite differences
  (and its complex-step tangent), float64;
* ``tests/test_backends.py``: each case run by the numba backend vs the reference, every dtype;
* ``tests/_cuda_sim_cases.py``: each case run by the cuda backend (simulator or GPU) vs the reference.

A case is an operation plus its differentiable inputs and a call that binds the static arguments
(plans, index arrays, constants). Every operation follows one backward contract
(``kernels/registry.py``): ``backward(d_out, cache)`` returns a tuple with one ``d<input>`` per
differentiable input, in forward's argument order (a list input — the MLP's weights — gives a list).
:func:`flat_grads` flattens that tuple so it lines up with :attr:`Case.inputs`.

The tolerance rule (:func:`validate_result`, like llm.c's ``validate_result``): a backend's output
``got`` agrees with the reference's ``want`` when ``max|got − want| ≤ TOL[dtype] · max(max|want|, 1e-300)``,
checked on the real part and, for complex dtypes, separately on the imaginary part (the complex-step
tangent the training pass needs).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nequip_np.kernels.plan import conv_plan, gate_plan, linear_plan, self_connection_plan
from nequip_np.so3 import Irreps

#: max |got − want| / max |want| of a backend against the reference, by the dtype the kernel runs in
TOL = {"float64": 1e-12, "complex128": 1e-12, "float32": 2e-5, "complex64": 2e-5}
DTYPES = ("float64", "float32", "complex128", "complex64")
#: operations whose inputs are geometry: they run in float64 / complex128 whatever the model dtype
GEOMETRY = ("edge_embedding", "spherical_harmonics", "zbl")
READOUT_ACTIVATIONS = ("tanh", "mish", "gelu", "ssp", "softplus", "sigmoid")


@dataclass
class Case:
    """One operation call: ``call(module, *inputs) -> (out, cache)`` with the static arguments bound."""

    name: str
    op: str
    inputs: list
    call: Callable


def geometry_dtype(dtype: str) -> str:
    return "complex128" if np.dtype(dtype).kind == "c" else "float64"


def _rand(rng, shape, dtype):
    x = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        x = x + 1e-3j * rng.standard_normal(shape)  # a visible tangent, as in the training pass
    return x.astype(dtype)


def _edges(rng, e, dtype):
    v = rng.standard_normal((e, 3))
    v = 1.5 * v / np.linalg.norm(v, axis=1, keepdims=True) * rng.uniform(0.5, 1.5, (e, 1))
    if np.dtype(dtype).kind == "c":
        v = v + 1e-3j * rng.standard_normal(v.shape)
    return v.astype(dtype)


def _mlp_call(alphas, act="silu"):
    return lambda mod, x, *ws: mod.forward(x, list(ws), alphas, act)


def build(name: str, dtype: str = "float64", seed: int | None = None) -> Case:
    """The case ``name`` with inputs of ``dtype`` (geometry cases use :func:`geometry_dtype`)."""
    rng = np.random.default_rng(zlib.crc32(f"{name}{dtype}".encode()) if seed is None else seed)
    geo = geometry_dtype(dtype)
    if name == "edge_embedding":  # one edge beyond r_max: the envelope's zero branch
        vec = _edges(rng, 12, geo)
        vec[0] *= 2.5
        rmax = np.full(12, 1 / 2.5)
        w = (np.linspace(1, 8, 8) + 0.1 * rng.standard_normal(8)).astype(np.float64)
        return Case(name, name, [vec, w], lambda mod, v, ww: mod.forward(v, rmax, ww, 6, 2 * np.pi / 2.5**2))
    if name == "spherical_harmonics":
        return Case(name, name, [_edges(rng, 12, geo)], lambda mod, v: mod.forward(v, 3))
    if name == "zbl":
        zc, zn, rr = np.array([1.0, 6, 8, 6, 1, 8, 6]), np.array([6.0, 8, 1, 6, 8, 6, 1]), np.full(7, 1 / 2.5)
        return Case(name, name, [_edges(rng, 7, geo)], lambda mod, v: mod.forward(v, zc, zn, rr, 6, 14.399645))
    if name == "mlp":
        inputs = [_rand(rng, (30, 5), dtype), _rand(rng, (5, 16), dtype), _rand(rng, (16, 7), dtype)]
        return Case(name, name, inputs, _mlp_call([0.4, 0.5]))
    if name.startswith("readout_"):
        inputs = [_rand(rng, (9, 5), dtype), _rand(rng, (5, 6), dtype), _rand(rng, (6, 1), dtype)]
        return Case(name, "mlp", inputs, _mlp_call([0.4, 0.5], name.split("_", 1)[1]))
    if name == "linear":
        plan = linear_plan(Irreps("3x0e+2x1o+2x0e+1x2e"), Irreps("2x0e+3x1o+2x2e"))
        inputs = [_rand(rng, (9, plan.irreps_in.dim), dtype), _rand(rng, plan.n_weights, dtype)]
        return Case(name, name, inputs, lambda mod, x, w: mod.forward(x, w, plan))
    if name == "tp_conv":  # unsorted edges, one node without incoming edges, l up to 3
        irreps_in, sh = Irreps("3x0e+2x1o+2x1e+1x2e+1x3o"), Irreps.spherical_harmonics(3)
        plan = conv_plan(irreps_in, sh, Irreps("3x0e+2x0o+2x1o+2x1e+1x2e+2x2o+1x3o"))
        n, e = 6, 23
        src, dst = rng.integers(0, n, e), rng.integers(0, n - 1, e)
        inputs = [
            _rand(rng, (n, irreps_in.dim), dtype),
            _rand(rng, (e, sh.dim), dtype),
            _rand(rng, (e, plan.n_weights), dtype),
        ]
        return Case(name, name, inputs, lambda mod, y, Y, w: mod.forward(y, Y, w, src, dst, n, plan))
    if name == "self_connection":  # species 1 absent
        plan = self_connection_plan(Irreps("2x0e+2x1o+1x2e"), 3, Irreps("3x0e+1x1o+2x1e+1x2e"))
        types = np.array([0, 2, 2, 0, 2, 0, 0])
        inputs = [
            _rand(rng, (7, plan.irreps_in.dim), dtype),
            _rand(rng, (3, 3), dtype),
            _rand(rng, plan.n_weights, dtype),
        ]
        return Case(name, name, inputs, lambda mod, h, a, w: mod.forward(h, a, types, w, plan))
    if name == "gate":  # even and odd scalars, even and odd gated irreps
        plan = gate_plan(Irreps("2x0e+2x1o"), Irreps.spherical_harmonics(1), Irreps("2x0e+2x0o+2x1e+2x1o"))
        return Case(name, name, [_rand(rng, (8, plan.irreps_in.dim), dtype)], lambda mod, z: mod.forward(z, plan))
    if name == "scale_shift":  # one scale shared by all types (the sum over all atoms), one shift per type
        types = np.array([0, 2, 1, 2, 2, 0])
        inputs = [_rand(rng, (6, 1), dtype), rng.uniform(0.5, 2.0, 1), rng.standard_normal(3)]
        return Case(name, name, inputs, lambda mod, e, sc, sh: mod.forward(e, types, sc, sh))
    raise KeyError(f"no kernel test case named {name!r}")


#: every case of the table
NAMES = (
    "edge_embedding",
    "spherical_harmonics",
    "zbl",
    "mlp",
    "linear",
    "tp_conv",
    "self_connection",
    "gate",
    "scale_shift",
) + tuple(f"readout_{a}" for a in READOUT_ACTIVATIONS)


def flat_grads(grads) -> list:
    """The backward tuple with list entries (the MLP's ``[d_W…]``) expanded: one array per input."""
    out = []
    for g in grads:
        out.extend(g if isinstance(g, list) else [g])
    return out


def run(case: Case, module, d_out_seed: int = 0) -> list:
    """Forward and backward of ``case`` through ``module``; every output array, forward first.

    The backward seed ``d_out`` is drawn from ``d_out_seed`` in the forward output's dtype, so two
    modules given the same case see the same seed.
    """
    out, cache = case.call(module, *case.inputs)
    out_host = np.asarray(out)
    d_out = _rand(np.random.default_rng(d_out_seed), out_host.shape, out_host.dtype.name)
    grads = module.backward(d_out, cache)
    assert isinstance(grads, tuple), f"{case.op}.backward must return a tuple (got {type(grads).__name__})"
    grads = flat_grads(grads)
    assert len(grads) == len(case.inputs), f"{case.op}.backward: {len(grads)} gradients for {len(case.inputs)} inputs"
    return [out_host] + [np.asarray(g) for g in grads]


def validate_result(got, want, dtype: str, what: str = "") -> None:
    """THE tolerance rule of every backend-vs-reference kernel test (see the module docstring)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, reference {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, reference {want.dtype}"
    assert np.any(np.real(want) != 0) or not want.size, f"{what}: the reference is identically zero (weak test)"
    parts = [("", np.real)] + ([(" (imaginary part)", np.imag)] if np.iscomplexobj(want) else [])
    for label, part in parts:
        g, w = part(got), part(want)
        if not w.size:
            continue
        err, scale = float(np.max(np.abs(g - w))), max(float(np.max(np.abs(w))), 1e-300)
        assert err <= TOL[dtype] * scale, f"{what}{label}: max error {err:.3g} > {TOL[dtype]:.0e} × {scale:.3g}"


def kernel_dtype(case: Case, dtype: str) -> str:
    """The dtype the kernel runs in for this case (geometry runs in float64 / complex128)."""
    return geometry_dtype(dtype) if case.op in GEOMETRY else dtype


def compare(case_name: str, dtype: str, module, reference_module) -> None:
    """Run one case through ``module`` and the reference; every output must pass :func:`validate_result`."""
    got = run(build(case_name, dtype), module)
    want = run(build(case_name, dtype), reference_module)
    case = build(case_name, dtype)
    for k, (g, w) in enumerate(zip(got, want)):
        what = f"{case_name} {'forward' if k == 0 else f'backward[{k - 1}]'} ({dtype})"
        validate_result(g, w, kernel_dtype(case, dtype), what)
