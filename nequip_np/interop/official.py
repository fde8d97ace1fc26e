r"""Official nequip 0.19.x model files read without torch: Lightning checkpoints and ``.nequip.zip`` packages.

=====================  =====================================================================================
file                   where the architecture and the weights come from
=====================  =====================================================================================
``*.ckpt``             ``hyper_parameters["model"]`` (the model config, with ``_target_``) and
                       ``state_dict["model.sole_model.<GraphModel key>"]``; with ``EMALightningModule``
                       also ``state_dict["ema.ema_weight_<i>"]``, one per trainable parameter in
                       ``parameters()`` order
``*.nequip.zip``       ``model/config.yaml`` (``training_module.model``) and the inert records of
                       ``model/eager_model.pkl``, whose modules' ``_parameters``/``_buffers`` hold the weights
=====================  =====================================================================================

**Which weights.** A checkpoint of an EMA training module holds the live (optimiser) weights in the
model and the exponential moving average in ``ema.ema_weight_<i>``. Official nequip evaluates, packages
and compiles the EMA weights (``EMALightningModule.evaluation_model`` swaps them in; ``ModelFromCheckpoint``
returns that model), so they are used here too; ``weights="live"`` selects the others. A package holds
only the weights ``nequip-package`` took from ``evaluation_model``, i.e. the EMA weights.

**Architecture chain.** The model config is followed through ``nequip.model.modify`` (fine-tuning
modifiers; ``modify_PerTypeScaleShift`` changes only the scale/shift values, which are read from the
weights) and ``ModelFromCheckpoint`` / ``ModelFromPackage`` (fine-tuned models point to the file they
started from; it is looked up as given, then next to the file being read). Per-type scales and shifts
always come from the stored weights, so a modified model gets the values it was trained with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nequip_np.interop.torch_zip import Record, TorchZip

NEQUIP_TARGETS = {"nequip.model.NequIPGNNModel", "nequip.model.nequip_models.NequIPGNNModel"}
CHECKPOINT_TARGETS = {"nequip.model.ModelFromCheckpoint", "nequip.model.saved_models.checkpoint.ModelFromCheckpoint"}
PACKAGE_TARGETS = {"nequip.model.ModelFromPackage", "nequip.model.saved_models.package.ModelFromPackage"}
MODIFY_TARGETS = {"nequip.model.modify", "nequip.model.modify_utils.modify"}
#: modifiers that change how official nequip computes, not what (kernels, outputs), or only scales/shifts
NEUTRAL_MODIFIERS = {
    "enable_OpenEquivariance",
    "enable_CuEquivariance",
    "enable_LAMMPSMLIAPGhostExchange",
    "enable_ForceStressOutput",
    "disable_ForceStressOutput",
    "modify_PerTypeScaleShift",
}
COMPILED_SUFFIXES = (".nequip.pth", ".nequip.pt2", ".pth", ".pt2")
SOLE = "sole_model"


@dataclass
class OfficialModel:
    """What an official file holds, as plain data: the NequIPGNNModel kwargs and the GraphModel state_dict."""

    format: str  # "lightning-checkpoint" | "nequip-package"
    kwargs: dict
    state: dict  # GraphModel state_dict keys ("model.func.…") -> arrays, the weights that are used
    weights: str  # "ema" | "live" | "package"
    provenance: dict = field(default_factory=dict)
    #: values for the trainable entries of ``state`` in ``parameters()`` order (the EMA weights), or None
    replace_trainable: list | None = None


def compiled_file_error(path) -> ValueError:
    return ValueError(
        f"{str(path)!r} is a compiled nequip model (nequip-compile output: TorchScript .nequip.pth or "
        "AOTInductor .nequip.pt2). It holds compiled torch code, not the architecture and weights in a "
        "form that can be read without torch. Use the file it was compiled from instead: the Lightning "
        "checkpoint (.ckpt) or the package (.nequip.zip)"
    )


def official_kind(path) -> str | None:
    """``"checkpoint"``, ``"package"``, or None (not a torch zip archive). Compiled files raise."""
    path = Path(path)
    if path.name.endswith(COMPILED_SUFFIXES):
        raise compiled_file_error(path)
    import zipfile

    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    roots = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(roots) != 1:
        return None
    root = roots.pop()
    if f"{root}/model/eager_model.pkl" in names or f"{root}/model/config.yaml" in names:
        return "package"
    if f"{root}/data.pkl" in names:
        if any(n.startswith(f"{root}/data/aotinductor") or n.endswith("archive_format") for n in names):
            raise compiled_file_error(path)
        return "checkpoint"
    return None


# ------------------------------------------------------------------------------ reading
def read_official(path, weights: str = "ema", _seen: tuple = ()) -> OfficialModel:
    """Read a ``.ckpt`` or ``.nequip.zip`` into an :class:`OfficialModel` (no torch; see module docstring)."""
    kind = official_kind(path)
    if kind == "checkpoint":
        return _read_checkpoint(Path(path), weights, _seen)
    if kind == "package":
        return _read_package(Path(path), _seen)
    raise ValueError(f"{str(path)!r} is neither a Lightning checkpoint nor a nequip package")


def _read_checkpoint(path: Path, weights: str, seen: tuple) -> OfficialModel:
    if weights not in ("ema", "live"):
        raise ValueError(f"weights must be 'ema' or 'live', got {weights!r}")
    with TorchZip(path) as z:
        ckpt = z.load_pickle("data.pkl")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise ValueError(
            f"{str(path)!r} is a torch file but not a Lightning checkpoint (no 'state_dict' "
            "and 'hyper_parameters' entries)"
        )
    hp = ckpt["hyper_parameters"]
    info = hp.get("info_dict") or {}
    kwargs = resolve_model_config(hp.get("model"), path, seen)
    sd = ckpt["state_dict"]
    names = sorted({k.split(".")[1] for k in sd if k.startswith("model.")})
    if names != [SOLE]:
        raise ValueError(
            f"{str(path)!r} holds the models {names}; only single-model checkpoints ({SOLE!r}) are supported"
        )
    prefix = f"model.{SOLE}."
    state = {k[len(prefix) :]: np.asarray(v) for k, v in sd.items() if k.startswith(prefix)}
    ema = {int(k.rsplit("_", 1)[1]): v for k, v in sd.items() if k.startswith("ema.ema_weight_")}
    holding = (sd.get("ema._extra_state") or {}).get("is_holding_ema_weights", True)
    prov = {
        "training_module": (info.get("training_module") or {}).get("_target_"),
        "versions": info.get("versions"),
        "epoch": ckpt.get("epoch"),
        "global_step": ckpt.get("global_step"),
        "lightning_version": ckpt.get("pytorch-lightning_version"),
        "model_target": (hp.get("model") or {}).get("_target_"),
    }
    om = OfficialModel(
        "lightning-checkpoint",
        kwargs,
        state,
        "live" if not ema else weights,
        {k: v for k, v in prov.items() if v is not None},
    )
    # the ema.* buffers hold the EMA weights, unless a swap was in progress when the file was written
    if ema and (weights == "ema") == bool(holding):
        om.replace_trainable = [np.asarray(ema[i]) for i in range(len(ema))]
    return om


def _read_package(path: Path, seen: tuple) -> OfficialModel:
    import yaml

    with TorchZip(path) as z:
        config = yaml.safe_load(z.read("model/config.yaml").decode()) if z.has("model/config.yaml") else None
        meta = (
            yaml.safe_load(z.read("model/package_metadata.txt").decode()) if z.has("model/package_metadata.txt") else {}
        )
        if not z.has("model/eager_model.pkl"):
            raise ValueError(f"{str(path)!r}: the package has no model/eager_model.pkl")
        tree = z.load_pickle("model/eager_model.pkl", allow_module_records=True)
    if not isinstance(config, dict) or "training_module" not in config:
        raise ValueError(f"{str(path)!r}: model/config.yaml has no training_module section")
    model_cfg = config["training_module"].get("model")
    kwargs = resolve_model_config(model_cfg, path, seen)
    graph = tree
    if isinstance(tree, Record) and tree.cls.endswith("ModuleDict"):
        mods = _module_state(tree, path)["_modules"]
        if list(mods) != [SOLE]:
            raise ValueError(f"{str(path)!r} holds the models {list(mods)}; only single-model packages are supported")
        graph = mods[SOLE]
    if not (isinstance(graph, Record) and graph.cls.endswith("GraphModel")):
        raise ValueError(
            f"{str(path)!r}: eager model is {getattr(graph, 'cls', type(graph).__name__)}, expected a nequip GraphModel"
        )
    state = {}
    _flatten(graph, "", state, path)
    prov = {
        "versions": (meta or {}).get("versions"),
        "package_version_id": (meta or {}).get("package_version_id"),
        "model_target": (model_cfg or {}).get("_target_"),
        "training_module": (config["training_module"] or {}).get("_target_"),
    }
    return OfficialModel("nequip-package", kwargs, state, "package", {k: v for k, v in prov.items() if v is not None})


def _module_state(rec: Record, path) -> dict:
    st = rec.state
    if not isinstance(st, dict) or not all(k in st for k in ("_parameters", "_buffers", "_modules")):
        raise ValueError(f"{str(path)!r}: {rec.cls} in the package is not a torch module record")
    return st


def _flatten(rec: Record, prefix: str, out: dict, path) -> None:
    """The state_dict of a module record: own parameters, persistent buffers, then children, recursively."""
    st = _module_state(rec, path)
    skip = set(st.get("_non_persistent_buffers_set") or ())
    for name, v in list(st["_parameters"].items()) + [(k, b) for k, b in st["_buffers"].items() if k not in skip]:
        if v is not None:
            out[prefix + name] = np.asarray(v)
    for name, child in st["_modules"].items():
        if isinstance(child, Record) and isinstance(child.state, dict) and "_modules" in child.state:
            _flatten(child, f"{prefix}{name}.", out, path)


def resolve_model_config(cfg, path, seen: tuple = ()) -> dict:
    """NequIPGNNModel kwargs from a model config, following modify / ModelFromCheckpoint / ModelFromPackage."""
    if not isinstance(cfg, dict) or "_target_" not in cfg:
        raise ValueError(f"{str(path)!r}: no model config with a '_target_' (got {cfg!r})")
    target = str(cfg["_target_"])
    if target in NEQUIP_TARGETS:
        return {k: v for k, v in cfg.items() if k != "_target_"}
    if target in MODIFY_TARGETS:
        mods = cfg.get("modifiers") or []
        if isinstance(mods, dict):
            mods = mods.get(SOLE, [])
        unknown = [m.get("modifier") for m in mods if m.get("modifier") not in NEUTRAL_MODIFIERS]
        if unknown:
            raise ValueError(
                f"{str(path)!r}: model modifier(s) {unknown} are not supported; supported: {sorted(NEUTRAL_MODIFIERS)}"
            )
        kwargs = resolve_model_config(cfg.get("model"), path, seen)
        for m in mods:
            if m.get("modifier") == "modify_PerTypeScaleShift":
                kwargs["per_type_energy_scales_trainable"] = bool(m.get("scales_trainable", False))
                kwargs["per_type_energy_shifts_trainable"] = bool(m.get("shifts_trainable", False))
        return kwargs
    if target in CHECKPOINT_TARGETS or target in PACKAGE_TARGETS:
        key = "checkpoint_path" if target in CHECKPOINT_TARGETS else "package_path"
        ref = _find_reference(cfg.get(key), path, target)
        if str(ref.resolve()) in seen:
            raise ValueError(f"{str(path)!r}: model files refer to each other in a cycle ({ref})")
        return read_official(ref, _seen=seen + (str(Path(path).resolve()),)).kwargs
    if target.rsplit(".", 1)[-1] in ("PresetNequIPGNNModel", "FullNequIPGNNModel"):
        raise ValueError(
            f"{str(path)!r} was built with {target}; nequip-np reads NequIP models whose config "
            "names nequip.model.NequIPGNNModel with explicit options (presets and the per-layer "
            "FullNequIPGNNModel form are not supported yet)"
        )
    raise ValueError(
        f"{str(path)!r} holds a {target} model; nequip-np implements only nequip's "
        "NequIPGNNModel (Allegro and other extension models cannot be read)"
    )


def _find_reference(ref, path, target) -> Path:
    if not ref:
        raise ValueError(f"{str(path)!r}: {target} without a file path")
    here = Path(path).resolve().parent
    for cand in (Path(ref), here / ref, here / Path(ref).name):
        if cand.exists():
            return cand
    raise FileNotFoundError(
        f"{str(path)!r} was built from {ref!r} ({target.rsplit('.', 1)[-1]}: a fine-tuned model); that file "
        f"holds its architecture and was not found (looked as given and in {str(here)!r}). Put it there, or "
        "read the package made from the fine-tuned checkpoint"
    )


# ------------------------------------------------------------------------------ building
def state_to_kwargs(kwargs: dict, state: dict) -> dict:
    """Kwargs whose scales/shifts match the stored weights (a modified model's values are in the weights)."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("compile_mode", "do_derivatives", "seed")}
    names = [str(t) for t in kwargs.get("type_names", [])]
    for key, name in (
        ("per_type_energy_scale_shift.scales", "per_type_energy_scales"),
        ("per_type_energy_scale_shift.shifts", "per_type_energy_shifts"),
    ):
        arr = state.get("model.func." + key)
        if arr is None:
            continue
        vals = np.asarray(arr, dtype=np.float64).reshape(-1)
        kwargs[name] = float(vals[0]) if vals.size == 1 else dict(zip(names, map(float, vals)))
    return kwargs


def build_model(om: OfficialModel, backend: str = "numpy", source="file"):
    """A :class:`~nequip_np.NequIPModel` from an :class:`OfficialModel` (EMA weights put in place if used)."""
    from nequip_np.interop.nequip_npz import model_from_state, param_map

    state = dict(om.state)
    model = model_from_state(state_to_kwargs(om.kwargs, state), state, backend=backend, source=source)
    ema = om.replace_trainable
    if ema is not None:
        mapping = param_map(model, state)
        inverse = {v: k for k, v in mapping.items() if k in model.params}
        ordered = [k for k in state if k in inverse]
        if len(ordered) != len(ema):
            raise ValueError(f"{str(source)!r}: {len(ema)} EMA weights but {len(ordered)} trainable parameters")
        for key, value in zip(ordered, ema):
            if value.shape != state[key].shape:
                raise ValueError(
                    f"{str(source)!r}: EMA weight for {key!r} has shape {value.shape}, "
                    f"the parameter has {state[key].shape}"
                )
            state[key] = value
        model = model_from_state(state_to_kwargs(om.kwargs, state), state, backend=backend, source=source)
    model.provenance = {"format": om.format, "weights": om.weights, **om.provenance}
    return model


def load_official(path, backend: str = "numpy", weights: str = "ema"):
    """Read an official ``.ckpt`` / ``.nequip.zip`` into a :class:`~nequip_np.NequIPModel` without torch."""
    return build_model(read_official(path, weights=weights), backend=backend, source=path)


def format_description(d: dict) -> str:
    lines = [f"{k:<12} {v}" for k, v in d.items() if k not in ("architecture", "provenance")]
    lines.append("architecture")
    lines += [f"  {k:<34} {json.dumps(v)}" for k, v in d["architecture"].items()]
    lines.append("provenance")
    lines += [f"  {k:<34} {json.dumps(v, default=str)}" for k, v in d["provenance"].items()]
    return "\n".join(lines)
