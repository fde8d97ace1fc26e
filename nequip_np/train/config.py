r"""The YAML training configuration: schema, defaults, validation, resolution.

A config has a top-level ``run_name`` and three sections. ``model`` uses the keyword names of
nequip's ``NequIPGNNModel`` so that a nequip user's model block carries over unchanged; ``data``
and ``training`` are flat (no Hydra ``_target_`` objects). The schema is the dataclasses below:
each field's default is the documented default, and its ``check`` normalises the value or raises
:class:`ConfigError` with the dotted key, the expectation and the offending value.

* :func:`load_config` — YAML file / mapping → validated :class:`Config`; missing keys take defaults.
* :func:`resolve_defaults` — fill derived values (``data.r_max`` ← ``model.r_max``, widths ←
  ``num_features[0]``, ``val_batch_size`` ← ``batch_size``, ``"auto"`` → the named statistic, and
  numbers from a training-set ``stats`` mapping when one is given).
* :func:`config_to_dict` — plain nested dict (YAML-safe) for writing the resolved config.

Sections support attribute and item access: ``cfg.training.learning_rate ==
cfg["training"]["learning_rate"]``. See docs/training.md, "Configuration file", for an annotated
example.

Example:
    >>> cfg = load_config({"model": {"type_names": ["H", "O"], "r_max": 4.0},
    ...                    "data": {"path": "water.xyz"}})
    >>> cfg.training.learning_rate, cfg["model"]["num_layers"]
    (0.01, 4)
    >>> resolve_defaults(cfg).data.r_max
    4.0
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import yaml

__all__ = [
    "ConfigError", "Config", "ModelConfig", "DataConfig", "TrainingConfig", "SchedulerConfig",
    "EarlyStoppingConfig", "load_config", "resolve_defaults", "config_to_dict", "dump_config",
]

REQUIRED = object()  # sentinel default: the key must be given


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted key."""


# -- value checks: each returns the normalised value or raises _Bad("must be ...") ---------------
class _Bad(Exception):
    pass


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(lo: float | None = None, lo_open: bool = False, hi: float | None = None,
            hi_open: bool = False, optional: bool = False, what: str = "a number") -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if not _is_number(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or (
                hi is not None and (v >= hi if hi_open else v > hi)):
            raise _Bad(f"must be {what}" + (" or null" if optional else ""))
        return float(v)
    return check


def _int(lo: int = 0, optional: bool = False) -> Callable:
    what = "a positive integer" if lo == 1 else f"an integer >= {lo}"

    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise _Bad(f"must be {what}" + (" or null" if optional else ""))
        return int(v)
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad("must be true or false")
    return v


def _choice(*options, optional: bool = False) -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if v not in options:
            hint = difflib.get_close_matches(str(v), [str(o) for o in options], n=1)
            raise _Bad(f"must be one of {list(options)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""))
        return v
    return check


def _str(optional: bool = False) -> Callable:
    def check(v):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise _Bad("must be a non-empty string" + (" or null" if optional else ""))
        return v
    return check


def _type_names(v):
    if v == "auto":
        return v
    if (not isinstance(v, (list, tuple)) or not v or not all(isinstance(t, str) and t for t in v)
            or len(set(v)) != len(v)):
        raise _Bad("must be a non-empty list of distinct type names, or 'auto' (from the data)")
    return list(v)


def _pos_per_type(v, allow: tuple[str, ...], what: str, positive: bool = True):
    """number, {type: number}, one of the strings in ``allow``, or None."""
    if v is None or (isinstance(v, str) and v in allow):
        return v
    ok = (lambda x: _is_number(x) and x > 0) if positive else _is_number
    if ok(v):
        return float(v)
    if isinstance(v, Mapping) and v and all(isinstance(k, str) and ok(x) for k, x in v.items()):
        return {k: float(x) for k, x in v.items()}
    raise _Bad(f"must be {what}")


def _avg_num_neighbors(v):
    if v is None:  # nequip asserts on None too; say what to write instead
        raise _Bad("must be a positive number, a {type: number} dict, or 'auto' (not null)")
    return _pos_per_type(v, ("auto", "num_neighbors_mean", "per_type_num_neighbors_mean"),
                         "a positive number, a {type: number} dict, or 'auto'")


def _scales(v):
    return _pos_per_type(v, ("auto", "per_type_forces_rms", "forces_rms"),
                         "a positive number, a {type: number} dict, 'auto' (= per_type_forces_rms), "
                         "'forces_rms', or null")


def _shifts(v):
    return _pos_per_type(v, ("auto", "per_atom_energy_mean", "least_squares", "isolated_atom_energies"),
                         "a number, a {type: number} dict, 'auto' (= per_atom_energy_mean), "
                         "'least_squares', 'isolated_atom_energies', or null", positive=False)


def _num_features(v):
    if _is_number(v) and isinstance(v, int) and v > 0:
        return int(v)
    if isinstance(v, (list, tuple)) and v and all(
            isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
        return list(v)
    raise _Bad("must be a positive integer or a list of positive integers (one per l)")


def _per_edge_type_cutoff(v):
    if v is None:
        return None
    if not isinstance(v, Mapping) or not v:
        raise _Bad("must be null, {source_type: cutoff} or {source_type: {target_type: cutoff}}")
    out = {}
    for src, x in v.items():
        if _is_number(x) and x > 0:
            out[src] = float(x)
        elif isinstance(x, Mapping) and all(_is_number(y) and y > 0 for y in x.values()):
            out[src] = {t: float(y) for t, y in x.items()}
        else:
            raise _Bad(f"has an invalid entry for {src!r}: cutoffs must be positive numbers")
    return out


def _pair_potential(v):
    if v is None:
        return None
    if not isinstance(v, Mapping):
        raise _Bad("must be null or a mapping like {type: ZBL, units: metal}")
    allowed = {"type", "units", "chemical_species"}
    for k in v:
        if k not in allowed:
            raise _Bad(_unknown_key_message(k, sorted(allowed), "model.pair_potential"))
    if v.get("type") != "ZBL":
        raise _Bad("type must be 'ZBL' (the only pair potential implemented)")
    if v.get("units", "metal") not in ("metal", "real"):
        raise _Bad("units must be 'metal' or 'real'")
    out = {"type": "ZBL", "units": v.get("units", "metal")}
    if v.get("chemical_species") is not None:
        out["chemical_species"] = list(v["chemical_species"])
    return out


def _split(v):
    if isinstance(v, bool) or not _is_number(v) or v < 0 or (isinstance(v, float) and v > 1):
        raise _Bad("must be a count (integer >= 0) or a fraction (float in [0, 1])")
    return v


def _energy_dict(v):
    if v is None:
        return None
    if isinstance(v, Mapping) and all(isinstance(k, str) and _is_number(x) for k, x in v.items()):
        return {k: float(x) for k, x in v.items()}
    raise _Bad("must be null or a {type_name: energy} mapping")


_LOSS_KEYS = ("per_atom_energy", "total_energy", "forces", "stress")


def _loss_coeffs(v):
    if not isinstance(v, Mapping) or not v:
        raise _Bad(f"must be a mapping with keys among {list(_LOSS_KEYS)}")
    for k, x in v.items():
        if k not in _LOSS_KEYS:
            raise _Bad(_unknown_key_message(k, list(_LOSS_KEYS), "training.loss_coeffs"))
        if not (_is_number(x) and x >= 0):
            raise _Bad(f"[{k!r}] must be a number >= 0")
    if sum(v.values()) <= 0:
        raise _Bad("must have at least one positive coefficient")
    if "per_atom_energy" in v and "total_energy" in v:
        raise _Bad("may weight per_atom_energy or total_energy, not both")
    return {k: float(x) for k, x in v.items()}


def _f(default: Any = REQUIRED, check: Callable = lambda v: v, factory: Callable | None = None):
    md = {"check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=md)
    return field(default=default, metadata=md)


# -- schema ---------------------------------------------------------------------------------------
class _Section:
    """Dataclass mixin: dict-style access, and the section's dotted name for messages."""

    _name = ""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(_unknown_key_message(key, self.keys(), self._name))
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self.keys() else default


@dataclass
class ModelConfig(_Section):
    """nequip ``NequIPGNNModel`` keywords (reference dossier §1.1)."""

    _name = "model"
    type_names: Any = _f(REQUIRED, _type_names)
    r_max: float = _f(REQUIRED, _number(0, lo_open=True, what="a positive number"))
    num_layers: int = _f(4, _int(1))
    l_max: int = _f(1, _int(0))
    parity: bool = _f(True, _bool)
    num_features: Any = _f(32, _num_features)
    type_embed_num_features: int | None = _f(None, _int(1, optional=True))
    radial_mlp_depth: int = _f(1, _int(0))
    radial_mlp_width: int = _f(128, _int(1))
    readout_mlp_hidden_layers_depth: int = _f(0, _int(0))
    readout_mlp_hidden_layers_width: int | None = _f(None, _int(1, optional=True))
    readout_mlp_nonlinearity: str | None = _f("silu", _choice("silu", "tanh", "mish", "gelu", "ssp", "softplus", "sigmoid", optional=True))
    num_bessels: int = _f(8, _int(1))
    bessel_trainable: bool = _f(False, _bool)
    polynomial_cutoff_p: float = _f(6, _number(0, lo_open=True, what="a positive number"))
    avg_num_neighbors: Any = _f("auto", _avg_num_neighbors)
    per_type_energy_scales: Any = _f("auto", _scales)
    per_type_energy_shifts: Any = _f("auto", _shifts)
    per_type_energy_scales_trainable: bool = _f(False, _bool)
    per_type_energy_shifts_trainable: bool = _f(False, _bool)
    per_edge_type_cutoff: Any = _f(None, _per_edge_type_cutoff)
    pair_potential: Any = _f(None, _pair_potential)
    model_dtype: str = _f("float64", _choice("float64", "float32"))
    seed: int = _f(0, _int(0))
    initial_model: str | None = _f(None, _str(optional=True))  # fine-tuning: nequip_np/train/finetune.py


@dataclass
class DataConfig(_Section):
    """Where the frames come from and how they are split (counts or fractions)."""

    _name = "data"
    path: str = _f(REQUIRED, _str())
    format: str | None = _f(None, _str(optional=True))  # ase.io format; None = from the suffix
    units: str = _f("eV", _choice("eV", "meV", "kcal/mol", "kJ/mol", "Hartree"))
    train: Any = _f(0.8, _split)
    val: Any = _f(0.1, _split)
    test: Any = _f(0.1, _split)
    split_seed: int = _f(456, _int(0))
    isolated_atom_energies: Any = _f(None, _energy_dict)
    r_max: float | None = _f(None, _number(0, lo_open=True, optional=True, what="a positive number"))


@dataclass
class SchedulerConfig(_Section):
    """ReduceLROnPlateau on the validation metric (nequip tutorial values)."""

    _name = "training.scheduler"
    factor: float = _f(0.6, _number(0, lo_open=True, hi=1, hi_open=True, what="a number in (0, 1)"))
    patience: int = _f(5, _int(0))
    threshold: float = _f(0.2, _number(0, what="a number >= 0"))
    threshold_mode: str = _f("rel", _choice("rel", "abs"))
    cooldown: int = _f(0, _int(0))
    min_lr: float = _f(1e-6, _number(0, what="a number >= 0"))


@dataclass
class EarlyStoppingConfig(_Section):
    """Lightning-style early stopping on the validation metric."""

    _name = "training.early_stopping"
    patience: int = _f(20, _int(0))
    min_delta: float = _f(1e-3, _number(0, what="a number >= 0"))


_NESTED = {"scheduler": SchedulerConfig, "early_stopping": EarlyStoppingConfig}


@dataclass
class TrainingConfig(_Section):
    _name = "training"
    learning_rate: float = _f(0.01, _number(0, lo_open=True, what="a positive number"))
    amsgrad: bool = _f(False, _bool)
    weight_decay: float = _f(0.0, _number(0, what="a number >= 0"))
    batch_size: int = _f(5, _int(1))
    val_batch_size: int | None = _f(None, _int(1, optional=True))
    max_epochs: int = _f(100, _int(1))
    ema_decay: float | None = _f(0.999, _number(0, hi=1, optional=True, what="a number in [0, 1]"))
    scheduler: SchedulerConfig | None = _f(check=None, factory=SchedulerConfig)
    early_stopping: EarlyStoppingConfig | None = _f(check=None, factory=EarlyStoppingConfig)
    stop_below_lr: float | None = _f(None, _number(0, lo_open=True, optional=True,
                                                   what="a positive number"))
    loss_coeffs: dict = _f(check=_loss_coeffs,
                           factory=lambda: {"per_atom_energy": 1.0, "forces": 1.0, "stress": 0.0})
    grad_clip: float | None = _f(None, _number(0, lo_open=True, optional=True, what="a positive number"))
    seed: int = _f(0, _int(0))
    backend: str = _f("numpy", _choice("numpy", "numba", "cuda"))
    dtype: str = _f("float64", _choice("float64", "float32"))
    output_dir: str | None = _f(None, _str(optional=True))


@dataclass
class Config(_Section):
    _name = "top level"
    run_name: str = "nequip_np_run"
    model: ModelConfig = None  # type: ignore[assignment]
    data: DataConfig = None  # type: ignore[assignment]
    training: TrainingConfig = field(default_factory=TrainingConfig)


# -- building -------------------------------------------------------------------------------------
def _unknown_key_message(key: Any, valid, section: str) -> str:
    msg = f"unknown key {key!r} in section {section!r}"
    hint = difflib.get_close_matches(str(key), list(valid), n=1)
    return msg + (f"; did you mean {hint[0]!r}?" if hint else f"; valid keys: {sorted(valid)}")


def _build(cls, raw: Any):
    section = cls._name
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(_unknown_key_message(key, fields, section))
    kwargs = {}
    for name, f in fields.items():
        dotted = f"{section}.{name}"
        if name not in raw:
            if f.default is REQUIRED:
                raise ConfigError(f"missing required key {name!r} in section {section!r}")
            continue  # dataclass default
        value = raw[name]
        if name in _NESTED:
            kwargs[name] = None if value is None else _build(_NESTED[name], value)
            continue
        try:
            kwargs[name] = f.metadata["check"](value)
        except _Bad as e:
            raise ConfigError(f"{dotted} {e}, got {value!r} ({type(value).__name__})") from None
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 insists on ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def load_config(source: str | os.PathLike | Mapping | Config) -> Config:
    """Read a YAML file (or take a mapping) and return the validated :class:`Config`.

    Missing keys take their defaults; unknown keys, wrong types and missing required keys
    (``model.type_names``, ``model.r_max``, ``data.path``) raise :class:`ConfigError`.
    """
    if isinstance(source, Config):
        source = config_to_dict(source)
    if isinstance(source, (str, os.PathLike)):
        with open(source) as fh:
            raw = yaml.load(fh, Loader=_Loader)
    else:
        raw = source
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a config must be a mapping at the top level, got {type(raw).__name__}")
    for key in raw:
        if key not in ("run_name", "model", "data", "training"):
            raise ConfigError(_unknown_key_message(key, ["run_name", "model", "data", "training"],
                                                   "top level"))
    for section in ("model", "data"):
        if raw.get(section) is None:
            raise ConfigError(f"missing required section {section!r}")
    run_name = raw.get("run_name", "nequip_np_run")
    if not (isinstance(run_name, str) and run_name):
        raise ConfigError(f"run_name must be a non-empty string, got {run_name!r}")
    cfg = Config(
        run_name=run_name,
        model=_build(ModelConfig, raw["model"]),
        data=_build(DataConfig, raw["data"]),
        training=_build(TrainingConfig, raw.get("training")),
    )
    _cross_checks(cfg)
    return cfg


def _cross_checks(cfg: Config) -> None:
    m, d = cfg.model, cfg.data
    if isinstance(m.num_features, list) and len(m.num_features) != m.l_max + 1:
        raise ConfigError(
            f"model.num_features has {len(m.num_features)} entries; it needs l_max + 1 = {m.l_max + 1}")
    if d.r_max is not None and d.r_max != m.r_max:
        raise ConfigError(f"data.r_max ({d.r_max}) differs from model.r_max ({m.r_max}); "
                          "data.r_max is taken from the model, leave it out")
    splits = (d.train, d.val, d.test)
    if all(isinstance(s, float) for s in splits) and sum(splits) > 1 + 1e-9:
        raise ConfigError(f"data.train + data.val + data.test fractions sum to {sum(splits)} > 1")
    if len({isinstance(s, float) for s in splits if s}) > 1:
        raise ConfigError("data.train/val/test must be all counts (integers) or all fractions (floats)")
    if m.per_edge_type_cutoff:
        for src, x in m.per_edge_type_cutoff.items():
            for c in (x.values() if isinstance(x, dict) else [x]):
                if c > m.r_max:
                    raise ConfigError(f"model.per_edge_type_cutoff[{src!r}] = {c} exceeds model.r_max = {m.r_max}")
    if m.per_type_energy_shifts == "isolated_atom_energies" and not d.isolated_atom_energies:
        raise ConfigError("model.per_type_energy_shifts is 'isolated_atom_energies' but "
                          "data.isolated_atom_energies is not given")


_STAT_FOR = {
    "avg_num_neighbors": {"auto": "num_neighbors_mean"},
    "per_type_energy_scales": {"auto": "per_type_forces_rms"},
    "per_type_energy_shifts": {"auto": "per_atom_energy_mean"},
}


def resolve_defaults(cfg: Config | Mapping, stats: Mapping[str, Any] | None = None) -> Config:
    """Return a copy of ``cfg`` with every derived default filled in.

    * ``data.r_max`` ← ``model.r_max``; ``training.val_batch_size`` ← ``batch_size``;
      ``training.output_dir`` ← ``runs/<run_name>``;
    * ``model.type_embed_num_features`` and ``readout_mlp_hidden_layers_width`` ←
      ``num_features[0]``;
    * ``"auto"`` → the statistic's name (``num_neighbors_mean``, ``per_type_forces_rms``,
      ``per_atom_energy_mean``); ``isolated_atom_energies`` → ``data.isolated_atom_energies``;
    * with ``stats`` (training-set statistics keyed by those names, plus optional
      ``type_names``), statistic names are replaced by their values.
      ``"least_squares"`` is left to the caller (it needs the energies, not a statistic).
    """
    cfg = load_config(cfg)  # validated deep copy
    m, d, t = cfg.model, cfg.data, cfg.training
    d.r_max = m.r_max
    f0 = m.num_features[0] if isinstance(m.num_features, list) else m.num_features
    if m.type_embed_num_features is None:
        m.type_embed_num_features = f0
    if m.readout_mlp_hidden_layers_width is None:
        m.readout_mlp_hidden_layers_width = f0
    if t.val_batch_size is None:
        t.val_batch_size = t.batch_size
    if t.output_dir is None:
        t.output_dir = os.path.join("runs", cfg.run_name)
    if m.per_type_energy_shifts == "isolated_atom_energies":
        m.per_type_energy_shifts = dict(d.isolated_atom_energies)
    for key, table in _STAT_FOR.items():
        value = getattr(m, key)
        if isinstance(value, str):
            value = table.get(value, value)
            if stats is not None and value in stats:
                s = stats[value]
                value = {k: float(x) for k, x in s.items()} if isinstance(s, Mapping) else float(s)
            setattr(m, key, value)
    if m.type_names == "auto" and stats is not None and "type_names" in stats:
        m.type_names = list(stats["type_names"])
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict (lists, floats, strings, None) — ``yaml.safe_dump`` can write it."""
    def conv(v):
        if isinstance(v, _Section):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, Mapping):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        return v
    return conv(cfg)


def dump_config(cfg: Config, path: str | os.PathLike) -> None:
    """Write ``cfg`` as YAML (sections in schema order)."""
    with open(path, "w") as fh:
        yaml.safe_dump(config_to_dict(cfg), fh, sort_keys=False)
