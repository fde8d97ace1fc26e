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
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from nequip_np.model.config import MODEL_OPTIONS, REQUIRED, check_model_options
from nequip_np.schema import Bad, boolean, choice, integer, is_number, number, string, unknown_key_message

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "TrainingConfig",
    "SchedulerConfig",
    "EarlyStoppingConfig",
    "load_config",
    "resolve_defaults",
    "config_to_dict",
    "dump_config",
]


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the dotted key."""


# -- value checks: each returns the normalised value or raises _Bad("must be ...") ---------------
_Bad, _is_number, _number, _int, _bool, _choice, _str = Bad, is_number, number, integer, boolean, choice, string
_unknown_key_message = unknown_key_message


def _split(v):
    """A count or fraction of ``data.path``'s frames, or file path(s) of its own (null: none)."""
    if v is None:
        return None
    if isinstance(v, str) and v:
        return v
    if isinstance(v, (list, tuple)) and v and all(isinstance(x, str) and x for x in v):
        return list(v)
    if isinstance(v, bool) or not _is_number(v) or v < 0 or (isinstance(v, float) and v > 1):
        raise _Bad("must be a count (integer >= 0), a fraction (float in [0, 1]), or a file path / list of file paths")
    return v


_LABELS = ("energy", "forces", "stress", "virial")


def _key_mapping(v):
    """{key in the file: label}; labels energy (or total_energy), forces, stress, virial."""
    if v is None:
        return None
    if not isinstance(v, Mapping) or not v:
        raise _Bad(f"must be null or a mapping {{key in the file: label}} with labels among {list(_LABELS)}")
    out = {}
    for k, x in v.items():
        x = "energy" if x == "total_energy" else x
        if not isinstance(k, str) or x not in _LABELS:
            hint = difflib.get_close_matches(str(x), _LABELS, n=1)
            raise _Bad(
                f"[{k!r}] must map to one of {list(_LABELS)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f", not {x!r}"
            )
        out[k] = x
    if len(set(out.values())) != len(out):
        raise _Bad(f"maps two file keys to the same label: {dict(v)}")
    return out


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
    return {k: float(x) for k, x in v.items()}


def _huber_delta(v):
    if _is_number(v) and v > 0:
        return float(v)
    if isinstance(v, Mapping) and v and all(k in _LOSS_KEYS and _is_number(x) and x > 0 for k, x in v.items()):
        return {k: float(x) for k, x in v.items()}
    raise _Bad(f"must be a positive number or a {{term: positive number}} mapping with terms among {list(_LOSS_KEYS)}")


def _per_type_forces_coeffs(v):
    if v is None:
        return None
    if isinstance(v, Mapping) and v and all(isinstance(k, str) and _is_number(x) and x > 0 for k, x in v.items()):
        return {k: float(x) for k, x in v.items()}
    raise _Bad(
        "must be null or a {type_name: positive number} mapping with every type name (nequip's per_type_forces_coeffs)"
    )


def _lr_scheduler(v):
    if v is None:
        return None
    from nequip_np.train.schedule import check_lr_scheduler_spec

    try:
        return check_lr_scheduler_spec(v, "")
    except ValueError as err:
        raise _Bad(f"is invalid: {str(err).lstrip(': ')}") from None


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


def _model_field(opt):
    default = opt.default if opt.config_default is REQUIRED else opt.config_default
    return _f(default, opt.check_config)


#: the ``model`` section: nequip ``NequIPGNNModel`` keywords, THE schema of
#: :data:`nequip_np.model.config.MODEL_OPTIONS` (reference dossier §1.1)
#: plus ``initial_model`` (fine-tuning: the starting model file, nequip_np/train/finetune.py), which is
#: a training option, not a model option
ModelConfig = dataclasses.make_dataclass(
    "ModelConfig",
    [(name, Any, _model_field(opt)) for name, opt in MODEL_OPTIONS.items()]
    + [("initial_model", Any, _f(None, _str(optional=True)))],
    bases=(_Section,),
    namespace={"_name": "model", "__doc__": "nequip ``NequIPGNNModel`` keywords."},
)


@dataclass
class DataConfig(_Section):
    """Where the frames come from and how they are split (counts or fractions)."""

    _name = "data"
    path: str | None = _f(None, _str(optional=True))  # one file to split; or train/val/test as paths
    format: str | None = _f(None, _str(optional=True))  # ase.io format; None = from the suffix
    units: str = _f("eV", _choice("eV", "meV", "kcal/mol", "kJ/mol", "Hartree"))
    train: Any = _f(0.8, _split)
    val: Any = _f(0.1, _split)
    test: Any = _f(0.1, _split)
    key_mapping: dict | None = _f(None, _key_mapping)
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
    lr_scheduler: dict | None = _f(None, _lr_scheduler)
    lr_scheduler_interval: str = _f("epoch", _choice("epoch", "step"))
    early_stopping: EarlyStoppingConfig | None = _f(check=None, factory=EarlyStoppingConfig)
    stop_below_lr: float | None = _f(None, _number(0, lo_open=True, optional=True, what="a positive number"))
    loss_coeffs: dict = _f(check=_loss_coeffs, factory=lambda: {"per_atom_energy": 1.0, "forces": 1.0, "stress": 0.0})
    loss: str = _f("mse", _choice("mse", "huber", "mae"))
    huber_delta: Any = _f(0.01, _huber_delta)
    per_type_forces_coeffs: dict | None = _f(None, _per_type_forces_coeffs)
    grad_clip: float | None = _f(None, _number(0, lo_open=True, optional=True, what="a positive number"))
    seed: int = _f(0, _int(0))
    backend: str = _f("numba", _choice("numpy", "numba", "cuda"))  # numpy: the reference
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
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_config(source: str | os.PathLike | Mapping | Config) -> Config:
    """Read a YAML file (or take a mapping) and return the validated :class:`Config`.

    Missing keys take their defaults; unknown keys, wrong types and missing required keys
    (``model.type_names``, ``model.r_max``; ``data.path`` or ``data.train`` as paths) raise
    :class:`ConfigError`.
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
            raise ConfigError(_unknown_key_message(key, ["run_name", "model", "data", "training"], "top level"))
    for section in ("model", "data"):
        if raw.get(section) is None:
            raise ConfigError(f"missing required section {section!r}")
    data = raw["data"]
    if isinstance(data, Mapping) and data.get("path") is None and isinstance(data.get("train"), (str, list)):
        data = {"val": None, "test": None, **data}  # separate files: no val/test unless given
    training = raw.get("training") or {}
    if isinstance(training, Mapping) and training.get("lr_scheduler") is not None and "scheduler" not in training:
        training = {**training, "scheduler": None}  # an explicit schedule replaces the default plateau rule
    run_name = raw.get("run_name", "nequip_np_run")
    if not (isinstance(run_name, str) and run_name):
        raise ConfigError(f"run_name must be a non-empty string, got {run_name!r}")
    cfg = Config(
        run_name=run_name,
        model=_build(ModelConfig, raw["model"]),
        data=_build(DataConfig, data),
        training=_build(TrainingConfig, training),
    )
    _cross_checks(cfg)
    return cfg


def _is_paths(v) -> bool:
    return isinstance(v, (str, list))


def _cross_checks(cfg: Config) -> None:
    m, d, t = cfg.model, cfg.data, cfg.training
    try:
        check_model_options(config_to_dict(m), prefix="model.")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if d.r_max is not None and d.r_max != m.r_max:
        raise ConfigError(
            f"data.r_max ({d.r_max}) differs from model.r_max ({m.r_max}); "
            "data.r_max is taken from the model, leave it out"
        )
    splits = (d.train, d.val, d.test)
    if d.path is not None:
        if any(_is_paths(s) for s in splits):
            raise ConfigError(
                "data.path is split by data.train/val/test counts or fractions; to give "
                "separate files, leave data.path out and set data.train/val/test to paths"
            )
        if all(isinstance(s, float) for s in splits) and sum(splits) > 1 + 1e-9:
            raise ConfigError(f"data.train + data.val + data.test fractions sum to {sum(splits)} > 1")
        if len({isinstance(s, float) for s in splits if s}) > 1:
            raise ConfigError("data.train/val/test must be all counts (integers) or all fractions (floats)")
    else:
        if not _is_paths(d.train):
            raise ConfigError(
                "data needs either 'path' (one file, split by data.train/val/test sizes) or "
                f"data.train given as a file path or list of paths; got data.train = {d.train!r}"
            )
        for name in ("val", "test"):
            v = getattr(d, name)
            if not (v is None or v == 0 or _is_paths(v)):
                raise ConfigError(
                    f"data.{name} must be a file path, a list of paths or null when data.train "
                    f"is a path (there is no data.path to split); got {v!r}"
                )
    if m.per_type_energy_shifts == "isolated_atom_energies" and not d.isolated_atom_energies:
        raise ConfigError(
            "model.per_type_energy_shifts is 'isolated_atom_energies' but data.isolated_atom_energies is not given"
        )
    if t.per_type_forces_coeffs is not None and isinstance(m.type_names, list):
        missing = [n for n in m.type_names if n not in t.per_type_forces_coeffs]
        extra = [n for n in t.per_type_forces_coeffs if n not in m.type_names]
        if missing or extra:
            raise ConfigError(
                f"training.per_type_forces_coeffs needs a positive coefficient for every type in "
                f"model.type_names {m.type_names} (nequip's rule); missing {missing}, unknown {extra}"
            )
    if t.lr_scheduler is not None and t.scheduler is not None:
        raise ConfigError(
            "training.lr_scheduler and training.scheduler (ReduceLROnPlateau) are both set; "
            "set training.scheduler: null to use training.lr_scheduler"
        )
    if isinstance(t.huber_delta, dict) and t.loss == "huber":
        missing = [k for k, c in t.loss_coeffs.items() if c > 0 and k not in t.huber_delta]
        if missing:
            raise ConfigError(f"training.huber_delta gives no delta for the loss term(s) {missing}")


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
