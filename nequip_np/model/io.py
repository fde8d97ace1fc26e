"""Reading and writing the project's own model file (a versioned .npz; layout in
:mod:`nequip_np.model.file_format`).

:func:`load_model` reads only that format. A file that may also be an official-nequip export is read
with :func:`nequip_np.interop.load_any_model`.
"""

from __future__ import annotations

from pathlib import Path

from nequip_np.model.file_format import FORMAT, FORMAT_VERSION, atomic_savez, read_model_file, save_model
from nequip_np.model.nequip import NequIPModel

__all__ = ["FORMAT", "FORMAT_VERSION", "atomic_savez", "load_model", "read_model_file", "save_model"]


def load_model(path, backend: str = "numpy") -> NequIPModel:
    """Read a model written by :meth:`NequIPModel.save`."""
    config, params = read_model_file(path)
    model = NequIPModel(backend=backend, **config)
    missing = sorted(set(model.params) - set(params))
    if missing:
        raise ValueError(f"{str(Path(path))!r} lacks parameters {missing}")
    model.load_params(params)
    return model
