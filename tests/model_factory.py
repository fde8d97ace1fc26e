"""Small models and structures shared by the model tests (float64 unless stated)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk

from nequip_np.model.nequip import NequIPModel

TYPES = ["H", "C", "O"]


def small_model(seed=0, **overrides) -> NequIPModel:
    kw = dict(
        type_names=TYPES,
        r_max=3.5,
        num_layers=3,
        l_max=2,
        parity=True,
        num_features=[4, 3, 2],
        radial_mlp_depth=1,
        radial_mlp_width=8,
        num_bessels=6,
        polynomial_cutoff_p=6,
        avg_num_neighbors={"H": 4.0, "C": 6.0, "O": 5.0},
        readout_mlp_hidden_layers_depth=1,
        readout_mlp_hidden_layers_width=4,
        per_type_energy_scales={"H": 0.7, "C": 1.3, "O": 1.1},
        per_type_energy_shifts={"H": -13.1, "C": -1030.5, "O": -2040.2},
        seed=seed,
    )
    kw.update(overrides)
    return NequIPModel(**kw)


def molecule(rng, n=7) -> Atoms:
    """A random, non-degenerate molecule of H, C, O atoms (min distance ~0.9 Å)."""
    pos = []
    while len(pos) < n:
        p = rng.uniform(-1.8, 1.8, 3)
        if all(np.linalg.norm(p - q) > 0.9 for q in pos):
            pos.append(p)
    symbols = [TYPES[k % 3] for k in range(n)]
    return Atoms(symbols, positions=np.array(pos))


def periodic(rng, small=False) -> Atoms:
    """A rattled triclinic cell; ``small=True`` gives a cell smaller than r_max (many images)."""
    if small:
        cell = np.array([[2.3, 0.0, 0.0], [0.4, 2.2, 0.0], [0.3, -0.2, 2.4]])
        atoms = Atoms("CO", scaled_positions=[[0, 0, 0], [0.5, 0.45, 0.55]], cell=cell, pbc=True)
    else:
        atoms = bulk("C", "diamond", a=3.6, cubic=False).repeat((2, 1, 1))
        atoms.set_chemical_symbols([TYPES[k % 3] for k in range(len(atoms))])
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.05 * rng.standard_normal((3, 3))), scale_atoms=True)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    return atoms
