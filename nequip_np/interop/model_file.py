"""Open a model file whoever wrote it: the project's own format, an official nequip ``.ckpt`` /
``.nequip.zip`` (read without torch), or an official-nequip export ``.npz``.

This is the loader of the entry points (:func:`nequip_np.load_model`,
:class:`~nequip_np.calculator.NequIPCalculator`, every ``nequip-np`` verb that takes a model path, the
LAMMPS coupling). It sits in ``interop`` because it needs every reader: the project's own
(:func:`nequip_np.model.io.load_model`, below it) and the official ones beside it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nequip_np.interop.nequip_npz import load_nequip_npz
from nequip_np.interop.official import load_official, official_kind
from nequip_np.model.io import load_model as _load_own
from nequip_np.model.nequip import NequIPModel

__all__ = ["describe", "detect_format", "load_any_model", "load_model"]


def detect_format(path) -> str:
    """``"nequip-np"``, ``"nequip-npz-export"``, ``"lightning-checkpoint"`` or ``"nequip-package"``.

    Decided from the content, not the name; compiled nequip files (``.nequip.pth``/``.nequip.pt2``) and
    anything unreadable raise a clear error.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    kind = official_kind(path)
    with open(path, "rb") as fh:
        zip_magic = fh.read(4) == b"PK\x03\x04"
    if kind is None and zip_magic and not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} starts like a zip archive (.ckpt, .nequip.zip, .npz) but cannot be "
            "read as one: the file is truncated or corrupt"
        )
    if kind is not None:
        return {"checkpoint": "lightning-checkpoint", "package": "nequip-package"}[kind]
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
    except Exception as exc:  # noqa: BLE001 - re-raised with what the file should be
        raise ValueError(
            f"{str(path)!r} is not a model file this program reads: expected a nequip-np model "
            "(.npz), an official nequip Lightning checkpoint (.ckpt) or package (.nequip.zip), or "
            f"an .npz from tools/export_nequip.py ({type(exc).__name__}: {exc})"
        ) from exc
    if "format" in files:
        return "nequip-np"
    if "metadata" in files:
        return "nequip-npz-export"
    raise ValueError(
        f"{str(path)!r} is an .npz but neither a nequip-np model (no 'format' entry) nor an "
        "official-nequip export (no 'metadata' entry)"
    )


def load_any_model(path, backend: str = "numpy") -> NequIPModel:
    """Any model file: nequip-np's own, an official nequip ``.ckpt`` / ``.nequip.zip`` (read without torch,
    EMA weights when present, see :mod:`nequip_np.interop.official`), or an export of tools/export_nequip.py.
    """
    fmt = detect_format(path)
    if fmt in ("lightning-checkpoint", "nequip-package"):
        return load_official(path, backend=backend)
    model = load_nequip_npz(path, backend=backend) if fmt == "nequip-npz-export" else _load_own(path, backend=backend)
    model.provenance = {"format": fmt}
    return model


#: ``nequip_np.load_model``: every format (the project's own reader alone is :func:`nequip_np.model.io.load_model`)
load_model = load_any_model


def describe(path) -> dict:
    """Format, architecture, type names, r_max, parameter count and provenance of any readable model file."""
    fmt = detect_format(path)
    model = load_any_model(path)
    c = model.config
    arch = {k: v for k, v in c.to_dict().items() if k not in ("type_names", "r_max", "seed")}
    return {
        "file": str(path),
        "format": fmt,
        "model": "NequIPGNNModel",
        "type_names": list(c.type_names),
        "r_max": c.r_max,
        "parameters": int(sum(v.size for v in model.params.values())),
        "architecture": arch,
        "provenance": getattr(model, "provenance", {}),
    }
