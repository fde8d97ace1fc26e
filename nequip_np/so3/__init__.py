"""The rotation group algebra of nequip_np, in e3nn 0.6's conventions.

* :class:`Irrep`, :class:`Irreps`, :class:`MulIr`, :func:`allowed_path` — irreps bookkeeping;
* :func:`spherical_harmonics`, :func:`spherical_harmonics_grad`, :func:`sh_polynomials`,
  :func:`sh_polynomials_grad` — real SH, component normalisation, generated code;
* :func:`clebsch_gordan` (= e3nn ``wigner_3j``), :func:`clebsch_gordan_exact` — committed table;
* :func:`wigner_D`, :func:`irreps_D`, :func:`random_rotation`.

Derivations: ``docs/derivations/spherical_harmonics_and_cg.md``; generator: ``tools/derive_so3.py``.
Importing this package does not import sympy.
"""

from .clebsch_gordan import (
    cg_lmax,
    cg_provenance,
    clebsch_gordan,
    clebsch_gordan_exact,
    clebsch_gordan_exact_entries,
    wigner_3j,
)
from .irreps import Irrep, Irreps, MulIr, SortResult, allowed_path, irreps_D
from .spherical_harmonics import (
    SH_LMAX,
    sh_polynomials,
    sh_polynomials_grad,
    spherical_harmonics,
    spherical_harmonics_grad,
)
from .wigner import random_rotation, wigner_D

__all__ = [
    "Irrep",
    "Irreps",
    "MulIr",
    "SortResult",
    "allowed_path",
    "SH_LMAX",
    "spherical_harmonics",
    "spherical_harmonics_grad",
    "sh_polynomials",
    "sh_polynomials_grad",
    "clebsch_gordan",
    "clebsch_gordan_exact",
    "clebsch_gordan_exact_entries",
    "wigner_3j",
    "cg_lmax",
    "cg_provenance",
    "wigner_D",
    "irreps_D",
    "random_rotation",
]
