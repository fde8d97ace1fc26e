"""``kernels.common.scatter_sum``: the bincount path equals the sparse-matrix path bit for bit."""

import numpy as np
import pytest

from nequip_np.kernels import common


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((50,), np.float64),
        ((50, 3), np.float64),
        ((50, 3, 3), np.float64),
        ((50, 4), np.complex128),
        ((50, 40), np.float64),
        ((50, 3), np.float32),
    ],
)
def test_scatter_sum_paths_agree_bitwise(rng, shape, dtype, monkeypatch):
    values = rng.standard_normal(shape).astype(dtype)
    if np.iscomplexobj(values):
        values = values + 1j * rng.standard_normal(shape)
    index = rng.integers(0, 7, shape[0])
    index[:3] = 6  # the last row is not empty; row sums of several entries in edge order
    fast = common.scatter_sum(values, index, 8)
    monkeypatch.setattr(common, "BINCOUNT_COLUMNS", 0)
    sparse = common.scatter_sum(values, index, 8)
    assert fast.dtype == sparse.dtype == values.dtype and fast.shape == (8,) + shape[1:]
    assert np.array_equal(fast, sparse)
    assert np.all(fast[7] == 0)  # an index value never used
    expected = np.zeros((8,) + shape[1:], dtype=np.result_type(values, np.float64))
    np.add.at(expected, index, values)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(fast, expected, rtol=tol, atol=tol * np.abs(values).sum())


def test_scatter_sum_rejects_out_of_range_index():
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 3\)"):
        common.scatter_sum(np.ones((4, 3)), np.array([0, 1, 2, 3]), 3)
