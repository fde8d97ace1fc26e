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
from tests.kernel_cases import GEOMETRY, NAMES, Case, build, compare, run, validate_result
from tests.model_factory import molecule, periodic, small_model

TINY = dict(
    num_layers=2, l_max=2, num_features=[3, 2, 1], radial_mlp_width=4, num_bessels=4, readout_mlp_hidden_layers_width=3
)


def _ops(name):
    return (
        importlib.import_module(f"nequip_np.kernels.{name}.reference"),
        importlib.import_module(f"nequip_np.kernels.{name}.cuda"),
    )


#: the one case table of tests/kernel_cases.py; cuda's MLP has SiLU only (the readout_* cases are CPU's);
#: geometry runs in float64 / complex128 only
CUDA_CASES = [
    (n, d)
    for n in NAMES
    if not n.startswith("readout_")
    for d in ("float64", "float32", "complex128")
    if not (n in GEOMETRY and d == "float32")
]


@pytest.mark.parametrize("name,dtype", CUDA_CASES)
def test_operation_matches_reference(name, dtype):
    """Forward and backward of every operation vs the reference, under the one tolerance rule."""
    ref, gpu = _ops(build(name, dtype).op)
    got = run(build(name, dtype), gpu)[0]
    assert isinstance(got, np.ndarray)  # host inputs give host results
    compare(name, dtype, gpu, ref)


@pytest.fixture(scope="module")
def plan():
    """Three layers: layer 1's message irreps are sorted out of path order (a permuted MID layout)."""
    return small_model(**dict(TINY, num_layers=3)).plan


@pytest.mark.parametrize("dtype", ["float64", "float32"])  # inference only: real edge vectors, model-dtype table
def test_radial_table(dtype):
    rng = np.random.default_rng(11)
    vec = rng.uniform(-2, 2, (5, 3))
    vec[0] *= 3.0  # beyond r_max: w = 0 branch
    table = rng.standard_normal((6, 3, 4)).astype(dtype)
    rr = np.full(5, 1 / 3.5)
    ref, gpu = _ops("radial_table")
    (w_ref, c_ref), (w_gpu, c_gpu) = ref.forward(vec, rr, table), gpu.forward(vec, rr, table)
    validate_result(w_gpu, w_ref, dtype, "radial_table forward")
    dw = rng.standard_normal(w_ref.shape).astype(dtype)
    (g_ref,), (g_gpu,) = ref.backward(dw, c_ref), gpu.backward(dw, c_gpu)
    validate_result(g_gpu, g_ref, dtype, "radial_table backward")


def test_table_conv():
    """The radial table with the tensor product (inference, float64): forward, d_y, d_Y, d_edge_vec."""
    rng = np.random.default_rng(12)
    conv = small_model(**TINY).plan.layers[0].conv
    n, e = 4, 9
    vec = rng.uniform(-2, 2, (e, 3))
    vec[0] *= 3.0  # beyond r_max: skipped
    table, rr = rng.standard_normal((6, 3, conv.n_weights)), np.full(e, 1 / 3.5)
    y, Y = rng.standard_normal((n, conv.irreps_in.dim)), rng.standard_normal((e, conv.irreps_sh.dim))
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    ref, gpu = _ops("table_conv")
    (M_ref, c_ref), (M_gpu, c_gpu) = (m.forward(y, Y, vec, rr, table, src, dst, n, conv) for m in (ref, gpu))
    validate_result(cu.to_host(M_gpu), M_ref, "float64", "table_conv forward")
    d_M = rng.standard_normal(M_ref.shape)
    for k, (g, w) in enumerate(zip(gpu.backward(d_M, c_gpu), ref.backward(d_M, c_ref))):
        validate_result(cu.to_host(g), w, "float64", f"table_conv backward[{k}]")


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("layer", [0, 1])
def test_model_plans(plan, dtype, layer):
    """The gate and tensor product on the plans of a real model (layer 0 and a middle layer)."""
    rng = np.random.default_rng(7)
    gp, cp = plan.layers[layer].gate, plan.layers[layer].conv
    if layer == 1:
        assert [p.i_mid for p in cp.paths] != sorted(p.i_mid for p in cp.paths)  # the case that matters
    src, dst = np.array([1, 0, 3, 2, 0, 1, 3]), np.array([0, 2, 0, 1, 3, 3, 2])  # unsorted receivers
    cases = [
        Case(
            "gate",
            "gate",
            [rng.standard_normal((3, gp.irreps_in.dim)).astype(dtype)],
            lambda mod, z: mod.forward(z, gp),
        ),
        Case(
            "tp_conv",
            "tp_conv",
            [rng.standard_normal(s).astype(dtype) for s in ((4, cp.irreps_in.dim), (7, 9), (7, cp.n_weights))],
            lambda mod, y, Y, w: mod.forward(y, Y, w, src, dst, 4, cp),
        ),
    ]
    for case in cases:
        ref, gpu = _ops(case.op)
        for k, (g, w) in enumerate(zip(run(case, gpu), run(case, ref))):
            validate_result(g, w, dtype, f"{case.op} layer {layer} output {k}")


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
        np.testing.assert_allclose(
            gb[name], ga[name], rtol=1e-8, atol=1e-10 * max(1.0, np.abs(ga[name]).max()), err_msg=name
        )


def test_three_layer_model_energy_and_forces():
    """Three layers: a middle layer whose message irreps are sorted out of path order."""
    rng = np.random.default_rng(16)
    kw = dict(TINY, num_layers=3)
    ref, gpu = small_model(seed=7, **kw), small_model(seed=7, backend="cuda", **kw)
    graph = batch_graphs([_graph(ref, molecule(rng, 3), rng)])
    a, b = ref.compute(graph, stress=False), gpu.compute(graph, stress=False)
    for key in ("total_energy", "forces"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-10, atol=1e-10, err_msg=key)


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
    args = (
        rng.standard_normal((4, cp.irreps_in.dim)).astype(np.float32),
        rng.standard_normal((7, 9)).astype(np.float32),
        rng.standard_normal((7, cp.n_weights)).astype(np.float32),
        src,
        dst,
        4,
        cp,
    )
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
    a, b = (
        rng.standard_normal((5, 4)) + (1e-3j * rng.standard_normal((5, 4)) if dtype == "complex128" else 0)
        for _ in range(2)
    )
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
        validate_result(got.copy_to_host(), want, np.asarray(want).dtype.name, what)
    vec, g = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    src, frame = np.array([1, 2, 0, 0, 3]), np.array([0, 0, 1, 1, 1])
    got = gpu.forces_and_strain(dev(g), dev(vec), idx, src, frame, 4, 2)
    for x, y in zip(got, ref.forces_and_strain(g, vec, idx, src, frame, 4, 2)):
        validate_result(x.copy_to_host(), y, "float64", "forces_and_strain")


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


def test_plan_tables_are_uploaded_once_per_record_and_read_by_the_kernels(plan):
    """``device_record`` uploads a plan's tables once (no bytes the second time), drops them with the
    record, and the gate / linear / self-connection kernels follow the plan's tables."""
    import dataclasses
    import gc

    from tests.test_plan_tables import flip_gate_tables

    layer = plan.layers[1]
    for rec in (layer.linear_1.tables, layer.self_connection.tables, layer.gate.tables, layer.conv.tables):
        first = cu.device_record(rec)
        h2d = cu.transfer_bytes()[0]
        assert cu.device_record(rec) is first and cu.transfer_bytes()[0] == h2d
    g = layer.gate
    by_tables, by_lists = flip_gate_tables(g)
    z = np.random.default_rng(2).normal(size=(3, g.irreps_in.dim))
    ref, gpu = _ops("gate")
    np.testing.assert_allclose(gpu.forward(z, by_tables)[0], ref.forward(z, by_lists)[0], rtol=1e-12, atol=1e-12)
    n = len(cu._DEVICE_RECORDS)
    del by_tables
    gc.collect()
    assert len(cu._DEVICE_RECORDS) == n - 1
    # linear: tables whose norm is doubled double the output
    lin = layer.linear_1
    t2 = dataclasses.replace(lin.tables, norm=2 * lin.tables.norm)
    x = np.random.default_rng(3).normal(size=(3, lin.irreps_in.dim))
    w = np.random.default_rng(4).normal(size=lin.n_weights)
    lref, lgpu = _ops("linear")
    np.testing.assert_allclose(
        lgpu.forward(x, w, dataclasses.replace(lin, tables=t2))[0],
        2 * lref.forward(x, w, lin)[0],
        rtol=1e-12,
        atol=1e-12,
    )


def test_tp_conv_without_edge_grads():
    """``edge_grads=False``: the d_Y kernel is not launched (None), d_y and d_w are the full pass's."""
    ref, gpu = _ops("tp_conv")
    case = build("tp_conv", "float64")
    out, cache = case.call(gpu, *case.inputs)
    d_out = np.random.default_rng(3).standard_normal(np.shape(out))
    full = gpu.backward(d_out, cache)
    out, cache = case.call(gpu, *case.inputs)
    lean = gpu.backward(d_out, cache, edge_grads=False)
    assert lean[1] is None and full[1] is not None
    for k in (0, 2):
        np.testing.assert_array_equal(lean[k], full[k])
