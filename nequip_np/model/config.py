r"""Model hyper-parameters: the keyword arguments of nequip 0.19.1's ``NequIPGNNModel``, validated.

:data:`MODEL_OPTIONS` is the ONE schema of these options: the model (``NequIPModel(**kwargs)``, via
:class:`ModelConfig`) and the training configuration's ``model:`` section
(:mod:`nequip_np.train.config`) both check every option with it, so a value the YAML accepts is a
value the model accepts. A training config may in addition name a dataset statistic for the options
that take one (``avg_num_neighbors: auto``, ``per_type_energy_shifts: least_squares``, ...); it is
replaced by its number before the model is built. Cross-option rules are :func:`check_model_options`.
The derived constant arrays ("buffers": cutoff table, Bessel frequencies, per-type scales/shifts,
neighbour normalisation) are built here too.

Example:
    >>> MODEL_OPTIONS["l_max"].check(9)
    Traceback (most recent call last):
    ...
    nequip_np.schema.Bad: must be an integer between 0 and 8
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nequip_np.conventions import ZBL_KE
from nequip_np.schema import (
    Bad,
    boolean,
    choice,
    integer,
    is_number,
    number,
    unknown_key_message,
)

REQUIRED = object()  # sentinel default: the option must be given


# -- checks of single options -----------------------------------------------------------------------
def _type_names(v):
    if (
        not isinstance(v, (list, tuple))
        or not v
        or not all(isinstance(t, str) and t for t in v)
        or len(set(v)) != len(v)
    ):
        raise Bad("must be a non-empty list of distinct type names")
    return list(v)


def _per_type(what: str, positive: bool = True, optional: bool = True) -> Callable:
    """number or {type: number} (or None)."""
    ok = (lambda x: is_number(x) and x > 0) if positive else is_number

    def check(v):
        if v is None and optional:
            return None
        if ok(v):
            return float(v)
        if isinstance(v, Mapping) and v and all(isinstance(k, str) and ok(x) for k, x in v.items()):
            return {k: float(x) for k, x in v.items()}
        raise Bad(f"must be {what}")

    return check


def _num_features(v):
    if is_number(v) and isinstance(v, int) and v > 0:
        return int(v)
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
        return list(v)
    raise Bad("must be a positive integer or a list of positive integers (one per l)")


def _per_edge_type_cutoff(v):
    if v is None:
        return None
    if not isinstance(v, Mapping) or not v:
        raise Bad("must be null, {source_type: cutoff} or {source_type: {target_type: cutoff}}")
    out = {}
    for src, x in v.items():
        if is_number(x) and x > 0:
            out[src] = float(x)
        elif isinstance(x, Mapping) and all(is_number(y) and y > 0 for y in x.values()):
            out[src] = {t: float(y) for t, y in x.items()}
        else:
            raise Bad(f"has an invalid entry for {src!r}: cutoffs must be positive numbers")
    return out


def _p_exponent(v):
    """nequip's PolynomialCutoff asserts p >= 2; integral values stay ints."""
    if not is_number(v) or v < 2:
        raise Bad("must be a number >= 2 (nequip's polynomial envelope requires p >= 2)")
    return int(v) if float(v).is_integer() else float(v)


def _pair_potential(v):
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise Bad("must be null or a mapping like {type: ZBL, units: metal}")
    allowed = {"type", "_target_", "units", "chemical_species", "polynomial_cutoff_p"}
    for k in v:
        if k not in allowed:
            raise Bad(unknown_key_message(k, sorted(allowed - {"_target_"}), "model.pair_potential"))
    kind = str(v.get("type", v.get("_target_", ""))).split(".")[-1]
    if kind != "ZBL":
        raise Bad("type must be 'ZBL' (the only pair potential implemented)")
    if v.get("units", "metal") not in ZBL_KE:
        raise Bad(f"units must be one of {sorted(ZBL_KE)}")
    out = {"type": "ZBL", "units": v.get("units", "metal")}
    if v.get("chemical_species") is not None:
        out["chemical_species"] = [str(s) for s in v["chemical_species"]]
    if "polynomial_cutoff_p" in v:
        try:
            out["polynomial_cutoff_p"] = _p_exponent(v["polynomial_cutoff_p"])
        except Bad as e:
            raise Bad(f"polynomial_cutoff_p {e}") from None
    return out


def _nonlinearity(v):
    from nequip_np.kernels.mlp.reference import ACTIVATIONS

    if v in (None, "None", "null"):
        return None
    if v not in ACTIVATIONS:
        return choice(*sorted(ACTIVATIONS))(v)
    return v


def _avg_num_neighbors(v):
    if v is None:  # nequip asserts on None too; say what to write instead
        raise Bad("must be a positive number or a {type: number} dict (not null)")
    return _per_type("a positive number or a {type: number} dict")(v)


@dataclass(frozen=True)
class Option:
    """One ``NequIPGNNModel`` keyword.

    ``default``: the model's default (:data:`REQUIRED`: must be given); ``config_default``: the
    default in a training configuration when it differs; ``statistics``: strings a training
    configuration may give instead of a value, resolved from the training data.
    """

    default: Any
    check: Callable
    config_default: Any = REQUIRED
    statistics: tuple = ()

    def check_config(self, v):
        """The check of a training configuration: a value, or one of the statistic names."""
        if isinstance(v, str) and v in self.statistics:
            return v
        try:
            return self.check(v)
        except Bad as e:
            if self.statistics:
                raise Bad(f"{e}, or one of {list(self.statistics)}") from None
            raise


_SCALE_STATS = ("auto", "per_type_forces_rms", "forces_rms")
_SHIFT_STATS = ("auto", "per_atom_energy_mean", "least_squares", "isolated_atom_energies")

#: The schema: NequIPGNNModel keyword -> Option (reference dossier §1.1).
MODEL_OPTIONS: dict[str, Option] = {
    "type_names": Option(REQUIRED, _type_names, statistics=("auto",)),
    "r_max": Option(REQUIRED, number(0, lo_open=True, what="a positive number")),
    "avg_num_neighbors": Option(
        REQUIRED,
        _avg_num_neighbors,
        config_default="auto",
        statistics=("auto", "num_neighbors_mean", "per_type_num_neighbors_mean"),
    ),
    "num_layers": Option(4, integer(1)),
    "l_max": Option(1, integer(0, hi=8)),
    "parity": Option(True, boolean),
    "num_features": Option(32, _num_features),
    "type_embed_num_features": Option(None, integer(1, optional=True)),
    "radial_mlp_depth": Option(1, integer(0)),
    "radial_mlp_width": Option(128, integer(1)),
    "readout_mlp_hidden_layers_depth": Option(0, integer(0)),
    "readout_mlp_hidden_layers_width": Option(None, integer(1, optional=True)),
    "readout_mlp_nonlinearity": Option("silu", _nonlinearity),
    "num_bessels": Option(8, integer(1)),
    "bessel_trainable": Option(False, boolean),
    "polynomial_cutoff_p": Option(6, _p_exponent),
    "per_type_energy_scales": Option(
        None,
        _per_type("a positive number or a {type: number} dict, or null"),
        config_default="auto",
        statistics=_SCALE_STATS,
    ),
    "per_type_energy_shifts": Option(
        None,
        _per_type("a number or a {type: number} dict, or null", positive=False),
        config_default="auto",
        statistics=_SHIFT_STATS,
    ),
    "per_type_energy_scales_trainable": Option(False, boolean),
    "per_type_energy_shifts_trainable": Option(False, boolean),
    "per_edge_type_cutoff": Option(None, _per_edge_type_cutoff),
    "pair_potential": Option(None, _pair_potential),
    "model_dtype": Option("float64", choice("float64", "float32")),
    "seed": Option(0, integer(0)),
}


def check_model_options(opts: Mapping[str, Any], prefix: str = "") -> None:
    """Rules between options (after the single-option checks); raises ``ValueError``.

    Options still holding a statistic name (``"auto"``...) are skipped.
    """
    names = opts.get("type_names")
    names = names if isinstance(names, list) else None
    l_max, nf = opts.get("l_max", 1), opts.get("num_features", 32)
    if isinstance(nf, list) and len(nf) != l_max + 1:
        raise ValueError(f"{prefix}num_features has {len(nf)} entries; it needs l_max + 1 = {l_max + 1}")
    r_max = opts.get("r_max")
    for src, x in (opts.get("per_edge_type_cutoff") or {}).items():
        if names is not None and src not in names:
            raise ValueError(f"{prefix}per_edge_type_cutoff: unknown type {src!r}; type names are {names}")
        for nb, c in x.items() if isinstance(x, dict) else [(None, x)]:
            if names is not None and nb is not None and nb not in names:
                raise ValueError(f"{prefix}per_edge_type_cutoff[{src!r}]: unknown type {nb!r}")
            if r_max is not None and c > r_max:
                raise ValueError(f"{prefix}per_edge_type_cutoff[{src!r}] = {c} exceeds {prefix}r_max = {r_max}")
    for key in ("avg_num_neighbors", "per_type_energy_scales", "per_type_energy_shifts"):
        value = opts.get(key)
        if isinstance(value, dict) and names is not None:
            missing = [t for t in names if t not in value]
            extra = [t for t in value if t not in names]
            if missing or extra:
                raise ValueError(
                    f"{prefix}{key}: keys must be exactly the type names {names}; missing {missing}, unknown {extra}"
                )
    pp = opts.get("pair_potential")
    if pp is not None and names is not None:
        from ase.data import atomic_numbers

        species = list(pp.get("chemical_species", names))
        unknown = [s for s in species if s not in atomic_numbers]
        if unknown or len(species) != len(names):
            raise ValueError(
                f"{prefix}pair_potential: ZBL needs one chemical symbol per type name {names} "
                f"(pair_potential.chemical_species); got {species}"
            )


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
    polynomial_cutoff_p: int | float = 6
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
    def from_kwargs(cls, **kwargs) -> ModelConfig:
        unknown = sorted(set(kwargs) - set(MODEL_OPTIONS))
        if unknown:
            import difflib

            hints = [
                f"{k!r} (did you mean {difflib.get_close_matches(k, MODEL_OPTIONS, 1)[0]!r}?)"
                if difflib.get_close_matches(k, MODEL_OPTIONS, 1)
                else repr(k)
                for k in unknown
            ]
            raise TypeError(f"unknown model option(s) {', '.join(hints)}")
        for req in ("type_names", "r_max", "avg_num_neighbors"):
            if kwargs.get(req) is None:
                raise ValueError(f"model option {req!r} is required (nequip requires it too)")
        cfg = cls(**kwargs)
        cfg._validate()
        return cfg

    def _validate(self) -> None:
        """Every option through :data:`MODEL_OPTIONS`, then :func:`check_model_options`."""
        if isinstance(self.type_names, tuple):
            self.type_names = list(self.type_names)
        if isinstance(self.num_features, (tuple, np.ndarray)):
            self.num_features = [int(v) for v in self.num_features]
        for name, opt in MODEL_OPTIONS.items():
            value = getattr(self, name)
            if isinstance(value, np.generic):
                value = value.item()
            try:
                setattr(self, name, opt.check(value))
            except Bad as e:
                raise ValueError(f"{name} {e}, got {value!r}") from None
        check_model_options(self.to_dict())
        nf = self.num_features
        self.num_features = [nf] * (self.l_max + 1) if isinstance(nf, int) else nf
        if self.type_embed_num_features is None:
            self.type_embed_num_features = self.num_features[0]
        if self.readout_mlp_hidden_layers_width is None:
            self.readout_mlp_hidden_layers_width = self.num_features[0]

    # ------------------------------------------------------------------ buffers
    def per_type(self, value, name: str, default: float) -> np.ndarray:
        """A float or {type: float} → (1,) or (T,) float64 array."""
        if value is None:
            return np.array([default])
        if isinstance(value, dict):
            missing = [t for t in self.type_names if t not in value]
            extra = [t for t in value if t not in self.type_names]
            if missing or extra:
                raise ValueError(
                    f"{name}: keys must be exactly the type names {self.type_names}; missing {missing}, unknown {extra}"
                )
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
                raise ValueError(
                    f"ZBL needs one chemical symbol per type name {self.type_names} "
                    f"(pair_potential.chemical_species); got {species}"
                )
            out["atomic_numbers"] = np.array([float(atomic_numbers[s]) for s in species])
            out["zbl_ke"] = ZBL_KE[self.pair_potential.get("units", "metal")]
            # nequip's ZBL has its own envelope exponent (default 6), independent of the model's
            out["zbl_p"] = float(
                self.pair_potential.get("polynomial_cutoff_p", 6.0)
            )  # settable: pair_potential.polynomial_cutoff_p
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
                    raise ValueError(
                        f"per_edge_type_cutoff[{center!r}][{nb!r}] = {rc} must be in (0, r_max={self.r_max}]"
                    )
                table[ci, self.type_names.index(nb)] = float(rc)
        return table

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d
