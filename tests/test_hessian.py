"""Exact Hessians by the complex step: official nequip's autograd Hessian, finite differences, symmetry."""

from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms

from nequip_np.calculator import NequIPCalculator
from nequip_np.data.graph import batch_graphs, graph_from_atoms
from nequip_np.interop import load_nequip_npz
from nequip_np.model.hessian import hessian, hessian_vector_products
from tests.model_factory import molecule, periodic, small_model
from tests.nequip_fixtures import FIXTURES, graph_from_fixture

ASPIRIN = FIXTURES / "hessian_aspirin.npz"


@pytest.fixture(scope="module")
def aspirin():
    """(model, graph, official Hessian, our Hessian) of the 21-atom aspirin fixture."""
    model = load_nequip_npz(ASPIRIN)
    with np.load(ASPIRIN) as data:
        graph = graph_from_fixture(data, "s0")
        ref = data["output/s0/hessian"]
    return model, graph, ref, hessian(model, graph)


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def fd_hessian(model, graph, h):
    """Central differences of the forces, all 6N displaced copies in one batched evaluation."""
    n = graph.n_atoms
    copies = []
    for k in range(3 * n):
        for s in (h, -h):
            pos = graph.pos.copy()
            pos[k // 3, k % 3] += s
            copies.append(replace(graph, pos=pos))
    f = model.compute(batch_graphs(copies), stress=False)["forces"].reshape(3 * n, 2, 3 * n)
    return -(f[:, 0] - f[:, 1]) / (2 * h)


def test_aspirin_equals_official_autograd_hessian(aspirin):
    _, _, ref, H = aspirin
    assert H.shape == (63, 63)
    assert _rel(H, ref) < 1e-10  # measured 2e-15


def test_aspirin_equals_finite_differences_of_forces(aspirin):
    model, graph, _, H = aspirin
    assert _rel(fd_hessian(model, graph, 3e-5), H) < 1e-7  # measured 6.5e-9 (h^2 truncation)


def test_aspirin_symmetric_and_translation_invariant(aspirin):
    _, graph, _, H = aspirin
    scale = np.abs(H).max()
    assert np.abs(H - H.T).max() / scale < 1e-13  # round-off; measured 5e-16
    rows = H.reshape(3 * graph.n_atoms, graph.n_atoms, 3).sum(axis=1)  # sum over atoms of each column block
    assert np.abs(rows).max() / scale < 1e-10  # measured 3e-16


def test_products_do_not_depend_on_batching_and_match_the_matrix(aspirin):
    model, graph, _, H = aspirin
    v = np.random.default_rng(0).standard_normal((5, graph.n_atoms, 3))
    one_by_one = hessian_vector_products(model, graph, v, batch=1)
    batched, grad = hessian_vector_products(model, graph, v, batch=3, return_gradient=True)
    assert np.abs(one_by_one - batched).max() < 1e-12 * np.abs(H).max()
    assert _rel(batched.reshape(5, -1), v.reshape(5, -1) @ H.T) < 1e-12
    assert np.allclose(-grad, model.compute(graph, stress=False)["forces"], rtol=0, atol=1e-12)
    assert hessian_vector_products(model, graph, v[0]).shape == (graph.n_atoms, 3)


def test_periodic_cell_with_many_images_equals_finite_differences():
    """Small triclinic cell (smaller than r_max): edges to images of the same atom, shift terms fixed."""
    model = small_model(seed=2, num_layers=2)
    atoms = periodic(np.random.default_rng(3), small=True)
    graph = graph_from_atoms(atoms, model.config.type_names, model.config.r_max)
    H = hessian(model, graph)
    assert _rel(fd_hessian(model, graph, 3e-5), H) < 1e-7
    assert np.abs(H - H.T).max() < 1e-12 * np.abs(H).max()


def test_rows_of_some_atoms_and_calculator(aspirin):
    model, graph, _, H = aspirin
    assert np.array_equal(hessian(model, graph, atoms=[4, 1]), H[[12, 13, 14, 3, 4, 5]])
    atoms = molecule(np.random.default_rng(1), n=5)
    calc = NequIPCalculator(small_model(seed=1))
    H5 = calc.get_hessian(atoms)
    assert H5.shape == (15, 15)
    assert np.array_equal(H5, hessian(calc.model, graph_from_atoms(atoms, calc.type_names, calc.model.config.r_max)))


def test_bad_input_is_named():
    calc = NequIPCalculator(small_model())
    with pytest.raises(ValueError, match="does not know element.*N"):
        calc.get_hessian(Atoms("CHN", positions=[[0, 0, 0], [1.1, 0, 0], [0, 1.2, 0]]))
    model, graph = calc.model, calc.graph(molecule(np.random.default_rng(0), n=4))
    with pytest.raises(ValueError, match=r"directions must have shape \(K, 4, 3\)"):
        hessian_vector_products(model, graph, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        hessian_vector_products(model, graph, np.full((4, 3), np.nan))
    with pytest.raises(ValueError, match="per structure"):
        hessian(model, batch_graphs([graph, graph]))
    with pytest.raises(ValueError, match=r"atom indices must lie in \[0, 4\)"):
        hessian(model, graph, atoms=[7])


def test_float32_model_gives_the_float64_hessian_to_single_precision():
    atoms = molecule(np.random.default_rng(1), n=5)
    h64 = NequIPCalculator(small_model(seed=1)).get_hessian(atoms)
    h32 = NequIPCalculator(small_model(seed=1), dtype="float32").get_hessian(atoms)
    assert _rel(h32, h64) < 1e-5  # measured 2.7e-7: the complex64 tangent survives h = 1e-20
    assert _rel(h32, h32.T) < 1e-5


def test_numba_backend_gives_the_reference_hessian():
    atoms = molecule(np.random.default_rng(2), n=5)
    ref = NequIPCalculator(small_model(seed=2)).get_hessian(atoms)
    got = NequIPCalculator(small_model(seed=2), backend="numba").get_hessian(atoms)
    assert _rel(got, ref) < 1e-12  # the complex128 kernels of the Numba backend
