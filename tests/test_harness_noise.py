"""Noise-aware verdicts, profiles, long-range locality, quick mode and the one-line entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ase.io
import numpy as np
import pytest
from ase.build import molecule

from nequip_np.testing import CHECKS, TOLERANCES, assert_calculator, check_calculator, check_function, faults

CH4_CHARGES = {"C": -0.4, "H": 0.1}


@pytest.fixture
def mol():
    m = molecule("CH4")
    m.rattle(0.05, seed=1)
    return m


def noisy(seed=1):
    """The toy pair potential with GFN2-xTB-sized SCF noise (1e-9 eV, 5e-5 eV/Å per call)."""
    return faults.Noisy(faults.SmoothPair(), seed=seed)


def test_profile_is_chosen_from_the_measured_noise(mol):
    exact = check_calculator(faults.SmoothPair(), mol, checks="translation")
    assert exact.meta["profile"] == "float64 (auto)" and exact.meta["locality"] == "local"
    assert exact["translation"].floor < 1e-13

    scf = check_calculator(noisy(), mol, checks="translation")
    assert scf.meta["profile"] == "scf (auto)" and scf.meta["locality"] == "long-range"
    assert "re-evaluation" in scf.meta["noise"] and scf.meta["noise_floor"]["history"] > 1e-12
    f_max = np.abs(faults.SmoothPair().get_forces(mol)).max()
    assert 5e-5 / f_max < scf["translation"].floor < 1e-2  # the planted noise level, relative to max|F|

    calc = faults.SmoothPair()
    single = lambda a: (np.float32(calc.get_potential_energy(a)), calc.get_forces(a).astype(np.float32))
    f32 = check_function(single, mol, checks="translation")
    assert f32.meta["profile"] == "float32 (auto)"
    assert f32["translation"].tolerance == TOLERANCES["float32"]["translation"]


def test_noisy_correct_calculator_passes_and_would_cry_wolf_without_the_floor(mol):
    report = check_calculator(noisy(), mol, md_steps=20)
    assert report.passed, str(report)
    for c in report:
        if not c.skipped:
            assert c.margin > 1 and c.allowed >= c.tolerance
    # the same calculator judged as an exact float64 model: its SCF noise reads as broken symmetry
    naive = check_calculator(
        noisy(), mol, profile="float64", noise=False, checks=["rotation_invariance", "translation", "forces_gradient"]
    )
    assert set(naive.failed) == {"rotation_invariance", "translation", "forces_gradient"}


@pytest.mark.parametrize(
    "fault, caught_by",
    [
        (lambda: faults.ScaledForces(noisy(), factor=1.01), {"forces_gradient"}),
        (lambda: faults.CurlForces(noisy(), strength=0.02), {"forces_gradient", "rotation_invariance"}),
        (lambda: faults.AnisotropicEnergy(noisy(), strength=1e-4), {"rotation_invariance", "inversion"}),
    ],
    ids=["forces_x1.01", "curl", "anisotropic"],
)
def test_planted_fault_on_a_noisy_calculator_is_still_caught(fault, caught_by, mol):
    checks = ["rotation_invariance", "inversion", "translation", "forces_gradient", "curl_free"]
    report = check_calculator(fault(), mol, checks=checks)
    assert report.meta["profile"] == "scf (auto)"
    assert caught_by <= set(report.failed), str(report)
    assert "translation" not in report.failed  # none of these faults breaks translation


def test_explicit_tolerance_wins_over_the_noise_floor(mol):
    report = check_calculator(noisy(), mol, checks="translation", tolerances={"translation": 1e-9})
    c = report["translation"]
    assert c.allowed == 1e-9 and c.floor * 10 > 1e-9 and c.status == "FAIL"


def test_long_range_calculator_decays_instead_of_failing_additivity(mol):
    coulomb = faults.Coulomb(faults.SmoothPair(), CH4_CHARGES)
    local = check_calculator(coulomb, mol, checks="additivity")
    assert local["additivity"].status == "FAIL" and "locality='long-range'" in local["additivity"].detail

    lr = check_calculator(coulomb, mol, checks="additivity", locality="long-range")
    c = lr["additivity"]
    assert c.status == "PASS" and c.tolerance == 2.0 and c.error < 0.1, str(lr)
    slope = float(c.detail.split("R^")[1].split(";")[0])
    assert -3.6 < slope < -2.4  # neutral fragments: dipole-dipole

    broken = faults.NonExtensive(coulomb, c=1e-4)  # an interaction that never decays
    bad = check_calculator(broken, mol, checks="additivity", locality="long-range")
    assert bad["additivity"].status == "FAIL" and bad["additivity"].error > 5


def test_quick_mode_costs_less_and_report_states_cost(mol):
    full = check_calculator(faults.SmoothPair(), mol, cutoff=4.0)
    quick = check_calculator(faults.SmoothPair(), mol, cutoff=4.0, quick=True)
    assert quick.passed and full.passed
    total = lambda r: r.meta["evaluations"] + r.meta["md_evaluations"]
    assert total(quick) < 0.5 * total(full)
    assert quick.meta["quick"] is True and quick.meta["wall_s"] > 0
    assert sum(c.evaluations for c in full) <= total(full)  # the rest: reference and noise probes
    text = str(quick)
    for word in ("floor", "margin", "evals", "evaluations=", "wall_s=", "noise floor"):
        assert word in text
    d = json.loads(json.dumps(quick.to_dict()))
    assert {"floor", "allowed", "margin", "evaluations", "seconds"} <= set(d["checks"][0])


def test_assert_calculator_raises_with_the_report(mol):
    report = assert_calculator(faults.SmoothPair(), mol, checks="forces_gradient,curl_free")
    assert report.passed
    with pytest.raises(AssertionError, match="(?s)FAILED \\(forces_gradient\\).*margin"):
        assert_calculator(faults.ScaledForces(noisy(), 1.01), mol, checks="forces_gradient")
    calc = faults.SmoothPair()
    assert_calculator(lambda a: (calc.get_potential_energy(a), calc.get_forces(a)), mol, checks="translation")
    with pytest.raises(TypeError, match="ASE calculator"):
        assert_calculator("EMT", mol)


def test_a_new_check_is_one_registry_entry(mol, monkeypatch):
    # how a later check (e.g. a Hessian check) plugs in: one CHECKS entry and one tolerance per table
    def energy_is_finite(ctx):
        return (0.0 if np.isfinite(ctx.reference.energy) else 1.0), "E finite"

    monkeypatch.setitem(CHECKS, "energy_is_finite", energy_is_finite)
    for table in TOLERANCES.values():
        monkeypatch.setitem(table, "energy_is_finite", 0.5)
    report = check_calculator(faults.SmoothPair(), mol, checks="energy_is_finite")
    assert report["energy_is_finite"].status == "PASS" and report["energy_is_finite"].floor == 0.0


def test_unknown_profile_and_locality_raise(mol):
    with pytest.raises(ValueError, match="scf"):
        check_calculator(faults.SmoothPair(), mol, profile="dft")
    with pytest.raises(ValueError, match="long-range"):
        check_calculator(faults.SmoothPair(), mol, locality="global")
    with pytest.raises(ValueError, match="disagree"):
        check_calculator(faults.SmoothPair(), mol, profile="scf", dtype="float32")


def test_cli_profile_noise_and_quick(tmp_path, mol, monkeypatch, capsys):
    from nequip_np import cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", {"check": "nequip_np.testing.cli"})
    xyz = tmp_path / "ch4.xyz"
    ase.io.write(xyz, mol)
    base = ["check", "--calculator", "nequip_np.testing.faults:make_smooth_pair", "--structure", str(xyz)]
    assert cli.main(base + ["--quick", "--checks", "translation,forces_gradient"]) == 0
    out = capsys.readouterr().out
    assert "profile=float64 (auto)" in out and "quick=True" in out and "noise floor" in out
    assert cli.main(base + ["--profile", "scf", "--no-noise", "--checks", "additivity"]) == 0
    out = capsys.readouterr().out
    assert "profile=scf," in out and "locality=long-range" in out and "not estimated" in out
    assert cli.main(base + ["--checks", "translation", "--tolerance", "translation=-1"]) == 1
    assert cli.main(base + ["--tolerance", "translation"]) == 2


def test_pytest_fixture_in_another_project(tmp_path):
    (tmp_path / "test_other.py").write_text(
        "from ase.build import molecule\n"
        "from nequip_np.testing import faults\n"
        "def test_good(assert_calculator):\n"
        "    assert_calculator(faults.SmoothPair(), molecule('CH4'), checks='forces_gradient')\n"
        "def test_bad(assert_calculator):\n"
        "    assert_calculator(faults.make_scaled_forces(), molecule('CH4'), checks='forces_gradient')\n"
    )
    # the plugin named explicitly (and autoloading off, so an installed entry point cannot load it twice)
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "nequip_np.testing.pytest_plugin",
            "--harness-quick",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 failed, 1 passed" in out.stdout and "harness FAILED (forces_gradient)" in out.stdout
    assert "quick=True" in out.stdout


def test_our_float32_model_gets_the_float32_profile(rng):
    from nequip_np import NequIPCalculator
    from tests.model_factory import molecule as random_molecule
    from tests.model_factory import small_model

    model = small_model(seed=4, num_layers=2)
    atoms = random_molecule(rng, 6)
    checks = "rotation_invariance,translation"
    f64 = check_calculator(NequIPCalculator(model, dtype="float64"), atoms, checks=checks)
    f32 = check_calculator(NequIPCalculator(model, dtype="float32"), atoms, checks=checks)
    assert f64.meta["profile"] == "float64 (auto)" and f32.meta["profile"] == "float32 (auto)"
    assert f32.passed and f64.passed
