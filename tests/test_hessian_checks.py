"""The harness' Hessian checks pass on the exact Hessian and catch planted faults."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from nequip_np.calculator import NequIPCalculator
from nequip_np.testing.hessian_checks import HESSIAN_CHECKS, check_hessian
from tests.model_factory import molecule, small_model


class ScaledHessian(NequIPCalculator):
    """Hessian 1% too large: disagrees with forces and energy."""

    def get_hessian(self, atoms=None, **kw):
        return 1.01 * super().get_hessian(atoms, **kw)


class SkewHessian(NequIPCalculator):
    """An antisymmetric part planted in the Hessian."""

    def get_hessian(self, atoms=None, **kw):
        h = super().get_hessian(atoms, **kw)
        skew = np.triu(np.ones_like(h), 1)
        return h + 1e-3 * np.abs(h).max() * (skew - skew.T)  # v^T H v unchanged: energy curvature still fits


class CurlForces(NequIPCalculator):
    """Forces with a divergence-free, non-gradient part (a rotation about z): not conservative."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        p = self.atoms.positions - self.atoms.positions.mean(axis=0)
        self.results["forces"] = self.results["forces"] + 0.05 * np.stack([-p[:, 1], p[:, 0], 0 * p[:, 0]], 1)


FAST = {"hessian_fd_steps": (1e-4,), "hessian_energy_steps": (2e-2, 1e-2, 5e-3), "hessian_directions": 2}


@pytest.fixture(scope="module")
def atoms():
    return molecule(np.random.default_rng(4), n=5)


def test_exact_hessian_passes(atoms):
    report = check_hessian(NequIPCalculator(small_model(seed=4)), atoms, **FAST)
    assert report.passed, str(report)
    assert report.names == list(HESSIAN_CHECKS)
    assert report["hessian_symmetry"].error < 1e-13
    assert report["hessian_sum_rule"].error < 1e-13


@pytest.mark.parametrize(
    "cls, failing",
    [
        (ScaledHessian, {"hessian_forces", "hessian_conservativity"}),
        (SkewHessian, {"hessian_symmetry", "hessian_forces", "hessian_sum_rule"}),
        (CurlForces, {"hessian_forces"}),
    ],
)
def test_planted_faults_fail(atoms, cls, failing):
    report = check_hessian(cls(small_model(seed=4)), atoms, **FAST)
    assert set(report.failed) == failing, str(report)


def test_calculator_without_hessian_skips_and_bad_names_raise(atoms):
    report = check_hessian(EMT(), bulk("Cu") * (2, 1, 1))
    assert all(r.skipped for r in report)
    with pytest.raises(ValueError, match="unknown Hessian check"):
        check_hessian(EMT(), atoms, checks=["hessian_nonsense"])
    with pytest.raises(ValueError, match="unknown Hessian option"):
        check_hessian(EMT(), atoms, hessian_steps=3)


def make_scaled_hessian():
    """Factory for the command-line test: a NequIP calculator with a 1% too large Hessian."""
    return ScaledHessian(small_model(seed=4))


def make_exact():
    return NequIPCalculator(small_model(seed=4))


def test_check_command_runs_the_hessian_checks(tmp_path, atoms, monkeypatch):
    import json

    import ase.io

    from nequip_np import cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", {"check": "nequip_np.testing.cli"})
    xyz, out = tmp_path / "mol.xyz", tmp_path / "report.json"
    ase.io.write(xyz, atoms)
    base = ["check", "--structure", str(xyz), "--checks", "translation", "--hessian", "--json", str(out)]
    assert cli.main([*base, "--calculator", "tests.test_hessian_checks:make_exact"]) == 0
    report = json.loads(out.read_text())
    assert [c["name"] for c in report["hessian"]["checks"]] == list(HESSIAN_CHECKS)
    assert cli.main([*base, "--calculator", "tests.test_hessian_checks:make_scaled_hessian"]) == 1
    failed = {c["name"] for c in json.loads(out.read_text())["hessian"]["checks"] if c["passed"] is False}
    assert "hessian_forces" in failed
