"""The numba backend's two code paths per operation (small-graph / large-graph) against the reference.

``tp_conv``: serial edge-order drivers (small graphs, one thread), the CSR forward with the split
one-sweep reverse pass, and the CSR forward with the two-pass reverse; ``self_connection``:
one Numba pass (few rows, real), all-species products (few atoms × species) and the per-species loop; ``linear``: one Numba pass (few
rows, real) and BLAS per path; ``linear`` / ``self_connection``
with ``weight_grads=False`` (forces only). Each path is forced in turn, float64 and complex128, and must
equal the reference to 1e-12; the model's energies and forces too, on a molecule and a periodic cell.
"""

from __future__ import annotations

import numpy as np
import pytest

from nequip_np.data.graph import graph_from_atoms
from nequip_np.kernels.registry import get_ops
from tests.kernel_cases import build, compare, flat_grads, validate_result
from tests.model_factory import molecule, periodic, small_model

REF = get_ops("numpy")
NUMBA = get_ops("numba")


@pytest.fixture(params=["small", "medium", "large"])
def path(request, monkeypatch):
    """Force one path of every multi-path numba kernel ("medium": the self-connection's all-species products)."""
    small = request.param != "large"
    # tp_conv: serial drivers / CSR forward + split one-sweep reverse / CSR forward + two-pass reverse
    monkeypatch.setattr(NUMBA.tp_conv, "_serial", lambda n_edges: request.param == "small")
    monkeypatch.setattr(NUMBA.tp_conv, "_split", lambda n, dim, dtype: request.param == "medium")
    monkeypatch.setattr(
        NUMBA.self_connection,
        "_small",
        lambda *arrays: request.param == "small" and all(a.dtype.kind == "f" for a in arrays),
    )
    monkeypatch.setattr(NUMBA.self_connection, "_all_species", lambda n, n_types: small)
    monkeypatch.setattr(NUMBA.linear, "_small", lambda *arrays: small and all(a.dtype.kind == "f" for a in arrays))
    return request.param


@pytest.mark.parametrize("dtype", ["float64", "float32", "complex128"])
@pytest.mark.parametrize("name", ["tp_conv", "self_connection", "linear"])
def test_kernel_paths_match_reference(path, name, dtype):
    compare(name, dtype, getattr(NUMBA, name), getattr(REF, name))


@pytest.mark.parametrize("name", ["linear", "self_connection"])
def test_forces_only_backward_matches_reference(path, name):
    """``weight_grads=False``: the input gradient is the reference's; the parameter gradients are None."""
    case = build(name, "float64")
    outs = []
    for mod in (getattr(NUMBA, name), getattr(REF, name)):
        out, cache = case.call(mod, *case.inputs)
        d_out = np.random.default_rng(1).standard_normal(np.shape(out))
        full = flat_grads(mod.backward(d_out, cache))
        out, cache = case.call(mod, *case.inputs)
        lean = mod.backward(d_out, cache, weight_grads=False)
        assert all(g is None for g in lean[1:]), f"{name}: parameter gradients computed with weight_grads=False"
        validate_result(lean[0], full[0], "float64", f"{name} d_input, weight_grads=False vs True")
        outs.append(lean[0])
    validate_result(outs[0], outs[1], "float64", f"{name} d_input, weight_grads=False")


def test_model_paths_match_reference(path):
    ref, model = small_model(), small_model(backend="numba")
    rng = np.random.default_rng(11)
    for kind, atoms in (("molecule", molecule(rng, 9)), ("periodic", periodic(rng))):
        graph = graph_from_atoms(atoms, ref.config.type_names, ref.config.r_max)
        want, got = ref.compute(graph), model.compute(graph)
        for key in ("atomic_energy", "forces"):
            err = np.max(np.abs(got[key] - want[key]))
            assert err <= 1e-12 * np.max(np.abs(want[key])), (path, kind, key, err)
        if kind == "periodic":
            assert np.max(np.abs(got["stress"] - want["stress"])) <= 1e-12 * np.max(np.abs(want["stress"]))


@pytest.mark.parametrize("split", [True, False], ids=["split", "two-pass"])
def test_parallel_tensor_product_drivers_match_serial_and_ignore_threads(split, monkeypatch):
    """A parallel driver gives the same bits on one and on all threads (fixed reduction orders) and
    agrees with the serial driver to rounding (FMA contraction and SIMD sums may differ)."""
    import numba

    case = build("tp_conv", "float64")
    mod = NUMBA.tp_conv
    monkeypatch.setattr(mod, "_split", lambda n, dim, dtype: split)

    def run(serial, threads=None):
        monkeypatch.setattr(mod, "_serial", lambda n_edges: serial)
        before = numba.get_num_threads()
        numba.set_num_threads(threads or before)
        try:
            out, cache = case.call(mod, *case.inputs)
            d_out = np.random.default_rng(2).standard_normal(out.shape)
            return [out] + list(mod.backward(d_out, cache))
        finally:
            numba.set_num_threads(before)

    many, one, serial = run(False), run(False, 1), run(True)
    for a, b, c in zip(many, one, serial):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-13 * max(np.max(np.abs(c)), 1.0))


def test_split_bounds_partition_the_receivers():
    """Fixed ranges of receivers with about equal edge counts; empty rows and tiny graphs allowed."""
    from nequip_np.kernels.tp_conv.cpu import split_bounds

    for counts in ([3, 0, 5, 1, 0, 0, 7, 2], [0, 0, 4], [1], [0, 0, 0], list(range(40))):
        ptr = np.concatenate([[0], np.cumsum(counts)])
        b = split_bounds(ptr, 8)
        assert b[0] == 0 and b[-1] == len(counts) and np.all(np.diff(b) >= 0) and len(b) == 9
        if ptr[-1] >= 64:  # ranges hold about E/8 edges: no range exceeds E/8 plus one row
            per = ptr[b[1:]] - ptr[b[:-1]]
            assert per.max() <= ptr[-1] / 8 + max(counts)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_tp_conv_without_edge_grads(path, backend, dtype):
    """``edge_grads=False``: d_Y is None and d_y, d_w are those of the full reverse pass (same sums)."""
    mod = (REF if backend == "numpy" else NUMBA).tp_conv
    case = build("tp_conv", dtype)
    out, cache = case.call(mod, *case.inputs)
    d_out = np.random.default_rng(3).standard_normal(np.shape(out)).astype(dtype)
    full = mod.backward(d_out, cache)
    out, cache = case.call(mod, *case.inputs)
    lean = mod.backward(d_out, cache, edge_grads=False)
    assert lean[1] is None and full[1] is not None and np.abs(full[1]).max() > 0
    for k in (0, 2):
        np.testing.assert_array_equal(lean[k], full[k], err_msg=f"{backend} backward[{k}], edge_grads=False")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_model_backward_without_edge_grads(backend):
    """The complex (training) reverse pass with ``edge_grads=False`` gives the same parameter gradients."""
    model = small_model(backend=backend)
    rng = np.random.default_rng(5)
    graph = graph_from_atoms(periodic(rng), model.config.type_names, model.config.r_max)
    vec = graph.edge_vectors() + 1e-20j * rng.standard_normal((graph.n_edges, 3))
    seed = rng.standard_normal(graph.n_atoms) - 1j * rng.standard_normal(graph.n_atoms)
    d_vec, full = model.backward(seed, model.forward(graph, vec)[1], graph)
    none, lean = model.backward(seed, model.forward(graph, vec)[1], graph, edge_grads=False)
    assert none is None and d_vec.shape == (graph.n_edges, 3) and set(lean) == set(full)
    for k in full:
        np.testing.assert_allclose(lean[k], full[k], rtol=0, atol=1e-14 * max(1.0, np.abs(full[k]).max()), err_msg=k)
