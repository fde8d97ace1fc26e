"""The project's own model file: a versioned .npz (config JSON + parameter arrays), written atomically.

Layout: ``format`` = "nequip-np-model", ``format_version`` (int), ``config`` (JSON of the model
options), ``param/<name>`` for every trainable array. A file from a newer format version is refused
with a message saying which versions this release reads.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "nequip-np-model"
FORMAT_VERSION = 1


def atomic_savez(path, **arrays) -> None:
    """Write an .npz to a temporary file in the same folder, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_model(model, path) -> None:
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    atomic_savez(path, format=np.array(FORMAT), format_version=np.array(FORMAT_VERSION),
                 config=np.array(json.dumps(model.config.to_dict())), **arrays)


def load_model(path, backend: str = "numpy"):
    """Read a model file: one written by :meth:`NequIPModel.save`, or any other format
    :func:`load_any_model` reads (official nequip ``.ckpt`` / ``.nequip.zip``, export ``.npz``)."""
    return load_any_model(path, backend=backend)


def _load_own(path, backend: str = "numpy"):
    """Read a model written by :meth:`NequIPModel.save`."""
    from nequip_np.model.nequip import NequIPModel

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{str(path)!r} is not a readable .npz model file: {exc}") from exc
    with data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(f"{str(path)!r} is not a nequip-np model file (no format={FORMAT!r} entry); "
                             "official nequip weights are read with nequip_np.interop.load_nequip_npz")
        version = int(data["format_version"])
        if version > FORMAT_VERSION:
            raise ValueError(f"{str(path)!r} has model format version {version}, newer than the versions "
                             f"1..{FORMAT_VERSION} this nequip-np reads; upgrade nequip-np")
        config = json.loads(str(data["config"]))
        params = {k[len("param/"):]: data[k] for k in data.files if k.startswith("param/")}
    model = NequIPModel(backend=backend, **config)
    missing = sorted(set(model.params) - set(params))
    if missing:
        raise ValueError(f"{str(path)!r} lacks parameters {missing}")
    model.load_params(params)
    return model


def detect_format(path) -> str:
    """``"nequip-np"``, ``"nequip-npz-export"``, ``"lightning-checkpoint"`` or ``"nequip-package"``.

    Decided from the content, not the name; compiled nequip files (``.nequip.pth``/``.nequip.pt2``) and
    anything unreadable raise a clear error.
    """
    from nequip_np.interop.official import official_kind

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    kind = official_kind(path)
    with open(path, "rb") as fh:
        zip_magic = fh.read(4) == b"PK\x03\x04"
    if kind is None and zip_magic:
        import zipfile

        if not zipfile.is_zipfile(path):
            raise ValueError(f"{str(path)!r} starts like a zip archive (.ckpt, .nequip.zip, .npz) but cannot be "
                             "read as one: the file is truncated or corrupt")
    if kind is not None:
        return {"checkpoint": "lightning-checkpoint", "package": "nequip-package"}[kind]
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
    except Exception as exc:  # noqa: BLE001 - re-raised with what the file should be
        raise ValueError(f"{str(path)!r} is not a model file this program reads: expected a nequip-np model "
                         "(.npz), an official nequip Lightning checkpoint (.ckpt) or package (.nequip.zip), or "
                         f"an .npz from tools/export_nequip.py ({type(exc).__name__}: {exc})") from exc
    if "format" in files:
        return "nequip-np"
    if "metadata" in files:
        return "nequip-npz-export"
    raise ValueError(f"{str(path)!r} is an .npz but neither a nequip-np model (no 'format' entry) nor an "
                     "official-nequip export (no 'metadata' entry)")


def load_any_model(path, backend: str = "numpy"):
    """Any model file: nequip-np's own, an official nequip ``.ckpt`` / ``.nequip.zip`` (read without torch,
    EMA weights when present, see :mod:`nequip_np.interop.official`), or an export of tools/export_nequip.py.
    """
    from nequip_np.interop import load_nequip_npz
    from nequip_np.interop.official import load_official

    fmt = detect_format(path)
    if fmt in ("lightning-checkpoint", "nequip-package"):
        return load_official(path, backend=backend)
    if fmt == "nequip-npz-export":
        model = load_nequip_npz(path, backend=backend)
        model.provenance = {"format": fmt}
        return model
    model = _load_own(path, backend=backend)
    model.provenance = {"format": fmt}
    return model
