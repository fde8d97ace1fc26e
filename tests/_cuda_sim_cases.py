"""CUDA kernels vs the reference, run under Numba's CUDA simulator (or on a real GPU).

Not collected by the main suite (no ``test_`` prefix): ``tests/test_cuda.py`` runs this file in a
subprocess with ``NUMBA_ENABLE_CUDASIM=1`` set before numba.cuda is imported, so the rest of the suite
keeps the real CUDA target. Sizes are tiny: the simulator runs every GPU thread as a Python thread.
Run directly: ``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/_cuda_sim_cases.py``.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.kernels import _cuda_util as cu
from nequip_np.train.loss import LossCoefficients, loss_and_grad
from tests.model_factory import molecule, periodic, small_model

#: max |cuda − reference| / max(1, max |reference|), by kernel dtype
TOL = {"float64": 1e-12, "complex128": 1e-12, "float32": 2e-5}
TINY = dict(num_layers=2, l_max=2, num_features=[3, 2, 1], radial_mlp_width=4, num_bessels=4,
            readout_mlp_hidden_layers_width=3)


def _ops(name):
    return (importlib.import_module(f"nequip_np.kernels.{name}.reference"),
            importlib.import_module(f"nequip_np.kernels.{name}.cuda"))


def _close(got, want, dtype, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    assert err <= TOL[dtype] * scale, f"{what}: max error {err:.3g} (scale {scale:.3g}, dtype {dtype})"
    if dtype.startswith("complex") and want.size:  # the tangent (imaginary part) must match too
        im = float(np.max(np.abs(want.imag)))
        assert float(np.max(np.abs(got.imag - want.imag))) <= TOL[dtype] * max(im, 1e-300) * 10, what


def _cast(a, dtype, rng):
    if dtype == "complex128":
        return a + 1j * 1e-3 * rng.standard_normal(a.shape)  # a visible tangent: checks both parts
    return a.astype(dtype)


def _check(name, fwd_args, dtype, rng, n_grads):
    ref, gpu = _ops(name)
    want, c_ref = ref.forward(*fwd_args)
    got, c_gpu = gpu.forward(*fwd_args)
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype, (got.dtype, want.dtype)
    _close(got, want, dtype, f"{name} forward")
    d_out = _cast(rng.standard_normal(want.shape), dtype, rng)
    g_ref, g_gpu = ref.backward(d_out, c_ref), gpu.backward(d_out, c_gpu)
    g_ref = g_ref if isinstance(g_ref, tuple) else (g_ref,)
    g_gpu = g_gpu if isinstance(g_gpu, tuple) else (g_gpu,)
    assert len(g_ref) == len(g_gpu) == n_grads
    for k, (a, b) in enumerate(zip(g_gpu, g_ref)):
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert np.max(np.abs(y)) > 0, f"{name}: gradient {k} is identically zero (weak test)"
            _close(x, y, dtype, f"{name} backward[{k}]")


DTYPES = ["float64", "float32", "complex128"]


@pytest.fixture(scope="module")
def plan():
    return small_model(**TINY).plan


@pytest.mark.parametrize("dtype", ["float64", "complex128"])  # geometry always runs in float64 / complex128
def test_edge_embedding(dtype):
    rng = np.random.default_rng(1)
    vec = _cast(rng.uniform(-2, 2, (5, 3)), dtype, rng)
    vec[0] *= 3.0  # beyond r_max: envelope branch
    _check("edge_embedding", (vec, np.full(5, 1 / 3.5), np.arange(1.0, 5.0), 6, 0.4), dtype, rng, 2)


@pytest.mark.parametrize("dtype", ["float64", "float32"])  # inference only: real edge vectors, model-dtype table
def test_radial_table(dtype):
    rng = np.random.default_rng(11)
    vec = rng.uniform(-2, 2, (5, 3))
    vec[0] *= 3.0  # beyond r_max: w = 0 branch
    table = rng.standard_normal((6, 3, 4)).astype(dtype)
    _check("radial_table", (vec, np.full(5, 1 / 3.5), table), dtype, rng, 1)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_spherical_harmonics(dtype):
    rng = np.random.default_rng(2)
    _check("spherical_harmonics", (_cast(rng.standard_normal((4, 3)), dtype, rng), 3), dtype, rng, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp(dtype):
    rng = np.random.default_rng(3)
    ws = [_cast(rng.standard_normal(s), dtype, rng).real.astype(np.dtype(dtype).type(0).real.dtype)
          for s in ((4, 5), (5, 3))]
    _check("mlp", (_cast(rng.standard_normal((6, 4)), dtype, rng), ws, [0.5, 0.3], "silu"), dtype, rng, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear(plan, dtype):
    rng = np.random.default_rng(4)
    lp = plan.layers[1].linear_2
    x = _cast(rng.standard_normal((3, lp.irreps_in.dim)), dtype, rng)
    _check("linear", (x, _cast(rng.standard_normal(lp.n_weights), dtype, rng), lp), dtype, rng, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_self_connection(plan, dtype):
    rng = np.random.default_rng(5)
    sp = plan.layers[1].self_connection
    h = _cast(rng.standard_normal((4, sp.irreps_in.dim)), dtype, rng)
    attr = _cast(rng.standard_normal((3, sp.n_attr)), dtype, rng)
    w = _cast(rng.standard_normal(sp.n_weights), dtype, rng)
    _check("self_connection", (h, attr, np.array([0, 2, 2, 1]), w, sp), dtype, rng, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [0, 1])
def test_gate(plan, dtype, layer):
    rng = np.random.default_rng(6)
    gp = plan.layers[layer].gate
    _check("gate", (_cast(rng.standard_normal((3, gp.irreps_in.dim)), dtype, rng), gp), dtype, rng, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", [0, 1])
def test_tp_conv(plan, dtype, layer):
    rng = np.random.default_rng(7)
    cp = plan.layers[layer].conv
    n, e = 4, 7
    src = np.array([1, 0, 3, 2, 0, 1, 3])
    dst = np.array([0, 2, 0, 1, 3, 3, 2])  # unsorted receivers; node order ≠ edge order
    y = _cast(rng.standard_normal((n, cp.irreps_in.dim)), dtype, rng)
    Y = _cast(rng.standard_normal((e, 9)), dtype, rng)
    w = _cast(rng.standard_normal((e, cp.n_weights)), dtype, rng)
    _check("tp_conv", (y, Y, w, src, dst, n, cp), dtype, rng, 3)


def test_device_arrays_stay_on_device_and_launches_are_counted(plan):
    from numba import cuda

    rng = np.random.default_rng(8)
    lp = plan.layers[1].linear_1
    x = rng.standard_normal((3, lp.irreps_in.dim))
    w = rng.standard_normal(lp.n_weights)
    ref, gpu = _ops("linear")
    cu.reset_counters()
    out, cache = gpu.forward(cuda.to_device(x), cuda.to_device(w), lp)
    assert cu.is_device_array(out) and cu.launch_count() == 1
    assert cu.transfer_bytes()[1] == 0  # nothing came back to the host
    np.testing.assert_allclose(out.copy_to_host(), ref.forward(x, w, lp)[0], rtol=0, atol=1e-12)


def test_out_of_memory_names_the_size(monkeypatch):
    from numba import cuda

    def boom(*args, **kwargs):
        raise RuntimeError("[2] Call to cuMemAlloc results in CUDA_ERROR_OUT_OF_MEMORY")

    monkeypatch.setattr(cuda, "device_array", boom)
    with pytest.raises(MemoryError, match=r"GPU out of memory allocating 76\.3 MiB \(shape \(10000000,\)"):
        cu.device_empty((10_000_000,), np.float64)


def _graph(model, atoms, rng):
    g = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    g.energy = np.array([rng.normal(-1000.0, 1.0)])
    g.forces = rng.standard_normal((len(atoms), 3))
    if np.all(atoms.pbc):
        s = rng.standard_normal((3, 3)) * 0.05
        g.stress = (s + s.T)[None]
    else:
        g.stress = np.full((1, 3, 3), np.nan)
    return g


def test_full_model_energy_forces_stress_and_loss_gradient():
    rng = np.random.default_rng(9)
    ref = small_model(seed=3, **TINY)
    gpu = small_model(seed=3, backend="cuda", **TINY)
    assert "backend='cuda'" in repr(gpu)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng), _graph(ref, periodic(rng, small=True), rng)])
    a, b = ref.compute(graph), gpu.compute(graph)
    for key in ("total_energy", "forces", "stress"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-10, err_msg=key)
    coeffs = LossCoefficients(1.0, 1.0, 1.0)
    la, _, ga, _ = loss_and_grad(ref, graph, coeffs)
    lb, _, gb, _ = loss_and_grad(gpu, graph, coeffs)
    assert abs(la - lb) <= 1e-10 * abs(la)
    for name in ga:
        np.testing.assert_allclose(gb[name], ga[name], rtol=1e-8, atol=1e-10 * max(1.0, np.abs(ga[name]).max()),
                                   err_msg=name)


def test_full_model_float32_energy_and_forces():
    rng = np.random.default_rng(10)
    ref = small_model(seed=4, model_dtype="float32", **TINY)
    gpu = small_model(seed=4, backend="cuda", model_dtype="float32", **TINY)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng)])
    a, b = ref.compute(graph, stress=False), gpu.compute(graph, stress=False)
    np.testing.assert_allclose(b["total_energy"], a["total_energy"], rtol=1e-6)
    np.testing.assert_allclose(b["forces"], a["forces"], rtol=0, atol=2e-4 * max(1.0, np.abs(a["forces"]).max()))


def test_full_model_with_radial_tables():
    rng = np.random.default_rng(12)
    ref = small_model(seed=5, **TINY)
    gpu = small_model(seed=5, backend="cuda", **TINY)
    ref.use_radial_tables(16)
    gpu.use_radial_tables(16)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng), _graph(ref, periodic(rng, small=True), rng)])
    a, b = ref.compute(graph), gpu.compute(graph)
    for key in ("total_energy", "forces", "stress"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-10, err_msg=key)


def test_tp_conv_is_deterministic(plan):
    """Segmented reduction in CSR order: repeated runs agree bitwise (meaningful on a real GPU)."""
    rng = np.random.default_rng(11)
    cp = plan.layers[1].conv
    src, dst = np.array([1, 0, 3, 2, 0, 1, 3]), np.array([0, 2, 0, 1, 3, 3, 2])
    args = (rng.standard_normal((4, cp.irreps_in.dim)).astype(np.float32),
            rng.standard_normal((7, 9)).astype(np.float32),
            rng.standard_normal((7, cp.n_weights)).astype(np.float32), src, dst, 4, cp)
    gpu = _ops("tp_conv")[1]
    first = gpu.forward(*args)[0]
    assert np.array_equal(first, gpu.forward(*args)[0])


def test_float32_training_pass_runs_in_complex64():
    """model_dtype='float32' training: the complex-step pass runs the kernels in complex64."""
    rng = np.random.default_rng(12)
    ref = small_model(seed=4, model_dtype="float32", **TINY)
    gpu = small_model(seed=4, backend="cuda", model_dtype="float32", **TINY)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng)])
    coeffs = LossCoefficients(1.0, 1.0, 0.0)
    la, _, ga, _ = loss_and_grad(ref, graph, coeffs)
    lb, _, gb, _ = loss_and_grad(gpu, graph, coeffs)
    assert abs(la - lb) <= 1e-6 * abs(la)
    for name in ga:
        scale = max(1e-12, float(np.abs(ga[name]).max()))
        assert float(np.abs(gb[name] - ga[name]).max()) <= 2e-4 * scale, name


# ---------------------------------------------------------------------------- device-resident model
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_glue_kernels_match_reference(dtype):
    """The model's between-operation steps (``kernels/glue``) on device arrays vs the NumPy reference."""
    from numba import cuda

    ref, gpu = _ops("glue")
    rng = np.random.default_rng(14)
    a, b = _cast(rng.standard_normal((5, 4)), dtype, rng), _cast(rng.standard_normal((5, 4)), dtype, rng)
    col = rng.standard_normal((5, 1))
    idx = np.array([2, 0, 2, 1, 0])
    def dev(x):
        return cuda.to_device(np.ascontiguousarray(x))

    cases = {
        "add": (gpu.add(dev(a), dev(b)), ref.add(a, b)),
        "add 0.0": (gpu.add(0.0, dev(a)), ref.add(0.0, a)),
        "mul rows": (gpu.mul(dev(a), dev(col)), ref.mul(a, col)),
        "mul 1-D": (gpu.mul(dev(col[:, 0]), dev(a[:, 0])), ref.mul(col[:, 0], a[:, 0])),
        "cast": (gpu.cast(dev(col), np.complex128), ref.cast(col, np.complex128)),
        "gather_rows": (gpu.gather_rows(dev(a), idx), ref.gather_rows(a, idx)),
        "scatter_sum": (gpu.scatter_sum(dev(a), idx, 4), ref.scatter_sum(a, idx, 4)),
        "total": (gpu.total(dev(a[:, 0])), ref.total(a[:, 0])),
        "column": (gpu.column(dev(a[:, 0].copy())), ref.column(a[:, 0])),
        "ones_like": (gpu.ones_like(dev(a)), ref.ones_like(a)),
    }
    for what, (got, want) in cases.items():
        assert cu.is_device_array(got), what
        _close(got.copy_to_host(), want, dtype if np.iscomplexobj(want) else "float64", what)
    vec, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    src, frame = np.array([1, 2, 0, 0, 3]), np.array([0, 0, 1, 1, 1])
    got = gpu.forces_and_strain(dev(g), dev(vec), idx, src, frame, 4, 2)
    for x, y in zip(got, ref.forces_and_strain(g, vec, idx, src, frame, 4, 2)):
        _close(x.copy_to_host(), y, "float64", "forces_and_strain")


def test_energy_forces_call_copies_only_edge_vectors_in_and_energies_forces_out():
    """With ``backend="cuda"`` every intermediate stays on the device: after the first call (which
    uploads parameters, graph arrays, CSRs and plan tables once), an energy+forces call on moved
    atoms with the same neighbour list copies the edge vectors in and energies, forces and virial out."""
    rng = np.random.default_rng(13)
    ref = small_model(seed=5, **TINY)
    gpu = small_model(seed=5, backend="cuda", **TINY)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng)])
    n, e, f = graph.pos.shape[0], graph.edge_index.shape[1], graph.n_frames
    cu.reset_counters()
    gpu.compute(graph, stress=False)
    first_h2d = cu.transfer_bytes()[0]
    assert first_h2d > e * 3 * 8  # parameters, types, edge index, tables: uploaded on the first call
    graph.pos = graph.pos + 0.02 * rng.standard_normal(graph.pos.shape)  # an MD step, same edges
    cu.reset_counters()
    b = gpu.compute(graph, stress=False)
    launches, (h2d, d2h) = cu.launch_count(), cu.transfer_bytes()
    assert h2d == e * 3 * 8, h2d  # float64 edge vectors
    assert d2h == (n + n * 3 + f * 9) * 8, d2h  # per-atom energies, forces, virial
    assert launches > 0
    a = ref.compute(graph, stress=False)
    for key in ("total_energy", "atomic_energy", "forces"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-10, err_msg=key)
    # a parameter changed in place is seen (resident copies are keyed by content), and only it moves
    for m in (ref, gpu):
        m.params["readout.0"] *= 1.5
    cu.reset_counters()
    b = gpu.compute(graph, stress=False)
    assert cu.transfer_bytes()[0] == e * 3 * 8 + gpu.params["readout.0"].nbytes
    assert cu.launch_count() == launches
    np.testing.assert_allclose(b["forces"], ref.compute(graph, stress=False)["forces"], rtol=1e-10, atol=1e-10)


def test_zbl_model_matches_reference():
    """ZBL runs the host reference inside the cuda backend (see ``zbl/cuda.py``); results agree."""
    rng = np.random.default_rng(15)
    kw = dict(TINY, pair_potential={"type": "ZBL", "units": "metal"})
    ref = small_model(seed=6, **kw)
    gpu = small_model(seed=6, backend="cuda", **kw)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng)])
    a, b = ref.compute(graph, stress=False), gpu.compute(graph, stress=False)
    for key in ("total_energy", "forces"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-10, err_msg=key)
