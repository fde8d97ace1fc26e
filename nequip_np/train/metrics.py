"""Error metrics with nequip's meanings, accumulated over a dataset in float64.

Energy MAE/RMSE are per frame (eV) and per atom (eV/atom); force MAE/RMSE are per Cartesian
component (eV/Å), overall and per element (``forces_mae_H``, ``forces_rmse_H``, ... over the atoms of
that type, like nequip's ``per_type`` metrics); stress MAE/RMSE over the 9 components of periodic
frames with finite stress labels. ``loss`` is the loss function of :mod:`nequip_np.train.loss`
evaluated on the whole dataset at once.

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> g = SimpleNamespace(energy=np.array([1.0]), num_atoms=np.array([2]), forces=np.zeros((2, 3)),
    ...                     atom_types=np.array([0, 1]), stress=None, pbc=np.zeros((1, 3), bool))
    >>> acc = MetricAccumulator(type_names=["H", "O"])
    >>> acc.add(g, {"total_energy": np.array([1.5]), "forces": np.array([[0.3, 0, 0], [0, 0, 0]])})
    >>> m = acc.result()
    >>> m["energy_mae"], m["per_atom_energy_mae"], round(m["forces_mae_H"], 3), m["forces_mae_O"]
    (0.5, 0.25, 0.1, 0.0)
"""

from __future__ import annotations

import numpy as np


class MetricAccumulator:
    """Collects residuals batch by batch; :meth:`result` returns the metrics dict."""

    def __init__(self, type_names=None, coeffs=None):
        self.type_names = None if type_names is None else list(type_names)
        self.coeffs = coeffs
        self.de, self.natoms, self.df, self.types, self.ds = [], [], [], [], []

    def add(self, graph, pred: dict, coeffs=None) -> None:
        if coeffs is not None:
            self.coeffs = coeffs
        if graph.energy is not None:
            self.de.append(pred["total_energy"] - graph.energy)
            self.natoms.append(np.asarray(graph.num_atoms, dtype=np.float64))
        if graph.forces is not None and "forces" in pred:
            self.df.append(pred["forces"] - graph.forces)
            self.types.append(graph.atom_types)
        if graph.stress is not None and "stress" in pred:
            mask = np.all(graph.pbc, axis=1) & np.all(np.isfinite(graph.stress), axis=(1, 2))
            self.ds.append(pred["stress"][mask] - graph.stress[mask])

    @staticmethod
    def _stats(out, name, v):
        if v.size:
            out[f"{name}_mae"] = float(np.mean(np.abs(v)))
            out[f"{name}_rmse"] = float(np.sqrt(np.mean(v**2)))
            out[f"{name}_maxabs"] = float(np.max(np.abs(v)))

    def result(self) -> dict:
        out = {}
        de = np.concatenate(self.de) if self.de else None
        natoms = np.concatenate(self.natoms) if self.natoms else None
        df = np.concatenate(self.df) if self.df else None
        types = np.concatenate(self.types) if self.types else None
        ds = np.concatenate(self.ds) if self.ds else None
        if de is not None:
            self._stats(out, "energy", de)
            self._stats(out, "per_atom_energy", de / natoms)
        if df is not None:
            self._stats(out, "forces", df.ravel())
            for t, name in enumerate(self.type_names or []):
                self._stats(out, f"forces_{name}", df[types == t].ravel())
                for k in ("mae", "rmse", "maxabs"):  # nequip's naming: forces_mae_H
                    if f"forces_{name}_{k}" in out:
                        out[f"forces_{k}_{name}"] = out.pop(f"forces_{name}_{k}")
        if ds is not None:
            self._stats(out, "stress", ds.ravel())
        if self.coeffs is not None:
            from nequip_np.train.loss import loss_from_residuals

            c = self.coeffs.normalized()
            out["loss"] = float(
                loss_from_residuals(  # terms without labels contribute nothing
                    c,
                    de,
                    natoms if natoms is not None else np.ones(0),
                    df,
                    types,
                    ds if ds is not None and ds.size else None,
                )[0]
            )
        return out

    def per_type_columns(self) -> list[str]:
        return [f"forces_{k}_{n}" for n in (self.type_names or []) for k in ("mae", "rmse")]
