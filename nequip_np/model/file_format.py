"""The layout of the project's model file, and the atomic write used for every .npz the project writes.

Layout: ``format`` = "nequip-np-model", ``format_version`` (int), ``config`` (JSON of the model
options), ``param/<name>`` for every trainable array. A file from a newer format version is refused
with a message saying which versions this release reads.

This module knows the file, not the model class: :meth:`NequIPModel.save
<nequip_np.model.nequip.NequIPModel.save>` writes through :func:`save_model`, and
:func:`nequip_np.model.io.load_model` builds the model from what :func:`read_model_file` returns.
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
    """Write ``model`` (anything with ``params`` and ``config.to_dict()``) in the layout above."""
    arrays = {f"param/{k}": v for k, v in model.params.items()}
    atomic_savez(
        path,
        format=np.array(FORMAT),
        format_version=np.array(FORMAT_VERSION),
        config=np.array(json.dumps(model.config.to_dict())),
        **arrays,
    )


def read_model_file(path) -> tuple[dict, dict]:
    """``(config, params)`` of a model file: the options (a dict) and ``{name: array}``.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not a readable .npz, not a nequip-np model file, or a newer format version.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{str(path)!r} is not a readable .npz model file: {exc}") from exc
    with data:
        if "format" not in data or str(data["format"]) != FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a nequip-np model file (no format={FORMAT!r} entry); "
                "official nequip weights are read with nequip_np.interop.load_nequip_npz"
            )
        version = int(data["format_version"])
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has model format version {version}, newer than the versions "
                f"1..{FORMAT_VERSION} this nequip-np reads; upgrade nequip-np"
            )
        config = json.loads(str(data["config"]))
        params = {k[len("param/") :]: data[k] for k in data.files if k.startswith("param/")}
    return config, params
