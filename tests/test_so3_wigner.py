"""Wigner D: Y(R x) = D(R) Y(x) with and without inversion, D^1 = R, homomorphism, irreps_D."""

import numpy as np
import pytest

from nequip_np.so3 import Irrep, Irreps, irreps_D, random_rotation, spherical_harmonics, wigner_D


def _rotations(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return [random_rotation(rng) for _ in range(n)]


@pytest.mark.parametrize("improper", [False, True])
def test_sh_equivariance(improper):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 3))
    for R in _rotations():
        R = -R if improper else R
        y, yr = spherical_harmonics(8, x), spherical_harmonics(8, x @ R.T)
        for l in range(9):
            D = wigner_D(l, R)
            np.testing.assert_allclose(
                yr[:, l * l : (l + 1) ** 2], y[:, l * l : (l + 1) ** 2] @ D.T, atol=1e-12, err_msg=f"l={l}"
            )
            np.testing.assert_allclose(D @ D.T, np.eye(2 * l + 1), atol=1e-12)


def test_D1_is_R_and_parity():
    for R in _rotations(2):
        np.testing.assert_allclose(wigner_D(1, R), R, atol=1e-14)
        np.testing.assert_allclose(Irrep("1o").D_from_matrix(-R), -R, atol=1e-14)
        np.testing.assert_allclose(Irrep("1e").D_from_matrix(-R), R, atol=1e-14)
        np.testing.assert_allclose(wigner_D(2, -R, p=-1), -wigner_D(2, R), atol=1e-14)
        np.testing.assert_allclose(wigner_D(0, -R, p=-1), [[-1.0]])


def test_homomorphism():
    R1, R2 = _rotations(3, 2)
    for l in (2, 5, 8):
        np.testing.assert_allclose(wigner_D(l, R1 @ R2), wigner_D(l, R1) @ wigner_D(l, R2), atol=1e-12)


def test_irreps_D_block_structure():
    R = _rotations(4, 1)[0]
    irreps = Irreps("2x0e+1x1o+2x2e+1x0o")
    D = irreps_D(irreps, -R)
    assert D.shape == (irreps.dim, irreps.dim)
    np.testing.assert_allclose(D[:2, :2], np.eye(2))
    np.testing.assert_allclose(D[2:5, 2:5], -R, atol=1e-14)  # odd vector flips
    np.testing.assert_allclose(D[5:10, 5:10], wigner_D(2, R), atol=1e-14)
    np.testing.assert_allclose(D[10:15, 10:15], wigner_D(2, R), atol=1e-14)
    assert D[-1, -1] == -1.0 and not D[:5, 5:].any()
    np.testing.assert_allclose(irreps.D_from_matrix(-R), D)


def test_random_rotation_is_uniform_rotation():
    rng = np.random.default_rng(5)
    Rs = np.array([random_rotation(rng) for _ in range(4000)])
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", Rs, Rs), np.broadcast_to(np.eye(3), Rs.shape), atol=1e-14)
    assert np.allclose(np.linalg.det(Rs), 1.0)
    # Haar: E[R] = 0 and E[R_ij^2] = 1/3
    assert abs(Rs.mean(0)).max() < 0.05
    assert abs((Rs**2).mean(0) - 1 / 3).max() < 0.03


def test_errors():
    with pytest.raises(ValueError, match="orthogonal"):
        wigner_D(1, np.ones((3, 3)))
    with pytest.raises(ValueError, match="3x3"):
        wigner_D(1, np.eye(2))
    with pytest.raises(ValueError, match="parity"):
        wigner_D(1, np.eye(3), p=0)
