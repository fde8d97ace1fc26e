#!/usr/bin/env python
"""Generate ``tests/fixtures/nequip/hessian_aspirin.npz``: official nequip's autograd Hessian of aspirin.

Requires ``torch`` and ``nequip`` (see ``docs/interop.md``); run from the repo root::

    python tools/make_hessian_fixtures.py [--out tests/fixtures/nequip/hessian_aspirin.npz]

Contents: the export format of ``tools/export_nequip.py`` (a 3-species float64 model with randomised
weights, as in ``tools/make_nequip_fixtures.py``), the structure ``input/s0/...`` (first frame of
``examples/aspirin/aspirin_xtb_300.extxyz``, 21 atoms, with nequip's own neighbour list), its
``output/s0/{total_energy, forces}`` and ``output/s0/hessian`` (63, 63) eV/Å²: the second derivative of
the total energy, each row by one double-backward pass through the force output
(``H[k] = -d F_k / d pos``, ``create_graph`` enabled by ``model.train()``; the model has no dropout or
normalisation layer, so train mode changes nothing else).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch
from export_nequip import build_model, export_arrays
from make_nequip_fixtures import (
    _clone_data,
    make_data,
    randomise_weights,
    structure_arrays,
    tame_activations,
)

SEED = 1919
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ASPIRIN = os.path.join(ROOT, "examples", "aspirin", "aspirin_xtb_300.extxyz")

KWARGS = {
    "seed": SEED,
    "model_dtype": "float64",
    "type_names": ["H", "C", "O"],
    "r_max": 4.0,
    "num_layers": 2,
    "l_max": 2,
    "parity": True,
    "num_features": [8, 4, 2],
    "radial_mlp_depth": 1,
    "radial_mlp_width": 16,
    "num_bessels": 8,
    "polynomial_cutoff_p": 6,
    "readout_mlp_hidden_layers_depth": 1,
    "readout_mlp_hidden_layers_width": 8,
    "avg_num_neighbors": {"H": 9.0, "C": 12.0, "O": 10.0},
    "per_type_energy_scales": {"H": 0.6, "C": 1.2, "O": 0.9},
    "per_type_energy_shifts": {"H": -10.5, "C": -48.2, "O": -71.3},
}


def autograd_hessian(model, data):
    """(3N, 3N) Hessian by double backward through nequip's force output."""
    model.train()  # ForceStressOutput keeps the graph of the forces only in train mode
    d = _clone_data(data)
    d["pos"] = d["pos"].clone().requires_grad_(True)
    out = model(d)
    forces = out["forces"].reshape(-1)
    rows = []
    for k in range(forces.numel()):
        (g,) = torch.autograd.grad(forces[k], d["pos"], retain_graph=True)
        rows.append(-g.detach().numpy().reshape(-1))
    model.eval()
    return np.array(rows), out


def main(argv=None):
    from ase.io import read

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join("tests", "fixtures", "nequip", "hessian_aspirin.npz"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(SEED)
    atoms = read(ASPIRIN, index=0)
    types = {s: k for k, s in enumerate(KWARGS["type_names"])}
    struct = {
        "pos": atoms.positions,
        "atom_types": np.array([types[s] for s in atoms.get_chemical_symbols()]),
        "cell": np.zeros((3, 3)),
        "pbc": np.array([False, False, False]),
    }
    model = build_model(copy.deepcopy(KWARGS))
    model = randomise_weights(model, rng).eval()
    data = make_data(struct, KWARGS)
    tame_activations(model, data)
    hess, out = autograd_hessian(model, data)
    asym = np.abs(hess - hess.T).max() / np.abs(hess).max()
    rowsum = np.abs(hess.reshape(-1, len(atoms), 3).sum(axis=1)).max() / np.abs(hess).max()
    arrays = export_arrays(model, KWARGS)
    arrays.update(structure_arrays("s0", data))
    arrays["output/s0/total_energy"] = out["total_energy"].detach().numpy().reshape(())
    arrays["output/s0/forces"] = out["forces"].detach().numpy().reshape(-1, 3)
    arrays["output/s0/hessian"] = hess
    np.savez_compressed(a.out, **arrays)
    print(
        f"aspirin N={len(atoms)} E={data['edge_index'].shape[1]}: |H|max={np.abs(hess).max():.3f} eV/A^2, "
        f"asymmetry {asym:.1e}, row sums {rowsum:.1e}; wrote {a.out} ({os.path.getsize(a.out) / 1024:.1f} KiB)"
    )


if __name__ == "__main__":
    main()
