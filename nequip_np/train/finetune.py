r"""Fine-tuning: ``model.initial_model: PATH`` starts training from the weights of any readable model file.

The file (a nequip-np ``.npz``, an official nequip ``.ckpt`` / ``.nequip.zip``, an export ``.npz``)
fixes the architecture; the ``model`` block of the training config may then only say

=====================================  ===========================================================
key                                    meaning when fine-tuning
=====================================  ===========================================================
``initial_model``                      the starting model (required)
``type_names``                         omitted: the file's; a list: kept names keep their embedding
                                       rows, new names get a freshly initialised row; ``auto``: the
                                       species of the data
``per_type_energy_shifts``             omitted: the file's values (nequip's default, no modifier);
                                       ``auto`` / ``least_squares`` / ``isolated_atom_energies`` / a
                                       value: re-fitted to the new data as in training from scratch
                                       (what ``modify_PerTypeScaleShift`` does in official nequip)
``per_type_energy_scales``             the same: omitted keeps the file's, anything else re-fits
``per_type_energy_*_trainable``,       as in training from scratch
``model_dtype``, ``seed``
=====================================  ===========================================================

Every other architecture key is taken from the file; if the config gives one it must agree. A new
species with kept shifts/scales gets them from the new data: its shift is the least-squares fit of the
energies left after the kept types' shifts, its scale the data's per-type force RMS (1 if unknown).
Use a smaller learning rate than from scratch (docs/training.md).

The two hooks: :func:`prepare` runs on the raw config before it is validated, :func:`build` replaces
``NequIPModel(**kwargs)`` where the trainer constructs the model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: model keys a fine-tuning config may set freely (everything else comes from the initial model)
FREE_KEYS = {
    "initial_model",
    "type_names",
    "per_type_energy_shifts",
    "per_type_energy_scales",
    "per_type_energy_shifts_trainable",
    "per_type_energy_scales_trainable",
    "model_dtype",
    "seed",
}
PER_TYPE = ("per_type_energy_shifts", "per_type_energy_scales")


@dataclass
class FineTune:
    """What :func:`prepare` learned from the initial model and the raw config."""

    path: str
    initial: object  # NequIPModel
    keep: set = field(default_factory=set)  # per-type keys the config left out: keep the file's values


def prepare(config):
    """``(raw config dict, FineTune | None)``; fills the architecture of ``model.initial_model`` into the block."""
    import yaml

    from nequip_np.interop.model_file import load_any_model

    if isinstance(config, (str, os.PathLike)):
        from nequip_np.train.config import _Loader  # the training config's YAML rules (1e-6 is a float)

        base = Path(config).resolve().parent
        with open(config) as fh:
            raw = yaml.load(fh, Loader=_Loader)  # _Loader is a SafeLoader subclass
    elif isinstance(config, dict):
        base, raw = Path.cwd(), config
    else:
        from nequip_np.train.config import Config, config_to_dict

        if not isinstance(config, Config):
            return config, None
        base, raw = Path.cwd(), config_to_dict(config)
    model_block = (raw or {}).get("model") if isinstance(raw, dict) else None
    if not isinstance(model_block, dict) or model_block.get("initial_model") is None:
        return config, None
    path = Path(str(model_block["initial_model"])).expanduser()
    if not path.is_absolute() and not path.exists() and (base / path).exists():
        path = base / path  # relative to the config file
    initial = load_any_model(path)
    arch = initial.config.to_dict()
    if arch.get("pair_potential") is not None:  # the training config's spelling of nequip's ZBL
        pp = arch["pair_potential"]
        arch["pair_potential"] = {
            "type": "ZBL",
            "units": pp.get("units", "metal"),
            "chemical_species": list(pp.get("chemical_species", arch["type_names"])),
        }
    block = dict(model_block)
    for key, value in block.items():
        if key in FREE_KEYS or key not in arch or value is None:
            continue
        if not _same(value, arch[key]):
            raise ValueError(
                f"model.{key} = {value!r} differs from the initial model's {arch[key]!r}; "
                f"fine-tuning keeps the architecture of {str(path)!r}: remove model.{key} "
                "from the config or make it match"
            )
    for key, value in arch.items():
        if key not in FREE_KEYS and block.get(key) is None:
            block[key] = value
    block.setdefault("type_names", list(initial.config.type_names))
    block["initial_model"] = str(path)
    if isinstance(block.get("avg_num_neighbors"), dict):
        block["avg_num_neighbors"] = "auto"  # per-type values: filled for the final type names in build()
    keep = {k for k in PER_TYPE if k not in model_block}
    raw = dict(raw, model=block)
    return raw, FineTune(str(path), initial, keep)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and not isinstance(b, (list, tuple)) and len(set(a)) == 1:
        return _same(a[0], b)
    if isinstance(b, (list, tuple)) and not isinstance(a, (list, tuple)) and len(set(b)) == 1:
        return _same(a, b[0])
    return a == b


def build(ft: FineTune, kwargs: dict, backend: str, train_set, stats: dict):
    """The model to train: architecture and weights of the initial model, species and scale/shift as configured."""
    from nequip_np.model.nequip import NequIPModel

    kwargs = {k: v for k, v in kwargs.items() if k != "initial_model"}
    old = ft.initial
    names, old_names = list(kwargs["type_names"]), list(old.config.type_names)
    new = [t for t in names if t not in old_names]
    if isinstance(old.config.avg_num_neighbors, dict):
        per = stats.get("per_type_num_neighbors_mean", {})
        kwargs["avg_num_neighbors"] = {
            t: float(old.config.avg_num_neighbors[t])
            if t in old_names
            else float(per.get(t, stats["num_neighbors_mean"]))
            for t in names
        }
    else:
        kwargs["avg_num_neighbors"] = old.config.avg_num_neighbors
    if old.config.pair_potential is not None:
        pp = dict(old.config.pair_potential)
        species = dict(zip(old_names, pp.get("chemical_species", old_names)))
        pp["chemical_species"] = [species.get(t, t) for t in names]
        kwargs["pair_potential"] = pp
    for key in ft.keep:
        kwargs[key] = _kept(old, key, names, new, train_set, stats)
    model = NequIPModel(backend=backend, **kwargs)
    params = {}
    for name, value in old.params.items():
        if name == "type_embed":
            rows = model.params["type_embed"].copy()  # new species: the fresh initialisation's rows
            for i, t in enumerate(names):
                if t in old_names:
                    rows[i] = value[old_names.index(t)]
            params[name] = rows
        elif name in PER_TYPE or name not in model.params:
            continue  # scales/shifts: as configured (kwargs above); not trainable now: a buffer
        else:
            params[name] = value
    model.load_params(params)
    model.provenance = {
        "initial_model": ft.path,
        "new_species": new,
        "kept": sorted(ft.keep),
        **{f"initial_{k}": v for k, v in (getattr(old, "provenance", None) or {}).items()},
    }
    return model


def _kept(old, key: str, names, new, train_set, stats):
    """The initial model's per-type values for ``names``; new species from the new data."""
    vals = np.asarray(old._get(key, old.params), dtype=np.float64).reshape(-1)
    old_names = list(old.config.type_names)
    table = {t: float(vals[old_names.index(t)] if vals.size > 1 else vals[0]) for t in old_names}
    if not new:
        if vals.size == 1:
            return float(vals[0])
        return {t: table[t] for t in names}
    if key == "per_type_energy_scales":
        rms = stats.get("per_type_forces_rms", {})
        fill = {t: float(rms[t]) if t in rms and np.isfinite(rms[t]) else 1.0 for t in new}
    else:
        fill = _residual_shifts(table, names, new, train_set)
    return {t: table[t] if t in table else fill[t] for t in names}


def _residual_shifts(table, names, new, train_set) -> dict:
    """Least-squares shifts of the new species with the kept species' shifts held fixed."""
    from nequip_np.data.graph import batch_graphs
    from nequip_np.data.stats import type_counts

    g = batch_graphs(list(train_set.graphs))
    counts = type_counts(g, len(names))
    kept = np.array([table.get(t, 0.0) for t in names])
    residual = np.asarray(g.energy, np.float64) - counts @ kept
    cols = [names.index(t) for t in new]
    sol, *_ = np.linalg.lstsq(counts[:, cols], residual, rcond=None)
    return {t: float(s) for t, s in zip(new, sol)}
