"""Spherical harmonics: e3nn fixture, normalisation, closed forms, gradients, complex step, import."""

import importlib.util
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from nequip_np.so3 import SH_LMAX, sh_polynomials, sh_polynomials_grad, spherical_harmonics, spherical_harmonics_grad

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "e3nn_so3.npz"
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _block(y, l):
    return y[:, l * l : (l + 1) ** 2]


def test_against_e3nn_fixture():
    data = np.load(FIXTURE)
    v = data["sh_vectors"]
    y = spherical_harmonics(8, v)
    raw = sh_polynomials(8, v)
    for l in range(9):
        np.testing.assert_allclose(_block(y, l), data[f"sh_l{l}"], rtol=0, atol=1e-12)
        ref = data[f"shraw_l{l}"]
        np.testing.assert_allclose(_block(raw, l), ref, rtol=0, atol=1e-12 * max(1, abs(ref).max()))


def test_component_normalisation_and_low_orders():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(50, 3))
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    y = spherical_harmonics(SH_LMAX, v)
    for l in range(SH_LMAX + 1):
        np.testing.assert_allclose((_block(y, l) ** 2).sum(1), 2 * l + 1, rtol=1e-12)
    x_, y_, z_ = u.T
    np.testing.assert_allclose(y[:, 0], 1.0)
    np.testing.assert_allclose(y[:, 1:4], np.sqrt(3) * u, atol=1e-15)
    l2 = np.stack(
        [
            np.sqrt(15) * x_ * z_,
            np.sqrt(15) * x_ * y_,
            np.sqrt(5) * (y_**2 - (x_**2 + z_**2) / 2),
            np.sqrt(15) * y_ * z_,
            np.sqrt(15) / 2 * (z_**2 - x_**2),
        ],
        axis=1,
    )
    np.testing.assert_allclose(_block(y, 2), l2, atol=1e-14)


def test_matches_scipy_standard_harmonics_with_axis_permutation():
    """Independent oracle: e3nn's Y at (x, y, z) = standard real SH at (X, Y, Z) = (z, x, y)."""
    sph = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(7)
    u = rng.normal(size=(30, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    X, Y, Z = u[:, 2], u[:, 0], u[:, 1]
    theta, phi = np.arccos(Z), np.arctan2(Y, X)
    ours = spherical_harmonics(6, u)
    for l in range(7):
        for m in range(-l, l + 1):
            c = (
                sph.sph_harm_y(l, abs(m), theta, phi)
                if hasattr(sph, "sph_harm_y")
                else sph.sph_harm(abs(m), l, phi, theta)
            )
            if m == 0:
                ref = c.real
            else:
                ref = np.sqrt(2) * (-1) ** m * (c.imag if m < 0 else c.real)
            np.testing.assert_allclose(
                ours[:, l * l + l + m], np.sqrt(4 * np.pi) * ref, atol=1e-12, err_msg=f"l={l} m={m}"
            )


def test_parity_and_homogeneity():
    rng = np.random.default_rng(2)
    v = rng.normal(size=(10, 3))
    a, b = sh_polynomials(SH_LMAX, v), sh_polynomials(SH_LMAX, -2.5 * v)
    for l in range(SH_LMAX + 1):
        ref = (-2.5) ** l * _block(a, l)
        np.testing.assert_allclose(_block(b, l), ref, rtol=0, atol=1e-13 * abs(ref).max())


def test_zero_vector_and_shapes():
    y = spherical_harmonics(3, np.zeros(3))
    assert y.shape == (1, 16)
    np.testing.assert_array_equal(y[0], np.r_[1.0, np.zeros(15)])
    assert spherical_harmonics(2, np.ones((4, 3))).shape == (4, 9)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.ones((4, 2)), r"expected shape \(n, 3\)"),
        (np.ones((2, 3, 3)), r"expected shape \(n, 3\)"),
        (np.array([[np.nan, 0, 0]]), "non-finite"),
        (np.array([[np.inf, 0, 0]]), "non-finite"),
    ],
)
def test_input_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        spherical_harmonics(2, bad)
    with pytest.raises(ValueError, match=match):
        sh_polynomials(2, bad)


@pytest.mark.parametrize("lmax", [-1, SH_LMAX + 1, 2.0])
def test_lmax_errors(lmax):
    with pytest.raises(ValueError, match="l_max"):
        spherical_harmonics(lmax, np.ones(3))


def test_dtype_preserved():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(6, 3))
    for dt in (np.float32, np.float64, np.complex128):
        y, dy = sh_polynomials_grad(8, v.astype(dt))
        assert y.dtype == dt and dy.dtype == dt and sh_polynomials(8, v.astype(dt)).dtype == dt
    np.testing.assert_allclose(sh_polynomials(8, v.astype(np.float32)), sh_polynomials(8, v), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("normalize", [True, False])
def test_gradient_vs_central_differences(normalize):
    rng = np.random.default_rng(4)
    v = rng.normal(size=(8, 3))
    y, dy = spherical_harmonics_grad(SH_LMAX, v, normalize=normalize)
    np.testing.assert_array_equal(y, spherical_harmonics(SH_LMAX, v, normalize=normalize))
    h = 1e-6
    for a in range(3):
        e = np.zeros(3)
        e[a] = h
        fd = (spherical_harmonics(SH_LMAX, v + e, normalize) - spherical_harmonics(SH_LMAX, v - e, normalize)) / (2 * h)
        scale = max(1.0, abs(fd).max())
        np.testing.assert_allclose(dy[:, :, a], fd, atol=1e-6 * scale)


def test_gradient_at_zero_vector_is_clamped_polynomial_gradient():
    y, dy = spherical_harmonics_grad(2, np.zeros((1, 3)))
    np.testing.assert_allclose(dy[0, 1:4], np.sqrt(3) * np.eye(3) * 1e12)
    np.testing.assert_array_equal(dy[0, 4:], 0.0)


def test_complex_step_equals_directional_gradient():
    rng = np.random.default_rng(5)
    u = rng.normal(size=(12, 3))
    w = rng.normal(size=(12, 3))
    h = 1e-30
    y, dy = sh_polynomials_grad(SH_LMAX, u)
    yc = sh_polynomials(SH_LMAX, u + 1j * h * w)
    np.testing.assert_allclose(yc.real, y, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(yc.imag / h, np.einsum("nka,na->nk", dy, w), rtol=1e-12, atol=1e-12 * abs(dy).max())
    yc2, dyc = sh_polynomials_grad(SH_LMAX, u + 1j * h * w)
    np.testing.assert_allclose(dyc.real, dy, rtol=1e-13, atol=1e-13)


def test_generated_code_is_stamped_and_unmodified():
    import hashlib

    from nequip_np.so3 import _generated_sh as gen

    text = pathlib.Path(gen.__file__).read_text()
    body = text.split(gen.BODY_START + "\n", 1)[1]
    assert hashlib.sha256(body.encode()).hexdigest() == gen.BODY_SHA256
    assert gen.BODY_SHA256 in text.split('"""')[1] and "sympy" in text.split('"""')[1]


def _derive_module():
    pytest.importorskip("sympy")
    spec = importlib.util.spec_from_file_location("derive_so3", ROOT / "tools" / "derive_so3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rederive_low_orders_exactly_with_sympy_tools():
    """Re-derive l <= 3 with the generator: exact coefficients, the emitted code text, the
    expanded polynomials, and the independent Q-transform check all agree with what is committed."""
    import sympy as sp

    from nequip_np.so3 import _generated_sh as gen

    mod = _derive_module()
    text = pathlib.Path(gen.__file__).read_text()
    fresh = mod.exact_sh_table(3)
    x, y, z, r2 = sp.symbols("x y z r2", real=True)
    for l in range(4):
        mod.check_sh(l)  # Q0^dagger (complex Condon-Shortley) == our factored form
        if l > 0:  # l = 0 is the function header's `out[0] = 1.0`
            assert mod.emit_sh_block(l, grad=False) in text
            assert mod.emit_sh_block(l, grad=True) in text
        expanded = mod.sh_expanded(l)
        for m in range(-l, l + 1):
            key = f"{l},{m}"
            assert gen.EXACT_COEFFICIENTS[key] == fresh[key]
            # rebuild the committed polynomial from its exact strings: F_m(X, Y) * sum c Z^j r2^k
            X, Y, Z = z, x, y
            w = sp.expand((X + sp.I * Y) ** abs(m))
            f = sp.re(w) if m >= 0 else sp.im(w)
            pi = 0
            for item in gen.EXACT_COEFFICIENTS[key]:
                jk, c = item.split(":")
                j, k = map(int, jk.split(","))
                pi += sp.sympify(c) * Z**j * (x**2 + y**2 + z**2) ** k
            assert sp.expand(f * pi - expanded[l + m]) == 0


def test_import_is_fast_and_sympy_free():
    code = (
        "import time, sys; t = time.perf_counter(); import nequip_np.so3; "
        "print(time.perf_counter() - t, 'sympy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.split()
    assert out[1] == "False"
    assert float(out[0]) < 5.0
