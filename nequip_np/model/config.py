r"""Model hyper-parameters: the keyword arguments of nequip 0.19.1's ``NequIPGNNModel``, validated.

Every option is checked once here, with errors that say what was wrong and what was expected; the
derived constant arrays ("buffers": cutoff table, Bessel frequencies, per-type scales/shifts,
neighbour normalisation) are built here too.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from nequip_np.conventions import ZBL_KE


@dataclass
class ModelConfig:
    type_names: list
    r_max: float
    avg_num_neighbors: object
    num_layers: int = 4
    l_max: int = 1
    parity: bool = True
    num_features: object = 32
    type_embed_num_features: int | None = None
    radial_mlp_depth: int = 1
    radial_mlp_width: int = 128
    readout_mlp_hidden_layers_depth: int = 0
    readout_mlp_hidden_layers_width: int | None = None
    readout_mlp_nonlinearity: str | None = "silu"
    num_bessels: int = 8
    bessel_trainable: bool = False
    polynomial_cutoff_p: int = 6
    per_type_energy_scales: object = None
    per_type_energy_shifts: object = None
    per_type_energy_scales_trainable: bool = False
    per_type_energy_shifts_trainable: bool = False
    per_edge_type_cutoff: dict | None = None
    pair_potential: dict | None = None
    model_dtype: str = "float64"
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            import difflib

            hints = [f"{k!r} (did you mean {difflib.get_close_matches(k, names, 1)[0]!r}?)"
                     if difflib.get_close_matches(k, names, 1) else repr(k) for k in unknown]
            raise TypeError(f"unknown model option(s) {', '.join(hints)}")
        for req in ("type_names", "r_max", "avg_num_neighbors"):
            if kwargs.get(req) is None:
                raise ValueError(f"model option {req!r} is required (nequip requires it too)")
        cfg = cls(**kwargs)
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        self.type_names = [str(t) for t in self.type_names]
        if not self.type_names or len(set(self.type_names)) != len(self.type_names):
            raise ValueError(f"type_names must be a non-empty list of distinct names, got {self.type_names}")
        if not (isinstance(self.r_max, (int, float)) and self.r_max > 0):
            raise ValueError(f"r_max must be a positive number, got {self.r_max!r}")
        self.r_max = float(self.r_max)
        for name in ("num_layers", "num_bessels", "radial_mlp_width", "polynomial_cutoff_p"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0 <= int(self.l_max) <= 8:
            raise ValueError(f"l_max must be between 0 and 8, got {self.l_max!r}")
        nf = self.num_features
        nf = [int(nf)] * (self.l_max + 1) if np.isscalar(nf) else [int(v) for v in nf]
        if len(nf) != self.l_max + 1 or min(nf) < 1:
            raise ValueError(f"num_features must be a positive int or a list of l_max+1 = {self.l_max + 1} "
                             f"positive ints, got {self.num_features!r}")
        self.num_features = nf
        if self.type_embed_num_features is None:
            self.type_embed_num_features = nf[0]
        if self.readout_mlp_hidden_layers_width is None:
            self.readout_mlp_hidden_layers_width = nf[0]
        from nequip_np.kernels.mlp.reference import ACTIVATIONS

        if self.readout_mlp_nonlinearity in ("None", "null"):
            self.readout_mlp_nonlinearity = None
        if self.readout_mlp_nonlinearity is not None and self.readout_mlp_nonlinearity not in ACTIVATIONS:
            raise ValueError(f"readout_mlp_nonlinearity must be one of {sorted(ACTIVATIONS)} or None, "
                             f"got {self.readout_mlp_nonlinearity!r}")
        if self.model_dtype not in ("float32", "float64"):
            raise ValueError(f"model_dtype must be 'float32' or 'float64', got {self.model_dtype!r}")
        if self.pair_potential is not None:
            kind = str(self.pair_potential.get("type", self.pair_potential.get("_target_", ""))).split(".")[-1]
            if kind != "ZBL" or self.pair_potential.get("units", "metal") not in ZBL_KE:
                raise ValueError(f"pair_potential must be {{'type': 'ZBL', 'units': 'metal'|'real'}}, "
                                 f"got {self.pair_potential!r}")

    # ------------------------------------------------------------------ buffers
    def per_type(self, value, name: str, default: float) -> np.ndarray:
        """A float or {type: float} → (1,) or (T,) float64 array."""
        if value is None:
            return np.array([default])
        if isinstance(value, dict):
            missing = [t for t in self.type_names if t not in value]
            extra = [t for t in value if t not in self.type_names]
            if missing or extra:
                raise ValueError(f"{name}: keys must be exactly the type names {self.type_names}; "
                                 f"missing {missing}, unknown {extra}")
            return np.array([float(value[t]) for t in self.type_names])
        if isinstance(value, (list, tuple)):
            raise ValueError(f"{name}: give a float or a {{type: float}} dict (lists are ambiguous), got {value!r}")
        return np.array([float(value)])

    def buffers(self) -> dict:
        t = len(self.type_names)
        avg = self.per_type(self.avg_num_neighbors, "avg_num_neighbors", 1.0)
        if np.any(avg <= 0):
            raise ValueError(f"avg_num_neighbors must be positive, got {self.avg_num_neighbors!r}")
        out = {
            "rmax_recip": 1.0 / self.cutoff_table(),
            "bessel_weights": np.linspace(1.0, self.num_bessels, self.num_bessels),
            "per_type_energy_scales": self.per_type(self.per_type_energy_scales, "per_type_energy_scales", 1.0),
            "per_type_energy_shifts": self.per_type(self.per_type_energy_shifts, "per_type_energy_shifts", 0.0),
            "neighbor_norm": np.broadcast_to(1.0 / np.sqrt(avg), (t,)).copy(),
        }
        if self.pair_potential is not None:
            from ase.data import atomic_numbers

            species = list(self.pair_potential.get("chemical_species", self.type_names))
            unknown = [s for s in species if s not in atomic_numbers]
            if unknown or len(species) != len(self.type_names):
                raise ValueError(f"ZBL needs one chemical symbol per type name {self.type_names} "
                                 f"(pair_potential.chemical_species); got {species}")
            out["atomic_numbers"] = np.array([float(atomic_numbers[s]) for s in species])
            out["zbl_ke"] = ZBL_KE[self.pair_potential.get("units", "metal")]
            # nequip's ZBL has its own envelope exponent (default 6), independent of the model's
            out["zbl_p"] = float(self.pair_potential.get("polynomial_cutoff_p", 6.0))
        return out

    def cutoff_table(self) -> np.ndarray:
        """(T, T) cutoff radius per (centre type, neighbour type); missing entries are r_max."""
        t = len(self.type_names)
        table = np.full((t, t), self.r_max)
        for center, spec in (self.per_edge_type_cutoff or {}).items():
            if center not in self.type_names:
                raise ValueError(f"per_edge_type_cutoff: unknown type {center!r}; type names are {self.type_names}")
            ci = self.type_names.index(center)
            items = spec.items() if isinstance(spec, dict) else ((n, spec) for n in self.type_names)
            for nb, rc in items:
                if nb not in self.type_names:
                    raise ValueError(f"per_edge_type_cutoff[{center!r}]: unknown type {nb!r}")
                if not 0 < float(rc) <= self.r_max:
                    raise ValueError(f"per_edge_type_cutoff[{center!r}][{nb!r}] = {rc} must be in (0, r_max={self.r_max}]")
                table[ci, self.type_names.index(nb)] = float(rc)
        return table

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d
