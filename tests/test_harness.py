"""The harness catches each planted fault with the right check and passes correct models."""

from __future__ import annotations

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from nequip_np.conventions import voigt_to_stress
from nequip_np.testing import CHECKS, TOLERANCES, check_calculator, check_function, faults

CUTOFF = 4.0  # SmoothPair and its faulty subclasses


@pytest.fixture
def mol():
    m = molecule("CH4")
    m.rattle(0.05, seed=1)
    return m


@pytest.fixture
def cell():
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    a[0].symbol = "Al"
    a.rattle(0.05, seed=2)
    return a


def _statuses(report):
    return {c.name: c.status for c in report}


def test_check_names_are_stable_and_in_both_tolerance_tables():
    names = [
        "rotation_invariance",
        "inversion",
        "translation",
        "permutation",
        "forces_gradient",
        "curl_free",
        "net_force",
        "stress_strain",
        "additivity",
        "cutoff_smoothness",
        "nve_drift",
    ]
    assert list(CHECKS) == names
    for dtype in ("float64", "float32"):
        assert list(TOLERANCES[dtype]) == names


def test_emt_periodic_cell_passes_with_stress(cell):
    report = check_calculator(EMT(), cell)
    st = _statuses(report)
    assert report.passed, str(report)
    assert st["stress_strain"] == "PASS" and "sigma" in report["rotation_invariance"].detail
    # periodic: these do not apply and are reported as skipped, with a reason, not as passed
    for name in ("net_force", "additivity", "cutoff_smoothness"):
        assert st[name] == "SKIP" and report[name].passed is None and report[name].detail


def test_smooth_pair_molecule_passes_everything_applicable(mol):
    report = check_calculator(faults.SmoothPair(), mol, cutoff=CUTOFF)
    assert report.passed, str(report)
    assert [c.name for c in report if c.skipped] == ["stress_strain"]


def test_smooth_pair_stress_in_periodic_cell(cell):
    report = check_calculator(
        faults.SmoothPair(), cell, cutoff=CUTOFF, checks=["rotation_invariance", "inversion", "stress_strain"]
    )
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "calc, must_fail, cutoff",
    [
        (faults.make_scaled_forces(), {"forces_gradient", "nve_drift"}, CUTOFF),
        (faults.make_nonconservative(), {"forces_gradient", "curl_free", "nve_drift"}, CUTOFF),
        (faults.make_anisotropic(), {"rotation_invariance", "inversion"}, CUTOFF),
        (faults.make_chiral(), {"inversion"}, CUTOFF),
        (faults.make_truncated_lj(), {"cutoff_smoothness", "nve_drift"}, 3.0),
    ],
    ids=["scaled_forces", "missing_term", "anisotropic", "chiral", "truncated_lj"],
)
def test_planted_fault_is_flagged_by_exactly_the_right_checks(calc, must_fail, cutoff, mol):
    checks = None if not isinstance(calc, faults.ChiralPair) else [c for c in CHECKS if c != "nve_drift"]
    report = check_calculator(calc, mol, cutoff=cutoff, checks=checks)
    failed = set(report.failed)
    assert failed == must_fail & set(report.names), str(report)
    assert not report.passed
    for name in failed:
        assert report[name].error > 10 * report[name].tolerance  # not a marginal call


def test_scaled_forces_pass_curl_but_fail_gradient(mol):
    # a scaled gradient is still curl-free: the two checks measure different things
    report = check_calculator(faults.make_scaled_forces(), mol, checks=["forces_gradient", "curl_free"])
    assert _statuses(report) == {"forces_gradient": "FAIL", "curl_free": "PASS"}
    assert report["forces_gradient"].error == pytest.approx(0.1 / 1.1, rel=1e-3)


def test_check_function_on_a_lambda(mol):
    calc = faults.SmoothPair()
    fn = lambda atoms: (calc.get_potential_energy(atoms), calc.get_forces(atoms))  # noqa: E731
    report = check_function(fn, mol, cutoff=CUTOFF, md_steps=10)
    assert report.passed, str(report)
    bad = check_function(lambda a: (fn(a)[0], 1.1 * fn(a)[1]), mol, checks="forces_gradient")
    assert bad["forces_gradient"].status == "FAIL"


def test_check_function_stress_voigt_and_3x3_equivalent(cell):
    calc = faults.SmoothPair()

    def voigt(atoms):
        return calc.get_potential_energy(atoms), calc.get_forces(atoms), calc.get_stress(atoms)

    def full(atoms):
        return calc.get_potential_energy(atoms), calc.get_forces(atoms), voigt_to_stress(calc.get_stress(atoms))

    for fn in (voigt, full):
        assert check_function(fn, cell, checks=["stress_strain"])["stress_strain"].status == "PASS"
    wrong_sign = lambda a: (*voigt(a)[:2], -voigt(a)[2])  # noqa: E731
    assert check_function(wrong_sign, cell, checks=["stress_strain"])["stress_strain"].status == "FAIL"


def test_callers_atoms_untouched(mol):
    calc0 = EMT()
    mol.calc = calc0
    before = (mol.positions.copy(), mol.cell.array.copy(), mol.pbc.copy(), mol.get_chemical_symbols())
    check_calculator(faults.SmoothPair(), mol, cutoff=CUTOFF)
    assert mol.calc is calc0
    np.testing.assert_array_equal(mol.positions, before[0])
    np.testing.assert_array_equal(mol.cell.array, before[1])
    np.testing.assert_array_equal(mol.pbc, before[2])
    assert mol.get_chemical_symbols() == before[3]
    assert mol.get_velocities() is None or not mol.get_velocities().any()


def test_unknown_names_raise_with_the_valid_ones(mol):
    with pytest.raises(ValueError, match="rotation_invariance"):
        check_calculator(EMT(), mol, checks=["rotation"])
    with pytest.raises(ValueError, match="curl_free"):
        check_calculator(EMT(), mol, tolerances={"curl": 1.0})
    with pytest.raises(ValueError, match="float64"):
        check_calculator(EMT(), mol, dtype="float16")
    with pytest.raises(ValueError, match="n_rotations"):
        check_calculator(EMT(), mol, n_rotation=2)


def test_tolerance_override_flips_the_verdict(mol):
    calc = faults.make_scaled_forces()
    report = check_calculator(calc, mol, checks=["forces_gradient"], tolerances={"forces_gradient": 0.2})
    assert report.passed and report["forces_gradient"].tolerance == 0.2
    f32 = check_calculator(calc, mol, checks=["forces_gradient"], dtype="float32")
    assert f32["forces_gradient"].tolerance == TOLERANCES["float32"]["forces_gradient"]


def test_crashing_model_is_an_error_not_a_pass(mol):
    def broken(atoms):
        raise RuntimeError("kernel exploded")

    report = check_function(broken, mol, checks=["translation"])
    assert report["translation"].status == "ERROR" and "kernel exploded" in report["translation"].detail
    assert not report.passed


def test_report_table_dict_and_lookup(mol):
    report = check_calculator(faults.make_anisotropic(), mol, checks=["rotation_invariance", "translation"])
    text = str(report)
    for word in ("rotation_invariance", "translation", "PASS", "FAIL", "tolerance"):
        assert word in text
    lines = text.splitlines()
    assert len({line.index("e-") for line in lines if line.startswith(("rotation", "translation"))}) == 1
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] is False and [c["name"] for c in d["checks"]] == report.names
    with pytest.raises(KeyError, match="translation"):
        report["curl_free"]


def test_all_skipped_is_not_a_pass(cell):
    report = check_calculator(EMT(), cell, checks=["net_force", "additivity"])
    assert not report.passed and report.failed == []


def test_cli_subcommand_end_to_end(tmp_path, mol, monkeypatch):
    from nequip_np import cli

    assert cli.SUBCOMMANDS["check"] == "nequip_np.testing.cli"
    # only this subcommand: the others are built elsewhere and need not exist for this test
    monkeypatch.setattr(cli, "SUBCOMMANDS", {"check": "nequip_np.testing.cli"})
    xyz = tmp_path / "ch4.xyz"
    ase.io.write(xyz, mol)
    out = tmp_path / "report.json"
    args = [
        "check",
        "--calculator",
        "nequip_np.testing.faults:make_smooth_pair",
        "--structure",
        str(xyz),
        "--cutoff",
        "4",
        "--md-steps",
        "10",
        "--json",
        str(out),
    ]
    assert cli.main(args) == 0
    assert json.loads(out.read_text())["passed"] is True
    bad = [
        "check",
        "--calculator",
        "nequip_np.testing.faults:make_scaled_forces",
        "--structure",
        str(xyz),
        "--checks",
        "forces_gradient,translation",
    ]
    assert cli.main(bad) == 1
    assert cli.main(["check", "--calculator", "nequip_np.testing.faults:nope", "--structure", str(xyz)]) == 2


def test_cli_as_a_process(tmp_path, mol):
    xyz = tmp_path / "ch4.xyz"
    ase.io.write(xyz, mol)
    base = [sys.executable, "-m", "nequip_np.testing.cli", "--structure", str(xyz), "--checks", "forces_gradient"]
    ok = subprocess.run(
        base + ["--calculator", "nequip_np.testing.faults:make_smooth_pair"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "PASS" in ok.stdout, ok.stdout + ok.stderr
    bad = subprocess.run(
        base + ["--calculator", "nequip_np.testing.faults:make_nonconservative"], capture_output=True, text=True
    )
    assert bad.returncode == 1 and "FAIL" in bad.stdout, bad.stdout + bad.stderr
