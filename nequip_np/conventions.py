r"""Conventions of nequip_np, written once. Every module imports its constants from here.

They are e3nn 0.6 / nequip 0.19.1's conventions exactly, so that official weights load unchanged.
Prose and tests: ``docs/conventions.md`` and ``tests/test_conventions.py``.

* Units: energy eV, length Å, mass amu, time fs (ASE units); stress eV/Å³.
* Edges: ``edge_index[0]`` = centre ``i`` (receives the message), ``edge_index[1]`` = neighbour ``j``;
  edge vector :math:`r_{ij} = r_j - r_i + S_{ij}\,\mathrm{cell}` with integer shifts ``S`` (E, 3).
* Cell vectors are the rows of ``cell`` (ASE).
* Feature layout "mul_ir": a block ``mul x (l, p)`` is ``mul*(2l+1)`` consecutive columns, column
  ``u*(2l+1) + m`` holds copy ``u``, component ``m``.
* Spherical harmonics: e3nn's real basis, "component" normalisation :math:`|Y^l|^2 = 2l+1`,
  :math:`Y^1 = \sqrt{3}(x, y, z)`; y is the polar axis for l >= 2.
* Parity: ``p = +1`` is "e", ``p = -1`` is "o"; sort order 0o < 0e < 1o < 1e < ...
* Stress: ASE sign (positive = tensile), :math:`\sigma = \frac{1}{V}\partial E/\partial\varepsilon`,
  Voigt order (xx, yy, zz, yz, xz, xy); virial :math:`= -\sigma V`.
"""

from __future__ import annotations

import numpy as np

#: Voigt order of ASE: index pairs (row, column) of the 3x3 stress for xx, yy, zz, yz, xz, xy.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

#: e3nn normalize2mom constants: cst = <f(z)^2>^{-1/2}, z ~ N(0,1), computed by e3nn with torch's
#: generator seeded 0 over 10^6 samples in float64 (not reproducible with NumPy's RNG, so hard-coded).
NORMALIZE2MOM_SILU = 1.6791767923989418
NORMALIZE2MOM_TANH = 1.5937334472592695

#: Coulomb constant k_e for the ZBL prior, in eV*Å ("metal") and kcal/mol*Å ("real").
ZBL_KE = {"metal": 14.399645, "real": 332.06371}

#: kcal/mol -> eV, the factor nequip's rMD17/MD22 data modules apply.
KCAL_MOL_TO_EV = 0.0433641

#: e3nn clamps |r| below this in normalize=True (torch.nn.functional.normalize eps).
SH_NORM_EPS = 1e-12


def stress_to_voigt(stress: np.ndarray) -> np.ndarray:
    """(…, 3, 3) stress -> (…, 6) in ASE Voigt order (xx, yy, zz, yz, xz, xy)."""
    stress = np.asarray(stress)
    return np.stack([stress[..., a, b] for a, b in VOIGT_PAIRS], axis=-1)


def voigt_to_stress(voigt: np.ndarray) -> np.ndarray:
    """(…, 6) ASE Voigt -> symmetric (…, 3, 3)."""
    voigt = np.asarray(voigt)
    out = np.zeros(voigt.shape[:-1] + (3, 3), dtype=voigt.dtype)
    for k, (a, b) in enumerate(VOIGT_PAIRS):
        out[..., a, b] = voigt[..., k]
        out[..., b, a] = voigt[..., k]
    return out
