"""Molecular dynamics and relaxation with nequip_np models (ASE integrators); see docs/md.md.

:func:`~nequip_np.md.run.run_md`, :func:`~nequip_np.md.run.relax` and the ``nequip-np md`` /
``nequip-np relax`` commands (:mod:`nequip_np.md.cli`).
"""

from nequip_np.md.run import MDBlowUpError, MDResult, RelaxResult, maxwell_boltzmann, relax, run_md

__all__ = ["MDBlowUpError", "MDResult", "RelaxResult", "maxwell_boltzmann", "relax", "run_md"]
