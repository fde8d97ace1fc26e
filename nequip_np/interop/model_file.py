"""Open a model file whoever wrote it: the project's own format or an official-nequip export.

This is the loader of the entry points (:class:`~nequip_np.calculator.NequIPCalculator`, the
``nequip-np`` verbs that take a model path, the LAMMPS coupling). It sits in ``interop`` because it needs
both readers: :func:`nequip_np.model.io.load_model` below it and :func:`load_nequip_npz` beside it.
"""
from __future__ import annotations

import numpy as np

from nequip_np.interop.nequip_npz import load_nequip_npz
from nequip_np.model.io import load_model
from nequip_np.model.nequip import NequIPModel


def load_any_model(path, backend: str = "numpy") -> NequIPModel:
    """A nequip-np model file, or an official-nequip export (``state/…`` + ``metadata`` arrays)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            official = "metadata" in data.files and "format" not in data.files
    except Exception:  # noqa: BLE001 - load_model raises the clear error (missing / unreadable file)
        official = False
    return load_nequip_npz(path, backend=backend) if official else load_model(path, backend=backend)
