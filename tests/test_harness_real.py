"""The harness on real calculators from the package registry (optional extras; skipped when absent).

GFN2-xTB through tblite's ASE calculator (``pip install nequip-np[harness]``) must pass with the
default settings -- it is correct but its SCF converges only to ~1e-4 eV/Å in the forces -- and fail
with each planted fault on top. Official nequip's calculator (torch) must pass as an exact float64
model. Measured costs are in docs/harness.md.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from threadpoolctl import threadpool_limits

from nequip_np.testing import check_calculator, faults


@pytest.fixture
def ethanol():
    return molecule("CH3CH2OH")


@pytest.fixture
def xtb():
    tblite_ase = pytest.importorskip("tblite.ase")
    # tblite's OpenMP threads oversubscribe a busy CI machine (5-15x slower); one thread is fastest here
    with threadpool_limits(1, user_api="openmp"):
        yield lambda **kw: tblite_ase.TBLite(method="GFN2-xTB", verbosity=0, **kw)


def test_gfn2_xtb_passes_with_defaults(xtb, ethanol):
    report = check_calculator(xtb(), ethanol)
    assert report.passed, str(report)
    assert report.meta["profile"] == "scf (auto)" and report.meta["locality"] == "long-range"
    decay = report["additivity"].detail
    assert "long-range" in decay and report["additivity"].error < 0.2  # interaction falls faster than 1/R
    # what the issue saw: judged as an exact float64 model, SCF noise reads as broken symmetry
    naive = check_calculator(
        xtb(), ethanol, profile="float64", noise=False, checks=["rotation_invariance", "translation", "additivity"]
    )
    assert set(naive.failed) == {"rotation_invariance", "translation", "additivity"}


@pytest.mark.parametrize(
    "wrap, caught_by",
    [
        (lambda c: faults.ScaledForces(c, factor=1.01), {"forces_gradient"}),
        (lambda c: faults.CurlForces(c, strength=0.02), {"forces_gradient", "nve_drift"}),
        (lambda c: faults.AnisotropicEnergy(c, strength=1e-4), {"rotation_invariance", "inversion"}),
    ],
    ids=["forces_x1.01", "curl", "anisotropic"],
)
def test_gfn2_xtb_fails_with_each_planted_fault(xtb, ethanol, wrap, caught_by):
    report = check_calculator(wrap(xtb()), ethanol)
    assert not report.passed
    assert caught_by <= set(report.failed), str(report)
    for name in caught_by:
        assert report[name].margin < 0.5  # a clear call, not a marginal one


def test_gfn2_xtb_tight_scf_lowers_the_floor(xtb, ethanol):
    loose = check_calculator(xtb(), ethanol, checks="rotation_invariance")
    tight = check_calculator(xtb(accuracy=1e-3), ethanol, checks="rotation_invariance")
    assert tight.passed and loose.passed
    assert tight["rotation_invariance"].floor < 0.1 * loose["rotation_invariance"].floor


@pytest.mark.slow
def test_official_nequip_calculator_passes_as_exact_model():
    pytest.importorskip("torch")
    pytest.importorskip("nequip")
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper, NeighborListTransform
    from nequip.integrations.ase import NequIPCalculator
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    types = ["H", "C", "O"]
    model = NequIPGNNModel(
        seed=0,
        model_dtype="float64",
        type_names=types,
        r_max=4.0,
        num_layers=2,
        l_max=1,
        parity=True,
        num_features=8,
        avg_num_neighbors=5.0,
    )
    mapper = ChemicalSpeciesToAtomTypeMapper(
        model_type_names=types, chemical_species_to_atom_type_map={t: t for t in types}
    )
    calc = NequIPCalculator(model.eval(), device="cpu", transforms=[mapper, NeighborListTransform(r_max=4.0)])
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    report = check_calculator(calc, atoms, cutoff=4.0, quick=True)
    assert report.passed, str(report)
    assert report.meta["profile"] == "float64 (auto)"
    assert np.isfinite(report["forces_gradient"].error) and report["forces_gradient"].error < 1e-6
