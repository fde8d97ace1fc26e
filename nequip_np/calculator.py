"""ASE calculator for nequip_np models.

``NequIPCalculator(model)`` implements energy, free_energy, energies (per atom), forces and stress
(ASE's Voigt order and sign; only for structures periodic in all three directions — otherwise ASE's
``PropertyNotImplementedError``). Species are mapped to the model's type names by chemical symbol.
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from nequip_np.conventions import stress_to_voigt
from nequip_np.data.graph import graph_from_atoms


class NequIPCalculator(Calculator):
    """ASE calculator wrapping a :class:`~nequip_np.NequIPModel` (or a path to a saved model).

    Args:
        model: a model object, a nequip-np model file, or an official-nequip export (.npz).
        backend: compute backend ("numpy" is the reference).
        chemical_species_to_atom_type_map: optional ``{symbol: type_name}`` when type names are not
            chemical symbols.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(self, model, backend: str | None = None, chemical_species_to_atom_type_map=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from nequip_np import load_model

            model = load_model(model, backend=backend or "numpy")
        elif backend is not None and backend != model.backend:
            raise ValueError(f"model uses backend {model.backend!r} but backend={backend!r} was requested; "
                             "load the model with the backend you want")
        self.model = model
        self.species_map = chemical_species_to_atom_type_map

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not np.all(self.atoms.pbc):
            raise PropertyNotImplementedError("stress is only defined for structures periodic in x, y and z")
        c = self.model.config
        graph = graph_from_atoms(self.atoms, c.type_names, c.r_max, c.per_edge_type_cutoff,
                                 chemical_species_to_atom_type_map=self.species_map)
        out = self.model.compute(graph, forces=True, stress=want_stress)
        energy = float(out["total_energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["atomic_energy"].copy(),
            "forces": out["forces"].copy(),
        }
        if np.all(self.atoms.pbc):
            self.results["stress"] = stress_to_voigt(out["stress"][0])
