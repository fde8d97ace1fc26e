#!/usr/bin/env python
"""Export an official nequip (0.19.x) model to the nequip-np ``.npz`` weight format.

This tool needs ``torch`` and ``nequip`` (it is NOT part of the ``nequip_np``
package, which must never import torch).  See ``docs/interop.md``.

File format (``numpy.savez``):

* ``state/<state_dict key>``  every entry of ``model.state_dict()`` of the
  ``GraphModel`` (keys start with ``model.func.`` or ``model._empty``), stored
  with its own dtype (float64 / float32 / int64) and shape.
* ``nonpersistent/<buffer key>``  non-persistent buffers that are *not* in the
  state_dict but are handy for debugging (``...avg_num_neighbors_norm.norm_const``
  = 1/sqrt(avg_num_neighbors) per type, the ``...mlp.N.alpha`` scalar-MLP
  normalisation constants).  Informational only: they are functions of the
  metadata.
* ``metadata``  0-d unicode array holding a JSON string: the keyword arguments
  of ``nequip.model.NequIPGNNModel`` (everything except ``seed``), dict-valued
  options kept as JSON objects.  ``NequIPGNNModel(seed=..., **metadata)``
  rebuilds the same architecture.
* ``trainable_keys``  0-d unicode array, JSON list of the state_dict keys that
  are trainable ``torch.nn.Parameter``\\ s (everything else is a buffer).
* ``nequip_version``  0-d unicode array, version of nequip that wrote the file.

Usage::

    python tools/export_nequip.py --build config.json out.npz
    python tools/export_nequip.py --checkpoint path/to/best.ckpt out.npz

``config.json`` for ``--build`` holds the ``NequIPGNNModel`` kwargs (must include
``seed``, ``type_names``, ``r_max``, ``model_dtype``, ``avg_num_neighbors``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

STATE_PREFIX = "state/"
NONPERSISTENT_PREFIX = "nonpersistent/"
METADATA_KEY = "metadata"


def _init_nequip():
    from nequip.utils.global_state import set_global_state

    set_global_state()


def build_model(kwargs: dict[str, Any]):
    """Build an official ``NequIPGNNModel`` from keyword arguments (incl. ``seed``)."""
    _init_nequip()
    from nequip.model import NequIPGNNModel

    kw = dict(kwargs)
    kw.setdefault("seed", 0)
    return NequIPGNNModel(**kw)


def _to_jsonable(x):
    """Convert OmegaConf containers / tuples / numpy scalars into plain JSON types."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(x, (DictConfig, ListConfig)):
            x = OmegaConf.to_container(x, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(x, dict):
        return {str(k): _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def trainable_keys(model) -> list:
    """state_dict keys that are trainable parameters (requires_grad)."""
    params = {k for k, p in model.named_parameters() if p.requires_grad}
    return [k for k in model.state_dict().keys() if k in params]


def state_arrays(model) -> dict[str, np.ndarray]:
    out = {}
    for k, v in model.state_dict().items():
        out[STATE_PREFIX + k] = v.detach().cpu().numpy().copy()
    sd = model.state_dict()
    for k, v in model.named_buffers():
        if k not in sd:
            out[NONPERSISTENT_PREFIX + k] = v.detach().cpu().numpy().copy()
    return out


def metadata_json(model, kwargs: dict[str, Any]) -> str:
    meta = {k: _to_jsonable(v) for k, v in kwargs.items() if k not in ("seed", "_target_")}
    return json.dumps(meta, sort_keys=False)


def export_arrays(model, kwargs: dict[str, Any]) -> dict[str, np.ndarray]:
    """Arrays of the export format (without writing them)."""
    import nequip

    arrs = state_arrays(model)
    arrs[METADATA_KEY] = np.array(metadata_json(model, kwargs))
    arrs["trainable_keys"] = np.array(json.dumps(trainable_keys(model)))
    arrs["nequip_version"] = np.array(nequip.__version__)
    return arrs


def export_state(model, kwargs: dict[str, Any], path: str, extra: dict[str, np.ndarray] | None = None):
    """Write ``model``'s state_dict and ``kwargs`` metadata to ``path`` (.npz).

    ``extra`` arrays (e.g. ``input/...``, ``output/...``) are stored alongside.
    """
    arrs = export_arrays(model, kwargs)
    if extra:
        clash = set(arrs) & set(extra)
        assert not clash, clash
        arrs.update(extra)
    np.savez_compressed(path, **arrs)


def load_checkpoint(path: str):
    """Load a nequip Lightning checkpoint.  Returns (GraphModel, kwargs).

    The model carries EMA weights if the run used ``EMALightningModule``
    (this is what nequip's ``ModelFromCheckpoint`` gives, i.e. what inference uses).
    """
    _init_nequip()
    import torch
    from nequip.model import ModelFromCheckpoint

    model = ModelFromCheckpoint(path)
    if isinstance(model, torch.nn.ModuleDict):
        assert len(model) == 1, "multi-model checkpoints are not supported"
        model = next(iter(model.values()))
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = _to_jsonable(ckpt["hyper_parameters"]["model"])
    if isinstance(cfg, dict) and len(cfg) == 1 and "_target_" not in cfg:
        cfg = next(iter(cfg.values()))  # {"sole_model": {...}}
    target = cfg.get("_target_", "")
    if not target.endswith("NequIPGNNModel"):
        print(
            f"warning: checkpoint model target is {target!r}; metadata holds its config "
            "verbatim and may not be NequIPGNNModel kwargs",
            file=sys.stderr,
        )
    kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
    return model.eval(), kwargs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--checkpoint", help="nequip Lightning checkpoint (.ckpt)")
    g.add_argument("--build", help="JSON file with NequIPGNNModel kwargs (incl. seed)")
    p.add_argument("out", help="output .npz")
    a = p.parse_args(argv)
    if a.build:
        with open(a.build) as f:
            kwargs = json.load(f)
        model = build_model(kwargs).eval()
    else:
        model, kwargs = load_checkpoint(a.checkpoint)
    export_state(model, kwargs, a.out)
    print(f"wrote {a.out}: {len(model.state_dict())} state_dict entries")


if __name__ == "__main__":
    main()
