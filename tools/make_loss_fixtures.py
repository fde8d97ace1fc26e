"""Generate tests/fixtures/loss_nequip.json: official nequip 0.19.1 loss values on random labels.

Needs torch and nequip; the package and the tests never import them. Run from the repository root
with an interpreter that has them:

    python tools/make_loss_fixtures.py

Two batches of three frames (types H, C, O; the second batch has no O atom) with random predictions
and labels; for each loss case the fixture stores nequip's ``weighted_sum`` (the training loss) and
its components, from ``MetricsManager.forward`` (the per-batch value used for the gradient step).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from nequip.data import AtomicDataDict
from nequip.data.modifier import PerAtomModifier
from nequip.train import EnergyForceLoss, EnergyForceStressLoss, MetricsManager
from nequip.train.metrics import HuberLoss, MeanAbsoluteError

TYPE_NAMES = ["H", "C", "O"]
PER_TYPE = {"H": 5.0, "C": 1.0, "O": 0.5}


def _batch(rng, types_per_frame):
    n = [len(t) for t in types_per_frame]
    types = np.concatenate(types_per_frame)
    lab = {
        "total_energy": rng.normal(-50, 3, len(n)),
        "forces": rng.normal(0, 1, (sum(n), 3)),
        "stress": rng.normal(0, 0.01, (len(n), 3, 3)),
    }
    pred = {
        k: v + rng.normal(0, 0.05 if k == "total_energy" else 0.08 if k == "forces" else 0.003, v.shape)
        for k, v in lab.items()
    }
    return {
        "num_atoms": n,
        "atom_types": types.tolist(),
        "pred": {k: v.tolist() for k, v in pred.items()},
        "label": {k: v.tolist() for k, v in lab.items()},
    }


def _torch_dict(b, which):
    d = {k: torch.tensor(v, dtype=torch.float64) for k, v in b[which].items()}
    d["total_energy"] = d["total_energy"].reshape(-1, 1)
    d[AtomicDataDict.NUM_NODES_KEY] = torch.tensor(b["num_atoms"])
    d[AtomicDataDict.ATOM_TYPE_KEY] = torch.tensor(b["atom_types"])
    return d


def _cases():
    pa = PerAtomModifier(AtomicDataDict.TOTAL_ENERGY_KEY)
    return {
        # spec: nequip-np's training.loss_coeffs / training.loss settings for the same loss
        "mse_per_type_forces": (
            {"loss_coeffs": {"per_atom_energy": 1.0, "forces": 2.0, "stress": 0.5}, "per_type_forces_coeffs": PER_TYPE},
            lambda: EnergyForceStressLoss(
                coeffs={"total_energy": 1.0, "forces": 2.0, "stress": 0.5},
                per_type_forces_coeffs=PER_TYPE,
                type_names=TYPE_NAMES,
            ),
        ),
        "mse_per_type_forces_equal": (
            {
                "loss_coeffs": {"per_atom_energy": 1.0, "forces": 1.0},
                "per_type_forces_coeffs": {"H": 1.0, "C": 1.0, "O": 1.0},
            },
            lambda: EnergyForceLoss(
                coeffs={"total_energy": 1.0, "forces": 1.0},
                per_type_forces_coeffs={"H": 1.0, "C": 1.0, "O": 1.0},
                type_names=TYPE_NAMES,
            ),
        ),
        "mse_total_energy": (
            {"loss_coeffs": {"total_energy": 1.0, "forces": 3.0, "stress": 1.0}},
            lambda: EnergyForceStressLoss(
                coeffs={"total_energy": 1.0, "forces": 3.0, "stress": 1.0}, per_atom_energy=False
            ),
        ),
        "huber": (
            {
                "loss_coeffs": {"per_atom_energy": 1.0, "forces": 1.0, "stress": 1.0},
                "loss": "huber",
                "huber_delta": {"per_atom_energy": 0.01, "forces": 0.05, "stress": 0.002},
            },
            lambda: MetricsManager(
                [
                    {"name": "e", "field": pa, "metric": HuberLoss(delta=0.01), "coeff": 1.0},
                    {"name": "f", "field": "forces", "metric": HuberLoss(delta=0.05), "coeff": 1.0},
                    {"name": "s", "field": "stress", "metric": HuberLoss(delta=0.002), "coeff": 1.0},
                ]
            ),
        ),
        "huber_per_type_forces": (
            {
                "loss_coeffs": {"total_energy": 1.0, "forces": 4.0},
                "loss": "huber",
                "huber_delta": {"total_energy": 0.05, "forces": 0.05},
                "per_type_forces_coeffs": PER_TYPE,
            },
            lambda: MetricsManager(
                [
                    {"name": "e", "field": "total_energy", "metric": HuberLoss(delta=0.05), "coeff": 1.0},
                    {
                        "name": "f",
                        "field": "forces",
                        "metric": HuberLoss(delta=0.05),
                        "coeff": 4.0,
                        "per_type": True,
                        "per_type_coeffs": PER_TYPE,
                    },
                ],
                type_names=TYPE_NAMES,
            ),
        ),
        "mae": (
            {"loss_coeffs": {"per_atom_energy": 1.0, "forces": 1.0}, "loss": "mae"},
            lambda: MetricsManager(
                [
                    {"name": "e", "field": pa, "metric": MeanAbsoluteError(), "coeff": 1.0},
                    {"name": "f", "field": "forces", "metric": MeanAbsoluteError(), "coeff": 1.0},
                ]
            ),
        ),
    }


def main(path="tests/fixtures/loss_nequip.json"):
    import nequip

    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(7)
    batches = [
        _batch(rng, [rng.integers(0, 3, n) for n in (4, 5, 3)]),
        _batch(rng, [rng.integers(0, 2, n) for n in (3, 4, 6)]),
    ]  # no O in the second batch
    out = {"nequip": nequip.__version__, "type_names": TYPE_NAMES, "batches": batches, "cases": {}}
    for name, (spec, build) in _cases().items():
        values = []
        for b in batches:
            mm = build()
            res = mm(_torch_dict(b, "pred"), _torch_dict(b, "label"))
            values.append(float(res["weighted_sum"]))
        out["cases"][name] = {"spec": spec, "loss": values}
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    print(f"wrote {path}: " + ", ".join(f"{k}={v['loss']}" for k, v in out["cases"].items()))


if __name__ == "__main__":
    main(*sys.argv[1:])
