"""The harness passes correct calculators: ASE's Lennard-Jones, and our model in float64 and float32."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones

from nequip_np import NequIPCalculator
from nequip_np.testing import check_calculator
from tests.model_factory import molecule, periodic, small_model

FAST = dict(n_rotations=2, fd_samples=4, md_timestep_fs=0.25)


def _cluster(rng, n=8):
    pos = []
    while len(pos) < n:
        p = rng.uniform(-2.2, 2.2, 3)
        if all(np.linalg.norm(p - q) > 1.05 for q in pos):
            pos.append(p)
    return Atoms(f"Ar{n}", positions=np.array(pos))


def test_ase_lennard_jones_passes(rng):
    calc = LennardJones(sigma=1.0, epsilon=0.01, rc=3.0, smooth=True)
    report = check_calculator(calc, _cluster(rng), md_steps=20, **FAST)
    assert report.passed, str(report)
    assert report["forces_gradient"].passed and report["rotation_invariance"].passed


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_our_model_passes_in_both_precisions(rng, dtype):
    model = small_model(seed=4, num_layers=2)
    calc = NequIPCalculator(model, dtype=dtype)
    for atoms in (molecule(rng, 6), periodic(rng, small=True)):
        report = check_calculator(calc, atoms, dtype=dtype, cutoff=model.config.r_max, md_steps=20, **FAST)
        assert report.passed, str(report)
