r"""A Verlet neighbour list: built once at :math:`r_\mathrm{max} + \mathrm{skin}`, reused while atoms move
little, filtered to :math:`d < r_\mathrm{max}` on every call (``docs/md.md``).

The list is kept while every atom has moved less than :math:`\mathrm{skin}/2` since the build and the
cell, pbc and atomic numbers are unchanged. Then no pair can have crossed into :math:`r_\mathrm{max}`
unseen: two atoms that approach each other by at most ``skin`` in total were within
:math:`r_\mathrm{max} + \mathrm{skin}` at the build. Each call filters the stored candidates to
:math:`d < r_\mathrm{max}` with the very arithmetic of :func:`~nequip_np.data.neighborlist.neighbor_list`,
in the same (centre, neighbour, shift) order, so the edges are *identical* to a fresh list — results do
not depend on the skin. Used by :class:`~nequip_np.calculator.NequIPCalculator` and by the ghost-atom
decomposition (:class:`~nequip_np.parallel.ghost.GhostCache`).
"""

from __future__ import annotations

import numpy as np

from nequip_np.data.neighborlist import DUPLICATE_TOL, neighbor_list, pair_distances2


class NeighborListCache:
    r"""A Verlet neighbour list: built at ``r_max + skin``, filtered to ``d < r_max`` on every call.

    Attributes:
        builds: number of full builds so far (the rest were reuses).

    Example:
        >>> import numpy as np
        >>> pos = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [2.5, 0.0, 0.0]])
        >>> nl = NeighborListCache(r_max=1.2, skin=0.5)
        >>> cell, pbc, numbers = np.zeros((3, 3)), np.zeros(3, bool), np.array([1, 1, 1])
        >>> nl.get(pos, cell, pbc, numbers)[0].tolist()   # (centre, neighbour) rows
        [[0, 1], [1, 0]]
        >>> pos[2, 0] = 2.1                                 # moved 0.4 Å > skin/2: rebuilt
        >>> nl.get(pos, cell, pbc, numbers)[0].tolist(), nl.builds
        ([[0, 1, 1, 2], [1, 0, 2, 1]], 2)
    """

    def __init__(self, r_max: float, skin: float):
        if not np.isfinite(skin) or skin < 0:
            raise ValueError(f"skin must be a finite number >= 0 (Å), got {skin!r}")
        self.r_max, self.skin = float(r_max), float(skin)
        self.builds = 0
        self._key = None

    def _valid(self, pos, cell, pbc, numbers) -> bool:
        if self._key is None or self.skin == 0.0:
            return False
        pos0, cell0, pbc0, numbers0 = self._key
        if pos.shape != pos0.shape or not (
            np.array_equal(cell, cell0) and np.array_equal(pbc, pbc0) and np.array_equal(numbers, numbers0)
        ):
            return False
        moved2 = np.einsum("ij,ij->i", pos - pos0, pos - pos0)
        return bool(moved2.max(initial=0.0) < (0.5 * self.skin) ** 2)

    def get(self, pos, cell, pbc, numbers):
        """``(edge_index, shifts)`` with ``d < r_max``, equal to ``neighbor_list(pos, cell, pbc, r_max)``."""
        if not self._valid(pos, cell, pbc, numbers):
            edge_index, shifts = neighbor_list(pos, cell, pbc, self.r_max + self.skin)
            self._key = (pos.copy(), cell.copy(), pbc.copy(), numbers.copy())
            self._candidates = (edge_index, shifts)
            self.builds += 1
            if self.skin == 0.0:
                return edge_index, shifts
        return self._filter(pos, cell, pbc, *self._candidates)

    def _filter(self, pos, cell, pbc, edge_index, shifts):
        # Same expression and summation order as neighborlist._visit_atom, so the strict d < r_max
        # test agrees with a fresh build even for a pair at r_max to the last bit.
        cell = np.ascontiguousarray(np.where(np.asarray(pbc, dtype=bool)[:, None], cell, 0.0), dtype=np.float64)
        i, j = edge_index
        d2 = pair_distances2(
            np.ascontiguousarray(pos, dtype=np.float64),
            cell,
            np.ascontiguousarray(edge_index),
            np.ascontiguousarray(shifts, dtype=np.int64),
        )
        keep = d2 < self.r_max * self.r_max
        if np.any(d2[keep] < DUPLICATE_TOL * DUPLICATE_TOL):
            e = int(np.flatnonzero(keep & (d2 < DUPLICATE_TOL * DUPLICATE_TOL))[0])
            raise ValueError(
                f"atoms {int(i[e])} and {int(j[e])} are at the same position (distance < "
                f"{DUPLICATE_TOL} Å, possibly through a periodic image); every atom needs a "
                "distinct position"
            )
        return edge_index[:, keep], shifts[keep]
