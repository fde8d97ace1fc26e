"""Equivariance and conservativity harness for any ASE calculator or ``fn(atoms) -> (E, F[, sigma])``.

>>> from nequip_np.testing import check_calculator            # doctest: +SKIP
>>> print(check_calculator(calc, atoms, cutoff=5.0))            # doctest: +SKIP
>>> assert_calculator(calc, atoms)        # raises AssertionError with the report  # doctest: +SKIP

Checks, units and tolerances: ``docs/harness.md``. Planted-fault toy calculators:
:mod:`nequip_np.testing.faults`.
"""

from nequip_np.testing.checks import CHECKS
from nequip_np.testing.harness import assert_calculator, check_calculator, check_function, default_options
from nequip_np.testing.hessian_checks import HESSIAN_CHECKS, check_hessian
from nequip_np.testing.noise import NoiseEstimate, estimate_noise
from nequip_np.testing.report import CheckResult, Report
from nequip_np.testing.tolerances import PROFILES, TOLERANCES

__all__ = [
    "CHECKS",
    "HESSIAN_CHECKS",
    "PROFILES",
    "TOLERANCES",
    "CheckResult",
    "NoiseEstimate",
    "Report",
    "assert_calculator",
    "check_calculator",
    "check_function",
    "check_hessian",
    "default_options",
    "estimate_noise",
]
