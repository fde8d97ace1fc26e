"""Error metrics with nequip's meanings, accumulated over a dataset in float64.

Energy MAE/RMSE are per frame (eV) and per atom (eV/atom); force MAE/RMSE are per Cartesian
component (eV/Å); stress MAE/RMSE over the 9 components of periodic frames. ``loss`` is the loss
function of :mod:`nequip_np.train.loss` evaluated on the whole dataset.
"""
from __future__ import annotations

import numpy as np


class MetricAccumulator:
    def __init__(self):
        self.de, self.de_atom, self.df, self.ds = [], [], [], []

    def add(self, graph, pred: dict, coeffs=None) -> None:
        self.coeffs = coeffs
        if graph.energy is not None:
            de = pred["total_energy"] - graph.energy
            self.de.append(de)
            self.de_atom.append(de / graph.num_atoms)
        if graph.forces is not None and "forces" in pred:
            self.df.append((pred["forces"] - graph.forces).ravel())
        if graph.stress is not None and "stress" in pred:
            mask = np.all(graph.pbc, axis=1) & np.all(np.isfinite(graph.stress), axis=(1, 2))
            self.ds.append((pred["stress"][mask] - graph.stress[mask]).ravel())

    def result(self) -> dict:
        out = {}
        for name, parts in (("energy", self.de), ("per_atom_energy", self.de_atom), ("forces", self.df),
                            ("stress", self.ds)):
            if parts and np.concatenate(parts).size:
                v = np.concatenate(parts)
                out[f"{name}_mae"] = float(np.mean(np.abs(v)))
                out[f"{name}_rmse"] = float(np.sqrt(np.mean(v**2)))
                out[f"{name}_maxabs"] = float(np.max(np.abs(v)))
        c = getattr(self, "coeffs", None)
        if c is not None:
            c = c.normalized()
            loss = 0.0
            for coef, key in ((c.per_atom_energy, "per_atom_energy"), (c.forces, "forces"), (c.stress, "stress")):
                if coef and f"{key}_rmse" in out:
                    loss += coef * out[f"{key}_rmse"] ** 2
            out["loss"] = float(loss)
        return out
