"""Irreps algebra: parsing, errors, order, products, sort/simplify against e3nn's own results."""

import json
import pathlib

import numpy as np
import pytest

from nequip_np.so3 import Irrep, Irreps, MulIr, allowed_path

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "e3nn_so3.npz"


def test_irrep_parse_and_attributes():
    ir = Irrep("1o")
    assert (ir.l, ir.p, ir.dim, str(ir)) == (1, -1, 3, "1o")
    assert Irrep(2, 1) == Irrep("2e") == (2, 1)
    assert Irrep("3y") == Irrep("3o") and Irrep("2y") == Irrep("2e")
    assert Irrep((1, -1)) == Irrep(Irrep("1o"))
    assert len({Irrep("1o"), Irrep(1, -1), Irrep("1e")}) == 2


@pytest.mark.parametrize("bad", ["1x", "o1", "-1o", "1q", "", "1.5e"])
def test_irrep_parse_errors(bad):
    with pytest.raises(ValueError, match="expected 'LP'"):
        Irrep(bad)


def test_irrep_invalid_values():
    with pytest.raises(ValueError, match="parity"):
        Irrep(1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        Irrep(-1, 1)


def test_irrep_order_is_e3nn_tuple_order():
    order = [Irrep(s) for s in ["0o", "0e", "1o", "1e", "2o", "2e"]]
    assert sorted(reversed(order)) == order
    assert list(Irrep.iterator(2)) == order


def test_irrep_product():
    assert [str(i) for i in Irrep("1o") * Irrep("2e")] == ["1o", "2o", "3o"]
    assert [str(i) for i in Irrep("2o") * Irrep("2o")] == ["0e", "1e", "2e", "3e", "4e"]
    assert [str(i) for i in Irrep("0e") * Irrep("3o")] == ["3o"]
    assert 3 * Irrep("1o") == Irreps("3x1o")


def test_irreps_parse_forms():
    a = Irreps("32x0e+16x1o")
    assert a == Irreps([(32, "0e"), (16, "1o")]) == Irreps([(32, (0, 1)), (16, (1, -1))])
    assert a == Irreps(a) == Irreps(" 32x0e + 16x1o ")
    assert Irreps("0e") == Irreps("1x0e") and str(Irreps("0e")) == "1x0e"
    assert len(Irreps("")) == 0 and Irreps("").dim == 0 and str(Irreps("")) == ""
    assert Irreps([Irrep("1o"), "2e"]) == Irreps("1o+2e")
    assert isinstance(a[0], MulIr) and a[0].mul == 32 and a[0].ir == Irrep("0e") and a[1].dim == 48


@pytest.mark.parametrize("bad", ["32x", "x0e", "32x0e+", "3*0e", "2x1q", "0e++1o", "a"])
def test_irreps_parse_errors(bad):
    with pytest.raises(ValueError, match="expected 'MULxLP' like '32x0e'"):
        Irreps(bad)


def test_irreps_properties():
    a = Irreps("2x0e+1x1o+3x2e")
    assert (a.dim, a.num_irreps, a.lmax, len(a)) == (2 + 3 + 15, 6, 2, 3)
    assert a.ls == [0, 0, 1, 2, 2, 2]
    assert a.slices() == [slice(0, 2), slice(2, 5), slice(5, 20)]
    assert a.count("2e") == 3 and a.count("2o") == 0
    assert "1o" in a and "1e" not in a and Irrep("0e") in a
    assert a[1:] == Irreps("1x1o+3x2e") and isinstance(a[1:], Irreps)
    assert a + "1x0e" == Irreps("2x0e+1x1o+3x2e+1x0e")
    assert str(a) == "2x0e+1x1o+3x2e"
    assert Irreps.spherical_harmonics(3) == Irreps("1x0e+1x1o+1x2e+1x3o")
    assert Irreps.spherical_harmonics(2, p=1) == Irreps("0e+1e+2e")
    with pytest.raises(ValueError):
        _ = Irreps("").lmax


def test_allowed_path():
    assert allowed_path("1o", "1o", "0e") and allowed_path("1o", "1o", "1e")
    assert not allowed_path("1o", "1o", "1o")  # parity
    assert not allowed_path("1o", "1o", "3e")  # triangle
    assert allowed_path("2e", "1o", "3o") and not allowed_path("2e", "1o", "0o")


def test_against_e3nn_fixture():
    cases = json.loads(str(np.load(FIXTURE)["irreps_cases"]))
    assert len(cases) >= 5
    for c in cases:
        a = Irreps(c["input"])
        srt = a.sort()
        assert str(a) == c["str"]
        assert (a.dim, a.num_irreps, a.ls) == (c["dim"], c["num_irreps"], c["ls"])
        assert str(srt.irreps) == c["sorted"]
        assert list(srt.p) == c["p"] and list(srt.inv) == c["inv"]
        assert str(a.simplify()) == c["simplified"]
        assert str(a.regroup()) == c["regrouped"]
        # p's meaning: sorted[p[i]] is original[i]
        assert all(srt.irreps[srt.p[i]] == a[i] for i in range(len(a)))
