"""Clebsch–Gordan / Wigner-3j: e3nn fixture, closed forms, equivariance, orthogonality, selection
rules, and an exact re-derivation of part of the committed table."""

import importlib.util
import itertools
import pathlib

import numpy as np
import pytest

from nequip_np.so3 import (
    Irrep,
    allowed_path,
    cg_lmax,
    cg_provenance,
    clebsch_gordan,
    clebsch_gordan_exact,
    clebsch_gordan_exact_entries,
    random_rotation,
    wigner_D,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "e3nn_so3.npz"


def _derive_module():
    pytest.importorskip("sympy")
    spec = importlib.util.spec_from_file_location("derive_so3", ROOT / "tools" / "derive_so3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _triples(lmax):
    for l1, l2 in itertools.product(range(lmax + 1), repeat=2):
        for l3 in range(abs(l1 - l2), min(l1 + l2, lmax) + 1):
            yield l1, l2, l3


def test_against_e3nn_wigner_3j_fixture():
    data = np.load(FIXTURE)
    keys = [k for k in data.files if k.startswith("w3j_")]
    assert len(keys) == len(list(_triples(4)))
    for k in keys:
        l1, l2, l3 = map(int, k.split("_")[1:])
        np.testing.assert_allclose(clebsch_gordan(l1, l2, l3), data[k], rtol=0, atol=1e-12, err_msg=k)


def test_closed_forms():
    eps = np.zeros((3, 3, 3))
    for (i, j, k), s in {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1, (0, 2, 1): -1, (2, 1, 0): -1, (1, 0, 2): -1}.items():
        eps[i, j, k] = s
    np.testing.assert_allclose(clebsch_gordan(1, 1, 0)[:, :, 0], np.eye(3) / np.sqrt(3), atol=1e-16)
    np.testing.assert_allclose(clebsch_gordan(1, 1, 1), eps / np.sqrt(6), atol=1e-16)
    for l in range(cg_lmax() + 1):
        d = np.eye(2 * l + 1) / np.sqrt(2 * l + 1)
        np.testing.assert_allclose(clebsch_gordan(0, l, l)[0], d, atol=1e-16)
        np.testing.assert_allclose(clebsch_gordan(l, 0, l)[:, 0, :], d, atol=1e-16)
        np.testing.assert_allclose(clebsch_gordan(l, l, 0)[:, :, 0], d, atol=1e-16)


def test_norm_equivariance_and_orthogonality():
    rng = np.random.default_rng(0)
    rots = [random_rotation(rng) for _ in range(2)]
    rots[1] = -rots[1]  # improper: each D^l carries (-1)^l, C is invariant when l1+l2+l3 is even
    Ds = [[wigner_D(l, R) for l in range(cg_lmax() + 1)] for R in rots]
    for l1, l2, l3 in _triples(cg_lmax()):
        c = clebsch_gordan(l1, l2, l3)
        assert abs(np.linalg.norm(c) - 1) < 1e-14
        for i, D in enumerate(Ds):
            sign = (-1) ** (l1 + l2 + l3) if i == 1 else 1
            rc = np.einsum("ai,bj,ck,ijk->abc", D[l1], D[l2], D[l3], c, optimize=True)
            np.testing.assert_allclose(rc, sign * c, atol=1e-12, err_msg=str((l1, l2, l3)))
        # as a map (2l1+1)(2l2+1) -> 2l3+1 it is (2l3+1)^-1/2 times a co-isometry
        m = c.reshape(-1, 2 * l3 + 1)
        np.testing.assert_allclose(m.T @ m, np.eye(2 * l3 + 1) / (2 * l3 + 1), atol=1e-14)


def test_orthogonality_between_l3():
    l1, l2 = 3, 2
    ms = [clebsch_gordan(l1, l2, l3).reshape(-1, 2 * l3 + 1) for l3 in range(1, 6)]
    for a, b in itertools.combinations(ms, 2):
        np.testing.assert_allclose(a.T @ b, 0, atol=1e-15)
    full = np.concatenate([m * np.sqrt(m.shape[1]) for m in ms], axis=1)
    np.testing.assert_allclose(full @ full.T, np.eye(35), atol=1e-13)  # completeness


def test_selection_rules():
    assert not clebsch_gordan(1, 1, 3).any() and clebsch_gordan(1, 1, 3).shape == (3, 3, 7)
    assert not clebsch_gordan(0, 2, 1).any()
    for l1, l2, l3 in itertools.product(range(4), repeat=3):
        triangle = abs(l1 - l2) <= l3 <= l1 + l2
        assert clebsch_gordan(l1, l2, l3).any() == triangle
        for p1, p2, p3 in itertools.product((1, -1), repeat=3):
            ok = allowed_path(Irrep(l1, p1), Irrep(l2, p2), Irrep(l3, p3))
            assert ok == (triangle and p1 * p2 == p3)


@pytest.mark.parametrize(
    "triple, nnz", [((1, 1, 0), 3), ((1, 1, 1), 6), ((1, 1, 2), 11), ((0, 3, 3), 7), ((2, 2, 2), 25)]
)
def test_nonzero_counts(triple, nnz):
    assert np.count_nonzero(clebsch_gordan(*triple)) == nnz


def test_exact_entries_and_errors():
    ex = clebsch_gordan_exact(1, 1, 2)
    import sympy as sp

    assert ex[0, 0, 4] == -sp.sqrt(10) / 10 and ex[0, 1, 1] == sp.sqrt(10) / 10
    np.testing.assert_allclose(np.array(ex.tolist(), dtype=float), clebsch_gordan(1, 1, 2), atol=1e-16)
    with pytest.raises(ValueError, match="l <= 8"):
        clebsch_gordan(9, 1, 8)
    with pytest.raises(ValueError, match="non-negative"):
        clebsch_gordan(-1, 1, 1)
    assert cg_lmax() >= 8 and "sympy" in cg_provenance()


def test_rederive_subset_exactly_with_sympy_tools():
    mod = _derive_module()
    for l1, l2, l3 in _triples(2):
        assert mod.real_cg_exact(l1, l2, l3) == clebsch_gordan_exact_entries(l1, l2, l3)


def test_racah_against_sympy_physics():
    mod = _derive_module()
    from sympy import Rational, S
    from sympy.physics.wigner import clebsch_gordan as cg_sympy

    for j1, j2 in itertools.product(range(3), repeat=2):
        for j3 in range(abs(j1 - j2), j1 + j2 + 1):
            for m1, m2 in itertools.product(range(-j1, j1 + 1), range(-j2, j2 + 1)):
                if abs(m1 + m2) > j3:
                    continue
                s, sq = mod.su2_cg(j1, m1, j2, m2, j3, m1 + m2)
                ref = S(cg_sympy(j1, j2, j3, m1, m2, m1 + m2))
                assert s * s * Rational(sq.numerator, sq.denominator) == ref**2 * s * s
                assert (ref > 0) == (s > 0) or ref == 0 == s
